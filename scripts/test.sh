#!/usr/bin/env bash
# Runs every test: installs what they need when missing (the wasm target, cargo-nextest,
# Debian's chromium and playwright-core for the widget test), builds the guest components once
# with the real toolchain, then runs the unit, feature and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
# The widget test drives Debian's Chromium with playwright-core (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium (Debian package) for the browser test"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "==> installing playwright-core for the browser test"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

echo "==> building the guest components (flows/ and tests/guests/)"
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu -p chaos -p init-trap -p language-router -p order-status
# Built on its own: it compiles the IVR source with a feature that must not reach ivr-menu.
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu-v2

echo "==> unit and feature tests"
cargo nextest run --release --workspace --no-fail-fast

echo "==> doc tests (the SDK's examples)"
cargo test --release --doc --workspace
