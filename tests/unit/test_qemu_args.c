/* The QEMU front's command line (src/libvirt/qemu_args*.c): every option line libvirt 9.0
 * generated in ../shared/libvirt/qemu-cmdline.txt, its capability probe line, and bad input. */
#include <kvmm/qemu_args.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ARGS 96

static struct qemu_args qa;
static int mon_fd = -1, serial_fd = -1, peer_fd = -1;
static char serial_path[] = "/tmp/kvmm-test-qemu-args-XXXXXX";

static void setup(void)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	mon_fd = sv[0];
	peer_fd = sv[1];
	serial_fd = mkstemp(serial_path);
	cr_assert_geq(serial_fd, 3);
}

static void teardown(void)
{
	qemu_args_free(&qa);
	close(mon_fd);
	close(peer_fd);
	close(serial_fd);
	unlink(serial_path);
}

/* Parses a NULL-ended argument list after the program name. */
static int parse_v(const char *first, va_list ap)
{
	char *argv[MAX_ARGS] = { "kvmm-qemu-system-x86_64" };
	int argc = 1;

	for (const char *a = first; a; a = va_arg(ap, const char *)) {
		cr_assert_lt(argc, MAX_ARGS - 1);
		argv[argc++] = (char *)a;
	}
	qemu_args_free(&qa);
	return qemu_args_parse(&qa, argc, argv);
}

static int parse(const char *first, ...)
{
	va_list ap;
	int r;

	va_start(ap, first);
	r = parse_v(first, ap);
	va_end(ap);
	return r;
}

#define KERNEL "-kernel", "/inner/vmlinuz"

static void expect_error(const char *want, int r)
{
	cr_assert_eq(r, -EINVAL, "wanted -EINVAL, got %d", r);
	cr_assert(strstr(qa.err, want), "error '%s' lacks '%s'", qa.err, want);
}

TestSuite(qemu_args, .init = setup, .fini = teardown, .timeout = 10);

/* ../shared/libvirt/qemu-cmdline.txt, with the inherited fds made real. */
Test(qemu_args, libvirt_domain_command_line)
{
	char mon[128], addfd[64];

	snprintf(mon, sizeof(mon), "socket,id=charmonitor,fd=%d,server=on,wait=off", mon_fd);
	snprintf(addfd, sizeof(addfd), "set=0,fd=%d,opaque=serial0-source", serial_fd);
	cr_assert_eq(parse("-name", "guest=bal,debug-threads=on", "-S", "-object",
			   "{\"qom-type\":\"secret\",\"id\":\"masterKey0\",\"format\":\"raw\","
			   "\"file\":\"/var/lib/libvirt/qemu/domain-1-bal/master-key.aes\"}",
			   "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
			   "-accel", "kvm", "-cpu", "host,migratable=on", "-m", "1024", "-object",
			   "{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\",\"size\":1073741824}",
			   "-overcommit", "mem-lock=off", "-smp", "1,sockets=1,cores=1,threads=1",
			   "-uuid", "f8d8d76d-74bc-408e-aec1-477586e098c2", "-display", "none",
			   "-no-user-config", "-nodefaults", "-chardev", mon, "-mon",
			   "chardev=charmonitor,id=monitor,mode=control", "-rtc", "base=utc",
			   "-no-shutdown", "-boot", "strict=on", KERNEL, "-initrd",
			   "/verify/balloon-guest.gz", "-append", "console=ttyS0 quiet", "-device",
			   "{\"driver\":\"piix3-usb-uhci\",\"id\":\"usb\",\"bus\":\"pci.0\",\"addr\":\"0x1.0x2\"}",
			   "-add-fd", addfd, "-chardev",
			   "file,id=charserial0,path=/dev/fdset/0,append=on", "-device",
			   "{\"driver\":\"isa-serial\",\"chardev\":\"charserial0\",\"id\":\"serial0\",\"index\":0}",
			   "-audiodev", "{\"id\":\"audio1\",\"driver\":\"none\"}", "-device",
			   "{\"driver\":\"virtio-balloon-pci\",\"id\":\"balloon0\",\"bus\":\"pci.0\",\"addr\":\"0x2\"}",
			   "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
			   "-msg", "timestamp=on", NULL),
		     0, "%s", qa.err);
	cr_expect_str_eq(qa.cfg.name, "bal");
	cr_expect(qa.cfg.start_paused);
	cr_expect(qa.cfg.no_shutdown);
	cr_expect(!qa.probe);
	cr_expect_eq(qa.cfg.memory, 1ull << 30);
	cr_expect_eq(qa.cfg.mem_backend, MEM_BACKEND_ANON);
	cr_expect_eq(qa.cfg.mem_share, MEM_SHARE_TPS);
	cr_expect_eq(qa.cfg.mem_shares, 10ull * 1024);
	cr_expect_eq(qa.cfg.cpus, 1);
	cr_expect_str_eq(qa.cfg.uuid, "f8d8d76d-74bc-408e-aec1-477586e098c2");
	cr_expect_eq(qa.cfg.qmp_fd, mon_fd);
	cr_expect_null(qa.cfg.qmp);
	cr_expect_eq(qa.cfg.serial, SERIAL_FILE);
	cr_expect_eq(qa.cfg.serial_fd, serial_fd);
	cr_expect(qa.cfg.serial_append);
	cr_expect_str_eq(qa.cfg.kernel, "/inner/vmlinuz");
	cr_expect_str_eq(qa.cfg.initrd, "/verify/balloon-guest.gz");
	cr_expect_str_eq(qa.cfg.append, "console=ttyS0 quiet");
	cr_expect(qa.cfg.balloon);
	cr_expect(!qa.cfg.balloon_deflate_on_oom);
	cr_expect_str_eq(qa.cfg.balloon_id, "balloon0");
	cr_expect_str_eq(qa.cfg.chardev_serial, "charserial0");
	cr_expect_str_eq(qa.cfg.chardev_monitor, "charmonitor");
	cr_expect(!qa.daemonize);
}

