//! `switchboard test FILE.wasm GOLDEN...`: runs golden contacts (saved with
//! `switchboard replay --save`) against a component, in-process on a throwaway store, and
//! fails when any behaves differently: a flow author's regression test. Never needs or
//! touches a server.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use super::output::human_size;
use crate::channels::terminal;

#[derive(Args)]
pub struct TestArgs {
    /// The component (.wasm).
    component: PathBuf,
    /// Golden files saved with `switchboard replay --save`.
    #[arg(required = true)]
    golden: Vec<PathBuf>,
}

/// Replays the golden files against the component; an error when any changed.
pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let TestArgs {
        component,
        golden: files,
    } = args;
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let runtime = crate::runtime::Runtime::ephemeral(
        crate::config::Config::default(),
        crate::engine::Clock::System,
    )?;
    let label = format!(
        "compiling {} ({})",
        component.display(),
        human_size(bytes.len())
    );
    let compiled = terminal::with_progress(&label, || {
        runtime
            .admin()
            .engine()
            .compile(&bytes)
            .map_err(anyhow::Error::from)
    })?;
    let mut changed = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let golden: crate::replay::Golden = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a golden contact (save one with `switchboard replay CONTACT --against N --save FILE`)", file.display())
        })?;
        let report = crate::replay::replay(
            runtime.admin().engine(),
            &golden,
            &compiled,
            0,
            &component.display().to_string(),
        );
        if report.identical {
            println!("PASS {}", file.display());
        } else {
            changed += 1;
            println!("FAIL {}", file.display());
            print!("{}", crate::replay::render(&report));
        }
    }
    println!("{} passed, {changed} failed", files.len() - changed);
    if changed > 0 {
        bail!(
            "{changed} of {} golden contacts behave differently",
            files.len()
        );
    }
    Ok(())
}
