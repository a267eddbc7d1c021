#!/usr/bin/env bash
# make soak: edgerec serve under mixed traffic for a long while, open loop
# at 70% of its saturation, with a new snapshot built and loaded and the
# config reloaded every minute; it must answer every request 2xx and hold
# its memory. gen (the make run sample) → build → serve → saturation of
# the site scenario (every kind of answer: recommendations, decisions,
# one-call pages, events): the highest open-loop rate, raised by 1.25x
# every 10 s, with p99 under SOAK_MAX_P99, p50 under SOAK_MAX_P50 and all
# of it sent → the soak →
# a summary. The
# server's RSS (VmRSS) is sampled every SOAK_SAMPLE seconds; the growth is
# from the first sample after SOAK_WARMUP to the last.
#
# Exit 1 when a request failed (any non-2xx or transport error: the site
# scenario has no expected 4xx), a swap or a reload failed, the RSS grew
# by SOAK_MAX_GROWTH % or more, a minute after the warm-up had a p99 over
# SOAK_MAX_P99 (the server fell behind), or p99 rose (the median of the
# last three minutes over twice that of the first three after the warm-up,
# and over 10 ms).
#
#   SOAK_DURATION   10m      soak length (s, m or h)
#   SOAK_WARMUP     2m       RSS growth counts from here
#   SOAK_RATE                requests/s; default SOAK_SHARE % of the measured saturation
#   SOAK_SHARE      70
#   SOAK_MAX_P99    1s       the p99 that counts as saturated: queues growing, not the stalls of a
#                            machine shared with other work (the 2 shared cores of the development
#                            machine often missed 50 ms at 1,000/s, the server idle most of the time)
#   SOAK_MAX_P50    10ms     the p50 that counts as saturated: a queue moves the median, a stall does
#                            not (2026-12-06: at 5,960/s the p50 was 28 ms with p99 270 ms, under 1 s,
#                            and 70% of the next step fell behind by seconds)
#   SOAK_CONNECTIONS 64      open connections of the load
#   SOAK_EVERY      60       seconds between snapshot swaps (and between config reloads)
#   SOAK_SAMPLE     10       seconds between RSS samples
#   SOAK_MAX_GROWTH 10       RSS growth (%) that fails the soak
#   SOAK_USERS      10000    distinct visitor ids of the traffic (Zipf)
#   SOAK_N          200000   events of the generated shop
#   SOAK_OUT        soak-out/<time>  reports, samples, heap profiles, server log
#   SOAK_SERVER_CPU 1, SOAK_BENCH_CPU 0   cores for taskset (2 cores or more)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin/edgerec}

secs() { # a duration (90, 90s, 10m, 1h) in seconds
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}
duration=$(secs "${SOAK_DURATION:-10m}")
warmup=$(secs "${SOAK_WARMUP:-2m}")
every=${SOAK_EVERY:-60}
sample=${SOAK_SAMPLE:-10}
share=${SOAK_SHARE:-70}
maxgrowth=${SOAK_MAX_GROWTH:-10}
users=${SOAK_USERS:-10000}
maxp99=${SOAK_MAX_P99:-1s}
maxp50=${SOAK_MAX_P50:-10ms}
out=${SOAK_OUT:-soak-out/$(date -u +%Y%m%dT%H%M%SZ)}
key=soak-key
if [ "$warmup" -ge "$duration" ]; then
	echo "soak: SOAK_WARMUP ($warmup s) must be shorter than SOAK_DURATION ($duration s)" >&2
	exit 2
fi

# Server and load generator on cores of their own when there are two.
scpu= bcpu=
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	scpu="taskset -c ${SOAK_SERVER_CPU:-1}" bcpu="taskset -c ${SOAK_BENCH_CPU:-0}"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	jobs -p | xargs -r kill 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "soak: output in $out"
$bin gen --events "$work/ev.csv.gz" --items "$work/items.csv.gz" --n "${SOAK_N:-200000}" >/dev/null
build() { $bcpu nice -n 19 $bin build --events "$work/ev.csv.gz" --items "$work/items.csv.gz" --out "$work/data/snapshots" >>"$out/build.log" 2>&1; }
build
# Two configs to reload in turn: the bundled one, and the same with the
# product page's diversity cap changed.
cp edgerec.yaml "$work/a.yaml"
sed 's/^    max_per_category: 3$/    max_per_category: 2/' edgerec.yaml >"$work/b.yaml"
cmp -s "$work/a.yaml" "$work/b.yaml" && { echo "soak: cannot derive a second config from edgerec.yaml" >&2; exit 2; }
cp "$work/a.yaml" "$work/edgerec.yaml"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
url=http://127.0.0.1:$port
EDGEREC_API_KEY=$key $scpu $bin serve --data "$work/data" --addr "127.0.0.1:$port" --config "$work/edgerec.yaml" \
	--keyless-rate 0 2>"$out/serve.log" &
