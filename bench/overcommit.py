#!/usr/bin/env python3
"""Overcommit benchmark, run inside the test host (bench/overcommit.sh starts it there).

Two 2 GiB, 1-vCPU test guests at once, each filling 1800 MiB (`pattern=text:60,random:20,zero:20`),
then reading and writing back its hot set (the first 20% of its pages) in WSS_STEPS wss steps of
WSS_SECONDS each (`test=wss`: the first steps bring back what was taken during the fill, the last one
is the steady state), then verifying every page. Configurations (CONFIGS, in order, RUNS times interleaved):
  kvmm-free     kvmm, no limit;
  kvmm-limit    kvmm, each guest `--mem-limit 1G` (2 GiB for both: the hot sets, 360 MiB each, fit)
                and `--mem-swap` on SWAPDIR: kvmm must compress or swap out the cold pages;
  qemu-free     QEMU with KVM, no limit (reference);
  kvmtool-free  kvmtool (lkvm-static from the test host cache's peers/ or KVMM_KVMTOOL), no limit.
Both kvmm configurations use the same `--mem-share` (SHARE, default off: the limit is the only
difference; the reclaimer drops zero pages itself).

Every SAMPLE s while the guests run: each VMM process's PSS (/proc/PID/smaps_rollup), its CPU time,
the test host's MemAvailable, and for kvmm the figures of `x-kvmm-query-memory` over QMP (consumed,
compressed, swapped, swap-out/in, compress-out/in, ... as kvmm names them: the whole reply is kept,
without its "features"). From the console: the fill line's arrival, the wss line's pages_per_sec,
each verify's mismatches (must be 0) and the exit status.

Writes one JSON object per guest and run to argv[1] (figures), one `curve` object per run (the
samples) and one `meta` object. Everything kvmm-specific is in the "kvmm's interface" block."""
import glob
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
import threading
import time

