/* The host swap file (src/mem/swapfile.c): slot allocation and batching, round trips, checksums,
 * I/O failures (injected through swapfile_test.h), creation and deletion. Files go in a mkdtemp
 * directory under /tmp, in both I/O modes; the file-system cases (a real one: the build
 * directory; tmpfs: /dev/shm) skip when there is none. */
#include "mem/swapfile.h"
#include "mem/swapfile_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define PG SWAPFILE_PAGE

static const enum swapfile_io modes[] = {
	SWAPFILE_IO_CACHED, SWAPFILE_IO_DIRECT, SWAPFILE_IO_AUTO
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

struct tdir {
	char dir[PATH_MAX];
	char path[PATH_MAX + 16];
};

static void tdir_make(struct tdir *t, const char *base)
{
	snprintf(t->dir, sizeof(t->dir), "%s/kvmm-swapfile-XXXXXX", base);
	cr_assert_not_null(mkdtemp(t->dir), "mkdtemp in %s: %s", base, strerror(errno));
	snprintf(t->path, sizeof(t->path), "%s/swap", t->dir);
}

static void tdir_remove(struct tdir *t)
{
	unlink(t->path);
	cr_expect_eq(rmdir(t->dir), 0, "%s left non-empty: %s", t->dir, strerror(errno));
}

static bool is_tmpfs(const char *dir)
{
	struct statfs fs;

	return !statfs(dir, &fs) && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

static void stamp(uint8_t *p, uint32_t id)
{
	for (unsigned i = 0; i < PG; i += 4) {
		uint32_t v = id * 2654435761u + i;

		memcpy(p + i, &v, 4);
	}
}

static bool stamped(const uint8_t *p, uint32_t id)
{
	for (unsigned i = 0; i < PG; i += 4) {
		uint32_t v = id * 2654435761u + i;

		if (memcmp(p + i, &v, 4))
			return false;
	}
	return true;
}

/* n page-aligned pages in one block, stamped id0, id0 + 1, ... */
static uint8_t *pages_new(unsigned n, uint32_t id0)
{
	uint8_t *b = aligned_alloc(PG, (size_t)n * PG);

	cr_assert_not_null(b);
	for (unsigned k = 0; k < n; k++)
		stamp(b + (size_t)k * PG, id0 + k);
	return b;
}

/* Writes pages id0.. from block b (as n separate buffers) and checks the result. */
static void write_ok(struct swapfile *s, const uint8_t *b, unsigned n, uint32_t *slots)
{
	const void *pp[256];

	cr_assert_leq(n, 256);
	for (unsigned k = 0; k < n; k++)
		pp[k] = b + (size_t)k * PG;
	cr_assert_eq(swapfile_write(s, pp, n, slots), (int)n);
}

static struct swapfile_stats stats(const struct swapfile *s)
{
	struct swapfile_stats st;

	swapfile_get_stats(s, &st);
	return st;
}

static void read_expect(struct swapfile *s, uint32_t slot, uint32_t id)
{
	uint8_t *d = aligned_alloc(PG, PG);

	cr_assert_not_null(d);
	cr_expect_eq(swapfile_read(s, slot, d), 0, "slot %u", slot);
	cr_expect(stamped(d, id), "slot %u holds page %u", slot, id);
	free(d);
}

/* Pages of the file in the page cache. */
static unsigned long resident_pages(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	unsigned char *vec;
	unsigned long n = 0;
	void *m;

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	cr_assert_neq(m, MAP_FAILED);
	vec = calloc((size_t)st.st_size / PG, 1);
	cr_assert_eq(mincore(m, (size_t)st.st_size, vec), 0);
	for (size_t i = 0; i < (size_t)st.st_size / PG; i++)
		n += vec[i] & 1;
	free(vec);
	munmap(m, (size_t)st.st_size);
	close(fd);
	return n;
}

/* ---- allocation and batching ---- */

static void check_alloc(const char *base, enum swapfile_io io)
{
	struct tdir t;
	struct swapfile *s;
	uint32_t slots[64], one, two[2], twelve[12];
	bool seen[64] = { false };
	uint8_t *b = pages_new(64, 0);
	const void *pp[64];
	struct swapfile_stats st;

	tdir_make(&t, base);
	cr_assert_eq(swapfile_create(&s, t.path, 64, io), 0);
	cr_expect_eq(swapfile_free_slots(s), 64);
	st = stats(s);
	cr_expect_eq(st.slots, 64);
	cr_expect(st.usable);

	/* 16 adjacent buffers into a fresh file: one run, one iovec, one call. */
	for (unsigned k = 0; k < 64; k++)
		pp[k] = b + (size_t)k * PG;
	cr_assert_eq(swapfile_write(s, pp, 16, slots), 16);
	cr_expect_eq(stats(s).write_calls, 1);
	/* 16 scattered buffers (in reverse): one run still, one call. */
	for (unsigned k = 0; k < 16; k++)
		pp[16 + k] = b + (size_t)(31 - k) * PG;
	cr_assert_eq(swapfile_write(s, pp + 16, 16, slots + 16), 16);
	cr_expect_eq(stats(s).write_calls, 2);
	cr_assert_eq(swapfile_write(s, pp + 32, 32, slots + 32), 32);
	cr_expect_eq(stats(s).write_calls, 3);
	for (unsigned k = 0; k < 64; k++) {
		cr_assert_lt(slots[k], 64);
		cr_expect_not(seen[slots[k]], "slot %u twice", slots[k]);
		seen[slots[k]] = true;
	}
	cr_expect_eq(swapfile_free_slots(s), 0);

	/* Full: nothing is written, the file stays usable. */
	st = stats(s);
	cr_expect_eq(swapfile_write(s, pp, 1, &one), -ENOSPC);
	cr_expect_eq(stats(s).write_calls, st.write_calls);
	cr_expect_eq(stats(s).written, 64);
	cr_expect_eq(stats(s).used, 64);
	cr_expect(swapfile_usable(s));

	/* Slots were handed out in file order, so slot k holds pp[k]'s page. */
	for (uint32_t k = 10; k < 20; k++)
		swapfile_free(s, k);
	swapfile_free(s, 40);
	swapfile_free(s, 42);
	swapfile_free(s, 42); /* twice is harmless */
	cr_expect_eq(swapfile_free_slots(s), 12);
	cr_assert_eq(swapfile_write(s, pp, 10, slots), 10);
	for (uint32_t k = 0; k < 10; k++)
		cr_expect_eq(slots[k], 10 + k, "the run of 10 free slots is taken whole");
	cr_expect_eq(stats(s).write_calls, st.write_calls + 1);
	cr_expect_eq(swapfile_write(s, pp, 3, slots), -ENOSPC, "2 free, 3 wanted");
	cr_assert_eq(swapfile_write(s, pp, 2, two), 2);
	cr_expect(two[0] == 40 && two[1] == 42, "got %u %u", two[0], two[1]);
	cr_expect_eq(stats(s).write_calls, st.write_calls + 3, "two runs, two calls");

	/* Longest runs first: 8 + 4 in two calls, where file order (5, 20-23, 50-56) takes three. */
	swapfile_free(s, 5);
	for (uint32_t k = 20; k < 24; k++)
		swapfile_free(s, k);
	for (uint32_t k = 50; k < 58; k++)
		swapfile_free(s, k);
	st = stats(s);
	cr_assert_eq(swapfile_write(s, pp, 12, twelve), 12);
	cr_expect_eq(stats(s).write_calls, st.write_calls + 2);
	for (uint32_t k = 0; k < 8; k++)
		cr_expect_eq(twelve[k], 50 + k);
	for (uint32_t k = 0; k < 4; k++)
		cr_expect_eq(twelve[8 + k], 20 + k);
	cr_expect_eq(swapfile_free_slots(s), 1);
	read_expect(s, twelve[0], 0);
	read_expect(s, twelve[11], 11);
	read_expect(s, 63, 63);

	swapfile_clear(s);
	cr_expect_eq(swapfile_free_slots(s), 64);
	cr_expect_eq(stats(s).used, 0);
	cr_expect_eq(swapfile_read(s, 63, b), -EINVAL, "cleared slots are free");
	cr_assert_eq(swapfile_write(s, pp, 64, slots), 64);
	cr_expect_eq(stats(s).write_calls, st.write_calls + 3, "one call for the whole file");

	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
}

Test(swapfile, alloc_runs_and_full, .timeout = 20)
{
	for (unsigned m = 0; m < NMODES; m++)
		check_alloc("/tmp", modes[m]);
}

/* A batch longer than IOV_MAX scattered buffers needs more than one call. */
Test(swapfile, iov_max_split, .timeout = 20)
{
	enum { N = 1500 };
	struct tdir t;
	struct swapfile *s;
	const void **pp = calloc(N, sizeof(*pp));
	uint32_t *slots = calloc(N, sizeof(*slots));
	uint8_t *b = pages_new(2 * N, 0);

	tdir_make(&t, "/tmp");
	cr_assert_eq(swapfile_create(&s, t.path, N, SWAPFILE_IO_AUTO), 0);
	for (unsigned k = 0; k < N; k++)
		pp[k] = b + (size_t)2 * k * PG; /* never adjacent */
	cr_assert_eq(swapfile_write(s, pp, N, slots), N);
	cr_expect_eq(stats(s).write_calls, (N + IOV_MAX - 1) / IOV_MAX);
	read_expect(s, slots[0], 0);
	read_expect(s, slots[N - 1], 2 * (N - 1));
	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
	free(slots);
	free(pp);
}

/* ---- round trip ---- */

static void check_round_trip(const char *base, enum swapfile_io io)
{
	struct tdir t;
	struct swapfile *s;
	uint32_t slots[96];
	uint8_t *b = pages_new(96, 1000);
	unsigned order[96];

	tdir_make(&t, base);
	cr_assert_eq(swapfile_create(&s, t.path, 128, io), 0);
	write_ok(s, b, 1, slots);
	write_ok(s, b + PG, 15, slots + 1);
	write_ok(s, b + 16 * PG, 80, slots + 16);
	/* Free every third page, then reuse the holes with new pages. */
	for (unsigned k = 0; k < 96; k += 3)
		swapfile_free(s, slots[k]);
	cr_expect_eq(stats(s).used, 64);
	for (unsigned k = 0; k < 96; k += 3)
		stamp(b + (size_t)k * PG, 5000 + k);
	for (unsigned k = 0; k < 96; k += 3)
		write_ok(s, b + (size_t)k * PG, 1, slots + k);
	for (unsigned k = 0; k < 96; k++)
		order[k] = k;
	srand(7);
	for (unsigned k = 95; k > 0; k--) {
		unsigned j = (unsigned)rand() % (k + 1), x = order[k];

		order[k] = order[j];
		order[j] = x;
	}
	for (unsigned k = 0; k < 96; k++) {
		unsigned i = order[k];

		read_expect(s, slots[i], i % 3 ? 1000 + i : 5000 + i);
	}
	cr_expect_eq(stats(s).read, 96);
	cr_expect_eq(stats(s).written, 128);
	cr_expect_eq(stats(s).used, 96, "reading does not free");
	cr_expect_eq(stats(s).checksum_errors, 0);
	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
}

Test(swapfile, round_trip, .timeout = 20)
{
	for (unsigned m = 0; m < NMODES; m++)
		check_round_trip("/tmp", modes[m]);
}

/* Cached mode writes back and drops each batch before it returns, and drops what it reads (a few
 * pages of slack for anything holding a page for a moment). On tmpfs the page cache is the file,
 * so there is nothing to check. */
static void check_cache_residue(const char *base)
{
	enum { BATCH = 64, N = 1024 };
	struct tdir t;
	struct swapfile *s;
	uint32_t *slots = calloc(N, sizeof(*slots));
	uint8_t *b = pages_new(BATCH, 0), *d = aligned_alloc(PG, PG);
	unsigned long res;

	tdir_make(&t, base);
	cr_assert_eq(swapfile_create(&s, t.path, N, SWAPFILE_IO_CACHED), 0);
	for (unsigned k = 0; k < N; k += BATCH)
		write_ok(s, b, BATCH, slots + k);
	res = resident_pages(t.path);
	cr_expect_leq(res, 8, "%lu of %u pages still cached after writing", res, N);
	for (unsigned k = 0; k < N; k++)
		cr_assert_eq(swapfile_read(s, slots[k], d), 0);
	res = resident_pages(t.path);
	cr_expect_leq(res, 8, "%lu of %u pages still cached after reading", res, N);
	swapfile_destroy(s);
	tdir_remove(&t);
	free(slots);
	free(b);
	free(d);
}

Test(swapfile, cached_mode_drops_pages, .timeout = 20)
{
	if (is_tmpfs("/tmp"))
		cr_skip_test("/tmp is tmpfs");
	check_cache_residue("/tmp");
}

/* ---- checksums ---- */

static void check_corruption(const char *base, enum swapfile_io io)
{
	struct tdir t;
	struct swapfile *s;
	uint32_t slots[4];
	uint8_t *b = pages_new(4, 77), *d = aligned_alloc(PG, PG);
	const char junk[] = "not what was written";
	int fd;

	tdir_make(&t, base);
	cr_assert_eq(swapfile_create(&s, t.path, 16, io), 0);
	write_ok(s, b, 4, slots);

	fd = open(t.path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), (off_t)slots[1] * PG + 100), (ssize_t)sizeof(junk));
	/* slot 2 gets slot 3's page, intact: misplaced data fails too (the slot seeds the sum). */
	cr_assert_eq(pwrite(fd, b + 3 * PG, PG, (off_t)slots[2] * PG), (ssize_t)PG);
	close(fd);

	cr_expect_eq(swapfile_read(s, slots[1], d), -EBADMSG);
	cr_expect_eq(stats(s).checksum_errors, 1);
	cr_expect_eq(swapfile_read(s, slots[1], d), -EBADMSG, "the slot stays in use, still bad");
	cr_expect_eq(swapfile_read(s, slots[2], d), -EBADMSG);
	cr_expect_eq(stats(s).checksum_errors, 3);
	read_expect(s, slots[0], 77);
	read_expect(s, slots[3], 80);
	cr_expect_eq(stats(s).read, 2);
	cr_expect_eq(stats(s).used, 4);
	cr_expect_eq(stats(s).read_errors, 0);
	cr_expect_eq(stats(s).last_error, 0, "a bad checksum is not an I/O error");
	cr_expect(swapfile_usable(s));
	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
	free(d);
}

