#!/usr/bin/env python3
"""Page-sharing benchmark, run inside the test host (bench/dedup.sh starts it there).

For each VMM -- kvmm with its own sharing (`--mem-share tps`), kvmm driving the kernel's KSM
(`--mem-share ksm`) and QEMU with KSM at the kernel's defaults (`-machine mem-merge=on`) -- RUNS times,
interleaved: boot a 1280 MiB, 1-vCPU test guest that fills 1 GiB with 50% duplicate pages (16
templates), 30% zero pages and 20% unique random pages, then idles (busy-waiting, no exits) with a
verify of every page after each idle chunk. Meanwhile, every 0.25 s from the fill line to 30 s after it, every 1 s before and after:
  - the VMM process's PSS (/proc/PID/smaps_rollup: a page shared by N mappings counts 1/N each, so
    merged pages count once) and the test host's MemAvailable;
  - the sharing CPU: ksmd's utime+stime (QEMU, kvmm ksm) plus kvmm's sharing threads (kvmm);
  - KSM's counters, and kvmm's own figures from QMP (once a second).
Definitions (time origin: the arrival of the guest's `KVMM test=fill ...` line):
  possible  = (zero + dup - 16) * 4 KiB, from the fill line (16 dup templates stay);
  baseline  = PSS when the guest prints its banner (just before the fill) + the bytes the fill wrote
              (the workload pages plus the guest's checksum table, 8 bytes per page);
  saving(t) = baseline - PSS(t), clipped at 0, for t >= 0 only (before the fill ends the guest has
              not written everything yet, so the difference means nothing; a VMM that shares during
              the fill starts at t = 0 with what it already saved);
  t90       = the first time saving reaches 90% of possible (linear between samples; 0 when the first
              sample, read at the fill line, already has it), CPU-to-90% the sharing CPU from the VMM's
              start to t90 (linear likewise), CPU total to the run's end.
A run ends when saving has reached 90% and then grown by less than 1% of possible over FLAT s (at
least FLAT s after t90), or at TIMEOUT s after the fill ("not reached"). Then the next verify line is
awaited; every verify must report 0 mismatches. KSM is reset before every run: `run` = 2 (unmerge
everything), the kernel's default knobs written explicitly, `run` = 1. kvmm in ksm mode sets KSM's
scan rate itself (read back and recorded); the outer machine's KSM is never touched.

Writes one JSON object per run to argv[1] (vmm run + figures), plus a `curve` object per run
(t, saving MiB) for the plot. Everything kvmm-specific is in the "kvmm's interface" block below."""
import glob
import json
import math
import os
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
from kvmmtest import Qmp, pss_kib  # noqa: E402  (the repo's QMP client and PSS reader)

RUNS = int(os.environ.get("RUNS", "1"))
VMMS = os.environ.get("VMMS", "kvmm-tps,kvmm-ksm,qemu").split(",")
TIMEOUT = float(os.environ.get("TIMEOUT_RUN", "300"))  # s after the fill line
FLAT = 10.0          # s of (almost) no growth after t90 that end a run
FLAT_FRAC = 0.01     # "almost no growth": less than this fraction of the possible saving
SAMPLE = 0.25        # s between samples from the fill line to SLOW_AFTER s after it,
SLOW_AFTER = 30.0
SLOW_SAMPLE = 1.0    # before and after that: smaps_rollup of a KSM-merged 1 GiB guest costs ~40 ms of test host CPU,
                     # which competes with ksmd (the vCPU spins on the other CPU)
