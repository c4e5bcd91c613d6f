#!/usr/bin/env python3
"""Summarises bench/overcommit.py's runs: each guest's wss throughput per configuration, the ratio
kvmm under the limit / kvmm unconstrained (target >= 0.9), kvmm against QEMU and kvmtool (both
unconstrained), host memory (PSS) and kvmm's reclaim figures, a gnuplot PNG (docs/overcommit.png:
PSS, compressed and swapped memory and the swap / compression traffic over time, the constrained run
against the unconstrained one) and the overcommit section of docs/benchmarks.md (between its
overcommit markers). Prints the figures last.
Usage: report_overcommit.py DATA OUTDIR DOC"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_common import plot, replace_section  # noqa: E402

data, outdir, doc = sys.argv[1:4]
rows, curves, failed, metas, setup, host = [], {}, [], [], {}, None
for line in open(data):
    r = json.loads(line)
    if "host" in r:
        host = r["host"]
    elif r.get("curve"):
        curves[(r["config"], r["run"])] = r["samples"]
    elif r.get("meta"):
        if "setup" in r:
            setup = r["setup"]
        else:
            metas.append(r)
    elif "guest" in r:
        rows.append(r)
    else:
        failed.append(r)

ORDER = ("kvmm-free", "kvmm-limit", "qemu-free", "kvmtool-free")
NAMES = {"kvmm-free": "kvmm, no limit", "kvmm-limit": f"kvmm, --mem-limit {setup.get('limit', '1G')} each",
         "qemu-free": "QEMU, no limit", "kvmtool-free": "kvmtool, no limit"}
configs = [c for c in ORDER if any(r["config"] == c for r in rows + failed)]
MiB = 1 << 20
LEVELS = ("consumed", "compressed", "swapped", "zero", "compress-cache")
TRAFFIC = ("swap-out", "swap-in", "compress-out", "compress-in")


def pick(q, name):
    if not q:
        return None
    for k in (name, name.replace("-", "_")):
        if k in q:
            return q[k]
    return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def guest_med(config, g, get):
    return med([get(r) for r in rows if r["config"] == config and r["guest"] == g])


def f(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)


guests = sorted({r["guest"] for r in rows})
nruns = max((len({r["run"] for r in rows if r["config"] == c}) for c in configs), default=0)


def fill_s(r):
    return None if r.get("t_fill") is None or r.get("t_banner") is None else r["t_fill"] - r["t_banner"]


def traffic_total(r, name):
    """The counter at the end of the run (since kvmm's start)."""
    return pick(r.get("query_end"), name)


_size = str(setup.get("size", "1800M"))
hot_mib = setup.get("hot", 20) / 100 * (int(_size[:-1]) * (1024 if _size[-1] in "Gg" else 1)
                                        if _size[-1:] in "MmGg" and _size[:-1].isdigit() else 1800)
lines = ["<!-- overcommit:begin -->", "## Overcommit (bench/overcommit.sh)", "",
         f"Medians of {nruns} run(s), all in one test host run ({setup.get('memtotal_mib', '?')} MiB, "
         f"{setup.get('cpus', '?')} CPUs; TCG: compare ratios only). Two {setup.get('ram_mb', 2048)} MiB, 1-vCPU "
         f"test guests at once, each `{setup.get('append', '?')}` (seeds 1 and 2): fill {setup.get('size', '?')} "
         f"(60% text, about 2.5x with LZ4; 20% random, incompressible; 20% zero), then read and write back the "
         f"first word of every page of the hot set (the first {setup.get('hot', 20)}% of the pages, "
         f"{hot_mib:.0f} MiB) pass after pass in {setup.get('wss_steps', 1)} wss steps of "
         f"{setup.get('wss_seconds', '?')} s each, then verify every page. *Throughput*: the guest's own "
         "`pages_per_sec` over a wss step: *first* (what the reclaimer took during the fill comes back: the hot "
         "set is written first, so it is the coldest page when the fill ends), *last* (the steady state, which "
         "the target is about) and the *mean* over all steps. Both kvmm "
         f"configurations use `--mem-share {setup.get('share', '?')}`; the limited one gives each guest "
         f"`--mem-limit {setup.get('limit', '?')}` (both together {setup.get('limit', '?')} x 2 against "
         f"{2 * setup.get('ram_mb', 2048) // 1024} GiB of guest RAM, so cold pages must be compressed or swapped "
         f"while the hot sets fit) and `--mem-swap` in {setup.get('swapdir', '?')} ({setup.get('swapfs', '?')}"
         + (": the test host's root file system, a virtio-blk disk whose image QEMU keeps in a snapshot overlay on "
            "the outer machine's disk; /tmp in the test host is tmpfs" if setup.get("swapdir", "").startswith("/var/tmp")
            else ": the repo's virtiofs share, i.e. a file on the outer machine's disk reached through virtiofsd "
            "(the test host's own disk has too little room for two preallocated swap files; /tmp there is tmpfs)"
            if "/build/bench/swap" in setup.get("swapdir", "") else "")
         + "). *PSS*: the VMM process's proportional set size, sampled every second; *during wss*: "
         "the highest sample between the guest's fill line and its wss line. kvmm's figures come from "
         "`x-kvmm-query-memory`, sampled every second; counters are totals since kvmm started.", "",
         "| configuration | guest | fill (s) | wss first / last / mean (pages/s) | PSS peak (MiB) | PSS during wss, max (MiB) | "
         "compressed peak (MiB) | swapped peak (MiB) | compress out / in (pages) | swap out / in (pages) | "
         "verifies (mismatches) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
for c in configs:
    for g in guests:
        rs = [r for r in rows if r["config"] == c and r["guest"] == g]
        if not rs:
            continue
        peak = lambda k: med([(r.get("peak") or {}).get(k) for r in rs])  # noqa: E731
        tot = lambda k: med([traffic_total(r, k) for r in rs])  # noqa: E731
        comp, swp = peak("compressed"), peak("swapped")
        co, ci, so, si = (tot(k) for k in TRAFFIC[2:] + TRAFFIC[:2])
        lines.append(
            f"| {NAMES[c]} | {g} | {f(med([fill_s(r) for r in rs]), '{:.1f}')} | "
            f"{f(med([r.get('pages_per_sec_first') for r in rs]))} / {f(med([r.get('pages_per_sec') for r in rs]))} / "
            f"{f(med([r.get('pages_per_sec_mean') for r in rs]))} | {f(med([r.get('pss_peak_mib') for r in rs]))} | "
            f"{f(med([r.get('pss_wss_max_mib') for r in rs]))} | "
            f"{'' if comp is None else f(comp / MiB)} | {'' if swp is None else f(swp / MiB)} | "
            f"{'' if co is None else f'{f(co)} / {f(ci)}'} | {'' if so is None else f'{f(so)} / {f(si)}'} | "
            f"{sum(r['verifies'] for r in rs)} ({sum(r['mismatches'] for r in rs)}) |")


def ratio(a, b, g, key="pages_per_sec"):
    x = guest_med(a, g, lambda r: r.get(key))
    y = guest_med(b, g, lambda r: r.get(key))
    return None if x is None or not y else x / y


pairs = [(a, b) for a, b in (("kvmm-limit", "kvmm-free"), ("kvmm-free", "qemu-free"), ("kvmm-free", "kvmtool-free"))
         if a in configs and b in configs]
verdict = None
if pairs:
    lines += ["", "| throughput ratio (last wss step; mean over steps) | " + " | ".join(f"guest {g}" for g in guests) + " |",
              "|---|" + "---|" * len(guests)]
    for a, b in pairs:
        lines.append(f"| {NAMES[a]} / {NAMES[b]} | " + " | ".join(
            f"{f(ratio(a, b, g), '{:.2f}')}; {f(ratio(a, b, g, 'pages_per_sec_mean'), '{:.2f}')}" for g in guests) + " |")
    rs = [ratio("kvmm-limit", "kvmm-free", g) for g in guests]
    if "kvmm-limit" in configs and "kvmm-free" in configs:
        ok = all(x is not None and x >= 0.9 for x in rs)
        verdict = (f"Target (each guest under the combined {setup.get('limit', '?')} x 2 limit at least 0.9 of its unconstrained "
                   f"throughput, last wss step): {', '.join(f(x, '{:.2f}') for x in rs)}: {'met' if ok else 'NOT met'}.")
        lines += ["", verdict]
for r in rows:
    if r["config"] == "kvmm-limit" and r.get("query_end"):
        q = r["query_end"]
        keep = {k: v for k, v in q.items() if not isinstance(v, (dict, list))}
        lines += ["", f"{NAMES[r['config']]}, guest {r['guest']} run {r['run']}, x-kvmm-query-memory at the end: "
                      + ", ".join(f"{k} {v}" for k, v in keep.items())]
for r in rows:
    if r["config"].startswith("kvmm") and r.get("threads_cpu"):
        lines += ["", f"{NAMES[r['config']]}, guest {r['guest']} run {r['run']}: CPU seconds by thread at the end: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(r["threads_cpu"].items(), key=lambda kv: -kv[1]))]
for r in rows:
    if "error" in r:
        lines += ["", f"Failed check: {NAMES[r['config']]} guest {r['guest']} run {r['run']}: {r['error'][:400]}"]
for r in failed:
    lines += ["", f"Failed: {NAMES.get(r.get('config'), r.get('config'))} run {r.get('run')}: {r.get('error', '?')[:400]}"]
if host:
    lines += ["", f"This machine during the run: {host['cpus']} CPUs, load average {host['load_before']} before and "
                  f"{host['load_after']} after, {host['testhosts_before']} other test host(s) running when it started "
                  "(they share the CPUs with this one's two guests and kvmm's threads)."]
lines += ["", "![overcommit](overcommit.png)", "", "<!-- overcommit:end -->"]

# The plot: run 0 of kvmm-limit (and kvmm-free for comparison).
os.makedirs(outdir, exist_ok=True)


def series(config, g, get):
    pts = []
    for s in curves.get((config, 0), []):
        gs = s["g"][g] if g < len(s["g"]) else {}
        v = get(gs)
        if v is not None:
            pts.append((s["t"], v))
    return pts


def write(name, pts):
    path = os.path.join(outdir, f"overcommit-{name}.dat")
    with open(path, "w") as out:
        out.write("".join(f"{t} {v}\n" for t, v in pts))
    return path


top, bottom, arrows = [], [], []
colors = {0: "#1f77b4", 1: "#d62728"}
for g in guests:
    col = colors.get(g, "black")
    p = series("kvmm-limit", g, lambda gs: gs.get("pss_mib"))
    if p:
        top.append(f"'{write(f'pss-limit-{g}', p)}' using 1:2 with lines lw 2 lc rgb '{col}' title 'PSS guest {g}, limited'")
    p = series("kvmm-free", g, lambda gs: gs.get("pss_mib"))
    if p:
        top.append(f"'{write(f'pss-free-{g}', p)}' using 1:2 with lines lw 1 dt 2 lc rgb '{col}' title 'PSS guest {g}, no limit'")
    for k, dt, lw in (("compressed", 3, 2), ("swapped", 4, 2)):
        p = series("kvmm-limit", g, lambda gs, k=k: (pick(gs.get("q"), k) or 0) / MiB if gs.get("q") and
                   pick(gs.get("q"), k) is not None else None)
        if p:
            top.append(f"'{write(f'{k}-limit-{g}', p)}' using 1:2 with lines lw {lw} dt {dt} lc rgb '{col}' "
                       f"title '{k} guest {g}'")
    for r in rows:
        if r["config"] == "kvmm-limit" and r["run"] == 0 and r["guest"] == g and r.get("t_fill") and r.get("t_wss"):
            arrows.append((r["t_fill"], r["t_wss"], col))
# Traffic: pages per second over both limited guests, from the counters' differences.
samples = curves.get(("kvmm-limit", 0), [])
for k, col in zip(TRAFFIC, ("#9467bd", "#2ca02c", "#ff7f0e", "#8c564b")):
    pts, prev = [], None
    for s in samples:
        vals = [pick(gs.get("q"), k) for gs in s["g"]]
        if any(v is None for v in vals):
            continue
        tot = sum(vals)
        if prev is not None and s["t"] > prev[0]:
            pts.append((s["t"], max(0.0, (tot - prev[1]) / (s["t"] - prev[0]))))
        prev = (s["t"], tot)
    if pts:
        bottom.append(f"'{write(f'traffic-{k}', pts)}' using 1:2 with lines lw 2 lc rgb '{col}' title '{k}'")
steps = []
for c, dt in (("kvmm-free", 2), ("kvmm-limit", 1), ("qemu-free", 3), ("kvmtool-free", 4)):
    for g in guests:
        r = next((x for x in rows if x["config"] == c and x["guest"] == g and x["run"] == 0), None)
        if r and r.get("wss_steps"):
            pts = [(x["t"], x["pages_per_sec"]) for x in r["wss_steps"]]
            steps.append(f"'{write(f'steps-{c}-{g}', pts)}' using 1:2 with linespoints dt {dt} lw 2 pt 7 ps 0.6 "
                         f"lc rgb '{colors.get(g, 'black')}' title '{NAMES[c]}, guest {g}'")
png = os.path.join(os.path.dirname(doc), "overcommit.png")
if top:
    limit_mib = {"G": 1024, "M": 1}.get(setup.get("limit", "1G")[-1:], 1) * int(setup.get("limit", "1G")[:-1] or 1)
    arrow_cmds = "".join(
        f"set object {i + 1} rect from {a},graph 0 to {b},graph 1 behind fillcolor rgb '{c}' fillstyle transparent "
        f"solid 0.06 noborder\n" for i, (a, b, c) in enumerate(arrows))
    panes = 1 + bool(bottom) + bool(steps)
    script = f"""set terminal pngcairo size 1000,{330 * panes + 100}
set output '{png}'
set multiplot layout {panes},1 title 'Overcommit: two {setup.get('ram_mb', 2048)} MiB test guests, --mem-limit {setup.get('limit', '1G')} each (test host, TCG)'
set grid
set key outside right top vertical font ',9'
set xlabel 'seconds since the guests started (shaded: the wss step of each limited guest)'
set ylabel 'MiB'
set yrange [0:*]
{arrow_cmds}plot {', '.join(top)}, {limit_mib} with lines dt 3 lc rgb 'black' title 'limit per guest'
"""
    if bottom:
        script += f"""unset object
set ylabel 'pages per second (both guests)'
plot {', '.join(bottom)}
"""
    if steps:
        script += f"""unset object
set ylabel 'wss pages per second'
set logscale y
set yrange [*:*]
set xlabel 'seconds since the guests started (each point: the end of a wss step)'
plot {', '.join(steps)}
unset logscale y
"""
    script += "unset multiplot\n"
    plot("overcommit", script)
replace_section(doc, "overcommit", lines)
print("\n".join(lines[5:-4]))
summary = "; ".join(
    f"{NAMES[c]}: " + ", ".join(f"guest {g} {f(guest_med(c, g, lambda r: r.get('pages_per_sec')))} pages/s" for g in guests)
    for c in configs if any(r["config"] == c for r in rows))
print("overcommit: " + (summary or "no successful run") + (f" | {verdict}" if verdict else ""))
