"""Helpers for integration tests that drive the real kvmm binary (run inside the test host)."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

REPO = os.environ.get("KVMM_REPO") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KVMM_BUILD") or os.path.join(REPO, "build", "release")
KVMM = os.path.join(BUILD, "kvmm")
TEST_GUEST = os.environ.get("KVMM_TEST_GUEST") or os.path.join(BUILD, "guest", "test-guest.bzImage")
GUEST_KERNEL = os.environ.get("KVMM_GUEST_KERNEL", "")
GUEST_INITRD = os.environ.get("KVMM_GUEST_INITRD", "")

failures = 0
failed = []


def check(cond, what):
    """Records one assertion; the test exits non-zero at the end if any failed."""
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1
        failed.append(what)
    return cond


def finish():
    # Repeated at the end: CI shows only the tail of a failed test's output.
    for what in failed:
        print("FAIL " + what)
    print(f"{'FAILED' if failures else 'passed'}: {failures} failed check(s)")
    sys.exit(1 if failures else 0)


def hostd_request(path, req, timeout=10):
    """One JSON-lines request to `kvmm hostd` on its socket; its one-line reply, parsed."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf.split(b"\n", 1)[0])


class Vm:
    """kvmm run with the serial console on stdin/stdout pipes; output is collected as it arrives."""

    def __init__(self, args, timeout=300):
        self.out = b""
        self.deadline = time.monotonic() + timeout
        self.proc = subprocess.Popen([KVMM, "run"] + args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def _read(self, wait):
        r, _, _ = select.select([self.proc.stdout], [], [], wait)
        if not r:
            return False
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return None
        self.out += chunk
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
        return True

    def expect(self, text):
        """Waits until `text` has appeared in the output; False on EOF or time-out."""
        needle = text.encode()
        while needle not in self.out:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.diagnose(f"waiting for {text!r}")
                return False
            if self._read(min(left, 1.0)) is None:
                return needle in self.out
        return True

    def drain(self):
        """Reads whatever output is there now, without waiting."""
        while self._read(0):
            pass

    def expect_count(self, text, n):
        """Waits until `text` has appeared n times in the output; False on EOF or time-out."""
        needle = text.encode()
        while self.out.count(needle) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.diagnose(f"waiting for {text!r} to appear {n} times")
                return False
            if self._read(min(left, 1.0)) is None:
                return self.out.count(needle) >= n
        return True

    def diagnose(self, what):
        """After a time-out, once: asks kvmm to log every vCPU's state (SIGUSR2) and prints where
        its threads wait, so a hang in CI shows where the guest and kvmm are."""
        if getattr(self, "diagnosed", False) or self.proc.poll() is not None:
            return
        self.diagnosed = True
        print(f"\n--- timed out {what}; kvmm's threads and vCPU state:", flush=True)
        for task in sorted(os.listdir(f"/proc/{self.proc.pid}/task")):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/comm") as f:
                    comm = f.read().strip()
                with open(f"/proc/{self.proc.pid}/task/{task}/wchan") as f:
                    wchan = f.read().strip()
                with open(f"/proc/{self.proc.pid}/task/{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                print(f"  thread {comm}: state {fields[0]}, wchan {wchan}, utime {fields[11]}, "
                      f"stime {fields[12]}", flush=True)
            except OSError:
                pass
        self.proc.send_signal(signal.SIGUSR2)
        end = time.monotonic() + 3
        while time.monotonic() < end and self._read(0.5) is not None:
            pass

    def expect_re(self, pattern):
        """Waits for a whole output line matching `pattern`; returns the match or None."""
        rx = re.compile(pattern)
        while True:
            for line in self.text().splitlines(keepends=True):
                if line.endswith("\n") and rx.search(line):
                    return rx.search(line)
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.diagnose(f"waiting for a line matching {pattern!r}")
                return None
            if self._read(min(left, 1.0)) is None:
                return None

    def expect_lines(self, pattern, n):
        """Waits until `n` whole output lines match the regex `pattern`; True if they did."""
        rx = re.compile(pattern)
        while sum(1 for line in self.text().splitlines(keepends=True)
                  if line.endswith("\n") and rx.search(line)) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.diagnose(f"waiting for {n} lines matching {pattern!r}")
                return False
            if self._read(min(left, 1.0)) is None:
                return False
        return True

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait(self):
        """Collects the rest of the output; returns the exit status (None after a time-out)."""
        while time.monotonic() < self.deadline:
            got = self._read(min(1.0, self.deadline - time.monotonic()))
            if got is None:
                break
        try:
            return self.proc.wait(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.diagnose("waiting for kvmm to exit")
            self.proc.kill()
            self.proc.wait()
            return None

    def text(self):
        return self.out.decode(errors="replace")

    def guest_status(self):
        """The test guest's exit status: kvmm exits with it (port 0xf4); None after a time-out."""
        return self.wait()


class Qemu(Vm):
    """qemu-system-x86_64 with KVM, the serial console on stdout and the isa-debug-exit device (QEMU
    then exits with (status << 1) | 1), for tests that compare kvmm's devices with QEMU's."""

    def __init__(self, args, timeout=300):
        self.out = b""
        self.deadline = time.monotonic() + timeout
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-display", "none", "-nodefaults",
             "-no-reboot", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"] + args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def diagnose(self, what):
        print(f"\n--- timed out {what} (QEMU pid {self.proc.pid})", flush=True)

    def guest_status(self):
        """The guest's exit status from QEMU's, or None if QEMU did not exit through isa-debug-exit."""
        rc = self.wait()
        return rc >> 1 if rc is not None and rc & 1 else None


def pss_kib(pid):
    """The process's proportional set size in KiB (/proc/PID/smaps_rollup); shared pages count once."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


class Qmp:
    """A QMP client on a unix socket (QEMU's protocol, which kvmm speaks too). Connects (retrying
    until the socket appears) and, unless negotiate=False, reads the greeting into .greeting and
    sends qmp_capabilities. cmd() runs a command and returns its whole reply; events that arrive
    meanwhile are kept in .events for event()."""

    def __init__(self, path, timeout=30, negotiate=True):
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.settimeout(timeout)
            try:
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = b""
        self.events = []
        self.greeting = self.negotiate() if negotiate else None

    def msg(self):
        """The next message; None when the server closed the connection."""
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send_raw(self, data):
        self.s.sendall(data)

    def reply(self):
        while True:
            m = self.msg()
            if m is None or "event" not in m:
                return m
            self.events.append(m)

    def cmd(self, name, args=None, id_=None):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        if id_ is not None:
            req["id"] = id_
        self.send_raw(json.dumps(req).encode())
        return self.reply()

    def negotiate(self):
        greeting = self.msg()
        self.cmd("qmp_capabilities")
        return greeting

    def close(self):
        self.s.close()

    def event(self, name, timeout=30, vm=None):
        """The first event called name (kept or arriving within timeout seconds), else None.
        With vm, kvmm's output is read meanwhile: kvmm logs to a pipe with blocking writes, so a
        test that stops reading it can stall kvmm's loop thread."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if vm is not None:
                vm.drain()
            self.s.settimeout(min(left, 0.5 if vm is not None else left))
            try:
                m = self.msg()
            except socket.timeout:
                continue
            finally:
                self.s.settimeout(self.timeout)
            if m is None:
                return None
            if "event" in m:
                self.events.append(m)
