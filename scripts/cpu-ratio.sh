#!/usr/bin/env bash
# scripts/cpu-ratio.sh BIN: server CPU per request of edgerec against a
# static fasthttp reply of the same body size (`edgerec bench static`),
# scenario by scenario.
#
# Servers run pinned to core 0 (taskset -c 0: one core, GOMAXPROCS 1), the
# load generator (`edgerec bench`) on core 1. edgerec and its floor get the
# same targets and the same load: an open loop at CPU_RATE, or with
# CPU_MODE=closed a closed loop of CPU_CONNECTIONS, which saturates the
# server's core (what `make bench` reports: fixed per-wake-up costs are
# shared by many requests there, so the ratios show the engine's work; at
# 5000/s the floor alone costs 36-55 us a request and compresses them).
# CPU per request is the delta of utime+stime of the server process
# (/proc/PID/stat) over a run, divided by the requests answered. Every
# measured run follows a warm-up; edgerec and floor runs alternate (ABBA),
# and each side's figure is the median of CPU_RUNS runs.
#
# Scenarios (one row each):
#   cache-hit    GET /v1/items/{id}/similar?k=10 over the 100 most popular
#                items (answers from the rendered-body cache)
#   pebble-miss  the same over every catalog item with a distinct exclude=
#                per request, served with --cache-mb 2 (body and list cache
#                mostly miss: the miss rate is read from /metrics and shown)
#   personal     GET /v1/users/cpu-vN/recommendations?k=10, visitors with 20
#                view/cart events each (POSTed to /v1/events first)
#   decide       GET /v1/decide?page=lp_consulting&visitor=cpu-vN (returning
#                visitors: each is decided once before)
#   page         GET /v1/page?page=lp_consulting&visitor=cpu-vN
#                &placements=home,product_page&item=ID&k=4
#
# Data: `edgerec gen --n 200000` (the `make run` sample), `edgerec build`,
# `edgerec serve --config edgerec.yaml`. Works with any binary with today's
# CLI (gen, build, serve, bench, bench static, version).
#
# Environment:
#   CPU_MODE        open (default) or closed
#   CPU_RATE        open loop: requests a second, the same for both (5000)
#   CPU_CONNECTIONS closed loop: connections (16)
#   CPU_DURATION    length of a measured run (10s); CPU_WARMUP: of the
#                   warm-up before each (2s)
#   CPU_RUNS        runs per side and scenario, the median is shown (3)
#   CPU_VISITORS    visitors cpu-v1..N of personal, decide, page (1000)
#   CPU_SCENARIOS   a subset, space-separated (all five)
#   CPU_BENCH_BIN   the edgerec binary whose `bench` generates the load
#                   (BIN): keep one generator to compare two BINs
#   CPU_BENCH_PROCS GOMAXPROCS of the generator (2, see below)
#   CPU_FLOOR_BIN   the edgerec binary whose `bench static` is the floor
#                   (BIN); CPU_FLOOR_BARE=1: the floor without timeouts
#   OUT             output directory (a new temp dir): the table goes to
#                   stdout and $OUT/cpu-ratio.txt, the figures to
#                   $OUT/cpu-ratio.json; bench reports and logs stay there
#
# A targets file is walked in order by all of bench's workers together
# (bench.RoundRobin), so the pebble-miss file's distinct requests each go
# once; read its cache-miss column (about 2 misses a request when every
# answer is rendered from Pebble) before its CPU figures. (A bench of
# e72b131 or older cycled the file once per worker, and most pebble-miss
# answers came from the body cache: give such a binary a newer
# CPU_BENCH_BIN.)
#
# Needs: 2 CPUs or more, taskset, curl, python3.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 BIN   (an edgerec binary; environment: see the head of this script)" >&2
	exit 2
