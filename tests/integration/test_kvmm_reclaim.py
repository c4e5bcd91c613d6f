#!/usr/bin/env python3
# kvmm-test-host: one-cpu
# kvmm-test-timeout: 1800
"""Reclaim to a limit (issue 7): the test guest writes 768 MiB (text-like and random pages) under
--mem-limit 384M with a swap file; kvmm's consumed settles at the limit and its PSS grows by no more
than the limit; pages are compressed and swapped; two verify passes fault everything back in while
the reclaimer keeps taking pages, with 0 mismatches; a live x-kvmm-set-memory limit is followed;
bad limits are refused; the swap file is gone after exit. About 15 minutes in the test host: each
verify pass faults ~480 MiB back in under TCG. (test_kvmm_reclaim_swap.py: full and
corrupted swap files; test_kvmm_reclaim_balloon.py: the active estimate and Linux's balloon.)"""
import os
import time
from kvmmtest import check, finish, pss_kib
from reclaim_common import MIB, boot, query, tmp, verifies, wait_for

# --- limit: 768 MiB written under 384 MiB -------------------------------------------------------
swap = os.path.join(tmp, "limit.swap")
vm, q = boot(["--mem-limit", "384M", "--mem-swap", f"{swap},size=640M"],
             "test=fill,idle:30,verify,verify,idle:90 size=768M pattern=text:50,random:50 seed=7",
             timeout=1750)
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
# Live, while the guest idles: a lower limit is followed, bad ones are refused.
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
counts = verifies(vm, 2)
check(counts == [0, 0], f"limit: two verify passes (two fault-in cycles), 0 mismatches ({counts})")
check(not os.path.exists(swap), "limit: the swap file is deleted on exit")

finish()
