#!/usr/bin/env bash
# Key Vault benchmark: wrap/unwrap per second through REST with 8 connections against the raw
# aws-lc-rs RSA-2048 rate on the same machine, the blob GET 4 KiB rate on a CMK account against a
# service-key account (16 connections), and the time of customer-key changes on an account holding
# 1 MiB vs one holding 1 GiB (bench/cmk_rotation.py). Usage: bash bench/keyvault.sh (needs the .venv
# of scripts/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_PER_PHASE=${BENCH_SECONDS:-8}
PY=.venv/bin/python
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for tool in wrk bc; do command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }; done

raw=$(BENCH_SECONDS=3 cargo bench -q -p byos-crypto --bench rsa_raw 2>/dev/null | grep "raw aws-lc-rs")
cargo build --release --bin byos
target/release/byos serve --data-dir "$work/byos" --port 0 > "$work/byos.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$work/byos/bootstrap.json" ] && break; sleep 0.2; done
setup=$($PY bench/keyvault_setup.py "$work/byos")
field() { $PY -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$setup" "$1"; }

post_script() {  # a wrk script that POSTs $1 with a bearer token
    cat > "$work/$2.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$1]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $(field vault_token)"
LUA
}
get_script() {
    cat > "$work/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $(field storage_token)"
wrk.headers["x-ms-version"] = "2025-01-05"
LUA
}
rate() {
    local out
    out=$(wrk -t2 "$@" 2>&1)
    if echo "$out" | grep -q "Non-2xx"; then echo "wrk saw errors: $out" >&2; exit 1; fi
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}
post_script "$(field unwrap_body)" unwrap
post_script "$(field wrap_body)" wrap
get_script
unwrap=$(rate -c8 -d"${SECONDS_PER_PHASE}s" -s "$work/unwrap.lua" "$(field unwrap_url)")
wrap=$(rate -c8 -d"${SECONDS_PER_PHASE}s" -s "$work/wrap.lua" "$(field wrap_url)")
get_svc=$(rate -c16 -d"${SECONDS_PER_PHASE}s" -s "$work/get.lua" "$(field get_service_key)")
get_cmk=$(rate -c16 -d"${SECONDS_PER_PHASE}s" -s "$work/get.lua" "$(field get_cmk)")
raw_wrap=$(echo "$raw" | sed -E 's/.*wrap ([0-9]+)\/s, unwrap.*/\1/')
raw_unwrap=$(echo "$raw" | sed -E 's/.*unwrap ([0-9]+)\/s.*/\1/')
pct() { echo "scale=0; 100 * $1 / $2" | bc; }
printf '\nKey Vault benchmark (wrk -t2 over loopback HTTPS; %s)\n' "$raw"
printf '%-36s %10s/s   raw %8s/s   %4s%%   (target >= 50%%)\n' "unwrapKey REST, 8 connections" "$unwrap" "$raw_unwrap" "$(pct "$unwrap" "$raw_unwrap")"
printf '%-36s %10s/s   raw %8s/s   %4s%%   (target >= 50%%)\n' "wrapKey REST, 8 connections" "$wrap" "$raw_wrap" "$(pct "$wrap" "$raw_wrap")"
printf '%-36s %10s/s   service key %8s/s   %4s%%   (target >= 90%%)\n' "blob GET 4 KiB on a CMK account" "$get_cmk" "$get_svc" "$(pct "$get_cmk" "$get_svc")"
printf '\n'
$PY bench/cmk_rotation.py "$work/byos"
