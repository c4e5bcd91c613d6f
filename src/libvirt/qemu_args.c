/*
 * QEMU's command line, the subset libvirt 9.0 generates (../shared/libvirt/qemu-cmdline.txt and
 * its capability probe), read into a struct vm_config. One table maps each option to a handler;
 * an option not in it is refused by name, a property a handler does not read is refused by name,
 * so nothing libvirt asks for is silently dropped unless the table says why (docs/libvirt.md).
 * Errors are QEMU's shape, "PROG: -option: reason", since libvirt shows QEMU's stderr to the user.
 */
#include "qemu_args_internal.h"

#include <kvmm/size.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QA_MIN_MEMORY (16ull << 20)

int qa_fail(struct qemu_args *qa, const char *fmt, ...)
{
	va_list ap;

	if (qa->err[0])
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(qa->err, sizeof(qa->err), fmt, ap);
	va_end(ap);
	/* Values are quoted back as given: a control character must not split the line. */
	for (char *p = qa->err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

int qa_props(struct qemu_args *qa, const char *opt, const char *value, const char *implied,
	     struct qprops *p)
{
	char why[256] = "";
	int r = qprops_parse(value, implied, p, why, sizeof(why));

	if (r == -ENOMEM)
		return r;
	return r < 0 ? qa_fail(qa, "-%s %s: %s", opt, value, why) : 0;
}

int qa_props_done(struct qemu_args *qa, const char *opt, const char *what, struct qprops *p)
{
	const char *key = qprops_unused(p);

	if (key)
		qa_fail(qa, "-%s: %s: property '%s' is not supported by kvmm", opt, what, key);
	qprops_free(p);
	return key ? -EINVAL : 0;
}

int qa_bool(struct qemu_args *qa, const char *opt, struct qprops *p, const char *key, bool *out)
{
	const char *v = qprops_get(p, key);

	if (v && qprop_bool(v, out) < 0)
		return qa_fail(qa, "-%s: %s=%s: expected on or off", opt, key, v);
	return 0;
}

int qa_size(struct qemu_args *qa, const char *opt, const char *text, uint64_t *out)
{
	int r = size_parse(text, out);

	if (r == 0 && *out == 0)
		r = -EINVAL;
	if (r == -ERANGE)
		return qa_fail(qa, "-%s: size '%s' is too large", opt, text);
	if (r < 0)
		return qa_fail(qa, "-%s: '%s' is not a valid size", opt, text);
	return 0;
}

static int qa_strdup(char **field, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

/* Options that take nothing and need nothing from kvmm, or set one flag. */
static int opt_S(struct qemu_args *qa, const char *v)
{
	qa->cfg.start_paused = true;
	return 0;
}

static int opt_no_shutdown(struct qemu_args *qa, const char *v)
{
	qa->cfg.no_shutdown = true;
	return 0;
}

static int opt_no_reboot(struct qemu_args *qa, const char *v)
{
	qa->cfg.no_reboot = true;
	return 0;
}

static int opt_daemonize(struct qemu_args *qa, const char *v)
{
	qa->daemonize = true;
	return 0;
}

static int opt_nothing(struct qemu_args *qa, const char *v)
{
	return 0;
}

static int opt_version(struct qemu_args *qa, const char *v)
{
	qa->version = true;
	return 0;
}

static int opt_help(struct qemu_args *qa, const char *v)
{
	qa->help = true;
	return 0;
}

static int opt_no_acpi(struct qemu_args *qa, const char *v)
{
	return qa_fail(qa, "-no-acpi: option not supported by kvmm: its guests boot with ACPI "
		       "(add <features><acpi/><apic/></features> to the domain)");
}

static int opt_name(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	const char *guest;
	bool dt = false;
	int r = qa_props(qa, "name", v, "guest", &p);

	if (r)
		return r;
	guest = qprops_get(&p, "guest");
	qprops_get(&p, "process"); /* the process title: kvmm keeps its own */
	if (guest && (!guest[0] || strlen(guest) > 255))
		r = qa_fail(qa, "-name: guest name must be 1 to 255 characters");
	if (r == 0 && guest)
		r = qa_strdup(&qa->cfg.name, guest);
	if (r == 0)
		r = qa_bool(qa, "name", &p, "debug-threads", &dt); /* kvmm names its threads anyway */
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "name", v, &p);
}

/* accel=kvm:tcg lists accelerators to try in order; the first kvmm has (kvm) wins. */
static int qa_accel(struct qemu_args *qa, const char *opt, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	bool kvm = false, tcg = false, other = false;

	if (!copy)
		return -ENOMEM;
	for (char *a = strtok_r(copy, ":", &save); a; a = strtok_r(NULL, ":", &save)) {
		if (strcmp(a, "kvm") == 0)
			kvm = true;
		else if (strcmp(a, "tcg") == 0)
			tcg = true;
		else
			other = true;
	}
	free(copy);
	if (!kvm && !tcg)
		return qa_fail(qa, "-%s: accelerator '%s' is not supported by kvmm (it has kvm)", opt,
			       list);
	(void)other;
	qa->tcg_only = !kvm;
	return 0;
}

static bool qa_machine_type_ok(const char *type)
{
	return strcmp(type, "pc") == 0 || strncmp(type, "pc-i440fx-", 10) == 0;
}

static int opt_machine(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	const char *type, *accel, *backend;
	bool ignored, merge = true, hpet = false;
	int r = qa_props(qa, "machine", v, "type", &p);

	if (r)
		return r;
	type = qprops_get(&p, "type");
	if (type && strcmp(type, "none") == 0)
		qa->probe = true;
	else if (type && !qa_machine_type_ok(type))
		r = qa_fail(qa, "-machine %s: machine type '%s' is not supported by kvmm (it has pc, "
			    "alias pc-i440fx-*)", v, type);
	accel = qprops_get(&p, "accel");
	if (r == 0 && accel)
		r = qa_accel(qa, "machine", accel);
	backend = qprops_get(&p, "memory-backend");
	if (r == 0 && backend)
		r = qa_strdup(&qa->machine_backend, backend);
	/* No USB (the controller is not emulated), no guest core dumps, no vmport: nothing to do. */
	if (r == 0)
		r = qa_bool(qa, "machine", &p, "usb", &ignored);
	if (r == 0)
		r = qa_bool(qa, "machine", &p, "dump-guest-core", &ignored);
	if (r == 0)
		qprops_get(&p, "vmport");
	if (r == 0)
		r = qa_bool(qa, "machine", &p, "mem-merge", &merge);
	if (r == 0 && !merge)
		qa->cfg.mem_share = MEM_SHARE_OFF;
	/* libvirt's <timer name='hpet' present='no'/>; kvmm's machine has no HPET at all. */
	if (r == 0)
		r = qa_bool(qa, "machine", &p, "hpet", &hpet);
	if (r == 0 && hpet)
		r = qa_fail(qa, "-machine %s: kvmm has no HPET (use <timer name='hpet' present='no'/>)",
			    v);
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "machine", v, &p);
}

static int opt_accel(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	int r = qa_props(qa, "accel", v, "accel", &p);

	if (r == 0)
		r = qa_accel(qa, "accel", qprops_get(&p, "accel"));
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "accel", v, &p);
}

