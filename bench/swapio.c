/* Swap file I/O benchmark (bench/swapio.sh builds and runs it; no KVM, no guest).
 *
 * swapio swap DIR MIB RUNS: through src/mem/swapfile.c itself, O_DIRECT and cached, in batches of
 * 512 and 16 pages: writes MIB MiB of distinct pages into a fresh (fallocated, so unwritten)
 * file, reads every page back in a random order, frees them all and writes them again (the
 * steady state: slots that were written before). Prints one JSON line per run with MiB/s, the
 * read latencies and the pages of the file left in the page cache (mincore) after each phase.
 *
 * swapio drop DIR MIB RUNS: the cached mode's question, with plain system calls: how much of what
 * was just written can POSIX_FADV_DONTNEED drop, right after sync_file_range(SYNC_FILE_RANGE_WRITE)
 * ("now"), when it first waits for the previous batch's writeback ("lag": one batch in flight),
 * when each batch waits for its own ("sync", what swapfile.c does), or with no drop ("none").
 *
 * Both orders rotate from run to run: the first configuration after a phase that left writeback
 * behind (or a deleted file to free) pays for it. */
#include "mem/swapfile.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PG SWAPFILE_PAGE

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process: what each mode costs beyond waiting for the disk.
 * The cached mode's writeback is started from sync_file_range, in this process. */
static double cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "swapio: %s: %s\n", what, strerror(err));
	exit(1);
}

