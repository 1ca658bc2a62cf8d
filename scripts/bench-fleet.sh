#!/usr/bin/env bash
# The in-process store vs the Redis store vs a three-node Redis Cluster: one `lenscap serve`
# of examples/gallery each, the same policy, the same wrk load, in interleaved rounds (memory,
# redis, cluster, then again), one invocation, so the ratios
# compare like with like.
#
# The policy is `mode = "report-only"` with the limits on: every request is tracked, charged
# and decided (the store read before the decision, the merge written back) and then served,
# so wrk sees only 200s and the figures are the cost of the decision path on the store.
# Loopback only: every redis-server and server listens on 127.0.0.1. Prints requests/s, p99,
# the ratios (against memory), the added p99, the Redis commands per request (one TIME per
# read pipeline and one per merge script, so TIME less EVALSHA counts the reads before a
# decision), and Redis's memory per client record.
#
#   scripts/bench-fleet.sh                 # DURATION=10s CONNECTIONS=64 THREADS=2 WORKERS=2 ROUNDS=3
#   LENSCAP_BIN=target/release/lenscap scripts/bench-fleet.sh   # skip the build
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-3}
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/photos/terrace-09.webp}
PORT=18280
REDIS_PORT=18379
CLUSTER_PORTS=(18381 18382 18383)   # cluster buses on these + 100

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need redis-server || ! need redis-cli; then
    echo "installing wrk and redis-server from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk redis-server redis-tools >/dev/null
fi

if [[ -n ${LENSCAP_BIN:-} ]]; then
    LENSCAP=$LENSCAP_BIN   # a release binary built already
else
    echo "building lenscap (release)" >&2
    cargo build --release --quiet --bin lenscap
    LENSCAP="${CARGO_TARGET_DIR:-$REPO/target}/release/lenscap"
fi

WORK=$(mktemp -d /tmp/lenscap-bench-fleet.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listening on port $1" >&2
    exit 1
}

redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
PIDS+=($!)
wait_port $REDIS_PORT

for port in "${CLUSTER_PORTS[@]}"; do
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --cluster-enabled yes --cluster-port $((port + 100)) \
        --cluster-config-file "$WORK/nodes-$port.conf" --dir "$WORK" >/dev/null &
    PIDS+=($!)
    wait_port "$port"
done
redis-cli --cluster create "${CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
for port in "${CLUSTER_PORTS[@]}"; do
    for _ in $(seq 1 100); do
        redis-cli -p "$port" cluster info | grep -q cluster_state:ok && break
        sleep 0.1
    done
done

write_config() { # $1 = file, $2 = extra sections
    cat >"$1" <<EOF
mode = "report-only"

[server]
listen = "127.0.0.1:$PORT"
admin = "off"
root = "$REPO/examples/gallery"
watch = false

$2
EOF
}
write_config "$WORK/memory.toml" ""
write_config "$WORK/redis.toml" "[store]
backend = \"redis\"
url = \"redis://127.0.0.1:$REDIS_PORT/0\""
write_config "$WORK/cluster.toml" "[store]
backend = \"redis\"
nodes = [\"redis://127.0.0.1:${CLUSTER_PORTS[0]}\", \"redis://127.0.0.1:${CLUSTER_PORTS[1]}\"]"

load() { # prints "requests/s p99_ms requests"
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' \
        -H 'Accept: image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5' \
        -H 'Accept-Language: en-GB,en;q=0.7' \
        -H 'Accept-Encoding: gzip, deflate, br' \
        -H "Referer: http://127.0.0.1:$PORT/" \
        "http://127.0.0.1:$PORT$PATH_UNDER_TEST")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "wrk saw non-2xx responses:" >&2
        echo "$out" >&2
        exit 1
    fi
    local rps p99 requests
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}' <<<"$out")
    echo "$rps $p99 $requests"
}

calls() { # $1 = command, $2.. = ports: its calls summed over the nodes
    local command=$1 total=0 n
    shift
    for port in "$@"; do
        n=$(redis-cli -p "$port" info commandstats | tr -d '\r' |
            awk -F'[:=,]' -v c="cmdstat_$command" '$1 == c {print $3}')
        total=$((total + ${n:-0}))
    done
    echo $total
}

