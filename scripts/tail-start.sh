#!/usr/bin/env bash
# scripts/tail-start.sh BIN: latency tails under an open-loop load at half
# of one core's saturation, from a server's first second on and warm.
#
# Data: `edgerec gen --n 200000` (the `make run` sample), `edgerec build`,
# `edgerec serve --config edgerec.yaml` pinned to core 1 (two Ps, serve's
# default on one core; GOMAXPROCS=1 with TAIL_RT=1, or TAIL_SERVER_PROCS);
# the load, `edgerec bench`, pinned to core 0 with GOMAXPROCS=1.
#
#  1. Saturation: a closed loop of 16 connections for 5 s against a warm
#     server; the open-loop rate is half of it, at most TAIL_MAX_RATE
#     (25000: bench's open loop holds 25,000/s on one core against a
#     static server with a p99 of 0.2 ms, 35,000/s only with one of
#     59 ms, so above that it measures itself), or TAIL_RATE.
#  2. First second: for each of TAIL_RUNS runs, a server started on a fresh
#     state store, loaded at the rate for 1 s (--interval 100ms) the moment
#     /readyz answers 200 ("readyz") and, on another fresh start, the
#     moment its port accepts ("port"), both with warming (the default
#     --warm) and without it (--warm 0: "cold"). The generator opens
#     TAIL_PRECONNECT connections before its clock starts (its own dials
#     cost its first 100 ms a p99 of 20-35 ms at 25,000/s).
#  3. Warm: TAIL_WARMUP (30 s) of the same load, then TAIL_DURATION (10 s)
#     measured, in one attack (bench --warmup: its first 30 s stay out of
#     the percentiles, and so does the generator's own start on its new
#     connections), TAIL_RUNS times on one server.
#
# It prints p99 (and p50) per case, the median of the runs, and the load
# average of the machine at each run's start: on a shared machine the
# other work on the two cores moves every tail. TAIL_RT=1 (the default
# when root) runs server and generator under SCHED_RR (chrt -r 10), which
# takes most of that noise out of the measurement (it changes nothing in
# the server); TAIL_RT=0 measures under the normal scheduler.
#
# A BIN without --warm (older than the warming) is measured as it is,
# its cases named "cold"; TAIL_BENCH_BIN gives the generator (BIN's bench
# needs --interval and --preconnect).
#
# Environment: TAIL_RUNS (3), TAIL_RATE (half of saturation), TAIL_MAX_RATE,
# TAIL_BENCH_BIN (BIN),
# TAIL_SCENARIO (home), TAIL_PRECONNECT (256), TAIL_WARMUP (30s),
# TAIL_DURATION (10s), TAIL_RT, OUT (a new temp dir: reports, logs,
# tail-start.txt and tail-start.json).
#
# Needs: 2 CPUs, taskset, curl, python3 (and chrt for TAIL_RT=1).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 BIN   (an edgerec binary; environment: see the head of this script)" >&2
	exit 2
fi
bin=$(readlink -f "$1")
[ -x "$bin" ] || { echo "$1: not an executable" >&2; exit 2; }
bench_bin=$(readlink -f "${TAIL_BENCH_BIN:-$bin}")
warms="warm cold"
help=$("$bin" serve -h 2>&1 || true)
[[ "$help" == *"-warm"* ]] || warms="old"
runs=${TAIL_RUNS:-3}
scenario=${TAIL_SCENARIO:-home}
preconnect=${TAIL_PRECONNECT:-256}
warmup=${TAIL_WARMUP:-30s}
duration=${TAIL_DURATION:-10s}
rt=${TAIL_RT:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}
out=$(readlink -f "${OUT:-$(mktemp -d /tmp/tail-start.XXXXXX)}")
mkdir -p "$out"
cd "$(dirname "$0")/.." # the repository root: edgerec.yaml
config=$PWD/edgerec.yaml

