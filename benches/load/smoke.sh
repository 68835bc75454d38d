#!/usr/bin/env bash
# Proves the load harness runs end to end in about 30 s: 3 rooms x 10 through Chorus (G.711),
# 10 s window, with the probe. Extra options go to run.sh (e.g. --with-janus, --no-build).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --quick "$@"
