#!/usr/bin/env python3
"""virtio-balloon with Linux's own driver (virtio_pci + virtio_balloon in the Debian cloud kernel):
the guest dirties its free memory, QMP `balloon` inflates it to 512 MiB and kvmm's PSS falls by at
least 90% of the inflated size; BALLOON_CHANGE events reach a second QMP client; guest stats arrive
through qom-get and are refreshed at the polling interval; deflate gives the memory back;
deflate-on-oom lets the guest take pages back under memory pressure; free page reporting releases
freed guest memory without a balloon target, and a file's checksum survives it. 1 vCPU (see
test_kvmm_linux.py for the 2-vCPU test-host flake)."""
import os
import re
import tempfile
import time
from kvmmtest import GUEST_INITRD, GUEST_KERNEL, Qmp, Vm, check, finish, pss_kib

MiB = 1 << 20
RAM = 1024 * MiB
tmp = tempfile.mkdtemp()
sock = os.path.join(tmp, "qmp.sock")
marks = 0


def shell(vm, cmd):
    """Runs cmd at the guest's shell and returns what it printed (None if the shell never came
    back). The end mark is computed by the shell, so the echo of the typed line never matches."""
    global marks
    marks += 1
    start = len(vm.out)
    vm.send(f"{cmd}; echo END$((40+{marks}))END\n")
    if not vm.expect(f"END{40 + marks}END"):
        return None
    return vm.out[start:].decode(errors="replace")


def boot(balloon):
    # Sharing off: the guest is dirtied with zeros (dd), which page sharing would reclaim before
    # the balloon could; this test measures the balloon alone.
    vm = Vm(["-m", "1G", f"--balloon={balloon}", "--mem-share", "off", "--qmp", f"unix:{sock}", "--kernel", GUEST_KERNEL,
             "--initrd", GUEST_INITRD, "--append", "console=ttyS0 panic=-1"], timeout=1800)
    check(vm.expect("/ #"), f"--balloon={balloon}: Linux boots to a shell")
    out = shell(vm, "cat /sys/bus/virtio/devices/virtio0/features; "
                    "basename $(readlink /sys/bus/virtio/devices/virtio0/driver)")
    check(out is not None and "virtio_balloon" in out, "Linux's virtio_balloon driver took the device")
    q = Qmp(sock)
    return vm, q, out or ""


def touch(vm, mib):
    """The guest allocates and writes mib MiB of anonymous memory (dd's buffer), then frees it; the
    MiB dd managed, 0 if it failed (under memory pressure the OOM killer picks dd, not the shell)."""
    return records_out(shell(vm, f"dd if=/dev/zero of=/dev/null bs={mib}M count=1 2>&1")) * mib


