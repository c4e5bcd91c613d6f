/* cgroup v2 memory files: reading them and the rule that turns them into the VM's limit and
 * reservation (kvmm/cgroup.h). Here and not in src/libvirt/: libvirt is one of several writers of
 * these files (systemd and container runtimes write the same), and what they mean for kvmm is
 * memory policy, next to the reclaimer that enforces it. No state; file reads only. */
#include <kvmm/cgroup.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1ull << 20)
#define OVERHEAD_BASE (8ull << 20) /* as hostd's admission estimate (src/sched/client.c) */
#define OVERHEAD_PER_PAGE_SHIFT 8

int cgroup_parse_value(const char *text, uint64_t *out)
{
	const char *p = text;
	uint64_t v = 0;

	if (!text)
		return -EINVAL;
	while (isspace((unsigned char)*p))
		p++;
	if (strncmp(p, "max", 3) == 0) {
		v = CGROUP_NO_LIMIT;
		p += 3;
	} else {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			unsigned d = (unsigned)(*p - '0');

			if (v > (UINT64_MAX - d) / 10)
				return -EINVAL;
			v = v * 10 + d;
		}
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p)
		return -EINVAL;
	*out = v;
	return 0;
}

int cgroup_parse_events(const char *text, struct cgroup_events *ev)
{
	struct cgroup_events out = { 0 };
	const struct { const char *key; uint64_t *val; } keys[] = {
		{ "low", &out.low }, { "high", &out.high }, { "max", &out.max },
		{ "oom", &out.oom }, { "oom_kill", &out.oom_kill },
	};
	const char *line = text;

	if (!text)
		return -EINVAL;
	while (*line) {
		const char *end = strchr(line, '\n'), *sp = strchr(line, ' ');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char num[32];

		if (sp && sp < line + len) {
			size_t klen = (size_t)(sp - line), nlen = len - klen - 1;

			for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
				if (strlen(keys[i].key) != klen || strncmp(line, keys[i].key, klen) != 0)
					continue;
				if (nlen >= sizeof(num))
					return -EINVAL;
				memcpy(num, sp + 1, nlen);
				num[nlen] = '\0';
				if (cgroup_parse_value(num, keys[i].val) < 0 || *keys[i].val == CGROUP_NO_LIMIT)
					return -EINVAL;
			}
		}
		line += len + (end ? 1 : 0);
	}
	*ev = out;
	return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static int unescape(const char *s, size_t n, char *out, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
		    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
			c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
			i += 3;
		}
		if (o + 1 >= len)
			return -ENAMETOOLONG;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

/* Field i (0-based, space separated) of a line: its start and length, or NULL. */
static const char *field(const char *line, size_t line_len, unsigned i, size_t *len)
{
	const char *p = line, *end = line + line_len;

	for (;;) {
		const char *q = p;

		while (q < end && *q != ' ')
			q++;
		if (i-- == 0) {
			*len = (size_t)(q - p);
			return p;
		}
		if (q >= end)
			return NULL;
		p = q + 1;
	}
}

/* The cgroup2 mount from mountinfo: its root (within the hierarchy) and mount point. */
static int find_mount(const char *mountinfo, char *root, size_t root_len, char *mnt, size_t mnt_len)
{
	const char *line = mountinfo;

	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		const char *sep = strstr(line, " - ");

		if (sep && sep < line + len) {
			size_t flen;
			const char *fs = field(sep + 3, len - (size_t)(sep + 3 - line), 0, &flen);

			if (fs && flen == 7 && strncmp(fs, "cgroup2", 7) == 0) {
				size_t rlen = 0, mlen = 0;
				const char *r = field(line, len, 3, &rlen), *m = field(line, len, 4, &mlen);
				int e;

				if (!r || !m || rlen == 0 || mlen == 0)
					return -EINVAL;
				if ((e = unescape(r, rlen, root, root_len)) < 0 ||
				    (e = unescape(m, mlen, mnt, mnt_len)) < 0)
					return e;
				return 0;
			}
		}
		line = end ? end + 1 : NULL;
	}
	return -ENOENT;
}

int cgroup_self_dir(const char *proc_cgroup, const char *mountinfo, char *dir, size_t dir_len,
		    char *top, size_t top_len)
{
	char root[4096], path[4096];
	const char *line = proc_cgroup, *rel;
	bool found = false;
	size_t rlen;
	int r;

	if (!proc_cgroup || !mountinfo)
		return -EINVAL;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		if (len >= 3 && strncmp(line, "0::", 3) == 0) {
			if (len - 3 >= sizeof(path))
				return -ENAMETOOLONG;
			memcpy(path, line + 3, len - 3);
			path[len - 3] = '\0';
			found = true;
			break;
		}
		line = end ? end + 1 : NULL;
	}
	if (!found)
		return -ENOENT;
	if (path[0] != '/')
		return -EINVAL;
	if ((r = find_mount(mountinfo, root, sizeof(root), top, top_len)) < 0)
		return r;
	/* A mount of a sub-tree (a container's view): the path is under its root. */
	rel = path;
	rlen = strlen(root);
	if (strcmp(root, "/") != 0) {
		if (strncmp(path, root, rlen) != 0 || (path[rlen] != '/' && path[rlen] != '\0'))
			return -ENOENT;
		rel = path + rlen;
	}
	if (strstr(rel, "/../") || (strlen(rel) >= 3 && strcmp(rel + strlen(rel) - 3, "/..") == 0))
		return -EINVAL;
	if ((size_t)snprintf(dir, dir_len, "%s%s", top, strcmp(rel, "/") == 0 ? "" : rel) >= dir_len)
		return -ENAMETOOLONG;
	return 0;
}

