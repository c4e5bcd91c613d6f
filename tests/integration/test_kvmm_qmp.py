#!/usr/bin/env python3
"""QMP on `kvmm run --qmp unix:PATH` with the test guest: QEMU's greeting and negotiation, its error
classes for bad input, query-status / stop / cont with STOP and RESUME events reaching a second
client, query-cpus-fast (real vCPU thread ids), query-memory-size-summary, the `kvmm qmp` client,
and quit (SHUTDOWN event, exit status 0, socket removed)."""
import json
import os
import socket
import stat
import subprocess
import tempfile
import time
from kvmmtest import KVMM, TEST_GUEST, Qmp, Vm, check, finish

tmp = tempfile.mkdtemp()
sock = os.path.join(tmp, "qmp.sock")


vm = Vm(["--cpus", "2", "-m", "256M", "--qmp", f"unix:{sock}", "--kernel", TEST_GUEST,
         "--append", "test=fill,idle:600,verify size=32M seed=3"], timeout=300)
check(vm.expect("KVMM test=fill"), "the test guest filled its pages")
check(os.path.exists(sock) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600, "socket exists, mode 0600")

a = Qmp(sock, negotiate=False)
greeting = a.msg()
check(greeting is not None and "QMP" in greeting and "version" in greeting["QMP"]
      and greeting["QMP"]["capabilities"] == [], f"QEMU-style greeting: {greeting}")
r = a.cmd("query-status")
check(r and r.get("error", {}).get("class") == "CommandNotFound", "commands before negotiation refused")
check(a.cmd("qmp_capabilities") == {"return": {}}, "qmp_capabilities")
r = a.cmd("no-such-command", id_="x1")
check(r and r["error"]["class"] == "CommandNotFound" and r.get("id") == "x1",
      f"unknown command: CommandNotFound with the id echoed ({r})")
a.send_raw(b'{"execute": ')
a.send_raw(b'}\n')
r = a.reply()
check(r and r["error"]["class"] == "GenericError", f"malformed JSON: GenericError ({r})")
r = a.cmd("stop", {"bogus": 1})
check(r and r["error"]["class"] == "GenericError" and "bogus" in r["error"]["desc"],
      f"unexpected argument refused ({r})")
a.send_raw(b'[1, 2]')
r = a.reply()
check(r and r["error"]["class"] == "GenericError", f"non-object input: GenericError ({r})")

b = Qmp(sock, negotiate=False)
b.msg()
b.cmd("qmp_capabilities")

r = a.cmd("query-status")
check(r and r["return"]["running"] is True and r["return"]["status"] == "running", f"running ({r})")
check(a.cmd("stop") == {"return": {}}, "stop")
check(b.event("STOP") is not None, "STOP event reaches the second client")
r = a.cmd("query-status")
check(r and r["return"]["status"] == "paused" and r["return"]["running"] is False, f"paused ({r})")
check(a.cmd("cont") == {"return": {}}, "cont")
e = b.event("RESUME")
check(e is not None and "seconds" in e.get("timestamp", {}), f"RESUME event with a timestamp ({e})")

r = a.cmd("query-cpus-fast")
cpus = r["return"] if r and "return" in r else []
tids = {int(t) for t in os.listdir(f"/proc/{vm.proc.pid}/task")}
check(len(cpus) == 2 and [c["cpu-index"] for c in cpus] == [0, 1], f"query-cpus-fast lists 2 vCPUs ({cpus})")
check(all(c["thread-id"] in tids for c in cpus), "their thread ids are kvmm's threads")
r = a.cmd("query-memory-size-summary")
check(r and r["return"].get("base-memory") == 256 << 20, f"base-memory is -m ({r})")

out = subprocess.run([KVMM, "qmp", sock, "query-status"], capture_output=True, text=True, timeout=60)
check(out.returncode == 0 and json.loads(out.stdout).get("status") == "running",
      f"kvmm qmp SOCKET query-status ({out.returncode}: {out.stdout!r} {out.stderr!r})")
out = subprocess.run([KVMM, "qmp", sock, "frobnicate"], capture_output=True, text=True, timeout=60)
check(out.returncode == 1 and "CommandNotFound" in out.stderr, f"kvmm qmp: an error reply is exit 1 ({out.stderr!r})")
out = subprocess.run([KVMM, "qmp", sock, "stop", "not json"], capture_output=True, text=True, timeout=60)
check(out.returncode == 2 and "JSON object" in out.stderr, f"kvmm qmp: bad arguments are exit 2 ({out.stderr!r})")
out = subprocess.run([KVMM, "qmp", os.path.join(tmp, "none.sock"), "query-status"], capture_output=True,
                     text=True, timeout=60)
check(out.returncode == 2 and "none.sock" in out.stderr, f"kvmm qmp: no socket is exit 2 ({out.stderr!r})")

check(a.cmd("quit") == {"return": {}}, "quit")
e = b.event("SHUTDOWN")
check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-quit"}, f"SHUTDOWN event ({e})")
status = vm.wait()
check(status == 0, f"kvmm exits 0 after quit (got {status})")
check(not os.path.exists(sock), "the socket is removed at exit")
finish()
