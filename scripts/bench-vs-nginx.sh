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
# the ratios (lenscap / nginx: >= 1.0 for throughput and <= 1.0 for p99 meet the target).
#
#   scripts/bench-vs-nginx.sh                 # DURATION=10s CONNECTIONS=64 THREADS=2
#   DURATION=30s CONNECTIONS=256 scripts/bench-vs-nginx.sh
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}          # nginx workers and lenscap runtime threads: the same CPU budget
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/photos/terrace-09.webp}
LENSCAP_PORT=18080
NGINX_PORT=18081
UPSTREAM_PORT=18090

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
    echo "installing wrk and nginx from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi

echo "building lenscap (release)" >&2
cargo build --release --quiet --bin lenscap
LENSCAP="$REPO/target/release/lenscap"

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

start_nginx() { # $1 = config file
    nginx -p "$WORK" -c "$1" -g 'daemon off;' &
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

stop_last() {
    local pid=${PIDS[-1]}
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset 'PIDS[-1]'
}

# Runs wrk; prints "req/s p99_ms".
load() { # $1 = port
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
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
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    echo "$rps $(to_ms "$p99")"
}

to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "%s", v }
    }'
}

report() { # $1 = mode, $2 = "lenscap rps p99", $3 = "nginx rps p99"
    read -r lrps lp99 <<<"$2"
    read -r nrps np99 <<<"$3"
    awk -v m="$1" -v lr="$lrps" -v lp="$lp99" -v nr="$nrps" -v np="$np99" 'BEGIN {
        printf "%-7s lenscap %10.0f req/s  p99 %8.3f ms | nginx %10.0f req/s  p99 %8.3f ms | throughput ratio %.2f  p99 ratio %.2f\n",
            m, lr, lp, nr, np, lr / nr, lp / np
    }'
}

echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $PATH_UNDER_TEST, $WORKERS server threads each"

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
RUST_LOG=warn TOKIO_WORKER_THREADS=$WORKERS "$LENSCAP" serve --config "$WORK/lenscap-static.toml" &
PIDS+=($!)
wait_port $LENSCAP_PORT
STATIC_LENSCAP=$(load $LENSCAP_PORT)
stop_last

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
start_nginx "$WORK/nginx-static.conf"
wait_port $NGINX_PORT
STATIC_NGINX=$(load $NGINX_PORT)
stop_last

# === proxy, in front of one upstream ===
write_nginx "$WORK/nginx-upstream.conf" "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        root $GALLERY;
    }"
start_nginx "$WORK/nginx-upstream.conf"
wait_port $UPSTREAM_PORT

cat >"$WORK/lenscap-proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$LENSCAP_PORT"
admin = "off"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
watch = false
[limits]
enabled = false
EOF
RUST_LOG=warn TOKIO_WORKER_THREADS=$WORKERS "$LENSCAP" serve --config "$WORK/lenscap-proxy.toml" &
PIDS+=($!)
wait_port $LENSCAP_PORT
PROXY_LENSCAP=$(load $LENSCAP_PORT)
stop_last

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
start_nginx "$WORK/nginx-proxy.conf"
wait_port $NGINX_PORT
PROXY_NGINX=$(load $NGINX_PORT)
stop_last

report static "$STATIC_LENSCAP" "$STATIC_NGINX"
report proxy "$PROXY_LENSCAP" "$PROXY_NGINX"
