//! `switchboard new NAME --lang rust|python` writes a working flow project from a template,
//! with the SDK and the contract vendored in (so it builds offline, outside this
//! repository); `switchboard build [DIR]` builds it with the language's toolchain and says
//! what is missing when a tool is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, built with cargo for wasm32-wasip2.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// TypeScript (or JavaScript), built with jco.
    Js,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The flow's name (lowercase letters, digits, '-').
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create it (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

pub fn run_new(args: NewArgs) -> anyhow::Result<()> {
    new(&args.name, args.lang, args.dir)
}

pub fn run_build(args: BuildArgs) -> anyhow::Result<()> {
    build(&args.dir).map(|_| ())
}

const CONTRACT: &str = include_str!("../../../wit/flow.wit");

const RUST_SDK: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    (
        "src/actions.rs",
        include_str!("../../../sdk/rust/src/actions.rs"),
    ),
    (
        "src/context.rs",
        include_str!("../../../sdk/rust/src/context.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../sdk/rust/src/testing.rs"),
    ),
];

const JS_SDK: &[(&str, &str)] = &[
    ("src/index.js", include_str!("../../../sdk/js/src/index.js")),
    (
        "src/index.d.ts",
        include_str!("../../../sdk/js/src/index.d.ts"),
    ),
    (
        "src/component.js",
        include_str!("../../../sdk/js/src/component.js"),
    ),
    (
        "src/testing.js",
        include_str!("../../../sdk/js/src/testing.js"),
    ),
    (
        "src/testing.d.ts",
        include_str!("../../../sdk/js/src/testing.d.ts"),
    ),
    (
        "bin/switchboard-flow.js",
        include_str!("../../../sdk/js/bin/switchboard-flow.js"),
    ),
];

const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../sdk/python/switchboard_flow/__init__.py"),
    ),
    (
        "__main__.py",
        include_str!("../../../sdk/python/switchboard_flow/__main__.py"),
    ),
    (
        "actions.py",
        include_str!("../../../sdk/python/switchboard_flow/actions.py"),
    ),
    (
        "component.py",
        include_str!("../../../sdk/python/switchboard_flow/component.py"),
    ),
    (
        "context.py",
        include_str!("../../../sdk/python/switchboard_flow/context.py"),
    ),
    (
        "events.py",
        include_str!("../../../sdk/python/switchboard_flow/events.py"),
    ),
    (
        "flow.py",
        include_str!("../../../sdk/python/switchboard_flow/flow.py"),
    ),
    (
        "testing.py",
        include_str!("../../../sdk/python/switchboard_flow/testing.py"),
    ),
];

/// What `switchboard.project` says about a project.
struct Project {
    name: String,
    lang: Lang,
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "{name:?} is not a flow name: use lowercase letters, digits and '-', starting with a letter (such as order-status)"
        );
    }
    Ok(())
}

fn write(root: &Path, relative: &str, text: &str) -> anyhow::Result<()> {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a new project `name` in `dir` (default `./name`).
fn new(name: &str, lang: Lang, dir: Option<PathBuf>) -> anyhow::Result<()> {
    check_name(name)?;
    let root = dir.unwrap_or_else(|| PathBuf::from(name));
    if root.exists()
        && root
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty: choose another name or directory",
            root.display()
        );
    }
    let lang_name = match lang {
        Lang::Rust => "rust",
        Lang::Python => "python",
        Lang::Js => "js",
    };
    write(
        &root,
        "switchboard.project",
        &format!(
            "# Written by `switchboard new`; read by `switchboard build`.\nname = {name}\nlanguage = {lang_name}\n"
        ),
    )?;
    match lang {
        Lang::Rust => new_rust(&root, name)?,
        Lang::Python => new_python(&root, name)?,
        Lang::Js => new_js(&root, name)?,
    }
    let dir = root.display();
    println!("created {lang_name} flow project {name} in {dir}");
    match lang {
        Lang::Rust => println!("  test:   (cd {dir} && cargo test)"),
        Lang::Python => {
            println!("  test:   (cd {dir} && python3 -m pytest)   # pip install pytest")
        }
        Lang::Js => println!("  test:   (cd {dir} && npm install && npm test)"),
    }
    println!("  build:  switchboard build {dir}");
    println!("  deploy: switchboard deploy {dir}/{name}.wasm --flow {name}");
    Ok(())
}