fi
bin=$(readlink -f "$1")
[ -x "$bin" ] || { echo "$1: not an executable" >&2; exit 2; }
bench_bin=$(readlink -f "${CPU_BENCH_BIN:-$bin}")
floor_bin=$(readlink -f "${CPU_FLOOR_BIN:-$bin}")
# The floor serves connections as edgerec serve does (its read, write and
# idle timeouts: deadlines set for every request cost about 0.8 us of
# them), so the two differ by their handlers alone; CPU_FLOOR_BARE=1, or a
# floor binary without the flags, serves with fasthttp's defaults.
floor_flags=()
if [ -z "${CPU_FLOOR_BARE:-}" ] && "$floor_bin" bench static -h 2>&1 | grep -q -- -read-timeout; then
	floor_flags=(--read-timeout 5s --write-timeout 5s --idle-timeout 60s)
fi
rate=${CPU_RATE:-5000}
mode=${CPU_MODE:-open}
connections=${CPU_CONNECTIONS:-16}
duration=${CPU_DURATION:-10s}
warmup=${CPU_WARMUP:-2s}
runs=${CPU_RUNS:-3}
visitors=${CPU_VISITORS:-1000}
scenarios=${CPU_SCENARIOS:-cache-hit pebble-miss personal decide page}
# bench's open-loop scheduler slept in nanosleep(2) on a locked thread
# up to a141990; with GOMAXPROCS=1 (what pinning to one core gives) its
# workers could starve behind it, depending on start-up timing (with a
# targets file of 10,000 lines or more: 16 answers a second at --rate
# 1000, or the rate held at 5000 but with a p99 of 2 s and 10,000
# workers). Two Ps on the one core avoided it, and stay the default so
# that figures compare with earlier ones and with older CPU_BENCH_BINs.
bench_procs=${CPU_BENCH_PROCS:-2}
out=$(readlink -f "${OUT:-$(mktemp -d /tmp/cpu-ratio.XXXXXX)}")
mkdir -p "$out"
cd "$(dirname "$0")/.." # the repository root: edgerec.yaml
config=$PWD/edgerec.yaml
key=cpu-ratio-key

