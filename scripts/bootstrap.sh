#!/usr/bin/env bash
# Installs what Chorus needs to build and test on Debian 12: the system libraries its crates
# link, and the real peers the end-to-end tests talk to. Idempotent and quiet when everything
# is already there.
set -euo pipefail

packages=(
  build-essential pkg-config libopus-dev   # build: C toolchain, libopus for the Opus codec
  sip-tester                               # SIPp: load and signalling peer in tests
  sox espeak-ng                            # audio fixtures and the TTS engine
  lame                                     # the tests encode MP3 fixtures with it (tests/common/app.rs)
  iproute2 curl ca-certificates            # network namespaces for impairment tests; HTTP checks
  python3 python3-venv python3-pip         # the official REST SDKs the API tests drive
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

# The official Python SDKs that tests/rest_sdk.rs drives against a live engine (API.md §13),
# in a virtualenv of their own at target/sdk-venv (the tests run target/sdk-venv/bin/python,
# or $CHORUS_SDK_PYTHON). Pinned: the versions the tests were written against. A function with
# locals, since scripts/test.sh sources this file.
install_sdk_venv() {
  local pins=(plivo==4.63.0 vobiz-python==0.1.1)
  local root venv python installed pin
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/target/sdk-venv"
  python=/usr/bin/python3
  [ -x "$python" ] || python="$(command -v python3)"
  if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating the SDK virtualenv at $venv" >&2
    mkdir -p "$root/target"
    "$python" -m venv "$venv"
  fi
  installed="$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null || true)"
  local missing=()
  for pin in "${pins[@]}"; do
    grep -qix "$pin" <<<"$installed" || missing+=("$pin")
  done
  if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]} into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
  fi
}
install_sdk_venv
