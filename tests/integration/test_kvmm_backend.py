#!/usr/bin/env python3
"""Guest RAM backends (--mem-backend anon|memfd|thp|hugetlb) under the test guest with the balloon:
for each backend the guest fills its workload, the balloon inflates 128 MiB and the memory behind
guest RAM really falls by (nearly) that much, and the workload reads back intact (verify: 0
mismatches, before and after). Sharing is off (--mem-share off): no userfaultfd, so THP works.

What "the memory behind guest RAM" is depends on the backend: anon and thp hold private pages, so
kvmm's PSS shows them; memfd and hugetlb hold them in the memfd, which also keeps pages that are
merely unmapped (MADV_DONTNEED on a shared mapping frees nothing), so the memfd's own size on
disk (st_blocks of /proc/PID/fd/N) is measured there, not PSS. thp must also show AnonHugePages.

hugetlb frees only whole 2 MiB pages. The balloon releases what each inflate kick brings (the test
guest sends 256 PFNs, 1 MiB, per buffer), so inflating frees no huge page until something gathers
ballooned 4 KiB pages into whole huge pages (as QEMU's PartiallyBalloonedPage does): that figure
is printed, not checked. Free page reporting hands over 2 MiB-aligned segments, and that is the
path checked for hugetlb: the reported pool leaves the memfd. hugetlb gets its pool here
(vm.nr_hugepages, restored at the end): the test host is ours."""
import os
import tempfile
import time
from kvmmtest import TEST_GUEST, Qmp, Vm, check, finish, pss_kib

MIB = 1 << 20
RAM_MB = 512
INFLATE_MB = 128
HUGEPAGES = "/proc/sys/vm/nr_hugepages"

tmp = tempfile.mkdtemp()


def memfd_kib(pid):
    """KiB the guest RAM memfd holds (st_blocks), or None when kvmm has no such memfd."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:kvmm-ram"):
                return os.stat(f"/proc/{pid}/fd/{fd}").st_blocks * 512 // 1024
        except OSError:
            pass
    return None


def rollup(pid, key):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def held_kib(pid, backend):
    return memfd_kib(pid) if backend in ("memfd", "hugetlb") else pss_kib(pid)


def run(backend, report=False):
    sock = os.path.join(tmp, f"qmp-{backend}.sock")
    vm = Vm(["-m", f"{RAM_MB}M", "--mem-backend", backend, "--mem-share", "off",
             "--balloon" + ("=free-page-reporting" if report else ""), "--qmp", f"unix:{sock}",
             "--kernel", TEST_GUEST, "--append", "test=fill,verify,balloon:40,verify size=128M" +
             (" balloon-opts=report" if report else "")], timeout=400)
    qmp = Qmp(sock)
    v = vm.expect_re(r"^KVMM test=verify pages=(\d+) mismatches=(\d+)$")
    check(v is not None and v.group(2) == "0", f"{backend}: verify after the fill: 0 mismatches")
    pid = vm.proc.pid
    if backend == "memfd" or backend == "hugetlb":
        check(memfd_kib(pid) is not None, f"{backend}: guest RAM is a memfd (/memfd:kvmm-ram)")
    if backend == "thp":
        huge = rollup(pid, "AnonHugePages")
        check(huge > 0, f"thp: AnonHugePages after the fill: {huge} KiB")
    ready = vm.expect_re(r"^KVMM balloon event=ready free_pages=(\d+)$")
    check(ready is not None, f"{backend}: the balloon driver is ready")
    if report:
        rep = vm.expect_re(r"^KVMM balloon event=reported pages=(\d+)$")
        check(ready and rep and rep.group(1) == ready.group(1), f"{backend}: the free pool is reported")
        pool_mb = int(ready.group(1)) // 256 if ready else 0
        time.sleep(1)
        held = held_kib(pid, backend) // 1024
        print(f"{backend}: held {held} MiB after reporting a free pool of {pool_mb} MiB", flush=True)
        check(held < RAM_MB - pool_mb * 3 // 4,
              f"{backend}: the reported pool leaves the memory behind guest RAM ({held} MiB held)")
    time.sleep(1)
    held0, pss0 = held_kib(pid, backend), pss_kib(pid)
    q0 = (qmp.cmd("x-kvmm-query-balloon") or {}).get("return", {})
    pages = INFLATE_MB * 256
    r = qmp.cmd("balloon", {"value": (RAM_MB - INFLATE_MB) * MIB})
    check(r is not None and "return" in r, f"{backend}: QMP balloon to {RAM_MB - INFLATE_MB} MiB")
    m = vm.expect_re(rf"^KVMM balloon target={pages} actual=(\d+)$")
    check(m is not None and int(m.group(1)) == pages, f"{backend}: actual reaches {pages} pages")
    time.sleep(1)
    held1, pss1 = held_kib(pid, backend), pss_kib(pid)
    q1 = (qmp.cmd("x-kvmm-query-balloon") or {}).get("return", {})
    drop = (held0 - held1) // 1024
    print(f"{backend}: inflate: held {held0 // 1024} -> {held1 // 1024} MiB (-{drop}); PSS {pss0 // 1024} -> "
          f"{pss1 // 1024} MiB; x-kvmm-query-balloon guest-ram-resident "
          f"{q0.get('guest-ram-resident', -1) // MIB} -> {q1.get('guest-ram-resident', -1) // MIB} MiB, "
          f"released-ranges {q1.get('released-ranges')}", flush=True)
    if not report:
        check(drop >= INFLATE_MB * 9 // 10,
              f"{backend}: the memory behind guest RAM falls by >= 90% of {INFLATE_MB} MiB ({drop} MiB)")
    s = vm.expect_re(r"^KVMM test=balloon seconds=\d+ actual=(\d+) inflated_max=(\d+)")
    check(s is not None and int(s.group(2)) == pages, f"{backend}: the balloon step ends inflated")
    check(vm.expect_lines(r"^KVMM test=verify pages=\d+ mismatches=0$", 2),
          f"{backend}: verify after the balloon: 0 mismatches")
    qmp.close()
    status = vm.guest_status()
    check(status == 0, f"{backend}: guest exit status 0 (got {status})")
    check("KVMM error=" not in vm.text(), f"{backend}: no error line")
    check("virtio-balloon: releasing" not in vm.text(), f"{backend}: every release worked")


for b in ["anon", "memfd", "thp"]:
    run(b)

with open(HUGEPAGES) as f:
    old = f.read().strip()
want = RAM_MB // 2 + 16
with open(HUGEPAGES, "w") as f:
    f.write(str(want))
with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
    free = int(f.read())
try:
    if check(free >= RAM_MB // 2, f"hugetlb: vm.nr_hugepages={want} gives {free} free 2 MiB pages"):
        run("hugetlb", report=True)
        with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
            check(int(f.read()) == free, "hugetlb: every huge page is back in the pool after kvmm exits")
    # A pool too small is refused at start, naming the sysctl (exit status 2).
    with open(HUGEPAGES, "w") as f:
        f.write("0")
    vm = Vm(["-m", f"{RAM_MB}M", "--mem-backend", "hugetlb", "--kernel", TEST_GUEST], timeout=60)
    status = vm.wait()
    check(status == 2 and "vm.nr_hugepages" in vm.text(),
          f"hugetlb without huge pages: exit status 2 naming vm.nr_hugepages (got {status})")
finally:
    with open(HUGEPAGES, "w") as f:
        f.write(old)
finish()
