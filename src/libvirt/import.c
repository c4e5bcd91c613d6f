/* `kvmm import-libvirt`: a libvirt domain XML document mapped onto `kvmm run` options
 * (kvmm/libvirt_import.h). The mapping builds an argv and hands it to config_parse_run, so every
 * value goes through the same validation as on the command line. Memory policy follows libvirt's
 * meaning: <memtune> limits count the whole process (libvirt writes them to the domain's cgroup),
 * so they go through cgroup_map, the rule --mem-cgroup applies, with the overhead estimated. */
#include <kvmm/cgroup.h>
#include <kvmm/config.h>
#include <kvmm/libvirt_import.h>
#include <kvmm/log.h>
#include <kvmm/vm.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define MIB (1ull << 20)
#define MAX_XML (16u << 20)

struct ctx {
	struct libvirt_import *out;
	size_t cap;
	size_t unmapped_len;
	int err;
	/* Memory, gathered before the options are written. */
	uint64_t memory, current, hard, soft, guarantee;
	bool have_memory;
};

static void fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err)
		return;
	va_start(ap, fmt);
	vsnprintf(c->out->error, sizeof(c->out->error), fmt, ap);
	va_end(ap);
	c->err = -EINVAL;
}

static void add(struct ctx *c, const char *opt, const char *value)
{
	const char *items[2] = { opt, value };

	for (int i = 0; i < 2 && items[i] && !c->err; i++) {
		if ((size_t)c->out->argc + 2 > c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 16;
			char **n = realloc(c->out->argv, cap * sizeof(*n));

			if (!n) {
				c->err = -ENOMEM;
				return;
			}
			c->out->argv = n;
			c->cap = cap;
		}
		c->out->argv[c->out->argc] = strdup(items[i]);
		if (!c->out->argv[c->out->argc]) {
			c->err = -ENOMEM;
			return;
		}
		c->out->argv[++c->out->argc] = NULL;
	}
}

static void add_size(struct ctx *c, const char *opt, uint64_t bytes)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, bytes);
	add(c, opt, buf);
}

/* Records what has no effect, as "path" or "path@attr". */
static void unmapped(struct ctx *c, const char *path, const char *attr)
{
	size_t need = strlen(path) + (attr ? strlen(attr) + 1 : 0) + 3;
	char *n = realloc(c->out->unmapped, c->unmapped_len + need);

	if (!n) {
		c->err = -ENOMEM;
		return;
	}
	c->out->unmapped = n;
	c->unmapped_len += (size_t)snprintf(n + c->unmapped_len, need, "%s%s%s%s",
					    c->unmapped_len ? ", " : "", path, attr ? "@" : "", attr ? attr : "");
}

static bool is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* An attribute's value (owned by the caller's scratch: freed at the next call with the same
 * slot), or NULL. */
static const char *attr(const xmlNode *n, const char *name, int slot)
{
	static xmlChar *held[4];

	xmlFree(held[slot]);
	held[slot] = xmlGetProp(n, (const xmlChar *)name);
	return (const char *)held[slot];
}

static void attrs_free(void)
{
	for (int i = 0; i < 4; i++)
		attr(NULL, NULL, i);
}

/* Lists every attribute of n not in `known` (NULL-terminated). */
static void other_attrs(struct ctx *c, const xmlNode *n, const char *path, const char *const *known)
{
	for (const xmlAttr *a = n ? n->properties : NULL; a; a = a->next) {
		bool k = false;

		for (int i = 0; known && known[i]; i++)
			k = k || strcmp((const char *)a->name, known[i]) == 0;
		if (!k)
			unmapped(c, path, (const char *)a->name);
	}
}

static char *text(const xmlNode *n)
{
	xmlChar *t = xmlNodeGetContent(n);
	char *s = t ? strdup((const char *)t) : NULL;
	size_t len;

	xmlFree(t);
	if (!s)
		return NULL;
	for (len = strlen(s); len && isspace((unsigned char)s[len - 1]); len--)
		s[len - 1] = '\0';
	if (*s && isspace((unsigned char)*s))
		memmove(s, s + strspn(s, " \t\r\n"), strlen(s + strspn(s, " \t\r\n")) + 1);
	return s;
}

