#!/usr/bin/env bash
# Installs what Switchboard needs, builds the server and the sample IVR flow, and runs the
# server on http://127.0.0.1:8080 with the IVR live on +15550100 (open around the clock for
# the demo), its queues, and three demo customers in the built-in CRM. Data lives in
# ./.switchboard.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing the wasm32-wasip2 target"
rustup target add wasm32-wasip2

echo "==> building switchboard (the first build compiles wasmtime: about 10 minutes on 2 cores)"
cargo build --release -p switchboard

echo "==> building the sample flow flows/ivr-menu"
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu

echo "==> starting the server (Ctrl-C stops it)"
exec ./target/release/switchboard serve \
  --deploy ivr-menu=target/wasm32-wasip2/guest/ivr_menu.wasm \
  --setting ivr-menu:days=mon-sun --setting ivr-menu:open=00:00 --setting ivr-menu:close=24:00 \
  --customers examples/customers.csv \
  --queue sales --queue support --queue agents --queue vip \
  --bind +15550100=ivr-menu \
  --sip 127.0.0.1:5060 \
  "$@"
