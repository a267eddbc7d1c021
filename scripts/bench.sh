#!/usr/bin/env bash
# make bench: edgerec against the floor, in one run. (`edgerec bench --mode
# step` searches the saturation point of one server by open-loop steps.)
#
# Starts `edgerec serve` on a real snapshot (ML-100k from ../shared/data when
# present, else generated) and a static fasthttp server answering a body of
# the same size, drives both with the same `edgerec bench` load, and prints
# saturation throughput, server CPU per request (from /proc of each server
# process), p99 at half of saturation, and the ratios edgerec/floor. Then
# bench against wrk on the floor, bench's own cost, the tails of a fresh
# and a warm server under open-loop load, the Go benchmarks and the
# build-scale table. BENCH_QUICK=1 shortens every step (about 3 min).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/edgerec
quick=${BENCH_QUICK:-}
out=${BENCH_OUT:-bench-out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$quick" ]; then fixed=3s; scales="1000000"; count=1; benchtime=200ms; runs=1; cpudur=2s
else fixed=10s; scales="1000000 3000000 10000000"; count=1; benchtime=1s; runs=3; cpudur=5s; fi

say() { printf '\n== %s\n' "$*"; }

say "data"
shared=../shared/data
if [ -f "$shared/ml100k_events.csv.gz" ]; then
	events=$shared/ml100k_events.csv.gz items=$shared/ml100k_items.csv.gz
	echo "ML-100k from $shared"
else
	events=$work/ev.csv.gz items=$work/items.csv.gz
	$bin gen --events "$events" --items "$items" --n 200000
fi
$bin build --events "$events" --items "$items" --out "$work/data/snapshots" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server at $1 did not come up" >&2; exit 1; }

eport=$(free_port)
$bin serve --data "$work/data" --addr "127.0.0.1:$eport" --api-key bench 2>"$out/serve.log" &
epid=$!; pids+=("$epid")
wait_up "http://127.0.0.1:$eport/readyz"
first=$(curl -s "http://127.0.0.1:$eport/v1/popular?k=1" | sed -n 's/.*"items":\[{"id":"\([^"]*\)".*/\1/p')
size=$(curl -s "http://127.0.0.1:$eport/v1/items/$first/similar?k=10" | wc -c)
sport=$(free_port)
$bin bench static --addr "127.0.0.1:$sport" --size "$size" 2>/dev/null &
spid=$!; pids+=("$spid")
wait_up "http://127.0.0.1:$sport/"
echo "edgerec on :$eport (pid $epid), static $size-byte floor on :$sport (pid $spid); reports in $out"

# Item ids for both: the server's popular list, so both see the same paths.
curl -s "http://127.0.0.1:$eport/v1/popular?k=100" | tr '{' '\n' | sed -n 's/^"id":"\([^"]*\)".*/\1/p' |
	{ echo item_id; cat; } >"$work/ids.csv"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d$2)" "$1"; }

declare -A sat thr
port_of() { if [ "$1" = edgerec ]; then echo "$eport"; else echo "$sport"; fi; }
pid_of() { if [ "$1" = edgerec ]; then echo "$epid"; else echo "$spid"; fi; }
for name in edgerec floor; do
	# Saturation: the throughput of a closed loop of 16 connections (what
	# the server sustains when every answer is awaited). Step mode finds it
	# too, but its p99 bound makes it swing by a step on a shared 2-core box.
	say "$name: saturation (closed loop, 16 connections, similar-items scenario)"
	$bin bench --url "http://127.0.0.1:$(port_of $name)" --mode closed --connections 16 --duration "$fixed" \
		--scenario similar --items "$work/ids.csv" --json >"$out/$name-saturation.json"
	thr[$name]=$(json_field "$out/$name-saturation.json" "['achieved_rate']")
	sat[$name]=${thr[$name]}
	echo "${thr[$name]} req/s, p50 $(json_field "$out/$name-saturation.json" "['latency_us']['p50']") us"
