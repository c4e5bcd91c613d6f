#!/usr/bin/env python3
# kvmm-test-timeout: 1200
"""libvirt's own QEMU driver (Debian 12's libvirtd 9.0, started by tests/support/libvirt-setup.sh)
drives an emulator through plain virsh: a domain booting Debian's cloud kernel with the busybox
initramfs (console to a file, virtio memballoon with a stats period) is defined and started and
reaches /init; dommemstat and domstats show the balloon and the guest's stats; setmem shrinks the
guest (the balloon's actual and the guest's own MemTotal); memtune --hard-limit reaches the domain's
cgroup (memory.max) and, for kvmm, kvmm's own limit (x-kvmm-query-memory); suspend / resume,
destroy, undefine. Then a domain with <nosharepages/>, one with autodeflate and freePageReporting
(the guest sees both balloon features), and one asking for a virtio-rng, which kvmm lacks: its start
must fail with an error that names it.

The emulator is a parameter: KVMM_LIBVIRT_EMULATORS=qemu (default: Debian's qemu-system-x86_64, which
proves the test and the set-up), kvmm (kvmm's QEMU-compatible front, build/release/kvmm run as
kvmm-qemu-system-x86_64), or qemu,kvmm. docs/libvirt.md, "Testing with libvirt"."""
import faulthandler
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import libvirt_domain as lv  # noqa: E402
import kvmmtest  # noqa: E402
from kvmmtest import finish  # noqa: E402

MiB_KB = 1024
MEM_MIB = 512
SETMEM_MIB = 256
# Above what the emulator holds once ballooned to 256 MiB (about 150 MiB), so the kernel does not
# reclaim, and below the guest's 512 MiB, so kvmm's own limit must come down (docs/libvirt.md).
HARD_LIMIT_KB = 400 * MiB_KB
BALLOON_F_DEFLATE_ON_OOM, BALLOON_F_REPORTING = 2, 5


def say(text):
    print(text, flush=True)
    # Nothing said for 4 minutes: print where the test waits (a hang in CI shows where).
    faulthandler.dump_traceback_later(240)


def check(cond, what):
    faulthandler.dump_traceback_later(240)
    return kvmmtest.check(cond, what)


def monitor(name, command):
    """A QMP command through libvirt's own monitor connection; the reply's return, or None."""
    rc, out = lv.virsh("qemu-monitor-command", name, json.dumps({"execute": command}))
    try:
        return json.loads(out)["return"] if rc == 0 else None
    except (ValueError, KeyError):
        return None


def start(kind, name, what):
    """virsh start; True if it started. On failure prints virsh's error and the domain's log."""
    t0 = time.monotonic()
    rc, out = lv.virsh("start", name)
    say(f"{kind}: virsh start {name}: exit {rc} after {time.monotonic() - t0:.1f} s: {out.strip()}")
    if rc != 0:
        say(f"{kind}: the domain's log (/var/log/libvirt/qemu/{name}.log), last lines:\n{lv.domain_log_tail(name)}")
    return check(rc == 0, f"{kind}: virsh start of the {what} domain")


def features(name, timeout=180):
    m = lv.wait_serial(name, lv.FEATURES_RX, timeout)
    return m.group(1) if m else ""


def meminfo_lines(name):
    return [(float(m.group(1)), int(m.group(2))) for m in lv.MEMINFO_RX.finditer(lv.serial(name))]