static int opt_cpu(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	const char *model;
	bool migratable;
	int r = qa_props(qa, "cpu", v, "model", &p);

	if (r)
		return r;
	model = qprops_get(&p, "model");
	if (!model || (strcmp(model, "host") != 0 && strcmp(model, "max") != 0))
		r = qa_fail(qa, "-cpu %s: CPU model '%s' is not supported by kvmm: it gives the guest "
			    "the host's CPU (use <cpu mode='host-passthrough'/>)", v, model ? model : "");
	if (r == 0)
		r = qa_bool(qa, "cpu", &p, "migratable", &migratable);
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "cpu", v, &p);
}

/* -m SIZE: a bare number is MiB (QEMU's default suffix for -m); slots= and maxmem= make room for
 * memory hotplug, which kvmm does not have. */
static int opt_m(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	const char *size, *maxmem;
	uint64_t bytes = 0, max = 0;
	bool digits;
	int r = qa_props(qa, "m", v, "size", &p);

	if (r)
		return r;
	size = qprops_get(&p, "size");
	if (!size)
		r = qa_fail(qa, "-m %s: missing size", v);
	digits = size && size[0] && strspn(size, "0123456789") == strlen(size);
	if (r == 0 && digits) {
		uint64_t mib;

		if (qprop_uint(size, UINT64_MAX >> 20, &mib) < 0 || mib == 0)
			r = qa_fail(qa, "-m: '%s' is not a valid size", size);
		bytes = mib << 20;
	} else if (r == 0) {
		r = qa_size(qa, "m", size, &bytes);
	}
	if (r == 0 && (bytes < QA_MIN_MEMORY || bytes % 4096))
		r = qa_fail(qa, "-m: '%s': kvmm needs at least 16M, in whole 4K pages", size);
	qprops_get(&p, "slots");
	maxmem = qprops_get(&p, "maxmem");
	if (r == 0 && maxmem && (qa_size(qa, "m", maxmem, &max) < 0 || max != bytes))
		r = qa_fail(qa, "-m %s: memory hotplug (maxmem) is not supported by kvmm", v);
	if (r == 0) {
		qa->cfg.memory = bytes;
		qa->m_given = true;
	}
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "m", v, &p);
}

