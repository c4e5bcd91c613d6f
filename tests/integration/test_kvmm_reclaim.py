#!/usr/bin/env python3
"""Reclaim to a limit (issue 7): compression, host swap, the balloon first, and failures.

- limit: the test guest writes 768 MiB (text-like and random pages) under --mem-limit 384M with a
  swap file; kvmm's consumed settles at the limit and its PSS grows by no more than the limit;
  pages are compressed and swapped; verify passes fault everything back in several times while
  the reclaimer keeps taking pages, with 0 mismatches; a live x-kvmm-set-memory limit is followed;
  bad limits are refused; the swap file is gone after exit.
- full swap: a 16 MiB swap file under pressure fills, KVMM_SWAP_FULL is raised, pages stay
  resident and verify finds every page intact.
- corrupted slot: the swap file is overwritten while pages are in it; the next fault on a swapped
  page is detected (MEMORY_FAILURE, a log line naming the slot's page), the VM stops with status 1
  and the guest never reads the bad data (no mismatch line).
- active: a guest touching 64 MiB of 256 MiB is estimated within 2x of that.
- Linux with its balloon driver under a limit below what it uses: the reclaimer asks the balloon
  before it compresses, and the guest keeps running."""
import os
import re
import tempfile
import time
from kvmmtest import BUILD, GUEST_INITRD, GUEST_KERNEL, TEST_GUEST, Qmp, Vm, check, finish, pss_kib

MIB = 1 << 20
# Swap files go to the build tree: the test host's own disk is small and its /tmp is memory.
os.makedirs(os.path.join(BUILD, "tests"), exist_ok=True)
tmp = tempfile.mkdtemp(dir=os.environ.get("KVMM_SWAP_DIR", os.path.join(BUILD, "tests")))


def boot(args, append, timeout=1500, kernel=TEST_GUEST):
    sock = os.path.join(tmp, f"qmp-{time.monotonic_ns()}.sock")
    extra = ["--initrd", GUEST_INITRD] if kernel != TEST_GUEST else []
    vm = Vm(["-m", "1024M", "--qmp", f"unix:{sock}", "--kernel", kernel, "--append", append] + extra + args,
            timeout=timeout)
    return vm, Qmp(sock)


def query(vm, q):
    vm.drain()
    return q.cmd("x-kvmm-query-memory")["return"]


def wait_for(vm, q, pred, timeout):
    end = time.monotonic() + timeout
    st = query(vm, q)
    while not pred(st) and time.monotonic() < end:
        time.sleep(1)
        st = query(vm, q)
    return st


def verifies(vm, n):
    return [int(m) for m in re.findall(r"KVMM test=verify pages=\d+ mismatches=(\d+)", vm.text())][:n]


# --- limit: 768 MiB written under 384 MiB -------------------------------------------------------
swap = os.path.join(tmp, "limit.swap")
vm, q = boot(["--mem-limit", "384M", "--mem-swap", f"{swap},size=640M"],
             "test=fill,idle:40,verify,idle:20,verify,idle:60,verify size=768M pattern=text:50,random:50 seed=7")
base = pss_kib(vm.proc.pid) * 1024
check(vm.expect("KVMM test=fill "), "limit: the guest wrote 768 MiB")
st = wait_for(vm, q, lambda s: s["consumed"] <= s["limit"] * 1.02, 120)
check(st["consumed"] <= 384 * MIB * 1.02,
      f"limit: consumed settles at the 384 MiB limit ({st['consumed'] // MIB} MiB)")
time.sleep(5)
pss = pss_kib(vm.proc.pid) * 1024
check(pss - base <= 384 * MIB * 1.05,
      f"limit: kvmm's PSS grew by {(pss - base) // MIB} MiB, at most the limit (+5%)")
check(st["compressed"] > 0 and st["swapped"] > 0,
      f"limit: pages compressed ({st['compressed'] // MIB} MiB) and swapped ({st['swapped'] // MIB} MiB)")
check(st["compress-saved"] > 0, "limit: compression saves memory")
check(os.path.exists(swap), "limit: the swap file exists while kvmm runs")
check(vm.expect_count("KVMM test=verify ", 2), "limit: two verify passes ran")
st = query(vm, q)
check(st["swap-in"] > 0 and st["compress-in"] > 0,
      f"limit: verify faulted pages back (swap-in {st['swap-in']}, compress-in {st['compress-in']})")
# Live: a lower limit is followed, bad ones are refused.
r = q.cmd("x-kvmm-set-memory", {"limit": 256 * MIB})
check("return" in r, "limit: x-kvmm-set-memory lowers the limit live")
st = wait_for(vm, q, lambda s: s["consumed"] <= 256 * MIB * 1.02, 90)
check(st["consumed"] <= 256 * MIB * 1.02 and st["limit"] == 256 * MIB,
      f"limit: consumed follows the new limit ({st['consumed'] // MIB} MiB)")
