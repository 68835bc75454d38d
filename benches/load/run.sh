#!/usr/bin/env bash
# End-to-end load comparison: Chorus vs Janus AudioBridge, same load, same run.
#
# Rooms of 10 (2 talkers streaming speech, 8 listeners sending silence), the engine pinned to
# core 0, the load generator to core 1. Prints one table: engine CPU per participant-second,
# participants per core, loss, marker-tone latency through a probe room, and the Janus/Chorus
# CPU ratio. Everything runs on 127.0.0.1 and everything started here is stopped on exit.
#
# Usage: benches/load/run.sh [options]
#   --quick              3 rooms x 10, 10 s window, 3 s warm-up, G.711 only, Chorus only
#                        (unless --with-janus)
#   --rooms N            rooms for G.711 runs (default 20 → 200 participants)
#   --opus-rooms N       rooms for Opus runs (default 5: Janus needs ~13.5 ms CPU per
#                        participant-second with Opus, so 50 participants already use 2/3 of its core)
#   --members N          members per room (default 10)
#   --talkers N          talkers per room (default 2)
#   --duration S         measured window, seconds (default 30)
#   --warmup S           seconds between the last join and the window (default 10)
#   --codecs LIST        pcmu, opus or pcmu,opus (default pcmu,opus)
#   --cps N              call setup rate (default 50)
#   --with-janus         also run Janus (install it with apt-get when missing)
#   --no-janus           Chorus only
#   --no-build           use the binaries already in target/release
#   --results FILE       also append the JSON result rows to FILE
# Default: Janus runs when `janus` is installed. Defaults finish in about 4 minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

ROOMS=20 OPUS_ROOMS=5 MEMBERS=10 TALKERS=2 DURATION=30 WARMUP=10 CODECS=pcmu,opus CPS=50
JANUS=auto BUILD=1 KEEP_RESULTS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROOMS=3 OPUS_ROOMS=3 DURATION=10 WARMUP=3 CODECS=pcmu
                 [ "$JANUS" = auto ] && JANUS=no ;;
        --rooms) ROOMS="$2"; shift ;;
        --opus-rooms) OPUS_ROOMS="$2"; shift ;;
        --members) MEMBERS="$2"; shift ;;
        --talkers) TALKERS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --warmup) WARMUP="$2"; shift ;;
        --codecs) CODECS="$2"; shift ;;
        --cps) CPS="$2"; shift ;;
        --with-janus) JANUS=yes ;;
        --no-janus) JANUS=no ;;
        --no-build) BUILD=0 ;;
        --results) KEEP_RESULTS="$2"; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$(nproc)" -lt 2 ]; then
    echo "needs 2 cores (engine on core 0, load on core 1)" >&2
    exit 1
fi

WORK="$(mktemp -d /tmp/chorus-load.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
ENGINE_PID=""

stop_engine() {
    [ -n "$ENGINE_PID" ] || return 0
    if kill -0 "$ENGINE_PID" 2>/dev/null; then
        kill -TERM "$ENGINE_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$ENGINE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$ENGINE_PID" 2>/dev/null || true
    fi
    wait "$ENGINE_PID" 2>/dev/null || true
    ENGINE_PID=""
}

cleanup() {
    stop_engine
    if [ -n "$KEEP_RESULTS" ] && [ -s "$RESULTS" ]; then cat "$RESULTS" >> "$KEEP_RESULTS"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One socket per participant on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for tool in taskset espeak-ng sox curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install util-linux espeak-ng sox curl)" >&2; exit 1; }
done

if [ "$JANUS" = yes ] && ! command -v janus >/dev/null; then
    echo "== installing janus (Debian package)" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq janus >/dev/null
fi
if [ "$JANUS" = auto ]; then
    if command -v janus >/dev/null; then JANUS=yes; else JANUS=no; fi
fi

if [ "$BUILD" = 1 ]; then
    echo "== building release binaries" >&2
    (cd "$ROOT" && cargo build --release -p chorus -p chorus-loadgen)
fi
LOADGEN="$BIN/chorus-loadgen"
CHORUS="$BIN/chorus"

# Ports: derived from our pid so two runs on one machine don't collide.
SIP_PORT=$((21000 + ($$ % 500) * 2))
HTTP_PORT=$((SIP_PORT + 1))
JANUS_PORT="${JANUS_PORT:-8088}"

