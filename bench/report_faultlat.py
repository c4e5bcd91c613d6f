#!/usr/bin/env python3
"""Summarises bench/faultlat.sh's run: for each thread placement (OUTDIR/same, OUTDIR/split: one
faultlat run each), every sample of every round pooled per phase and access, median / p90 / p99 in
microseconds and the ratios to the floor (the bare userfaultfd round trip with UFFDIO_COPY measured in
the same faultlat run), the target (compressed at most 2x the floor, on the median), a gnuplot PNG
(docs/faultlat.png: the latency distributions) and the fault-in section of docs/benchmarks.md
(between its faultlat markers). Prints the figures last.
Usage: report_faultlat.py OUTDIR DOC"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_common import plot, replace_section  # noqa: E402

outdir, doc = sys.argv[1:3]
PHASES = ("floor", "anon", "untouched", "zero", "released", "compressed", "compressed-random", "compressed-seq",
          "swapped", "swapped-random", "swapped-seq")
ACCESS = ("read", "write")
NAMES = {
    "floor": "floor: bare userfaultfd",
    "anon": "kernel: anonymous first touch",
    "untouched": "kvmm: never-touched page",
    "zero": "kvmm: dropped zero page",
    "released": "kvmm: released (ballooned) page",
    "compressed": "kvmm: compressed page, isolated",
    "compressed-random": "kvmm: compressed pages, dense, random order",
    "compressed-seq": "kvmm: compressed pages, dense, ascending",
    "swapped": "kvmm: swapped page, isolated",
    "swapped-random": "kvmm: swapped pages, dense, random order",
    "swapped-seq": "kvmm: swapped pages, dense, ascending",
}
WHAT = {
    "floor": "a userfaultfd of its own on a fresh anonymous region; its handler thread blocks in read() "
             "and answers every fault with UFFDIO_COPY of a constant 4 KiB page: the least any "
             "userfaultfd fault-in can cost",
    "anon": "no userfaultfd: the kernel maps the zero page (read) or allocates a zeroed page (write) "
            "itself; MADV_NOHUGEPAGE (the test host runs THP always). For scale only",
    "untouched": "guest RAM never written: the manager's handler maps the zero page "
                 "(UFFDIO_ZEROPAGE) over the faulting page and the untouched pages after it in its 2 MiB "
                 "window; later reads of those do not fault at all, writes then copy-on-write in the "
                 "kernel without the handler (see *faults seen by the handler*)",
    "zero": "written with zeros, then `mem_page_out` (state ZERO). The page-out maps the kernel's zero "
            "page over it at once (capture_drop), so a read does not fault at all and a write is the "
            "kernel's copy-on-write: no userfaultfd round trip either way (0 faults seen by the handler)",
    "released": "written, then `mem_release` (the balloon's path: state BALLOONED, the page a hole): the "
                "handler maps the zero page for a read (UFFDIO_ZEROPAGE of one page) and copies a zeroed "
                "page for a write (UFFDIO_COPY): the userfaultfd zero-fill path",
    "compressed": "text pages, every other page of the set taken out with `mem_page_out(MEM_OUT_COMPRESS)` "
                  "(state COMPRESSED) and the ones between left in place, so the handler's readahead (up to 15 "
                  "pages that are out after the touched one) stops at once: each touch is one fault-in of one "
                  "page, LZ4 decompress + UFFDIO_COPY. The target's figure",
    "compressed-random": "a run of compressed pages touched in a random order: a fault brings in up to 15 pages "
                         "after the touched one, so many touches find their page already back (no fault), and "
                         "a touch may wait while the handler reads ahead for an earlier one",
    "compressed-seq": "a run of compressed pages touched in ascending order (a guest reading through memory): "
                      "one fault per 16 pages; the touches after it wait for the handler's readahead to reach "
                      "their page",
    "swapped": "as the isolated compressed pages, taken out with `mem_page_out(MEM_OUT_SWAP)` (state SWAPPED): "
               "pread of the slot (its xxh64 checked) + UFFDIO_COPY; the test host's page cache dropped before "
               "each swapped set (`echo 3 > /proc/sys/vm/drop_caches`), so the read goes to the disk",
    "swapped-random": "a run of swapped pages touched in a random order (readahead as above)",
    "swapped-seq": "a run of swapped pages touched in ascending order (readahead as above)",
}
PINS = {"same": "toucher and handler on one CPU", "split": "toucher on CPU 0, handler on CPU 1",
        "none": "threads where the scheduler puts them"}


def load(d):
    run = {"header": {}, "memmgr": {}, "rows": [], "zc": [], "outs": [], "end": []}
    for line in open(os.path.join(d, "faultlat.dat")):
        r = json.loads(line)
        for k in ("header", "memmgr"):
            if k in r:
                run[k] = r[k]
        if "zcache" in r:
            run["zc"].append(r["zcache"])
        elif "page_out" in r:
            run["outs"].append(r)
        elif "memmgr_end" in r:
            run["end"].append(r["memmgr_end"])
        elif "phase" in r:
            run["rows"].append(r)
    run["stats"] = {}
    for ph in PHASES:
        for acc in ACCESS:
            path = os.path.join(d, f"faultlat-{ph}-{acc}.ns")
            if not os.path.exists(path) or not any(r["phase"] == ph and r["access"] == acc for r in run["rows"]):
                continue
            with open(path) as f:
                s = sorted(int(x) for x in f if x.strip())
            if s:
                run["stats"][(ph, acc)] = {"n": len(s), "p50": pct(s, 0.5), "p90": pct(s, 0.9),
                                           "p99": pct(s, 0.99), "samples": s}
    return run


def pct(s, p):
    pos = p * (len(s) - 1)
    lo = int(pos)
    if lo + 1 >= len(s):
        return s[-1] / 1e3
    return (s[lo] + (pos - lo) * (s[lo + 1] - s[lo])) / 1e3


def f(v, fmt="{:.1f}"):
    return "n/a" if v is None else fmt.format(v)


def num(v):
    """Microseconds with 3 significant figures or so."""
    if v is None:
        return "n/a"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


runs = {}
for pin in ("same", "split", "none"):
    d = os.path.join(outdir, pin)
    if os.path.exists(os.path.join(d, "faultlat.dat")):
        runs[pin] = load(d)
if not runs:
    sys.exit(f"report_faultlat: no faultlat.dat under {outdir}/same, split or none")
host = None
if os.path.exists(os.path.join(outdir, "host.json")):
    host = json.load(open(os.path.join(outdir, "host.json")))["host"]


def ratio(run, ph, acc, key):
    a, b = run["stats"].get((ph, acc)), run["stats"].get(("floor", acc))
    if not a or not b or not b[key]:
        return None
    return a[key] / b[key]


def total(run, ph, acc, key):
    vals = [r.get(key) for r in run["rows"] if r["phase"] == ph and r["access"] == acc]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


first = next(iter(runs.values()))
hd, mm = first["header"], first["memmgr"]
lines = ["<!-- faultlat:begin -->", "## Fault-in latency (bench/faultlat.sh)", "",
         f"bench/faultlat.c in one test host run (TCG: compare ratios only), once per thread placement, each "
         f"with {hd.get('rounds', '?')} interleaved rounds timing {hd.get('pages', '?')} single-page first "
         "touches per set, in a random order, from a toucher thread standing in for a vCPU: "
         "`clock_gettime(CLOCK_MONOTONIC)` around a one-byte read, or on a second set a one-byte write (of "
         "the byte the page already holds). No VM: the memory manager of build/release's library "
         "(`mem_create` with `--mem-share zero`'s userfaultfd, its zero-page scanner held to 1 page/s) on a "
         "gmem mapping; pages are written from the benchmark and taken out with `mem_page_out`. Text pages "
         "are the test guest's `text` kind (tests/guest/pattern.c, linked in: pseudo-English, about 2.5x "
         "with LZ4 per page). Every touched page is compared afterwards with what was written before it "
         "went out (*mismatches* must be 0). Samples of all rounds pooled; the timer's own cost "
         f"({f(hd.get('timer_overhead_us'), '{:.3f}')} us median) is not subtracted. *x floor*: the figure "
         "over the floor's same figure, same access, same placement. *Handler CPU per fault*: the CPU time "
         "of the handler thread(s) over the set (the floor's own thread; kvmm's `mem-fault` plus its "
         "idle scanner) over the faults they served (with readahead, the pages it brought in are part of that CPU).", ""]
if mm:
    swapdir = os.path.dirname(mm.get("swap", "")) or "?"
    where = (" (the test host's root file system: a virtio-blk disk whose image QEMU keeps in a snapshot "
             "overlay on the outer machine's disk; /tmp in the test host is tmpfs and was not used)"
             if swapdir.startswith("/var/tmp") and mm.get("swap_fs") == "ext4" else "")
    lines += [f"Memory manager: capture by {mm.get('capture')}, userfaultfd via {mm.get('uffd_via')}, THP "
              f"{mm.get('thp')}; swap file in {swapdir}, {mm.get('swap_fs')}{where}. Kernel "
              f"{hd.get('kernel')}, {hd.get('cpus')} CPUs.", ""]
verdicts = []
for pin, run in runs.items():
    st = run["stats"]
    lines += [f"**{PINS.get(pin, pin)}** (`-p {pin}`):", "",
              "| page | access | median (us) | p90 (us) | p99 (us) | median x floor | p90 x floor | p99 x floor | "
              "faults seen by the handler | handler CPU per fault (us) | mismatches |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for ph in PHASES:
        for acc in ACCESS:
            s = st.get((ph, acc))
            if not s:
                continue
            hf, mis = total(run, ph, acc, "handler_faults"), total(run, ph, acc, "mismatches")
            cpu = total(run, ph, acc, "handler_cpu_us")
            cpf = f"{cpu / hf:.1f}" if cpu is not None and hf else ""
            rs = ["1" if ph == "floor" else f(ratio(run, ph, acc, k), "{:.2f}") for k in ("p50", "p90", "p99")]
            lines.append(f"| {NAMES[ph]} | {acc} | {num(s['p50'])} | {num(s['p90'])} | {num(s['p99'])} | "
                         f"{' | '.join(rs)} | {'' if hf is None else f'{hf} of {s[chr(110)]}'} | {cpf} | {f(mis, '{}')} |")
    lines.append("")
    if ("compressed", "read") in st:
        rr, rw = ratio(run, "compressed", "read", "p50"), ratio(run, "compressed", "write", "p50")
        ok = rr is not None and rr <= 2 and (rw is None or rw <= 2)
        verdicts.append(f"{PINS.get(pin, pin)}: read {f(rr, '{:.2f}')}x, write {f(rw, '{:.2f}')}x: "
                        f"{'met' if ok else 'NOT met'}")
lines += ["What each row's fault does:", ""] + [f"- *{NAMES[ph]}*: {WHAT[ph]}." for ph in PHASES
                                                if any((ph, a) in r["stats"] for r in runs.values() for a in ACCESS)]
zc = [z for r in runs.values() for z in r["zc"] if z.get("zcache")]
if zc:
    z = zc[0]
    lines += ["", f"Compression cache after a compressed pair of sets went out: {z['compressed'] / 2**20:.1f} MiB of "
                  f"guest pages in {z['zcache'] / 2**20:.1f} MiB of cache ({z['compressed'] / z['zcache']:.2f}x)."]
outms = {}
for r in runs.values():
    for o in r["outs"]:
        outms.setdefault(o["page_out"], []).append(o["ms"] * 1e3 / o["pages"])
if outms:
    lines += ["", "`mem_page_out` of a whole set, per page (median over sets and placements): " + "; ".join(
        f"{k} {sorted(v)[len(v) // 2]:.1f} us" for k, v in outms.items()) + "."]
sw = [r for run in runs.values() for r in run["rows"] if r["phase"] == "swapped"]
if sw and not all(r.get("caches_dropped") for r in sw):
    lines += ["", "The page cache could not be dropped before some swapped sets: their reads may have hit it."]
errs = [e for run in runs.values() for e in run["end"] if e.get("swap_errors") or e.get("swap_corrupt")]
for e in errs:
    lines += ["", f"Swap errors in round {e['round']}: {e['swap_errors']} I/O, {e['swap_corrupt']} checksum."]
if verdicts:
    lines += ["", "Target (compressed at most 2x the floor, median): " + "; ".join(verdicts) + "."]
elif not hd.get("page_out"):
    lines += ["", "This tree's library had no `mem_page_out`: only the floor, the kernel's first touch and "
                  "never-touched pages were measured."]
for run in runs.values():
    for r in run["rows"]:
        if r.get("mismatches"):
            lines += ["", f"MISMATCH: {r['phase']} {r['access']} round {r['round']}: {r['mismatches']} page(s) "
                          "did not hold what was written."]
if host:
    lines += ["", f"This machine during the run: {host['cpus']} CPUs, load average {host['load_before']} before and "
                  f"{host['load_after']} after, {host['testhosts_before']} other test host(s) running when it started "
                  "(they share the CPUs: TCG vCPUs then wait for the outer scheduler)."]
lines += ["", "![fault-in latency](faultlat.png)", "", "<!-- faultlat:end -->"]

# The plot: distribution (CDF) of each phase's latency; one pane per placement and access; log x.
panes = []
for pin, run in runs.items():
    for acc in ACCESS:
        parts = []
        for ph in PHASES:
            s = run["stats"].get((ph, acc))
            if not s:
                continue
            s = s["samples"]
            step = max(1, len(s) // 2000)
            path = os.path.join(outdir, pin, f"cdf-{ph}-{acc}.dat")
            with open(path, "w") as out:
                out.write("".join(f"{max(s[k], 1) / 1e3} {(k + 1) / len(s)}\n" for k in range(0, len(s), step)))
                out.write(f"{max(s[-1], 1) / 1e3} 1\n")
            if ph.endswith("-random") or ph.endswith("-seq") or ph == "zero":
                continue  # the plot shows single-page fault-ins; the table has the rest
            style = "dt 2 lw 1.5" if ph in ("anon", "untouched") else "lw 2.5 dt 1" if ph == "floor" else "lw 2"
            parts.append(f"'{path}' using 1:2 with lines {style} title '{ph}'")
        if parts:
            panes.append(f"set title '{acc}s, {PINS.get(pin, pin)}'\nplot {', '.join(parts)}\n")
png = os.path.join(os.path.dirname(doc), "faultlat.png")
if panes:
    rowsn = (len(panes) + 1) // 2
    script = f"""set terminal pngcairo size 1100,{430 * rowsn}
set output '{png}'
set multiplot layout {rowsn},2 title 'Fault-in latency of one page, test host (TCG: compare ratios only)'
set grid
set logscale x
set xrange [0.1:*]
set yrange [0:1]
set key bottom right
set xlabel 'latency of one touch (us, log scale)'
set ylabel 'fraction of touches'
{''.join(panes)}unset multiplot
"""
    plot("faultlat", script)
replace_section(doc, "faultlat", lines)
print("\n".join(lines[3:-4]))
summary = []
for pin, run in runs.items():
    items = sorted(run["stats"].items(), key=lambda kv: (PHASES.index(kv[0][0]), kv[0][1]))
    summary.append(f"[{pin}] " + "; ".join(
        f"{ph} {acc} {num(s['p50'])} us" + (f" ({f(ratio(run, ph, acc, 'p50'), '{:.2f}')}x floor)" if ph != "floor" else "")
        for (ph, acc), s in items))
print("fault-in latency, medians: " + " | ".join(summary) +
      (" | target compressed <= 2x floor: " + "; ".join(verdicts) if verdicts else ""))