for bad, why in (({"limit": 2 << 30}, "above the memory"), ({"limit": 1}, "below a page"),
                 ({"reservation": 300 * MIB}, "a reservation above the limit"),
                 ({"limit": "x"}, "not a number")):
    r = q.cmd("x-kvmm-set-memory", bad)
    check("error" in r, f"limit: x-kvmm-set-memory refuses {why}")
r = q.cmd("x-kvmm-page-out", {"gpa": 0, "size": 1 << 62, "how": "sideways"})
check("error" in r, "limit: x-kvmm-page-out refuses an unknown 'how'")
check(vm.guest_status() == 0, "limit: the guest finished")
counts = verifies(vm, 3)
check(counts == [0, 0, 0], f"limit: three verify passes, 0 mismatches ({counts})")
check(not os.path.exists(swap), "limit: the swap file is deleted on exit")

# --- full swap file --------------------------------------------------------------------------
swap = os.path.join(tmp, "full.swap")
vm, q = boot(["--mem-limit", "256M", "--mem-compress", "off", "--mem-swap", f"{swap},size=16M"],
             "test=fill,idle:25,verify size=512M pattern=random:100 seed=9")
check(q.event("KVMM_SWAP_FULL", timeout=600, vm=vm) is not None, "full swap: KVMM_SWAP_FULL is raised")
st = query(vm, q)
check(st["swapped"] <= 16 * MIB and st["swapped"] > 0,
      f"full swap: 16 MiB swapped at most ({st['swapped'] // MIB} MiB), the rest stays resident")
check(vm.guest_status() == 0 and verifies(vm, 1) == [0], "full swap: verify finds every page intact")

# --- corrupted slot --------------------------------------------------------------------------
swap = os.path.join(tmp, "bad.swap")
vm, q = boot(["--mem-limit", "256M", "--mem-compress", "off", "--mem-swap", f"{swap},size=384M"],
             "test=fill,idle:60,verify size=512M pattern=random:100 seed=11")
check(vm.expect("KVMM test=fill "), "corrupt: the guest wrote 512 MiB")
st = wait_for(vm, q, lambda s: s["swapped"] >= 128 * MIB, 55)
check(st["swapped"] >= 128 * MIB, f"corrupt: pages went to swap ({st['swapped'] // MIB} MiB)")
with open(swap, "r+b") as f:
    size = os.fstat(f.fileno()).st_size
    for off in range(0, size, 4 * MIB):
        f.seek(off + 100)
        f.write(b"\xa5" * 64)
check(q.event("MEMORY_FAILURE", timeout=300, vm=vm) is not None, "corrupt: MEMORY_FAILURE is raised")
status = vm.wait()
check(status == 1, f"corrupt: the VM stops with status 1 ({status})")
check("fails its checksum" in vm.text(), "corrupt: the log says the slot failed its checksum")
check("KVMM mismatch" not in vm.text(), "corrupt: the guest never read the damaged page")

# --- active estimate ---------------------------------------------------------------------------
vm, q = boot([], "test=fill,wss,verify size=256M hot=25 seconds=60 pattern=text:100 seed=5")
check(vm.expect("KVMM test=fill "), "active: the guest wrote 256 MiB")
time.sleep(40)
st = query(vm, q)
hot = 64 * MIB
check(hot / 2 <= st["active"] <= hot * 2,
      f"active: the estimate ({st['active'] // MIB} MiB) is within 2x of the 64 MiB hot set")
check(vm.guest_status() == 0 and verifies(vm, 1) == [0], "active: verify after wss")

# --- Linux: the balloon first -------------------------------------------------------------------
vm, q = boot(["--balloon", "--mem-limit", "320M", "--mem-share", "off"], "console=ttyS0 panic=-1",
             kernel=GUEST_KERNEL)
check(vm.expect("/ #"), "linux: boots to a shell under a 320 MiB limit")
vm.send("dd if=/dev/zero of=/dev/null bs=600M count=1; echo DD$((1+1))DONE\n")
check(vm.expect("DD2DONE"), "linux: a 600 MiB dd (more than the limit) runs")
st = wait_for(vm, q, lambda s: s["balloon-asked"] > 0, 120)
check(st["balloon-asked"] > 0, f"linux: the reclaimer asked the balloon ({st['balloon-asked'] // MIB} MiB)")
bal = q.cmd("query-balloon")["return"]["actual"]
check(bal < 1024 * MIB, f"linux: the guest inflated its balloon (VM now {bal // MIB} MiB)")
vm.send("echo ALIVE$((2+3))\n")
check(vm.expect("ALIVE5"), "linux: the guest keeps running")
q.cmd("quit")
vm.wait()
finish()