/* LIBVIRT.md: the capability probe, with kvm and then with tcg only. */
Test(qemu_args, libvirt_probe_command_line)
{
	static const char *const accels[] = { "none,accel=kvm:tcg", "none,accel=tcg" };

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(parse("-S", "-no-user-config", "-nodefaults", "-nographic", "-machine",
				   accels[i], "-qmp", "unix:/run/probe/qmp.monitor,server=on,wait=off",
				   "-pidfile", "/run/probe/qmp.pid", "-daemonize", NULL),
			     0, "%s", qa.err);
		cr_expect(qa.probe);
		cr_expect(qa.daemonize);
		cr_expect_str_eq(qa.cfg.qmp, "/run/probe/qmp.monitor");
		cr_expect_str_eq(qa.cfg.pidfile, "/run/probe/qmp.pid");
		cr_expect_eq(qa.cfg.qmp_fd, -1);
	}
}

Test(qemu_args, keyval_forms)
{
	cr_assert_eq(parse(KERNEL, "-machine", "pc,mem-merge=off", "-m", "size=512M,slots=1", "-smp",
			   "cpus=2", "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
			   "-device", "virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x2,"
			   "deflate-on-oom=on,free-page-reporting=on",
			   "-qmp", "unix:/tmp/q.sock,server,nowait", "-name", "vm1", NULL),
		     0, "%s", qa.err);
	cr_expect_eq(qa.cfg.mem_share, MEM_SHARE_OFF);
	cr_expect_eq(qa.cfg.memory, 512ull << 20);
	cr_expect_eq(qa.cfg.cpus, 2);
	cr_expect(qa.cfg.balloon_deflate_on_oom);
	cr_expect(qa.cfg.balloon_free_page_reporting);
	cr_expect_str_eq(qa.cfg.qmp, "/tmp/q.sock");
	cr_expect_str_eq(qa.cfg.name, "vm1");
	/* An unreferenced backend changes nothing. */
	cr_expect_eq(qa.cfg.mem_backend, MEM_BACKEND_ANON);
	/* No isa-serial: COM1 writes to /dev/null. */
	cr_expect_eq(qa.cfg.serial, SERIAL_FILE);
	cr_expect_str_eq(qa.cfg.serial_path, "/dev/null");
}

