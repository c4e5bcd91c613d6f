#!/usr/bin/env python3
"""kvmm boots Debian's cloud kernel with the busybox initramfs to a shell on the serial console, with
1 and with 2 vCPUs (all reported in /proc/cpuinfo), with its RTC and PCI host bridge found through
ACPI, runs a command typed at the shell, and powers off on command with exit status 0.

Known test host flake (docs/testing.md, "Known flake"): about one 2-vCPU boot in eight stalls before
/init with vCPU state that is not the guest's (an AP running zeros at CS 0xf000, or vCPU 0 holding
the test host's own kernel addresses and CR3). A boot that does not reach /init is retried once,
after kvmm's SIGUSR2 state dump has been printed, and the retry is announced in the output; a
second stall, and every later check, fails the test."""
from kvmmtest import GUEST_INITRD, GUEST_KERNEL, Vm, check, finish

INIT = r"KVMM guest=linux event=init .*cpus=(\d+) mem_kb=(\d+)"


def boot(cpus):
    for attempt in (1, 2):
        vm = Vm(["--cpus", str(cpus), "-m", "256M", "--kernel", GUEST_KERNEL, "--initrd", GUEST_INITRD,
                 "--append", "console=ttyS0 panic=-1"], timeout=120)
        m = vm.expect_re(INIT)
        if m or attempt == 2:
            return vm, m
        vm.proc.kill()
        vm.proc.wait()
        print(f"\nKNOWN TEST-HOST FLAKE: the {cpus}-vCPU boot stalled before /init (state above; "
              "docs/testing.md, 'Known flake'); retrying once", flush=True)


for cpus in (1, 2):
    vm, m = boot(cpus)
    check(m is not None, f"{cpus} vCPU(s): the guest reached /init")
    check(m is not None and int(m.group(1)) == cpus, f"{cpus} vCPU(s): /proc/cpuinfo lists {cpus}")
    check(m is not None and 200 * 1024 < int(m.group(2)) <= 256 * 1024,
          f"{cpus} vCPU(s): MemTotal fits -m 256M")
    check("rtc_cmos" in vm.text() and "registered as rtc0" in vm.text(),
          f"{cpus} vCPU(s): Linux's rtc_cmos driver took kvmm's CMOS clock")
    check(vm.expect("/ #"), f"{cpus} vCPU(s): a shell prompt on the serial console")
    vm.send("echo typed-$((6*7)); echo pci: $(ls /sys/bus/pci/devices)\n")
    check(vm.expect("typed-42"), f"{cpus} vCPU(s): input reaches the shell and output comes back")
    m = vm.expect_re(r"^pci: (.*)")
    check(m is not None and "0000:00:00.0" in m.group(1).split(),
          f"{cpus} vCPU(s): the guest found the PCI host bridge")
    vm.send("poweroff -f\n")
    status = vm.wait()
    check(status == 0, f"{cpus} vCPU(s): powered off with exit status 0 (got {status})")
    check("stopped: guest powered off" in vm.text(), f"{cpus} vCPU(s): kvmm said why it stopped")
finish()
