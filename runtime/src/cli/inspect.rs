//! `switchboard inspect FILE.wasm`: what a component imports and exports, and whether the
//! server would accept it (which world it serves, or why not). Runs locally: never needs a
//! server and never runs the component.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::output::human_size;

#[derive(Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    file: PathBuf,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let engine = crate::engine::Engine::new(&crate::config::EngineConfig::default(), None)?;
    let (imports, exports) = engine.describe(&bytes)?;
    println!("{} ({})", file.display(), human_size(bytes.len()));
    println!("imports:");
    for i in &imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &exports {
        println!("  {e}");
    }
    match engine.compile(&bytes) {
        Ok(component) => println!("a component of {}: deployable", component.world()),
        Err(why) => println!("not deployable: {why}"),
    }
    Ok(())
}
