#!/usr/bin/env python3
"""Host memory scheduler benchmark (issue 8), run inside the test host (bench/sched.sh starts it there).

Three RAM_MB, 1-vCPU test guests: one active, two idle. The idle ones fill IDLE_SIZE
(`test=fill,idle:...`, then busy-wait without touching memory: the test guest has no halting idle
step) and are stopped once the active one exits. The active one fills ACTIVE_SIZE, then reads and
writes back every page of it (`hot=100`) in WSS_STEPS wss steps of WSS_SECONDS, then verifies.
Configurations (CONFIGS, in order):
  alone      the active guest alone, no hostd, no limit: the throughput to compare against, and
             its "need" (its consumed memory during the wss steps);
  alone-hostd  the active guest alone under hostd with a capacity of the three guests' RAM (no
             pressure): what joining hostd costs by itself (reclaim set up, page ages kept);
  idle-free  the three guests, no hostd, no limit: what sharing the one test host CPU with two
             spinning idle vCPUs costs, without any memory pressure;
  hostd      the three guests under `kvmm hostd --capacity` = half their RAM (2x overcommitted),
             each with `--hostd` and `--mem-swap`. The active guest starts only once the idle
             ones have filled and their consumed memory follows hostd's targets (or SETTLE_MAX s),
             so it must take memory they hold.
Every second: each VM's `x-kvmm-query-memory` (consumed, target, active, compressed, swapped), its
PSS, and hostd's `query-vms` (its target and state for each VM), into argv[1].csv. The console
gives the active guest's banner (its fill starts), fill, wss (pages_per_sec) and verify lines.

Writes one JSON object per configuration to argv[1] (figures), plus a `meta` object. Everything
kvmm-specific is in the "kvmm's interface" block."""
import csv
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.environ.get("KVMM_REPO", os.getcwd())
BUILD = os.environ.get("KVMM_BUILD", os.path.join(REPO, "build", "release"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import kvmmtest  # noqa: E402
from kvmmtest import Qmp, pss_kib  # noqa: E402  (the repo's QMP client and PSS reader)
from driver_common import Console, meminfo  # noqa: E402

CONFIGS = os.environ.get("CONFIGS", "alone,alone-hostd,idle-free,hostd").split(",")
RAM_MB = int(os.environ.get("RAM_MB", "512"))
IDLE_SIZE = os.environ.get("IDLE_SIZE", "448M")
ACTIVE_SIZE = os.environ.get("ACTIVE_SIZE", "384M")
WSS_SECONDS = int(os.environ.get("WSS_SECONDS", "30"))
WSS_STEPS = int(os.environ.get("WSS_STEPS", "4"))
PATTERN = os.environ.get("PATTERN", "text:60,random:40")
SETTLE_MAX = float(os.environ.get("SETTLE_MAX", "240"))  # s after the idle fills before the active starts anyway
TIMEOUT = float(os.environ.get("TIMEOUT_RUN", "900"))  # s per configuration
SWAPDIR = os.environ.get("SWAPDIR", "auto")
CAPACITY_MB = int(os.environ.get("CAPACITY_MB", str(3 * RAM_MB // 2)))
NEED_FRACTION = 0.95  # the active guest "has what it needs" at this fraction of its consumed alone
SAMPLE = 1.0
PROGRESS = 30.0
MiB = 1 << 20
TMP = tempfile.mkdtemp(prefix="bench-sched-")
TEST_GUEST = os.path.join(BUILD, "guest", "test-guest.bzImage")

# --- kvmm's interface (issue 8, docs/architecture.md "The host scheduler"; fix here if kvmm differs) ---
KVMM = os.path.join(BUILD, "kvmm")
KVMM_QUERY = "x-kvmm-query-memory"
QUERY_FIELDS = ("consumed", "target", "active", "compressed", "swapped")
HOSTD_SOCK = os.path.join(TMP, "hostd.sock")
# The test host has far more free memory than --capacity: a large minFree with the low line at 1%
# of it puts hostd in the hard state (compression and swap allowed) for the whole run, so the
# capacity is what overcommits the guests, as on a host that size.
def hostd_args(capacity_mb):
    return ["--capacity", f"{capacity_mb}M", "--minfree", "64G", "--thresholds", "400,100,64,32,1",
              "--period", "1000"]


def kvmm_command(name, append, under_hostd, swapfile):
    cmd = [KVMM, "run", "-m", f"{RAM_MB}M", "--cpus", "1", "--name", name, "--kernel", TEST_GUEST,
           "--append", append, "--qmp", f"unix:{os.path.join(TMP, name + '.qmp')}", "--mem-share", "off"]
    if under_hostd:
        cmd += ["--hostd", HOSTD_SOCK, "--mem-swap", f"{swapfile},size={RAM_MB}M"]
    return cmd


def hostd_request(req):
    return kvmmtest.hostd_request(HOSTD_SOCK, req, timeout=5)
# --- end of kvmm's interface ---


def log(msg):
    print(f"sched: {msg}", flush=True)


def timed(fn, timeout=5.0):
    """fn() in a helper thread; None if it does not return in time (smaps_rollup waits for the mmap lock)."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


class Guest(Console):
    def __init__(self, role, append, under_hostd):
        self.role = role
        self.name = role
        self.sock = os.path.join(TMP, role + ".qmp")
        self.swapfile = os.path.join(SWAPDIR, f"kvmm-sched-{os.getpid()}-{role}.swap")
        self.errf = open(os.path.join(TMP, role + ".stderr"), "w+b")
        self.cmd = kvmm_command(role, append, under_hostd, self.swapfile)
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf)
        self.console_start(self.proc.stdout.fileno())
        self.qmp = None

    def query(self):
        try:
            if self.qmp is None:
                if not os.path.exists(self.sock):
                    return None
                self.qmp = Qmp(self.sock, timeout=10)
            r = self.qmp.cmd(KVMM_QUERY)
        except (OSError, ValueError):
            self.qmp = None
            return None
        return r.get("return") if isinstance(r, dict) else None

    def stderr_tail(self, n=600):
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")[-n:].replace("\n", " | ")

    def stop(self):
        if self.qmp:
            try:
                self.qmp.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.errf.close()
        if os.path.exists(self.swapfile):
            os.unlink(self.swapfile)


def wss_append(seed):
    return (f"test=fill{',wss' * WSS_STEPS},verify size={ACTIVE_SIZE} hot=100 seconds={WSS_SECONDS} "
            f"pattern={PATTERN} seed={seed}")


def idle_append(seed):
    return f"test=fill,idle:86400 size={IDLE_SIZE} pattern={PATTERN} seed={seed}"


def run_config(config, writer):
    under_hostd = config in ("hostd", "alone-hostd")
    alone = config.startswith("alone")
    hostd, hostd_log = None, None
    if under_hostd:
        if os.path.exists(HOSTD_SOCK):
            os.unlink(HOSTD_SOCK)
        hostd_log = open(os.path.join(TMP, "hostd.log"), "w+b")
        hostd = subprocess.Popen([KVMM, "hostd", "--socket", HOSTD_SOCK] +
                                 hostd_args(CAPACITY_MB if config == "hostd" else 3 * RAM_MB), stdout=hostd_log,
                                 stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                hostd_request({"execute": "query-vms"})
                break
            except OSError:
                time.sleep(0.1)
    guests = {}
    t0 = time.monotonic()
    if not alone:
        guests["idle1"] = Guest("idle1", idle_append(2), under_hostd)
        guests["idle2"] = Guest("idle2", idle_append(3), under_hostd)
    else:
        guests["active"] = Guest("active", wss_append(1), under_hostd)
    t_active = t0 if alone else None
    t_idle_filled, settled = None, 0
    samples, views = [], []
    next_sample, next_progress = t0, t0 + PROGRESS
    timed_out = False
    try:
        while True:
            now = time.monotonic()
            active = guests.get("active")
            if active and active.done():
                break
            if any(g.done() and g.role != "active" for g in guests.values()):
                log(f"{config}: an idle guest stopped early")
                break
            if now - t0 > TIMEOUT:
                timed_out = True
                break
            if now >= next_sample:
                next_sample += SAMPLE
                view = {}
                if hostd:
                    try:
                        v = hostd_request({"execute": "query-vms"})["return"]
                        view = {x["name"]: x for x in v["vms"]}
                        view["_host"] = v["host"]
                        views.append((round(now - t0, 2), v))
                    except (OSError, ValueError, KeyError):
                        pass
                s = {"t": round(now - t0, 2), "avail_mib": meminfo()["MemAvailable"] // 1024, "vm": {}}
                for g in guests.values():
                    if g.proc.poll() is not None:
                        continue
                    q = g.query() or {}
                    pss = timed(lambda g=g: pss_kib(g.proc.pid))
                    row = {k: q.get(k) for k in QUERY_FIELDS}
                    row["pss"] = pss * 1024 if pss is not None else None
                    row["hostd_target"] = view.get(g.name, {}).get("target")
                    s["vm"][g.name] = row
                    writer.writerow([config, s["t"], g.name] + [
                        "" if row[k] is None else round(row[k] / MiB, 1) for k in QUERY_FIELDS + ("hostd_target", "pss")])
                samples.append(s)
                # Start the active guest once the idle ones hold what hostd lets them hold.
                if t_active is None:
                    if t_idle_filled is None and all(g.find(r"^KVMM test=fill ") for g in guests.values()):
                        t_idle_filled = now
                        log(f"{config}: idle guests filled at {now - t0:.0f} s")
                    if t_idle_filled is not None:
                        ok = not hostd or all(
                            (s["vm"].get(n) or {}).get("consumed") is not None and s["vm"][n].get("hostd_target")
                            and s["vm"][n]["consumed"] <= s["vm"][n]["hostd_target"] * 1.05 for n in ("idle1", "idle2"))
                        settled = settled + 1 if ok else 0
                        if settled >= 5 or now - t_idle_filled > SETTLE_MAX:
                            t_active = now
                            log(f"{config}: starting the active guest at {now - t0:.0f} s "
                                f"({'idle guests at their targets' if settled >= 5 else 'not settled after SETTLE_MAX'})")
                            guests["active"] = Guest("active", wss_append(1), under_hostd)
            if now >= next_progress and samples:
                next_progress += PROGRESS
                last = samples[-1]
                log(f"  t={last['t']:.0f} s " + "; ".join(
                    f"{n}: consumed {fmt_mib(r.get('consumed'))} target {fmt_mib(r.get('hostd_target') or r.get('target'))} "
                    f"active {fmt_mib(r.get('active'))} swapped {fmt_mib(r.get('swapped'))}"
                    for n, r in last["vm"].items()) + (f"; active console: {active.lines[-1][1][:80]}"
                                                       if active and active.lines else ""))
            fds = [g.fd for g in guests.values() if not g.eof]
            r, _, _ = select.select(fds, [], [], max(0.0, min(next_sample - time.monotonic(), 0.2)))
            for g in guests.values():
                if g.fd in r and not g.eof:
                    g.read()
        active = guests.get("active")
        row = {"config": config, "timed_out": timed_out, "t_active": t_active and round(t_active - t0, 2),
               "cmd": {n: " ".join(g.cmd[1:]) for n, g in guests.items()}}
        if active:
            if active.proc.poll() is None and not timed_out:
                try:
                    active.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            banner = active.find(r"^KVMM guest=test event=banner")
            fill = active.find(r"^KVMM test=fill pages=")
            wss = active.findall(r"^KVMM test=wss hot_pages=(\d+) passes=(\d+) pages_per_sec=(\d+)")
            verify = active.findall(r"^KVMM test=verify pages=\d+ mismatches=(\d+)")
            row.update({
                "t_banner": banner and round(banner[0] - t0, 2), "t_fill": fill and round(fill[0] - t0, 2),
                "wss_steps": [{"t": round(t - t0, 2), "hot_pages": int(m.group(1)), "passes": int(m.group(2)),
                               "pages_per_sec": int(m.group(3))} for t, m in wss],
                "verifies": len(verify), "mismatches": sum(int(m.group(1)) for _, m in verify),
                "exit_status": active.exit_status, "vmm_exit": active.proc.poll(),
                "errors": [x for _, x in active.lines if "error=" in x or x.startswith("KVMM mismatch")][:5],
            })
            if len(wss) != WSS_STEPS or not verify or row["mismatches"] or active.exit_status != 0:
                row["error"] = (f"{len(wss)} of {WSS_STEPS} wss lines, {len(verify)} verifies / {row['mismatches']} "
                                f"mismatches, exit {active.exit_status}; stderr ...{active.stderr_tail(300)}; console ..."
                                + " | ".join(x for _, x in active.lines[-3:])[-300:])
        else:
            row["error"] = f"the active guest never started (idle fills at {t_idle_filled})"
        row["stderr"] = {n: g.stderr_tail(400) for n, g in guests.items()}
        if views:
            row["hostd_end"] = views[-1][1]
            row["hostd_states"] = sorted({v["host"]["state"] for _, v in views})
        return row, samples
    finally:
        for g in guests.values():
            g.stop()
        if hostd:
            hostd.send_signal(signal.SIGTERM)
            try:
                hostd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                hostd.kill()
                hostd.wait()
            hostd_log.seek(0)
            log("hostd's log (tail): " + hostd_log.read().decode(errors="replace")[-1500:].replace("\n", " | "))
            hostd_log.close()


def fmt_mib(v):
    return "-" if v is None else f"{v / MiB:.0f}M"


def size_bytes(s):
    return int(s[:-1]) << {"K": 10, "M": 20, "G": 30}[s[-1].upper()] if s[-1].isalpha() else int(s)


def pick_swapdir():
    """/var/tmp (the test host's ext4 root on virtio-blk) when three swap files fit there (kvmm
    preallocates them), else build/bench/swap in the repo (virtiofs)."""
    st = os.statvfs("/var/tmp")
    if st.f_bavail * st.f_frsize >= 3 * RAM_MB * MiB + 64 * MiB:
        return "/var/tmp"
    d = os.path.join(REPO, "build", "bench", "swap")
    os.makedirs(d, exist_ok=True)
    return d


def main():
    global SWAPDIR, TEST_GUEST
    if SWAPDIR == "auto":
        SWAPDIR = pick_swapdir()
    for old in [os.path.join(SWAPDIR, f) for f in os.listdir(SWAPDIR) if f.startswith("kvmm-sched-")]:
        os.unlink(old)
    fs = subprocess.run(["stat", "-f", "-c", "%T", SWAPDIR], capture_output=True, text=True).stdout.strip()
    mi = meminfo()
    setup = {"cpus": os.cpu_count(), "memtotal_mib": mi["MemTotal"] // 1024, "ram_mb": RAM_MB,
             "idle_size": IDLE_SIZE, "active_size": ACTIVE_SIZE, "wss_seconds": WSS_SECONDS, "wss_steps": WSS_STEPS,
             "pattern": PATTERN, "capacity_mb": CAPACITY_MB, "hostd_args": " ".join(hostd_args(CAPACITY_MB)),
             "swapdir": SWAPDIR, "swapfs": fs, "active_append": wss_append(1), "idle_append": idle_append("N"),
             "need_fraction": NEED_FRACTION}
    log(f"test host: {os.cpu_count()} CPUs, MemAvailable {mi['MemAvailable'] // 1024} MiB; swap dir {SWAPDIR} ({fs}); "
        f"capacity {CAPACITY_MB} MiB for 3 x {RAM_MB} MiB")
    TEST_GUEST = shutil.copy(TEST_GUEST, TMP)
    out = [{"meta": 1, "setup": setup}]
    try:
        with open(sys.argv[1] + ".csv", "w", newline="") as cf:
            writer = csv.writer(cf)
            writer.writerow(["config", "t", "vm"] + [f"{k}_mib" for k in QUERY_FIELDS + ("hostd_target", "pss")])
            for config in CONFIGS:
                log(f"{config}: starting")
                row, samples = run_config(config, writer)
                cf.flush()
                wss = [x["pages_per_sec"] for x in row.get("wss_steps", [])]
                log(f"{config}: active guest banner {row.get('t_banner')} s, filled {row.get('t_fill')} s, wss {wss} "
                    f"pages/s, {row.get('verifies')} verifies / {row.get('mismatches')} mismatches"
                    + (f"; ERROR {row['error']}" if "error" in row else ""))
                out += [row, {"curve": 1, "config": config, "samples": samples}]
                with open(sys.argv[1], "w") as f:
                    for r in out:
                        f.write(json.dumps(r) + "\n")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