command -v taskset >/dev/null || { echo "taskset not found (util-linux)" >&2; exit 1; }
taskset -c 1 true 2>/dev/null || { echo "no CPU 1: this needs 2 cores (servers on 0, generator on 1)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
stop_pid() { # stop_pid PID: ends a server this script started
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=() p
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

say() { printf '== %s\n' "$*" >&2; }
want() { [[ " $scenarios " == *" $1 "* ]]; } # want SCENARIO: is it in CPU_SCENARIOS?
load() { cut -d' ' -f1-3 /proc/loadavg; } # 1, 5 and 15 min load averages
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_up() {
	for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
	echo "server at $1 did not come up" >&2
	exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
# cache_counts URL: "hits misses" of edgerec's list and body cache ("- -"
# when the binary has no such metric).
cache_counts() {
	curl -s "$1/metrics" | awk '
		/^edgerec_cache_requests_total\{result="hit"\}/ { h = $2 }
		/^edgerec_cache_requests_total\{result="miss"\}/ { m = $2 }
		END { print (h == "" ? "-" : h), (m == "" ? "-" : m) }'
}

# cpu.py: the Python side of this script (the bench runs and CPU readings
# are bash's): targets files, the few plain HTTP calls around the runs
# (keep-alive, status checked), and the check of each bench report.
cat >"$work/cpu.py" <<'PY'
import http.client, json, random, statistics, sys, urllib.parse

def conn(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)

def call(c, method, path, body=None, headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if not 200 <= r.status < 300:
        sys.exit(f"FAILED: {method} {path}: HTTP {r.status}: {data[:300]!r}")
    return data

def paths(targets):
    return [l.split()[1] for l in open(targets) if l.startswith("GET ")]

def catalog(items_csv):
    return [l.split(",", 1)[0] for l in open(items_csv).read().splitlines()[1:] if l]

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "targets":  # targets SCENARIO TAG WORK VISITORS LINES: a targets file on stdout
    scen, tag, work, visitors, lines = args[0], args[1], args[2], int(args[3]), int(args[4])
    popular = json.load(open(f"{work}/popular.json"))
    if scen == "cache-hit":
        for it in popular:
            print(f"GET /v1/items/{it}/similar?k=10")
    elif scen == "pebble-miss":  # every catalog item in turn, each request with its own (unknown) exclude id
        items = catalog(f"{work}/items.csv")
        for i in range(lines):
            print(f"GET /v1/items/{items[i % len(items)]}/similar?k=10&exclude=cpu-{tag}-{i}")
    elif scen == "personal":
        for v in range(1, visitors + 1):
            print(f"GET /v1/users/cpu-v{v}/recommendations?k=10")
    elif scen == "decide":
        for v in range(1, visitors + 1):
            print(f"GET /v1/decide?page=lp_consulting&visitor=cpu-v{v}")
    elif scen == "page":
        for v in range(1, visitors + 1):
            print(f"GET /v1/page?page=lp_consulting&visitor=cpu-v{v}&placements=home,product_page"
                  f"&item={popular[(v - 1) % len(popular)]}&k=4")
    else:
        sys.exit(f"unknown scenario {scen}")
elif cmd == "popular":  # popular URL: the 100 most popular item ids, JSON
    c = conn(args[0])
    print(json.dumps([it["id"] for it in json.loads(call(c, "GET", "/v1/popular?k=100"))["items"]]))
elif cmd == "size":  # size URL TARGETS: the median body size over 25 targets spread over the file
    c, ps = conn(args[0]), paths(args[1])
    sample = ps[:: max(len(ps) // 25, 1)][:25]
    print(int(statistics.median(len(call(c, "GET", p)) for p in sample)))
elif cmd == "get-all":  # get-all URL TARGETS: every target once
    c = conn(args[0])
    for p in paths(args[1]):
        call(c, "GET", p)
elif cmd == "events":  # events URL KEY ITEMS_CSV VISITORS PER: PER events (3/4 view, 1/4 cart) for cpu-v1..N
    c, key, items, visitors, per = conn(args[0]), args[1], catalog(args[2]), int(args[3]), int(args[4])
    rng = random.Random(1)
    lines = [json.dumps({"user_id": f"cpu-v{v}", "item_id": it, "event": rng.choice(["view"] * 3 + ["cart"])})
             for v in range(1, visitors + 1) for it in rng.sample(items, min(per, len(items)))]
    for i in range(0, len(lines), 1000):  # the API takes up to 1000 a request
        call(c, "POST", "/v1/events", "\n".join(lines[i:i + 1000]) + "\n",
             {"Authorization": "Bearer " + key, "Content-Type": "application/x-ndjson"})
elif cmd == "history":  # history URL KEY VISITOR: the visitor's events over 30 days (its profile)
    p = json.loads(call(conn(args[0]), "GET", "/v1/users/" + args[2], headers={"Authorization": "Bearer " + args[1]}))
    print(sum(p["counts"]["30d"]["events"].values()))
elif cmd == "check":  # check REPORT: fails unless every answer of the bench run was 2xx
    r = json.load(open(args[0]))
    if r["requests"] == 0 or r["ok"] != r["requests"] or r["errors"]:
        sys.exit(f"FAILED: {args[0]}: {r['requests']} requests, {r['ok']} 2xx, status {r['status']}, errors {r['errors']}")
elif cmd == "line":  # line REPORT SIDE N TICKS TCK: one run's figures, for the log
    r, ticks, tck = json.load(open(args[0])), int(args[3]), int(args[4])
    print(f"   {args[1]:8} run {args[2]}: {r['requests']} requests at {r['achieved_rate']:.0f}/s, "
          f"p99 {r['latency_us']['p99']:.0f} us, {ticks * 1e6 / tck / r['requests']:.1f} us CPU/req")
else:
    sys.exit(f"cpu.py: unknown command {cmd}")
PY
py() { python3 "$work/cpu.py" "$@"; }

# Targets files, one "GET /path" a line (bench --scenario FILE). Most are
# fixed; pebble-miss gets a new file per bench run (TAG) so that no answer
# of one run is cached from an earlier one.
dur_s() { python3 -c 'import re,sys; u={"ns":1e-9,"us":1e-6,"µs":1e-6,"ms":1e-3,"s":1,"m":60,"h":3600}; print(sum(float(n)*u[x] for n,x in re.findall(r"([\d.]+)(ns|us|µs|ms|s|m|h)",sys.argv[1])))' "$1"; }
pebble_lines=$(python3 -c "import math; print(math.ceil($rate * max($(dur_s "$duration"), $(dur_s "$warmup"))) + $rate)")
targets() { # targets SCENARIO TAG: prints the path of its targets file
	local f=$work/targets-$1.txt
	[ "$1" = pebble-miss ] && f=$work/targets-$1-$2.txt
	[ -f "$f" ] || py targets "$1" "$2" "$work" "$visitors" "$pebble_lines" >"$f"
	echo "$f"
}

# attack URL TARGETS DURATION REPORT: one run from core 1, open loop at
# CPU_RATE or, with CPU_MODE=closed, a closed loop of CPU_CONNECTIONS;
# fails unless every answer was 2xx.
attack() {
	if [ "$mode" = closed ]; then
		GOMAXPROCS=$bench_procs taskset -c 1 "$bench_bin" bench --url "$1" --mode closed --connections "$connections" \
			--duration "$3" --scenario "$2" --json >"$4"
	else
		GOMAXPROCS=$bench_procs taskset -c 1 "$bench_bin" bench --url "$1" --mode open --rate "$rate" --duration "$3" \
			--scenario "$2" --json >"$4"
	fi
	py check "$4"
}

# run SCENARIO SIDE N URL PID: a warm-up, then a measured run, noted in
# runs.tsv (scenario, side, run, CPU ticks before and after, cache hits and
# misses before and after, report).
run() {
	local scen=$1 side=$2 n=$3 url=$4 pid=$5 tg t0 t1 c0 c1
	attack "$url" "$(targets "$scen" "w$n")" "$warmup" "$out/$scen-$side-$n-warmup.json"
	tg=$(targets "$scen" "m$n")
	c0=$(cache_counts "$url")
	t0=$(cpu_ticks "$pid")
	attack "$url" "$tg" "$duration" "$out/$scen-$side-$n.json"
	t1=$(cpu_ticks "$pid")
	c1=$(cache_counts "$url")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$side" "$n" "$t0" "$t1" "$c0 $c1" "$out/$scen-$side-$n.json" >>"$out/runs.tsv"
	py line "$out/$scen-$side-$n.json" "$side" "$n" $((t1 - t0)) "$(getconf CLK_TCK)" >&2
}

# scenario NAME URL PID: the typical answer size, a fresh floor of that
# size on core 0, then CPU_RUNS rounds of edgerec and floor (ABBA order).
scenario() {
	local scen=$1 url=$2 pid=$3 size sport spid
	size=$(py size "$url" "$(targets "$scen" size)")
	sport=$(free_port)
	taskset -c 0 "$floor_bin" bench static --addr "127.0.0.1:$sport" --size "$size" "${floor_flags[@]}" 2>"$out/static-$scen.log" &
	spid=$!
	pids+=("$spid")
	wait_up "http://127.0.0.1:$sport/"
	say "$scen: $size-byte answers; edgerec pid $pid, floor pid $spid; $rate/s for $duration after $warmup, $runs runs (load $(load))"
	printf '%s\t%s\t%s\n' "$scen" "$size" "$(load)" >>"$out/sizes.tsv"
	for n in $(seq "$runs"); do
		if [ $((n % 2)) = 1 ]; then
			run "$scen" edgerec "$n" "$url" "$pid"
			run "$scen" floor "$n" "http://127.0.0.1:$sport" "$spid"
		else
			run "$scen" floor "$n" "http://127.0.0.1:$sport" "$spid"
			run "$scen" edgerec "$n" "$url" "$pid"
		fi
	done
	stop_pid "$spid"
}

# serve [FLAGS]: starts edgerec on core 0 (taskset execs it: $! is its
# pid); sets url and epid.
serve() {
	local port limit=()
	port=$(free_port)
	# The keyless limit stays on (its cost is measured) but never binds:
	# the generator is one address sending thousands a second.
	if "$bin" serve -h 2>&1 | grep -q keyless-rate; then limit=(--keyless-rate 1e9); fi
	url=http://127.0.0.1:$port
	taskset -c 0 "$bin" serve --data "$work/data" --addr "127.0.0.1:$port" --api-key "$key" --config "$config" "${limit[@]}" "$@" \
		2>>"$out/serve.log" &
	epid=$!
	pids+=("$epid")
	wait_up "$url/readyz"
}

load_before=$(load)
say "data: edgerec gen --n 200000, edgerec build ($("$bin" version 2>&1 | head -1)); load $load_before"
"$bin" gen --events "$work/ev.csv.gz" --items "$work/items.csv" --n 200000 >/dev/null
"$bin" build --events "$work/ev.csv.gz" --items "$work/items.csv" --out "$work/data/snapshots" >/dev/null 2>&1
: >"$out/runs.tsv"
: >"$out/sizes.tsv"

# pebble-miss first, on a server of its own with a 1 MiB cache (one
# server at a time: the data directory's state store is locked).
if want pebble-miss; then
	say "edgerec serve --cache-mb 2"
	serve --cache-mb 2
	py popular "$url" >"$work/popular.json"
	scenario pebble-miss "$url" "$epid"
	stop_pid "$epid"
fi
if want cache-hit || want personal || want decide || want page; then
	say "edgerec serve"
	serve
	[ -f "$work/popular.json" ] || py popular "$url" >"$work/popular.json"
	if want cache-hit; then scenario cache-hit "$url" "$epid"; fi
	if want personal || want decide || want page; then
		say "posting 20 events for each of cpu-v1..cpu-v$visitors"
		py events "$url" "$key" "$work/items.csv" "$visitors" 20
		for v in cpu-v1 "cpu-v$visitors"; do
			h=$(py history "$url" "$key" "$v")
			[ "$h" = 20 ] || { echo "FAILED: $v has $h events in its profile, want 20" >&2; exit 1; }
		done
	fi
	if want personal; then scenario personal "$url" "$epid"; fi
	if want decide || want page; then
		py get-all "$url" "$(targets decide -)" # every visitor decided once: all return
	fi
	if want decide; then scenario decide "$url" "$epid"; fi
	if want page; then scenario page "$url" "$epid"; fi
	stop_pid "$epid"
fi
load_after=$(load)

python3 - "$out" "$rate" "$duration" "$warmup" "$runs" "$(getconf CLK_TCK)" "$bin" "$("$bin" version 2>&1 | head -1)" \
	"$load_before" "$load_after" "$(nproc --all)" "$bench_bin" "$mode/$connections" "${floor_flags[*]:-bare}" <<'PY' | tee "$out/cpu-ratio.txt"
import json, statistics, sys
out, rate, duration, warmup, runs, tck, binary, version, load0, load1, ncpu, bench_bin, mode, floor = sys.argv[1:]
rate, runs, tck = int(rate), int(runs), int(tck)
sizes, loads = {}, {}
for l in open(f"{out}/sizes.tsv"):
    scen, size, load = l.rstrip("\n").split("\t")
    sizes[scen], loads[scen] = int(size), load
rows = {}
for l in open(f"{out}/runs.tsv"):
    scen, side, n, t0, t1, counts, report = l.rstrip("\n").split("\t")
    r = json.load(open(report))
    h0, m0, h1, m1 = counts.split()
    rows.setdefault(scen, {}).setdefault(side, []).append({
        "run": int(n), "cpu_us_per_req": (int(t1) - int(t0)) * 1e6 / tck / r["requests"],
        "requests": r["requests"], "achieved_rate": r["achieved_rate"], "p99_us": r["latency_us"]["p99"],
        "cache_hits": None if "-" in (h0, h1) else float(h1) - float(h0),
        "cache_misses": None if "-" in (m0, m1) else float(m1) - float(m0), "report": report})
result = {"binary": binary, "version": version, "bench_binary": bench_bin, "mode": mode, "floor": floor, "rate": rate, "duration": duration,
          "warmup": warmup, "runs": runs, "cpus": int(ncpu), "load_before": load0, "load_after": load1, "scenarios": []}
closed = mode.startswith("closed")
if closed:
    rate = 0  # no rate to hold
print(f"edgerec {version}: server CPU per request "
      f"{'in a closed loop of ' + mode.split('/')[1] + ' connections' if closed else f'at {rate}/s'}, median of {runs} runs of {duration}; "
      f"floor: {floor}; "
      f"load average {load0} before, {load1} after")
print(f"{'scenario':12} {'body B':>7} {'edgerec us/req':>15} {'floor us/req':>13} {'ratio':>7} {'cache miss':>19}  notes")
for scen in ["cache-hit", "pebble-miss", "personal", "decide", "page"]:
    if scen not in rows:
        continue
    e, f = rows[scen]["edgerec"], rows[scen]["floor"]
    me = statistics.median(x["cpu_us_per_req"] for x in e)
    mf = statistics.median(x["cpu_us_per_req"] for x in f)
    hits = [x["cache_hits"] for x in e]
    misses = [x["cache_misses"] for x in e]
    miss = None if None in hits + misses or sum(hits) + sum(misses) == 0 else sum(misses) / (sum(hits) + sum(misses))
    per_req = None if None in misses else sum(misses) / sum(x["requests"] for x in e)
    miss_txt = "-" if miss is None else f"{miss * 100:.1f}% ({per_req:.2f}/req)"
    # A run that fell behind the rate, or stalled (its p99 over 50 ms: the
    # machine busy elsewhere, or the generator starved), is named here.
    notes = [f"{'RATE NOT HELD' if x['achieved_rate'] < 0.98 * rate else 'STALLED'}: "
             f"{s} run {x['run']} {x['achieved_rate']:.0f}/s, p99 {x['p99_us'] / 1000:.0f} ms;"
             for s, xs in (("edgerec", e), ("floor", f)) for x in xs
             if x["achieved_rate"] < 0.98 * rate or x["p99_us"] > 50_000]
    held = all(x["achieved_rate"] >= 0.98 * rate for x in e + f)
    if scen == "pebble-miss" and per_req is not None and per_req < 1.5:
        notes.append(f"MOSTLY CACHED: {per_req:.2f} misses a request, about 2 when every answer comes from Pebble"
                     " (see the caveat at the head of scripts/cpu-ratio.sh);")
    print(f"{scen:12} {sizes[scen]:7d} {me:15.1f} {mf:13.1f} {me / mf:6.2f}x {miss_txt:>19}  {' '.join(notes)}".rstrip())
    result["scenarios"].append({"scenario": scen, "body_bytes": sizes[scen], "edgerec_us_per_req": me,
                                "floor_us_per_req": mf, "ratio": me / mf, "cache_miss_rate": miss,
                                "cache_misses_per_request": per_req, "load_at_start": loads[scen],
                                "rate_held": held, "notes": notes, "edgerec_runs": e, "floor_runs": f})
print("cache miss: edgerec_cache_requests_total{result=\"miss\"} / (hit + miss) over the measured edgerec runs, "
      "and misses per request (body and list cache lookups: an answer rendered from Pebble misses both)")
json.dump(result, open(f"{out}/cpu-ratio.json", "w"), indent=1)
print(f"reports in {out}; JSON in {out}/cpu-ratio.json")
PY