QUERY_EVERY = 1.0    # s between kvmm's QMP queries
MiB = 1 << 20
PAGE = 4096
RAM_MB = 1280
SIZE = "1G"
PATTERN = "dup:50,zero:30,random:20"
TEMPLATES = 16       # dup templates in the test guest (tests/guest/README.md, "Page kinds")
CHUNKS = 15          # idle+verify pairs after the fill (the guest takes at most 32 steps)
CHUNK_S = math.ceil((TIMEOUT + 30) / CHUNKS)
APPEND = (f"test=fill{f',idle:{CHUNK_S},verify' * CHUNKS} size={SIZE} pattern={PATTERN} seed=1")
TEST_GUEST = os.path.join(BUILD, "guest", "test-guest.bzImage")
TICK = os.sysconf("SC_CLK_TCK")
KSM = "/sys/kernel/mm/ksm"
# The kernel's defaults (mm/ksm.c), written before every run. Files a kernel lacks are skipped.
KSM_DEFAULTS = [("pages_to_scan", "100"), ("sleep_millisecs", "20"), ("use_zero_pages", "0"),
                ("max_page_sharing", "256"), ("merge_across_nodes", "1"), ("smart_scan", "1"),
                ("advisor_mode", "none"), ("stable_node_chains_prune_millisecs", "2000")]
KSM_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "pages_skipped",
                "full_scans", "general_profit", "ksm_zero_pages", "stable_node_chains", "stable_node_dups")
TMP = tempfile.mkdtemp(prefix="bench-dedup-")

# --- kvmm's interface (assumed from issue 6 and include/kvmm/mem.h; fix here if kvmm differs) ---
KVMM = os.path.join(BUILD, "kvmm")
KVMM_MODE = {"kvmm-tps": "tps", "kvmm-ksm": "ksm"}   # bench name -> --mem-share value
KVMM_SHARE_THREADS = ("mem-share", "mem-fault")     # comm of kvmm's sharing threads
KVMM_QUERY = "x-kvmm-query-memory"                   # QMP command returning kvmm's memory figures
KVMM_QUERY_KEYS = ("configured", "consumed", "zero", "shared", "shared-saved", "share-cpu-ns", "mode")
# ksm mode also returns a "ksm" object with KSM's counters; it is recorded as it comes.


def kvmm_command(mode, sock, append):
    return [KVMM, "run", "-m", f"{RAM_MB}M", "--cpus", "1", "--kernel", TEST_GUEST, "--append", append,
            "--qmp", f"unix:{sock}", "--mem-share", mode]


def kvmm_query_summary(ret):
    """The figures kept from one x-kvmm-query-memory reply (bytes, ns; MiB added for reading)."""
    out = {k: ret[k] for k in KVMM_QUERY_KEYS if k in ret}
    for k in ("consumed", "zero", "shared", "shared-saved"):
        if isinstance(ret.get(k), int):
            out[k + "-mib"] = round(ret[k] / MiB, 1)
    if isinstance(ret.get("ksm"), dict):
        out["ksm"] = ret["ksm"]
    return out
# --- end of kvmm's interface ---


def uses_ksm(vmm):
    return vmm in ("qemu", "kvmm-ksm")


def uses_threads(vmm):
    return vmm.startswith("kvmm")


def log(msg):
    print(f"dedup: {msg}", flush=True)


def qemu_command(sock):
    return ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(RAM_MB), "-smp", "1",
            "-machine", "mem-merge=on", "-name", "dedup,debug-threads=on", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-qmp", f"unix:{sock},server=on,wait=off", "-kernel", TEST_GUEST, "-append", APPEND]


# --- host-side figures ---

def memavail_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def stat_cpu(path):
    """utime + stime in seconds from a /proc/.../stat file (0 if it is gone)."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def ksmd_pid():
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            if open(comm).read().strip() == "ksmd":
                return int(comm.split("/")[2])
        except OSError:
            pass
    return None


def thread_cpu(pid, names):
    """Seconds of CPU of the process's threads whose comm is in names."""
    total = 0.0
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            comm = open(task + "/comm").read().strip()
        except OSError:
            continue
        if comm in names:
            total += stat_cpu(task + "/stat")
    return total


