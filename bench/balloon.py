#!/usr/bin/env python3
"""Balloon benchmark, run inside the test host (bench/balloon.sh starts it there).

For each guest (the test guest, Linux) and VMM (kvmm, QEMU with virtio-balloon-pci, kvmtool when a
lkvm-static is found, as in bench/boot.py), RUNS times: boot a 2 GiB guest with one vCPU, make it
dirty nearly all its free memory (Linux: a tmpfs of size=100% filled to MemFree - 96 MiB, then
deleted: with 32 MiB left a 2 GiB guest ran out of memory and panicked; test guest: its balloon step touches its free pool and prints `event=ready`), then
  inflate: ask for a 512 MiB guest (a 1536 MiB balloon) and wait until BOTH the VMM's RSS has fallen
           by at least 90% of 1536 MiB AND the guest has its balloon at the target (Linux: MemTotal
           1536 MiB below where it was, printed by a watcher loop in the guest; test guest: its
           `KVMM balloon target=393216 actual=393216` line). The same rule for every VMM: kvmtool has
           no query of the balloon's size, so the guest's view is used everywhere (query-balloon is
           read afterwards, for kvmm and QEMU, as a check).
  deflate: ask for 2 GiB again and wait until the guest has its memory back (same signals).
Measured per phase: wall seconds, the RSS released (MiB), host MemFree gained (MiB), and CPU time of
the VMM's threads between the request and "done": vCPU threads (guest time, the rest of user time,
system time) and all other threads (user, system: the device's work, e.g. madvise). The reclaim rate
is RSS released / seconds. RSS is sampled from /proc/PID/statm every 0.1 s (cheap, unlike smaps).

Writes one JSON object per run to the file named by argv[1] (fields: vmm guest run + the figures),
plus `curve` objects (RSS released against time, inflate of run 0) for the plot."""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.environ.get("KVMM_REPO", os.getcwd())
BUILD = os.environ.get("KVMM_BUILD", os.path.join(REPO, "build", "release"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from kvmmtest import Qmp  # noqa: E402  (the repo's QMP client)

RUNS = int(os.environ.get("RUNS", "3"))
GUESTS = os.environ.get("GUESTS", "test,linux").split(",")
MiB = 1 << 20
RAM_MB = 2048
TARGET_MB = 512
BALLOON_MB = RAM_MB - TARGET_MB
BALLOON_PAGES = BALLOON_MB * MiB // 4096
THRESHOLD_MB = 0.9 * BALLOON_MB
PHASE_TIMEOUT = 1200
KERNEL = os.environ["KVMM_GUEST_KERNEL"]
INITRD = os.environ["KVMM_GUEST_INITRD"]
TEST_GUEST = os.path.join(BUILD, "guest", "test-guest.bzImage")
LINUX_APPEND = "console=ttyS0 panic=-1 quiet"
TEST_APPEND = "test=balloon:86400 size=4M"
VCPU_RE = re.compile(r"^(vcpu\d+|CPU \d+/KVM|kvm-vcpu-\d+)$")  # kvmm, QEMU, kvmtool
TMP = tempfile.mkdtemp(prefix="bench-balloon-")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"balloon: {msg}", flush=True)


def kvmtool_path():
    p = os.environ.get("KVMM_KVMTOOL") or os.path.join(os.environ.get("KVMM_TESTHOST_CACHE", ""), "peers", "lkvm-static")
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


# --- the VMMs ---

class Guest:
    """One VMM process with its console. kvmtool reads its console input only from a terminal, so it
    gets a pty; kvmm and QEMU get pipes (as in the tests). Output lines are kept with their arrival
    time."""

    def __init__(self, vmm, guest):
        self.vmm, self.guest = vmm, guest
        self.name = f"bb{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
        self.sock = os.path.join(TMP, self.name + ".qmp")
        env = dict(os.environ, HOME=TMP)  # kvmtool keeps its control sockets in $HOME/.lkvm
        cmd = self.command()
        if vmm == "kvmtool":
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
            os.close(slave)
            self.rfd = self.wfd = master
        else:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=env)
            self.rfd, self.wfd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        self.out, self.partial, self.lines, self.eof, self.marks = b"", b"", [], False, 0
        self.qmp = None

    def command(self):
        kernel, append = (TEST_GUEST, TEST_APPEND) if self.guest == "test" else (KERNEL, LINUX_APPEND)
        # The Linux guest's initramfs loads virtio_balloon (scripts/testhost.d/guest-init).
        initrd = INITRD if self.guest == "linux" else None
        if self.vmm == "kvmm":
            cmd = [os.path.join(BUILD, "kvmm"), "run", "-m", f"{RAM_MB}M", "--balloon", "--qmp",
                   f"unix:{self.sock}", "--kernel", kernel, "--append", append]
            return cmd + (["--initrd", initrd] if initrd else [])
        if self.vmm == "qemu":
            cmd = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(RAM_MB), "-smp", "1",
                   "-name", "bench,debug-threads=on", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
                   "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-device", "virtio-balloon-pci,id=balloon0",
                   "-qmp", f"unix:{self.sock},server=on,wait=off", "-kernel", kernel, "-append", append]
            return cmd + (["-initrd", initrd] if initrd else [])
        cmd = [kvmtool_path(), "run", "--name", self.name, "-m", str(RAM_MB), "-c", "1", "--balloon",
               "--network", "mode=none", "-k", kernel, "-p", append]
        return cmd + (["-i", initrd] if initrd else [])

    def pump(self, wait):
        """Reads what is there (waiting up to `wait` s); False once the console is closed."""
        if self.eof:
            return False
        r, _, _ = select.select([self.rfd], [], [], wait)
        if not r:
            return True
        try:
            chunk = os.read(self.rfd, 65536)
        except OSError:  # a pty whose other side is gone
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        now = time.monotonic()
        self.out += chunk
        self.partial += chunk
        *done, self.partial = self.partial.split(b"\n")
        self.lines += [(now, line.decode(errors="replace").rstrip("\r")) for line in done]
        return True

    def wait_for(self, rx, timeout, start=0, partial=False):
        """(index, arrival time, match) of the first line from lines[start] matching rx (with
        partial, also the unfinished last line, e.g. a shell prompt); None on EOF or time-out."""
        rx = re.compile(rx)
        deadline = time.monotonic() + timeout
        while True:
            for i in range(start, len(self.lines)):
                m = rx.search(self.lines[i][1])
                if m:
                    return i, self.lines[i][0], m
            start = len(self.lines)
            if partial and rx.search(self.partial.decode(errors="replace")):
                return len(self.lines), time.monotonic(), rx.search(self.partial.decode(errors="replace"))
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(min(left, 0.5)):
                return None

    def shell(self, cmd, timeout=900):
        """Runs cmd at the Linux guest's shell; returns its output lines (None if the shell never
        came back). The end mark is computed by the shell, so the echo of the typed line never
        matches."""
        self.marks += 1
        start = len(self.lines)
        os.write(self.wfd, f"{cmd}; echo END$((40+{self.marks}))END\n".encode())
        got = self.wait_for(f"END{40 + self.marks}END|Kernel panic", timeout, start)
        if got and "Kernel panic" in got[2].group(0):
            raise RuntimeError(f"the guest's kernel panicked: {got[2].string}")
        return [line for _, line in self.lines[start:got[0]]] if got else None

    def connect_qmp(self):
        if self.vmm != "kvmtool":
            self.qmp = Qmp(self.sock)

    def set_balloon(self, guest_mb):
        """Asks for a guest of guest_mb MiB. kvmtool's `lkvm balloon` inflates/deflates by an amount."""
        if self.qmp:
            r = self.qmp.cmd("balloon", {"value": guest_mb * MiB})
            if r != {"return": {}}:
                raise RuntimeError(f"balloon {guest_mb} MiB: {r}")
            return
        flag = ["--inflate", str(BALLOON_MB)] if guest_mb < RAM_MB else ["--deflate", str(BALLOON_MB)]
        subprocess.run([kvmtool_path(), "balloon", "--name", self.name] + flag, check=True,
                       env=dict(os.environ, HOME=TMP), stdout=subprocess.DEVNULL)

    def query(self):
        """query-balloon's actual and kvmm's counters (kvmtool: nothing to ask)."""
        if not self.qmp:
            return {}
        info = {"actual_mb": self.qmp.cmd("query-balloon").get("return", {}).get("actual", 0) // MiB}
        if self.vmm == "kvmm":
            info.update(self.qmp.cmd("x-kvmm-query-balloon").get("return", {}))
        return info

    def stop(self):
        if self.guest == "linux" and self.vmm != "kvmtool" and not self.eof:
            os.write(self.wfd, b"poweroff -f\n")
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.qmp:
            self.qmp.close()
        if self.vmm == "kvmtool":
            os.close(self.rfd)
        else:
            self.proc.stdin.close()
            self.proc.stdout.close()


# --- host-side figures ---

def rss_mb(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / MiB


def memfree_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemFree:"):
                return int(line.split()[1]) / 1024
    return 0


def cpu(pid):
    """Seconds of CPU: the process's total (with exited threads) and per class: vcpu_guest,
    vcpu_user (user time outside the guest), vcpu_sys, other_user, other_sys."""
    c = dict.fromkeys(("vcpu_guest", "vcpu_user", "vcpu_sys", "other_user", "other_sys"), 0.0)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = {"user": int(fields[11]) / TICK, "sys": int(fields[12]) / TICK}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, sys_, guest = (int(fields[i]) / TICK for i in (11, 12, 40))
        if VCPU_RE.match(comm):
            c["vcpu_guest"] += guest
            c["vcpu_user"] += user - guest
            c["vcpu_sys"] += sys_
    # Threads other than vCPUs, exited ones included.
    c["other_user"] = total["user"] - c["vcpu_user"] - c["vcpu_guest"]
    c["other_sys"] = total["sys"] - c["vcpu_sys"]
    return c


def cpu_delta(a, b):
    return {k: round(b[k] - a[k], 3) for k in a}


# --- one run ---

def linux_ready(g):
    """Boots to the shell, checks the driver, dirties free memory, starts the MemTotal watcher.
    Returns MemTotal in KiB."""
    if not g.wait_for(r"/ # ", 900, partial=True):
        raise RuntimeError("Linux did not reach its shell")
    out = g.shell("if [ -d /sys/bus/virtio/drivers/virtio_balloon ]; then b=y; else b=n; fi; echo drv_$b$b")
    if not out or not any("drv_yy" in line for line in out):
        raise RuntimeError(f"virtio_balloon did not bind ({out})")
    g.shell("mkdir -p /mnt && mount -t tmpfs -o size=100% t /mnt")
    out = g.shell("free=$(awk '/MemFree/ {print $2}' /proc/meminfo); "
                  "dd if=/dev/zero of=/mnt/f bs=1M count=$((free / 1024 - 96)) 2>&1 | tail -n 1; rm /mnt/f")
    m = re.search(r"(\d+)\+\d+ records out", "\n".join(out or []))
    log(f"{g.vmm} linux: dirtied {m.group(1) if m else '?'} MiB of free guest memory")
    start = len(g.lines)
    # Prints MemTotal whenever it changes (Linux's virtio_balloon takes inflated pages out of it
    # when DEFLATE_ON_OOM is not negotiated, and no VMM here offers it), with no fork but usleep.
    os.write(g.wfd, b"(o=0; while :; do read -r k t u </proc/meminfo; [ \"$t\" != \"$o\" ] && "
                    b"echo \"KVMM memtotal_kb=$t\"; o=$t; usleep 200000; done) &\n")
    got = g.wait_for(r"KVMM memtotal_kb=(\d+)", 120, start)
    if not got:
        raise RuntimeError("the MemTotal watcher printed nothing")
    return int(got[2].group(1))


def memtotal_at_most(kb):
    rx = re.compile(r"KVMM memtotal_kb=(\d+)")
    return lambda line: (m := rx.search(line)) is not None and int(m.group(1)) <= kb


def memtotal_at_least(kb):
    rx = re.compile(r"KVMM memtotal_kb=(\d+)")
    return lambda line: (m := rx.search(line)) is not None and int(m.group(1)) >= kb


def measure(g, guest_mb, done, start_line, need_rss_drop, curve=None):
    """Requests the size, then samples until the guest printed a line for which done(line) holds
    and, when need_rss_drop, RSS fell by THRESHOLD_MB. Returns the phase's figures."""
    pid = g.proc.pid
    rss0, free0, c0 = rss_mb(pid), memfree_mb(), cpu(pid)
    t0 = time.monotonic()
    g.set_balloon(guest_mb)
    t_guest = t_rss = None
    last = 0
    while time.monotonic() - t0 < PHASE_TIMEOUT:
        g.pump(0.1)
        now = time.monotonic()
        rss = rss_mb(pid)
        if curve is not None and now - last >= 0.1:
            curve.append((round(now - t0, 3), round(rss0 - rss, 1)))
            last = now
        if t_rss is None and rss0 - rss >= THRESHOLD_MB:
            t_rss = now - t0
        if t_guest is None:
            for i in range(start_line, len(g.lines)):
                if done(g.lines[i][1]):
                    t_guest = g.lines[i][0] - t0
                    break
            start_line = len(g.lines)
        if t_guest is not None and (t_rss is not None or not need_rss_drop):
            break
        if g.eof:
            break
    c1, rss1, free1 = cpu(pid), rss_mb(pid), memfree_mb()
    ok = t_guest is not None and (t_rss is not None or not need_rss_drop)
    secs = max(t_guest, t_rss or 0) if ok else None
    return {"secs": secs and round(secs, 3), "t_guest": t_guest and round(t_guest, 3),
            "t_rss90": t_rss and round(t_rss, 3), "rss0_mb": round(rss0, 1),
            "released_mb": round(rss0 - rss1, 1), "memfree_gain_mb": round(free1 - free0, 1),
            "cpu": cpu_delta(c0, c1)}


def run_once(vmm, guest, i, curves):
    g = Guest(vmm, guest)
    try:
        g.connect_qmp()
        if guest == "linux":
            mt0 = linux_ready(g)
            start = len(g.lines)
            inflated = memtotal_at_most(mt0 - BALLOON_MB * 1024)
            deflated = memtotal_at_least(mt0)
        else:
            found = g.wait_for(r"^KVMM balloon event=found .*", 900)
            ready = g.wait_for(r"^KVMM balloon event=ready free_pages=(\d+)", 1200)
            if not found or not ready:
                err = [line for _, line in g.lines if "error" in line]
                raise RuntimeError(f"the test guest's balloon never got ready ({err[-3:]})")
            log(f"{vmm} test: {found[2].group(0)}, ready with {int(ready[2].group(1)) * 4096 // MiB} MiB free")
            start = ready[0] + 1
            inflated = re.compile(rf"^KVMM balloon target={BALLOON_PAGES} actual={BALLOON_PAGES}$").search
            deflated = re.compile(r"^KVMM balloon target=0 actual=0$").search
        time.sleep(1)
        curve = []
        inf = measure(g, TARGET_MB, inflated, start, True, curve)
        inf["query"] = g.query()
        start = len(g.lines)
        time.sleep(1)
        dfl = measure(g, RAM_MB, deflated, start, False)
        dfl["query"] = g.query()
        if i == 0:
            curves.append({"curve": 1, "vmm": vmm, "guest": guest, "points": curve})
        return {"vmm": vmm, "guest": guest, "run": i, "inflate": inf, "deflate": dfl}
    except (RuntimeError, OSError) as e:
        tail = g.out.decode(errors="replace")[-600:].replace("\n", " | ")
        raise RuntimeError(f"{e}; exit status {g.proc.poll()}; console: ...{tail}") from e
    finally:
        g.stop()


def fmt(phase):
    c = phase["cpu"]
    return (f"{phase['secs']} s (guest {phase['t_guest']}, rss90 {phase['t_rss90']}), released "
            f"{phase['released_mb']} MiB, MemFree +{phase['memfree_gain_mb']} MiB; CPU vcpu guest/user/sys "
            f"{c['vcpu_guest']:.2f}/{c['vcpu_user']:.2f}/{c['vcpu_sys']:.2f}, other user/sys "
            f"{c['other_user']:.2f}/{c['other_sys']:.2f}; {phase['query']}")


def main():
    vmms = ["kvmm", "qemu"] + (["kvmtool"] if kvmtool_path() else [])
    if not kvmtool_path():
        log("kvmtool not found (set KVMM_KVMTOOL or put lkvm-static in the test host cache's peers/); skipped")
    try:
        thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    except OSError:
        thp = "n/a"
    log(f"test host: THP {thp}, {os.cpu_count()} CPUs, MemFree {memfree_mb():.0f} MiB")
    global KERNEL, INITRD
    # The test host cache is shared with other checkouts, whose builds may prune this guest meanwhile.
    KERNEL, INITRD = (shutil.copy(p, TMP) for p in (KERNEL, INITRD))
    rows, curves = [], []
    for guest in GUESTS:
        for i in range(RUNS):
            for vmm in vmms:  # interleaved, so drift in the test host hits every VMM alike
                try:
                    row = run_once(vmm, guest, i, curves)
                except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
                    log(f"{vmm} {guest} run {i}: FAILED: {e}")
                    row = {"vmm": vmm, "guest": guest, "run": i, "error": str(e)}
                else:
                    log(f"{vmm} {guest} run {i}: inflate {fmt(row['inflate'])}")
                    log(f"{vmm} {guest} run {i}: deflate {fmt(row['deflate'])}")
                rows.append(row)
                with open(sys.argv[1], "w") as f:
                    for r in rows + curves:
                        f.write(json.dumps(r) + "\n")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
