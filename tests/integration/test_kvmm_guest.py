#!/usr/bin/env python3
"""kvmm boots the test guest (tests/guest/): its banner and memory map come out on the serial console,
fill + verify find no mismatch, and the guest's exit status (port 0xf4) becomes kvmm's. A bad guest
command line gives the guest's status 2. Also with RAM above the 4 GiB PCI hole split."""
import re
from kvmmtest import TEST_GUEST, Vm, check, finish

def e820(text):
    return [(int(a, 16), int(s, 16), int(t)) for a, s, t in
            re.findall(r"KVMM e820 addr=(0x[0-9a-f]+) size=(0x[0-9a-f]+) type=(\d+)", text)]

vm = Vm(["-m", "256M", "--kernel", TEST_GUEST, "--append", "test=fill,verify size=64M seed=7"])
status = vm.wait()
out = vm.text()
check("KVMM guest=test event=banner" in out, "banner")
ram = sum(s for a, s, t in e820(out) if t == 1)
check(0 < ram <= 256 << 20 and ram > 250 << 20, f"the e820 map reports the guest's RAM ({ram >> 20} MiB usable)")
m = re.search(r"KVMM test=verify pages=(\d+) mismatches=(\d+)", out)
check(m is not None and int(m.group(1)) == 64 * 256, "verify covered every page written")
check(m is not None and int(m.group(2)) == 0, "verify: 0 mismatches")
check(status == 0, f"kvmm exits with the guest's status 0 (got {status})")

vm = Vm(["-m", "4608M", "--kernel", TEST_GUEST, "--append", "test=fill,verify size=64M"])
status = vm.wait()
ranges = e820(vm.text())
check(any(a >= 1 << 32 and t == 1 for a, s, t in ranges), "RAM above 4 GiB appears in the e820 map")
check(not any(t == 1 and a < 0x100000000 and a + s > 0xc0000000 for a, s, t in ranges),
      "no RAM inside the PCI hole")
check(status == 0, f"5 GiB layout: status 0 (got {status})")

vm = Vm(["-m", "128M", "--kernel", TEST_GUEST, "--append", "test=no-such-test"])
status = vm.wait()
check("KVMM error=" in vm.text(), "an unknown test is reported by the guest")
check(status == 2, f"and becomes exit status 2 (got {status})")
finish()
