#!/usr/bin/env python3
# kvmm-test-host: one-cpu
"""kvmm as kvmm-qemu-system-x86_64, driven the way libvirt 9.0 drives QEMU (../shared/libvirt/):
the capability probe (-machine none, -daemonize, -pidfile, -qmp unix:) answering qmp_capabilities
and going away on SIGTERM; a probe whose monitor is a socketpair end passed as fd=N; bad command
lines (exit 1, QEMU-style message); then a Linux domain with libvirt's command line: the monitor an
inherited listening socket (-chardev socket,fd=N + -mon), the serial an -add-fd fd (/dev/fdset/0),
-S then QMP cont (RESUME, the guest boots into the file), -daemonize + -pidfile, -no-shutdown (the
guest's power-off gives SHUTDOWN + STOP and the process stays; query-status prelaunch / running /
shutdown, cont refused after the power-off), SIGTERM (SHUTDOWN reason host-signal, pidfile
removed). Then a second domain: the balloon's -device id as its QOM path, query-chardev labels, a
serial file truncated without append=on, set-action reboot=shutdown on a guest reset."""
import os
import signal
import socket
import subprocess
import tempfile
import time
from kvmmtest import BUILD, GUEST_INITRD, GUEST_KERNEL, Qmp, check, finish

FRONT = os.path.join(BUILD, "kvmm-qemu-system-x86_64")
tmp = tempfile.mkdtemp()