Test(swapfile, checksum_mismatch, .timeout = 20)
{
	for (unsigned m = 0; m < NMODES; m++)
		check_corruption("/tmp", modes[m]);
}

/* ---- I/O failures ---- */

static void check_write_failure(enum swapfile_io io, int err)
{
	struct tdir t;
	struct swapfile *s;
	uint32_t first[8], second[8];
	uint8_t *b = pages_new(16, 300);
	const void *pp[8];
	struct swapfile_stats st;

	tdir_make(&t, "/tmp");
	cr_assert_eq(swapfile_create(&s, t.path, 32, io), 0);
	write_ok(s, b, 8, first);
	st = stats(s);

	swapfile_test_fail_next(s, err);
	for (unsigned k = 0; k < 8; k++)
		pp[k] = b + (size_t)(8 + k) * PG;
	cr_expect_eq(swapfile_write(s, pp, 8, second), -err);
	for (unsigned k = 0; k < 8; k++)
		cr_expect_eq(second[k], SWAPFILE_NONE);
	cr_expect_eq(stats(s).used, st.used, "the failed batch's slots are free again");
	cr_expect_eq(swapfile_free_slots(s), 24);
	cr_expect_not(swapfile_usable(s));
	cr_expect_not(stats(s).usable);
	cr_expect_eq(stats(s).write_errors, 1);
	cr_expect_eq(stats(s).last_error, err);
	cr_expect_eq(stats(s).written, 8);

	/* No more writes, not even a try; what is in the file still reads. */
	cr_expect_eq(swapfile_write(s, pp, 1, second), -EIO);
	cr_expect_eq(stats(s).write_calls, st.write_calls + 1);
	for (unsigned k = 0; k < 8; k++)
		read_expect(s, first[k], 300 + k);
	swapfile_free(s, first[0]);
	cr_expect_eq(swapfile_write(s, pp, 1, second), -EIO, "freeing does not make it usable");
	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
}

