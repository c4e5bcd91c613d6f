#!/usr/bin/env python3
"""QMP on `kvmm run --qmp unix:PATH` with the test guest: QEMU's greeting and negotiation, its error
classes for bad input, query-status / stop / cont with STOP and RESUME events reaching a second
client, query-cpus-fast (real vCPU thread ids), query-memory-size-summary, the `kvmm qmp` client,
system_reset (RESET to every client, the guest boots again), system_reset while paused, and quit
(SHUTDOWN event, exit status 0, socket removed); then system_reset under --no-reboot (kvmm exits
with QEMU's SHUTDOWN reason); set-action reboot/shutdown applied at run time (query-status shutdown,
cont refused, reset to prelaunch); then libvirt's probe and domain-start QMP sequences replayed,
query-command-line-options, the balloon's QOM id and chardev labels, and SIGTERM's SHUTDOWN event."""
import json
import os
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
for cmd, args in (("balloon", {"value": 1 << 28}), ("query-balloon", None)):
    r = a.cmd(cmd, args) or {}
    check(r.get("error") == {"class": "DeviceNotActive", "desc": "No balloon device has been activated"},
          f"{cmd} without --balloon: QEMU's DeviceNotActive ({r})")

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

# system_reset: {} at once, RESET to every client, and the guest starts over from its entry point.
check(vm.text().count("KVMM guest=test event=banner") == 1, "one banner so far")
check(a.cmd("system_reset") == {"return": {}}, "system_reset returns {}")
for c, who in ((a, "the client that asked"), (b, "the other client")):
    e = c.event("RESET", 120, vm)
    check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-system-reset"},
          f"RESET event reaches {who} ({e})")
check(vm.expect_count("KVMM guest=test event=banner", 2), "the guest booted again: banner printed twice")
check(vm.expect_count("KVMM test=fill", 2), "and ran its workload again")
r = a.cmd("query-status")
check(r and r["return"]["status"] == "running", f"running after the reset ({r})")
# Reset while paused: the VM is reset and stays paused until cont, as in QEMU.
check(a.cmd("stop") == {"return": {}}, "stop before a reset")
check(a.cmd("system_reset") == {"return": {}}, "system_reset while paused")
e = a.event("RESET", 120, vm)
check(e is not None, f"RESET while paused ({e})")
r = a.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "prelaunch"},
      f"after a reset while paused: prelaunch, as QEMU ({r})")
check(a.cmd("cont") == {"return": {}}, "cont")
check(vm.expect_count("KVMM guest=test event=banner", 3), "the guest booted a third time after cont")

check(a.cmd("quit") == {"return": {}}, "quit")
e = b.event("SHUTDOWN")
check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-quit"}, f"SHUTDOWN event ({e})")
status = vm.wait()
check(status == 0, f"kvmm exits 0 after quit (got {status})")
check(not os.path.exists(sock), "the socket is removed at exit")

# --no-reboot: system_reset stops kvmm instead (QEMU -no-reboot: SHUTDOWN host-qmp-system-reset).
vm = Vm(["-m", "128M", "--no-reboot", "--qmp", f"unix:{sock}", "--kernel", TEST_GUEST,
         "--append", "test=idle:600"], timeout=300)
check(vm.expect("KVMM guest=test event=banner"), "--no-reboot: the guest runs")
a = Qmp(sock)
check(a.cmd("system_reset") == {"return": {}}, "--no-reboot: system_reset returns {}")
e = a.event("SHUTDOWN", 60, vm)
check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-system-reset"},
      f"--no-reboot: SHUTDOWN host-qmp-system-reset ({e})")
status = vm.wait()
check(status == 0, f"--no-reboot: kvmm exits 0 (got {status})")
check("RESET" not in json.dumps(a.events), "--no-reboot: no RESET event")
check(vm.text().count("KVMM guest=test event=banner") == 1, "--no-reboot: the guest did not boot again")

# set-action at run time (libvirt sends reboot=shutdown for on_reboot='destroy'): a reset is then a
# shutdown, as under --no-reboot; with shutdown=pause that shutdown stops the VM instead of ending
# kvmm (-no-shutdown): query-status "shutdown", cont refused as QEMU refuses it; a reset with the
# reboot action back to reset leaves it in prelaunch, and cont boots the guest again.
vm = Vm(["-m", "128M", "--qmp", f"unix:{sock}", "--kernel", TEST_GUEST, "--append", "test=idle:600"],
        timeout=300)
check(vm.expect("KVMM guest=test event=banner"), "set-action: the guest runs")
a = Qmp(sock)
r = a.cmd("set-action", {"reboot": "explode"})
check(r and r.get("error") == {"class": "GenericError",
                               "desc": "Parameter 'reboot' does not accept value 'explode'"},
      f"set-action: a bad value is QEMU's GenericError ({r})")
check(a.cmd("set-action", {"reboot": "shutdown", "shutdown": "pause"}) == {"return": {}},
      "set-action reboot=shutdown shutdown=pause")
check(a.cmd("system_reset") == {"return": {}}, "set-action: system_reset")
e = a.event("SHUTDOWN", 60, vm)
check(e is not None and e["data"] == {"guest": False, "reason": "host-qmp-system-reset"},
      f"set-action reboot=shutdown: SHUTDOWN instead of a reboot ({e})")
