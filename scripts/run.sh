#!/usr/bin/env bash
# Sets up the machine, builds the release binary and runs the engine on its embedded default
# configuration (config/chorus.toml: SIP on 127.0.0.1:5060, HTTP on 127.0.0.1:8080).
# Extra arguments are passed to `chorus` (see `chorus --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
cargo build --release -p chorus
exec target/release/chorus "$@"
