"""What the bench drivers that run in the test host share (overcommit.py, sched.py; the reports
share report_common.py): a test guest's console, its lines each with the time it arrived, read
without blocking from a pipe or a pty, and the guest's exit status from its exit line; and
/proc/meminfo."""
import os
import re
import time

EXIT_RX = re.compile(r"KVMM guest=test event=exit status=(\d+)")


class Console:
    """A base for a guest object that sets self.fd (the console) and self.proc (the VMM process)."""

    def console_start(self, fd):
        self.fd = fd
        self.partial, self.lines, self.eof = b"", [], False
        self.exit_status = None

    def read(self):
        """Reads what is there (call when self.fd is readable)."""
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return
        now = time.monotonic()
        self.partial += chunk
        *done, self.partial = self.partial.split(b"\n")
        for line in done:
            text = line.decode(errors="replace").rstrip("\r")
            self.lines.append((now, text))
            m = EXIT_RX.search(text)
            if m:
                self.exit_status = int(m.group(1))

    def find(self, rx):
        """The first line matching rx: (time, match), else None."""
        rx = re.compile(rx)
        for t, line in self.lines:
            m = rx.search(line)
            if m:
                return t, m
        return None

    def findall(self, rx):
        rx = re.compile(rx)
        return [(t, m) for t, line in self.lines for m in [rx.search(line)] if m]

    def done(self):
        return self.eof or self.exit_status is not None or self.proc.poll() is not None


def meminfo():
    """/proc/meminfo in KiB by field."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out