pid=$!
for _ in $(seq 100); do curl -sf "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$url/readyz" >/dev/null || { echo "soak: server not ready"; cat "$out/serve.log"; exit 1; }

load=(--url "$url" --scenario site --users "$users" --api-key "$key" --connections "${SOAK_CONNECTIONS:-64}")
load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "${SOAK_RATE:-}" ]; then
	rate=$SOAK_RATE sat="(not measured: SOAK_RATE)"
else
	$bcpu $bin bench "${load[@]}" --mode step --rate 1000 --factor 1.25 --duration 10s --max-p99 "$maxp99" --max-p50 "$maxp50" --json \
		2>"$out/saturation.txt" >"$out/saturation.json"
	sat=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["saturation_rate"]))' "$out/saturation.json")
	[ "$sat" -gt 0 ] || { echo "soak: not even 1000 req/s with p99 under $maxp99 and p50 under $maxp50:"; cat "$out/saturation.txt"; exit 1; }
	rate=$((sat * share / 100))
fi
echo "soak: ${duration}s at $rate req/s (saturation $sat req/s), server pid $pid; load average $load0"

rss() { awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s%s", sep, $2; sep="\t"}' "/proc/$pid/status"; }
heap() { curl -sf -H "Authorization: Bearer $key" -o "$out/heap-$1.pprof" "$url/debug/pprof/heap" || true; }
metrics() { # values of /metrics, tab-separated
	curl -sf "$url/metrics" | awk -v want="$*" 'BEGIN {n = split(want, w, " ")} {v[$1] = $2}
		END {for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? "\t" : ""), v[w[i]]}'
}

$bcpu $bin bench "${load[@]}" --rate "$rate" --duration "${duration}s" --table "${sample}s,1m" --out "$out/bench" >"$out/bench.txt" &
bp=$!
start=$(date +%s.%N)
elapsed() { python3 -c "import time; print(int(time.time() - $start))"; }
printf 't_s\trss_kb\tanon_kb\tfile_kb\theap_inuse\theap_sys\theap_live\theap_released\tstack_sys\tgoroutines\tevents\tcompactions\tcompaction_s\tl0_tables\tstate_disk\n' >"$out/rss.tsv"
swaps=0 swapfail=0 reloads=0 reloadfail=0 next=$sample act=$((every / 2)) heaped=
while kill -0 "$bp" 2>/dev/null; do
	t=$(elapsed)
	if [ "$t" -ge "$next" ]; then
		printf '%s\t%s\t%s\n' "$t" "$(rss)" "$(metrics go_memstats_heap_inuse_bytes go_memstats_heap_sys_bytes go_gc_heap_live_bytes \
			go_memstats_heap_released_bytes go_memstats_stack_sys_bytes go_goroutines edgerec_events_ingested_total \
			edgerec_state_compactions_total edgerec_state_compaction_seconds_total edgerec_state_l0_tables edgerec_state_disk_bytes)" >>"$out/rss.tsv"
		next=$((next + sample))
		if [ -z "$heaped" ] && [ "$t" -ge "$warmup" ]; then heap warmup; heaped=1; fi
	fi
	if [ "$t" -ge "$act" ] && [ "$t" -lt "$duration" ]; then
		# A new snapshot at every whole minute, a config reload half a
		# minute before each (alternately two SIGHUPs and two POST
		# /v1/admin/config): the warm-up sees both.
		if [ $(((act / (every / 2)) % 2)) = 0 ]; then
			swaps=$((swaps + 1))
			if ! build || ! curl -sf -X POST -H "Authorization: Bearer $key" "$url/v1/admin/snapshots" >/dev/null; then
				swapfail=$((swapfail + 1)); echo "soak: snapshot swap $swaps failed at ${t}s" >&2
			fi
		else
			reloads=$((reloads + 1))
			if [ $((reloads % 2)) = 0 ]; then cp "$work/a.yaml" "$work/edgerec.yaml"; else cp "$work/b.yaml" "$work/edgerec.yaml"; fi
			if [ $((reloads % 4)) -lt 2 ]; then
				kill -HUP "$pid"
			elif ! curl -sf -X POST -H "Authorization: Bearer $key" "$url/v1/admin/config" >/dev/null; then
				reloadfail=$((reloadfail + 1)); echo "soak: config reload $reloads failed at ${t}s" >&2
			fi
		fi
		act=$((act + every / 2))
	fi
	sleep 0.5
done
wait "$bp" || { echo "soak: bench failed"; cat "$out/bench.txt"; exit 1; }
heap end
load1=$(cut -d' ' -f1-3 /proc/loadavg)
hupfail=$(grep -c "config not reloaded" "$out/serve.log" || true)
reloadfail=$((reloadfail + hupfail))
kill -0 "$pid" 2>/dev/null || { echo "soak: the server died"; tail -20 "$out/serve.log"; exit 1; }