static int qa_count(struct qemu_args *qa, struct qprops *p, const char *key, uint64_t *out)
{
	const char *s = qprops_get(p, key);

	if (s && (qprop_uint(s, CONFIG_MAX_CPUS, out) < 0 || *out == 0))
		return qa_fail(qa, "-smp: %s=%s: expected 1 to %u", key, s, CONFIG_MAX_CPUS);
	return 0;
}

/* kvmm's topology is one socket of N single-thread cores; what libvirt asks for is checked for
 * consistency only, and CPU hotplug (maxcpus above cpus) is refused. */
static int opt_smp(struct qemu_args *qa, const char *v)
{
	static const char *const keys[] = { "cpus", "sockets", "dies", "cores", "threads", "maxcpus" };
	uint64_t n[6] = { 0, 1, 1, 1, 1, 0 };
	struct qprops p;
	int r = qa_props(qa, "smp", v, "cpus", &p);

	for (size_t i = 0; r == 0 && i < 6; i++)
		r = qa_count(qa, &p, keys[i], &n[i]);
	if (r == 0 && !n[0])
		n[0] = n[1] * n[2] * n[3] * n[4];
	if (r == 0 && (n[0] == 0 || n[0] > CONFIG_MAX_CPUS))
		r = qa_fail(qa, "-smp %s: kvmm runs 1 to %u vCPUs", v, CONFIG_MAX_CPUS);
	if (r == 0 && n[5] && n[5] != n[0])
		r = qa_fail(qa, "-smp %s: CPU hotplug (maxcpus above cpus) is not supported by kvmm", v);
	if (r == 0)
		qa->cfg.cpus = (unsigned)n[0];
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "smp", v, &p);
}

static int opt_kernel(struct qemu_args *qa, const char *v)
{
	return qa_strdup(&qa->cfg.kernel, v);
}

static int opt_initrd(struct qemu_args *qa, const char *v)
{
	return qa_strdup(&qa->cfg.initrd, v);
}

static int opt_append(struct qemu_args *qa, const char *v)
{
	return qa_strdup(&qa->cfg.append, v);
}

static int opt_pidfile(struct qemu_args *qa, const char *v)
{
	if (!v[0])
		return qa_fail(qa, "-pidfile: empty path");
	return qa_strdup(&qa->cfg.pidfile, v);
}

static int opt_uuid(struct qemu_args *qa, const char *v)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strlen(v) != sizeof(shape) - 1)
		return qa_fail(qa, "-uuid %s: not a UUID", v);
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == '-' ? v[i] != '-' : !isxdigit((unsigned char)v[i]))
			return qa_fail(qa, "-uuid %s: not a UUID", v);
	memcpy(qa->cfg.uuid, v, sizeof(shape));
	return 0;
}