command -v taskset >/dev/null || { echo "taskset not found (util-linux)" >&2; exit 1; }
taskset -c 1 true 2>/dev/null || { echo "no CPU 1: this needs 2 cores (server on 1, generator on 0)" >&2; exit 1; }
prio=() procs=${TAIL_SERVER_PROCS:-}
if [ "$rt" = 1 ]; then
	chrt -r 10 true 2>/dev/null || { echo "chrt -r failed: run as root, or TAIL_RT=0" >&2; exit 1; }
	prio=(chrt -r 10)
	# Under SCHED_RR two threads on one core take turns of 100 ms: the
	# server's second P (serve's minProcs) would measure the quantum.
	procs=${TAIL_SERVER_PROCS:-1}
fi

work=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
say() { printf '== %s\n' "$*" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
url=http://127.0.0.1:$port

# start [FLAGS]: a fresh state store, edgerec serve on core 1.
start() {
	rm -rf "$work/data/state"
	env ${procs:+GOMAXPROCS=$procs} "${prio[@]}" taskset -c 1 "$bin" serve --data "$work/data" --addr "127.0.0.1:$port" --api-key k \
		--config "$config" --keyless-rate 0 "$@" 2>>"$out/serve.log" &
	spid=$!
}
stop() {
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	spid=
}
# wait_for port|readyz: returns the moment the port accepts, or /readyz
# answers 200 (polled every 2 ms).
wait_for() {
	for _ in $(seq 5000); do
		if [ "$1" = port ]; then
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		else
			curl -sf -o /dev/null "$url/readyz" && return 0
		fi
		sleep 0.002
	done
	echo "server did not come up ($1); log:" >&2
	tail -20 "$out/serve.log" >&2
	exit 1
}
# attack MODE-ARGS... REPORT: the load from core 0.
attack() {
	local rep=${*: -1}
	GOMAXPROCS=1 "${prio[@]}" taskset -c 0 "$bench_bin" bench --url "$url" --scenario "$scenario" --items "$work/items.csv" \
		"${@:1:$#-1}" --json >"$rep"
}

say "data: edgerec gen --n 200000, edgerec build ($("$bin" version 2>&1 | head -1)); load $(load); SCHED_RR: $rt"
"$bin" gen --events "$work/ev.csv.gz" --items "$work/items.csv" --n 200000 >/dev/null
"$bin" build --events "$work/ev.csv.gz" --items "$work/items.csv" --out "$work/data/snapshots" >/dev/null 2>&1
: >"$out/runs.tsv"

rate=${TAIL_RATE:-}
if [ -z "$rate" ]; then
	start
	wait_for readyz
	attack --mode closed --connections 16 --duration 2s "$out/saturation-warmup.json"
	attack --mode closed --connections 16 --duration 5s "$out/saturation.json"
	stop
	sat=$(python3 -c "import json; print(round(json.load(open('$out/saturation.json'))['achieved_rate']))")
	rate=$((sat / 2))
	max_rate=${TAIL_MAX_RATE:-25000}
	if [ "$rate" -gt "$max_rate" ]; then
		say "saturation $sat/s (closed loop, 16 connections, 5 s); open loop at $max_rate/s, not $rate/s: the generator's limit (TAIL_MAX_RATE)"
		rate=$max_rate
	else
		say "saturation $sat/s (closed loop, 16 connections, 5 s); open loop at $rate/s"
	fi
else
	sat=0
fi

for n in $(seq "$runs"); do
	for warm in $warms; do
		flags=()
		[ "$warm" = cold ] && flags=(--warm 0)
		for from in readyz port; do
			start "${flags[@]}"
			wait_for "$from"
			l=$(load)
			rep="$out/first-$warm-$from-$n.json"
			attack --rate "$rate" --duration 1s --interval 100ms --preconnect "$preconnect" "$rep"
			stop
			printf 'first\t%s-%s\t%s\t%s\t%s\n' "$warm" "$from" "$n" "$l" "$rep" >>"$out/runs.tsv"
			say "first second, $warm, from $from, run $n (load $l): $(python3 -c "import json; r=json.load(open('$rep')); print('p50 %d us, p99 %d us, first 100 ms p99 %d us' % (r['latency_us']['p50'], r['latency_us']['p99'], r['series'][0]['p99_us']))")"
		done
	done
done

start
wait_for readyz
for n in $(seq "$runs"); do
	l=$(load)
	rep="$out/warm-$n.json"
	total=$(python3 -c "import re,sys; u={'ms':1e-3,'s':1,'m':60}; f=lambda x: sum(float(n)*u[k] for n,k in re.findall(r'([\d.]+)(ms|s|m)', x)); print('%gs' % (f('$warmup') + f('$duration')))")
	attack --rate "$rate" --duration "$total" --warmup "$warmup" --preconnect "$preconnect" "$rep"
	printf 'warm\twarm\t%s\t%s\t%s\n' "$n" "$l" "$rep" >>"$out/runs.tsv"
	say "warm, after $warmup, run $n (load $l): $(python3 -c "import json; r=json.load(open('$rep')); print('p50 %d us, p99 %d us' % (r['latency_us']['p50'], r['latency_us']['p99']))")"
done
stop

python3 - "$out" "$rate" "$sat" "$runs" "$rt" "$("$bin" version 2>&1 | head -1)" "$scenario" "$warmup" "$duration" <<'PY' | tee "$out/tail-start.txt"
import json, statistics, sys
out, rate, sat, runs, rt, version, scenario, warmup, duration = sys.argv[1:]
rows = {}
for l in open(f"{out}/runs.tsv"):
    kind, case, n, load, rep = l.rstrip("\n").split("\t")
    r = json.load(open(rep))
    rows.setdefault((kind, case), []).append({"run": int(n), "load": float(load), "p50_us": r["latency_us"]["p50"],
        "p99_us": r["latency_us"]["p99"], "first_100ms_p99_us": r["series"][0]["p99_us"] if r["series"] else None,
        "achieved_rate": r["achieved_rate"], "ok": r["ok"], "requests": r["requests"], "status": r["status"], "report": rep})
print(f"edgerec {version}: {scenario} at {rate}/s open loop ({'saturation ' + sat + '/s, closed loop of 16' if sat != '0' else 'TAIL_RATE'}), server on one core; "
      f"SCHED_RR {'on' if rt == '1' else 'off'}; medians of {runs} runs")
print(f"{'case':34} {'p50 us':>7} {'p99 us':>9} {'p99 runs (load)':<44} {'non-2xx':>7}")
names = {("first", "warm-readyz"): "first second from /readyz 200", ("first", "warm-port"): "first second from the port, warming",
         ("first", "cold-readyz"): "first second, --warm 0", ("first", "cold-port"): "first second from the port, --warm 0",
         ("first", "old-readyz"): "first second from /readyz 200", ("first", "old-port"): "first second from the port",
         ("warm", "warm"): f"warm ({duration} after {warmup})"}
result = {"version": version, "scenario": scenario, "rate": int(rate), "saturation": int(sat), "runs": int(runs), "sched_rr": rt == "1", "cases": []}
for key in [("first", c) for c in ("warm-readyz", "warm-port", "cold-readyz", "cold-port", "old-readyz", "old-port")] + [("warm", "warm")]:
    if key not in rows:
        continue
    xs = rows[key]
    p50 = statistics.median(x["p50_us"] for x in xs)
    p99 = statistics.median(x["p99_us"] for x in xs)
    each = ", ".join(f"{x['p99_us']:.0f} ({x['load']:.1f})" for x in xs)
    bad = sum(x["requests"] - x["ok"] for x in xs)
    print(f"{names[key]:34} {p50:7.0f} {p99:9.0f} {each:<44} {bad:7d}")
    result["cases"].append({"case": key[1] if key[0] == "first" else "warm", "name": names[key], "p50_us": p50, "p99_us": p99, "runs": xs})
json.dump(result, open(f"{out}/tail-start.json", "w"), indent=1)
PY