def dirty_free_memory(vm, leave_mib=64):
    """Makes the guest write nearly all its free memory, so the host really holds it."""
    out = shell(vm, "echo free_kb=$(awk '/MemFree/ {print $2}' /proc/meminfo)")
    m = re.search(r"^free_kb=(\d+)", out or "", re.M)
    return touch(vm, int(m.group(1)) // 1024 - leave_mib) * MiB if m else 0


def records_out(out):
    """MiB that a `dd bs=1M` wrote, from busybox dd's "N+0 records out"."""
    m = re.search(r"(\d+)\+\d+ records out", out or "")
    return int(m.group(1)) if m else 0


def wait_actual(q, cond, timeout=600):
    """Polls query-balloon until cond(actual); returns the last actual."""
    deadline = time.monotonic() + timeout
    while True:
        actual = q.cmd("query-balloon")["return"]["actual"]
        if cond(actual) or time.monotonic() > deadline:
            return actual
        time.sleep(0.5)


# --- inflate, stats, events, deflate, deflate-on-oom ---
vm, q, features = boot("deflate-on-oom,stats-interval=1")
m = re.search(r"^([01]{64})\r?$", features, re.M)
bits = m.group(1) if m else ""
check(len(bits) == 64 and bits[1] == "1" and bits[2] == "1",
      f"the driver accepted STATS_VQ and DEFLATE_ON_OOM (features {bits})")
r = q.cmd("query-balloon")
check(r.get("return", {}).get("actual") == RAM, f"query-balloon before: the whole 1 GiB ({r})")
watcher = Qmp(sock)

dirtied = dirty_free_memory(vm)
check(dirtied > 700 * MiB, f"the guest dirtied {dirtied // MiB} MiB of its free memory")
pss0 = pss_kib(vm.proc.pid)
r = q.cmd("balloon", {"value": 512 * MiB})
check(r == {"return": {}}, f"balloon 512 MiB accepted ({r})")
actual = wait_actual(q, lambda a: a <= 512 * MiB)
check(actual == 512 * MiB, f"the guest inflated to the target: actual {actual // MiB} MiB")
pss1 = pss_kib(vm.proc.pid)
drop = (pss0 - pss1) * 1024
check(drop >= 0.9 * 512 * MiB,
      f"kvmm's PSS fell by {drop // MiB} MiB for 512 MiB inflated ({pss0 // 1024} -> {pss1 // 1024} MiB)")
info = q.cmd("x-kvmm-query-balloon")["return"]
check(info["inflated-pages"] >= 512 * MiB // 4096 and info["released-ranges"] < info["inflated-pages"],
      f"inflated PFNs were merged into fewer ranges ({info})")

last = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline and (last is None or last["data"]["actual"] != 512 * MiB):
    e = watcher.event("BALLOON_CHANGE", 5)
    last = e or last
check(last is not None and last["data"]["actual"] == 512 * MiB and "seconds" in last["timestamp"],
      f"BALLOON_CHANGE events reached a second client, the last at the target ({last})")

stats = q.cmd("qom-get", {"path": "/machine/peripheral/balloon0", "property": "guest-stats"})["return"]
s = stats["stats"]
check(900 * MiB < s["stat-total-memory"] <= RAM and 0 < s["stat-free-memory"] < 512 * MiB
      and stats["last-update"] > 0, f"guest-stats from the driver ({stats})")
check(all(k in s for k in ("stat-swap-in", "stat-major-faults", "stat-available-memory",
                           "stat-disk-caches", "stat-htlb-pgfail", "stat-oom-kills")),
      "every stat name QEMU reports is there")
time.sleep(3)
again = q.cmd("qom-get", {"path": "balloon0", "property": "guest-stats"})["return"]
check(again["last-update"] > stats["last-update"], "stats are refreshed every second")
r = q.cmd("qom-get", {"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval"})
check(r.get("return") == 1, f"guest-stats-polling-interval reads back ({r})")

r = q.cmd("balloon", {"value": RAM})
actual = wait_actual(q, lambda a: a == RAM)
check(actual == RAM, f"deflate: actual back to {actual // MiB} MiB")
check(touch(vm, 700) == 700, "the guest uses the deflated memory again")

q.cmd("balloon", {"value": 256 * MiB})
low = wait_actual(q, lambda a: a <= 300 * MiB)
check(low <= 300 * MiB, f"inflated towards 256 MiB (actual {low // MiB} MiB)")
took = touch(vm, 600)
after = q.cmd("query-balloon")["return"]["actual"]
check(took == 600 and after > low,
      f"deflate-on-oom: under memory pressure the guest took pages back ({low // MiB} -> {after // MiB} MiB)")
vm.send("poweroff -f\n")
check(vm.wait() == 0, "powered off")

# --- free page reporting ---
vm, q, features = boot("free-page-reporting")
shell(vm, "mkdir -p /mnt && mount -t tmpfs -o size=100% t /mnt")
out = shell(vm, "dd if=/dev/urandom of=/mnt/keep bs=1M count=32 2>/dev/null; md5sum /mnt/keep")
before = re.search(r"([0-9a-f]{32})  /mnt/keep", out or "")
pss0 = pss_kib(vm.proc.pid)
out = shell(vm, "dd if=/dev/zero of=/mnt/f bs=1M count=600 2>&1")
pss1 = pss_kib(vm.proc.pid)
shell(vm, "rm /mnt/f")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    pss2 = pss_kib(vm.proc.pid)
    if (pss1 - pss2) * 1024 >= 0.75 * 600 * MiB:
        break
    time.sleep(1)
info = q.cmd("x-kvmm-query-balloon")["return"]
check((pss1 - pss2) * 1024 >= 0.75 * 600 * MiB,
      f"freed guest memory was reported and released: PSS {pss0 // 1024} -> {pss1 // 1024} -> "
      f"{pss2 // 1024} MiB, {info['reported-pages'] * 4096 // MiB} MiB reported")
out = shell(vm, "md5sum /mnt/keep; dd if=/dev/zero of=/mnt/f bs=1M count=600 2>&1")
after = re.search(r"([0-9a-f]{32})  /mnt/keep", out or "")
check(before is not None and after is not None and before.group(1) == after.group(1),
      "a file written before reporting reads back unchanged")
check(records_out(out) == 600, "reported pages are usable again")
vm.send("poweroff -f\n")
check(vm.wait() == 0, "powered off")
finish()