int libvirt_parse_size(const char *value, const char *unit, uint64_t *bytes)
{
	static const struct { const char *name; uint64_t mul; } units[] = {
		{ "b", 1 }, { "bytes", 1 }, { "KB", 1000ull }, { "k", 1ull << 10 }, { "KiB", 1ull << 10 },
		{ "MB", 1000000ull }, { "M", 1ull << 20 }, { "MiB", 1ull << 20 },
		{ "GB", 1000000000ull }, { "G", 1ull << 30 }, { "GiB", 1ull << 30 },
		{ "TB", 1000000000000ull }, { "T", 1ull << 40 }, { "TiB", 1ull << 40 },
		{ "PB", 1000000000000000ull }, { "P", 1ull << 50 }, { "PiB", 1ull << 50 },
		{ "EB", 1000000000000000000ull }, { "E", 1ull << 60 }, { "EiB", 1ull << 60 },
	};
	uint64_t v = 0, mul = 0;
	const char *p = value;

	if (!value || !*value)
		return -EINVAL;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (!unit)
		mul = 1024;
	/* libvirt compares units case-insensitively, except that "b" alone means bytes. */
	for (size_t i = 0; unit && i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(unit, units[i].name) == 0)
			mul = units[i].mul;
	if (!mul)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*bytes = v * mul;
	return 0;
}

/* A sized element (<memory unit='MiB'>1024</memory>). */
static bool size_of(struct ctx *c, const xmlNode *n, const char *path, uint64_t *bytes)
{
	static const char *const known[] = { "unit", NULL };
	char *t = text(n);
	const char *unit = attr(n, "unit", 0);
	int r = t ? libvirt_parse_size(t, unit, bytes) : -ENOMEM;

	other_attrs(c, n, path, known);
	if (r == -EINVAL)
		fail(c, "<%s>: '%s'%s%s%s is not a size: digits, and a unit libvirt knows (KiB by default)",
		     path, t ? t : "", unit ? " unit='" : "", unit ? unit : "", unit ? "'" : "");
	else if (r == -ERANGE)
		fail(c, "<%s>: '%s' is too large", path, t ? t : "");
	else if (r < 0)
		c->err = r;
	free(t);
	return r == 0;
}

static void do_memtune(struct ctx *c, const xmlNode *mt)
{
	for (const xmlNode *n = mt->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is(n, "hard_limit"))
			size_of(c, n, "memtune/hard_limit", &c->hard);
		else if (is(n, "soft_limit"))
			size_of(c, n, "memtune/soft_limit", &c->soft);
		else if (is(n, "min_guarantee"))
			size_of(c, n, "memtune/min_guarantee", &c->guarantee);
		else {
			char p[96];

			snprintf(p, sizeof(p), "memtune/%s", (const char *)n->name);
			unmapped(c, p, NULL);
		}
	}
	other_attrs(c, mt, "memtune", NULL);
}

static void do_memory_backing(struct ctx *c, const xmlNode *mb)
{
	for (const xmlNode *n = mb->children; n; n = n->next) {
		const char *t;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is(n, "nosharepages")) {
			add(c, "--mem-share", "off");
			other_attrs(c, n, "memoryBacking/nosharepages", NULL);
		} else if (is(n, "hugepages")) {
			/* <page size=.../> children: only 2 MiB pages exist in kvmm. */
			for (const xmlNode *pg = n->children; pg; pg = pg->next) {
				uint64_t sz;

				if (pg->type != XML_ELEMENT_NODE)
					continue;
				if (!is(pg, "page")) {
					unmapped(c, "memoryBacking/hugepages/?", NULL);
					continue;
				}
				if (libvirt_parse_size(attr(pg, "size", 1), attr(pg, "unit", 2), &sz) < 0 || sz != 2 * MIB)
					fail(c, "<memoryBacking><hugepages><page size='%s'>: kvmm has 2 MiB huge pages only",
					     attr(pg, "size", 1) ? attr(pg, "size", 1) : "");
				if (attr(pg, "nodeset", 3))
					unmapped(c, "memoryBacking/hugepages/page", "nodeset");
				other_attrs(c, pg, "memoryBacking/hugepages/page", (const char *const[]){ "size", "unit", "nodeset", NULL });
			}
			add(c, "--mem-backend", "hugetlb");
		} else if (is(n, "source")) {
			t = attr(n, "type", 0);
			if (t && strcmp(t, "memfd") == 0)
				add(c, "--mem-backend", "memfd");
			else if (!t || strcmp(t, "anonymous") == 0)
				add(c, "--mem-backend", "anon");
			else
				fail(c, "<memoryBacking><source type='%s'>: kvmm backs RAM with anonymous memory or a "
				     "memfd only", t);
			other_attrs(c, n, "memoryBacking/source", (const char *const[]){ "type", NULL });
		} else if (is(n, "locked") || is(n, "access") || is(n, "allocation") || is(n, "discard")) {
			char p[96];

			/* locked: kvmm never mlocks (reclaim needs the pages movable); access: guest RAM is
			 * private to the VMM unless the backend is memfd; allocation, discard: kvmm allocates
			 * on first touch and discards on balloon and reset anyway. */
			snprintf(p, sizeof(p), "memoryBacking/%s", (const char *)n->name);
			unmapped(c, p, NULL);
		} else {
			unmapped(c, "memoryBacking/?", (const char *)n->name);
		}
	}
}