Test(swapfile, write_eio, .timeout = 20)
{
	for (unsigned m = 0; m < NMODES; m++)
		check_write_failure(modes[m], EIO);
}

Test(swapfile, write_enospc, .timeout = 20)
{
	for (unsigned m = 0; m < NMODES; m++)
		check_write_failure(modes[m], ENOSPC);
}

Test(swapfile, read_failure, .timeout = 20)
{
	struct tdir t;
	struct swapfile *s;
	uint32_t slots[2];
	uint8_t *b = pages_new(2, 9), *d = aligned_alloc(PG, PG);

	tdir_make(&t, "/tmp");
	cr_assert_eq(swapfile_create(&s, t.path, 4, SWAPFILE_IO_AUTO), 0);
	write_ok(s, b, 2, slots);
	swapfile_test_fail_next(s, EIO);
	cr_expect_eq(swapfile_read(s, slots[0], d), -EIO);
	cr_expect_eq(stats(s).read_errors, 1);
	cr_expect_eq(stats(s).last_error, EIO);
	cr_expect(swapfile_usable(s), "a failed read does not stop writes");
	cr_expect_eq(stats(s).used, 2);
	read_expect(s, slots[0], 9);
	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
	free(d);
}

/* EINTR and short transfers are retried, not errors. */
Test(swapfile, eintr_and_short_io, .timeout = 20)
{
	for (unsigned m = 0; m < NMODES; m++) {
		struct tdir t;
		struct swapfile *s;
		uint32_t slots[8];
		uint8_t *b = pages_new(8, 40);

		tdir_make(&t, "/tmp");
		cr_assert_eq(swapfile_create(&s, t.path, 16, modes[m]), 0);
		swapfile_test_fail_next(s, EINTR);
		write_ok(s, b, 4, slots);
		cr_expect_eq(stats(s).write_calls, 2, "one interrupted call, one that wrote");
		swapfile_test_short_next(s, PG);
		write_ok(s, b + 4 * PG, 4, slots + 4);
		cr_expect_eq(stats(s).write_calls, 4, "one page, then the other three");
		swapfile_test_fail_next(s, EINTR);
		read_expect(s, slots[1], 41);
		if (!stats(s).direct) {
			swapfile_test_short_next(s, 1000);
			read_expect(s, slots[5], 45);
		}
		for (unsigned k = 0; k < 8; k++)
			read_expect(s, slots[k], 40 + k);
		cr_expect_eq(stats(s).write_errors + stats(s).read_errors, 0);
		cr_expect(swapfile_usable(s));
		swapfile_destroy(s);
		tdir_remove(&t);
		free(b);
	}
}

