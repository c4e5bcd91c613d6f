/* Host swap file (swapfile.h): a bitmap of 4 KiB slots over a preallocated file, batched
 * pwritev, an XXH3_64bits checksum per slot verified on every read.
 *
 * Slot allocation is next-fit from a cursor, preferring runs: a batch takes the first free run
 * from the cursor long enough for what it still needs, else the longest free run there is, so
 * that n pages go out in as few pwritev calls as the free space allows. The cursor sweeping the
 * file keeps the cost low in the usual case (the slots ahead of it are the ones freed since its
 * last pass, often in long runs) and spreads the writes over the whole file.
 *
 * The file never outlives kvmm (deleted at close, and a crash leaves a file nobody reads back), so
 * nothing is fsync'd: a page has to be on the device (O_DIRECT, or sync_file_range's wait in
 * cached mode) for its slot to be given up by the caller, but the file system's metadata never
 * needs to be durable. */
#include "swapfile.h"
#include "swapfile_test.h"

#include <kvmm/log.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

/* SWAPFILE_IO_AUTO's choice: O_DIRECT where the file system has it, measured with bench/swapio.sh
 * (ext4 on a virtio disk, 256 MiB, medians of 5; docs/benchmarks.md, "Swap I/O"). Random 4 KiB
 * reads, what a faulting guest waits for, were as fast or faster direct (p50 113 against 123 us,
 * p99 1.6 against 2.7 ms at 512-page batches); writes were within the noise of each other (the
 * five runs of each mode overlap; the cached median was 15-27% higher at 512 pages, 9% lower when
 * rewriting at 16); the CPU time per MiB written was 1.5-1.8x lower direct (no copy into the page
 * cache, no writeback or invalidation of it) except on a fresh file at 16 pages, where ext4's
 * conversion of unwritten extents costs both alike. The page cache keeps none of the file either
 * way, but the cached mode gets there only by waiting for each batch's writeback
 * (cached_writeback), so it has no latency left to win. */
#define SWAP_AUTO_IO SWAPFILE_IO_DIRECT

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
/* Bytes in one pwritev: Linux caps a call at MAX_RW_COUNT (2 GiB - 4 KiB) and returns a short
 * write beyond; staying well under it keeps one batch of merged buffers from needing retries. */
#define SWAP_MAX_CALL (256u << 20)
/* Runs chosen longest-first (each may cost a scan of the whole bitmap) before the rest of a
 * batch just takes free runs in order from the cursor: a badly fragmented file needs many runs
 * whatever their order, and bounded scans keep a batch's cost bounded. */
#define SWAP_GREEDY_RUNS 4

struct swapfile {
	int fd;
	bool usable;
	bool direct;
	char *path;
	uint32_t nslots;
	uint32_t cursor;       /* next-fit: the search for free slots starts here */
	uint64_t used;
	uint64_t *map;         /* allocation bitmap: bit set = slot holds a page */
	uint64_t *sum;         /* checksum of each used slot's page (page_sum) */
	struct iovec *iov;     /* IOV_MAX entries: one pwritev's worth */

	uint64_t written, read, write_calls;
	uint64_t write_errors, read_errors, checksum_errors;
	int last_error;

	/* swapfile_test.h: armed for the next pwritev/pread only. */
	int test_err;
	size_t test_short;
};

/* ---- bitmap ---- */

static bool bm_test(const uint64_t *map, uint64_t bit)
{
	return map[bit / 64] >> (bit % 64) & 1;
}

static void bm_assign(uint64_t *map, uint64_t bit, bool set)
{
	if (set)
		map[bit / 64] |= 1ull << (bit % 64);
	else
		map[bit / 64] &= ~(1ull << (bit % 64));
}

static void bm_assign_range(uint64_t *map, uint64_t start, uint64_t len, bool set)
{
	for (uint64_t b = start; b < start + len;) {
		if (b % 64 == 0 && start + len - b >= 64) {
			map[b / 64] = set ? ~0ull : 0;
			b += 64;
		} else {
			bm_assign(map, b++, set);
		}
	}
}

