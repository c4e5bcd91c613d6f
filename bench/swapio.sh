#!/usr/bin/env bash
# Swap file I/O on this machine's disk, no KVM: builds bench/swapio.c against src/mem/swapfile.c,
# writes and reads back MIB MiB of pages (default 256) in batches of 512 and 16, O_DIRECT against
# the page cache, RUNS times (default 3), then the cached mode's drop experiment; prints a
# Markdown table of medians (MiB/s, latency, CPU time, pages of the file in the page cache). The file goes in DIR (default build/bench), which must not be tmpfs.
# Changes no kernel setting (no drop_caches, no sysctl): the cached figures are what the page
# cache does on its own. JSON lines of every run: build/bench/swapio.dat.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
DIR=${DIR:-$OUT}
MIB=${MIB:-256}
RUNS=${RUNS:-3}
mkdir -p "$OUT" "$DIR"
fstype=$(stat -f -c %T "$DIR")
case $fstype in
tmpfs | ramfs) echo "swapio: $DIR is $fstype, not a disk; set DIR" >&2; exit 1 ;;
esac
cc -O2 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -I"$REPO/include" -I"$REPO/src" \
	"$REPO/bench/swapio.c" "$REPO/src/mem/swapfile.c" "$REPO/src/core/log.c" \
	$(pkg-config --cflags --libs libxxhash) -o "$OUT/swapio"
dev=$(df --output=source "$DIR" | tail -1)
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load $(cut -d" " -f1-3 /proc/loadavg), $DIR on $dev ($fstype), ${MIB} MiB, RUNS=$RUNS" |
	tee "$OUT/swapio.dat"
"$OUT/swapio" swap "$DIR" "$MIB" "$RUNS" | tee -a "$OUT/swapio.dat"
"$OUT/swapio" drop "$DIR" "$MIB" "$RUNS" | tee -a "$OUT/swapio.dat"
python3 - "$OUT/swapio.dat" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = lambda xs: statistics.median(xs)
print("\n| mode | batch | write MiB/s: fresh file / rewrite | write CPU ms per MiB: fresh / rewrite | random read MiB/s | read p50 / p99 (us) | read CPU ms per MiB | pages cached after write / read (of %d) | pwritev calls |"
      % rows[0]["pages"])
print("|---|---|---|---|---|---|---|---|---|")
for batch in (512, 16):
	for mode in ("direct", "cached"):
		r = [x for x in rows if x["test"] == "swap" and x["mode"] == mode and x["batch"] == batch]
		if not r:
			continue
		m = lambda k: med([x[k] for x in r])
		name = mode if all(x["direct"] == (mode == "direct") for x in r) else mode + " (fell back)"
		print(f"| {name} | {batch} | {m('write_mibs'):.0f} / {m('rewrite_mibs'):.0f}"
		      f" | {m('write_cpu_ms_per_mib'):.2f} / {m('rewrite_cpu_ms_per_mib'):.2f}"
		      f" | {m('read_mibs'):.1f} | {m('read_p50_us'):.0f} / {m('read_p99_us'):.0f} | {m('read_cpu_ms_per_mib'):.1f}"
		      f" | {m('cached_after_write'):.0f} / {m('cached_after_read'):.0f} | {r[0]['write_calls'] // 2} |")
print("\n| cached, drop | batch | write MiB/s | cached after write | 2 s later |")
print("|---|---|---|---|---|")
for batch in (512, 16):
	for how in ("none", "now", "lag", "sync"):
		r = [x for x in rows if x["test"] == "drop" and x["how"] == how and x["batch"] == batch]
		if r:
			print(f"| {how} | {batch} | {med([x['write_mibs'] for x in r]):.0f}"
			      f" | {med([x['cached_after_write'] for x in r]):.0f} | {med([x['cached_after_2s'] for x in r]):.0f} |")
EOF
