/* -object (memory backends, secrets), -device, -chardev and -add-fd for the QEMU front, and how
 * they connect once every option is read (qemu_args.c drives them). */
#include "qemu_args_internal.h"

#include <kvmm/size.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#define QA_HUGETLBFS_MAGIC 0x958458f6 /* linux/magic.h */
#define QA_HUGE_PAGE (2ull << 20)
#define QA_FDSET_PREFIX "/dev/fdset/"

static bool qa_fd_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

static int qa_set_str(char **field, const char *value)
{
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

/* memory-backend-file is supported where it means hugetlb pages: a path on hugetlbfs. */
static int qa_backend_file(struct qemu_args *qa, const char *path, struct qemu_backend *b)
{
	struct statfs st;

	if (!path)
		return qa_fail(qa, "-object memory-backend-file: mem-path= is required");
	if (statfs(path, &st) < 0)
		return qa_fail(qa, "-object memory-backend-file: mem-path '%s': %s", path,
			       strerror(errno));
	if ((unsigned long)st.f_type != QA_HUGETLBFS_MAGIC)
		return qa_fail(qa, "-object memory-backend-file: mem-path '%s' is not on hugetlbfs: "
			       "kvmm backs guest RAM with files only as hugetlb pages", path);
	b->backend = MEM_BACKEND_HUGETLB;
	return 0;
}

static int qa_backend(struct qemu_args *qa, const char *type, struct qprops *p)
{
	struct qemu_backend b = { .merge = true, .backend = MEM_BACKEND_ANON };
	const char *id = qprops_get(p, "id"), *size = qprops_get(p, "size");
	bool share = false, prealloc = false, hugetlb = false, ignored;
	const char *hsize;
	int r = 0;

	if (!id || !size)
		return qa_fail(qa, "-object %s: id= and size= are required", type);
	if (qa->nbackends == QEMU_ARGS_MAX_BACKENDS)
		return qa_fail(qa, "-object %s: more than %d memory backends", type,
			       QEMU_ARGS_MAX_BACKENDS);
	r = qa_size(qa, "object", size, &b.size);
	/* prealloc: kvmm allocates on touch and manages the memory itself (its hugetlb backend
	 * reserves every page at start anyway); dump, the canonical-path flag, NUMA-less policy:
	 * no effect without NUMA or core dumps. */
	if (r == 0)
		r = qa_bool(qa, "object", p, "share", &share);
	if (r == 0)
		r = qa_bool(qa, "object", p, "prealloc", &prealloc);
	if (r == 0)
		r = qa_bool(qa, "object", p, "merge", &b.merge);
	if (r == 0)
		r = qa_bool(qa, "object", p, "dump", &ignored);
	if (r == 0)
		r = qa_bool(qa, "object", p, "x-use-canonical-path-for-ramblock-id", &ignored);
	qprops_get(p, "prealloc-threads");
	if (r)
		return r;
	if (strcmp(type, "memory-backend-ram") == 0) {
		b.backend = share ? MEM_BACKEND_MEMFD : MEM_BACKEND_ANON;
	} else if (strcmp(type, "memory-backend-memfd") == 0) {
		r = qa_bool(qa, "object", p, "hugetlb", &hugetlb);
		hsize = qprops_get(p, "hugetlbsize");
		qprops_get(p, "seal");
		if (r == 0 && hsize) {
			uint64_t hs;

			if (qa_size(qa, "object", hsize, &hs) < 0 || hs != QA_HUGE_PAGE)
				r = qa_fail(qa, "-object %s: hugetlbsize=%s: kvmm uses 2M pages", type,
					    hsize);
		}
		b.backend = hugetlb ? MEM_BACKEND_HUGETLB : MEM_BACKEND_MEMFD;
	} else {
		qprops_get(p, "discard-data");
		r = qa_backend_file(qa, qprops_get(p, "mem-path"), &b);
	}
	if (r == 0 && b.backend == MEM_BACKEND_HUGETLB && b.size % QA_HUGE_PAGE)
		r = qa_fail(qa, "-object %s: size %s is not a multiple of the 2M hugetlb page", type,
			    size);
	if (r == 0)
		r = qa_set_str(&b.id, id);
	if (r == 0)
		qa->backends[qa->nbackends++] = b;
	return r;
}

int qa_opt_object(struct qemu_args *qa, const char *value)
{
	struct qprops p;
	const char *type;
	int r = qa_props(qa, "object", value, "qom-type", &p);

	if (r)
		return r;
	type = qprops_get(&p, "qom-type");
	if (!type) {
		r = qa_fail(qa, "-object %s: qom-type is required", value);
	} else if (strcmp(type, "secret") == 0) {
		/* libvirt's master key for encrypted secrets: kvmm has nothing encrypted to open. */
		for (size_t i = 0; i < p.n; i++)
			p.v[i].used = true;
	} else if (strncmp(type, "memory-backend-", 15) == 0 &&
		   (strcmp(type + 15, "ram") == 0 || strcmp(type + 15, "memfd") == 0 ||
		    strcmp(type + 15, "file") == 0)) {
		r = qa_backend(qa, type, &p);
	} else {
		r = qa_fail(qa, "-object %s: object type '%s' is not supported by kvmm", value, type);
	}
	if (r) {
		qprops_free(&p);
		return r;
	}
	return qa_props_done(qa, "object", type, &p);
}

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.' and '_'. */
static bool qa_id_wellformed(const char *id)
{
	if (!isalpha((unsigned char)id[0]))
		return false;
	for (const char *c = id + 1; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("-._", *c))
			return false;
	return true;
}

/* kvmm's one balloon is at /machine/peripheral/ID (where libvirt looks for it; without id=,
 * kvmm's BALLOON_ID, where QEMU would hide it under peripheral-anon); its PCI slot is kvmm's own,
 * so bus= and addr= are accepted as placement hints only (docs/libvirt.md). */
static int qa_balloon(struct qemu_args *qa, struct qprops *p)
{
	const char *id = qprops_get(p, "id"), *bus = qprops_get(p, "bus");
	int r = 0;

	qprops_get(p, "addr");
	if (qa->cfg.balloon)
		return qa_fail(qa, "-device virtio-balloon-pci: kvmm has one balloon");
	if (id && !qa_id_wellformed(id))
		return qa_fail(qa, "-device virtio-balloon-pci: Parameter 'id' expects an identifier");
	if (bus && strcmp(bus, "pci.0") != 0)
		return qa_fail(qa, "-device virtio-balloon-pci: bus '%s': kvmm has only pci.0", bus);
	r = qa_bool(qa, "device", p, "deflate-on-oom", &qa->cfg.balloon_deflate_on_oom);
	if (r == 0)
		r = qa_bool(qa, "device", p, "free-page-reporting",
			    &qa->cfg.balloon_free_page_reporting);
	if (r == 0 && id)
		r = qa_set_str(&qa->cfg.balloon_id, id);
	if (r == 0)
		qa->cfg.balloon = true;
	return r;
}

static int qa_isa_serial(struct qemu_args *qa, struct qprops *p)
{
	const char *chr = qprops_get(p, "chardev"), *index = qprops_get(p, "index");

	qprops_get(p, "id");
	if (!chr)
		return qa_fail(qa, "-device isa-serial: chardev= is required");
	if (qa->serial_chardev || (index && strcmp(index, "0") != 0))
		return qa_fail(qa, "-device isa-serial: kvmm has one serial port (COM1, index 0)");
	return qa_set_str(&qa->serial_chardev, chr);
}

int qa_opt_device(struct qemu_args *qa, const char *value)
{
	struct qprops p;
	const char *drv;
	int r = qa_props(qa, "device", value, "driver", &p);

	if (r)
		return r;
	drv = qprops_get(&p, "driver");
	if (!drv) {
		r = qa_fail(qa, "-device %s: driver is required", value);
	} else if (strcmp(drv, "virtio-balloon-pci") == 0) {
		r = qa_balloon(qa, &p);
	} else if (strcmp(drv, "isa-serial") == 0) {
		r = qa_isa_serial(qa, &p);
	} else if (strcmp(drv, "piix3-usb-uhci") == 0) {
		/* libvirt adds a USB controller to every pc domain; kvmm has no USB, and nothing is
		 * plugged into it unless the domain has USB devices, which kvmm refuses. */
		for (size_t i = 0; i < p.n; i++)
			p.v[i].used = true;
	} else {
		r = qa_fail(qa, "kvmm: device '%s' is not supported", drv);
	}
	if (r) {
		qprops_free(&p);
		return r;
	}
	return qa_props_done(qa, "device", drv, &p);
}

static struct qemu_chardev *qa_chardev_find(struct qemu_args *qa, const char *id)
{
	for (unsigned i = 0; i < qa->nchardevs; i++)
		if (strcmp(qa->chardevs[i].id, id) == 0)
			return &qa->chardevs[i];
	return NULL;
}

/* socket: an inherited listening socket (fd=N, what libvirt passes) or a path to listen on. */
static int qa_chardev_socket(struct qemu_args *qa, struct qprops *p, struct qemu_chardev *c)
{
	const char *fd = qprops_get(p, "fd"), *path = qprops_get(p, "path");
	bool server = false, wait = true;
	uint64_t n;
	struct stat st;
	int r = qa_bool(qa, "chardev", p, "server", &server);

	if (r == 0)
		r = qa_bool(qa, "chardev", p, "wait", &wait);
	if (r)
		return r;
	if (!server || wait)
		return qa_fail(qa, "-chardev socket,id=%s: kvmm's sockets listen: use server=on,wait=off",
			       c->id);
	if (!fd == !path)
		return qa_fail(qa, "-chardev socket,id=%s: give one of fd= and path=", c->id);
	if (path)
		return qa_set_str(&c->path, path);
	if (qprop_uint(fd, 65535, &n) < 0 || n <= 2 || !qa_fd_open((int)n))
		return qa_fail(qa, "-chardev socket,id=%s: fd=%s is not an open file descriptor", c->id,
			       fd);
	if (fstat((int)n, &st) < 0 || !S_ISSOCK(st.st_mode))
		return qa_fail(qa, "-chardev socket,id=%s: fd=%s is not a socket", c->id, fd);
	c->fd = (int)n;
	return 0;
}

int qa_opt_chardev(struct qemu_args *qa, const char *value)
{
	struct qemu_chardev c = { .fd = -1 };
	struct qprops p;
	const char *backend, *id;
	int r = qa_props(qa, "chardev", value, "backend", &p);

	if (r)
		return r;
	backend = qprops_get(&p, "backend");
	id = qprops_get(&p, "id");
	if (!backend || !id)
		r = qa_fail(qa, "-chardev %s: a backend and id= are required", value);
	else if (qa_chardev_find(qa, id))
		r = qa_fail(qa, "-chardev %s: duplicate chardev id '%s'", value, id);
	else if (qa->nchardevs == QEMU_ARGS_MAX_CHARDEVS)
		r = qa_fail(qa, "-chardev %s: more than %d chardevs", value, QEMU_ARGS_MAX_CHARDEVS);
	if (r == 0) {
		c.id = (char *)id;
		if (strcmp(backend, "socket") == 0) {
			c.kind = QEMU_CHR_SOCKET;
			r = qa_chardev_socket(qa, &p, &c);
		} else if (strcmp(backend, "file") == 0) {
			const char *path = qprops_get(&p, "path");

			c.kind = QEMU_CHR_FILE;
			r = path ? qa_bool(qa, "chardev", &p, "append", &c.append)
				 : qa_fail(qa, "-chardev file,id=%s: path= is required", id);
			if (r == 0)
				r = qa_set_str(&c.path, path);
		} else if (strcmp(backend, "stdio") == 0) {
			bool sig;

			c.kind = QEMU_CHR_STDIO;
			r = qa_bool(qa, "chardev", &p, "signal", &sig);
		} else if (strcmp(backend, "pty") == 0) {
			r = qa_fail(qa, "-chardev pty,id=%s: pty chardevs are not supported by kvmm (use "
				    "a file or unix socket serial)", id);
		} else {
			r = qa_fail(qa, "-chardev %s: chardev backend '%s' is not supported by kvmm",
				    value, backend);
		}
	}
	c.id = NULL;
	if (r == 0)
		r = qa_set_str(&c.id, id);
	if (r) {
		free(c.path);
		qprops_free(&p);
		return r;
	}
	qa->chardevs[qa->nchardevs++] = c;
	return qa_props_done(qa, "chardev", c.id, &p);
}

/* -add-fd set=N,fd=M[,opaque=TEXT]: an inherited fd that /dev/fdset/N paths then name. */
int qa_opt_add_fd(struct qemu_args *qa, const char *value)
{
	struct qprops p;
	const char *set, *fd;
	uint64_t s, f;
	int r = qa_props(qa, "add-fd", value, NULL, &p);

	if (r)
		return r;
	set = qprops_get(&p, "set");
	fd = qprops_get(&p, "fd");
	qprops_get(&p, "opaque");
	if (!set || !fd || qprop_uint(set, INT32_MAX, &s) < 0 || qprop_uint(fd, 65535, &f) < 0)
		r = qa_fail(qa, "-add-fd %s: set=N and fd=M are required", value);
	else if (f <= 2)
		r = qa_fail(qa, "-add-fd %s: fd cannot be a standard I/O stream", value);
	else if (!qa_fd_open((int)f))
		r = qa_fail(qa, "-add-fd %s: fd %s is not an open file descriptor", value, fd);
	else if (qa->nfds == QEMU_ARGS_MAX_FDS)
		r = qa_fail(qa, "-add-fd %s: more than %d fds", value, QEMU_ARGS_MAX_FDS);
	if (r) {
		qprops_free(&p);
		return r;
	}
	qa->fds[qa->nfds++] = (struct qemu_fdset_entry){ .set = (unsigned)s, .fd = (int)f };
	return qa_props_done(qa, "add-fd", value, &p);
}

int qa_resolve_backend(struct qemu_args *qa)
{
	struct vm_config *cfg = &qa->cfg;
	const struct qemu_backend *b = NULL;
	char a[32], c[32];

	if (!qa->machine_backend)
		return 0;
	for (unsigned i = 0; i < qa->nbackends && !b; i++)
		if (strcmp(qa->backends[i].id, qa->machine_backend) == 0)
			b = &qa->backends[i];
	if (!b)
		return qa_fail(qa, "-machine memory-backend=%s: memory backend '%s' not found",
			       qa->machine_backend, qa->machine_backend);
	if (qa->m_given && b->size != cfg->memory)
		return qa_fail(qa, "-machine memory-backend=%s: size %s differs from -m %s",
			       b->id, size_format(b->size, a, sizeof(a)),
			       size_format(cfg->memory, c, sizeof(c)));
	if (b->size < (16ull << 20) || b->size % 4096)
		return qa_fail(qa, "-object %s: kvmm needs at least 16M of memory, in whole 4K pages",
			       b->id);
	cfg->memory = b->size;
	cfg->mem_backend = b->backend;
	if (!b->merge)
		cfg->mem_share = MEM_SHARE_OFF;
	/* kvmm's hugetlb pages cannot be shared (docs/architecture.md). */
	if (b->backend == MEM_BACKEND_HUGETLB)
		cfg->mem_share = MEM_SHARE_OFF;
	return 0;
}

/* /dev/fdset/N: the set's first fd open for writing (QEMU matches the access mode). */
static int qa_fdset_writer(struct qemu_args *qa, const char *path, int *fd)
{
	uint64_t set;

	if (qprop_uint(path + strlen(QA_FDSET_PREFIX), INT32_MAX, &set) < 0)
		return qa_fail(qa, "%s: not a valid fd set path", path);
	for (unsigned i = 0; i < qa->nfds; i++) {
		int fl = qa->fds[i].set == set ? fcntl(qa->fds[i].fd, F_GETFL) : -1;

		if (fl >= 0 && (fl & O_ACCMODE) != O_RDONLY) {
			*fd = qa->fds[i].fd;
			return 0;
		}
	}
	return qa_fail(qa, "%s: no fd open for writing in set %llu (-add-fd set=%llu,fd=N)", path,
		       (unsigned long long)set, (unsigned long long)set);
}

static int qa_resolve_serial(struct qemu_args *qa)
{
	struct vm_config *cfg = &qa->cfg;
	const struct qemu_chardev *c;

	if (!qa->serial_chardev) {
		/* No serial port asked for: COM1 still exists in kvmm; its output goes nowhere. */
		cfg->serial = SERIAL_FILE;
		return qa_set_str(&cfg->serial_path, "/dev/null");
	}
	c = qa_chardev_find(qa, qa->serial_chardev);
	if (!c)
		return qa_fail(qa, "-device isa-serial: chardev '%s' not found", qa->serial_chardev);
	if (qa_set_str(&cfg->chardev_serial, c->id) < 0)
		return -ENOMEM;
	switch (c->kind) {
	case QEMU_CHR_STDIO:
		cfg->serial = SERIAL_STDIO;
		return 0;
	case QEMU_CHR_FILE:
		cfg->serial = SERIAL_FILE;
		cfg->serial_append = c->append;
		if (strncmp(c->path, QA_FDSET_PREFIX, strlen(QA_FDSET_PREFIX)) == 0)
			return qa_fdset_writer(qa, c->path, &cfg->serial_fd);
		return qa_set_str(&cfg->serial_path, c->path);
	case QEMU_CHR_SOCKET:
		if (c->fd >= 0)
			return qa_fail(qa, "-chardev %s: a serial port on an inherited socket is not "
				       "supported by kvmm", c->id);
		cfg->serial = SERIAL_UNIX;
		return qa_set_str(&cfg->serial_path, c->path);
	}
	return -EINVAL;
}

int qa_resolve_chardevs(struct qemu_args *qa)
{
	const struct qemu_chardev *c;

	if (qa->mon_chardev) {
		c = qa_chardev_find(qa, qa->mon_chardev);
		if (!c)
			return qa_fail(qa, "-mon chardev=%s: chardev '%s' not found", qa->mon_chardev,
				       qa->mon_chardev);
		if (c->kind != QEMU_CHR_SOCKET)
			return qa_fail(qa, "-mon chardev=%s: kvmm serves QMP on a socket only", c->id);
		if (qa_set_str(&qa->cfg.chardev_monitor, c->id) < 0)
			return -ENOMEM;
		if (c->fd >= 0)
			qa->cfg.qmp_fd = c->fd;
		else if (qa_set_str(&qa->cfg.qmp, c->path) < 0)
			return -ENOMEM;
	}
	return qa_resolve_serial(qa);
}