REPO = os.environ.get("KVMM_REPO", os.getcwd())
BUILD = os.environ.get("KVMM_BUILD", os.path.join(REPO, "build", "release"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from kvmmtest import Qmp, pss_kib  # noqa: E402  (the repo's QMP client and PSS reader)
from driver_common import Console, meminfo  # noqa: E402

RUNS = int(os.environ.get("RUNS", "1"))
CONFIGS = os.environ.get("CONFIGS", "kvmm-free,kvmm-limit,qemu-free,kvmtool-free").split(",")
WSS_SECONDS = int(os.environ.get("WSS_SECONDS", "60"))
# wss steps in a row: the first ones bring back what the reclaimer took during the fill (the hot set
# is written first, so it is the coldest when the fill ends); the last one is the steady state.
WSS_STEPS = int(os.environ.get("WSS_STEPS", "8"))
SIZE = os.environ.get("SIZE", "1800M")
RAM_MB = int(os.environ.get("RAM_MB", "2048"))
LIMIT = os.environ.get("LIMIT", "1G")
HOT = int(os.environ.get("HOT", "20"))
SHARE = os.environ.get("SHARE", "off")
SWAPDIR = os.environ.get("SWAPDIR", "auto")  # auto: /var/tmp if both files fit there, else build/bench/swap
SWAPSIZE = os.environ.get("SWAPSIZE", "")  # FILE,size=SWAPSIZE when set (part 2's --mem-swap syntax)
GUESTS = 2
PATTERN = "text:60,random:20,zero:20"
SAMPLE = 1.0
TIMEOUT = float(os.environ.get("TIMEOUT_RUN", "3000"))  # s from start to both guests' exit
PROGRESS = 30.0  # s between progress lines in the log
MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")
TMP = tempfile.mkdtemp(prefix="bench-overcommit-")
LIVE = sys.argv[1] + ".live" if len(sys.argv) > 1 else os.devnull
TEST_GUEST = os.path.join(BUILD, "guest", "test-guest.bzImage")


def append(seed):
    return (f"test=fill{',wss' * WSS_STEPS},verify size={SIZE} hot={HOT} seconds={WSS_SECONDS} pattern={PATTERN} "
            f"seed={seed}")


# --- kvmm's interface (issue text, include/kvmm/mem.h; fix here if kvmm differs) ---
KVMM = os.path.join(BUILD, "kvmm")
KVMM_QUERY = "x-kvmm-query-memory"
# Figures plotted and summed from the query (bytes, or page counts for the traffic counters). The
# names are the issue's; query_pick() also accepts underscores.
KVMM_LEVELS = ("consumed", "compressed", "swapped", "zero", "compress-cache")
KVMM_TRAFFIC = ("swap-out", "swap-in", "compress-out", "compress-in")


def kvmm_command(sock, seed, limited, swapfile):
    cmd = [KVMM, "run", "-m", f"{RAM_MB}M", "--cpus", "1", "--kernel", TEST_GUEST, "--append", append(seed),
           "--qmp", f"unix:{sock}", "--mem-share", SHARE, "--mem-stats-interval", "10"]
    if limited:
        cmd += ["--mem-limit", LIMIT, "--mem-swap", swapfile + (f",size={SWAPSIZE}" if SWAPSIZE else "")]
    return cmd


def query_pick(ret, name):
    for k in (name, name.replace("-", "_")):
        if k in ret:
            return ret[k]
    return None
# --- end of kvmm's interface ---


def kvmtool_path():
    p = os.environ.get("KVMM_KVMTOOL") or os.path.join(os.environ.get("KVMM_TESTHOST_CACHE", ""), "peers",
                                                        "lkvm-static")
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


def log(msg):
    print(f"overcommit: {msg}", flush=True)


def stat_cpu(path):
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def threads_cpu(pid):
    """{comm: CPU seconds} over the process's threads (threads of one name summed)."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            comm = open(task + "/comm").read().strip()
        except OSError:
            continue
        comm = re.sub(r"\d+$", "N", comm)
        out[comm] = round(out.get(comm, 0.0) + stat_cpu(task + "/stat"), 2)
    return out


def timed(fn, timeout=5.0):
    """fn() in a helper thread; None if it does not return within timeout (reading smaps_rollup
    waits for the process's mmap lock, which a stuck VMM may hold)."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


def diagnose(g):
    """Where the VMM's threads are: comm, state, wchan and kernel stack of each."""
    lines = []
    for task in sorted(glob.glob(f"/proc/{g.proc.pid}/task/*")):
        try:
            comm = open(task + "/comm").read().strip()
            state = open(task + "/stat").read().rsplit(")", 1)[1].split()[0]
            wchan = open(task + "/wchan").read().strip()
            stack = timed(lambda: open(task + "/stack").read(), 2.0) or "?"
            top = " < ".join(x.split()[-1].split("+")[0] for x in stack.strip().splitlines()[:6])
        except OSError:
            continue
        lines.append(f"{comm} {state} {wchan} [{top}]")
    return "; ".join(lines)


class Guest(Console):
    """One VMM process and its console (kvmtool gets a pty: it reads console input only from a terminal)."""

    def __init__(self, vmm, limited, idx, seed):
        self.vmm, self.idx, self.limited = vmm, idx, limited
        self.name = f"oc{os.getpid()}g{idx}"
        self.sock = os.path.join(TMP, self.name + ".qmp")
        self.swapfile = os.path.join(SWAPDIR, f"kvmm-overcommit-{os.getpid()}-{idx}.swap")
        if os.path.exists(self.swapfile):
            os.unlink(self.swapfile)
        self.errf = open(os.path.join(TMP, f"{self.name}.stderr"), "w+b")
        env = dict(os.environ, HOME=TMP)  # kvmtool keeps its control sockets in $HOME/.lkvm
        if vmm == "kvmm":
            cmd = kvmm_command(self.sock, seed, limited, self.swapfile)
        elif vmm == "qemu":
            cmd = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(RAM_MB), "-smp", "1",
                   "-name", f"{self.name},debug-threads=on", "-nodefaults", "-no-user-config", "-display", "none",
                   "-no-reboot", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                   "-qmp", f"unix:{self.sock},server=on,wait=off", "-kernel", TEST_GUEST, "-append", append(seed)]
        else:
            cmd = [kvmtool_path(), "run", "--name", self.name, "-m", str(RAM_MB), "-c", "1", "--network", "mode=none",
                   "-k", TEST_GUEST, "-p", append(seed)]
        self.cmd = cmd
        self.t_start = time.monotonic()
        if vmm == "kvmtool":
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=self.errf, env=env,
                                         start_new_session=True)
            os.close(slave)
            self.fd = master
        else:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf, env=env)
            self.fd = self.proc.stdout.fileno()
        self.console_start(self.fd)
        self.qmp = None
        self.threads = {}  # CPU seconds per thread name, at the last sample

    def query(self):
        if self.vmm != "kvmm":
            return None
        try:
            if self.qmp is None:
                if not os.path.exists(self.sock):
                    return None
                self.qmp = Qmp(self.sock, timeout=10)
            r = self.qmp.cmd(KVMM_QUERY)
        except (OSError, ValueError) as e:
            self.qmp = None
            return {"error": str(e)[:200]}
        if r is None or "return" not in r:
            return {"error": json.dumps((r or {}).get("error", r))[:200]}
        ret = dict(r["return"])
        ret.pop("features", None)
        return ret

    def stderr_tail(self):
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")[-800:].replace("\n", " | ")

    def stop(self):
        if self.qmp:
            try:
                self.qmp.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=20)  # the guest exits by itself after its verify
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.vmm == "kvmtool":
            os.close(self.fd)
        else:
            self.proc.stdout.close()
        self.errf.close()
        if os.path.exists(self.swapfile):
            os.unlink(self.swapfile)