static void do_os(struct ctx *c, const xmlNode *os, bool *kernel)
{
	for (const xmlNode *n = os->children; n; n = n->next) {
		char *t;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is(n, "type")) {
			const char *arch = attr(n, "arch", 0);

			t = text(n);
			if (t && strcmp(t, "hvm") != 0)
				fail(c, "<os><type>%s</type>: kvmm runs hvm guests only", t);
			if (arch && strcmp(arch, "x86_64") != 0 && strcmp(arch, "i686") != 0)
				fail(c, "<os><type arch='%s'>: kvmm runs x86_64 guests only", arch);
			other_attrs(c, n, "os/type", (const char *const[]){ "arch", NULL });
			free(t);
			continue;
		}
		if (!is(n, "kernel") && !is(n, "initrd") && !is(n, "cmdline")) {
			char p[96];

			snprintf(p, sizeof(p), "os/%s", (const char *)n->name);
			unmapped(c, p, NULL);
			continue;
		}
		t = text(n);
		if (!t) {
			c->err = -ENOMEM;
			return;
		}
		if (is(n, "kernel")) {
			add(c, "--kernel", t);
			*kernel = true;
		} else if (is(n, "initrd")) {
			add(c, "--initrd", t);
		} else {
			add(c, "--append", t);
		}
		free(t);
	}
	other_attrs(c, os, "os", NULL);
}

static void do_serial(struct ctx *c, const xmlNode *n, const char *what, bool *have)
{
	const char *type = attr(n, "type", 0);
	char spec[4200];

	if (is(n, "console")) {
		/* A <console> with a serial target is libvirt's alias of the first <serial>. */
		for (const xmlNode *t = n->children; t; t = t->next)
			if (is(t, "target") && attr(t, "type", 1) && strcmp(attr(t, "type", 1), "serial") != 0) {
				fail(c, "<console><target type='%s'>: kvmm has no such console (only the serial "
				     "port COM1)", attr(t, "type", 1));
				return;
			}
		if (*have)
			return;
	}
	if (*have) {
		fail(c, "<%s>: kvmm has one serial port (COM1); remove the others", what);
		return;
	}
	*have = true;
	if (!type || strcmp(type, "pty") == 0 || strcmp(type, "stdio") == 0) {
		add(c, "--serial", "stdio");
		return;
	}
	if (strcmp(type, "file") == 0 || strcmp(type, "unix") == 0) {
		const char *path = NULL;

		for (const xmlNode *s = n->children; s; s = s->next)
			if (is(s, "source"))
				path = attr(s, "path", 1);
		if (!path) {
			fail(c, "<%s type='%s'>: needs <source path='...'/>", what, type);
			return;
		}
		snprintf(spec, sizeof(spec), "%s:%s", type, path);
		add(c, "--serial", spec);
		return;
	}
	fail(c, "<%s type='%s'>: kvmm's serial port goes to stdio (pty), a file or a unix socket", what, type);
}

static void do_balloon(struct ctx *c, const xmlNode *n)
{
	const char *model = attr(n, "model", 0);
	char opts[128] = "";
	size_t len = 0;

	if (model && strcmp(model, "none") == 0)
		return;
	if (!model || (strcmp(model, "virtio") != 0 && strcmp(model, "virtio-non-transitional") != 0 &&
		       strcmp(model, "virtio-transitional") != 0)) {
		fail(c, "<memballoon model='%s'>: kvmm has a virtio balloon only", model ? model : "");
		return;
	}
	if (attr(n, "autodeflate", 1) && strcmp(attr(n, "autodeflate", 1), "on") == 0)
		len += (size_t)snprintf(opts + len, sizeof(opts) - len, "%sdeflate-on-oom", len ? "," : "");
	if (attr(n, "freePageReporting", 1) && strcmp(attr(n, "freePageReporting", 1), "on") == 0)
		len += (size_t)snprintf(opts + len, sizeof(opts) - len, "%sfree-page-reporting", len ? "," : "");
	for (const xmlNode *s = n->children; s; s = s->next) {
		if (s->type != XML_ELEMENT_NODE)
			continue;
		if (is(s, "stats") && attr(s, "period", 2)) {
			len += (size_t)snprintf(opts + len, sizeof(opts) - len, "%sstats-interval=%s",
						len ? "," : "", attr(s, "period", 2));
			other_attrs(c, s, "memballoon/stats", (const char *const[]){ "period", NULL });
		} else {
			char p[96];

			snprintf(p, sizeof(p), "memballoon/%s", (const char *)s->name);
			unmapped(c, p, NULL);
		}
	}
	other_attrs(c, n, "memballoon", (const char *const[]){ "model", "autodeflate", "freePageReporting", NULL });
	if (len) {
		char arg[160];

		snprintf(arg, sizeof(arg), "--balloon=%s", opts);
		add(c, arg, NULL);
	} else {
		add(c, "--balloon", NULL);
	}
}

