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
# Debian packages the tests use: Chromium for the widget test (driven by playwright-core, no
# browser download); sipp (sip-tester) as the SIP caller and agent phone; espeak-ng and sox to
# render voice prompts; iproute2 to bring up loopback in the SIP tests' network namespace;
# PostgreSQL, which the store tests and the feature tests on PostgreSQL start in temp dirs;
# HAProxy, in front of the three nodes of the cluster test.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# Python flows: componentize-py builds them, pytest runs the SDK harness tests; aiosmtpd is the
# relay the e-mail tests send through (smtplib, in Python itself, is their mail client);
# openapi-spec-validator checks /openapi.json and schemathesis fuzzes the API against it.
if ! command -v componentize-py >/dev/null 2>&1 || ! python3 -m pytest --version >/dev/null 2>&1 \
    || ! python3 -c "import aiosmtpd, schemathesis, openapi_spec_validator" >/dev/null 2>&1; then
  echo "==> installing componentize-py, pytest, aiosmtpd, schemathesis, openapi-spec-validator (PyPI)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip
  fi
  # A system Python (PEP 668) refuses plain installs; a pyenv or venv Python takes them.
  python3 -m pip install --quiet componentize-py==0.25.1 pytest aiosmtpd==1.4.6 schemathesis==4.32.5 openapi-spec-validator==0.9.0 \
    || python3 -m pip install --quiet --user --break-system-packages componentize-py==0.25.1 pytest aiosmtpd==1.4.6 schemathesis==4.32.5 openapi-spec-validator==0.9.0
  hash -r
  command -v componentize-py >/dev/null 2>&1 || export PATH="$(python3 -m site --user-base)/bin:$PATH"
fi
# JavaScript/TypeScript flows: jco (in sdk/js) builds them; typescript checks the sample.
# `npm install` rather than `npm ci`: jco's optional per-platform packages are not all in the
# lock file, which `npm ci` refuses; the versions are still the lock file's.
if [ ! -d sdk/js/node_modules/@bytecodealliance/jco ]; then
  echo "==> installing the JavaScript SDK's build tools (jco, npm)"
  (cd sdk/js && npm install --no-audit --no-fund)
fi
if [ ! -d flows/chat-triage-ts/node_modules/typescript ]; then
  (cd flows/chat-triage-ts && npm install --no-audit --no-fund)
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "==> installing playwright-core for the browser test"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

echo "==> building the guest components (flows/ and tests/guests/)"
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu -p chaos -p init-trap -p language-router -p order-status -p email-desk -p rest-crm \
  -p contract-0-1 -p language-router-0-1 -p rest-crm-0-1
# Built on its own: it compiles the IVR source with a feature that must not reach ivr-menu.
cargo build --profile guest --target wasm32-wasip2 -p ivr-menu-v2

echo "==> Python SDK and the Python sample flow (pytest, native harness)"
(cd sdk/python && python3 -m pytest -q)
(cd flows/order-status-py && PYTHONPATH=../../sdk/python python3 -m pytest -q)

echo "==> JavaScript SDK and the TypeScript sample flow (node --test)"
(cd sdk/js && node --test test/)
(cd flows/chat-triage-ts && npm test --silent)

echo "==> unit and feature tests"
cargo nextest run --release --workspace --no-fail-fast

echo "==> the same feature tests on PostgreSQL (deploys, rollbacks, canaries, restarts, router, chat, people, contract versions, reports, e-mail)"
SWITCHBOARD_TEST_STORE=postgres cargo nextest run --release -p switchboard --test all --no-fail-fast \
  -E 'test(/^(deploy|rollback|canary|restart|router|chat|durability|hot_swap|replay|people|contract|reports|email)::/)'

# libFuzzer on what anyone who reaches the SIP and RTP ports sends (a nightly toolchain, as
# cargo fuzz needs): each target from the committed seeds for FUZZ_SECONDS (30 by default); new
# inputs go to a temporary corpus, a crash fails the run and is left in fuzz/artifacts/.
echo "==> fuzzing the SIP, SDP and RTP parsers, routing expressions, MIME, Twilio webhooks, chat messages and what flows return (TwiML, JSON) (${FUZZ_SECONDS:-30} s per target)"
rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked
fi
fuzz_corpus=$(mktemp -d)
for target in sip_message sip_headers sdp rtp cel mime twilio chat actions; do
  mkdir -p "$fuzz_corpus/$target"
  if ! (cd fuzz && cargo +nightly fuzz run "$target" "$fuzz_corpus/$target" "corpus/$target" -- \
      -max_total_time="${FUZZ_SECONDS:-30}" -print_final_stats=1 >"$fuzz_corpus/$target.log" 2>&1); then
    tail -n 60 "$fuzz_corpus/$target.log" >&2
    echo "fuzz target $target failed (a crash is kept in fuzz/artifacts/$target/: turn it into a unit test)" >&2
    exit 1
  fi
  echo "$target: $(grep -E '^stat::number_of_executed_units' "$fuzz_corpus/$target.log" | awk '{print $2}') inputs tried, $(grep -E '^stat::new_units_added' "$fuzz_corpus/$target.log" | awk '{print $2}') new, no crash"
done
rm -rf "$fuzz_corpus"

echo "==> doc tests (the SDK's examples)"
cargo test --release --doc --workspace