def wait_gone(pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


def wait_for_text(path, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if text in f.read():
                return True
        time.sleep(0.5)
    return False


# --- the capability probe, as libvirt runs it (once with kvm, once with tcg) ----------------------
for accel in ("kvm:tcg", "tcg"):
    sock, pidfile = os.path.join(tmp, "probe.sock"), os.path.join(tmp, "probe.pid")
    p = subprocess.run([FRONT, "-S", "-no-user-config", "-nodefaults", "-nographic", "-machine",
                        f"none,accel={accel}", "-qmp", f"unix:{sock},server=on,wait=off",
                        "-pidfile", pidfile, "-daemonize"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, f"probe accel={accel}: the daemonizing parent exits 0 ({p.stderr.strip()})")
    check(os.path.exists(sock) and os.path.exists(pidfile),
          f"probe accel={accel}: QMP socket and pidfile exist when the parent exits")
    pid = read_pid(pidfile)
    q = Qmp(sock, negotiate=False)
    greeting = q.msg()
    check(greeting is not None and "QMP" in greeting, f"probe: QMP greeting {greeting}")
    check(q.cmd("qmp_capabilities") == {"return": {}}, "probe: qmp_capabilities")
    r = q.cmd("query-version")
    check(r is not None and "qemu" in r.get("return", {}), f"probe: query-version ({r})")
    q.close()
    os.kill(pid, signal.SIGTERM)
    check(wait_gone(pid), f"probe accel={accel}: ends on SIGTERM")
    check(not os.path.exists(sock) and not os.path.exists(pidfile),
          f"probe accel={accel}: socket and pidfile removed")

# A monitor on a socketpair end passed as fd=N (a connected socket, not a listening one).
mine, theirs = socket.socketpair()
p = subprocess.Popen([FRONT, "-machine", "none", "-chardev",
                      f"socket,id=mon,fd={theirs.fileno()},server=on,wait=off", "-mon",
                      "chardev=mon,mode=control"], pass_fds=[theirs.fileno()])
theirs.close()
mine.settimeout(20)
buf = b""
while b"\n" not in buf:
    chunk = mine.recv(4096)
    if not chunk:
        break
    buf += chunk
check(b'"QMP"' in buf, "probe on a socketpair fd: greeting")
mine.sendall(b'{"execute": "qmp_capabilities"}\n')
buf = mine.recv(4096)
check(b'"return"' in buf, f"probe on a socketpair fd: qmp_capabilities ({buf!r})")
mine.close()
p.send_signal(signal.SIGTERM)
check(p.wait(timeout=20) == 0, "probe on a socketpair fd: exits 0 on SIGTERM")

# --- bad command lines: exit 1 and one line libvirt can show ---------------------------------------
for args, want in ((["-foo"], "-foo: option not supported by kvmm"),
                   (["-machine", "pc", "-kernel", GUEST_KERNEL, "-device", "virtio-net-pci"],
                    "kvmm: device 'virtio-net-pci' is not supported"),
                   (["-machine", "pc", "-kernel", GUEST_KERNEL, "-add-fd", "set=0,fd=77"],
                    "fd 77 is not an open file descriptor"),
                   (["-machine", "pc", "-kernel", "/no/such/kernel"], "/no/such/kernel")):
    p = subprocess.run([FRONT] + args, capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and want in p.stderr, f"{args}: exit 1 and '{want}' ({p.returncode}, {p.stderr.strip()})")

# --- a Linux domain with libvirt's command line ---------------------------------------------------
mon_path = os.path.join(tmp, "monitor.sock")
serial_log = os.path.join(tmp, "serial.log")
pidfile = os.path.join(tmp, "domain.pid")
lsock = socket.socket(socket.AF_UNIX)
lsock.bind(mon_path)
lsock.listen(4)
serial_fd = os.open(serial_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
mon_fd = lsock.fileno()
cmd = [FRONT, "-name", "guest=front,debug-threads=on", "-S",
       "-object", '{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/nonexistent"}',
       "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
       "-accel", "kvm", "-cpu", "host,migratable=on", "-m", "256",
       "-object", '{"qom-type":"memory-backend-ram","id":"pc.ram","size":268435456}',
       "-overcommit", "mem-lock=off", "-smp", "1,sockets=1,cores=1,threads=1",
       "-uuid", "f8d8d76d-74bc-408e-aec1-477586e098c2", "-display", "none", "-no-user-config",
       "-nodefaults", "-chardev", f"socket,id=charmonitor,fd={mon_fd},server=on,wait=off",
       "-mon", "chardev=charmonitor,id=monitor,mode=control", "-rtc", "base=utc", "-no-shutdown",
       "-boot", "strict=on", "-kernel", GUEST_KERNEL, "-initrd", GUEST_INITRD,
       "-append", "console=ttyS0 panic=-1",
       "-device", '{"driver":"piix3-usb-uhci","id":"usb","bus":"pci.0","addr":"0x1.0x2"}',
       "-add-fd", f"set=0,fd={serial_fd},opaque=serial0-source",
       "-chardev", "file,id=charserial0,path=/dev/fdset/0,append=on",
       "-device", '{"driver":"isa-serial","chardev":"charserial0","id":"serial0","index":0}',
       "-audiodev", '{"id":"audio1","driver":"none"}',
       "-device", '{"driver":"virtio-balloon-pci","id":"balloon0","bus":"pci.0","addr":"0x2"}',
       "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
       "-msg", "timestamp=on", "-pidfile", pidfile, "-daemonize"]
p = subprocess.run(cmd, pass_fds=[mon_fd, serial_fd], capture_output=True, text=True, timeout=120)
lsock.close()
os.close(serial_fd)
check(p.returncode == 0, f"domain: the daemonizing parent exits 0 ({p.stderr.strip()})")
check(os.path.exists(pidfile), "domain: pidfile written")
pid = read_pid(pidfile)
q = Qmp(mon_path)
r = q.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "prelaunch"},
      f"domain: -S starts in QEMU's prelaunch ({r})")
r = q.cmd("query-chardev")
check(r and [c["label"] for c in r["return"]] == ["charserial0", "charmonitor"]
      and r["return"][1]["filename"] == f"unix:{mon_path},server=on",
      f"domain: query-chardev by the front's chardev ids ({r})")
time.sleep(2)
with open(serial_log, errors="replace") as f:
    check("Linux version" not in f.read(), "domain: nothing boots before cont")
check(q.cmd("cont") == {"return": {}}, "domain: cont")
check(q.event("RESUME", timeout=10) is not None, "domain: RESUME event")
r = q.cmd("query-status")
check(r and r["return"] == {"running": True, "status": "running"}, f"domain: running after cont ({r})")
check(wait_for_text(serial_log, "KVMM guest=linux event=init", 240),
      "domain: the guest booted, its console in the -add-fd file")
with open(serial_log, errors="replace") as f:
    check("Linux version" in f.read(), "domain: the kernel's banner is in the serial file")

# -no-shutdown: the guest's power-off (ACPI power button -> acpid -> poweroff) pauses the VM.
check(q.cmd("system_powerdown") == {"return": {}}, "domain: system_powerdown")
e = q.event("SHUTDOWN", timeout=120)
check(e is not None and e["data"] == {"guest": True, "reason": "guest-shutdown"},
      f"domain: SHUTDOWN from the guest ({e})")
check(q.event("STOP", timeout=30) is not None, "domain: then STOP (-no-shutdown)")
time.sleep(1)
check(not wait_gone(pid, timeout=1), "domain: the process stays after the guest's power-off")
r = q.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "shutdown"},
      f"domain: QEMU's shutdown run state after the power-off ({r})")
