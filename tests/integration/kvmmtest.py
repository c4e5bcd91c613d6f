"""Helpers for integration tests that drive the real kvmm binary (run inside the test host)."""
import os
import re
import select
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


def check(cond, what):
    """Records one assertion; the test exits non-zero at the end if any failed."""
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1
    return cond


def finish():
    print(f"{'FAILED' if failures else 'passed'}: {failures} failed check(s)")
    sys.exit(1 if failures else 0)


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
                return False
            if self._read(min(left, 1.0)) is None:
                return needle in self.out
        return True

    def expect_re(self, pattern):
        """Waits for a whole output line matching `pattern`; returns the match or None."""
        rx = re.compile(pattern)
        while True:
            for line in self.text().splitlines(keepends=True):
                if line.endswith("\n") and rx.search(line):
                    return rx.search(line)
            left = self.deadline - time.monotonic()
            if left <= 0 or self._read(min(left, 1.0)) is None:
                return None

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
            self.proc.kill()
            self.proc.wait()
            return None

    def text(self):
        return self.out.decode(errors="replace")