/* ---- argument checks ---- */

Test(swapfile, invalid_reads_and_buffers, .timeout = 10)
{
	struct tdir t;
	struct swapfile *s;
	uint32_t slot;
	uint8_t *b = pages_new(2, 1);
	const void *odd = b + 512;

	tdir_make(&t, "/tmp");
	cr_assert_eq(swapfile_create(&s, t.path, 8, SWAPFILE_IO_AUTO), 0);
	cr_expect_eq(swapfile_read(s, 0, b), -EINVAL, "never written");
	cr_expect_eq(swapfile_read(s, 8, b), -EINVAL, "past the end");
	cr_expect_eq(swapfile_read(s, SWAPFILE_NONE, b), -EINVAL);
	cr_expect_eq(swapfile_write(s, &odd, 1, &slot), -EINVAL, "unaligned page");
	cr_expect(swapfile_usable(s), "a caller's bad buffer is not a disk failure");
	write_ok(s, b, 1, &slot);
	cr_expect_eq(swapfile_read(s, slot, b + 512), -EINVAL, "unaligned destination");
	swapfile_free(s, slot);
	cr_expect_eq(swapfile_read(s, slot, b), -EINVAL, "freed");
	swapfile_free(s, 100); /* out of range: ignored */
	cr_expect_eq(swapfile_write(s, NULL, 0, NULL), 0);
	cr_expect_eq(stats(s).read_errors + stats(s).write_errors, 0);
	swapfile_destroy(s);
	tdir_remove(&t);
	free(b);
}

