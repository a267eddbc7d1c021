#!/usr/bin/env bash
# make e2e: the binary end to end on generated data, in about 20 s. gen →
# build → serve (the bundled edgerec.yaml) → every bench scenario, open
# loop at a modest rate, which must answer 2xx only → a rebuilt snapshot
# shipped with snapshot pack/unpack and loaded under load.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/edgerec
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

$bin gen --events "$work/ev.csv.gz" --items "$work/items.csv.gz" --n 100000 >/dev/null
$bin build --events "$work/ev.csv.gz" --items "$work/items.csv.gz" --out "$work/data/snapshots" >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
url=http://127.0.0.1:$port
$bin serve --data "$work/data" --addr "127.0.0.1:$port" --api-key e2e --config edgerec.yaml --keyless-rate 0 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do curl -sf "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

fail=0
cat >"$work/check.py" <<'PY'
import json, sys
r = json.load(sys.stdin)
bad = r["requests"] - r["ok"]
lat = r["latency_us"]
print(f"{sys.argv[1]:14} {r['requests']:6} requests  p50 {lat['p50']:6.0f} us  p99 {lat['p99']:6.0f} us  failed {bad}  {r['status']} {r['errors']}")
sys.exit(1 if bad else 0)
PY
check() { python3 "$work/check.py" "$1" || fail=1; } # name; bench's JSON report on stdin
for sc in product-page home cart similar events landing-page page mixed site; do
	$bin bench --url "$url" --rate 500 --duration 2s --scenario "$sc" --api-key e2e --json | check "$sc"
done

# A new snapshot travels packed and is loaded while a load runs.
$bin build --events "$work/ev.csv.gz" --items "$work/items.csv.gz" --out "$work/builder" >/dev/null 2>&1
$bin snapshot pack --root "$work/builder" --out "$work/snap.tar.zst" 2>/dev/null
$bin bench --url "$url" --rate 500 --duration 3s --scenario mixed --api-key e2e --json >"$work/swap.json" &
bp=$!
sleep 1
$bin snapshot unpack --root "$work/data/snapshots" "$work/snap.tar.zst" 2>/dev/null
curl -sf -X POST -H 'Authorization: Bearer e2e' "$url/v1/admin/snapshots" >/dev/null || { echo "snapshot load failed"; fail=1; }
wait "$bp"
check "snapshot swap" <"$work/swap.json"

if [ "$fail" != 0 ]; then
	echo "e2e: FAILED (server log below)"; tail -20 "$work/serve.log"; exit 1
fi
echo "e2e: ok"
