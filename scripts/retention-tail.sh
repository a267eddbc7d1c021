#!/usr/bin/env bash
# Does the retention sweeper hurt the latency of the requests it runs
# beside? edgerec serve (the make run sample, server on core 1) with
# one-minute TTLs for anonymous visitors and assignments and a sweep every
# RT_SWEEP, under an open loop of landing-page decisions (core 0) at
# RT_RATE for RT_DURATION, the visitors drawn from RT_USERS ids (nearly
# every decision a new anonymous visitor, so each sweep after the first
# minute deletes thousands of expired assignments). bench prints p50 and
# p99 per 10 s; the script prints, beside each interval, the rows the
# sweeper deleted in it (from /metrics, sampled every second), so the
# intervals with a sweep can be compared with those without.
#
#   RT_RATE 3000   RT_DURATION 240s   RT_USERS 2000000   RT_SWEEP 30s
#   BIN bin/edgerec
# Needs: 2 CPUs, taskset, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin/edgerec}
rate=${RT_RATE:-3000}
duration=${RT_DURATION:-240s}
users=${RT_USERS:-2000000}
sweep=${RT_SWEEP:-30s}
key=rt-key
work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	jobs -p | xargs -r kill 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

$bin gen --events "$work/ev.csv" --items "$work/items.csv" --n 200000 >/dev/null
$bin build --events "$work/ev.csv" --items "$work/items.csv" --out "$work/data/snapshots" >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
taskset -c 1 $bin serve --data "$work/data" --addr "$addr" --api-key "$key" --config edgerec.yaml \
	--keyless-rate 0 --decision-ttl 1m --retention-anonymous 1m --retention-assignments 1m --retention-sweep "$sweep" \
	>"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
	curl -sf "http://$addr/readyz" >/dev/null && break
	sleep 0.1
done

# Rows deleted so far, every second: "seconds-since-start rows".
(
	t0=$(date +%s) n=0
	while kill -0 "$pid" 2>/dev/null; do
		# A scrape that fails repeats the last count.
		if m=$(curl -sf "http://$addr/metrics"); then
			n=$(echo "$m" | awk '/^edgerec_retention_deleted_rows_total/ {s += $2} END {print s + 0}')
		fi
		echo "$(($(date +%s) - t0)) $n"
		sleep 1
	done
) >"$work/deleted.txt" &

taskset -c 0 $bin bench --url "http://$addr" --scenario landing-page --api-key "$key" --users "$users" --rate "$rate" \
	--duration "$duration" --table 10s >"$work/bench.txt"

echo "retention-tail: $rate/s landing-page decisions for $duration, $users visitor ids, sweep every $sweep, one-minute TTLs"
awk 'NR == FNR { del[$1] = $2; next }
	/^per 10s/ { on = 1; next }
	on && $1 == "interval" { printf "%s %12s\n", $0, "deleted"; next }
	on && NF == 7 {
		from = int($2); to = int($3); d = (del[to] + 0) - (del[from] + 0)
		printf "%s %12d\n", $0, d
	}' "$work/deleted.txt" "$work/bench.txt"
grep -E "^(requests|latency|status)" "$work/bench.txt" || true
grep -c "retention sweep failed" "$work/serve.log" | sed 's/^/failed sweeps: /'
