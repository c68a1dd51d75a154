#!/usr/bin/env bash
# Blob service benchmark: starts Azurite (from npm) and byos (release build) side by side and
# measures both with wrk over loopback in one run: GET 1 MiB, GET 4 KiB, durable PUT 1 MiB, then a
# 2 GiB streamed upload + download through azure-storage-blob with byos's peak RSS.
# Usage: bash bench/blob.sh   (BENCH_SECONDS per phase, default 10; needs the .venv of scripts/test.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_PER_PHASE=${BENCH_SECONDS:-10}
TOOLS=target/bench-tools
PY=.venv/bin/python
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for tool in wrk bc; do command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }; done
[ -x "$TOOLS/node_modules/.bin/azurite-blob" ] || npm install --silent --no-audit --no-fund --prefix "$TOOLS" azurite@3.37.0
cargo build --release --bin byos

target/release/byos serve --data-dir "$work/byos" --port 0 > "$work/byos.log" 2>&1 &
byos_pid=$!; pids+=("$byos_pid")
azurite_port=$((20000 + RANDOM % 20000))
"$TOOLS/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$azurite_port" --location "$work/azurite" \
    --skipApiVersionCheck --loose --disableTelemetry > "$work/azurite.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do [ -f "$work/byos/bootstrap.json" ] && break; sleep 0.2; done
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$azurite_port") 2>/dev/null && break; sleep 0.2; done

byos_urls=$($PY bench/blob_setup.py byos "$work/byos")
azurite_urls=$($PY bench/blob_setup.py azurite "$azurite_port")
url() { $PY -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Requests per second reported by wrk (16 connections, 2 threads).
rate() {
    local out
    out=$(wrk -t2 -c16 -d"${SECONDS_PER_PHASE}s" "$@" 2>&1)
    if echo "$out" | grep -q "Non-2xx"; then echo "wrk saw errors: $out" >&2; exit 1; fi
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}

declare -A r
for target in azurite byos; do
    urls=$([ "$target" = byos ] && echo "$byos_urls" || echo "$azurite_urls")
    r[$target.get1m]=$(rate "$(url "$urls" get_1m)")
    r[$target.get4k]=$(rate "$(url "$urls" get_4k)")
    r[$target.put1m]=$(rate -s bench/put.lua "$(url "$urls" put_1m)")
done

before=$(awk '/VmHWM/ {print $2}' /proc/$byos_pid/status)
large_start=$(date +%s.%N)
$PY bench/blob_large.py "$byos_urls" > /dev/null
large_secs=$(echo "$(date +%s.%N) - $large_start" | bc)
peak_kib=$(awk '/VmHWM/ {print $2}' /proc/$byos_pid/status)

ratio() { echo "scale=1; $1 / $2" | bc; }
# Azurite as the issue recorded it on this machine kind (2026-11-23): the targets were set against
# these figures; Azurite's own speed here has varied up to 3x between runs, so both ratios are shown.
RECORDED_GET1M_MBS=193 RECORDED_GET4K_RPS=474 RECORDED_PUT1M_MBS=73
mbs() { echo "scale=0; $1 * $2 / 1" | bc; }
printf '\nBlob benchmark (wrk -t2 -c16 -d%ss over loopback; Azurite %s over http, byos over https with auth + encryption at rest)\n' "$SECONDS_PER_PHASE" "3.37.0"
printf '%-22s %14s %14s %8s %10s %8s\n' measure Azurite byos ratio "vs issue's" target
byos_get1m=$(mbs "${r[byos.get1m]}" 1.048576) byos_put1m=$(mbs "${r[byos.put1m]}" 1.048576)
printf '%-22s %11s MB/s %9s MB/s %7sx %9sx %7s\n' "GET 1 MiB" "$(mbs "${r[azurite.get1m]}" 1.048576)" "$byos_get1m" "$(ratio "${r[byos.get1m]}" "${r[azurite.get1m]}")" "$(ratio "$byos_get1m" "$RECORDED_GET1M_MBS")" ">=4x"
printf '%-22s %10s req/s %8s req/s %7sx %9sx %7s\n' "GET 4 KiB" "${r[azurite.get4k]}" "${r[byos.get4k]}" "$(ratio "${r[byos.get4k]}" "${r[azurite.get4k]}")" "$(ratio "${r[byos.get4k]}" "$RECORDED_GET4K_RPS")" ">=20x"
printf '%-22s %11s MB/s %9s MB/s %7sx %9sx %7s\n' "PUT 1 MiB (durable)" "$(mbs "${r[azurite.put1m]}" 1.048576)" "$byos_put1m" "$(ratio "${r[byos.put1m]}" "${r[azurite.put1m]}")" "$(ratio "$byos_put1m" "$RECORDED_PUT1M_MBS")" ">=3x"
printf '%-22s %s s for upload + download, byos peak RSS %s MiB (before: %s MiB; target < 150)\n' "2 GiB streamed" "$large_secs" "$((peak_kib / 1024))" "$((before / 1024))"
