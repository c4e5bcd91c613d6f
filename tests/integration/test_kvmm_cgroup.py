#!/usr/bin/env python3
# kvmm-test-host: one-cpu
"""--mem-cgroup (issue 9, cgroup memtune): kvmm started in a child cgroup v2 with the memory
controller follows the cgroup's memory.max and memory.high (as libvirt's <memtune> hard_limit and
soft_limit write them) with its own limit, below the cgroup's value by its overhead and margin, so
the kernel never has to act: the test guest fills more than the cgroup allows, kvmm's PSS settles
under it, no OOM kill, and every page verifies. Lowering is done through memory.high: a memory.max
written below what the cgroup holds is enforced by the kernel at once (reclaim, then its OOM
killer), before any VMM can react (docs/libvirt.md)."""
import os
import re
import stat
import time
import kvmmtest
from kvmmtest import check, finish, pss_kib
from reclaim_common import MIB, boot, query, tmp, verifies, wait_for

CG = "/sys/fs/cgroup"
if not os.path.exists(os.path.join(CG, "cgroup.controllers")):
    os.makedirs(CG, exist_ok=True)
    check(os.system(f"mount -t cgroup2 none {CG}") == 0, "cgroup2 mounted")
with open(os.path.join(CG, "cgroup.subtree_control"), "w") as f:
    f.write("+memory")
child = os.path.join(CG, f"kvmmtest{os.getpid()}")
os.mkdir(child)


def put(name, value):
    with open(os.path.join(child, name), "w") as f:
        f.write(value)


def get(name):
    with open(os.path.join(child, name)) as f:
        return f.read()


# kvmm goes into the child cgroup through a wrapper that moves itself there first.
wrapper = os.path.join(tmp, "kvmm-in-cgroup")
with open(wrapper, "w") as f:
    f.write(f"#!/bin/sh\necho $$ > {child}/cgroup.procs\nexec {kvmmtest.KVMM} \"$@\"\n")
os.chmod(wrapper, stat.S_IRWXU)
kvmmtest.KVMM = wrapper

put("memory.max", str(384 * MIB))
vm, q = boot(["--mem-swap", os.path.join(tmp, "cg.swap")],
             "test=fill,idle:60,verify size=512M pattern=text:70,random:30 seed=9")
st = query(vm, q)
check(st["limit"] < 384 * MIB - 8 * MIB and st["limit"] > 320 * MIB,
      f"start: memory.max 384M -> limit {st['limit'] // MIB} MiB (below by overhead and margin)")
check(vm.expect("KVMM test=fill "), "the guest wrote 512 MiB inside a 384 MiB cgroup")
pid = int(open(os.path.join(child, "cgroup.procs")).read().split()[0])
check(pss_kib(pid) * 1024 < 384 * MIB, f"PSS {pss_kib(pid) // 1024} MiB is under memory.max")

put("memory.max", str(480 * MIB))
st = wait_for(vm, q, lambda s: s["limit"] > 400 * MIB, 30)
check(400 * MIB < st["limit"] < 480 * MIB, f"memory.max 480M -> limit {st['limit'] // MIB} MiB")

# memory.high below memory.max binds instead. Lowered below what the VM holds, the kernel throttles
# every thread of the cgroup that allocates, kvmm's own too, and in the test host (transparent huge
# pages "always": a heap that grows charges 2 MiB at a time) that stalls kvmm for minutes
# (docs/libvirt.md, "cgroup memtune"); so here it is set above what the VM holds.
put("memory.high", str(440 * MIB))
st = wait_for(vm, q, lambda s: s["limit"] < 440 * MIB, 30)
check(384 * MIB < st["limit"] < 440 * MIB, f"memory.high 440M -> limit {st['limit'] // MIB} MiB")
check(pss_kib(pid) * 1024 <= 440 * MIB, f"PSS {pss_kib(pid) // 1024} MiB is under memory.high")

put("memory.high", "max")
put("memory.max", "max")
st = wait_for(vm, q, lambda s: s["limit"] == 1024 * MIB, 30)
check(st["limit"] == 1024 * MIB, "max -> no limit (the VM's memory)")

check(vm.expect("KVMM test=verify "), "the guest verified its pages")
end = time.monotonic() + 30  # the rest of the line may still be on its way
while not re.search(r"test=verify pages=\d+ mismatches=\d+\s", vm.text()) and time.monotonic() < end:
    time.sleep(0.5)
    vm.drain()
check(verifies(vm, 1) == [0], "no page lost")
events = get("memory.events")
check("oom_kill 0" in events, f"no OOM kill in the cgroup ({events.split()})")
check("cgroup memory.max 384M" in vm.text(), "the change is logged")
vm.wait()  # the guest exits after its verify pass
os.rmdir(child)
finish()