/* ---- creation and deletion ---- */

Test(swapfile, create_checks, .timeout = 10)
{
	struct tdir t;
	struct swapfile *s = (struct swapfile *)1, *other;
	struct stat st;
	int fd;

	tdir_make(&t, "/tmp");
	cr_expect_eq(swapfile_create(&s, t.path, 0, SWAPFILE_IO_AUTO), -EINVAL);
	cr_expect_null(s);
	cr_expect_eq(swapfile_create(&s, t.path, (uint64_t)UINT32_MAX + 1, SWAPFILE_IO_AUTO), -EINVAL);
	cr_expect_eq(swapfile_create(&s, t.path, 4, (enum swapfile_io)7), -EINVAL);
	cr_expect_eq(access(t.path, F_OK), -1, "no file left by a refused create");

	/* Something already there is never overwritten. */
	fd = open(t.path, O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "keep", 4), 4);
	close(fd);
	cr_expect_eq(swapfile_create(&s, t.path, 4, SWAPFILE_IO_AUTO), -EEXIST);
	cr_assert_eq(stat(t.path, &st), 0);
	cr_expect_eq(st.st_size, 4, "the existing file is untouched");
	cr_assert_eq(unlink(t.path), 0);

	cr_assert_eq(swapfile_create(&s, t.path, 64, SWAPFILE_IO_AUTO), 0);
	cr_expect_str_eq(swapfile_path(s), t.path);
	cr_assert_eq(stat(t.path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600);
	cr_expect_eq(st.st_size, 64 * PG);
	cr_expect_geq(st.st_blocks, 64 * PG / 512, "preallocated: %lld blocks", (long long)st.st_blocks);
	cr_expect_eq(swapfile_create(&other, t.path, 4, SWAPFILE_IO_AUTO), -EEXIST, "not even our own");
	cr_expect_null(other);
	swapfile_destroy(s);
	cr_expect_eq(access(t.path, F_OK), -1, "destroy deletes the file");
	cr_expect_eq(errno, ENOENT);
	swapfile_destroy(NULL);
	tdir_remove(&t);
}