def run_config(config, run):
    vmm, mode = config.split("-", 1)
    limited = mode == "limit"
    mi0 = meminfo()
    guests = [Guest(vmm, limited, i, seed=i + 1) for i in range(GUESTS)]
    t0 = min(g.t_start for g in guests)
    samples = []
    next_sample = t0
    next_progress = t0 + PROGRESS
    timed_out = False
    try:
        deadline = t0 + TIMEOUT
        while not all(g.done() for g in guests):
            now = time.monotonic()
            if now > deadline:
                # The figures so far are kept; the rows say the run timed out.
                for g in guests:
                    if g.proc.poll() is None:
                        log(f"{config} guest {g.idx} at the time-out: {diagnose(g)}; stderr ...{g.stderr_tail()[-400:]}")
                timed_out = True
                break
            if now >= next_progress and samples:
                next_progress += PROGRESS
                for g in guests:
                    gs = samples[-1]["g"][g.idx]
                    q = gs.get("q") or {}
                    stuck = gs.get("pss_stuck")
                    log(f"  t={samples[-1]['t']:.0f} s guest {g.idx}: PSS {gs.get('pss_mib')} MiB" +
                        (" (smaps_rollup stuck: " + diagnose(g) + ")" if stuck else "") +
                        "".join(f", {k} {query_pick(q, k) // MiB if k in KVMM_LEVELS else query_pick(q, k)}"
                                for k in KVMM_LEVELS + KVMM_TRAFFIC if query_pick(q, k) is not None) +
                        f"; console: {g.lines[-1][1][:100] if g.lines else '-'}")
            if now >= next_sample:
                next_sample += SAMPLE
                mi = meminfo()
                s = {"t": round(now - t0, 2), "avail_mib": round(mi["MemAvailable"] / 1024, 1),
                     "free_mib": round(mi["MemFree"] / 1024, 1), "cached_mib": round(mi.get("Cached", 0) / 1024, 1),
                     "g": []}
                for g in guests:
                    gs = {}
                    if g.proc.poll() is None:
                        try:
                            pss = timed(lambda g=g: pss_kib(g.proc.pid))
                            if pss is not None:
                                gs["pss_mib"] = round(pss / 1024, 1)
                            else:
                                gs["pss_stuck"] = True
                        except OSError:
                            pass
                        gs["cpu"] = round(stat_cpu(f"/proc/{g.proc.pid}/stat"), 2)
                        g.threads = threads_cpu(g.proc.pid) or g.threads
                        if len(samples) % 5 == 0:
                            gs["threads"] = g.threads
                        q = g.query()
                        if q is not None:
                            gs["q"] = q
                    s["g"].append(gs)
                samples.append(s)
                if len(samples) % 10 == 0:  # for a look while it runs, or after a crash
                    with open(LIVE, "w") as f:
                        f.write(json.dumps({"config": config, "run": run, "samples": samples}) + "\n")
            fds = [g.fd for g in guests if not g.eof]
            if not fds:
                time.sleep(0.05)
                continue
            r, _, _ = select.select(fds, [], [], max(0.0, min(next_sample - time.monotonic(), 0.2)))
            for g in guests:
                if g.fd in r and not g.eof:
                    g.read()
        t_end = time.monotonic()
        rows = []
        for g in guests:
            cpu_threads = (threads_cpu(g.proc.pid) if g.proc.poll() is None else {}) or g.threads
            fill = g.find(r"^KVMM test=fill pages=(\d+) zero=(\d+) dup=(\d+) random=(\d+) text=(\d+)")
            wss_all = [(t, m) for t, line in g.lines
                       for m in [re.search(r"^KVMM test=wss hot_pages=(\d+) passes=(\d+) pages_per_sec=(\d+)", line)] if m]
            wss = wss_all[-1] if len(wss_all) == WSS_STEPS else None  # the last step: the steady state
            banner = g.find(r"^KVMM guest=test event=banner")
            verifies = [int(m.group(1)) for _, line in g.lines
                        for m in [re.search(r"^KVMM test=verify pages=\d+ mismatches=(\d+)", line)] if m]
            row = {"config": config, "vmm": vmm, "limited": limited, "run": run, "guest": g.idx,
                   "cmd": " ".join(g.cmd[1:]) if vmm != "kvmtool" else " ".join(g.cmd[1:]),
                   "t_banner": banner and round(banner[0] - t0, 2), "t_fill": fill and round(fill[0] - t0, 2),
                   "t_wss": wss and round(wss[0] - t0, 2), "t_end": round(t_end - t0, 2),
                   "pages_per_sec": wss and int(wss[1].group(3)), "hot_pages": wss and int(wss[1].group(1)),
                   "passes": wss and int(wss[1].group(2)), "verifies": len(verifies), "mismatches": sum(verifies),
                   "wss_steps": [{"t": round(t - t0, 2), "pages_per_sec": int(m.group(3)), "passes": int(m.group(2))}
                                 for t, m in wss_all],
                   "pages_per_sec_first": int(wss_all[0][1].group(3)) if wss_all else None,
                   "pages_per_sec_mean": (round(sum(int(m.group(3)) for _, m in wss_all) / len(wss_all))
                                          if len(wss_all) == WSS_STEPS else None),
                   "timed_out": timed_out,
                   "exit_status": g.exit_status, "vmm_exit": g.proc.poll(), "threads_cpu": cpu_threads,
                   "guest_errors": [line for _, line in g.lines if "error=" in line or line.startswith("KVMM mismatch")][:5]}
            last_q = [s["g"][g.idx]["q"] for s in samples if "q" in s["g"][g.idx] and "error" not in s["g"][g.idx]["q"]]
            if last_q:
                row["query_end"] = last_q[-1]
                row["peak"] = {k: max(query_pick(q, k) for q in last_q if query_pick(q, k) is not None)
                               for k in KVMM_LEVELS if any(query_pick(q, k) is not None for q in last_q)}
            pss = [s["g"][g.idx].get("pss_mib") for s in samples if s["g"][g.idx].get("pss_mib") is not None]
            row["pss_peak_mib"] = max(pss) if pss else None
            # PSS while the guest ran wss: from its fill line to its last wss line.
            if fill and wss_all:
                w = [s["g"][g.idx].get("pss_mib") for s in samples
                     if fill[0] - t0 <= s["t"] <= wss_all[-1][0] - t0 and s["g"][g.idx].get("pss_mib") is not None]
                row["pss_wss_max_mib"] = max(w) if w else None
                row["pss_wss_mean_mib"] = round(sum(w) / len(w), 1) if w else None
            if timed_out:
                row["error"] = f"time-out after {TIMEOUT:.0f} s: {len(wss_all)} of {WSS_STEPS} wss steps, " \
                               f"{len(verifies)} verifies; console ...{' | '.join(x for _, x in g.lines[-2:])[-200:]}"
            elif not wss:
                row["error"] = f"{len(wss_all)} of {WSS_STEPS} wss lines; exit {g.proc.poll()}; stderr ...{g.stderr_tail()[-300:]}; " \
                               f"console ...{' | '.join(x for _, x in g.lines[-4:])[-300:]}"
            elif not verifies or sum(verifies) or g.exit_status not in (0, None) or row["guest_errors"]:
                row["error"] = f"verify: {sum(verifies)} mismatches over {len(verifies)} verifies, exit status " \
                               f"{g.exit_status}; {row['guest_errors'][:3]}"
            rows.append(row)
        meta = {"meta": 1, "config": config, "run": run, "memavail_before_mib": round(mi0["MemAvailable"] / 1024, 1),
                "stderr": [g.stderr_tail()[-400:] for g in guests]}
        return rows, {"curve": 1, "config": config, "run": run, "samples": samples}, meta
    finally:
        for g in guests:
            g.stop()


