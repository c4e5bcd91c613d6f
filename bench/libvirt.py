#!/usr/bin/env python3
"""libvirt benchmark, run inside the test host (bench/libvirt.sh starts it there).

Under one libvirtd (tests/support/libvirt-setup.sh), for each emulator in KVMM_LIBVIRT_EMULATORS
(default qemu,kvmm: Debian's qemu-system-x86_64 and kvmm's front kvmm-qemu-system-x86_64), a 512 MiB,
1-vCPU domain booting Debian's cloud kernel with the busybox initramfs (tests/support/libvirt_domain.py)
is started RUNS times, and each run records, in seconds:
  probe:   the emulator's capability probe (virsh domcapabilities, before the first run; libvirt
           caches it afterwards),
  start:   `virsh start` until it returns (libvirt's launch, QMP set-up and `cont`),
  init:    `virsh start` until the guest's /init marker appears in the serial file,
  settle:  `virsh setmem 256M` until the balloon settled: `virsh dominfo`'s used memory (libvirt
           follows the emulator's BALLOON_CHANGE events), polled, reaches 256 MiB, else the time of
           its last change before 5 s without any,
  shrunk:  `virsh setmem` until the guest's own MemTotal (printed every second) fell by 90% of the
           ballooned size,
  destroy: `virsh destroy` until it returns.
An emulator whose start fails is recorded with libvirt's error and not run again. One JSON line per
run to argv[1]."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "support"))
import libvirt_domain as lv  # noqa: E402

RUNS = int(os.environ.get("RUNS", "3"))
MEM_MIB, SETMEM_MIB = 512, 256
QUIET = 5.0


def dominfo_kb(name):
    """dominfo's "Used memory" in KiB: libvirt's balloon size, which it takes from the emulator's
    BALLOON_CHANGE events."""
    rc, out = lv.virsh("dominfo", name)
    return next((int(line.split()[2]) for line in out.splitlines() if line.startswith("Used memory:")), None)


def run_once(kind, name, i):
    row = {"emulator": kind, "run": i}
    open(lv.serial_path(name), "w").close()
    t0 = time.monotonic()
    rc, out = lv.virsh("start", name)
    row["start"] = time.monotonic() - t0
    if rc != 0:
        row["error"] = out.strip()
        row["log"] = lv.domain_log_tail(name)
        return row
    m = lv.wait_serial(name, lv.INIT_RX, 300)
    row["init"] = time.monotonic() - t0 if m else None
    if not m:
        row["error"] = "the guest did not reach /init within 300 s"
        lv.virsh("destroy", name)
        return row
    # The balloon driver is bound before /init's marker; wait for a MemTotal line to compare.
    first = lv.wait_serial(name, lv.MEMINFO_RX, 30, m.end())
    total0 = int(first.group(2)) if first else 0
    target_kb = SETMEM_MIB * 1024
    t1 = time.monotonic()
    rc, out = lv.virsh("setmem", name, f"{SETMEM_MIB}M", "--live")
    row["setmem_return"] = time.monotonic() - t1
    # Until the guest's MemTotal shrank and dominfo settled: at the target, else unchanged for
    # QUIET seconds (then the time of its last change); 240 s at most.
    pos = len(lv.serial(name))
    shrunk = settle = None
    last_kb, last_change, polls = None, t1, 0
    while time.monotonic() - t1 < 240 and (shrunk is None or settle is None):
        now = time.monotonic()
        if shrunk is None and any(int(mm.group(2)) <= total0 - (MEM_MIB - SETMEM_MIB) * 1024 * 9 // 10
                                  for mm in lv.MEMINFO_RX.finditer(lv.serial(name), pos)):
            shrunk = now - t1
        if settle is None:
            kb = dominfo_kb(name)
            polls += 1
            if kb != last_kb:
                last_kb, last_change = kb, now
            if kb == target_kb:
                settle = now - t1
            elif now - last_change > QUIET and last_kb is not None and last_kb < MEM_MIB * 1024:
                settle = last_change - t1
        time.sleep(0.1)
    row["shrunk"], row["settle"], row["settled_kb"], row["dominfo_polls"] = shrunk, settle, last_kb, polls
    t2 = time.monotonic()
    rc, out = lv.virsh("destroy", name)
    row["destroy"] = time.monotonic() - t2 if rc == 0 else None
    return row


def main():
    print(lv.setup(), flush=True)
    rows = []
    for kind in lv.emulators("qemu,kvmm"):
        emu = lv.emulator(kind)
        t0 = time.monotonic()
        rc, out = lv.virsh("domcapabilities", "--emulatorbin", emu, "--virttype", "kvm")
        probe = time.monotonic() - t0
        print(f"libvirt: {kind} ({emu}): capability probe {probe:.2f} s, exit {rc}", flush=True)
        if rc != 0:
            rows.append({"emulator": kind, "run": 0, "probe": probe, "error": out.strip()})
            print(f"libvirt: {kind}: {out.strip()}", flush=True)
            continue
        name = f"bench-{kind}"
        lv.remove(name)
        rc, out = lv.define(name, lv.domain_xml(name, emu, MEM_MIB))
        if rc != 0:
            rows.append({"emulator": kind, "run": 0, "probe": probe, "error": out.strip()})
            continue
        for i in range(RUNS):
            row = run_once(kind, name, i)
            row["probe"] = probe
            rows.append(row)
            print(f"libvirt: {kind} run {i}: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                if k not in ("emulator", "run", "log")), flush=True)
            if "error" in row:
                print(f"libvirt: {kind}: the domain's log:\n{row.get('log', '')}", flush=True)
                break
        lv.remove(name)
    with open(sys.argv[1], "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
