"""The test guest's balloon driver (tests/guest/balloon.c) against a VMM's virtio-balloon over QMP,
shared by test_guest_balloon_qemu.py (QEMU's virtio-balloon-pci, the reference) and
test_kvmm_balloon_guest.py (kvmm's): `balloon` inflates to the target and the VMM's own memory
(PSS) drops by most of what the guest gave back, deflating returns it, stats reach `qom-get
guest-stats`, free page reporting discards the guest's free pool, the workload survives (verify: 0
mismatches), and every misbehave mode leaves the VMM running and working (a later inflate/deflate
still reaches its target) with the guest exiting 0.

run(name, boot, min_drop): boot(append, seconds, reporting) starts the VMM with 1 GiB, one vCPU,
the balloon (with free page reporting when asked) and QMP, and returns (vm, Qmp); vm.guest_status()
is the guest's exit status. min_drop is the fraction of the inflated size the PSS must fall by.
kvmm=True adds what only kvmm reports (x-kvmm-query-balloon) and its stricter checking: every bad
chain is rejected with DEVICE_NEEDS_RESET, and bad PFNs are counted."""
import re
import time
from kvmmtest import Qmp, check, pss_kib

MIB = 1 << 20
RAM_MB = 1024


def target_line(vm, pages):
    return vm.expect_re(rf"^KVMM balloon target={pages} actual=(\d+)$")


def ends_well(vm, qmp, what, pages=None):
    """The step summary, verify with 0 mismatches, status 0."""
    summary = vm.expect_re(r"^KVMM test=balloon seconds=\d+ actual=(\d+) inflated_max=(\d+) stats=(\d+) reported=(\d+)$")
    check(summary is not None, f"{what}: the step summary line")
    m = vm.expect_re(r"^KVMM test=verify pages=(\d+) mismatches=(\d+)$")
    check(m is not None and m.group(2) == "0", f"{what}: verify after the balloon step: 0 mismatches")
    qmp.close()
    status = vm.guest_status()
    check(status == 0, f"{what}: guest exit status 0 (got {status})")
    check("KVMM error=" not in vm.text(), f"{what}: no error line")
    return summary


def bad_requests(name, qmp):
    """QEMU's answers to bad balloon and QOM requests (class and text), which kvmm must match."""
    path = "/machine/peripheral/balloon0"
    cases = [
        ("balloon", {"value": 0}, "GenericError", "Parameter 'target' expects a size"),
        ("balloon", {"value": "1G"}, "GenericError", "Invalid parameter type for 'value', expected: integer"),
        ("qom-get", {"path": "/machine/peripheral/nothing", "property": "guest-stats"},
         "DeviceNotFound", "Device '/machine/peripheral/nothing' not found"),
        ("qom-get", {"path": path, "property": "no-such-prop"},
         "GenericError", "Property 'virtio-balloon-pci.no-such-prop' not found"),
        ("qom-set", {"path": path, "property": "guest-stats-polling-interval", "value": -1},
         "GenericError", "timer value must be greater than zero"),
        ("qom-set", {"path": path, "property": "guest-stats-polling-interval", "value": 1 << 33},
         "GenericError", "timer value is too big"),
    ]
    for cmd, args, cls, desc in cases:
        r = qmp.cmd(cmd, args) or {}
        err = r.get("error", {})
        check(err.get("class") == cls and err.get("desc") == desc,
              f"{name}: {cmd} {args}: {cls} '{desc}' (got {r})")
    r = qmp.cmd("qom-list", {"path": "/machine/peripheral"}) or {}
    check({"name": "balloon0", "type": "child<virtio-balloon-pci>"} in r.get("return", []),
          f"{name}: qom-list /machine/peripheral finds balloon0 as libvirt looks for it")


