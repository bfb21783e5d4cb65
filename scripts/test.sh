#!/usr/bin/env bash
# Runs every test: installs the wasm target and cargo-nextest if missing, builds the guest
# components once with the real toolchain, then runs the unit, feature and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "==> building the guest components (flows/ and tests/guests/)"
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu -p chaos -p init-trap -p language-router -p order-status
# Built on its own: it compiles the IVR source with a feature that must not reach ivr-menu.
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu-v2

echo "==> unit and feature tests"
cargo nextest run --release --workspace --no-fail-fast

echo "==> doc tests (the SDK's examples)"
cargo test --release --doc --workspace
