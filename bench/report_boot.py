#!/usr/bin/env python3
"""Summarises bench/boot.py's runs: medians, ratios against the peers, a gnuplot PNG, and the boot
section of docs/benchmarks.md (between its boot markers). Usage: report_boot.py DATA OUTDIR DOC"""
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_common import plot, replace_section  # noqa: E402

data, outdir, doc = sys.argv[1:4]
runs = {}
for line in open(data):
    vmm, guest, _, first, exit_, rss = line.split()
    for key, val in (("first", first), ("exit", exit_), ("rss", rss)):
        v = float(val)
        if not math.isnan(v):
            runs.setdefault((vmm, guest, key), []).append(v)

vmms = [v for v in ("kvmm", "qemu", "kvmtool") if any(k[0] == v for k in runs)]
med = {k: statistics.median(v) for k, v in runs.items()}


def cell(vmm, guest, key, fmt):
    v = med.get((vmm, guest, key))
    return fmt.format(v) if v is not None else "n/a"


def ratio(guest, key, peer):
    a, b = med.get(("kvmm", guest, key)), med.get((peer, guest, key))
    return f"{a / b:.2f}" if a and b else "n/a"


n = max(len(v) for v in runs.values()) if runs else 0
lines = ["<!-- boot:begin -->", "## Boot (bench/boot.sh)", "",
         f"Medians of {n} runs per VMM and guest, all in one test host run (TCG: compare ratios only, "
         "see docs/testing.md). *first*: exec to the guest's first console line; *exit*: test guest: exec to the VMM's "
         "exit after the guest powered off; Linux guest: exec to the shell prompt (kvmm and QEMU must then power off "
         "cleanly for the run to count); *own PSS*: "
         "the VMM process's PSS minus its guest-RAM mapping, with the Linux guest at its shell.", "",
         "| guest | VMM | first (s) | exit (test) or shell (Linux) (s) | own PSS (KiB) |", "|---|---|---|---|---|"]
for guest in ("test", "linux"):
    for vmm in vmms:
        lines.append(f"| {guest} | {vmm} | {cell(vmm, guest, 'first', '{:.3f}')} | "
                     f"{cell(vmm, guest, 'exit', '{:.3f}')} | {cell(vmm, 'linux', 'rss', '{:.0f}') if guest == 'linux' else ''} |")
lines += ["", "| ratio | test first | test exit | linux first | linux shell | own PSS |", "|---|---|---|---|---|---|"]
for peer in vmms[1:]:
    lines.append(f"| kvmm / {peer} | {ratio('test', 'first', peer)} | {ratio('test', 'exit', peer)} | "
                 f"{ratio('linux', 'first', peer)} | {ratio('linux', 'exit', peer)} | {ratio('linux', 'rss', peer)} |")
lines += ["", "![boot times](boot.png)", "", "<!-- boot:end -->"]

# The plot: exit time per guest and VMM, and own RSS.
plot_dat = os.path.join(outdir, "boot-plot.dat")
with open(plot_dat, "w") as f:
    for vmm in vmms:
        f.write(f"{vmm} {med.get((vmm, 'test', 'exit'), 0)} {med.get((vmm, 'linux', 'exit'), 0)} "
                f"{med.get((vmm, 'linux', 'rss'), 0) / 1024}\n")
png = os.path.join(os.path.dirname(doc), "boot.png")
script = f"""set terminal pngcairo size 900,420
set output '{png}'
set multiplot layout 1,2 title 'Boot in the test host (medians; TCG, compare ratios)'
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid ytics
set key left top
set ylabel 'seconds (test: to exit; Linux: to shell)'
plot '{plot_dat}' using 2:xtic(1) title 'test guest', '' using 3 title 'Linux guest'
set ylabel 'MiB'
plot '{plot_dat}' using 4:xtic(1) title 'VMM own PSS' lc rgb '#8844aa'
unset multiplot
"""
plot("boot", script)
replace_section(doc, "boot", lines)
print("\n".join(lines[5:-4]))
print(f"boot: kvmm/qemu Linux exit time ratio {ratio('linux', 'exit', 'qemu')}, own PSS ratio {ratio('linux', 'rss', 'qemu')}")