/* -mon chardev=ID,mode=control: QMP on a chardev. The human monitor (mode=readline) is not kvmm's. */
static int opt_mon(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	const char *chr, *mode;
	bool pretty;
	int r = qa_props(qa, "mon", v, "chardev", &p);

	if (r)
		return r;
	chr = qprops_get(&p, "chardev");
	mode = qprops_get(&p, "mode");
	qprops_get(&p, "id");
	if (!chr)
		r = qa_fail(qa, "-mon %s: chardev= is required", v);
	else if (!mode || strcmp(mode, "control") != 0)
		r = qa_fail(qa, "-mon %s: kvmm has only the QMP monitor (mode=control), not the "
			    "human monitor (mode=readline)", v);
	else if (qa->mon_chardev || qa->cfg.qmp)
		r = qa_fail(qa, "-mon %s: kvmm serves one QMP monitor", v);
	if (r == 0)
		r = qa_bool(qa, "mon", &p, "pretty", &pretty);
	if (r == 0)
		r = qa_strdup(&qa->mon_chardev, chr);
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "mon", v, &p);
}

/* -qmp unix:PATH,server=on,wait=off (or the older ",server,nowait"). */
static int opt_qmp(struct qemu_args *qa, const char *v)
{
	struct qprops p;
	const char *spec;
	bool server = false, wait = true;
	int r = qa_props(qa, "qmp", v, "spec", &p);

	if (r)
		return r;
	spec = qprops_get(&p, "spec");
	r = qa_bool(qa, "qmp", &p, "server", &server);
	if (r == 0)
		r = qa_bool(qa, "qmp", &p, "wait", &wait);
	if (r == 0 && (!spec || strncmp(spec, "unix:", 5) != 0 || !spec[5]))
		r = qa_fail(qa, "-qmp %s: kvmm serves QMP on a unix socket only (unix:PATH)", v);
	else if (r == 0 && (!server || wait))
		r = qa_fail(qa, "-qmp %s: kvmm listens for QMP clients: use server=on,wait=off", v);
	else if (r == 0 && (qa->mon_chardev || qa->cfg.qmp))
		r = qa_fail(qa, "-qmp %s: kvmm serves one QMP monitor", v);
	if (r == 0)
		r = qa_strdup(&qa->cfg.qmp, spec + 5);
	/* QEMU's name for the chardev -qmp creates (query-chardev). */
	if (r == 0)
		r = qa_strdup(&qa->cfg.chardev_monitor, "compat_monitor0");
	if (r)
		qprops_free(&p);
	return r ? r : qa_props_done(qa, "qmp", v, &p);
}

/* One handler for the options whose properties kvmm accepts only with given values. */
struct qa_allowed {
	const char *key;
	const char *const *values; /* NULL: any value */
};

static int qa_check_allowed(struct qemu_args *qa, const char *opt, const char *v,
			    const char *implied, const struct qa_allowed *allowed, const char *why)
{
	struct qprops p;
	int r = qa_props(qa, opt, v, implied, &p);

	for (const struct qa_allowed *a = allowed; r == 0 && a->key; a++) {
		const char *val = qprops_get(&p, a->key);
		bool ok = !val || !a->values;

		for (size_t i = 0; !ok && a->values[i]; i++)
			ok = strcmp(val, a->values[i]) == 0;
		if (!ok)
			r = qa_fail(qa, "-%s %s: %s=%s is not supported by kvmm%s", opt, v, a->key, val,
				    why);
	}
	if (r == 0)
		return qa_props_done(qa, opt, v, &p);
	qprops_free(&p);
	return r;
}

static const char *const qa_off[] = { "off", "no", "false", NULL };
static const char *const qa_none[] = { "none", NULL };

static int opt_overcommit(struct qemu_args *qa, const char *v)
{
	static const struct qa_allowed a[] = { { "mem-lock", qa_off }, { "cpu-pm", qa_off }, { 0 } };

	return qa_check_allowed(qa, "overcommit", v, NULL, a, " (guest memory is never locked)");
}

static int opt_display(struct qemu_args *qa, const char *v)
{
	static const struct qa_allowed a[] = { { "type", qa_none }, { 0 } };

	return qa_check_allowed(qa, "display", v, "type", a, " (it has no display)");
}