fn new_rust(root: &Path, name: &str) -> anyhow::Result<()> {
    let crate_name = name.replace('-', "_");
    write(
        root,
        "Cargo.toml",
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
switchboard-sdk = {{ path = "switchboard-sdk" }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
strip = true

# A project of its own, even inside another workspace.
[workspace]
"#
        ),
    )?;
    write(
        root,
        "src/lib.rs",
        &RUST_TEMPLATE.replace("__CRATE__", &crate_name),
    )?;
    write(
        root,
        "switchboard-sdk/Cargo.toml",
        r#"[package]
name = "switchboard-sdk"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
wit-bindgen = "0.63"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
"#,
    )?;
    for (path, text) in RUST_SDK {
        let text = text.replace("path: \"../../wit\"", "path: \"../wit\"");
        write(root, &format!("switchboard-sdk/{path}"), &text)?;
    }
    write(root, "wit/flow.wit", CONTRACT)?;
    write(root, ".gitignore", "/target\n/*.wasm\n")?;
    Ok(())
}

fn new_python(root: &Path, name: &str) -> anyhow::Result<()> {
    write(root, "app.py", &PYTHON_TEMPLATE.replace("__NAME__", name))?;
    write(root, "test_app.py", PYTHON_TEST_TEMPLATE)?;
    for (path, text) in PYTHON_SDK {
        write(root, &format!("switchboard_flow/{path}"), text)?;
    }
    write(root, "switchboard_flow/wit/flow.wit", CONTRACT)?;
    write(root, ".gitignore", "/*.wasm\n__pycache__/\n")?;
    Ok(())
}