def wait_for(cond, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def main_domain(kind, emu):
    name = f"lv-{kind}"
    rc, out = lv.define(name, lv.domain_xml(name, emu, MEM_MIB))
    if not check(rc == 0, f"{kind}: virsh define ({out.strip()})"):
        return
    if not start(kind, name, "balloon"):
        lv.remove(name)
        return
    p = lv.pid(name)
    m = lv.wait_serial(name, lv.INIT_RX, 180)
    check(m is not None, f"{kind}: the guest reached /init (marker in the serial file)")
    check(m is not None and MEM_MIB * MiB_KB * 3 // 4 < int(m.group(1)) <= MEM_MIB * MiB_KB,
          f"{kind}: the guest's MemTotal fits {MEM_MIB} MiB ({m and m.group(1)} KiB)")
    bits = features(name, 30)
    check(bits != "", f"{kind}: Linux's virtio_balloon driver took the balloon")
    check(bits[BALLOON_F_DEFLATE_ON_OOM:BALLOON_F_DEFLATE_ON_OOM + 1] == "0" and
          bits[BALLOON_F_REPORTING:BALLOON_F_REPORTING + 1] == "0",
          f"{kind}: no deflate-on-oom, no free page reporting by default (features {bits})")

    # The guest's stats arrive at the stats period (1 s).
    stats = wait_for(lambda: (lambda s: s if "usable" in s and "available" in s else None)(lv.dommemstat(name)), 30)
    say(f"{kind}: dommemstat {stats}")
    check(stats and stats.get("actual") == MEM_MIB * MiB_KB, f"{kind}: dommemstat actual = {MEM_MIB} MiB")
    check(stats and 0 < stats.get("usable", 0) < MEM_MIB * MiB_KB and stats.get("last_update", 0) > 0,
          f"{kind}: dommemstat carries the guest's stats (usable, last_update)")
    rc, out = lv.virsh("domstats", name, "--balloon", "--state")
    check(rc == 0 and "state.state=1" in out and f"balloon.current={MEM_MIB * MiB_KB}" in out and
          f"balloon.maximum={MEM_MIB * MiB_KB}" in out and "balloon.usable=" in out,
          f"{kind}: domstats: running, balloon current = maximum = {MEM_MIB} MiB, guest stats")

    # setmem: libvirt sends `balloon` and follows BALLOON_CHANGE events.
    before = meminfo_lines(name)
    total_before = before[-1][1] if before else 0
    rc, out = lv.virsh("setmem", name, f"{SETMEM_MIB}M", "--live")
    check(rc == 0, f"{kind}: virsh setmem {SETMEM_MIB}M ({out.strip()})")
    target_kb = SETMEM_MIB * MiB_KB
    t0 = time.monotonic()
    actual = wait_for(lambda: lv.dommemstat(name).get("actual") == target_kb, 240, 1)
    say(f"{kind}: balloon at {SETMEM_MIB} MiB after {time.monotonic() - t0:.1f} s")
    check(actual, f"{kind}: dommemstat actual reaches {SETMEM_MIB} MiB")
    rc, out = lv.virsh("dominfo", name)
    check(f"Used memory:    {target_kb} KiB" in out, f"{kind}: dominfo's used memory is {SETMEM_MIB} MiB")
    shrunk = wait_for(lambda: (lambda ls: ls and ls[-1][1] <= total_before - target_kb * 9 // 10)(
        meminfo_lines(name)), 30)
    after = meminfo_lines(name)
    check(shrunk, f"{kind}: the guest's MemTotal fell by at least 90% of {MEM_MIB - SETMEM_MIB} MiB "
          f"({total_before} -> {after[-1][1] if after else '?'} KiB)")

    # memtune: libvirt writes the domain cgroup's memory.max; kvmm must follow it.
    rc, out = lv.virsh("memtune", name, "--hard-limit", str(HARD_LIMIT_KB))
    check(rc == 0, f"{kind}: virsh memtune --hard-limit {HARD_LIMIT_KB} ({out.strip()})")
    rc, out = lv.virsh("memtune", name)
    check(f"hard_limit     : {HARD_LIMIT_KB}" in out, f"{kind}: virsh memtune reads the hard limit back")
    cg = lv.domain_cgroup(p) if p else None
    mmax = lv.read_file(os.path.join(cg, "memory.max")) if cg else None
    say(f"{kind}: emulator pid {p}, domain cgroup {cg}, memory.max {mmax}")
    check(mmax == str(HARD_LIMIT_KB * 1024), f"{kind}: the domain cgroup's memory.max is the hard limit")
    if kind == "kvmm":
        seen = []
        got = wait_for(lambda: (lambda r: seen.append(r and r.get("limit")) or (
            r if r and 0 < r.get("limit", 0) <= HARD_LIMIT_KB * 1024 else None))(
            monitor(name, "x-kvmm-query-memory")), 15)
        say(f"{kind}: x-kvmm-query-memory limit {seen[-1] if seen else None}")
        if not got:
            log = lv.read_file(f"/var/log/libvirt/qemu/{name}.log") or ""
            say(f"{kind}: kvmm's log lines on cgroups:\n" +
                "\n".join(line for line in log.splitlines() if "cgroup" in line.lower()))
        check(got, f"{kind}: kvmm's own limit follows the hard limit (0 < limit <= {HARD_LIMIT_KB * 1024}, "
              f"below the guest's {MEM_MIB} MiB)")

    # suspend / resume: the guest's meminfo lines stop and come back.
    rc, out = lv.virsh("suspend", name)
    check(rc == 0 and lv.virsh("domstate", name)[1].strip() == "paused", f"{kind}: suspend -> paused")
    n = len(meminfo_lines(name))
    time.sleep(3)
    check(len(meminfo_lines(name)) <= n + 1, f"{kind}: a paused guest prints nothing new")
    rc, out = lv.virsh("resume", name)
    check(rc == 0 and lv.virsh("domstate", name)[1].strip() == "running", f"{kind}: resume -> running")
    n = len(meminfo_lines(name))
    check(wait_for(lambda: len(meminfo_lines(name)) > n + 1, 30), f"{kind}: the resumed guest runs on")

    rc, out = lv.virsh("destroy", name)
    check(rc == 0 and lv.virsh("domstate", name)[1].strip() == "shut off", f"{kind}: destroy -> shut off")
    check(p and wait_for(lambda: not os.path.exists(f"/proc/{p}"), 10, 0.1),
          f"{kind}: the emulator process is gone")
    check(cg and wait_for(lambda: not os.path.exists(cg), 10, 0.1), f"{kind}: libvirt removed the domain cgroup")
    rc, out = lv.virsh("undefine", name)
    check(rc == 0 and name not in lv.virsh("list", "--all", "--name")[1].split(), f"{kind}: undefine")


def nosharepages(kind, emu):
    name = f"lv-{kind}-noshare"
    rc, out = lv.define(name, lv.domain_xml(name, emu, MEM_MIB, memory_backing="<nosharepages/>"))
    if check(rc == 0, f"{kind}: define with <nosharepages/> ({out.strip()})") and start(kind, name, "nosharepages"):
        args = " ".join(lv.cmdline(lv.pid(name)))
        check("mem-merge=off" in args, f"{kind}: libvirt passed -machine ...,mem-merge=off")
        if kind == "kvmm":
            r = monitor(name, "x-kvmm-query-memory")
            check(r is not None and r.get("mode") == "off",
                  f"{kind}: kvmm shares no pages (x-kvmm-query-memory mode {r and r.get('mode')})")
    lv.remove(name)


def autodeflate(kind, emu):
    name = f"lv-{kind}-deflate"
    rc, out = lv.define(name, lv.domain_xml(name, emu, MEM_MIB,
                                            balloon_attrs=" autodeflate='on' freePageReporting='on'"))
    if check(rc == 0, f"{kind}: define with autodeflate and freePageReporting ({out.strip()})") and \
            start(kind, name, "autodeflate + freePageReporting"):
        args = " ".join(lv.cmdline(lv.pid(name)))
        check('"deflate-on-oom":true' in args and '"free-page-reporting":true' in args,
              f"{kind}: libvirt asked for deflate-on-oom and free-page-reporting")
        bits = features(name)
        check(bits[BALLOON_F_DEFLATE_ON_OOM:BALLOON_F_DEFLATE_ON_OOM + 1] == "1",
              f"{kind}: the guest's balloon has DEFLATE_ON_OOM (features {bits})")
        check(bits[BALLOON_F_REPORTING:BALLOON_F_REPORTING + 1] == "1",
              f"{kind}: the guest's balloon has free page REPORTING")
    lv.remove(name)


def missing_device(kind, emu):
    """A virtio-rng: QEMU has it (the XML is good), kvmm does not and must say so. libvirt checks
    a domain against the emulator's probed capabilities, so it may refuse it at define (kvmm's probe
    does not list the rng-random backend) rather than kvmm at start; either way virsh must say why."""
    name = f"lv-{kind}-rng"
    rng = "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
    rc, out = lv.define(name, lv.domain_xml(name, emu, MEM_MIB, extra_devices=rng))
    say(f"{kind}: virsh define {name}: exit {rc}: {out.strip()}")
    if kind == "qemu":
        if check(rc == 0, f"{kind}: define with a virtio-rng ({out.strip()})"):
            rc, out = lv.virsh("start", name)
            check(rc == 0, f"{kind}: a domain with a virtio-rng starts ({out.strip()})")
    else:
        if rc == 0:
            rc, out = lv.virsh("start", name)
            say(f"{kind}: virsh start {name}: exit {rc}: {out.strip()}")
        check(rc != 0, f"{kind}: a domain with a virtio-rng is refused (at define or start)")
        check("rng" in out.lower(), f"{kind}: virsh's error names the missing device (virtio-rng)")
    lv.remove(name)


def main():
    if os.environ.get("KVMM_IN_TESTHOST") != "1":
        say("skipped: libvirtd is set up only inside the test host (tests/support/libvirt-setup.sh)")
        return
    kinds = lv.emulators("qemu,kvmm")
    say(lv.setup())
    for kind in kinds:
        emu = lv.emulator(kind)
        say(f"=== {kind}: <emulator>{emu}</emulator>")
        t0 = time.monotonic()
        rc, out = lv.virsh("domcapabilities", "--emulatorbin", emu, "--virttype", "kvm")
        say(f"{kind}: capability probe (virsh domcapabilities): exit {rc}, {time.monotonic() - t0:.1f} s"
            + ("" if rc == 0 else f": {out.strip()}"))
        check(rc == 0, f"{kind}: libvirt probed the emulator's capabilities")
        for part in (main_domain, nosharepages, autodeflate, missing_device):
            t1 = time.monotonic()
            part(kind, emu)
            say(f"{kind}: {part.__name__} took {time.monotonic() - t1:.1f} s")
        say(f"=== {kind}: {time.monotonic() - t0:.1f} s")
    # Later tests in this test host boot get it without libvirtd.
    subprocess.run([os.path.join(lv.REPO, "tests", "support", "libvirt-setup.sh"), "stop"])
    finish()


if __name__ == "__main__":
    main()
