#!/usr/bin/env bash
# Build-scale benchmark: for each size, generate synthetic shop events with
# `edgerec gen`, build a snapshot with `edgerec build`, and report wall time
# and peak RSS of each step (from GNU time when present, else from the
# build's own summary).
set -euo pipefail
bin=${1:-bin/edgerec}
shift || true
sizes=${*:-1000000 3000000 10000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-10s %8s %10s %8s %10s %9s %10s\n' events gen_s gen_rss build_s build_rss items total_s
for n in $sizes; do
	gs=$( { /usr/bin/env time -f '%e %M' "$bin" gen --events "$work/ev.csv.zst" --items "$work/items.csv" --n "$n" >/dev/null; } 2>&1 | tail -1)
	bs=$( { /usr/bin/env time -f '%e %M' "$bin" build --events "$work/ev.csv.zst" --items "$work/items.csv" --out "$work/snap" >"$work/out" 2>/dev/null; } 2>&1 | tail -1)
	items=$(sed -n 's/.*: \([0-9]*\) items,.*/\1/p' "$work/out")
	read -r gt gm <<<"$gs"
	read -r bt bm <<<"$bs"
	printf '%-10s %8.2f %8dMiB %8.2f %8dMiB %9s %10.2f\n' "$n" "$gt" $((gm / 1024)) "$bt" $((bm / 1024)) "$items" "$(awk "BEGIN{print $gt + $bt}")"
	rm -rf "$work/snap" "$work"/ev.* "$work"/items.*
done
