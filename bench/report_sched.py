#!/usr/bin/env python3
"""Summarises bench/sched.py's run: the active guest's need (its consumed memory alone), the time
under hostd from its fill's start until it holds that (and until hostd's target for it settles),
its wss throughput per configuration and the ratios to running alone, the idle guests' memory before
and after, a gnuplot PNG (docs/sched.png: each VM's consumed memory and hostd's target over time,
from the samples CSV) and the sched section of docs/benchmarks.md (between its sched markers).
Prints the figures last.
Usage: report_sched.py DATA OUTDIR DOC   (the samples are DATA.csv)"""
import csv
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_common import plot, replace_section  # noqa: E402

data, outdir, doc = sys.argv[1:4]
rows, curves, setup, host = {}, {}, {}, None
for line in open(data):
    r = json.loads(line)
    if "host" in r:
        host = r["host"]
    elif r.get("curve"):
        curves[r["config"]] = r["samples"]
    elif r.get("meta"):
        setup = r.get("setup", setup)
    elif "config" in r:
        rows[r["config"]] = r
MiB = 1 << 20
NAMES = {"alone": "active guest alone, no hostd", "alone-hostd": "active guest alone under hostd, no pressure", "idle-free": "with two idle guests, no hostd, no limit",
         "hostd": f"with two idle guests under hostd, capacity {setup.get('capacity_mb', '?')} MiB"}
configs = [c for c in ("alone", "alone-hostd", "idle-free", "hostd") if c in rows]


def f(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)


def vm_series(config, vm, key):
    """[(t, value)] of one VM's sampled figure (bytes)."""
    return [(s["t"], s["vm"][vm][key]) for s in curves.get(config, [])
            if vm in s["vm"] and s["vm"][vm].get(key) is not None]


def wss(config, which):
    steps = [x["pages_per_sec"] for x in rows.get(config, {}).get("wss_steps", [])]
    if len(steps) != setup.get("wss_steps") or not steps:
        return None
    return {"first": steps[0], "last": steps[-1], "mean": sum(steps) / len(steps)}[which]


def in_wss(config, vm="active"):
    """The samples of `vm` between the active guest's fill line and its last wss line."""
    r = rows.get(config, {})
    if not r.get("t_fill") or not r.get("wss_steps"):
        return []
    return [(t, v) for t, v in vm_series(config, vm, "consumed") if r["t_fill"] <= t <= r["wss_steps"][-1]["t"]]


# The need: the active guest's consumed memory while it ran its wss steps alone.
alone = [v for _, v in in_wss("alone")]
need = statistics.median(alone) if alone else None
frac = setup.get("need_fraction", 0.95)
h = rows.get("hostd", {})
t_need = t_stable = None
if need and h.get("t_banner") is not None:
    start = h["t_banner"]
    hit = [t for t, v in vm_series("hostd", "active", "consumed") if t >= start and v >= frac * need]
    t_need = hit[0] - start if hit else None
    # hostd's target for the active guest is "settled" from the first sample after which it stays
    # within 2% (at least 8 MiB) of its value at the end of the last wss step.
    tg = [(t, v) for t, v in vm_series("hostd", "active", "hostd_target") if t >= start]
    end = h["wss_steps"][-1]["t"] if h.get("wss_steps") else (tg[-1][0] if tg else None)
    tg = [(t, v) for t, v in tg if t <= end]
    if tg:
        final = tg[-1][1]
        tol = max(8 * MiB, 0.02 * final)
        t_stable = tg[0][0]
        for t, v in tg:
            if abs(v - final) > tol:
                t_stable = None
        last_out = [t for t, v in tg if abs(v - final) > tol]
        t_stable = (next((t for t, _ in tg if t > last_out[-1]), None) if last_out else tg[0][0])
        t_stable = None if t_stable is None else t_stable - start
        final_target = final
    active_peak = max((v for _, v in vm_series("hostd", "active", "consumed")), default=None)


def at(config, vm, key, t):
    """The sample of `vm`'s figure nearest to t (bytes)."""
    pts = vm_series(config, vm, key)
    return min(pts, key=lambda p: abs(p[0] - t))[1] if pts and t is not None else None