Test(qemu_args, backends)
{
	cr_assert_eq(parse(KERNEL, "-machine", "pc,memory-backend=m", "-object",
			   "memory-backend-memfd,id=m,size=256M", NULL), 0, "%s", qa.err);
	cr_expect_eq(qa.cfg.mem_backend, MEM_BACKEND_MEMFD);
	cr_expect_eq(qa.cfg.memory, 256ull << 20);
	cr_assert_eq(parse(KERNEL, "-machine", "pc,memory-backend=m", "-object",
			   "{\"qom-type\":\"memory-backend-ram\",\"id\":\"m\",\"size\":268435456,"
			   "\"share\":true}", NULL), 0, "%s", qa.err);
	cr_expect_eq(qa.cfg.mem_backend, MEM_BACKEND_MEMFD);
	cr_assert_eq(parse(KERNEL, "-machine", "pc,memory-backend=m", "-object",
			   "memory-backend-memfd,id=m,size=256M,hugetlb=on,hugetlbsize=2M,prealloc=on",
			   NULL), 0, "%s", qa.err);
	cr_expect_eq(qa.cfg.mem_backend, MEM_BACKEND_HUGETLB);
	cr_expect_eq(qa.cfg.mem_share, MEM_SHARE_OFF);
	expect_error("not on hugetlbfs",
		     parse(KERNEL, "-object", "memory-backend-file,id=m,size=256M,mem-path=/tmp", NULL));
	expect_error("differs from -m",
		     parse(KERNEL, "-m", "512", "-machine", "pc,memory-backend=m", "-object",
			   "memory-backend-ram,id=m,size=256M", NULL));
	expect_error("memory backend 'x' not found",
		     parse(KERNEL, "-machine", "pc,memory-backend=x", NULL));
	expect_error("'12Q' is not a valid size",
		     parse(KERNEL, "-object", "memory-backend-ram,id=m,size=12Q", NULL));
	expect_error("hugetlbsize", parse(KERNEL, "-object",
					  "memory-backend-memfd,id=m,size=1G,hugetlb=on,hugetlbsize=1G",
					  NULL));
}

Test(qemu_args, unknown_and_unsupported)
{
	expect_error("-foo: option not supported by kvmm", parse(KERNEL, "-foo", NULL));
	expect_error("--bar: option not supported by kvmm", parse(KERNEL, "--bar", "1", NULL));
	expect_error("kvmm: device 'virtio-net-pci' is not supported",
		     parse(KERNEL, "-device", "virtio-net-pci,id=net0", NULL));
	expect_error("kvmm: device 'VGA' is not supported",
		     parse(KERNEL, "-device", "{\"driver\":\"VGA\",\"id\":\"video0\"}", NULL));
	expect_error("property 'free-page-hint'",
		     parse(KERNEL, "-device", "virtio-balloon-pci,free-page-hint=on", NULL));
	expect_error("object type 'iothread'", parse(KERNEL, "-object", "iothread,id=io1", NULL));
	expect_error("pty", parse(KERNEL, "-chardev", "pty,id=charserial0", NULL));
	expect_error("tcg", parse(KERNEL, "-accel", "tcg", NULL));
	expect_error("tcg", parse(KERNEL, "-machine", "pc,accel=tcg", NULL));
	expect_error("machine type 'q35'", parse(KERNEL, "-machine", "q35", NULL));
	expect_error("CPU model 'qemu64'", parse(KERNEL, "-cpu", "qemu64", NULL));
	expect_error("property '+x2apic'", parse(KERNEL, "-cpu", "host,+x2apic", NULL));
	expect_error("ACPI", parse(KERNEL, "-no-acpi", NULL));
	expect_error("-global", parse(KERNEL, "-global", "isa-fdc.driveA=x", NULL));
	cr_expect_eq(parse(KERNEL, "-global", "kvm-pit.lost_tick_policy=delay", NULL), 0);
	expect_error("mem-lock=on", parse(KERNEL, "-overcommit", "mem-lock=on", NULL));
	expect_error("base=localtime", parse(KERNEL, "-rtc", "base=localtime", NULL));
	expect_error("driver=pa", parse(KERNEL, "-audiodev", "pa,id=a", NULL));
	expect_error("readline", parse(KERNEL, "-chardev", "socket,id=m,path=/tmp/m,server=on,wait=off",
				       "-mon", "chardev=m", NULL));
	expect_error("hotplug", parse(KERNEL, "-m", "size=1G,slots=16,maxmem=4G", NULL));
	expect_error("hotplug", parse(KERNEL, "-smp", "1,maxcpus=4", NULL));
	expect_error("disk image", parse(KERNEL, "/var/lib/disk.qcow2", NULL));
	expect_error("no -kernel", parse("-m", "512", NULL));
	expect_error("display", parse(KERNEL, "-display", "gtk", NULL));
}

