"""What test_libvirt.py and bench/libvirt.py share: starting libvirtd in the test host
(tests/support/libvirt-setup.sh), virsh, the emulators a domain can name (Debian's QEMU, kvmm's
QEMU-compatible front), a domain's XML (Debian's cloud kernel with the busybox initramfs, its console
a file), the guest's lines in that file, and the domain's cgroup. docs/libvirt.md, "Testing with
libvirt"."""
import os
import re
import subprocess
import time

REPO = os.environ.get("KVMM_REPO") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KVMM_BUILD") or os.path.join(REPO, "build", "release")
GUEST_KERNEL = os.environ.get("KVMM_GUEST_KERNEL", "")
GUEST_INITRD = os.environ.get("KVMM_GUEST_INITRD", "")
URI = "qemu:///system"
WORK = "/run/kvmm-libvirt"          # tmpfs in the test host: serial files, XML, the front's symlink
CGROUP = "/sys/fs/cgroup"
FRONT = "kvmm-qemu-system-x86_64"   # kvmm dispatches on this argv[0] (docs/libvirt.md)

# Which emulators the test and the benchmark run: a comma list of `qemu` (Debian's
# /usr/bin/qemu-system-x86_64) and `kvmm` (kvmm's front). The benchmark defaults to both.
EMULATORS_ENV = "KVMM_LIBVIRT_EMULATORS"

# Whole lines only: the file is read while the guest writes it.
INIT_RX = re.compile(r"KVMM guest=linux event=init .*mem_kb=(\d+) .*\n")
MEMINFO_RX = re.compile(r"KVMM guest=linux event=meminfo uptime=([\d.]+) total_kb=(\d+) free_kb=(\d+)\r?\n")
FEATURES_RX = re.compile(r"KVMM guest=linux event=balloon features=([01]{64})\r?\n")


def setup():
    """Starts libvirtd (once per test host boot); its output line, or raises."""
    r = subprocess.run([os.path.join(REPO, "tests", "support", "libvirt-setup.sh"), "start"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"libvirt-setup.sh start failed: {r.stdout}")
    os.makedirs(WORK, exist_ok=True)
    return r.stdout.strip()


def virsh(*args, timeout=180):
    """Runs virsh; (exit status, stdout + stderr). A time-out is status 124."""
    try:
        r = subprocess.run(["virsh", "-c", URI] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    return r.returncode, r.stdout


def emulator(kind):
    """The <emulator> path for `qemu` or `kvmm`. For kvmm, the build's own kvmm-qemu-system-x86_64
    symlink when there is one, else one made under WORK (the name is what matters: kvmm picks its
    QEMU front from argv[0])."""
    if kind == "qemu":
        return "/usr/bin/qemu-system-x86_64"
    built = os.path.join(BUILD, FRONT)
    if os.path.exists(built):
        return built
    os.makedirs(WORK, exist_ok=True)
    link = os.path.join(WORK, FRONT)
    if not os.path.islink(link):
        os.symlink(os.path.join(BUILD, "kvmm"), link)
    return link


def emulators(default):
    kinds = [k.strip() for k in os.environ.get(EMULATORS_ENV, default).split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("qemu", "kvmm")]
    if bad:
        raise SystemExit(f"{EMULATORS_ENV}: qemu and/or kvmm, not {bad}")
    return kinds


def serial_path(name):
    return os.path.join(WORK, f"{name}-serial.log")


def domain_xml(name, emu, mem_mib=512, memory_backing="", balloon_attrs="", stats_period=1,
               extra_devices="", meminfo_period=1):
    """A 1-vCPU domain booting Debian's cloud kernel with the busybox initramfs (guest-init prints
    its balloon features and MemTotal/MemFree every meminfo_period seconds to the serial file).
    acpi/apic and host-passthrough: without them libvirt passes -no-acpi -cpu qemu64 and the cloud
    kernel finds no ACPI (LIBVIRT.md)."""
    backing = f"<memoryBacking>{memory_backing}</memoryBacking>" if memory_backing else ""
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mib}</memory>
  <currentMemory unit='MiB'>{mem_mib}</currentMemory>
  {backing}
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{GUEST_KERNEL}</kernel>
    <initrd>{GUEST_INITRD}</initrd>
    <cmdline>console=ttyS0 panic=-1 kvmm.meminfo={meminfo_period}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emu}</emulator>
    <serial type='file'>
      <source path='{serial_path(name)}'/>
      <target port='0'/>
    </serial>
    <memballoon model='virtio'{balloon_attrs}>
      <stats period='{stats_period}'/>
    </memballoon>
    {extra_devices}
  </devices>
</domain>
"""


def define(name, xml):
    """Writes the XML under WORK, empties the serial file, defines the domain; (status, output)."""
    path = os.path.join(WORK, f"{name}.xml")
    with open(path, "w") as f:
        f.write(xml)
    open(serial_path(name), "w").close()
    return virsh("define", path)


def remove(name):
    """Destroys (if running) and undefines a domain, quietly."""
    virsh("destroy", name)
    virsh("undefine", name)


def serial(name):
    try:
        with open(serial_path(name), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_serial(name, rx, timeout, after=0):
    """Polls the serial file until rx matches past offset `after`; the match or None."""
    rx = re.compile(rx) if isinstance(rx, str) else rx
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(serial(name), after)
        if m or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def pid(name):
    try:
        with open(f"/run/libvirt/qemu/{name}.pid") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def cmdline(p):
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def domain_cgroup(p):
    """The cgroup libvirt made for the domain whose emulator is process p: the process sits in its
    threaded `emulator` child (/machine/qemu-N-NAME.libvirt-qemu/emulator); the memory controller,
    and so memory.max, is on the domain's own directory above it. An absolute path, or None."""
    try:
        with open(f"/proc/{p}/cgroup") as f:
            rel = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    path = CGROUP + rel
    while path.startswith(CGROUP + "/"):
        if os.path.exists(os.path.join(path, "memory.max")):
            return path
        path = os.path.dirname(path)
    return None


def read_file(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def domain_log_tail(name, n=15):
    """The last lines of libvirt's per-domain log (the emulator's stderr, libvirt's start lines)."""
    text = read_file(f"/var/log/libvirt/qemu/{name}.log") or ""
    return "\n".join(text.splitlines()[-n:])


def dommemstat(name):
    """virsh dommemstat as {key: int}; {} on failure."""
    rc, out = virsh("dommemstat", name)
    stats = {}
    if rc == 0:
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                stats[parts[0]] = int(parts[1])
    return stats