/* Devices kvmm has no model of: the domain would run without them, so it does not run. */
static const char *const lacking[] = {
	"disk", "interface", "graphics", "video", "sound", "hostdev", "filesystem", "channel", "rng",
	"tpm", "watchdog", "smartcard", "redirdev", "hub", "shmem", "memory", "iommu", "vsock",
	"parallel", "crypto", "lease", "redirfilter", NULL,
};

static void do_devices(struct ctx *c, const xmlNode *devs)
{
	char missing[256] = "";
	size_t mlen = 0;
	bool serial = false;

	for (const xmlNode *n = devs->children; n; n = n->next) {
		char p[96];
		bool lacks = false;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		for (int i = 0; lacking[i]; i++)
			lacks = lacks || is(n, lacking[i]);
		if (lacks) {
			if (!strstr(missing, (const char *)n->name) && mlen < sizeof(missing))
				mlen += (size_t)snprintf(missing + mlen, sizeof(missing) - mlen, "%s<%s>",
							 mlen ? ", " : "", (const char *)n->name);
		} else if (is(n, "serial")) {
			do_serial(c, n, "serial", &serial);
		} else if (is(n, "console")) {
			do_serial(c, n, "console", &serial);
		} else if (is(n, "memballoon")) {
			do_balloon(c, n);
		} else if (is(n, "controller") && attr(n, "model", 0) && strcmp(attr(n, "model", 0), "pci-root") == 0) {
			/* kvmm's PCI host bridge. */
		} else {
			const char *type = attr(n, "type", 0);

			snprintf(p, sizeof(p), "devices/%s%s%s%s", (const char *)n->name, type ? "[" : "",
				 type ? type : "", type ? "]" : "");
			unmapped(c, p, NULL);
		}
	}
	if (mlen)
		fail(c, "devices kvmm does not have: %s; remove them to run this domain under kvmm", missing);
}

static void do_features(struct ctx *c, const xmlNode *f, bool *acpi)
{
	for (const xmlNode *n = f->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is(n, "acpi"))
			*acpi = true;
		else if (!is(n, "apic")) {
			char p[96];

			snprintf(p, sizeof(p), "features/%s", (const char *)n->name);
			unmapped(c, p, NULL);
		}
	}
}

static void do_cpu(struct ctx *c, const xmlNode *n)
{
	const char *mode = attr(n, "mode", 0);

	if (mode && strcmp(mode, "host-passthrough") != 0 && strcmp(mode, "host-model") != 0 &&
	    strcmp(mode, "maximum") != 0)
		unmapped(c, "cpu", "mode"); /* custom models: kvmm gives the host's CPUID */
	other_attrs(c, n, "cpu", (const char *const[]){ "mode", "check", "migratable", NULL });
	for (const xmlNode *s = n->children; s; s = s->next)
		if (s->type == XML_ELEMENT_NODE) {
			char p[96];

			snprintf(p, sizeof(p), "cpu/%s", (const char *)s->name);
			unmapped(c, p, NULL);
		}
}

/* <memory>, <currentMemory> and <memtune> as options: the memtune values through the cgroup
 * rule (they bound the whole process in libvirt), with the overhead estimated. */
static void memory_options(struct ctx *c)
{
	struct cgroup_mem cg = {
		.max = c->hard ? c->hard : CGROUP_NO_LIMIT,
		.high = c->soft ? c->soft : CGROUP_NO_LIMIT,
		.low = c->guarantee,
	};
	struct cgroup_policy p;
	uint64_t overhead = cgroup_overhead(&cg, c->memory, 0);
	uint64_t bound = cg.max < cg.high ? cg.max : cg.high;
	uint64_t margin = bound != CGROUP_NO_LIMIT && bound / 32 > 4 * MIB ? bound / 32 : 4 * MIB;

	if (!c->have_memory) {
		fail(c, "<memory> is missing");
		return;
	}
	add_size(c, "--memory", c->memory);
	if (c->current && c->current != c->memory)
		unmapped(c, "currentMemory", NULL); /* no start-up balloon target: QMP balloon after start */
	if (!c->hard && !c->soft && !c->guarantee)
		return;
	cgroup_map(&cg, c->memory, overhead, margin, 0, 0, &p);
	if (p.limited)
		add_size(c, "--mem-limit", p.limit);
	if (p.reservation)
		add_size(c, "--mem-reservation", p.reservation);
}