static int opt_vga(struct qemu_args *qa, const char *v)
{
	if (strcmp(v, "none") != 0)
		return qa_fail(qa, "-vga %s: kvmm has no display adapter", v);
	return 0;
}

/* kvmm has no seccomp filter of its own yet: -sandbox is accepted and does nothing. */
static int opt_sandbox(struct qemu_args *qa, const char *v)
{
	static const struct qa_allowed a[] = {
		{ "enable", NULL }, { "obsolete", NULL }, { "elevateprivileges", NULL },
		{ "spawn", NULL }, { "resourcecontrol", NULL }, { 0 },
	};

	return qa_check_allowed(qa, "sandbox", v, "enable", a, "");
}

static int opt_msg(struct qemu_args *qa, const char *v)
{
	static const struct qa_allowed a[] = { { "timestamp", NULL }, { "guest-name", NULL }, { 0 } };

	return qa_check_allowed(qa, "msg", v, NULL, a, "");
}

/* kvmm's RTC reads the host clock as UTC. */
static int opt_rtc(struct qemu_args *qa, const char *v)
{
	static const char *const utc[] = { "utc", NULL };
	static const char *const host[] = { "host", NULL };
	static const struct qa_allowed a[] = {
		{ "base", utc }, { "clock", host }, { "driftfix", NULL }, { 0 },
	};

	return qa_check_allowed(qa, "rtc", v, NULL, a, " (its RTC keeps the host's UTC time)");
}

/* Direct kernel boot, no firmware: boot order and menus have nothing to apply to. */
static int opt_boot(struct qemu_args *qa, const char *v)
{
	static const struct qa_allowed a[] = {
		{ "order", NULL }, { "once", NULL }, { "menu", NULL }, { "strict", NULL },
		{ "splash-time", NULL }, { "reboot-timeout", NULL }, { 0 },
	};

	return qa_check_allowed(qa, "boot", v, "order", a, "");
}

static int opt_audiodev(struct qemu_args *qa, const char *v)
{
	static const struct qa_allowed a[] = { { "driver", qa_none }, { "id", NULL }, { 0 } };

	return qa_check_allowed(qa, "audiodev", v, "driver", a, " (it has no sound device)");
}

/* -global DRIVER.PROP=VALUE: only settings for devices kvmm does not have or that change nothing
 * in it. kvm-pit.lost_tick_policy: kvmm's in-kernel PIT; PIIX4_PM.disable_s3/s4: kvmm offers
 * neither sleep state. */
static int opt_global(struct qemu_args *qa, const char *v)
{
	static const char *const harmless[] = {
		"kvm-pit.lost_tick_policy=delay", "kvm-pit.lost_tick_policy=discard",
		"PIIX4_PM.disable_s3=1", "PIIX4_PM.disable_s4=1", NULL,
	};

	for (size_t i = 0; harmless[i]; i++)
		if (strcmp(v, harmless[i]) == 0)
			return 0;
	return qa_fail(qa, "-global %s: not supported by kvmm", v);
}

struct qa_option {
	const char *name;
	bool has_arg;
	int (*fn)(struct qemu_args *qa, const char *value);
};

static const struct qa_option qa_options[] = {
	{ "S", false, opt_S },
	{ "name", true, opt_name },
	{ "machine", true, opt_machine },
	{ "M", true, opt_machine },
	{ "accel", true, opt_accel },
	{ "enable-kvm", false, opt_nothing },
	{ "cpu", true, opt_cpu },
	{ "m", true, opt_m },
	{ "smp", true, opt_smp },
	{ "object", true, qa_opt_object },
	{ "device", true, qa_opt_device },
	{ "chardev", true, qa_opt_chardev },
	{ "mon", true, opt_mon },
	{ "qmp", true, opt_qmp },
	{ "add-fd", true, qa_opt_add_fd },
	{ "kernel", true, opt_kernel },
	{ "initrd", true, opt_initrd },
	{ "append", true, opt_append },
	{ "pidfile", true, opt_pidfile },
	{ "daemonize", false, opt_daemonize },
	{ "no-shutdown", false, opt_no_shutdown },
	{ "no-reboot", false, opt_no_reboot },
	/* No default devices and no config files are what kvmm does anyway. */
	{ "nodefaults", false, opt_nothing },
	{ "no-user-config", false, opt_nothing },
	{ "nographic", false, opt_nothing },
	{ "display", true, opt_display },
	{ "vga", true, opt_vga },
	{ "overcommit", true, opt_overcommit },
	{ "sandbox", true, opt_sandbox },
	{ "msg", true, opt_msg },
	{ "rtc", true, opt_rtc },
	{ "boot", true, opt_boot },
	{ "uuid", true, opt_uuid },
	{ "audiodev", true, opt_audiodev },
	{ "global", true, opt_global },
	{ "no-acpi", false, opt_no_acpi },
	{ "version", false, opt_version },
	{ "help", false, opt_help },
	{ "h", false, opt_help },
};