r = q.cmd("cont")
check(r and r.get("error") == {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"},
      f"domain: cont after the power-off is refused as QEMU refuses it ({r})")

# virsh destroy: SIGTERM.
os.kill(pid, signal.SIGTERM)
e = q.event("SHUTDOWN", timeout=30)
check(e is not None and e["data"] == {"guest": False, "reason": "host-signal"},
      f"domain: SIGTERM gives SHUTDOWN host-signal ({e})")
check(wait_gone(pid), "domain: the process ends on SIGTERM")
check(not os.path.exists(pidfile), "domain: pidfile removed")
q.close()

# --- a second domain: ids, a truncated serial file, set-action ----------------------------------
# The balloon under its own -device id, the serial to a path without append=on (QEMU truncates),
# -qmp's chardev (QEMU's compat_monitor0). The kernel finds no init and panics; panic=-1 makes it
# reset at once: with set-action reboot=shutdown (libvirt's on_reboot='destroy') and -no-shutdown
# that is SHUTDOWN guest-reset and STOP, status shutdown; with the reboot action back to reset, a
# system_reset leaves it in prelaunch and cont runs it again, and its next panic reboots in place.
qmp_path = os.path.join(tmp, "qmp2.sock")
serial2 = os.path.join(tmp, "serial2.log")
with open(serial2, "w") as f:
    f.write("stale output from an earlier run\n")
p = subprocess.Popen([FRONT, "-S", "-no-shutdown", "-machine", "pc,hpet=off", "-m", "256",
                      "-qmp", f"unix:{qmp_path},server=on,wait=off", "-kernel", GUEST_KERNEL,
                      "-initrd", GUEST_INITRD, "-append", "console=ttyS0 panic=-1 rdinit=/no/such/init",
                      "-chardev", f"file,id=ser0,path={serial2}", "-device", "isa-serial,chardev=ser0",
                      "-device", "virtio-balloon-pci,id=membal"],
                     stdout=open(os.path.join(tmp, "domain2.log"), "w"), stderr=subprocess.STDOUT)
deadline = time.monotonic() + 60
while not os.path.exists(qmp_path) and time.monotonic() < deadline and p.poll() is None:
    time.sleep(0.2)
q = Qmp(qmp_path)
with open(serial2) as f:
    check(f.read() == "", "second domain: the serial file without append=on is truncated")
r = q.cmd("qom-list", {"path": "/machine/peripheral"})
check(r and {"name": "membal", "type": "child<virtio-balloon-pci>"} in r["return"],
      f"second domain: the balloon under its -device id ({r})")
r = q.cmd("qom-get", {"path": "/machine/peripheral/membal", "property": "guest-stats-polling-interval"})
check(r and r.get("return") == 0, f"second domain: /machine/peripheral/membal answers ({r})")
r = q.cmd("qom-get", {"path": "/machine/peripheral/balloon0", "property": "type"})
check(r and r.get("error", {}).get("class") == "DeviceNotFound", f"second domain: no balloon0 ({r})")
r = q.cmd("query-chardev")
check(r and [c["label"] for c in r["return"]] == ["ser0", "compat_monitor0"],
      f"second domain: chardev labels ({r})")
check(q.cmd("set-action", {"reboot": "shutdown"}) == {"return": {}}, "second domain: set-action reboot=shutdown")
check(q.cmd("cont") == {"return": {}}, "second domain: cont")
e = q.event("SHUTDOWN", timeout=240)
check(e is not None and e["data"] == {"guest": True, "reason": "guest-reset"},
      f"second domain: the guest's reset is a SHUTDOWN guest-reset ({e})")
check(q.event("STOP", timeout=30) is not None, "second domain: then STOP (-no-shutdown)")
r = q.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "shutdown"}, f"second domain: status shutdown ({r})")
check(p.poll() is None, "second domain: the process stays")
with open(serial2, errors="replace") as f:
    check("Kernel panic" in f.read(), "second domain: the guest panicked into the serial file")
check(q.cmd("set-action", {"reboot": "reset"}) == {"return": {}}, "second domain: set-action reboot=reset")
check(q.cmd("system_reset") == {"return": {}}, "second domain: system_reset")
check(q.event("RESET", timeout=60) is not None, "second domain: RESET")
r = q.cmd("query-status")
check(r and r["return"] == {"running": False, "status": "prelaunch"}, f"second domain: prelaunch ({r})")
check(q.cmd("cont") == {"return": {}}, "second domain: cont after the reset")
e = q.event("RESET", timeout=240)
check(e is not None and e["data"] == {"guest": True, "reason": "guest-reset"},
      f"second domain: the next panic reboots in place (RESET guest-reset) ({e})")
check(q.cmd("quit") == {"return": {}}, "second domain: quit")
try:
    status = p.wait(timeout=60)
except subprocess.TimeoutExpired:
    p.kill()
    status = p.wait()
check(status == 0, f"second domain: exits 0 after quit ({status})")
q.close()
with open(os.path.join(tmp, "domain2.log"), errors="replace") as f:
    print(f.read())
finish()
