#!/usr/bin/env python3
"""The test guest's balloon driver (tests/guest/balloon.c) against QEMU's virtio-balloon-pci with KVM,
driven over QMP: `balloon` inflates to QEMU's target and QEMU's own memory (PSS) drops by a good
part of what the guest gave back, deflating returns it, stats reach `qom-get guest-stats`, free page
reporting discards the guest's free pool, the workload survives (verify: 0 mismatches), and every
misbehave mode leaves QEMU running and working (a later inflate/deflate still reaches its target)
with the guest exiting 0. The same driver is what tests run against kvmm's own balloon."""
import os
import tempfile
import time
import balloon_suite
from kvmmtest import TEST_GUEST, Qemu, Qmp, finish

tmp = tempfile.mkdtemp()


def boot(append, seconds, reporting):
    """QEMU with the balloon and a QMP socket; `seconds`: the guest's balloon step (plus boot and
    the steps around it, within a generous margin: the test host emulates the CPU)."""
    sock = os.path.join(tmp, f"qmp-{time.monotonic_ns()}.sock")
    dev = "virtio-balloon-pci,id=balloon0" + (",free-page-reporting=on" if reporting else "")
    vm = Qemu(["-m", str(balloon_suite.RAM_MB), "-smp", "1", "-device", dev,
               "-qmp", f"unix:{sock},server=on,wait=off", "-kernel", TEST_GUEST, "-append", append],
              timeout=seconds + 300)
    return vm, Qmp(sock)


balloon_suite.run("QEMU", boot, 0.75)
finish()