/* The first bit in [from, to) that is `set`, or to. */
static uint64_t bm_find(const uint64_t *map, uint64_t from, uint64_t to, bool set)
{
	uint64_t flip = set ? 0 : ~0ull;

	while (from < to) {
		uint64_t w = (map[from / 64] ^ flip) >> (from % 64);

		if (w) {
			from += (uint64_t)__builtin_ctzll(w);
			return from < to ? from : to;
		}
		from = (from | 63) + 1;
	}
	return to;
}

/* Where the next run of a batch starts; *len gets the whole free run's length. With want > 1:
 * the first run from the cursor on (wrapping) of at least want slots, else the longest one.
 * With want == 1: simply the first free run from the cursor. The caller knows one exists. */
static uint32_t pick_run(const struct swapfile *s, uint32_t want, uint32_t *len)
{
	uint64_t best = 0, best_len = 0;

	for (int pass = 0; pass < 2; pass++) {
		uint64_t from = pass ? 0 : s->cursor;
		uint64_t to = pass ? s->cursor : s->nslots;

		while (from < to) {
			uint64_t a = bm_find(s->map, from, to, false);
			uint64_t b;

			if (a >= to)
				break;
			b = bm_find(s->map, a, to, true);
			if (b - a >= want) {
				*len = (uint32_t)(b - a);
				return (uint32_t)a;
			}
			if (b - a > best_len) {
				best = a;
				best_len = b - a;
			}
			from = b;
		}
	}
	*len = (uint32_t)best_len;
	return (uint32_t)best;
}

/* Takes n free slots (the caller checked there are), in file order within each run. */
static void alloc_slots(struct swapfile *s, unsigned n, uint32_t *slots)
{
	unsigned got = 0;

	for (unsigned runs = 0; got < n; runs++) {
		uint32_t want = n - got, len;
		uint32_t a = pick_run(s, runs < SWAP_GREEDY_RUNS ? want : 1, &len);

		if (len > want)
			len = want;
		bm_assign_range(s->map, a, len, true);
		for (uint32_t k = 0; k < len; k++)
			slots[got++] = a + k;
		s->cursor = a + len == s->nslots ? 0 : a + len;
	}
	s->used += n;
}

/* ---- I/O ---- */

/* Seeded with the slot number so that a page read back from the wrong slot (a misdirected write
 * or read) fails the check as well as a corrupted one. XXH3 rather than XXH64: the same 64-bit
 * strength, several times faster on 4 KiB inputs, and what the sharing code already uses. */
static uint64_t page_sum(const void *page, uint32_t slot)
{
	return XXH3_64bits_withSeed(page, SWAPFILE_PAGE, slot);
}

static ssize_t do_pwritev(struct swapfile *s, const struct iovec *iov, int cnt, off_t off)
{
	s->write_calls++;
	if (s->test_err) {
		errno = s->test_err;
		s->test_err = 0;
		return -1;
	}
	if (s->test_short) {
		size_t len = iov[0].iov_len < s->test_short ? iov[0].iov_len : s->test_short;

		s->test_short = 0;
		return pwrite(s->fd, iov[0].iov_base, len, off);
	}
	return pwritev(s->fd, iov, cnt, off);
}

static ssize_t do_pread(struct swapfile *s, void *dst, size_t len, off_t off)
{
	if (s->test_err) {
		errno = s->test_err;
		s->test_err = 0;
		return -1;
	}
	if (s->test_short) {
		if (len > s->test_short)
			len = s->test_short;
		s->test_short = 0;
	}
	return pread(s->fd, dst, len, off);
}

/* Writes all of iov (which it consumes) at off: short writes continue where they stopped, EINTR
 * is retried, a call that writes nothing is -EIO. */
