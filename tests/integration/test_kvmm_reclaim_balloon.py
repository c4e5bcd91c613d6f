#!/usr/bin/env python3
# kvmm-test-host: one-cpu
"""The reclaimer's view of the guest (issue 7): a test guest touching 64 MiB of 256 MiB is estimated
active within 2x of that (KVM dirty log); Linux with its balloon driver under --mem-limit 320M runs
a 600 MiB dd: the reclaimer asks the balloon before compressing, the guest inflates it and keeps
running."""
import time
from kvmmtest import GUEST_KERNEL, check, finish
from reclaim_common import MIB, boot, query, verifies, wait_for

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
