#!/usr/bin/env python3
"""kvmm's virtio-balloon driven by the test guest's balloon driver, over QMP: the same suite as
QEMU's virtio-balloon-pci passes in test_guest_balloon_qemu.py (balloon_suite.py), with kvmm's PSS
falling by at least 90% of the inflated size, plus kvmm's own checks (every malformed chain gets
DEVICE_NEEDS_RESET, PFNs outside RAM are counted)."""
import os
import tempfile
import time
import balloon_suite
from kvmmtest import TEST_GUEST, Qmp, Vm, finish

tmp = tempfile.mkdtemp()


def boot(append, seconds, reporting):
    sock = os.path.join(tmp, f"qmp-{time.monotonic_ns()}.sock")
    # Sharing off: the suite measures the balloon; the scanner would only add CPU load (its pool
    # pages are all different), which doubled the suite's time in the test host.
    vm = Vm(["-m", f"{balloon_suite.RAM_MB}M", "--mem-share", "off",
             "--balloon" + ("=free-page-reporting" if reporting else ""),
             "--qmp", f"unix:{sock}", "--kernel", TEST_GUEST, "--append", append], timeout=seconds + 300)
    return vm, Qmp(sock)


balloon_suite.run("kvmm", boot, 0.9, kvmm=True)
finish()