per_request() { # $1 = requests, $2.. = ports
    local requests=$1
    shift
    # Each merge script calls TIME and GET once itself: what is left is the reads'.
    awk -v r="$requests" -v t="$(calls time "$@")" -v g="$(calls get "$@")" -v e="$(calls evalsha "$@")" \
        'BEGIN { printf "per request: %.2f read pipelines (TIME) with %.2f GETs, %.2f merges (EVALSHA); %d requests\n", (t - e) / r, (g - e) / r, e / r, r }'
}

run() { # $1 = config; prints "requests/s p99_ms requests"
    # Runs in a subshell ($(run …)): the server is stopped here, also when the load fails.
    RUST_LOG=warn TOKIO_WORKER_THREADS=$WORKERS "$LENSCAP" serve --config "$1" >"$WORK/serve.log" 2>&1 &
    local pid=$! status=0 result
    wait_port $PORT
    result=$(load) || status=$?
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [[ $status == 0 ]] || exit "$status"
    echo "$result"
}

median() { # the median of its arguments
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $PATH_UNDER_TEST, $WORKERS server threads each, redis-server $(redis-server --version | awk '{print $3}'), $ROUNDS interleaved rounds"
for port in "$REDIS_PORT" "${CLUSTER_PORTS[@]}"; do redis-cli -p "$port" config resetstat >/dev/null; done
declare -A RPS P99
REDIS_N=0 CLUSTER_N=0
# Memory, Redis and cluster in turn, round after round: a change in the machine's load falls
# on all three, and each ratio below is of medians over the rounds.
for round in $(seq 1 "$ROUNDS"); do
    line="round $round:"
    for store in memory redis cluster; do
        read -r rps p99 n <<<"$(run "$WORK/$store.toml")"
        RPS[$store]+="$rps " P99[$store]+="$p99 "
        [[ $store == redis ]] && REDIS_N=$((REDIS_N + n))
        [[ $store == cluster ]] && CLUSTER_N=$((CLUSTER_N + n))
        line+=" $store $rps/s p99 ${p99} ms;"
    done
    echo "$line load average $(cut -d' ' -f1 /proc/loadavg)"
done

printf '%-8s %12s %10s   (medians of %s rounds)\n' store requests/s p99_ms "$ROUNDS"
for store in memory redis cluster; do
    # shellcheck disable=SC2086
    printf '%-8s %12s %10s\n' "$store" "$(median ${RPS[$store]})" "$(median ${P99[$store]})"
done
# shellcheck disable=SC2086
MEM_RPS=$(median ${RPS[memory]}) MEM_P99=$(median ${P99[memory]})
for store in redis cluster; do
    # shellcheck disable=SC2086
    rps=$(median ${RPS[$store]}) p99=$(median ${P99[$store]})
    awk -v s="$store" -v mr="$MEM_RPS" -v rr="$rps" -v mp="$MEM_P99" -v rp="$p99" 'BEGIN {
        printf "%s/memory: throughput %.2f, p99 %.2f; added p99 %.2f ms\n", s, rr / mr, rp / mp, rp - mp
    }'
done
echo "redis $(per_request "$REDIS_N" "$REDIS_PORT")"
echo "cluster $(per_request "$CLUSTER_N" "${CLUSTER_PORTS[@]}")"

client=$(redis-cli -p $REDIS_PORT --scan --pattern 'lenscap:*:c:*' | head -1)
subnet=$(redis-cli -p $REDIS_PORT --scan --pattern 'lenscap:*:n:*' | head -1)
echo "redis keys: $(redis-cli -p $REDIS_PORT dbsize); MEMORY USAGE of a client record ($client): $(redis-cli -p $REDIS_PORT memory usage "$client") bytes, of a subnet record: $(redis-cli -p $REDIS_PORT memory usage "$subnet") bytes; TTL of the client record: $(redis-cli -p $REDIS_PORT pttl "$client") ms"
