#!/usr/bin/env bash
# Lenscap vs nginx doing the equivalent job, same machine, same load, one invocation.
#
#   static: both serve examples/gallery with a User-Agent block map, a per-client rate limit
#           (limit_req; set high enough that the browser-like load is never refused) and the
#           opt-out headers;
#   proxy:  both sit in front of the same upstream (a plain nginx serving the gallery), with
#           pooled keep-alive connections to it.
#
# wrk sends browser-like headers, so the default policy allows every request: this measures
# the allow path, the one every human visitor takes. Lenscap's `[limits]` (quotas and the
# behaviour tracker) are off: one address fetching one image thousands of times a second
# without fetch metadata is what they exist to stop, and they would answer 429 (nginx's
# limit_req is likewise set too high to refuse). Loopback only. Prints requests/s, p99 and
# the ratios (lenscap / nginx: >= 1.0 for throughput and <= 1.0 for p99 meet the target),
# and each server's own CPU time per request, user and kernel apart, read from /proc: it
# moves far less than requests/s when other processes share the machine, and it says
# whether a gap is in the server's code (user) or in its system calls and the network stack.
#
# Same CPU budget: both servers are pinned (taskset) to the same core(s), SERVER_CPUS, with
# as many workers as cores there (nginx worker processes, Tokio worker threads); wrk and, in
# proxy mode, the upstream run on the other core(s), LOAD_CPUS. Each mode runs ROUNDS rounds
# of lenscap then nginx, back to back (interleaved, so a burst of load from other processes
# hits both alike); each round's figures and the medians are printed, with the load average.
#
#   scripts/bench-vs-nginx.sh                 # DURATION=10s CONNECTIONS=64 THREADS=1 ROUNDS=3
#   DURATION=30s CONNECTIONS=256 ROUNDS=5 scripts/bench-vs-nginx.sh
#   LENSCAP=/path/to/saved/lenscap scripts/bench-vs-nginx.sh   # a saved binary, no build
#   MODES=proxy scripts/bench-vs-nginx.sh     # one mode only (static, proxy)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-static proxy}
CORES=$(nproc)
# The servers get the last core, wrk and the upstream the others (one machine, shared).
SERVER_CPUS=${SERVER_CPUS:-$((CORES - 1))}
LOAD_CPUS=${LOAD_CPUS:-0-$((CORES > 1 ? CORES - 2 : 0))}
cpu_count() { # "1", "0-2", "1,3" -> number of cores
    local n=0 part
    for part in ${1//,/ }; do
        if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
    done
    echo "$n"
}
WORKERS=${WORKERS:-$(cpu_count "$SERVER_CPUS")}   # nginx workers and lenscap runtime threads
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/photos/terrace-09.webp}
LENSCAP_PORT=18080
NGINX_PORT=18081
UPSTREAM_PORT=18090

need() { command -v "$1" >/dev/null 2>&1; }
if ! need taskset; then
    echo "taskset (util-linux) is needed to give both servers the same cores" >&2
    exit 1
fi
if ! need wrk || ! need nginx; then
    echo "installing wrk and nginx from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi

if [[ -z ${LENSCAP:-} ]]; then
    echo "building lenscap (release)" >&2
    cargo build --release --quiet --bin lenscap
    LENSCAP="${CARGO_TARGET_DIR:-$REPO/target}/release/lenscap"
fi
[[ -x $LENSCAP ]] || { echo "no lenscap binary at $LENSCAP" >&2; exit 1; }

