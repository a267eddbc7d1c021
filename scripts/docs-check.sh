#!/usr/bin/env bash
# make docs-check: README.md as a newcomer follows it, top to bottom.
#
# In a fresh copy of the repository (the files git knows, as they are in
# the work tree) in a temporary directory, it runs `make run` on a free
# port in the background (build, gen, the sample's snapshot, serve), waits
# for /readyz, runs every curl line `make run` printed, then every ```sh
# or ```bash block of README.md in order, and stops the server. A block
# fails on the first command that fails (bash -e -o pipefail); curl is
# run with -f, so an HTTP answer that is not 2xx fails it too.
#
# Convention: a block that is not meant to run here (it needs other hosts,
# Docker, the shared data sets, a long load, or it is `make run` itself)
# has the line
#
#     <!-- docs-check: skip -->
#
# right before its opening fence (blank lines between are allowed); the
# reason goes in prose beside it. Every other sh/bash block must run.
#
# What the blocks may assume, as a reader of the README has after
# `make run`: the repository as the working directory, bin/ on PATH
# (`edgerec …`), the server on 127.0.0.1:8080 with the API key dev-key
# (the script rewrites 127.0.0.1:8080 and localhost:8080 to the free
# port it chose), and ADMIN_KEY=dev-key (serve's admin key defaults to
# the API key).
#
# Needs: bash, make, go, curl, tar, setsid. DOCS_CHECK_KEEP=1 keeps
# the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
readme=$repo/README.md
start=$(date +%s)

work=$(mktemp -d)
pgid=
cleanup() {
	if [ -n "$pgid" ]; then
		kill -TERM -- "-$pgid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$pgid" 2>/dev/null || true
	fi
	if [ -n "${DOCS_CHECK_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The copy: tracked files and files not ignored, without data or binaries.
copy=$work/repo
mkdir -p "$copy"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
	[ -e "$f" ] && printf '%s\0' "$f"
done | tar -C "$repo" --null -T - -cf - | tar -C "$copy" -xf -

# Split README.md into its runnable blocks: blocks/NNN.sh, first line a
# comment with the README line of the fence.
mkdir -p "$work/blocks"
awk -v dir="$work/blocks" '
	/^<!-- docs-check: skip -->[ \t]*$/ { skip = 1; next }
	!inblock && /^```(sh|bash)[ \t]*$/ {
		inblock = 1
		if (!skip) { n++; f = sprintf("%s/%03d.sh", dir, n); print "# README.md:" NR > f }
		next
	}
	inblock && /^```[ \t]*$/ { inblock = 0; if (!skip) close(f); skip = 0; next }
	inblock { if (!skip) print > f; next }
	/^```/ { skip = 0; fenced = !fenced; next }   # other fences: the skip mark is spent
	/[^ \t]/ { skip = 0 }                         # prose between the mark and a fence spends it
' "$readme"
blocks=("$work"/blocks/*.sh)
[ -e "${blocks[0]}" ] || { echo "docs-check: README.md has no runnable sh blocks" >&2; exit 1; }

# A free port: one nothing answers on (bash's /dev/tcp connects or fails),
# below the kernel's ephemeral range, so that no client connection (the
# thousands a load test leaves in TIME-WAIT) holds it as its own port.
port=
low=32768
if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range
fi
[ "$low" -gt 12000 ] || low=32768
for _ in $(seq 50); do
	p=$((10000 + RANDOM % (low - 10000)))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "docs-check: no free port found" >&2; exit 1; }
addr=127.0.0.1:$port

echo "docs-check: make run on $addr (log: run.log)"
# A process group of its own, so that stopping it stops serve too.
setsid make -C "$copy" run ADDR="$addr" >"$work/run.log" 2>&1 &
pgid=$!
ready=
for _ in $(seq 1800); do
	if curl -sf "http://$addr/readyz" >/dev/null 2>&1; then ready=1; break; fi
	kill -0 "$pgid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "docs-check: make run did not become ready:" >&2
	tail -30 "$work/run.log" >&2
	exit 1
fi
echo "docs-check: ready after $(($(date +%s) - start)) s"

# The prelude every block runs with.
cat >"$work/prelude.sh" <<EOF
cd '$copy'
export PATH='$copy/bin':"\$PATH" ADMIN_KEY=dev-key
curl() { command curl -fsS --max-time 30 "\$@"; }
EOF

fail=0
run_block() { # name file
	local name=$1 file=$2 out=$work/out.txt
	sed -e "s/127\.0\.0\.1:8080/$addr/g" -e "s/localhost:8080/$addr/g" "$file" >"$work/this.sh"
	cat "$work/prelude.sh" "$work/this.sh" >"$work/full.sh"
	if bash -e -o pipefail "$work/full.sh" </dev/null >"$out" 2>&1; then
		printf '  ok    %s\n' "$name"
	else
		printf '  FAIL  %s\n' "$name"
		sed 's/^/        /' "$work/this.sh"
		echo "        -- output:"
		tail -20 "$out" | sed 's/^/        /'
		fail=1
	fi
}

# The curl lines make run printed ("Try, once it listens:").
n=0
while IFS= read -r line; do
	n=$((n + 1))
	printf '%s\n' "$line" >"$work/printed-$n.sh"
	run_block "make run's curl line $n" "$work/printed-$n.sh"
done < <(sed -n 's/^  \(curl .*\)$/\1/p' "$work/run.log")
if [ "$n" = 0 ]; then
	echo "docs-check: make run printed no curl line" >&2
	fail=1
fi

for b in "${blocks[@]}"; do
	run_block "$(head -1 "$b" | sed "s/^# //")" "$b"
done

if ! kill -0 "$pgid" 2>/dev/null; then
	echo "docs-check: the server stopped during the check:" >&2
	tail -20 "$work/run.log" >&2
	fail=1
fi
echo "docs-check: ${#blocks[@]} README blocks and $n printed lines in $(($(date +%s) - start)) s"
exit $fail