def size_bytes(s):
    return int(s[:-1]) << {"K": 10, "M": 20, "G": 30, "T": 40}[s[-1].upper()] if s[-1].isalpha() else int(s)


def pick_swapdir():
    """/var/tmp (the test host's root file system, ext4 on virtio-blk) when both swap files fit there
    (kvmm preallocates them: SWAPSIZE, else the guest's memory), else build/bench/swap in the repo
    (virtiofs: a file on the outer machine's disk through virtiofsd)."""
    need = GUESTS * (size_bytes(SWAPSIZE) if SWAPSIZE else RAM_MB * MiB) + 64 * MiB
    st = os.statvfs("/var/tmp")
    if st.f_bavail * st.f_frsize >= need:
        return "/var/tmp"
    d = os.path.join(REPO, "build", "bench", "swap")
    os.makedirs(d, exist_ok=True)
    return d


def main():
    global SWAPDIR
    if SWAPDIR == "auto":
        SWAPDIR = pick_swapdir()
    # Swap files an earlier, killed run left behind (kvmm deletes its own when it exits).
    for old in glob.glob(os.path.join(SWAPDIR, "kvmm-overcommit-*.swap")):
        log(f"removing {old}, left by an earlier run")
        os.unlink(old)
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    st = os.statvfs(SWAPDIR)
    fs = subprocess.run(["stat", "-f", "-c", "%T", SWAPDIR], capture_output=True, text=True).stdout.strip()
    log(f"test host: THP {thp}, {os.cpu_count()} CPUs, MemAvailable {meminfo()['MemAvailable'] // 1024} MiB; "
        f"swap dir {SWAPDIR} ({fs}, {st.f_bavail * st.f_frsize // MiB} MiB free); guests: {append('N')}")
    global TEST_GUEST
    TEST_GUEST = shutil.copy(TEST_GUEST, TMP)
    configs = list(CONFIGS)
    if any(c.startswith("kvmtool") for c in configs) and not kvmtool_path():
        log("kvmtool not found (set KVMM_KVMTOOL or put lkvm-static in the test host cache's peers/); skipped")
        configs = [c for c in configs if not c.startswith("kvmtool")]
    out = [{"meta": 1, "setup": {"thp": thp, "cpus": os.cpu_count(), "swapdir": SWAPDIR, "swapfs": fs,
                                 "swapdir_free_mib": st.f_bavail * st.f_frsize // MiB, "ram_mb": RAM_MB, "size": SIZE,
                                 "limit": LIMIT, "hot": HOT, "wss_seconds": WSS_SECONDS, "wss_steps": WSS_STEPS, "share": SHARE,
                                 "pattern": PATTERN, "memtotal_mib": meminfo()["MemTotal"] // 1024,
                                 "append": append("N")}}]
    try:
        for i in range(RUNS):
            for config in configs:
                log(f"{config} run {i}: starting {GUESTS} guests")
                try:
                    rows, curve, meta = run_config(config, i)
                except (RuntimeError, OSError) as e:
                    log(f"{config} run {i}: FAILED: {e}")
                    out.append({"config": config, "run": i, "error": str(e)[:600]})
                else:
                    for r in rows:
                        log(f"{config} run {i} guest {r['guest']}: fill at {r['t_fill']} s, wss "
                            f"{[x['pages_per_sec'] for x in r['wss_steps']]} pages/s, PSS peak {r['pss_peak_mib']} MiB, during wss max "
                            f"{r.get('pss_wss_max_mib')} MiB, {r['verifies']} verifies / {r['mismatches']} "
                            f"mismatches, exit {r['exit_status']}" + (f"; ERROR {r['error']}" if "error" in r else ""))
                        if "query_end" in r:
                            log(f"  kvmm at the end: " + ", ".join(
                                f"{k} {v}" for k, v in r["query_end"].items() if not isinstance(v, (dict, list))))
                    out += rows + [curve, meta]
                with open(sys.argv[1], "w") as f:
                    for r in out:
                        f.write(json.dumps(r) + "\n")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
