#!/usr/bin/env python3
# kvmm-test-host: one-cpu
"""Swap files that fail (issue 7): a 16 MiB swap file under pressure fills, KVMM_SWAP_FULL is raised,
pages stay resident and verify finds every page intact; a swap file overwritten while pages are in
it is detected at the next fault on a damaged slot (MEMORY_FAILURE, a log line), the VM stops with
status 1 and the guest never reads the bad data (no mismatch line)."""
import os
from kvmmtest import check, finish
from reclaim_common import MIB, boot, query, tmp, verifies, wait_for

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

finish()