def ksm_read(name):
    try:
        with open(os.path.join(KSM, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def ksm_write(name, value):
    if ksm_read(name) in (None, value):
        return
    try:
        with open(os.path.join(KSM, name), "w") as f:
            f.write(value)
    except OSError as e:
        log(f"KSM {name} = {value}: {e}")


def ksm_counters():
    out = {}
    for name in KSM_COUNTERS:
        v = ksm_read(name)
        if v is not None:
            out[name] = int(v)
    return out


def ksm_settings():
    return {name: ksm_read(name) for name, _ in KSM_DEFAULTS if ksm_read(name) is not None}


def ksm_reset():
    """Unmerges everything KSM holds, writes the kernel's default knobs, starts ksmd."""
    ksm_write("run", "0")
    with open(os.path.join(KSM, "run"), "w") as f:
        f.write("2")  # synchronous: unmerges every merged page
    deadline = time.monotonic() + 60
    while int(ksm_read("pages_shared") or 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, value in KSM_DEFAULTS:
        ksm_write(name, value)
    ksm_write("run", "1")


# --- the VMM and its console ---

class Guest:
    def __init__(self, vmm):
        self.vmm = vmm
        self.sock = os.path.join(TMP, f"{vmm}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}.qmp")
        cmd = kvmm_command(KVMM_MODE[vmm], self.sock, APPEND) if vmm in KVMM_MODE else qemu_command(self.sock)
        self.t_start = time.monotonic()
        # stderr to a file: kvmm logs what it chose there, and an error from a kvmm without the
        # options explains a failed run.
        self.errf = open(os.path.join(TMP, vmm + ".stderr"), "w+b")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf)
        self.fd = self.proc.stdout.fileno()
        self.partial, self.lines, self.eof = b"", [], False
        self.qmp = None

    def pump(self, wait):
        if self.eof:
            time.sleep(max(wait, 0))
            return False
        r, _, _ = select.select([self.fd], [], [], max(wait, 0))
        if not r:
            return True
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return False
        now = time.monotonic()
        self.partial += chunk
        *done, self.partial = self.partial.split(b"\n")
        self.lines += [(now, line.decode(errors="replace").rstrip("\r")) for line in done]
        return True

    def wait_for(self, rx, timeout, start=0, on_wait=None):
        """(index, time, match) of the first line from lines[start] matching rx; None on EOF or
        time-out. on_wait() runs between reads (sampling)."""
        rx = re.compile(rx)
        deadline = time.monotonic() + timeout
        while True:
            for i in range(start, len(self.lines)):
                m = rx.search(self.lines[i][1])
                if m:
                    return i, self.lines[i][0], m
            start = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self.pump(min(left, 0.05))
            if on_wait:
                on_wait()

    def stderr_tail(self):
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")[-600:].replace("\n", " | ")

    def console_tail(self):
        return " | ".join(line for _, line in self.lines[-6:])[-600:]

    def stop(self):
        if self.qmp:
            try:
                self.qmp.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errf.close()


class Sampler:
    """Samples PSS, MemAvailable, the sharing CPU, KSM's counters and (kvmm) its QMP figures."""

    def __init__(self, g, ksmd):
        self.g, self.ksmd, self.pid = g, ksmd, g.proc.pid
        self.samples, self.queries = [], []
        self.cpu0 = self.cpu_parts()
        self.next = 0.0
        self.last_query = 0.0
        self.t0 = None

    def cpu_parts(self):
        ksmd = stat_cpu(f"/proc/{self.ksmd}/stat") if self.ksmd else 0.0
        threads = thread_cpu(self.pid, KVMM_SHARE_THREADS) if uses_threads(self.g.vmm) else 0.0
        return {"ksmd": ksmd, "threads": threads, "vmm": stat_cpu(f"/proc/{self.pid}/stat")}

    def share_cpu(self, parts):
        """The sharing CPU counted for this VMM since its start."""
        c = 0.0
        if uses_ksm(self.g.vmm):
            c += parts["ksmd"] - self.cpu0["ksmd"]
        if uses_threads(self.g.vmm):
            c += parts["threads"]
        return c

    def sample(self, force=False):
        now = time.monotonic()
        if not force and now < self.next:
            return None
        fast = self.t0 is not None and now - self.t0 < SLOW_AFTER
        self.next = now + (SAMPLE if fast else SLOW_SAMPLE)
        pss = pss_kib(self.pid)
        now = (now + time.monotonic()) / 2  # the read's middle: smaps_rollup may take a second
        parts = self.cpu_parts()
        s = {"t": now, "pss_kib": pss, "avail_kib": memavail_kib(), "cpu": round(self.share_cpu(parts), 3),
             "ksmd": round(parts["ksmd"] - self.cpu0["ksmd"], 3), "threads": round(parts["threads"], 3),
             "vmm_cpu": round(parts["vmm"], 3)}
        if uses_ksm(self.g.vmm):
            s["ksm"] = ksm_counters()
        self.samples.append(s)
        if self.g.qmp and self.g.vmm in KVMM_MODE and now - self.last_query >= QUERY_EVERY:
            self.last_query = now
            self.queries.append({"t": now, **self.query()})
        return s

    def query(self):
        try:
            r = self.g.qmp.cmd(KVMM_QUERY)
        except (OSError, ValueError) as e:
            return {"error": str(e)}
        if "return" not in r:
            return {"error": json.dumps(r.get("error", r))[:200]}
        return kvmm_query_summary(r["return"])


def interp(t_a, t_b, v_a, v_b, y_a, y_b, y):
    """(t, v) where the line from (t_a, y_a) to (t_b, y_b) reaches y."""
    f = 1.0 if y_b == y_a else (y - y_a) / (y_b - y_a)
    return t_a + f * (t_b - t_a), v_a + f * (v_b - v_a)


def run_once(vmm, i, ksmd):
    if uses_ksm(vmm) or vmm == "kvmm-tps":
        ksm_reset()  # also for tps: KSM at its defaults, running, with nothing merged
    avail_before = memavail_kib()
    sampler_cpu0 = sum(os.times()[:2])
    g = Guest(vmm)
    sm = Sampler(g, ksmd)
    try:
        banner = g.wait_for(r"^KVMM guest=test event=banner", 300)
        if not banner:
            raise RuntimeError("no banner")
        pss_banner = pss_kib(g.proc.pid)
        t_banner = banner[1]
        if vmm in KVMM_MODE or vmm == "qemu":
            g.qmp = Qmp(g.sock)
        fill = g.wait_for(r"^KVMM test=fill pages=(\d+) zero=(\d+) dup=(\d+) random=(\d+) text=(\d+)", 600,
                          banner[0] + 1, sm.sample)
        if not fill:
            raise RuntimeError("no fill line")
        t0 = sm.t0 = fill[1]
        pages, zero, dup = (int(fill[2].group(k)) for k in (1, 2, 3))
        possible = (zero + dup - TEMPLATES) * PAGE
        written = pages * PAGE + math.ceil(pages * 8 / PAGE) * PAGE
        baseline = pss_banner * 1024 + written
        goal = 0.9 * possible
        settings_at_fill = ksm_settings() if uses_ksm(vmm) else {}
        log(f"{vmm} run {i}: fill took {t0 - t_banner:.1f} s; pages={pages} zero={zero} dup={dup}, "
            f"possible {possible / MiB:.0f} MiB, PSS at banner {pss_banner / 1024:.0f} MiB")

        def saving(s):
            return max(0, baseline - s["pss_kib"] * 1024)

        first = sm.sample(force=True)
        fill_idx = len(sm.samples) - 1
        t90 = cpu90 = None
        if saving(first) >= goal:  # already there when the fill ended (shared while the guest wrote)
            t90, cpu90 = 0.0, first["cpu"]
            log(f"{vmm} run {i}: 90% ({goal / MiB:.0f} MiB) already at the fill line, sharing CPU {cpu90:.2f} s")
        stop_reason = "timeout"
        verify_start = fill[0] + 1
        while True:
            g.pump(max(0.0, min(sm.next - time.monotonic(), 0.05)))
            s = sm.sample()
            if g.eof or g.proc.poll() is not None:
                raise RuntimeError("the VMM exited while measuring")
            if s is None:
                continue
            t = s["t"] - t0
            sv = saving(s)
            if t90 is None and sv >= goal:
                prev = sm.samples[-2] if len(sm.samples) - 1 > fill_idx else None
                if prev is None:
                    t90, cpu90 = t, s["cpu"]
                else:
                    t90, cpu90 = interp(prev["t"] - t0, t, prev["cpu"], s["cpu"], saving(prev), sv, goal)
                    t90 = max(t90, 0.0)
                log(f"{vmm} run {i}: 90% ({goal / MiB:.0f} MiB) at {t90:.2f} s, sharing CPU {cpu90:.2f} s")
            if t90 is not None and t - t90 >= FLAT:
                back = [x for x in sm.samples[fill_idx:] if x["t"] - t0 <= t - FLAT]
                if back and sv - saving(back[-1]) < FLAT_FRAC * possible:
                    stop_reason = "flat"
                    break
            if t >= TIMEOUT:
                break
        t_end = s["t"] - t0
        tail = [x for x in sm.samples if s["t"] - x["t"] <= 2.0]
        final = sum(saving(x) for x in tail) / len(tail)
        settings_at_end = ksm_settings() if uses_ksm(vmm) else {}
        query_end = sm.query() if g.vmm in KVMM_MODE and g.qmp else None
        ksm_end = ksm_counters() if uses_ksm(vmm) else None
        avail_end = s["avail_kib"]
        # The guest's verifies: the one after the end, and all before.
        nxt = g.wait_for(r"^KVMM test=verify pages=\d+ mismatches=\d+", CHUNK_S + 60, len(g.lines))
        verifies = [line for _, line in g.lines[verify_start:] if line.startswith("KVMM test=verify")]
        mism = [int(re.search(r"mismatches=(\d+)", v).group(1)) for v in verifies]
        bad = [line for _, line in g.lines if line.startswith("KVMM mismatch") or "error=" in line]
        points = [(round(x["t"] - t0, 3), round(saving(x) / MiB, 1)) for x in sm.samples[fill_idx:]]
        row = {
            "vmm": vmm, "run": i, "possible_mib": round(possible / MiB, 1), "goal_mib": round(goal / MiB, 1),
            "pages": pages, "zero": zero, "dup": dup,
            "fill_s": round(t0 - t_banner, 2), "boot_s": round(t_banner - g.t_start, 2),
            "pss_banner_mib": round(pss_banner / 1024, 1), "pss_fill_mib": round(first["pss_kib"] / 1024, 1),
            "saving_at_fill_mib": round(saving(first) / MiB, 1),
            "pss_fill_over_baseline_mib": round((first["pss_kib"] * 1024 - baseline) / MiB, 1),
            "t90": t90 and round(t90, 2), "cpu90": cpu90 if cpu90 is None else round(cpu90, 3),
            "cpu_total": s["cpu"], "ksmd_cpu": s["ksmd"], "threads_cpu": s["threads"], "vmm_cpu": s["vmm_cpu"],
            "cpu_at_fill": first["cpu"], "peak_cores": round(peak_cores(sm.samples), 2),
            "final_mib": round(final / MiB, 1), "final_frac": round(final / possible, 4),
            "end_s": round(t_end, 2), "stop": stop_reason,
            "memavail_gain_mib": round((avail_end - first["avail_kib"]) / 1024, 1),
            "memavail_before_mib": round(avail_before / 1024, 1),
            "verifies": len(verifies), "mismatches": sum(mism), "verify_after_end": bool(nxt),
            "guest_errors": bad[:5], "samples": len(sm.samples),
            "sampler_cpu": round(sum(os.times()[:2]) - sampler_cpu0, 2),
        }
        if uses_ksm(vmm):
            row.update(ksm_settings_fill=settings_at_fill, ksm_settings_end=settings_at_end, ksm_end=ksm_end)
        if query_end is not None:
            row["kvmm_query"] = query_end
            row["kvmm_queries"] = [{**q, "t": round(q["t"] - t0, 2)} for q in sm.queries[-3:]]
        if not nxt:
            row["error"] = "no verify line after the end of the measurement"
        elif sum(mism) or bad:
            row["error"] = f"verify failed: {sum(mism)} mismatches over {len(verifies)} verifies; {bad[:3]}"
        curve = {"curve": 1, "vmm": vmm, "run": i, "points": points}
        return row, curve
    except (RuntimeError, OSError, ValueError) as e:
        raise RuntimeError(f"{e}; exit status {g.proc.poll()}; stderr: ...{g.stderr_tail()}; "
                           f"console: ...{g.console_tail()}") from e
    finally:
        g.stop()


def peak_cores(samples, window=1.0):
    """The most sharing CPU used per second over any ~1 s window."""
    best, j = 0.0, 0
    for k, s in enumerate(samples):
        while s["t"] - samples[j]["t"] > window:
            j += 1
        # the window from the sample just before it covers >= window seconds
        a = samples[j - 1] if j > 0 else samples[j]
        dt = s["t"] - a["t"]
        if dt >= window * 0.9:
            best = max(best, (s["cpu"] - a["cpu"]) / dt)
    return best


def fmt(r):
    t90 = f"{r['t90']:.2f} s" if r["t90"] is not None else f"not reached in {TIMEOUT:.0f} s"
    cpu90 = f"{r['cpu90']:.2f}" if r["cpu90"] is not None else "n/a"
    return (f"90% ({r['goal_mib']:.0f} of {r['possible_mib']:.0f} MiB) {t90}, CPU to 90% {cpu90} s, "
            f"total {r['cpu_total']:.2f} s (ksmd {r['ksmd_cpu']:.2f}, threads {r['threads_cpu']:.2f}), "
            f"peak {r['peak_cores']:.2f} cores; final {r['final_mib']:.0f} MiB ({100 * r['final_frac']:.1f}%) "
            f"at {r['end_s']:.0f} s ({r['stop']}); at fill {r['saving_at_fill_mib']:.0f} MiB "
            f"(PSS - baseline {r['pss_fill_over_baseline_mib']:+.0f} MiB); sampler CPU {r['sampler_cpu']:.1f} s; "
            f"MemAvailable +{r['memavail_gain_mib']:.0f} MiB; {r['verifies']} verifies, "
            f"{r['mismatches']} mismatches")


def main():
    if not os.path.isdir(KSM):
        sys.exit("dedup: no /sys/kernel/mm/ksm in the test host")
    ksmd = ksmd_pid()
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    log(f"test host: THP {thp}, {os.cpu_count()} CPUs, MemAvailable {memavail_kib() // 1024} MiB, ksmd pid {ksmd}; "
        f"guest: {APPEND}")
    global TEST_GUEST
    # The build tree may be rebuilt meanwhile (other worktrees share nothing, but be safe).
    TEST_GUEST = shutil.copy(TEST_GUEST, TMP)
    rows, curves = [], []
    try:
        for i in range(RUNS):
            for vmm in VMMS:  # interleaved, so drift in the test host hits every VMM alike
                try:
                    row, curve = run_once(vmm, i, ksmd)
                    curves.append(curve)
                except (RuntimeError, OSError) as e:
                    log(f"{vmm} run {i}: FAILED: {e}")
                    row = {"vmm": vmm, "run": i, "error": str(e)}
                else:
                    log(f"{vmm} run {i}: {fmt(row)}" + (f"; ERROR {row['error']}" if "error" in row else ""))
                rows.append(row)
                with open(sys.argv[1], "w") as f:
                    for r in rows + curves:
                        f.write(json.dumps(r) + "\n")
    finally:
        ksm_reset()
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
