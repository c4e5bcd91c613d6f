#!/usr/bin/env python3
"""Summarises bench/balloon.py's runs: medians, reclaim rates, ratios against the peers, a gnuplot
PNG, and the balloon section of docs/benchmarks.md (between its balloon markers; other sections are
kept). Prints the figure last. Usage: report_balloon.py DATA OUTDIR DOC"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_common import plot, replace_section  # noqa: E402

data, outdir, doc = sys.argv[1:4]
BALLOON_MB = 1536
rows, curves, failed = [], {}, []
for line in open(data):
    r = json.loads(line)
    if r.get("curve"):
        curves[(r["vmm"], r["guest"])] = r["points"]
    elif "error" in r:
        failed.append(r)
    else:
        rows.append(r)

vmms = [v for v in ("kvmm", "qemu", "kvmtool") if any(r["vmm"] == v for r in rows + failed)]
guests = [g for g in ("test", "linux") if any(r["guest"] == g for r in rows + failed)]


def med(vmm, guest, get):
    vals = [get(r) for r in rows if r["vmm"] == vmm and r["guest"] == guest]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def rate(phase):
    """MiB/s: RSS released (inflate) or the balloon's size (deflate) over the phase's seconds."""
    def get(r):
        p = r[phase]
        if not p.get("secs"):
            return None
        mib = p["released_mb"] if phase == "inflate" else BALLOON_MB
        return mib / p["secs"]
    return get


def cpu(phase, key):
    return lambda r: r[phase]["cpu"][key] if r[phase].get("secs") else None


def sec(phase):
    return lambda r: r[phase].get("secs")


def f(v, fmt="{:.1f}"):
    return fmt.format(v) if v is not None else "n/a"


def ratio(guest, get, peer):
    a, b = med("kvmm", guest, get), med(peer, guest, get)
    return f"{a / b:.2f}" if a and b else "n/a"


n = max((sum(1 for r in rows if r["vmm"] == v and r["guest"] == g) for v in vmms for g in guests), default=0)
lines = ["<!-- balloon:begin -->", "## Balloon reclaim (bench/balloon.sh)", "",
         f"Medians of {n} runs per VMM and guest, all in one test host run (TCG: compare ratios only). A 2 GiB, "
         "1-vCPU guest first dirties nearly all its free memory (Linux: a tmpfs filled to MemFree - 96 MiB and "
         "deleted; test guest: `test=balloon:...`, which touches its free pool), then is asked for 512 MiB "
         "(QMP `balloon` for kvmm and QEMU's virtio-balloon-pci, `lkvm balloon --inflate 1536` for kvmtool) "
         "and afterwards for 2 GiB again. *Inflate done*: the VMM's RSS has fallen by at least 90% of "
         "1536 MiB **and** the guest has its balloon at the target (Linux: MemTotal 1536 MiB lower, printed by "
         "a watcher in the guest; test guest: its `KVMM balloon target=393216 actual=393216` line). The same "
         "rule for every VMM: kvmtool cannot be asked for the balloon's size, so the guest's view is used; "
         "query-balloon is read afterwards as a check. *Deflate done*: the guest has its memory back. "
         "*Rate*: RSS released (inflate) or 1536 MiB (deflate) over the phase's wall time. *CPU*: the VMM "
         "process's threads between the request and done: vCPU threads (guest mode, and host user+system "
         "outside the guest) and all other threads (where the device releases memory: QEMU's main loop, "
         "kvmtool's thread pool, kvmm's event loop).", "",
         "| guest | VMM | inflate (s) | reclaim (MiB/s) | host MemFree gained (MiB) | vCPU guest (s) | "
         "vCPU host (s) | other threads user/sys (s) | deflate (s) | deflate (MiB/s) |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for guest in guests:
    for vmm in vmms:
        host = med(vmm, guest, lambda r: (r["inflate"]["cpu"]["vcpu_user"] + r["inflate"]["cpu"]["vcpu_sys"])
                   if r["inflate"].get("secs") else None)
        lines.append(
            f"| {guest} | {vmm} | {f(med(vmm, guest, sec('inflate')))} | {f(med(vmm, guest, rate('inflate')))} | "
            f"{f(med(vmm, guest, lambda r: r['inflate']['memfree_gain_mb']), '{:.0f}')} | "
            f"{f(med(vmm, guest, cpu('inflate', 'vcpu_guest')))} | {f(host)} | "
            f"{f(med(vmm, guest, cpu('inflate', 'other_user')))} / {f(med(vmm, guest, cpu('inflate', 'other_sys')))} | "
            f"{f(med(vmm, guest, sec('deflate')))} | {f(med(vmm, guest, rate('deflate')))} |")
lines += ["", "| ratio | " + " | ".join(f"{g} reclaim rate | {g} inflate CPU (all threads) | {g} deflate rate"
                                         for g in guests) + " |",
          "|---|" + "---|---|---|" * len(guests)]


def cpu_all(r):
    return sum(r["inflate"]["cpu"].values()) if r["inflate"].get("secs") else None


for peer in vmms[1:]:
    lines.append(f"| kvmm / {peer} | " + " | ".join(
        f"{ratio(g, rate('inflate'), peer)} | {ratio(g, cpu_all, peer)} | {ratio(g, rate('deflate'), peer)}"
        for g in guests) + " |")
for guest in guests:
    info = [r["inflate"]["query"] for r in rows if r["vmm"] == "kvmm" and r["guest"] == guest and r["inflate"].get("query")]
    if info:
        lines += ["", f"kvmm's counters after the {guest} guest's inflate (x-kvmm-query-balloon): "
                      f"{info[-1].get('inflated-pages')} pages inflated, released in "
                      f"{', '.join(str(q.get('released-ranges')) for q in info)} madvise ranges (per run)."]
for r in failed:
    lines += ["", f"Failed: {r['vmm']} {r['guest']} run {r['run']}: {r['error'].split('; exit status')[0][:200]}"]
lines += ["", "![balloon reclaim](balloon.png)", "", "<!-- balloon:end -->"]

# The plot: reclaim rates per guest and VMM, and RSS released against time (run 0) per guest.
os.makedirs(outdir, exist_ok=True)
bars = os.path.join(outdir, "balloon-rates.dat")
with open(bars, "w") as out:
    for vmm in vmms:
        out.write(vmm + "".join(f" {med(vmm, g, rate('inflate')) or 0}" for g in ("test", "linux")) + "\n")
plots = []
for guest in guests:
    parts = []
    for vmm in vmms:
        pts = curves.get((vmm, guest))
        if not pts:
            continue
        path = os.path.join(outdir, f"balloon-curve-{vmm}-{guest}.dat")
        with open(path, "w") as out:
            out.write("".join(f"{t} {mib}\n" for t, mib in pts))
        parts.append(f"'{path}' using 1:2 with lines lw 2 title '{vmm}'")
    if parts:
        plots.append(f"set title '{guest} guest: RSS released (run 0)'\n"
                     f"plot {', '.join(parts)}, {BALLOON_MB} with lines dt 2 lc rgb 'gray' title '1536 MiB'\n")
png = os.path.join(os.path.dirname(doc), "balloon.png")
script = f"""set terminal pngcairo size {450 * (1 + len(plots))},420
set output '{png}'
set multiplot layout 1,{1 + len(plots)} title 'Balloon 2 GiB -> 512 MiB in the test host (TCG, compare ratios)'
set grid ytics
set key left top
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set title 'reclaim rate (medians)'
set ylabel 'MiB/s'
plot '{bars}' using 2:xtic(1) title 'test guest', '' using 3 title 'Linux guest'
set style data lines
set xlabel 'seconds'
set ylabel 'MiB released (VMM RSS)'
set logscale x
set xrange [0.5:*]
{''.join(plots)}unset multiplot
"""
plot("balloon", script)
replace_section(doc, "balloon", lines)
print("\n".join(lines[5:-4]))
print("balloon reclaim MiB/s: " + "; ".join(
    f"{g}: " + ", ".join(f"{v} {f(med(v, g, rate('inflate')))}" for v in vmms) + ", " +
    ", ".join(f"kvmm/{p} {ratio(g, rate('inflate'), p)}" for p in vmms[1:]) for g in guests))