static int pwritev_full(struct swapfile *s, struct iovec *iov, int cnt, off_t off)
{
	while (cnt) {
		ssize_t r = do_pwritev(s, iov, cnt, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		off += r;
		while (cnt && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

static int pread_full(struct swapfile *s, void *dst, off_t off, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = do_pread(s, (uint8_t *)dst + done, len - done, off + (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* end of file: someone truncated it */
		done += (size_t)r;
	}
	return 0;
}

/* One pwritev per run of consecutive slots, split where a call would exceed IOV_MAX buffers or
 * SWAP_MAX_CALL bytes; buffers adjacent in memory share one iovec. */
static int write_runs(struct swapfile *s, const void *const *pages, unsigned n,
		      const uint32_t *slots)
{
	unsigned k = 0;

	while (k < n) {
		off_t off = (off_t)slots[k] * SWAPFILE_PAGE;
		size_t bytes = 0;
		int cnt = 0, ret;

		do {
			struct iovec *last = cnt ? &s->iov[cnt - 1] : NULL;

			if (last && (const uint8_t *)last->iov_base + last->iov_len == pages[k]) {
				last->iov_len += SWAPFILE_PAGE;
			} else {
				s->iov[cnt].iov_base = (void *)pages[k];
				s->iov[cnt++].iov_len = SWAPFILE_PAGE;
			}
			bytes += SWAPFILE_PAGE;
			k++;
		} while (k < n && slots[k] == slots[k - 1] + 1 && cnt < IOV_MAX &&
			 bytes < SWAP_MAX_CALL);
		ret = pwritev_full(s, s->iov, cnt, off);
		if (ret)
			return ret;
	}
	return 0;
}

/* Cached mode, after a batch went into the page cache: write it back, wait, and drop it from the
 * cache. The wait is what makes the drop work: POSIX_FADV_DONTNEED skips pages that are dirty or
 * under writeback, and right after an asynchronous SYNC_FILE_RANGE_WRITE that is all of them
 * (bench/swapio.sh "drop": 65024 and 65456 of 65536 pages still cached at batches of 512 and
 * 16, and as many 2 s later; docs/benchmarks.md, "Swap I/O").
 * Waiting for the previous batch's writeback instead keeps one batch in flight (about 1.8x the
 * write rate at 512 pages there), but a writeback error would then surface after the caller had
 * let that batch's pages go, and swapfile.h promises that an I/O error never loses a page. All
 * runs are started before the first wait so that the device sees the whole batch at once. */
static int cached_writeback(struct swapfile *s, const uint32_t *slots, unsigned n)
{
	const unsigned flags[] = {
		SYNC_FILE_RANGE_WRITE,
		SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER,
	};

	for (unsigned pass = 0; pass < 2; pass++) {
		for (unsigned k = 0, j; k < n; k = j) {
			off_t off = (off_t)slots[k] * SWAPFILE_PAGE, len;

			for (j = k + 1; j < n && slots[j] == slots[j - 1] + 1; j++)
				;
			len = (off_t)(j - k) * SWAPFILE_PAGE;
			if (sync_file_range(s->fd, off, len, flags[pass]))
				return -errno;
			if (pass)
				posix_fadvise(s->fd, off, len, POSIX_FADV_DONTNEED);
		}
	}
	return 0;
}

/* Once the file is unusable every write is -EIO without a try (last_error keeps the first cause).
 * On failure slots[] is all SWAPFILE_NONE. */
int swapfile_write(struct swapfile *s, const void *const *pages, unsigned n, uint32_t *slots)
{
	int ret;

	if (n > INT_MAX)
		return -EINVAL;
	/* Checked here, not left to O_DIRECT's EINVAL: a caller's bad buffer must not look like a
	 * failing disk and end the file's use. */
	for (unsigned k = 0; k < n; k++)
		if ((uintptr_t)pages[k] % SWAPFILE_PAGE)
			return -EINVAL;
	if (!s->usable)
		return -EIO;
	if (n == 0)
		return 0;
	if (s->nslots - s->used < n)
		return -ENOSPC;

	alloc_slots(s, n, slots);
	for (unsigned k = 0; k < n; k++)
		s->sum[slots[k]] = page_sum(pages[k], slots[k]);
	ret = write_runs(s, pages, n, slots);
	if (!ret && !s->direct)
		ret = cached_writeback(s, slots, n);
	if (ret) {
		for (unsigned k = 0; k < n; k++) {
			bm_assign(s->map, slots[k], false);
			slots[k] = SWAPFILE_NONE;
		}
		s->used -= n;
		s->usable = false;
		s->last_error = -ret;
		s->write_errors++;
		log_error("swap file %s: write failed (%s); no more pages go to it", s->path,
			  strerror(-ret));
		return ret;
	}
	s->written += n;
	return (int)n;
}

int swapfile_read(struct swapfile *s, uint32_t slot, void *dst)
{
	off_t off = (off_t)slot * SWAPFILE_PAGE;
	int ret;

	if (slot >= s->nslots || !bm_test(s->map, slot) || (uintptr_t)dst % SWAPFILE_PAGE)
		return -EINVAL;
	ret = pread_full(s, dst, off, SWAPFILE_PAGE);
	if (ret) {
		s->read_errors++;
		s->last_error = -ret;
		return ret;
	}
	/* The read put the page in the cache: drop it (it is clean, so this works at once), both so
	 * that swapped-in memory is not held twice and so that a read retried after a checksum
	 * failure goes to the disk, not to the cached bad copy. */
	if (!s->direct)
		posix_fadvise(s->fd, off, SWAPFILE_PAGE, POSIX_FADV_DONTNEED);
	if (page_sum(dst, slot) != s->sum[slot]) {
		s->checksum_errors++;
		log_warn("swap file %s: slot %u fails its checksum", s->path, slot);
		return -EBADMSG;
	}
	s->read++;
	return 0;
}

int swapfile_read_run(struct swapfile *s, uint32_t slot, unsigned n, void *dst, uint64_t *bad)
{
	off_t off = (off_t)slot * SWAPFILE_PAGE;
	int ret;

	*bad = 0;
	if (n == 0 || n > 64 || slot >= s->nslots || n > s->nslots - slot || (uintptr_t)dst % SWAPFILE_PAGE)
		return -EINVAL;
	for (unsigned k = 0; k < n; k++)
		if (!bm_test(s->map, slot + k))
			return -EINVAL;
	ret = pread_full(s, dst, off, (size_t)n * SWAPFILE_PAGE);
	if (ret) {
		s->read_errors++;
		s->last_error = -ret;
		return ret;
	}
	if (!s->direct)
		posix_fadvise(s->fd, off, (off_t)n * SWAPFILE_PAGE, POSIX_FADV_DONTNEED);
	for (unsigned k = 0; k < n; k++) {
		if (page_sum((uint8_t *)dst + (size_t)k * SWAPFILE_PAGE, slot + k) == s->sum[slot + k]) {
			s->read++;
			continue;
		}
		s->checksum_errors++;
		*bad |= 1ull << k;
		log_warn("swap file %s: slot %u fails its checksum", s->path, slot + k);
	}
	return 0;
}

void swapfile_free(struct swapfile *s, uint32_t slot)
{
	if (slot >= s->nslots || !bm_test(s->map, slot))
		return;
	bm_assign(s->map, slot, false);
	s->used--;
}

void swapfile_clear(struct swapfile *s)
{
	memset(s->map, 0, (s->nslots + 63) / 64 * sizeof(*s->map));
	s->used = 0;
	s->cursor = 0;
}

bool swapfile_usable(const struct swapfile *s)
{
	return s->usable;
}

uint64_t swapfile_free_slots(const struct swapfile *s)
{
	return s->nslots - s->used;
}

void swapfile_get_stats(const struct swapfile *s, struct swapfile_stats *st)
{
	*st = (struct swapfile_stats){
		.slots = s->nslots,
		.used = s->used,
		.written = s->written,
		.read = s->read,
		.write_calls = s->write_calls,
		.write_errors = s->write_errors,
		.read_errors = s->read_errors,
		.checksum_errors = s->checksum_errors,
		.last_error = s->last_error,
		.usable = s->usable,
		.direct = s->direct,
	};
}

const char *swapfile_path(const struct swapfile *s)
{
	return s->path;
}

/* ---- creation ---- */

/* Refuses early a file the file system cannot hold: ext4 would otherwise allocate until the disk
 * is full before failing (and take the blocks reserved for root when kvmm runs as root). */
static int preallocate(struct swapfile *s)
{
	off_t len = (off_t)s->nslots * SWAPFILE_PAGE;
	struct statvfs vfs;
	int ret;

	if (!fstatvfs(s->fd, &vfs) && vfs.f_frsize &&
	    (uint64_t)vfs.f_bavail < ((uint64_t)len + vfs.f_frsize - 1) / vfs.f_frsize)
		return -ENOSPC;
	do
		ret = fallocate(s->fd, 0, 0, len);
	while (ret && errno == EINTR);
	if (!ret)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	log_info("swap file %s: the file system cannot preallocate; the file is sparse and may "
		 "run out of space on write", s->path);
	return ftruncate(s->fd, len) ? -errno : 0;
}

/* O_DIRECT is set with fcntl on the descriptor O_EXCL created: an open with O_CREAT|O_DIRECT on
 * a file system without direct I/O fails with EINVAL only after creating the file, and opening
 * it again by name would race with whoever else can write to the directory. fcntl gives the same
 * EINVAL for the same file systems. Linux 6.1's STATX_DIOALIGN also says whether the file system's
 * alignment fits 4 KiB pages at 4 KiB offsets; a kernel or file system that does not say is left
 * to fcntl. */
static int set_direct(int fd)
{
	struct statx stx;
	int fl;

	if (!statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) && (stx.stx_mask & STATX_DIOALIGN) &&
	    (!stx.stx_dio_mem_align || stx.stx_dio_mem_align > SWAPFILE_PAGE ||
	     !stx.stx_dio_offset_align || stx.stx_dio_offset_align > SWAPFILE_PAGE))
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT))
		return -errno;
	return 0;
}

static int setup_io(struct swapfile *s, enum swapfile_io io)
{
	if (io == SWAPFILE_IO_AUTO)
		io = SWAP_AUTO_IO;
	if (io == SWAPFILE_IO_DIRECT) {
		int ret = set_direct(s->fd);

		if (!ret) {
			s->direct = true;
			return 0;
		}
		if (ret != -EINVAL)
			return ret;
		log_info("swap file %s: no O_DIRECT with 4 KiB alignment here; using the page cache",
			 s->path);
	}
	/* Swap-ins are single pages in no order: readahead would read, and cache, neighbours that
	 * nobody asked for. */
	posix_fadvise(s->fd, 0, 0, POSIX_FADV_RANDOM);
	return 0;
}

/* A file in memory (tmpfs, ramfs) works, but swapping to it frees no memory at all. */
static void warn_if_memory(const struct swapfile *s)
{
	struct statfs fs;

	if (!fstatfs(s->fd, &fs) && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC))
		log_warn("swap file %s is in memory (tmpfs): swapping to it frees no host memory",
			 s->path);
}

static void swapfile_release(struct swapfile *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->iov);
	free(s->sum);
	free(s->map);
	free(s->path);
	free(s);
}