static const struct qa_option *qa_find(const char *name)
{
	for (size_t i = 0; i < sizeof(qa_options) / sizeof(qa_options[0]); i++)
		if (strcmp(qa_options[i].name, name) == 0)
			return &qa_options[i];
	return NULL;
}

/* What every option together means: backends, chardevs, and what a VM needs. */
static int qa_finish(struct qemu_args *qa)
{
	struct vm_config *cfg = &qa->cfg;
	int r;

	if (qa->version || qa->help)
		return 0;
	r = qa_resolve_backend(qa);
	if (r == 0)
		r = qa_resolve_chardevs(qa);
	if (r)
		return r;
	cfg->mem_shares = (uint64_t)CONFIG_SHARES_NORMAL * (cfg->memory >> 20);
	/* A capability probe runs no guest, so any accelerator may be asked about (libvirt probes
	 * accel=tcg too); a guest runs only under KVM. */
	if (qa->probe)
		return 0;
	if (qa->tcg_only)
		return qa_fail(qa, "-accel tcg: kvmm runs guests only with KVM (use <domain type='kvm'>)");
	if (!cfg->kernel)
		return qa_fail(qa, "no -kernel: kvmm boots a Linux kernel directly (set <kernel> in the "
			       "domain's <os>); firmware and disk boot are not supported");
	return 0;
}

int qemu_args_parse(struct qemu_args *qa, int argc, char **argv)
{
	int r = 0;

	memset(qa, 0, sizeof(*qa));
	config_init(&qa->cfg);
	if (!qa->cfg.name || !qa->cfg.mem_salt)
		return -ENOMEM;
	for (int i = 1; i < argc && r == 0; i++) {
		const char *arg = argv[i];
		const struct qa_option *o;

		if (arg[0] != '-' || !arg[1]) {
			r = qa_fail(qa, "%s: unexpected argument (kvmm takes no disk image)", arg);
			break;
		}
		/* QEMU takes --opt as -opt. */
		o = qa_find(arg + (arg[1] == '-' ? 2 : 1));
		if (!o) {
			r = qa_fail(qa, "%s: option not supported by kvmm", arg);
			break;
		}
		if (o->has_arg && i + 1 >= argc) {
			r = qa_fail(qa, "%s: requires an argument", arg);
			break;
		}
		r = o->fn(qa, o->has_arg ? argv[++i] : NULL);
	}
	if (r == 0)
		r = qa_finish(qa);
	if (r == -ENOMEM)
		qa_fail(qa, "out of memory");
	return r;
}

void qemu_args_free(struct qemu_args *qa)
{
	for (unsigned i = 0; i < qa->nchardevs; i++) {
		free(qa->chardevs[i].id);
		free(qa->chardevs[i].path);
	}
	for (unsigned i = 0; i < qa->nbackends; i++)
		free(qa->backends[i].id);
	free(qa->machine_backend);
	free(qa->mon_chardev);
	free(qa->serial_chardev);
	config_free(&qa->cfg);
	memset(qa, 0, sizeof(*qa));
}

bool qemu_front_name(const char *argv0)
{
	const char *base = argv0 ? strrchr(argv0, '/') : NULL;

	base = base ? base + 1 : argv0;
	return base && (strcmp(base, "kvmm-qemu-system-x86_64") == 0 ||
			strcmp(base, "qemu-system-x86_64") == 0);
}