lines = ["<!-- sched:begin -->", "## Host memory scheduler (bench/sched.sh)", "",
         f"One run of each configuration, in one test host run ({setup.get('memtotal_mib', '?')} MiB, "
         f"{setup.get('cpus', '?')} CPU; TCG: compare ratios only). Three {setup.get('ram_mb', '?')} MiB, "
         f"1-vCPU test guests. The **active** one runs `{setup.get('active_append', '?')}`: it fills "
         f"{setup.get('active_size', '?')} and then reads and writes back every page of it "
         f"(hot=100%), pass after pass, in {setup.get('wss_steps', '?')} wss steps of "
         f"{setup.get('wss_seconds', '?')} s, then verifies. The two **idle** ones run "
         f"`{setup.get('idle_append', '?')}` (seeds 2 and 3): they fill {setup.get('idle_size', '?')} and then "
         "busy-wait on the TSC without touching memory (the test guest has no halting idle step, so each "
         "idle vCPU still takes its share of the test host's one CPU). Configurations: the active guest "
         "**alone** (no hostd, no limit: its throughput and its *need*, the median of its consumed memory "
         "during its wss steps); the active guest **alone under hostd** with a capacity of the three guests' RAM "
         "(no pressure: what joining hostd costs by itself); the three **without hostd** (no limit: what sharing the CPU with two "
         "spinning vCPUs costs, without memory pressure); the three **under hostd**: "
         f"`kvmm hostd {setup.get('hostd_args', '?')}`, every guest `--hostd --mem-swap FILE,size="
         f"{setup.get('ram_mb', '?')}M` in {setup.get('swapdir', '?')} ({setup.get('swapfs', '?')}), shares "
         f"normal, no reservation, `--mem-share off` everywhere. The capacity, {setup.get('capacity_mb', '?')} "
         f"MiB, is half the three guests' RAM (2x overcommitted). The test host has far more free memory "
         "than that, so the large `--minfree` with the low line at 1% of it keeps hostd in its hard state "
         "(compression and swap allowed) throughout, as on a host of that size under pressure. Under hostd "
         "the active guest starts only once the idle ones have filled and their consumed memory has stayed "
         "within 5% of hostd's targets for 5 s, so what it needs must come from them. "
         f"*Time to need*: from the active guest's banner (its fill starts) to the first sample with its "
         f"consumed memory at {frac:.0%} of its need; *target settled*: from the banner to the sample after "
         "which hostd's target for it stays within 2% (at least 8 MiB) of its value at its last wss step. "
         "Samples: each VM's `x-kvmm-query-memory` (consumed, its own target, active, compressed, swapped), "
         "its PSS and hostd's `query-vms` target, every second (`build/bench/sched.dat.csv`). "
         "**No peer:** QEMU (and kvmtool) have no host memory scheduler; the nearest thing, a fixed "
         "cgroup memory limit per QEMU process, neither moves memory between VMs by activity nor has shares, "
         "so no QEMU row is given.", "",
         "| configuration | active: fill (s) | wss first / last / mean (pages/s) | consumed during wss, median (MiB) | "
         "verifies (mismatches) |", "|---|---|---|---|---|"]
for c in configs:
    r = rows[c]
    fill = None if r.get("t_fill") is None or r.get("t_banner") is None else r["t_fill"] - r["t_banner"]
    cons = [v for _, v in in_wss(c)]
    lines.append(f"| {NAMES[c]} | {f(fill, '{:.1f}')} | {f(wss(c, 'first'))} / {f(wss(c, 'last'))} / "
                 f"{f(wss(c, 'mean'))} | {f(statistics.median(cons) / MiB if cons else None)} | "
                 f"{r.get('verifies', 0)} ({r.get('mismatches', 0)}) |")


def ratio(a, b, which):
    x, y = wss(a, which), wss(b, which)
    return None if x is None or not y else x / y


def rfmt(x):
    return "{:.3f}" if x is not None and x < 0.1 else "{:.2f}"


pairs = [(a, b) for a, b in (("hostd", "alone"), ("idle-free", "alone"), ("hostd", "idle-free"),
                             ("alone-hostd", "alone"))
         if a in configs and b in configs]
if pairs:
    lines += ["", "| wss throughput ratio | first step | last step | mean |", "|---|---|---|---|"]
    for a, b in pairs:
        lines.append(f"| {NAMES[a]} / {NAMES[b]} | " + " | ".join(f(ratio(a, b, w), rfmt(ratio(a, b, w)))
                                                              for w in ("first", "last", "mean")) + " |")