WORK=$(mktemp -d /tmp/lenscap-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# nginx workers run as nobody: give them a readable copy of the gallery.
cp -r "$REPO/examples/gallery" "$WORK/gallery"
chmod -R a+rX "$WORK/gallery"
GALLERY="$WORK/gallery"

# The same agents Lenscap's catalog blocks on images, as an nginx map (a representative
# subset: nginx has no catalog, so this is what an operator would paste in).
UA_MAP='
    map $http_user_agent $lenscap_blocked {
        default 0;
        "~*(gptbot|ccbot|claudebot|claude-web|anthropic-ai|bytespider|google-extended|applebot-extended|perplexitybot|diffbot|omgili|imagesiftbot|img2dataset|cohere-ai|meta-externalagent|amazonbot|ai2bot|timpibot|facebookbot|youbot|wget|curl|httrack|aria2|scrapy|python-requests|python-urllib|go-http-client|libwww-perl|gallery-dl|headlesschrome)" 1;
        "" 1;
    }'
HEADERS='
        add_header X-Robots-Tag "noai, noimageai" always;
        add_header tdm-reservation "1" always;
        add_header Content-Usage "train-ai=n" always;'

write_nginx() { # $1 = file, $2 = server blocks
    cat >"$1" <<EOF
worker_processes $WORKERS;
pid $WORK/$(basename "$1").pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    $2
}
EOF
}

start_nginx() { # $1 = config file, $2 = cores
    taskset -c "$2" nginx -p "$WORK" -c "$1" -g 'daemon off;' &
    PIDS+=($!)
}

start_lenscap() { # $1 = config file
    RUST_LOG=warn TOKIO_WORKER_THREADS=$WORKERS taskset -c "$SERVER_CPUS" \
        "$LENSCAP" serve --config "$1" &
    PIDS+=($!)
}

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listening on port $1" >&2
    exit 1
}

