#!/usr/bin/env bash
# Reproduces the `lenscap simulate` figures in docs/BENCHMARKS.md: the `default` scenario and
# the `flood` scenario against `lenscap serve` on loopback, with the server's memory (VmRSS,
# and VmHWM, the peak) read from /proc/PID/status before and after the flood. The default
# scenario plays against a generated gallery of 300 photos on 15 pages (the shape its
# max_share thresholds are written for; the demo gallery's 6 pages are a person's share in
# full); the flood against the demo gallery.
#
#   scripts/simulate-report.sh                  # both runs, as the scenarios ship (30 s + 120 s)
#   DEFAULT_DURATION=10s FLOOD_DURATION=30s scripts/simulate-report.sh
#
# Everything stays on 127.0.0.1 and is bounded: each scenario stops at its duration or its
# max_requests, whichever comes first (the flood: 120 s or 1,000,000 requests). Each run gets
# a fresh server, started and stopped by this script (by its own PID). Linux only (/proc).
#
# Environment: LENSCAP (the binary; default target/release/lenscap, built if missing),
# PORT (default: a free one), DEFAULT_DURATION / FLOOD_DURATION (default: the scenario's own),
# OUT (folder for the reports; default target/simulate-report).
set -euo pipefail

cd "$(dirname "$0")/.."
LENSCAP=${LENSCAP:-target/release/lenscap}
# A port nothing listens on (picked by the OS unless PORT is given).
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
OUT=${OUT:-target/simulate-report}
mkdir -p "$OUT"

if [[ ! -x $LENSCAP ]]; then
    cargo build --release
fi

# The embedded policy, plus loopback as a trusted proxy: the simulator forwards each
# session's address in X-Forwarded-For, and Lenscap identifies clients by it.
POLICY=$OUT/policy.toml
cat >"$POLICY" <<'EOF'
[client]
trusted_proxies = ["127.0.0.1/32", "::1/128"]
EOF

SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

# 15 pages of 20 photos (copies of one demo photo), each an <img> inside a link to it.
generate_gallery() {
    local root=$1
    rm -rf "$root"
    mkdir -p "$root/photos"
    printf 'img { width: 128px }\n' >"$root/style.css"
    local head='<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="stylesheet" href="/style.css">'
    {
        echo "$head<title>Gallery</title></head><body><h1>Gallery</h1>"
        for page in $(seq -w 1 15); do echo "<a href=\"/p$page.html\">Evening $page</a>"; done
        echo '</body></html>'
    } >"$root/index.html"
    for page in $(seq -w 1 15); do
        {
            echo "$head<title>Evening $page</title></head><body><h1>Evening $page</h1>"
            for i in $(seq -w 1 20); do
                cp examples/gallery/photos/terrace-02.jpg "$root/photos/p$page-$i.jpg"
                echo "<a href=\"/photos/p$page-$i.jpg\"><img src=\"/photos/p$page-$i.jpg\" alt=\"photo $i\"></a>"
            done
            echo "<a href=\"/\">Gallery</a> <a href=\"/p$(printf %02d $((10#$page % 15 + 1))).html\">Next</a></body></html>"
        } >"$root/p$page.html"
    done
}

start_server() { # name, site folder
    # Never load someone else's server: the port must be free before ours starts.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "127.0.0.1:$PORT is already in use: set PORT to a free port" >&2
        exit 1
    fi
    "$LENSCAP" serve --listen "127.0.0.1:$PORT" --admin off --config "$POLICY" \
        --static "$2" >"$OUT/serve-$1.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            break
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "lenscap serve did not listen on 127.0.0.1:$PORT (see $OUT/serve-$1.log)" >&2
    exit 1
}

memory() { # VmRSS and VmHWM of the server, in kB
    awk '/^VmRSS|^VmHWM/ { printf "%s %s kB  ", $1, $2 } END { print "" }' \
        "/proc/$SERVER_PID/status"
}

simulate() { # scenario, duration (may be empty), then extra flags
    local scenario=$1 duration=$2
    shift 2
    # The files in this tree, not the copies embedded in the binary (which may be older).
    local flags=(--target "http://127.0.0.1:$PORT/" --scenario "config/scenarios/$scenario.toml")
    [[ -n $duration ]] && flags+=(--duration "$duration")
    # Thresholds broken exit 1: that is a finding to record, not a failure of the script.
    "$LENSCAP" simulate "${flags[@]}" "$@" | tee "$OUT/$scenario.txt" || true
}

echo "== lenscap $("$LENSCAP" --version 2>/dev/null || true), $(nproc) cores, $(date -u +%F)"

echo "== default scenario"
generate_gallery "$OUT/gallery"
start_server default "$OUT/gallery"
simulate default "${DEFAULT_DURATION:-}"
stop_server

echo "== flood scenario"
start_server flood examples/gallery
# One page view first, so "before" is a server that has loaded its policy and served once.
(exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 && cat <&3 >/dev/null) || true
echo "before the flood: $(memory)" | tee "$OUT/flood-memory.txt"
simulate flood "${FLOOD_DURATION:-}"
echo "after the flood:  $(memory)" | tee -a "$OUT/flood-memory.txt"
sleep 5
echo "5 s later:        $(memory)" | tee -a "$OUT/flood-memory.txt"
stop_server