int swapfile_create(struct swapfile **out, const char *path, uint64_t slots, enum swapfile_io io)
{
	struct swapfile *s;
	int ret;

	*out = NULL;
	/* Slot numbers are uint32_t and SWAPFILE_NONE is UINT32_MAX. */
	if (!slots || slots > UINT32_MAX || (unsigned)io > SWAPFILE_IO_CACHED)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->nslots = (uint32_t)slots;
	s->path = strdup(path);
	if (!s->path) {
		s->fd = -1;
		ret = -ENOMEM;
		goto err_free;
	}
	s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		ret = -errno;
		goto err_free;
	}
	/* The file first: a file system that cannot hold it fails before the bitmap and the
	 * checksums (8 bytes a slot) are allocated. */
	ret = preallocate(s);
	if (ret)
		goto err_unlink;
	ret = setup_io(s, io);
	if (ret)
		goto err_unlink;
	warn_if_memory(s);
	s->map = calloc((slots + 63) / 64, sizeof(*s->map));
	s->sum = calloc(slots, sizeof(*s->sum));
	s->iov = calloc(IOV_MAX, sizeof(*s->iov));
	if (!s->map || !s->sum || !s->iov) {
		ret = -ENOMEM;
		goto err_unlink;
	}
	s->usable = true;
	*out = s;
	return 0;

err_unlink:
	unlink(path);
err_free:
	swapfile_release(s);
	return ret;
}

void swapfile_destroy(struct swapfile *s)
{
	if (!s)
		return;
	if (unlink(s->path))
		log_warn("swap file %s: cannot delete it: %s", s->path, strerror(errno));
	swapfile_release(s);
}

/* ---- swapfile_test.h ---- */

void swapfile_test_fail_next(struct swapfile *s, int err)
{
	s->test_err = err;
}

void swapfile_test_short_next(struct swapfile *s, size_t bytes)
{
	s->test_short = bytes;
}
