#!/usr/bin/env bash
# libvirt inside the test host, for test_libvirt.py and bench/libvirt.sh (docs/libvirt.md, "Testing
# with libvirt"). The test host's root file system has Debian 12's libvirt 9.0 (libvirtd with the
# QEMU driver, virsh; no systemd, no virtlogd); this configures it and starts it, once per boot.
#
#   tests/support/libvirt-setup.sh start   # idempotent; prints the cgroup and socket it uses
#   tests/support/libvirt-setup.sh stop    # destroys and undefines every domain, stops libvirtd
#
# It writes /etc and mounts cgroup2 at /sys/fs/cgroup, so it runs only in the test host (whose root
# file system is a snapshot thrown away at power-off), never on a real machine.
set -euo pipefail

LOG=/var/log/libvirt/debug.log
PIDFILE=/run/libvirtd.pid
SOCK=/run/libvirt/libvirt-sock
CG=/sys/fs/cgroup

die() { echo "libvirt-setup: $*" >&2; exit 1; }

[ "${KVMM_IN_TESTHOST:-}" = 1 ] || die "runs only inside the test host (it rewrites /etc/libvirt and mounts cgroup2)"
[ "$(id -u)" = 0 ] || die "needs root"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

# libvirt applies memtune (memory.max), vCPU pinning and the like through cgroups. Without systemd
# it uses a cgroup v2 hierarchy it finds mounted, creating /machine/qemu-N-NAME.libvirt-qemu/ under
# the root with the controllers the root delegates; the test host's /init mounts none.
setup_cgroup() {
	if ! grep -q " $CG cgroup2 " /proc/mounts; then
		mkdir -p "$CG"
		mount -t cgroup2 -o nsdelegate cgroup2 "$CG"
	fi
	grep -qw memory "$CG/cgroup.controllers" || die "the kernel has no cgroup v2 memory controller"
	local c
	for c in memory cpu io pids; do
		grep -qw "$c" "$CG/cgroup.controllers" && ! grep -qw "$c" "$CG/cgroup.subtree_control" &&
			echo "+$c" >"$CG/cgroup.subtree_control"
	done
	return 0
}

# The settings LIBVIRT.md found necessary: root, no DAC relabelling, no mount namespace, no virtlogd.
configure() {
	getent group kvm >/dev/null || groupadd -r kvm
	# libvirt resolves its default user before reading qemu.conf.
	getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
	getent passwd libvirt-qemu >/dev/null ||
		useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
	mkdir -p /etc/libvirt /var/log/libvirt/qemu /var/lib/libvirt/qemu /run/libvirt
	cat >/etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
cgroup_controllers = [ "cpu", "memory", "blkio", "cpuset", "cpuacct" ]
EOF
	cat >/etc/libvirt/libvirtd.conf <<EOF
auth_unix_ro = "none"
auth_unix_rw = "none"
log_filters = "1:qemu 1:libvirt 3:object 3:json 3:event 1:util.cgroup"
log_outputs = "1:file:$LOG"
EOF
}

start() {
	setup_cgroup
	if running; then
		echo "libvirt-setup: libvirtd already running (pid $(cat "$PIDFILE"))"
		return
	fi
	configure
	libvirtd -d --pid-file "$PIDFILE"
	local i
	for i in $(seq 100); do
		[ -S "$SOCK" ] && virsh -c qemu:///system version >/dev/null 2>&1 && break
		sleep 0.1
	done
	virsh -c qemu:///system version >/dev/null || die "libvirtd did not answer within 10 s (log: $LOG)"
	echo "libvirt-setup: libvirtd $(libvirtd --version | awk '{print $NF}') running (pid $(cat "$PIDFILE")), cgroup2 at $CG with $(cat "$CG/cgroup.subtree_control"), log $LOG"
}

stop() {
	local d
	if running; then
		for d in $(virsh -c qemu:///system list --all --name 2>/dev/null); do
			virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
			virsh -c qemu:///system undefine "$d" >/dev/null 2>&1 || true
		done
		kill "$(cat "$PIDFILE")"
		for _ in $(seq 50); do running || break; sleep 0.1; done
	fi
	echo "libvirt-setup: libvirtd stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