static void do_domain(struct ctx *c, const xmlNode *dom)
{
	bool kernel = false, acpi = false;
	const char *type = attr(dom, "type", 0);

	if (type && strcmp(type, "kvm") != 0)
		unmapped(c, "domain", "type"); /* kvmm is always KVM */
	other_attrs(c, dom, "domain", (const char *const[]){ "type", "id", NULL });
	for (const xmlNode *n = dom->children; n && !c->err; n = n->next) {
		char *t;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is(n, "name")) {
			t = text(n);
			add(c, "--name", t ? t : "");
			free(t);
		} else if (is(n, "memory")) {
			c->have_memory = size_of(c, n, "memory", &c->memory);
		} else if (is(n, "currentMemory")) {
			size_of(c, n, "currentMemory", &c->current);
		} else if (is(n, "vcpu")) {
			t = text(n);
			add(c, "--cpus", t ? t : "");
			free(t);
			other_attrs(c, n, "vcpu", (const char *const[]){ "placement", NULL });
		} else if (is(n, "os")) {
			do_os(c, n, &kernel);
		} else if (is(n, "memtune")) {
			do_memtune(c, n);
		} else if (is(n, "memoryBacking")) {
			do_memory_backing(c, n);
		} else if (is(n, "devices")) {
			do_devices(c, n);
		} else if (is(n, "features")) {
			do_features(c, n, &acpi);
		} else if (is(n, "cpu")) {
			do_cpu(c, n);
		} else if (is(n, "on_reboot")) {
			t = text(n);
			if (t && strcmp(t, "destroy") == 0)
				add(c, "--no-reboot", NULL);
			else if (t && strcmp(t, "restart") != 0)
				unmapped(c, "on_reboot", NULL);
			free(t);
		} else if (is(n, "on_poweroff")) {
			t = text(n);
			if (t && strcmp(t, "destroy") != 0)
				unmapped(c, "on_poweroff", NULL); /* kvmm exits at power-off */
			free(t);
		} else {
			unmapped(c, (const char *)n->name, NULL);
		}
	}
	if (!c->err && !kernel)
		fail(c, "<os> has no <kernel>: kvmm boots a kernel directly (no firmware, no disks)");
	if (!c->err && !acpi)
		unmapped(c, "features/acpi (absent: kvmm always provides ACPI)", NULL);
	if (!c->err)
		memory_options(c);
}

static void quiet(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

int libvirt_import_parse(const char *xml, size_t len, struct libvirt_import *out)
{
	struct ctx c = { .out = out };
	const xmlNode *root;
	xmlDoc *doc;

	memset(out, 0, sizeof(*out));
	add(&c, "run", NULL);
	if (c.err)
		return c.err;
	if (len > MAX_XML || len > INT32_MAX) {
		fail(&c, "the document is larger than %u MiB", MAX_XML >> 20);
		return c.err;
	}
	xmlSetGenericErrorFunc(NULL, quiet);
	/* No network, no entity expansion, no DTD loading: the document is untrusted. */
	doc = xmlReadMemory(xml, (int)len, "domain.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
			    XML_PARSE_NOWARNING);
	if (!doc) {
		const xmlError *e = xmlGetLastError();

		fail(&c, "not well-formed XML%s%s", e && e->message ? ": " : "",
		     e && e->message ? e->message : "");
		for (size_t i = strlen(out->error); i && out->error[i - 1] == '\n'; i--)
			out->error[i - 1] = '\0';
		return c.err;
	}
	root = xmlDocGetRootElement(doc);
	if (!root || !is(root, "domain"))
		fail(&c, "the root element is <%s>, not <domain>", root ? (const char *)root->name : "");
	else
		do_domain(&c, root);
	xmlFreeDoc(doc);
	attrs_free();
	return c.err;
}

void libvirt_import_free(struct libvirt_import *imp)
{
	for (int i = 0; imp->argv && i < imp->argc; i++)
		free(imp->argv[i]);
	free(imp->argv);
	free(imp->unmapped);
	memset(imp, 0, sizeof(*imp));
}