check(a.event("STOP", 60, vm) is not None, "set-action shutdown=pause: then STOP")
r = a.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "shutdown"}, f"set-action: status shutdown ({r})")
r = a.cmd("cont")
check(r and r.get("error") == {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"},
      f"set-action: cont after the shutdown is refused as in QEMU ({r})")
check(vm.proc.poll() is None, "set-action: kvmm stays")
check(a.cmd("set-action", {"reboot": "reset"}) == {"return": {}}, "set-action reboot=reset")
check(a.cmd("system_reset") == {"return": {}}, "set-action: system_reset after the shutdown")
e = a.event("RESET", 120, vm)
check(e is not None, f"set-action reboot=reset: RESET ({e})")
r = a.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "prelaunch"}, f"set-action: reset -> prelaunch ({r})")
check(a.cmd("cont") == {"return": {}}, "set-action: cont after the reset")
check(vm.expect_count("KVMM guest=test event=banner", 2), "set-action: the guest boots again")
check(a.cmd("set-action", {"reboot": "shutdown", "shutdown": "poweroff"}) == {"return": {}},
      "set-action reboot=shutdown shutdown=poweroff")
check(a.cmd("system_reset") == {"return": {}}, "set-action: system_reset, poweroff")
status = vm.wait()
check(status == 0, f"set-action shutdown=poweroff: kvmm exits 0 (got {status})")
check(vm.text().count("KVMM guest=test event=banner") == 2, "set-action: no third boot")
# libvirt's own sequences (tests/integration/data/libvirt-qmp-commands.jsonl, recorded from libvirt
# 9.0 driving QEMU 7.2): its capability probe and its domain start up to cont, replayed against a
# VM with a balloon. Every reply must be a return, but for the errors QEMU gives libvirt too:
# DeviceNotFound for devices kvmm has not, GenericError for SEV and SGX.
TOLERATED = {("device-list-properties", "DeviceNotFound"),
             ("query-sev-capabilities", "GenericError"), ("query-sgx-capabilities", "GenericError")}
replay = [json.loads(line) for line in open(os.path.join(os.path.dirname(__file__), "data",
                                                          "libvirt-qmp-commands.jsonl"))
          if not line.startswith("#")]
vm = Vm(["-m", "256M", "--balloon", "--qmp", f"unix:{sock}", "--kernel", TEST_GUEST,
         "--append", "test=idle:600"], timeout=300)
check(vm.expect("KVMM guest=test event=banner"), "libvirt replay: the guest runs")
a = Qmp(sock)
cpu_props, bad = [], []
for c in replay:
    if c["execute"] == "x-replay-cpu-qom-gets":
        todo = [("qom-get", {"path": "/machine/unattached/device[0]", "property": p["name"]})
                for p in cpu_props if p["type"] == "bool" or p["name"] == "unavailable-features"]
    else:
        todo = [(c["execute"], c.get("arguments"))]
    for name, args in todo:
        r = a.cmd(name, args) or {}
        if "return" in r:
            if name == "qom-list" and args["path"].startswith("/machine/unattached/"):
                cpu_props = r["return"]
            continue
        if (name, r.get("error", {}).get("class")) not in TOLERATED:
            bad.append((c["phase"], name, args, r))
check(not bad, f"libvirt replay: every command answered ({len(bad)} not: {bad[:5]})")
check(len(cpu_props) > 100, f"libvirt replay: the vCPU lists its CPUID features ({len(cpu_props)} properties)")
r = a.cmd("query-qmp-schema") or {}
names = {e["name"] for e in r.get("return", [])}
check({"query-qmp-schema", "device_add", "qom-get", "BALLOON_CHANGE", "SHUTDOWN"} <= names,
      "libvirt replay: the schema has kvmm's commands and events")
r = a.cmd("qom-get", {"path": "/machine/unattached/device[0]", "property": "lm"}) or {}
check(r.get("return") is True, f"libvirt replay: the vCPU is 64-bit (lm) as KVM gives it ({r})")
r = a.cmd("query-command-line-options") or {}
opts = {o["option"]: {p["name"] for p in o["parameters"]} for o in r.get("return", [])}
check("hpet" in opts.get("machine", set()) and "append" in opts.get("chardev", set())
      and "sandbox" not in opts, f"query-command-line-options: the front's options, no -sandbox ({sorted(opts)})")
r = a.cmd("qom-list", {"path": "/machine/peripheral"}) or {}
check({"name": "balloon0", "type": "child<virtio-balloon-pci>"} in r.get("return", []),
      f"kvmm run: the balloon is balloon0 ({r})")
r = a.cmd("query-chardev") or {}
check([c["label"] for c in r.get("return", [])] == ["charserial0", "charmonitor"],
      f"kvmm run: query-chardev labels libvirt's names ({r})")
vm.proc.terminate()
e = a.event("SHUTDOWN", 60, vm)
check(e is not None and e["data"] == {"guest": False, "reason": "host-signal"},
      f"libvirt replay: SIGTERM (virsh destroy) gives QEMU's SHUTDOWN host-signal ({e})")
check(vm.wait() == 0, "libvirt replay: kvmm exits 0 on SIGTERM")
finish()