/* Pages of the file in the page cache. */
static unsigned long resident(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned long n = 0;
	unsigned char *vec;
	struct stat st;
	void *m;

	if (fd < 0 || fstat(fd, &st))
		die("resident: open", errno);
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	vec = malloc((size_t)st.st_size / PG);
	if (m == MAP_FAILED || !vec || mincore(m, (size_t)st.st_size, vec))
		die("resident: mincore", errno);
	for (size_t i = 0; i < (size_t)st.st_size / PG; i++)
		n += vec[i] & 1;
	munmap(m, (size_t)st.st_size);
	free(vec);
	close(fd);
	return n;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void stamp(uint8_t *p, uint64_t id)
{
	memcpy(p, &id, sizeof(id));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Writes pages 0..n-1 in batches from buf (batch pages, random content, page id in front). */
static double write_all(struct swapfile *s, uint8_t *buf, unsigned batch, uint32_t n,
			uint32_t *slots, double *cpu_s)
{
	const void **pp = calloc(batch, sizeof(*pp));
	double t0 = now(), c0 = cpu();

	for (uint32_t k = 0; k < n; k += batch) {
		unsigned m = n - k < batch ? n - k : batch;
		int ret;

		for (unsigned j = 0; j < m; j++) {
			pp[j] = buf + (size_t)j * PG;
			stamp(buf + (size_t)j * PG, k + j);
		}
		ret = swapfile_write(s, pp, m, slots + k);
		if (ret != (int)m)
			die("swapfile_write", -ret);
	}
	free(pp);
	*cpu_s = cpu() - c0;
	return now() - t0;
}

static void run_swap(const char *dir, unsigned mib, int run, enum swapfile_io io, unsigned batch)
{
	uint32_t n = mib * 256, *slots = calloc(n, sizeof(*slots)), *order = calloc(n, sizeof(*order));
	double *lat = calloc(n, sizeof(*lat)), tw, tr, tw2, tsync, cw, cr, cw2;
	uint8_t *buf = aligned_alloc(PG, (size_t)batch * PG), *dst = aligned_alloc(PG, PG);
	unsigned long res_w, res_sync, res_r, res_w2;
	struct swapfile_stats st;
	struct swapfile *s;
	char path[4096];
	int ret, fd;

	for (size_t i = 0; i < (size_t)batch * PG; i += 8) {
		uint64_t r = next_rand();

		memcpy(buf + i, &r, 8);
	}
	snprintf(path, sizeof(path), "%s/swapio.%d", dir, getpid());
	/* Slack of one batch: a full file would make the last batches' slot search the slow case. */
	ret = swapfile_create(&s, path, n + batch, io);
	if (ret)
		die("swapfile_create", -ret);
	swapfile_get_stats(s, &st);

	tw = write_all(s, buf, batch, n, slots, &cw);
	res_w = resident(path);
	/* What the cached mode still has to write back (0 for O_DIRECT): an fdatasync's time. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	tsync = now();
	fdatasync(fd);
	tsync = now() - tsync;
	close(fd);
	res_sync = resident(path);

	for (uint32_t k = 0; k < n; k++)
		order[k] = k;
	for (uint32_t k = n - 1; k > 0; k--) {
		uint32_t j = (uint32_t)(next_rand() % (k + 1)), x = order[k];

		order[k] = order[j];
		order[j] = x;
	}
	tr = now();
	cr = cpu();
	for (uint32_t k = 0; k < n; k++) {
		uint64_t id;
		double t = now();

		ret = swapfile_read(s, slots[order[k]], dst);
		lat[k] = now() - t;
		memcpy(&id, dst, sizeof(id));
		if (ret || id != order[k])
			die("swapfile_read", ret ? -ret : EBADMSG);
	}
	tr = now() - tr;
	cr = cpu() - cr;
	res_r = resident(path);
	qsort(lat, n, sizeof(*lat), cmp_double);

	swapfile_clear(s);
	tw2 = write_all(s, buf, batch, n, slots, &cw2);
	res_w2 = resident(path);
	swapfile_get_stats(s, &st);

	printf("{\"test\": \"swap\", \"run\": %d, \"mode\": \"%s\", \"direct\": %s, \"batch\": %u, "
	       "\"mib\": %u, \"write_mibs\": %.1f, \"fdatasync_s\": %.3f, \"read_mibs\": %.1f, "
	       "\"read_p50_us\": %.1f, \"read_p99_us\": %.1f, \"rewrite_mibs\": %.1f, "
	       "\"cached_after_write\": %lu, \"cached_after_sync\": %lu, \"cached_after_read\": %lu, "
	       "\"cached_after_rewrite\": %lu, \"pages\": %u, \"write_calls\": %llu, "
	       "\"write_cpu_ms_per_mib\": %.3f, \"read_cpu_ms_per_mib\": %.3f, "
	       "\"rewrite_cpu_ms_per_mib\": %.3f}\n",
	       run, io == SWAPFILE_IO_DIRECT ? "direct" : "cached", st.direct ? "true" : "false",
	       batch, mib, mib / tw, tsync, mib / tr, lat[n / 2] * 1e6, lat[n * 99 / 100] * 1e6,
	       mib / tw2, res_w, res_sync, res_r, res_w2, n, (unsigned long long)st.write_calls,
	       cw * 1e3 / mib, cr * 1e3 / mib, cw2 * 1e3 / mib);
	fflush(stdout);
	swapfile_destroy(s);
	free(slots);
	free(order);
	free(lat);
	free(buf);
	free(dst);
}

enum drop { DROP_NONE, DROP_NOW, DROP_LAG, DROP_SYNC };
static const char *const drop_names[] = { "none", "now", "lag", "sync" };

static void run_drop(const char *dir, unsigned mib, int run, enum drop how, unsigned batch)
{
	uint32_t n = mib * 256;
	off_t blen = (off_t)batch * PG, prev = -1;
	uint8_t *buf = aligned_alloc(PG, (size_t)blen);
	unsigned long res_w, res_idle;
	char path[4096];
	double t;
	int fd;

	memset(buf, 0x5a, (size_t)blen);
	snprintf(path, sizeof(path), "%s/swapio-drop.%d", dir, getpid());
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || fallocate(fd, 0, 0, (off_t)n * PG))
		die("drop: create", errno);
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	t = now();
	for (uint32_t k = 0; k < n; k += batch) {
		off_t off = (off_t)k * PG;

		if (pwrite(fd, buf, (size_t)blen, off) != blen)
			die("drop: pwrite", errno);
		switch (how) {
		case DROP_NONE:
			break;
		case DROP_NOW:
			sync_file_range(fd, off, blen, SYNC_FILE_RANGE_WRITE);
			posix_fadvise(fd, off, blen, POSIX_FADV_DONTNEED);
			break;
		case DROP_LAG:
			sync_file_range(fd, off, blen, SYNC_FILE_RANGE_WRITE);
			if (prev >= 0) {
				sync_file_range(fd, prev, blen, SYNC_FILE_RANGE_WAIT_BEFORE);
				posix_fadvise(fd, prev, blen, POSIX_FADV_DONTNEED);
			}
			posix_fadvise(fd, off, blen, POSIX_FADV_DONTNEED);
			prev = off;
			break;
		case DROP_SYNC:
			sync_file_range(fd, off, blen, SYNC_FILE_RANGE_WAIT_BEFORE |
					SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
			posix_fadvise(fd, off, blen, POSIX_FADV_DONTNEED);
			break;
		}
	}
	t = now() - t;
	res_w = resident(path);
	/* Clean pages are not dropped by anyone without memory pressure: idle a while and look. */
	sleep(2);
	res_idle = resident(path);
	printf("{\"test\": \"drop\", \"run\": %d, \"how\": \"%s\", \"batch\": %u, \"mib\": %u, "
	       "\"write_mibs\": %.1f, \"cached_after_write\": %lu, \"cached_after_2s\": %lu, \"pages\": %u}\n",
	       run, drop_names[how], batch, mib, mib / t, res_w, res_idle, n);
	fflush(stdout);
	close(fd);
	unlink(path);
	free(buf);
}

int main(int argc, char **argv)
{
	static const unsigned batches[] = { 512, 16 };
	static const enum swapfile_io ios[] = { SWAPFILE_IO_DIRECT, SWAPFILE_IO_CACHED };
	bool drop = argc == 5 && !strcmp(argv[1], "drop");
	int runs = argc == 5 ? atoi(argv[4]) : 0;
	unsigned mib = argc == 5 ? (unsigned)atoi(argv[3]) : 0;

	if (!drop && (argc != 5 || strcmp(argv[1], "swap"))) {
		fprintf(stderr, "usage: swapio swap|drop DIR MIB RUNS\n");
		return 2;
	}
	for (int run = 0; run < runs; run++) {
		for (unsigned b = 0; b < 2; b++) {
			unsigned batch = batches[(b + (unsigned)run) % 2];

			if (drop)
				for (int h = 0; h < 4; h++)
					run_drop(argv[2], mib, run, (enum drop)((h + run) % 4), batch);
			else
				for (unsigned i = 0; i < 2; i++)
					run_swap(argv[2], mib, run, ios[(i + (unsigned)run) % 2], batch);
		}
	}
	return 0;
}