wait_http() { # url, seconds
    local i
    for i in $(seq 1 $(($2 * 10))); do
        if curl -sf -o /dev/null "$1" 2>/dev/null; then return 0; fi
        if [ -n "$ENGINE_PID" ] && ! kill -0 "$ENGINE_PID" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

rooms_for() { if [ "$1" = opus ]; then echo "$OPUS_ROOMS"; else echo "$ROOMS"; fi; }

load_args() { # codec
    echo --rooms "$(rooms_for "$1")" --members "$MEMBERS" --talkers "$TALKERS" --codec "$1" \
        --duration "$DURATION" --warmup "$WARMUP" --cps "$CPS" --probe --results "$RESULTS"
}

run_chorus() { # codec
    local codec="$1"
    echo "== chorus $codec: $(rooms_for "$codec") rooms x $MEMBERS" >&2
    taskset -c 0 "$CHORUS" --sip-listen "127.0.0.1:$SIP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
        --rtp-ports 30000-39999 --account MA_LOADGEN:secret --media-threads 1 \
        ${CHORUS_EXTRA_ARGS:-} > "$WORK/chorus-$codec.log" 2>&1 &
    ENGINE_PID=$!
    if ! wait_http "http://127.0.0.1:$HTTP_PORT/readyz" 15; then
        echo "chorus did not become ready; log:" >&2
        tail -20 "$WORK/chorus-$codec.log" >&2
        stop_engine
        return 1
    fi
    # shellcheck disable=SC2046
    if ! timeout 900 taskset -c 1 "$LOADGEN" chorus --sip "127.0.0.1:$SIP_PORT" \
        --metrics-url "http://127.0.0.1:$HTTP_PORT/metrics" --engine-pid "$ENGINE_PID" \
        $(load_args "$codec"); then
        echo "chorus $codec: the load did not complete (for opus: is Opus in the engine yet?)" >&2
        grep -m3 -E 'WARN|ERROR' "$WORK/chorus-$codec.log" >&2 || true
    fi
    stop_engine
}

write_janus_config() { # dir
    local dir="$1" lib=/usr/lib/x86_64-linux-gnu/janus
    [ -d "$lib" ] || lib="$(dirname "$(find /usr/lib -name libjanus_audiobridge.so -print -quit)")/.."
    mkdir -p "$dir"
    all_but() { # folder, keep
        find "$lib/$1" -maxdepth 1 -name '*.so' -printf '%f\n' 2>/dev/null | grep -vx "$2" | paste -sd, -
    }
    cat > "$dir/janus.jcfg" <<EOF
general: {
	configs_folder = "$dir"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 3
	session_timeout = 0
	interface = "127.0.0.1"
}
media: {
}
nat: {
	nice_debug = false
	ignore_mdns = true
	ice_enforce_list = "lo"
}
plugins: {
	disable = "$(all_but plugins libjanus_audiobridge.so)"
}
transports: {
	disable = "$(all_but transports libjanus_http.so)"
}
loggers: {
	disable = "$(all_but loggers none)"
}
events: {
	broadcast = false
	disable = "$(all_but events none)"
}
EOF
    cat > "$dir/janus.transport.http.jcfg" <<EOF
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = $JANUS_PORT
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
EOF
    cat > "$dir/janus.plugin.audiobridge.jcfg" <<EOF
general: {
	local_ip = "127.0.0.1"
	rtp_port_range = "40000-59999"
}
EOF
}

run_janus() { # codec
    local codec="$1" dir="$WORK/janus"
    echo "== janus $codec: $(rooms_for "$codec") rooms x $MEMBERS" >&2
    write_janus_config "$dir"
    taskset -c 0 janus -F "$dir" -C "$dir/janus.jcfg" > "$WORK/janus-$codec.log" 2>&1 &
    ENGINE_PID=$!
    local info="http://127.0.0.1:$JANUS_PORT/janus/info"
    if ! wait_http "$info" 15; then
        echo "janus did not come up; log:" >&2
        tail -20 "$WORK/janus-$codec.log" >&2
        stop_engine
        return 1
    fi
    # shellcheck disable=SC2046
    if ! timeout 900 taskset -c 1 "$LOADGEN" janus --janus-http "http://127.0.0.1:$JANUS_PORT/janus" \
        --engine-pid "$ENGINE_PID" $(load_args "$codec"); then
        echo "janus $codec: the load did not complete" >&2
        grep -m5 -E 'ERR' "$WORK/janus-$codec.log" >&2 || true
    fi
    stop_engine
}

for codec in ${CODECS//,/ }; do
    run_chorus "$codec" || true
    if [ "$JANUS" = yes ]; then run_janus "$codec" || true; fi
done

echo
echo "== summary ($(nproc) cores; engine on core 0, load on core 1)"
"$LOADGEN" table "$RESULTS"
if grep -q '"codec":"opus"' "$RESULTS" && ! grep '"codec":"opus"' "$RESULTS" | grep -q '"engine":"chorus"'; then
    if [[ ",$CODECS," == *",opus,"* ]]; then
        echo "Chorus Opus: pending (no Chorus Opus row: the engine did not accept opus/48000/2 calls)"
    fi
elif [[ ",$CODECS," == *",opus,"* ]] && ! grep -q '"codec":"opus"' "$RESULTS"; then
    echo "Opus: no run completed"
fi