fn new_js(root: &Path, name: &str) -> anyhow::Result<()> {
    write(
        root,
        "package.json",
        &format!(
            r#"{{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {{
    "test": "tsc -p . && node --test dist/",
    "build": "node switchboard-flow/bin/switchboard-flow.js build flow.ts -o {name}.wasm"
  }},
  "dependencies": {{
    "@switchboard/flow": "file:./switchboard-flow"
  }},
  "devDependencies": {{
    "@bytecodealliance/jco": "1.35.0",
    "@types/node": "^20.0.0",
    "typescript": "5.9.3"
  }},
  "overrides": {{
    "@bytecodealliance/preview2-shim": "0.25.0"
  }}
}}
"#
        ),
    )?;
    write(root, "tsconfig.json", TSCONFIG)?;
    write(root, "flow.ts", JS_TEMPLATE)?;
    write(root, "flow.test.ts", JS_TEST_TEMPLATE)?;
    write(
        root,
        "switchboard-flow/package.json",
        r#"{
  "name": "@switchboard/flow",
  "version": "0.1.0",
  "type": "module",
  "main": "src/index.js",
  "types": "src/index.d.ts",
  "exports": {
    ".": { "types": "./src/index.d.ts", "default": "./src/index.js" },
    "./testing": { "types": "./src/testing.d.ts", "default": "./src/testing.js" }
  }
}
"#,
    )?;
    for (path, text) in JS_SDK {
        write(root, &format!("switchboard-flow/{path}"), text)?;
    }
    write(root, "switchboard-flow/wit/flow.wit", CONTRACT)?;
    write(
        root,
        ".gitignore",
        "node_modules/
dist/
/*.wasm
",
    )?;
    Ok(())
}

fn read_project(dir: &Path) -> anyhow::Result<Project> {
    let path = dir.join("switchboard.project");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a flow project (no switchboard.project): create one with `switchboard new NAME --lang rust|python`",
            dir.display()
        )
    })?;
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
    };
    let name = field("name").context("switchboard.project names no flow (name = ...)")?;
    let lang = match field("language").as_deref() {
        Some("rust") => Lang::Rust,
        Some("python") => Lang::Python,
        Some("js") => Lang::Js,
        other => bail!("switchboard.project: language {other:?} is not rust, python or js"),
    };
    Ok(Project { name, lang })
}

fn have(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the project in `dir`; returns the component's path.
fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let project = read_project(dir)?;
    let output = dir.join(format!("{}.wasm", project.name));
    let started = std::time::Instant::now();
    match project.lang {
        Lang::Python => {
            if !have("componentize-py", &["--version"]) {
                bail!("componentize-py not found: pip install componentize-py==0.25.1");
            }
            eprintln!(
                "building {} with componentize-py (about 15 s)...",
                project.name
            );
            let status = Command::new("python3")
                .current_dir(dir)
                .args(["-m", "switchboard_flow", "build", "app.py", "-o"])
                .arg(format!("{}.wasm", project.name))
                .env("PYTHONPATH", dir)
                .status()
                .context("python3 not found: install Python 3.10 or newer")?;
            if !status.success() {
                bail!("the Python build failed (see above)");
            }
        }
        Lang::Js => {
            if !have("node", &["--version"]) || !have("npm", &["--version"]) {
                bail!("node and npm not found: install Node.js 20 or newer");
            }
            if !dir.join("node_modules/@bytecodealliance/jco").exists() {
                eprintln!(
                    "installing the build tools (npm install: jco, typescript; about 30 s)..."
                );
                let status = Command::new("npm")
                    .current_dir(dir)
                    .args(["install", "--no-audit", "--no-fund"])
                    .status()
                    .context("cannot run npm")?;
                if !status.success() {
                    bail!("npm install failed (see above)");
                }
            }
            let status = Command::new("node")
                .current_dir(dir)
                .args([
                    "switchboard-flow/bin/switchboard-flow.js",
                    "build",
                    "flow.ts",
                    "-o",
                ])
                .arg(format!("{}.wasm", project.name))
                .status()
                .context("cannot run node")?;
            if !status.success() {
                bail!("the TypeScript build failed (see above)");
            }
        }
        Lang::Rust => {
            if !have("cargo", &["--version"]) {
                bail!("cargo not found: install Rust with rustup (https://rustup.rs)");
            }
            let targets = Command::new("rustup")
                .args(["target", "list", "--installed"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            if !targets.lines().any(|t| t.trim() == "wasm32-wasip2") {
                bail!("the wasm32-wasip2 target is not installed: rustup target add wasm32-wasip2");
            }
            eprintln!(
                "building {} with cargo for wasm32-wasip2 (the first build fetches and compiles the SDK's dependencies)...",
                project.name
            );
            // Cargo says where it put the component (CARGO_TARGET_DIR, a workspace, a
            // config file may all move it): read its artifact messages, do not guess.
            let built = Command::new("cargo")
                .current_dir(dir)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--message-format=json-render-diagnostics",
                ])
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("cannot run cargo")?;
            if !built.status.success() {
                bail!("cargo build failed (see above)");
            }
            let artifact = wasm_artifact(&String::from_utf8_lossy(&built.stdout), &project.name)
                .with_context(|| {
                    format!(
                        "cargo built no component for {}: check that Cargo.toml has crate-type = [\"cdylib\"]",
                        project.name
                    )
                })?;
            std::fs::copy(&artifact, &output).with_context(|| {
                format!("cannot copy {} to {}", artifact.display(), output.display())
            })?;
        }
    }
    let size = std::fs::metadata(&output)
        .with_context(|| format!("the build did not produce {}", output.display()))?
        .len();
    println!(
        "built {} ({:.1} MB) in {:.1} s; deploy it with: switchboard deploy {} --flow {}",
        output.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        output.display(),
        project.name
    );
    Ok(output)
}

const RUST_TEMPLATE: &str = r#"//! A Switchboard flow. `handle` runs once per event of a contact; the struct's fields are what
//! it remembers between events. Test with `cargo test`; build with `switchboard build`.

use switchboard_sdk::prelude::*;

switchboard_sdk::export_flow!(App);

/// What the flow remembers between events.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct App {
    /// Menu choices that were not understood.
    pub misses: u32,
}

impl Flow for App {
    fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
        let voice = cx.contact().channel == Channel::Voice;
        Ok(match event {
            Event::Started if voice => vec![
                Action::say("Hello, thanks for calling."),
                Action::gather(Gather::digits(1).say("To talk to a person, press 0.").retries(1)),
            ],
            Event::Started => vec![Action::send("Hello! Reply AGENT to talk to a person.")],
            Event::Input(input) if input.digits == "0" => {
                vec![Action::say("Connecting you."), Action::enqueue("support")]
            }
            Event::Message(text) if text.to_lowercase().contains("agent") => {
                vec![Action::send("Connecting you."), Action::enqueue("support")]
            }
            Event::Input(_) | Event::Message(_) => {
                self.misses += 1;
                if voice {
                    vec![Action::gather(Gather::digits(1).say("Sorry. To talk to a person, press 0."))]
                } else {
                    vec![Action::send("Sorry, I did not get that. Reply AGENT to talk to a person.")]
                }
            }
            Event::NoInput => vec![Action::say("Goodbye."), Action::Hangup],
            _ => vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sdk::testing::Conversation;

    #[test]
    fn zero_reaches_a_person() {
        let mut call = Conversation::<App>::voice("+15551230000", "+15550100");
        call.start();
        assert_eq!(call.press("0").last(), Some(&Action::enqueue("support")));
    }

    #[test]
    fn agent_in_a_message_reaches_a_person() {
        let mut chat = Conversation::<App>::new(Channel::Chat, "visitor", "chat:__CRATE__");
        chat.start();
        chat.message("hello");
        assert_eq!(chat.state().misses, 1);
        assert_eq!(chat.message("AGENT please").last(), Some(&Action::enqueue("support")));
    }
}
"#;

const PYTHON_TEMPLATE: &str = r#""""__NAME__: a Switchboard flow. ``handle`` runs once per event of a contact; the dataclass
fields are what it remembers between events. Test with ``python3 -m pytest``; build with
``switchboard build``."""

from dataclasses import dataclass

from switchboard_flow import (
    Flow, Input, Message, NoInput, Started, enqueue, export, gather, hangup, say, send,
)


@dataclass
class App(Flow):
    misses: int = 0

    def handle(self, ctx, event):
        voice = ctx.contact.channel == "voice"
        if isinstance(event, Started):
            if voice:
                return [say("Hello, thanks for calling."), gather("To talk to a person, press 0.", retries=1)]
            return [send("Hello! Reply AGENT to talk to a person.")]
        if isinstance(event, Input) and event.digits == "0":
            return [say("Connecting you."), enqueue("support")]
        if isinstance(event, Message) and "agent" in event.text.lower():
            return [send("Connecting you."), enqueue("support")]
        if isinstance(event, (Input, Message)):
            self.misses += 1
            if voice:
                return [gather("Sorry. To talk to a person, press 0.")]
            return [send("Sorry, I did not get that. Reply AGENT to talk to a person.")]
        if isinstance(event, NoInput):
            return [say("Goodbye."), hangup()]
        return []


WitWorld = export(App)
"#;

const PYTHON_TEST_TEMPLATE: &str = r#"from switchboard_flow import Enqueue
from switchboard_flow.testing import Conversation

from app import App


def test_zero_reaches_a_person():
    call = Conversation(App, channel="voice")
    call.start()
    assert call.press("0")[-1] == Enqueue("support")


def test_agent_in_a_message_reaches_a_person():
    chat = Conversation(App, channel="chat", from_="visitor", to="chat:web")
    chat.start()
    chat.message("hello")
    assert chat.state.misses == 1
    assert chat.message("AGENT please")[-1] == Enqueue("support")
"#;

const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "outDir": "dist",
    "rewriteRelativeImportExtensions": true
  },
  "include": ["flow.ts", "flow.test.ts"]
}
"#;

const JS_TEMPLATE: &str = r#"// A Switchboard flow. `handle` runs once per event of a contact; `state` is what it remembers
// between events. Test with `npm test`; build with `switchboard build`.
import { defineFlow, enqueue, gather, hangup, say, send } from '@switchboard/flow';

interface State {
  misses: number;
}

export default defineFlow<State>({
  initial: () => ({ misses: 0 }),
  handle(ctx, event, state) {
    const voice = ctx.contact.channel === 'voice';
    switch (event.type) {
      case 'started':
        return voice
          ? [say('Hello, thanks for calling.'), gather('To talk to a person, press 0.', { retries: 1 })]
          : [send('Hello! Reply AGENT to talk to a person.')];
      case 'input':
        if (event.digits === '0') return [say('Connecting you.'), enqueue('support')];
        state.misses += 1;
        return [gather('Sorry. To talk to a person, press 0.')];
      case 'message':
        if (/agent/i.test(event.text)) return [send('Connecting you.'), enqueue('support')];
        state.misses += 1;
        return [send('Sorry, I did not get that. Reply AGENT to talk to a person.')];
      case 'no-input':
        return [say('Goodbye.'), hangup()];
      default:
        return [];
    }
  },
});
"#;

const JS_TEST_TEMPLATE: &str = r#"import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Conversation } from '@switchboard/flow/testing';

import flow from './flow.ts';

test('zero reaches a person', () => {
  const call = new Conversation(flow, { channel: 'voice' });
  call.start();
  assert.equal((call.press('0').at(-1) as { queue: string }).queue, 'support');
});

test('agent in a message reaches a person', () => {
  const chat = new Conversation(flow, { channel: 'chat', from: 'visitor', to: 'chat:web' });
  chat.start();
  chat.message('hello');
  assert.equal(chat.state.misses, 1);
  assert.equal((chat.message('AGENT please').at(-1) as { queue: string }).queue, 'support');
});
"#;

/// The `.wasm` file cargo reported building for package `name`, from its JSON messages.
fn wasm_artifact(messages: &str, name: &str) -> Option<std::path::PathBuf> {
    let crate_name = name.replace('-', "_");
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == crate_name.as_str()
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(std::path::PathBuf::from))
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}