if "hostd" in rows:
    lines += ["", f"Under hostd: the active guest needs {f(need and need / MiB)} MiB (its consumed memory alone); "
                  + (f"it reached {frac:.0%} of that **{f(t_need, '{:.0f}')} s** after its fill started " if t_need is not None
                     else f"it **never reached** {frac:.0%} of that while it ran ")
                  + 
                  f"(its fill took {f(h.get('t_fill') and h['t_fill'] - h['t_banner'], '{:.0f}')} s; alone "
                  f"{f(rows.get('alone', {}).get('t_fill') and rows['alone']['t_fill'] - rows['alone']['t_banner'], '{:.0f}')} s), "
                  f"its peak consumed was {f(active_peak and active_peak / MiB)} MiB "
                  f"({f(active_peak and need and 100 * active_peak / need)}% of the need); hostd's target for it settled "
                  f"**{f(t_stable, '{:.0f}')} s** after the fill started, at "
                  f"{f(tg and final_target / MiB)} MiB."]
    ta = h.get("t_active")
    end_t = h["wss_steps"][-1]["t"] if h.get("wss_steps") else None
    for vm in ("idle1", "idle2"):
        lines.append("")
        lines[-1] = (f"{vm}: consumed {f(at('hostd', vm, 'consumed', ta) and at('hostd', vm, 'consumed', ta) / MiB)} "
                     f"MiB when the active guest started, {f(at('hostd', vm, 'consumed', end_t) and at('hostd', vm, 'consumed', end_t) / MiB)} "
                     f"MiB at its last wss step (hostd's target then "
                     f"{f(at('hostd', vm, 'hostd_target', end_t) and at('hostd', vm, 'hostd_target', end_t) / MiB)} MiB; "
                     f"compressed {f(at('hostd', vm, 'compressed', end_t) and at('hostd', vm, 'compressed', end_t) / MiB)}, "
                     f"swapped {f(at('hostd', vm, 'swapped', end_t) and at('hostd', vm, 'swapped', end_t) / MiB)} MiB).")
    if h.get("hostd_end"):
        he = h["hostd_end"]
        lines += ["", f"hostd at the end: state {he['host'].get('state')} (states seen: {', '.join(h.get('hostd_states', []))}), "
                      f"tax {he['host'].get('tax')}%; per VM target / consumed / active (MiB): " + "; ".join(
                          f"{x['name']} {x['target'] // MiB} / {x['consumed'] // MiB} / {x['active'] // MiB}"
                          + (" (lagging)" if x.get("lagging") else "") for x in he["vms"])]
for c in configs:
    if "error" in rows[c]:
        lines += ["", f"Failed: {NAMES[c]}: {rows[c]['error'][:500]}"]
if host:
    lines += ["", f"This machine during the run: {host['cpus']} CPUs, load average {host['load_before']} before and "
                  f"{host['load_after']} after, {host['testhosts_before']} other test host(s) running when it started "
                  "(they share the CPUs with this one's guests and kvmm's threads)."]
lines += ["", "![sched](sched.png)", "", "<!-- sched:end -->"]

# The plot: consumed memory per VM over time under hostd (and hostd's target), the alone run's need.
os.makedirs(outdir, exist_ok=True)
series = {}
csvpath = data + ".csv"
if os.path.exists(csvpath):
    for r in csv.DictReader(open(csvpath)):
        if r["config"] != "hostd":
            continue
        for k in ("consumed_mib", "hostd_target_mib"):
            if r[k]:
                series.setdefault((r["vm"], k), []).append((float(r["t"]), float(r[k])))
colors = {"active": "#d62728", "idle1": "#1f77b4", "idle2": "#2ca02c"}
curves_cmd = []
for (vm, k), pts in sorted(series.items()):
    path = os.path.join(outdir, f"sched-{vm}-{k}.dat")
    with open(path, "w") as out:
        out.write("".join(f"{t} {v}\n" for t, v in pts))
    style = "lw 2" if k == "consumed_mib" else "lw 1 dt 2"
    what = "consumed" if k == "consumed_mib" else "hostd target"
    curves_cmd.append(f"'{path}' using 1:2 with lines {style} lc rgb '{colors.get(vm, 'black')}' title '{vm} {what}'")
png = os.path.join(os.path.dirname(doc), "sched.png")
if curves_cmd:
    marks = ""
    if h.get("t_banner") is not None:
        marks += f"set arrow 1 from {h['t_banner']},graph 0 to {h['t_banner']},graph 1 nohead dt 3 lc rgb '#d62728'\n"
        marks += f"set label 1 'active fill starts' at {h['t_banner']},graph 0.97 left offset 0.5,0 font ',9'\n"
    if h.get("wss_steps"):
        marks += (f"set object 1 rect from {h['t_fill']},graph 0 to {h['wss_steps'][-1]['t']},graph 1 behind "
                  "fillcolor rgb '#d62728' fillstyle transparent solid 0.06 noborder\n")
    need_line = f", {need / MiB} with lines dt 4 lc rgb 'black' title 'active need (alone)'" if need else ""
    cap = setup.get("capacity_mb")
    cap_line = f", {cap} with lines dt 1 lw 1 lc rgb 'gray' title 'capacity'" if cap else ""
    script = f"""set terminal pngcairo size 1000,500
set output '{png}'
set title 'Three {setup.get('ram_mb', '?')} MiB test guests under kvmm hostd, capacity {cap} MiB (test host, TCG)'
set grid
set key outside right top vertical font ',9'
set xlabel 'seconds since the idle guests started (shaded: the wss steps of the active guest)'
set ylabel 'MiB'
set yrange [0:*]
{marks}plot {', '.join(curves_cmd)}{need_line}{cap_line}
"""
    plot("sched", script)
replace_section(doc, "sched", lines)
print("\n".join(lines[5:-4]))
print("sched: " + "; ".join(f"{c} wss last {f(wss(c, 'last'))} pages/s" for c in configs)
      + (f" | hostd/alone last {f(ratio('hostd', 'alone', 'last'), '{:.3f}')}, time to need {f(t_need, '{:.0f}')} s"
         if "hostd" in rows else ""))