python3 - "$out" "$warmup" "$maxgrowth" "$rate" "$sat" "$swaps" "$swapfail" "$reloads" "$reloadfail" "$load0" "$load1" "$maxp99" <<'PY'
import json, re, statistics, sys
out, warmup, maxgrowth, rate, sat = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
swaps, swapfail, reloads, reloadfail = map(int, sys.argv[6:10])
load0, load1, maxp99 = sys.argv[10], sys.argv[11], sys.argv[12]
m = re.fullmatch(r"([0-9.]+)(us|µs|ms|s|m)", maxp99)
maxp99_us = float(m.group(1)) * {"us": 1, "µs": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)] if m else 1e6
r = json.load(open(f"{out}/bench/report.json"))
errors = r["requests"] - r["ok"]
rows = [l.split("\t") for l in open(f"{out}/rss.tsv").read().split("\n")[1:] if l]
samples = [(int(t), int(kb)) for t, kb, *_ in rows if kb]
after = [s for s in samples if s[0] >= warmup]
lines = []
p = lines.append
p(f"soak summary ({out})")
p(f"rate          {rate} req/s open loop (saturation {sat}), site scenario; load average {load0} at start, {load1} at end")
p(f"requests      {r['requests']} of {r.get('scheduled', r['requests'])} scheduled in {r['duration_seconds']:.0f} s ({r['achieved_rate']:.0f}/s)")
p(f"errors        {errors}  status {r['status']} {r['errors'] or ''}")
p(f"swaps         {swaps} snapshot builds loaded, {swapfail} failed; {reloads} config reloads, {reloadfail} failed")
growth = None
if after:
    (t0, a), (t1, b) = after[0], after[-1]
    growth = 100.0 * (b - a) / a
    peak = max(kb for _, kb in after)
    p(f"RSS           {samples[0][1]/1024:.1f} MiB at {samples[0][0]} s, {a/1024:.1f} MiB at {t0} s (after the warm-up), "
      f"{b/1024:.1f} MiB at {t1} s: {growth:+.1f}% (peak {peak/1024:.1f} MiB; fails at {maxgrowth:g}%)")
live = [(int(w[0]), int(float(w[6]))) for w in rows if len(w) > 6 and w[6]]
live_after = [s for s in live if s[0] >= warmup]
if live_after:
    (t0, a), (t1, b) = live_after[0], live_after[-1]
    p(f"live heap     {a/2**20:.1f} MiB at {t0} s, {b/2**20:.1f} MiB at {t1} s, peak {max(v for _, v in live_after)/2**20:.1f} MiB: "
      f"what the collections kept (the caches filling up to their budgets; a leak would go on past them)")
lat = r["latency_us"]
p(f"latency       p50 {lat['p50']:.0f} us  p99 {lat['p99']:.0f} us  p99.9 {lat['p99.9']:.0f} us  max {lat['max']:.0f} us")
# interval from to requests errors p50_us p99_us
minutes = [(int(w[1]), int(w[6])) for w in (l.split() for l in
    open(f"{out}/bench.txt").read().split("per 1m0s\n", 1)[-1].splitlines()[1:]) if len(w) >= 7]
p("p99 per minute (us): " + " ".join(str(v) for _, v in minutes))
steady = [v for t, v in minutes if t >= warmup]
p("RSS per minute (MiB): " + " ".join(f"{kb/1024:.1f}" for t, kb in samples if t % 60 < 10))
fail = []
if errors: fail.append(f"{errors} failed requests")
if r["achieved_rate"] < 0.95 * float(rate): fail.append(f"the load fell behind ({r['achieved_rate']:.0f}/s of {rate}/s): past saturation, or the cores were busy with other work")
if swapfail or reloadfail: fail.append("a swap or reload failed")
if growth is None: fail.append("no RSS sample after the warm-up")
elif growth >= maxgrowth: fail.append(f"RSS grew {growth:.1f}% >= {maxgrowth:g}%")
# Latency: a minute after the warm-up with p99 over SOAK_MAX_P99 is a
# queue that grew (the server fell behind, or its core was taken), and a
# p99 whose last minutes are more than twice its first (and over 10 ms)
# is a trend, not noise.
over = [(i, v) for i, v in enumerate(steady) if v > maxp99_us]
if over:
    fail.append(f"p99 over {maxp99} in {len(over)} of the {len(steady)} minutes after the warm-up (worst {max(v for _, v in over)/1e3:.0f} ms): the server fell behind")
elif len(steady) >= 6:
    first, last = statistics.median(steady[:3]), statistics.median(steady[-3:])
    p(f"p99 trend     median of the first three minutes after the warm-up {first/1e3:.1f} ms, of the last three {last/1e3:.1f} ms")
    if last > 2 * first and last > 10e3:
        fail.append(f"p99 rose from {first/1e3:.1f} to {last/1e3:.1f} ms")
p("soak: " + ("FAILED: " + "; ".join(fail) if fail else "ok"))
text = "\n".join(lines) + "\n"
open(f"{out}/summary.txt", "w").write(text)
print(text, end="")
sys.exit(1 if fail else 0)
PY