done
# Both at the same rate, half of the lower saturation: CPU per request is
# only comparable at equal load (idle wake-ups cost more per request at low
# rates). Runs alternate (edgerec first in odd runs), medians of $runs: the
# p99 at this rate is the scheduling of generator and server on 2 shared
# cores more than either (5 pairs of 2026-12-05 ranged 0.05x-2.9x), so the
# summary gives its range too.
half=$(python3 -c "print(max(int(min(${sat[edgerec]}, ${sat[floor]})/2), 100))")
: >"$out/half.tsv"
for i in $(seq "$runs"); do
	order="edgerec floor"
	if [ $((i % 2)) = 0 ]; then order="floor edgerec"; fi
	for name in $order; do
		url=http://127.0.0.1:$(port_of $name) pid=$(pid_of $name)
		say "$name: $half/s (half of the lower saturation) for $fixed, run $i of $runs"
		t0=$(cpu_ticks "$pid")
		$bin bench --url "$url" --rate "$half" --duration "$fixed" --scenario similar --items "$work/ids.csv" \
			--out "$out/$name-half-$i" >/dev/null
		t1=$(cpu_ticks "$pid")
		printf '%s\t%s\t%s\t%s\n' "$name" "$t0" "$t1" "$out/$name-half-$i/report.json" >>"$out/half.tsv"
		sed -n '3p;6p' "$out/$name-half-$i/report.txt"
	done
done

say "edgerec against the floor (CPU and p99 at $half/s for both, medians of $runs)"
python3 - "${thr[edgerec]}" "${thr[floor]}" "$out/half.tsv" "$(getconf CLK_TCK)" <<'EOF' | tee "$out/summary.txt"
import json, statistics, sys
te, tf = map(float, sys.argv[1:3])
tck = int(sys.argv[4])
cpu, p99 = {"edgerec": [], "floor": []}, {"edgerec": [], "floor": []}
for l in open(sys.argv[3]):
    name, t0, t1, report = l.split()
    r = json.load(open(report))
    cpu[name].append((int(t1) - int(t0)) * 1e6 / tck / max(r["requests"], 1))
    p99[name].append(r["latency_us"]["p99"])
ce, cf = (statistics.median(cpu[n]) for n in ("edgerec", "floor"))
pe, pf = (statistics.median(p99[n]) for n in ("edgerec", "floor"))
r = lambda a, b: f"{a / b:.2f}x" if b else "-"
print(f"{'':32} {'edgerec':>12} {'floor':>12} {'ratio':>8}")
print(f"{'saturation (req/s, closed loop)':32} {te:12.0f} {tf:12.0f} {r(te, tf):>8}")
print(f"{'server CPU per request (us)':32} {ce:12.1f} {cf:12.1f} {r(ce, cf):>8}")
print(f"{'p99 at the same rate (us)':32} {pe:12.0f} {pf:12.0f} {r(pe, pf):>8}")
print(f"{'p99, lowest-highest run (us)':32} {min(p99['edgerec']):>5.0f}-{max(p99['edgerec']):<6.0f} {min(p99['floor']):>5.0f}-{max(p99['floor']):<6.0f}")
EOF

say "bench against wrk on the floor (closed loop, 2 threads or loops, 4 and 16 connections)"
if ! command -v wrk >/dev/null; then
	echo "wrk not found: installing Debian's package"
	(apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1)) || true
fi
if command -v wrk >/dev/null; then
	# wrk prints percentiles after its coordinated-omission correction;
	# scripts/wrk-raw.lua recovers its raw ones, and bench reports both
	# (latency_us, latency_wrk_corrected_us), so each is compared with its
	# like. At 4 connections the 2 cores have room and the figures are the
	# tools' own; at 16 generator and server saturate them and the kernel's
	# scheduling shapes the latencies. Runs alternate, medians of $runs.
	for c in 4 16; do
		for i in $(seq "$runs"); do
			WRK_CONNECTIONS=$c wrk -t2 -c"$c" -d"$fixed" --latency -s scripts/wrk-raw.lua \
				"http://127.0.0.1:$sport/" >"$out/wrk-c$c-$i.txt"
			$bin bench --url "http://127.0.0.1:$sport" --mode closed --connections "$c" --duration "$fixed" \
				--scenario similar --items "$work/ids.csv" --json >"$out/bench-closed-c$c-$i.json"
		done
	done
	cat "$out/wrk-c16-1.txt"
	python3 - "$out" "$runs" <<'EOF' | tee -a "$out/summary.txt"
