#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the real programs the tests start
# (Debian packages, via apt-get; needs root or sudo), then runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --test attacks   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# command the tests run -> the Debian package that provides it
needed=(
  "exiftool:libimage-exiftool-perl"
  "pebble:pebble"
  "curl:curl"
  "chromium:chromium"
  "chromedriver:chromium-driver"
  "python3:python3"
  "redis-server:redis-server"
  "redis-cli:redis-tools"
)

missing=()
for pair in "${needed[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for pair in "${needed[@]}"; do
  if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
    echo "scripts/test.sh: ${pair%%:*} is still missing after installing ${pair##*:}" >&2
    exit 1
  fi
done

# The layer library builds without the binary's features (a Rust service that takes only
# the Tower layer must not need them).
if [[ $# -eq 0 ]]; then
  cargo check --quiet --lib --no-default-features
fi
cargo test "$@"
