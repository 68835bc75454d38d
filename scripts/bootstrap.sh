#!/usr/bin/env bash
# Installs what Chorus needs to build and test on Debian 12: the system libraries its crates
# link, and the real peers the end-to-end tests talk to. Idempotent and quiet when everything
# is already there.
set -euo pipefail

packages=(
  build-essential pkg-config libopus-dev   # build: C toolchain, libopus for the Opus codec
  sip-tester                               # SIPp: load and signalling peer in tests
  sox espeak-ng                            # audio fixtures and the TTS engine
  iproute2 curl ca-certificates            # network namespaces for impairment tests; HTTP checks
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  for dir in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$dir/cargo" ] && export PATH="$dir:$PATH"
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "bootstrap: cargo not found; install the Rust toolchain (rustup, Rust 1.85 or newer)" >&2
  exit 1
}