def run(name, boot, min_drop, kvmm=False):
    # 1. Inflate, stats, deflate; no reporting, so what the guest touched stays resident until inflated.
    vm, qmp = boot("test=fill,balloon:75,verify size=128M balloon-opts=stats", 75, False)
    found = vm.expect_re(r"^KVMM balloon event=found bdf=00:[0-9a-f]{2}\.\d device=0x(1045|1002) features=0x([0-9a-f]+)$")
    check(found is not None, "the driver finds the device and prints found")
    feat = int(found.group(2), 16) if found else 0
    check(feat & (1 << 32) and feat & 2 and not feat & 0x20, f"features: VERSION_1 and STATS_VQ, no REPORTING (0x{feat:x})")
    ready = vm.expect_re(r"^KVMM balloon event=ready free_pages=(\d+)$")
    free_pages = int(ready.group(1)) if ready else 0
    check(free_pages > (RAM_MB - 128 - 16) * 256, f"free pool: {free_pages} pages")
    bad_requests(name, qmp)
    time.sleep(1)
    pss0 = pss_kib(vm.proc.pid)
    half = RAM_MB // 2 * 256
    r = qmp.cmd("balloon", {"value": RAM_MB // 2 * MIB})
    check(r is not None and "return" in r, f"QMP balloon to {RAM_MB // 2} MiB: {r}")
    m = target_line(vm, half)
    check(m is not None and int(m.group(1)) == half, f"actual reaches the target of {half} pages")
    time.sleep(1)
    pss1 = pss_kib(vm.proc.pid)
    drop = (pss0 - pss1) // 1024
    print(f"{name} PSS: {pss0 // 1024} MiB before, {pss1 // 1024} MiB inflated (-{drop} MiB of {half // 256} MiB)")
    check(drop >= half // 256 * min_drop, f"{name}'s PSS drops by at least {min_drop:.0%} of the inflated size ({drop} MiB)")
    r = qmp.cmd("query-balloon")
    check(r and r.get("return", {}).get("actual") == RAM_MB // 2 * MIB, f"query-balloon: {r}")
    qmp.cmd("qom-set", {"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 1})
    check(vm.expect_re(r"^KVMM balloon event=stats n=1$") is not None, "the device asks for stats, the guest answers")
    stats = {}
    for _ in range(60):
        r = qmp.cmd("qom-get", {"path": "/machine/peripheral/balloon0", "property": "guest-stats"})
        stats = r.get("return", {}).get("stats", {}) if r else {}
        if stats.get("stat-total-memory", -1) > 0:
            break
        time.sleep(1)
    print(f"guest-stats: {stats}")
    check(stats.get("stat-total-memory", 0) > (RAM_MB - 2) * MIB, "guest-stats: total memory is the guest's RAM")
    check(stats.get("stat-free-memory") == (free_pages - half) * 4096,
          f"guest-stats: free memory is the free pool not inflated ({stats.get('stat-free-memory')})")
    r = qmp.cmd("balloon", {"value": RAM_MB * MIB})
    m = target_line(vm, 0)
    check(m is not None and m.group(1) == "0", "deflating back to 0 pages")
    time.sleep(1)
    pss2 = pss_kib(vm.proc.pid)
    print(f"{name} PSS after deflate: {pss2 // 1024} MiB")
    check(pss2 - pss1 >= half * 4 * 3 // 4, f"deflated pages are the guest's again: it rewrites them, {name}'s PSS rises")
    s = ends_well(vm, qmp, "inflate/deflate")
    check(s is not None and int(s.group(2)) == half and int(s.group(1)) == 0, "summary: inflated_max and actual")
    check(s is not None and int(s.group(3)) >= 1, "summary: stats answered")

    # 2. Free page reporting: the whole free pool goes back to the host right after it was touched.
    vm, qmp = boot("test=fill,balloon:45,verify size=128M balloon-opts=stats,report", 45, True)
    found = vm.expect_re(r"^KVMM balloon event=found .* features=0x([0-9a-f]+)$")
    check(found is not None and int(found.group(1), 16) & 0x20, "REPORTING negotiated")
    ready = vm.expect_re(r"^KVMM balloon event=ready free_pages=(\d+)$")
    rep = vm.expect_re(r"^KVMM balloon event=reported pages=(\d+)$")
    check(ready and rep and rep.group(1) == ready.group(1), "the first pass reports the whole free pool")
    time.sleep(1)
    pss = pss_kib(vm.proc.pid) // 1024
    pool_mb = int(ready.group(1)) // 256 if ready else 0
    print(f"{name} PSS after reporting: {pss} MiB (RAM {RAM_MB} MiB, free pool {pool_mb} MiB)")
    check(pss < RAM_MB - pool_mb * 3 // 4, f"{name}'s PSS shows the reported pool was discarded")
    qmp.cmd("balloon", {"value": (RAM_MB - 256) * MIB})
    check(target_line(vm, 256 * 256) is not None, "inflate with reporting on")
    qmp.cmd("balloon", {"value": RAM_MB * MIB})
    check(target_line(vm, 0) is not None, "deflate with reporting on")
    check(vm.expect_lines(r"^KVMM balloon event=reported pages=\d+$", 2), "a report pass after deflating")
    ends_well(vm, qmp, "reporting")

    # 3. Misbehaving drivers: {name} survives each, and the balloon still works afterwards.
    for kind in ["bad-pfn", "bad-chain", "write-inflated", "lie-stats"]:
        vm, qmp = boot(f"test=fill,balloon:30,verify size=64M misbehave={kind}", 30, False)
        check(vm.expect_re(rf"^KVMM balloon event=misbehave kind={kind}$") is not None, f"{kind}: announced")
        if kind == "write-inflated":
            check(vm.expect_re(r"^KVMM balloon event=write-inflated ok=1") is not None,
                  "write-inflated: the guest reads back what it wrote to inflated pages")
        qmp.cmd("balloon", {"value": (RAM_MB - 64) * MIB})
        check(target_line(vm, 64 * 256) is not None, f"{kind}: then inflate works")
        qmp.cmd("balloon", {"value": RAM_MB * MIB})
        check(target_line(vm, 0) is not None, f"{kind}: and deflate")
        if kind == "bad-chain":
            outcomes = re.findall(r"(?m)^KVMM balloon event=(needs-reset|no-reset returned=\d)$", vm.text())
            print(f"bad-chain outcomes: {outcomes}")
            check(len(outcomes) == 5, "bad-chain: each of the 5 chains is rejected (needs-reset) or ignored")
            check("KVMM balloon event=reinit ok=0" not in vm.text(), "bad-chain: every re-initialisation works")
        if kvmm and kind == "bad-chain":
            check(len(re.findall(r"(?m)^KVMM balloon event=needs-reset$", vm.text())) == 5,
                  "bad-chain: kvmm rejects all 5 chains with DEVICE_NEEDS_RESET")
        if kvmm and kind == "bad-pfn":
            info = qmp.cmd("x-kvmm-query-balloon").get("return", {})
            check(info.get("bad-pfns", 0) >= 3, f"bad-pfn: kvmm counted the PFNs outside RAM ({info})")
        check(qmp.cmd("query-status").get("return", {}).get("status") == "running", f"{kind}: {name} still runs")
        ends_well(vm, qmp, kind)

    vm, qmp = boot("test=fill,balloon:20,verify size=64M misbehave=ignore", 20, False)
    check(vm.expect_re(r"^KVMM balloon event=misbehave kind=ignore$") is not None, "ignore: announced")
    qmp.cmd("balloon", {"value": (RAM_MB - 64) * MIB})
    s = ends_well(vm, qmp, "ignore")
    check(s is not None and s.group(1) == "0" and s.group(2) == "0", "ignore: nothing inflated")
    check(not re.search(r"(?m)^KVMM balloon target=", vm.text()), "ignore: no target reached")