Test(qemu_args, missing_values)
{
	static const char *const opts[] = { "-m", "-name", "-machine", "-device", "-object",
					     "-chardev", "-kernel", "-pidfile", "-add-fd", "-smp" };

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		char want[64];

		snprintf(want, sizeof(want), "%s: requires an argument", opts[i]);
		expect_error(want, parse(KERNEL, opts[i], NULL));
	}
	expect_error("chardev= is required", parse(KERNEL, "-device", "isa-serial", NULL));
	expect_error("id= and size= are required",
		     parse(KERNEL, "-object", "memory-backend-ram,size=1G", NULL));
	expect_error("set=N and fd=M", parse(KERNEL, "-add-fd", "fd=5", NULL));
}

Test(qemu_args, bad_sizes_and_numbers)
{
	expect_error("-m: 'abc'", parse(KERNEL, "-m", "abc", NULL));
	expect_error("at least 16M", parse(KERNEL, "-m", "1", NULL));
	expect_error("-m: '0'", parse(KERNEL, "-m", "0", NULL));
	expect_error("too large", parse(KERNEL, "-m", "99999999999T", NULL));
	expect_error("-smp: cpus=0", parse(KERNEL, "-smp", "0", NULL));
	expect_error("-smp: cpus=1000", parse(KERNEL, "-smp", "1000", NULL));
	expect_error("not a UUID", parse(KERNEL, "-uuid", "f8d8d76d-74bc", NULL));
	expect_error("expected on or off",
		     parse(KERNEL, "-device", "virtio-balloon-pci,deflate-on-oom=maybe", NULL));
}

Test(qemu_args, bad_json)
{
	expect_error("invalid JSON", parse(KERNEL, "-object", "{\"qom-type\":", NULL));
	expect_error("invalid JSON", parse(KERNEL, "-device", "{\"driver\":\"isa-serial\",}", NULL));
	expect_error("only strings, integers and booleans",
		     parse(KERNEL, "-device", "{\"driver\":\"virtio-balloon-pci\",\"x\":[1]}", NULL));
	expect_error("invalid JSON", parse(KERNEL, "-device", "{\"driver\":\"a\",\"driver\":\"b\"}",
					   NULL));
	expect_error("expected KEY=VALUE", parse(KERNEL, "-device", "virtio-balloon-pci,=x", NULL));
	expect_error("ends with a comma", parse(KERNEL, "-device", "virtio-balloon-pci,", NULL));
}

Test(qemu_args, fds_must_be_open)
{
	char addfd[64];

	expect_error("fd 1000 is not an open file descriptor",
		     parse(KERNEL, "-add-fd", "set=0,fd=1000", NULL));
	expect_error("standard I/O", parse(KERNEL, "-add-fd", "set=0,fd=1", NULL));
	expect_error("fd=1000 is not an open file descriptor",
		     parse(KERNEL, "-chardev", "socket,id=m,fd=1000,server=on,wait=off", NULL));
	snprintf(addfd, sizeof(addfd), "socket,id=m,fd=%d,server=on,wait=off", serial_fd);
	expect_error("is not a socket", parse(KERNEL, "-chardev", addfd, NULL));
	/* /dev/fdset/1 with no fd added to set 1. */
	snprintf(addfd, sizeof(addfd), "set=0,fd=%d", serial_fd);
	expect_error("no fd open for writing in set 1",
		     parse(KERNEL, "-add-fd", addfd, "-chardev", "file,id=s,path=/dev/fdset/1",
			   "-device", "isa-serial,chardev=s", NULL));
	expect_error("chardev 'nope' not found", parse(KERNEL, "-device", "isa-serial,chardev=nope",
						     NULL));
	expect_error("chardev 'nope' not found", parse(KERNEL, "-mon", "chardev=nope,mode=control",
						     NULL));
}

