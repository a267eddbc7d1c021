#!/usr/bin/env bash
# Build-scale benchmark: for each size, generate synthetic shop events with
# `edgerec gen`, build a snapshot with `edgerec build`, and report wall time
# and peak RSS of each step, measured by GNU time.
set -euo pipefail
bin=${1:-bin/edgerec}
shift || true
sizes=${*:-1000000 3000000 10000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-10s %8s %10s %8s %10s %8s %8s\n' events gen_s gen_rss build_s build_rss items total_s
for n in $sizes; do
	/usr/bin/env time -o "$work/gen.t" -f '%e %M' "$bin" gen --events "$work/ev.csv.zst" --items "$work/items.csv" --n "$n" >/dev/null
	/usr/bin/env time -o "$work/build.t" -f '%e %M' "$bin" build --events "$work/ev.csv.zst" --items "$work/items.csv" --out "$work/snap" >"$work/out" 2>"$work/log"
	items=$(sed -n 's/.*: \([0-9]*\) items,.*/\1/p' "$work/out")
	read -r gt gm <"$work/gen.t"
	read -r bt bm <"$work/build.t"
	printf '%-10s %8.2f %7dMiB %8.2f %7dMiB %8s %8.2f\n' "$n" "$gt" $((gm / 1024)) "$bt" $((bm / 1024)) "$items" \
		"$(awk -v a="$gt" -v b="$bt" 'BEGIN { print a + b }')"
	rm -rf "$work/snap" "$work"/ev.* "$work"/items.*
done
