#!/usr/bin/env python3
# kvmm-test-host: one-cpu
"""Reset and power button with the Linux guest (1 vCPU; docs/testing.md, 'Known flake', is about
2-vCPU boots): `reboot -f` in the guest (Linux writes the FADT reset register, 0xcf9) reboots the
VM in place with RESET {"guest": true, "reason": "guest-reset"}; QMP system_reset reboots it again
with RESET {"guest": false, "reason": "host-qmp-system-reset"}; after each reboot Linux comes up
with its ACPI power button; system_powerdown sends POWERDOWN, the guest's acpid powers off and kvmm
exits 0 after SHUTDOWN {"guest": true, "reason": "guest-shutdown"}. Then `reboot -f` under
--no-reboot: SHUTDOWN {"guest": true, "reason": "guest-reset"} and exit status 0."""
import os
import tempfile
from kvmmtest import GUEST_INITRD, GUEST_KERNEL, Qmp, Vm, check, finish

INIT = "KVMM guest=linux event=init"
tmp = tempfile.mkdtemp()
sock = os.path.join(tmp, "qmp.sock")


def linux(*extra):
    return Vm(["--cpus", "1", "-m", "256M", "--qmp", f"unix:{sock}", "--kernel", GUEST_KERNEL,
               "--initrd", GUEST_INITRD, "--append", "console=ttyS0 panic=-1", *extra], timeout=900)


vm = linux()
m = vm.expect_re(INIT + r" .*power_buttons=(\d+)")
check(m is not None and m.group(1) == "1", "Linux found kvmm's ACPI power button (PNP0C0C)")
q = Qmp(sock)
check(vm.expect_count("/ #", 1), "a shell")

vm.send("reboot -f\n")
e = q.event("RESET", 300, vm)
check(e is not None and e["data"] == {"guest": True, "reason": "guest-reset"},
      f"reboot -f: RESET guest-reset ({e})")
check(vm.expect_count(INIT, 2), "reboot -f: Linux booted again in the same kvmm")
check(vm.expect_count("Linux guest shell", 2), "reboot -f: a shell again")
vm.send("echo again-$((6*7))\n")
check(vm.expect("again-42"), "the rebooted guest runs commands")

check(q.cmd("system_reset") == {"return": {}}, "system_reset returns {}")
e = q.event("RESET", 300, vm)
check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-system-reset"},
      f"system_reset: RESET host-qmp-system-reset ({e})")
check(vm.expect_count(INIT, 3), "system_reset: Linux booted a third time")
check(vm.expect_count("Linux guest shell", 3), "system_reset: a shell again")
check(vm.text().count("power_buttons=1") == 3, "the power button is there after every reboot")

check(q.cmd("system_powerdown") == {"return": {}}, "system_powerdown returns {}")
check(q.event("POWERDOWN", 60, vm) is not None, "POWERDOWN event")
check(vm.expect("KVMM guest=linux event=power-button"), "the guest saw the power button (acpid ran its action)")
e = q.event("SHUTDOWN", 300, vm)
check(e is not None and e["data"] == {"guest": True, "reason": "guest-shutdown"},
      f"the guest powered off: SHUTDOWN guest-shutdown ({e})")
status = vm.wait()
check(status == 0, f"kvmm exits 0 after the guest's power-off (got {status})")
check("stopped: guest powered off" in vm.text(), "kvmm said why it stopped")
check(vm.text().count("rebooting") == 2, "kvmm logged both reboots")
q.close()

vm = linux("--no-reboot")
check(vm.expect(INIT), "--no-reboot: Linux booted")
q = Qmp(sock)
check(vm.expect_count("/ #", 1), "--no-reboot: a shell")
vm.send("reboot -f\n")
e = q.event("SHUTDOWN", 300, vm)
check(e is not None and e["data"] == {"guest": True, "reason": "guest-reset"},
      f"--no-reboot: reboot -f is SHUTDOWN guest-reset ({e})")
status = vm.wait()
check(status == 0, f"--no-reboot: kvmm exits 0 (got {status})")
check("stopped: guest reset (--no-reboot)" in vm.text(), "--no-reboot: kvmm said why it stopped")
check(vm.text().count(INIT) == 1, "--no-reboot: the guest did not boot again")
finish()
