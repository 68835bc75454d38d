#!/usr/bin/env bash
# Sets up the machine and runs every check: formatting, lints, unit tests, and the
# end-to-end tests against the release binary with real peers (SIPp, our test user agent).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
export CARGO_TERM_COLOR=never

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# The end-to-end tests start target/release/chorus; build it before they run.
cargo build --release -p chorus
cargo test --workspace --release
