#!/usr/bin/env python3
"""Boot benchmark, run inside the test host (bench/boot.sh starts it there).

Boots the test guest and the Linux guest in kvmm, QEMU (-enable-kvm -nodefaults) and kvmtool (when
a lkvm-static built from its public source is found: $KVMM_KVMTOOL, or peers/lkvm-static in the test
host's cache), RUNS times each, and records
  first: seconds from exec to the guest's first console line,
  exit:  test guest: seconds from exec to the VMM's exit after the guest powered off;
         Linux guest: seconds from exec to the shell prompt on the serial console (kvmtool's serial
         console does not take piped input here, so powering Linux off cannot be timed for it; kvmm
         and QEMU are powered off and must exit, kvmtool is killed),
  rss:   (PSS) the VMM's own memory in KiB (PSS of the process minus the PSS of the guest-RAM mapping),
         sampled once the Linux guest sits at its shell.
Writes one line per run to the file named by argv[1]: vmm guest run first exit rss."""
import os
import re
import select
import statistics
import subprocess
import sys
import time

REPO = os.environ.get("KVMM_REPO", os.getcwd())
BUILD = os.environ.get("KVMM_BUILD", os.path.join(REPO, "build", "release"))
RUNS = int(os.environ.get("RUNS", "3"))
MEM_MB = 256
KERNEL = os.environ["KVMM_GUEST_KERNEL"]
INITRD = os.environ["KVMM_GUEST_INITRD"]
TEST_GUEST = os.path.join(BUILD, "guest", "test-guest.bzImage")
LINUX_APPEND = "console=ttyS0 panic=-1 quiet"


def kvmtool_path():
    p = os.environ.get("KVMM_KVMTOOL") or os.path.join(os.environ.get("KVMM_TESTHOST_CACHE", ""), "peers", "lkvm-static")
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


def command(vmm, guest):
    kernel, initrd, append = (TEST_GUEST, None, "") if guest == "test" else (KERNEL, INITRD, LINUX_APPEND)
    if vmm == "kvmm":
        cmd = [os.path.join(BUILD, "kvmm"), "run", "-m", f"{MEM_MB}M", "--kernel", kernel, "--append", append]
        return cmd + (["--initrd", initrd] if initrd else [])
    if vmm == "qemu":
        cmd = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(MEM_MB), "-nodefaults",
               "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
               "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", kernel, "-append", append]
        return cmd + (["-initrd", initrd] if initrd else [])
    cmd = [kvmtool_path(), "run", "-m", str(MEM_MB), "-c", "1", "-k", kernel, "-p", append]
    return cmd + (["-i", initrd] if initrd else [])


def vmm_rss_kb(pid):
    """PSS of the process minus the PSS of its guest-RAM mapping(s): mappings at least 90% of -m."""
    total = ram = 0
    size = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
                total += pss
                if size >= MEM_MB * 1024 * 9 // 10:
                    ram += pss
    return total - ram


def run_once(vmm, guest):
    start = time.monotonic()
    proc = subprocess.Popen(command(vmm, guest), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    out, first, rss, sent, shell = b"", None, None, False, None
    deadline = start + 300
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not r:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
        # kvmtool prints its own "  Info: # lkvm run ..." banner on stdout: not the guest's.
        guest_out = re.sub(rb"(?m)^ *(Info|Warning): .*\n", b"", out)
        if first is None and b"\n" in guest_out.strip(b"\r\n\x00 "):
            first = time.monotonic() - start
        if guest == "linux" and not sent and b"/ # " in out:
            shell = time.monotonic() - start
            rss = vmm_rss_kb(proc.pid)
            if vmm == "kvmtool":
                proc.kill()
            else:
                proc.stdin.write(b"poweroff -f\n")
                proc.stdin.flush()
            sent = True
    try:
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return first, None, rss
    if guest == "linux":
        return first, shell if proc.returncode == 0 or vmm == "kvmtool" else None, rss
    return first, time.monotonic() - start, rss


def main():
    vmms = ["kvmm", "qemu"] + (["kvmtool"] if kvmtool_path() else [])
    if not kvmtool_path():
        print("boot: kvmtool not found (set KVMM_KVMTOOL or put lkvm-static in the test host cache's peers/); skipped")
    rows = []
    for guest in ("test", "linux"):
        for vmm in vmms:
            for i in range(RUNS):
                first, exit_, rss = run_once(vmm, guest)
                rows.append((vmm, guest, i, first, exit_, rss))
                print(f"boot: {vmm:8} {guest:6} run {i}: first line {first and round(first, 3)} s, "
                      f"exit {exit_ and round(exit_, 3)} s, own PSS {rss} KiB", flush=True)
    with open(sys.argv[1], "w") as f:
        for vmm, guest, i, first, exit_, rss in rows:
            f.write(f"{vmm} {guest} {i} {first if first is not None else 'nan'} "
                    f"{exit_ if exit_ is not None else 'nan'} {rss if rss is not None else 'nan'}\n")


if __name__ == "__main__":
    main()
