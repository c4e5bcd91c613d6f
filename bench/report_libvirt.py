#!/usr/bin/env python3
"""Summarises bench/libvirt.py's runs: medians per emulator, ratios kvmm / QEMU, a gnuplot PNG
(docs/libvirt.png) and the libvirt section of docs/benchmarks.md. Usage: report_libvirt.py DATA OUTDIR DOC"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_common import plot, replace_section  # noqa: E402

data, outdir, doc = sys.argv[1:4]
rows = [json.loads(line) for line in open(data) if line.strip().startswith("{")]
host = next((r["host"] for r in rows if "host" in r), None)
rows = [r for r in rows if "emulator" in r]
KEYS = [("probe", "capability probe"), ("start", "virsh start returns"), ("init", "start to guest /init"),
        ("settle", "setmem to balloon settled"), ("shrunk", "setmem to guest MemTotal shrunk"),
        ("destroy", "virsh destroy")]
kinds = [k for k in ("qemu", "kvmm") if any(r["emulator"] == k for r in rows)]


def good(kind):
    return [r for r in rows if r["emulator"] == kind and "error" not in r]


def med(kind, key):
    vals = [r[key] for r in good(kind) if isinstance(r.get(key), (int, float))]
    if key == "probe":
        vals = vals[:1]
    return statistics.median(vals) if vals else None


def cell(v):
    return f"{v:.2f}" if v is not None else "n/a"


def ratio(key):
    a, b = med("kvmm", key), med("qemu", key)
    return f"{a / b:.2f}" if a and b else "n/a"


n = max((len(good(k)) for k in kinds), default=0)
lines = ["<!-- libvirt:begin -->", "## libvirt (bench/libvirt.sh)", "",
         f"Medians of {n} runs per emulator under one libvirtd 9.0 (Debian 12) in one test host run (TCG: compare "
         "ratios only, see docs/testing.md). The domain: 512 MiB, 1 vCPU, Debian's cloud kernel with the busybox "
         "initramfs, console to a file, virtio memballoon with stats period 1 (tests/support/libvirt_domain.py). "
         "*settle*: `virsh setmem 256M` until `virsh dominfo`'s used memory (libvirt follows the emulator's "
         "BALLOON_CHANGE events), polled, reaches 256 MiB (else its last change before 5 s of quiet); *shrunk*: until the guest's own MemTotal fell by 90% of 256 MiB. Seconds.", "",
         "| emulator | " + " | ".join(label for _, label in KEYS) + " | runs |",
         "|---|" + "---|" * (len(KEYS) + 1)]
for kind in kinds:
    lines.append(f"| {kind} | " + " | ".join(cell(med(kind, k)) for k, _ in KEYS) + f" | {len(good(kind))} |")
lines += ["", "| ratio | " + " | ".join(label for _, label in KEYS) + " |", "|---|" + "---|" * len(KEYS),
          "| kvmm / qemu | " + " | ".join(ratio(k) for k, _ in KEYS) + " |", ""]
for kind in kinds:
    errs = [r for r in rows if r["emulator"] == kind and "error" in r]
    if errs:
        lines.append(f"{kind} did not run: `{errs[0]['error'].splitlines()[0] if errs[0]['error'] else '?'}`")
        lines.append("")
if host:
    lines.append(f"Outer machine: load {host.get('load_before')} before, {host.get('load_after')} after, "
                 f"{host.get('testhosts_before')} other test host(s) running at the start, {host.get('cpus')} CPUs.")
    lines.append("")
lines += ["![libvirt timings](libvirt.png)", "", "<!-- libvirt:end -->"]

plot_dat = os.path.join(outdir, "libvirt-plot.dat")
with open(plot_dat, "w") as f:
    for k, label in KEYS:
        f.write(f"\"{label}\" " + " ".join(str(med(kind, k) or 0) for kind in kinds) + "\n")
png = os.path.join(os.path.dirname(doc), "libvirt.png")
cols = ", ".join(f"'{plot_dat}' using {i + 2}{':xtic(1)' if i == 0 else ''} title '{kind}'"
                 for i, kind in enumerate(kinds))
plot("libvirt", f"""set terminal pngcairo size 900,420
set output '{png}'
set title 'virsh against each emulator in the test host (medians; TCG, compare ratios)'
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid ytics
set key left top
set xtics rotate by -20
set ylabel 'seconds'
plot {cols}
""")
replace_section(doc, "libvirt", lines)
print("\n".join(lines[5:-3]))