/* More than the file system has free: -ENOSPC at once, and no file left. */
Test(swapfile, create_enospc, .timeout = 10)
{
	struct tdir t;
	struct swapfile *s;
	struct statvfs vfs;
	uint64_t slots;

	tdir_make(&t, "/tmp");
	cr_assert_eq(statvfs(t.dir, &vfs), 0);
	slots = (uint64_t)vfs.f_bavail * vfs.f_frsize / PG + 1024;
	if (slots > UINT32_MAX) {
		tdir_remove(&t);
		cr_skip_test("/tmp has more than 16 TiB free");
	}
	cr_expect_eq(swapfile_create(&s, t.path, slots, SWAPFILE_IO_AUTO), -ENOSPC);
	cr_expect_null(s);
	cr_expect_eq(access(t.path, F_OK), -1, "the file is removed");
	tdir_remove(&t);
}

/* ---- file systems ---- */

/* Whether O_DIRECT works in dir, found independently of swapfile.c. */
static bool direct_works(const char *dir)
{
	char path[PATH_MAX + 16];
	bool ok;
	int fd;

	snprintf(path, sizeof(path), "%s/probe", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
	ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	unlink(path);
	return ok;
}

static void check_fs(const char *base)
{
	struct tdir t;
	struct swapfile *s;

	tdir_make(&t, base);
	for (unsigned m = 0; m < NMODES; m++) {
		cr_assert_eq(swapfile_create(&s, t.path, 4, modes[m]), 0);
		if (modes[m] == SWAPFILE_IO_CACHED)
			cr_expect_not(stats(s).direct);
		if (modes[m] == SWAPFILE_IO_DIRECT)
			cr_expect_eq(stats(s).direct, direct_works(t.dir), "%s: direct %d", base,
				     stats(s).direct);
		swapfile_destroy(s);
	}
	tdir_remove(&t);
	for (unsigned m = 0; m < NMODES; m++) {
		check_round_trip(base, modes[m]);
		check_corruption(base, modes[m]);
	}
	if (!is_tmpfs(base))
		check_cache_residue(base);
}

/* The build directory (ctest's working directory) when it is on a disk. */
Test(swapfile, real_file_system, .timeout = 30)
{
	char cwd[PATH_MAX];

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	if (is_tmpfs(cwd))
		cr_skip_test("%s is tmpfs", cwd);
	check_fs(cwd);
}

Test(swapfile, tmpfs, .timeout = 30)
{
	if (!is_tmpfs("/dev/shm"))
		cr_skip_test("no tmpfs at /dev/shm");
	check_fs("/dev/shm");
}