stop_all() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# CPU time, in clock ticks, that a server has used so far: user and kernel, summed over the
# process, its threads and its children (nginx's workers). Prints "user system".
cpu_ticks() { # $1 = pid
    local pid user=0 system=0 stat fields f
    for pid in "$1" $(pgrep -P "$1" || true); do
        for stat in /proc/"$pid"/task/*/stat; do
            # Fields after the command name: state is the first, utime the 12th, stime the 13th.
            fields=$(sed 's/.*) //' "$stat" 2>/dev/null) || continue
            read -r -a f <<<"$fields"
            user=$((user + f[11])) system=$((system + f[12]))
        done
    done
    echo "$user $system"
}

# Runs wrk; prints "req/s p99_ms user_us system_us": the last two are the server's own CPU
# time per request (from /proc, so the other processes on the machine do not count in them).
load() { # $1 = port, $2 = the server's pid
    local out before after
    before=$(cpu_ticks "$2")
    out=$(taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' \
        -H 'Accept: image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5' \
        -H 'Accept-Language: en-GB,en;q=0.7' \
        -H 'Accept-Encoding: gzip, deflate, br' \
        -H "Referer: http://127.0.0.1:$1/" \
        "http://127.0.0.1:$1$PATH_UNDER_TEST")
    echo "$out" >>"$WORK/wrk.log"
    if echo "$out" | grep -q "Non-2xx"; then
        echo "wrk saw non-2xx responses on port $1:" >&2
        echo "$out" >&2
        exit 1
    fi
    after=$(cpu_ticks "$2")
    local rps p99 requests
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$rps $(to_ms "$p99") $(awk -v b="$before" -v a="$after" -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        printf "%.1f %.1f", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) * 1e6 / hz / n
    }')"
}

to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "%s", v }
    }'
}

report() { # $1 = label, $2 = "lenscap rps p99 user sys", $3 = "nginx rps p99 user sys"
    read -r lrps lp99 lu ls <<<"$2"
    read -r nrps np99 nu ns <<<"$3"
    awk -v m="$1" -v lr="$lrps" -v lp="$lp99" -v nr="$nrps" -v np="$np99" \
        -v lu="$lu" -v ls="$ls" -v nu="$nu" -v ns="$ns" 'BEGIN {
        printf "%-16s lenscap %8.0f req/s  p99 %7.3f ms | nginx %8.0f req/s  p99 %7.3f ms | throughput ratio %.2f  p99 ratio %.2f\n",
            m, lr, lp, nr, np, lr / nr, lp / np
        printf "%-16s CPU per request: lenscap %.1f us user + %.1f us kernel | nginx %.1f us user + %.1f us kernel | ratio %.2f\n",
            "", lu, ls, nu, ns, (lu + ls) / (nu + ns)
    }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median_of() { printf '%s\n' "$@" | median; } # the median of its arguments

# Runs ROUNDS rounds of (lenscap, nginx) on the two ports; prints each round and the medians.
rounds() { # $1 = mode
    local l_rps=() l_p99=() l_usr=() l_sys=() n_rps=() n_p99=() n_usr=() n_sys=() r lres nres
    local lr lp lu ls nr np nu ns
    for r in $(seq 1 "$ROUNDS"); do
        lres=$(load $LENSCAP_PORT "$LENSCAP_PID")
        nres=$(load $NGINX_PORT "$NGINX_PID")
        report "$1 round $r" "$lres" "$nres"
        echo "                 load average $(cut -d' ' -f1-3 /proc/loadavg)"
        read -r lr lp lu ls <<<"$lres"
        read -r nr np nu ns <<<"$nres"
        l_rps+=("$lr") l_p99+=("$lp") l_usr+=("$lu") l_sys+=("$ls")
        n_rps+=("$nr") n_p99+=("$np") n_usr+=("$nu") n_sys+=("$ns")
    done
    report "$1 median" \
        "$(median_of "${l_rps[@]}") $(median_of "${l_p99[@]}") $(median_of "${l_usr[@]}") $(median_of "${l_sys[@]}")" \
        "$(median_of "${n_rps[@]}") $(median_of "${n_p99[@]}") $(median_of "${n_usr[@]}") $(median_of "${n_sys[@]}")"
}

echo "machine: $CORES cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $PATH_UNDER_TEST; servers on cores $SERVER_CPUS with $WORKERS worker(s) each, wrk and the upstream on cores $LOAD_CPUS; $ROUNDS rounds"
echo "lenscap binary: $LENSCAP"

# === static ===
cat >"$WORK/lenscap-static.toml" <<EOF
[server]
listen = "127.0.0.1:$LENSCAP_PORT"
admin = "off"
root = "$GALLERY"
watch = false
[limits]
enabled = false
EOF

write_nginx "$WORK/nginx-static.conf" "
    $UA_MAP
    limit_req_zone \$binary_remote_addr zone=per_client:10m rate=1000000r/s;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $GALLERY;
        limit_req zone=per_client burst=1000000 nodelay;
        if (\$lenscap_blocked) { return 403; }
        $HEADERS
    }"
if [[ " $MODES " == *" static "* ]]; then
    start_lenscap "$WORK/lenscap-static.toml"
    LENSCAP_PID=${PIDS[-1]}
    start_nginx "$WORK/nginx-static.conf" "$SERVER_CPUS"
    NGINX_PID=${PIDS[-1]}
    wait_port $LENSCAP_PORT
    wait_port $NGINX_PORT
    rounds static
    stop_all
fi

# === proxy, in front of one upstream ===
write_nginx "$WORK/nginx-upstream.conf" "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        root $GALLERY;
    }"

cat >"$WORK/lenscap-proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$LENSCAP_PORT"
admin = "off"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
watch = false
[limits]
enabled = false
EOF

write_nginx "$WORK/nginx-proxy.conf" "
    $UA_MAP
    limit_req_zone \$binary_remote_addr zone=per_client:10m rate=1000000r/s;
    upstream gallery { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        limit_req zone=per_client burst=1000000 nodelay;
        if (\$lenscap_blocked) { return 403; }
        location / {
            proxy_pass http://gallery;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            $HEADERS
        }
    }"
if [[ " $MODES " == *" proxy "* ]]; then
    start_nginx "$WORK/nginx-upstream.conf" "$LOAD_CPUS"
    start_lenscap "$WORK/lenscap-proxy.toml"
    LENSCAP_PID=${PIDS[-1]}
    start_nginx "$WORK/nginx-proxy.conf" "$SERVER_CPUS"
    NGINX_PID=${PIDS[-1]}
    wait_port $UPSTREAM_PORT
    wait_port $LENSCAP_PORT
    wait_port $NGINX_PORT
    rounds proxy
    stop_all
fi