import json, re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def us(v, unit): return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
for c in (4, 16):
    rows = []
    for i in range(1, runs + 1):
        w = open(f"{out}/wrk-c{c}-{i}.txt").read()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
        corr = us(*re.search(r"50%\s+([\d.]+)(us|ms|s)", w).groups())
        raw = float(re.search(r"raw latency: p50 (\d+)us", w).group(1))
        b = json.load(open(f"{out}/bench-closed-c{c}-{i}.json"))
        rows.append((rps, raw, corr, b["achieved_rate"], b["latency_us"]["p50"], b["latency_wrk_corrected_us"]["p50"]))
    m = [statistics.median(x) for x in zip(*rows)]
    print(f"{c:2d} connections, medians of {runs}: wrk {m[0]:.0f} req/s p50 {m[1]:.0f}us raw, {m[2]:.0f}us corrected;"
          f" bench {m[3]:.0f} req/s p50 {m[4]:.0f}us raw, {m[5]:.0f}us corrected")
    print(f"   bench/wrk: throughput {m[3] / m[0]:.2f}x, p50 raw {m[4] / m[1]:.2f}x, p50 corrected {m[5] / m[2]:.2f}x")
EOF
else
	echo "wrk unavailable (no Debian package reachable): skipped"
fi

say "bench's own cost: closed loop on one core (GOMAXPROCS=1) against the floor"
GOMAXPROCS=1 $bin bench --url "http://127.0.0.1:$sport" --mode closed --connections 16 --duration "$fixed" \
	--scenario similar --items "$work/ids.csv" | tee "$out/bench-one-core.txt" | sed -n '3p'

for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done

# Every kind of answer against the floor: cache hit, Pebble miss, personal
# (20-event histories), decide, page, each beside a static reply of its
# own size, the server on core 0 and a closed loop of 16 connections on
# core 1 (scripts/cpu-ratio.sh; CPU_MODE=open measures at a fixed rate).
say "server CPU per request by scenario against the floor (scripts/cpu-ratio.sh, closed loop)"
if taskset -c 1 true 2>/dev/null; then
	CPU_MODE=closed CPU_DURATION=$cpudur CPU_WARMUP=1s CPU_RUNS=$runs OUT="$out/cpu-ratio" scripts/cpu-ratio.sh "$bin" |
		tee -a "$out/summary.txt"
else
	echo "one core only: skipped (the server and the load need a core each)"
fi

# Tails under an open-loop load at half of one core's saturation: the
# first second of a fresh server (from /readyz 200, from the port, with
# and without warming) and warm (scripts/tail-start.sh).
say "tails under open-loop load, first second and warm (scripts/tail-start.sh)"
if taskset -c 1 true 2>/dev/null; then
	if [ -n "$quick" ]; then tailenv=(TAIL_RUNS=1 TAIL_WARMUP=5s TAIL_DURATION=5s); else tailenv=(TAIL_RUNS=3); fi
	env "${tailenv[@]}" OUT="$out/tail-start" scripts/tail-start.sh "$bin" | tee -a "$out/summary.txt"
else
	echo "one core only: skipped (the server and the load need a core each)"
fi

say "Go benchmarks (-benchmem, -benchtime $benchtime)"
go test -run NONE -bench . -benchmem -benchtime "$benchtime" -count "$count" ./... 2>/dev/null | grep -E '^(Benchmark|ok|PASS)' | tee "$out/go-bench.txt"

say "build scale"
scripts/bench-scale.sh "$bin" $scales | tee "$out/scale.txt"

echo
echo "reports in $out"