Test(qemu_args, serial_and_monitor_paths)
{
	cr_assert_eq(parse(KERNEL, "-chardev", "file,id=s,path=/tmp/serial.log", "-device",
			   "isa-serial,chardev=s", "-chardev",
			   "socket,id=m,path=/tmp/m.sock,server=on,wait=off", "-mon",
			   "chardev=m,mode=control", NULL), 0, "%s", qa.err);
	cr_expect_eq(qa.cfg.serial, SERIAL_FILE);
	cr_expect_str_eq(qa.cfg.serial_path, "/tmp/serial.log");
	cr_expect(!qa.cfg.serial_append, "QEMU truncates a file chardev without append=on");
	cr_expect_eq(qa.cfg.serial_fd, -1);
	cr_expect_str_eq(qa.cfg.qmp, "/tmp/m.sock");
	cr_expect_str_eq(qa.cfg.chardev_serial, "s");
	cr_expect_str_eq(qa.cfg.chardev_monitor, "m");
	cr_assert_eq(parse(KERNEL, "-chardev", "file,id=s,path=/tmp/serial.log,append=on",
			   "-device", "isa-serial,chardev=s", "-qmp",
			   "unix:/tmp/q.sock,server=on,wait=off", NULL), 0, "%s", qa.err);
	cr_expect(qa.cfg.serial_append);
	cr_expect_str_eq(qa.cfg.chardev_monitor, "compat_monitor0", "QEMU's name for -qmp's chardev");
	cr_assert_eq(parse(KERNEL, "-chardev", "stdio,id=s", "-device", "isa-serial,chardev=s",
			   "-no-reboot", NULL), 0, "%s", qa.err);
	cr_expect_eq(qa.cfg.serial, SERIAL_STDIO);
	cr_expect(qa.cfg.no_reboot);
	expect_error("one QMP monitor",
		     parse(KERNEL, "-qmp", "unix:/tmp/a,server=on,wait=off", "-qmp",
			   "unix:/tmp/b,server=on,wait=off", NULL));
	expect_error("server=on,wait=off", parse(KERNEL, "-qmp", "unix:/tmp/a", NULL));
	expect_error("unix socket only", parse(KERNEL, "-qmp", "tcp:localhost:4444,server=on,wait=off",
					       NULL));
}

/* The balloon keeps its -device id (its QOM path /machine/peripheral/ID); QEMU's id rules. */
Test(qemu_args, balloon_id)
{
	cr_assert_eq(parse(KERNEL, "-device", "virtio-balloon-pci,id=mem-balloon.1", NULL), 0, "%s",
		     qa.err);
	cr_expect_str_eq(qa.cfg.balloon_id, "mem-balloon.1");
	cr_assert_eq(parse(KERNEL, "-device", "virtio-balloon-pci", NULL), 0, "%s", qa.err);
	cr_expect_null(qa.cfg.balloon_id, "no id: kvmm's default, balloon0");
	expect_error("Parameter 'id' expects an identifier",
		     parse(KERNEL, "-device", "virtio-balloon-pci,id=0bad", NULL));
	expect_error("Parameter 'id' expects an identifier",
		     parse(KERNEL, "-device", "{\"driver\":\"virtio-balloon-pci\",\"id\":\"a/b\"}",
			   NULL));
}

/* libvirt's <timer name='hpet' present='no'/> with the machine.hpet capability. */
Test(qemu_args, machine_hpet)
{
	cr_assert_eq(parse(KERNEL, "-machine", "pc,hpet=off", NULL), 0, "%s", qa.err);
	expect_error("kvmm has no HPET", parse(KERNEL, "-machine", "pc,hpet=on", NULL));
}

Test(qemu_args, version_help_and_names)
{
	cr_expect_eq(parse("-version", NULL), 0);
	cr_expect(qa.version);
	cr_expect_eq(parse("--help", NULL), 0);
	cr_expect(qa.help);
	cr_expect(qemu_front_name("kvmm-qemu-system-x86_64"));
	cr_expect(qemu_front_name("/usr/local/bin/kvmm-qemu-system-x86_64"));
	cr_expect(qemu_front_name("/usr/bin/qemu-system-x86_64"));
	cr_expect(!qemu_front_name("kvmm"));
	cr_expect(!qemu_front_name("/usr/bin/qemu-system-i386"));
}