/* Reads a whole small file into buf; -errno. */
static int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	close(fd);
	buf[n] = '\0';
	return (size_t)n == len - 1 ? -EFBIG : 0;
}

static int read_file(const char *dir, const char *name, char *buf, size_t len)
{
	char path[4200];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	return read_text(path, buf, len);
}

int cgroup_self_dir_proc(char *dir, size_t dir_len, char *top, size_t top_len)
{
	static char cg[8192], mi[65536];
	int r;

	if ((r = read_text("/proc/self/cgroup", cg, sizeof(cg))) < 0 ||
	    (r = read_text("/proc/self/mountinfo", mi, sizeof(mi))) < 0)
		return r;
	return cgroup_self_dir(cg, mi, dir, dir_len, top, top_len);
}

/* One value file of one level: 0 and *v, 1 when absent (no limit there), -EINVAL when bad. */
static int read_value(const char *dir, const char *name, uint64_t *v)
{
	char buf[64];
	int r = read_file(dir, name, buf, sizeof(buf));

	if (r == -ENOENT)
		return 1;
	if (r < 0)
		return r == -EFBIG ? -EINVAL : r;
	return cgroup_parse_value(buf, v);
}

/* memory.stat's active_file + inactive_file. */
static uint64_t read_file_cache(const char *dir)
{
	static char buf[16384];
	unsigned long long a = 0, i = 0;
	const char *p;

	if (read_file(dir, "memory.stat", buf, sizeof(buf)) < 0)
		return 0;
	if ((p = strstr(buf, "\nactive_file ")))
		a = strtoull(p + 13, NULL, 10);
	if ((p = strstr(buf, "\ninactive_file ")))
		i = strtoull(p + 15, NULL, 10);
	return a + i;
}

int cgroup_read_mem(const char *dir, const char *top, struct cgroup_mem *out)
{
	struct cgroup_mem cg = { .max = CGROUP_NO_LIMIT, .high = CGROUP_NO_LIMIT };
	char level[4096];
	size_t top_len = strlen(top);
	bool low_done = false;

	if (strncmp(dir, top, top_len) != 0 || strlen(dir) >= sizeof(level))
		return -EINVAL;
	if (access(dir, F_OK) != 0)
		return -errno;
	strcpy(level, dir);
	/* From the process's cgroup up to the mount's root, which has no limit files. */
	while (strlen(level) > top_len) {
		uint64_t max = CGROUP_NO_LIMIT, high = CGROUP_NO_LIMIT, low = 0;
		int rm = read_value(level, "memory.max", &max);
		int rh = read_value(level, "memory.high", &high);
		int rl = read_value(level, "memory.low", &low);
		char *slash;

		if (rm < 0 || rh < 0 || rl < 0)
			return rm < 0 ? rm : rh < 0 ? rh : rl;
		if (rm == 0 || rh == 0)
			cg.controller = true;
		/* The level whose value is the least so far binds (the nearest on a tie). */
		if ((max < high ? max : high) < (cg.max < cg.high ? cg.max : cg.high))
			strcpy(cg.bind, level);
		if (rm == 0 && max < cg.max)
			cg.max = max;
		if (rh == 0 && high < cg.high)
			cg.high = high;
		if (!low_done && rl == 0 && low) {
			cg.low = low;
			low_done = true;
		}
		slash = strrchr(level, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	if (cg.bind[0]) {
		uint64_t cur;

		if (read_value(cg.bind, "memory.current", &cur) == 0 && cur != CGROUP_NO_LIMIT)
			cg.current = cur;
		cg.file = read_file_cache(cg.bind);
	}
	*out = cg;
	return 0;
}

uint64_t cgroup_overhead(const struct cgroup_mem *cg, uint64_t memory, uint64_t consumed)
{
	uint64_t est = OVERHEAD_BASE + (memory >> OVERHEAD_PER_PAGE_SHIFT);
	uint64_t used = cg->current > cg->file ? cg->current - cg->file : 0;
	uint64_t measured = used > consumed ? used - consumed : 0;

	return measured > est ? measured : est;
}

void cgroup_map(const struct cgroup_mem *cg, uint64_t memory, uint64_t overhead, uint64_t margin,
		uint64_t base_limit, uint64_t base_reservation, struct cgroup_policy *out)
{
	uint64_t bound = cg->max < cg->high ? cg->max : cg->high;
	uint64_t ceiling = base_limit && base_limit < memory ? base_limit : memory;
	uint64_t take = overhead + margin, limit, res;

	out->cg_limit = bound;
	out->limited = bound != CGROUP_NO_LIMIT && (bound < take || bound - take < memory);
	if (!out->limited)
		limit = memory;
	else if (bound <= take + 4096)
		limit = 4096;
	else
		limit = (bound - take) & ~(MIB - 1) ? (bound - take) & ~(MIB - 1) : 4096;
	if (limit > ceiling)
		limit = ceiling;
	res = base_reservation;
	if (cg->low)
		res = cg->low > overhead ? (cg->low - overhead) & ~(4095ull) : 0;
	if (res > limit)
		res = limit;
	out->limit = limit;
	out->reservation = res;
}
