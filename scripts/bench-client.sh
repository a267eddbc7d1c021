#!/usr/bin/env bash
# scripts/bench-client.sh BIN: bench's own HTTP client against fasthttp's
# (`edgerec bench --client fasthttp`), with wrk beside them, all against
# one static fasthttp server (`edgerec bench static`, a 1,300-byte body).
#
# The server runs pinned to core 1, the load generator to core 0 (so
# GOMAXPROCS=1 for bench, and wrk runs one thread: -t1). For each run the
# generator's CPU time (utime+stime, getrusage of the child) is divided by
# the requests it made: CPU per 1k requests is the figure that says what
# the generator costs; req/s depends as much on what else the machine
# runs. Closed loops of CLIENT_CONNECTIONS, and open loops at CLIENT_RATES
# (wrk has none); runs alternate in order and reverse order, and every
# figure is the median of CLIENT_RUNS runs. wrk runs twice per round: as
# it is (CPU, and its printed percentiles, which carry its
# coordinated-omission correction), and with scripts/wrk-raw.lua for its
# raw percentiles (whose done() hook walks wrk's whole table: its CPU is
# not wrk's). bench's closed loop reports both its raw percentiles and
# the same correction ("as wrk"), so raw is compared with raw.
#
# Environment:
#   CLIENT_RUNS         runs of each case (5)
#   CLIENT_DURATION     length of a run (5s)
#   CLIENT_CONNECTIONS  closed loops, space-separated (4 16)
#   CLIENT_RATES        open loops, requests a second (2000 10000)
#   OUT                 directory for runs.jsonl and the table (a new temp dir)
#
# Needs: 2 CPUs or more, taskset, curl, python3; wrk if present.
set -euo pipefail
if [ $# -ne 1 ]; then
	echo "usage: $0 BIN   (an edgerec binary; environment: see the head of this script)" >&2
	exit 2
fi
bin=$(readlink -f "$1")
runs=${CLIENT_RUNS:-5}
duration=${CLIENT_DURATION:-5s}
connections=${CLIENT_CONNECTIONS:-4 16}
rates=${CLIENT_RATES:-2000 10000}
out=$(readlink -f "${OUT:-$(mktemp -d /tmp/bench-client.XXXXXX)}")
mkdir -p "$out"
cd "$(dirname "$0")/.."
taskset -c 1 true 2>/dev/null || { echo "no CPU 1: this needs 2 cores (server on 1, generator on 0)" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
taskset -c 1 "$bin" bench static --addr "127.0.0.1:$port" --size 1300 2>"$out/static.log" &
spid=$!
trap 'kill $spid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
{ echo item_id; seq -f 'i%g' 100; } >"$out/ids.csv"

python3 - "$bin" "http://127.0.0.1:$port" "$out" "$runs" "$duration" "$connections" "$rates" "$(command -v wrk || true)" <<'PY' | tee "$out/bench-client.txt"
import json, os, re, resource, statistics, subprocess, sys
binary, url, out, runs, duration, conns, rates, wrk = sys.argv[1:]
runs, conns, rates = int(runs), [int(c) for c in conns.split()], [int(r) for r in rates.split()]

def load():
    return open("/proc/loadavg").read().split()[0]

def child(cmd, env=None):  # runs cmd on core 0; its output and CPU seconds
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(["taskset", "-c", "0"] + cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})), check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p.stdout, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

def us(v, unit):
    return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]

def bench(client, mode, arg):
    cmd = [binary, "bench", "--url", url, "--client", client, "--duration", duration, "--scenario", "similar",
           "--items", f"{out}/ids.csv", "--json"]
    cmd += ["--mode", "closed", "--connections", str(arg)] if mode == "closed" else ["--rate", str(arg)]
    o, cpu = child(cmd)
    r = json.loads(o)
    return dict(requests=r["requests"], rps=r["achieved_rate"], p50=r["latency_us"]["p50"], p99=r["latency_us"]["p99"], cpu=cpu,
                errors=r["requests"] - r["ok"])

def wrk_run(c, raw):
    cmd = [wrk, "-t1", f"-c{c}", f"-d{duration}", "--latency"] + (["-s", "scripts/wrk-raw.lua"] if raw else []) + [url + "/"]
    o, cpu = child(cmd, {"WRK_CONNECTIONS": str(c)})
    d = dict(requests=int(re.search(r"(\d+) requests in", o).group(1)), rps=float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1)), cpu=cpu,
             errors=0)
    if raw:
        m = re.search(r"raw latency: p50 (\d+)us p90 (\d+)us p99 (\d+)us", o)
        d.update(p50=float(m.group(1)), p99=float(m.group(3)))
    else:
        d.update(p50=us(*re.search(r"50%\s+([\d.]+)(us|ms|s)", o).groups()), p99=us(*re.search(r"99%\s+([\d.]+)(us|ms|s)", o).groups()))
    return d

cases = []
for c in conns:
    cases += [("closed", c, t) for t in (["wrk", "wrk raw"] if wrk else []) + ["own", "fasthttp"]]
cases += [("open", r, t) for r in rates for t in ("own", "fasthttp")]
rows = []
with open(f"{out}/runs.jsonl", "w") as f:
    for i in range(runs):
        for mode, arg, tool in cases if i % 2 == 0 else cases[::-1]:
            l = load()
            d = wrk_run(arg, tool == "wrk raw") if tool.startswith("wrk") else bench(tool, mode, arg)
            d.update(mode=mode, arg=arg, tool=tool, run=i, load=l)
            rows.append(d)
            f.write(json.dumps(d) + "\n")
            print(f"   {mode} {arg} {tool:8} run {i}: {d['requests']} requests at {d['rps']:.0f}/s, p50 {d['p50']:.0f} us, "
                  f"p99 {d['p99']:.0f} us, {d['cpu'] * 1e6 / d['requests']:.2f} ms CPU per 1k (load {l})", file=sys.stderr, flush=True)
loads = [float(d["load"]) for d in rows]
print(f"generator on core 0, static server on core 1; medians of {runs} runs of {duration}; load average {min(loads):.2f}-{max(loads):.2f}")
print(f"{'mode':6} {'':>9} {'client':8} {'req/s':>8} {'ms CPU/1k':>10} {'p50 us':>7} {'p99 us':>8} {'errors':>6}")
for mode, arg, tool in cases:
    v = [d for d in rows if (d["mode"], d["arg"], d["tool"]) == (mode, arg, tool)]
    m = lambda f: statistics.median(d[f] for d in v)
    cpu = statistics.median(d["cpu"] * 1e6 / d["requests"] for d in v)
    what = f"{arg} conns" if mode == "closed" else f"{arg}/s"
    print(f"{mode:6} {what:>9} {tool:8} {m('rps'):8.0f} {cpu:10.2f} {m('p50'):7.0f} {m('p99'):8.0f} {sum(d['errors'] for d in v):6d}")
print("wrk: percentiles as wrk prints them (corrected for coordinated omission); wrk raw: raw ones, from runs with"
      " scripts/wrk-raw.lua (their CPU includes the script's walk of wrk's table)")
PY
echo "runs in $out"
