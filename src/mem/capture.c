/* Race-free capture (DESIGN.md section 4): a page leaves PRESENT only through one of these, so no
 * guest write can slip past between reading a page and taking it away.
 * - move (Linux 6.8+): UFFDIO_MOVE takes the page itself out of guest RAM into a staging page,
 *   atomically; a guest touch meanwhile raises a missing fault, which waits for the lock.
 * - wp: UFFDIO_WRITEPROTECT, then copy the page to staging; a guest write meanwhile raises a WP
 *   fault that waits for the lock; the capture then drops the page (MADV_DONTNEED) or
 *   unprotects it, and the write happens after, on what the page has become.
 * Both run with the lock held on pages pagemap showed present. */
#include "mem_internal.h"
#include "uffd_compat.h"

#include <kvmm/log.h>

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int pagemap_read(struct memmgr *m, size_t first, size_t n, uint64_t *out)
{
	off_t off = (off_t)((uintptr_t)mem_hva(m, first) / MEM_PAGE * sizeof(uint64_t));
	ssize_t r = pread(m->pagemap_fd, out, n * sizeof(uint64_t), off);

	if (r != (ssize_t)(n * sizeof(uint64_t)))
		return r < 0 ? -errno : -EIO;
	return 0;
}

/* Moves pages [first, first + n) to staging [s, s + n); *moved counts the pages that went (a page
 * the kernel would not move, e.g. one shared with another mapping, ends the run early). */
static int move_run(struct memmgr *m, size_t first, size_t n, size_t s, size_t *moved)
{
	struct uffdio_move mv = {
		.dst = (uintptr_t)(m->stage + s * MEM_PAGE),
		.src = (uintptr_t)mem_hva(m, first),
		.len = n * MEM_PAGE,
		.mode = UFFDIO_MOVE_MODE_DONTWAKE,
	};

	*moved = 0;
	for (;;) {
		if (ioctl(m->uffd, UFFDIO_MOVE, &mv) == 0) {
			*moved += (size_t)mv.move / MEM_PAGE;
			return 0;
		}
		if (mv.move > 0) {
			*moved += (size_t)mv.move / MEM_PAGE;
			mv.dst += (uint64_t)mv.move;
			mv.src += (uint64_t)mv.move;
			mv.len -= (uint64_t)mv.move;
		}
		if (errno != EAGAIN)
			return -errno;
		mv.move = 0;
	}
}

static int wp_range(struct memmgr *m, uint8_t *addr, size_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	while (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		if (errno != EAGAIN)
			return -errno;
	}
	return 0;
}

/* A page of guest RAM inside the anonymous VMA (not a pool mapping, not a written copy of one). */
static bool anon_page(const struct memmgr *m, size_t page)
{
	return pstate_get(&m->ps, page) != PS_SHARED && !pstate_file_vma(&m->ps, page);
}

/* The next run to capture at or after *a: it starts and ends on wanted pages and bridges gaps of
 * up to RUN_GAP anonymous pages (they are captured and given back at once), so that one
 * write-protect and one zap cover many pages. */
#define RUN_GAP 8u

static bool next_run(const struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
		     size_t *a, size_t *len)
{
	size_t end, gap = 0;

	while (*a < n && !cm_test(want, *a))
		(*a)++;
	if (*a >= n)
		return false;
	end = *a + 1;
	for (size_t i = end; i < n && anon_page(m, first + i); i++) {
		if (cm_test(want, i)) {
			end = i + 1;
			gap = 0;
		} else if (++gap > RUN_GAP) {
			break;
		}
	}
	*len = end - *a;
	return true;
}

static int copy_back(struct memmgr *m, size_t page, size_t s);

/* move: UFFDIO_MOVE takes each wanted run out of guest RAM (the kernel flushes the TLB once per
 * page: costly while vCPUs run, see docs/architecture.md). */
static int capture_move(struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
			struct chunkmap *got)
{
	size_t len;

	/* Runs of wanted pages only, no bridging: each page moved costs the same. */
	for (size_t a = 0; a < n; a += len ? len : 1) {
		size_t moved = 0, i;
		int r;

		for (len = 0; a + len < n && cm_test(want, a + len); len++)
			;
		if (!len)
			continue;
		r = move_run(m, first + a, len, a, &moved);
		for (i = 0; i < moved; i++)
			cm_set(got, a + i);
		/* A page that would not move (-EBUSY: mapped elsewhere too, or pinned) ends the
		 * run; the rest go one by one. */
		for (i = moved + 1; r == -EBUSY && i < len; i++) {
			size_t one;

			if (move_run(m, first + a + i, 1, a + i, &one) == 0 && one)
				cm_set(got, a + i);
		}
		if (r < 0 && r != -EBUSY && r != -ENOENT)
			log_error("memory: UFFDIO_MOVE of %zu pages at %p: %s", len,
				  (void *)mem_hva(m, first + a), strerror(-r));
	}
	return 0;
}

/* What a page of a write-protected run is, from pagemap after the protection. */
enum wp_kind {
	WK_TAKE, /* its own page: copied to staging, zapped */
	WK_ZERO, /* the zero page: zapped, the zero page mapped again */
	WK_HOLE, /* nothing there (a touch waits for the lock) */
	WK_KEEP, /* anything else (swapped out, file, mapped elsewhere): left alone, unprotected */
};

static enum wp_kind wp_kind(struct memmgr *m, size_t page, uint64_t pm)
{
	if ((pm & PM_FILE) && m->gm->backend != MEM_BACKEND_MEMFD)
		return WK_KEEP;
	if ((pm & (PM_PRESENT | PM_EXCLUSIVE)) == (PM_PRESENT | PM_EXCLUSIVE))
		return WK_TAKE;
	if (pm & PM_PRESENT)
		return mem_page_is_zero(mem_hva(m, page)) ? WK_ZERO : WK_KEEP;
	return pm & PM_SWAP ? WK_KEEP : WK_HOLE;
}

/* Zaps the pages of [a, a + len) that are not WK_KEEP, one madvise per stretch. */
static int wp_zap(struct memmgr *m, size_t first, size_t a, size_t len, const uint8_t *kind)
{
	for (size_t i = a; i < a + len;) {
		size_t j = i;
		int64_t r;

		while (j < a + len && kind[j] != WK_KEEP)
			j++;
		/* MADV_DONTNEED, or a hole punched in the memfd (unmapping would free nothing). */
		r = j > i ? gmem_punch(m->gm, (first + i) * MEM_PAGE, (j - i) * MEM_PAGE) : 0;
		if (r < 0)
			return (int)r;
		i = j + (j < a + len);
	}
	return 0;
}

/* wp: per run, write-protect (one TLB flush), copy what is there to staging, zap the run (one
 * more flush), and give the bridged pages back at once. A guest write in between waits on the
 * protection in the fault handler until the lock is released, and then lands on whatever the page
 * has become; a touch after the zap waits there too. Pages the kernel may still change under us
 * (swapped out) are never zapped. */
static int capture_wp(struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
		      struct chunkmap *got)
{
	uint64_t pm[MEM_CHUNK];
	uint8_t kind[MEM_CHUNK];
	size_t a = 0, len;
	int r = 0;

	for (; r == 0 && next_run(m, first, n, want, &a, &len); a += len) {
		uint8_t *addr = mem_hva(m, first + a);

		r = wp_range(m, addr, len * MEM_PAGE, true);
		if (r < 0)
			break;
		if ((r = pagemap_read(m, first + a, len, pm + a)) < 0) {
			wp_range(m, addr, len * MEM_PAGE, false);
			break;
		}
		for (size_t i = a; i < a + len; i++) {
			kind[i] = (uint8_t)wp_kind(m, first + i, pm[i]);
			if (kind[i] == WK_TAKE)
				memcpy(m->stage + i * MEM_PAGE, mem_hva(m, first + i), MEM_PAGE);
		}
		/* On failure part of the run may be zapped: everything is put back (a page that
		 * was not zapped refuses the copy with EEXIST and keeps its content). */
		r = wp_zap(m, first, a, len, kind);
		for (size_t i = a; i < a + len; i++) {
			if (kind[i] == WK_TAKE && cm_test(want, i) && r == 0)
				cm_set(got, i);
			else if (kind[i] == WK_TAKE)
				copy_back(m, first + i, i);
			else if (kind[i] == WK_ZERO)
				capture_drop(m, first + i);
			else if (kind[i] == WK_KEEP)
				wp_range(m, mem_hva(m, first + i), MEM_PAGE, false);
		}
		if (r < 0)
			wp_range(m, addr, len * MEM_PAGE, false);
	}
	if (r < 0)
		log_error("memory: write-protect capture at %p: %s", (void *)mem_hva(m, first + a),
			  strerror(-r));
	return r;
}

int capture_pages(struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
		  struct chunkmap *got)
{
	int r;

	memset(got, 0, sizeof(*got));
	r = m->capture == MEM_CAPTURE_MOVE ? capture_move(m, first, n, want, got) :
					    capture_wp(m, first, n, want, got);
	atomic_fetch_add(&m->captures, cm_count(got));
	return r;
}

/* UFFDIO_COPY from staging into the hole: no TLB flush (the destination was empty), where moving
 * the page back would flush for the staging page it leaves. */
static int copy_back(struct memmgr *m, size_t page, size_t s)
{
	struct uffdio_copy c = {
		.dst = (uintptr_t)mem_hva(m, page),
		.src = (uintptr_t)(m->stage + s * MEM_PAGE),
		.len = MEM_PAGE,
	};

	while (ioctl(m->uffd, UFFDIO_COPY, &c) < 0) {
		if (errno == EEXIST)
			return 0; /* never taken away: it still holds this content */
		if (errno != EAGAIN) {
			int err = -errno;

			/* Nothing else fills the hole while we hold the lock: this is a bug or
			 * the kernel refusing memory; the guest would read zero. Say so loudly. */
			log_error("memory: giving page %p back: %s", (void *)mem_hva(m, page), strerror(-err));
			return err;
		}
		c.copy = 0;
	}
	return 0;
}

int capture_restore(struct memmgr *m, size_t page, size_t s)
{
	atomic_fetch_add(&m->captures_aborted, 1);
	return copy_back(m, page, s);
}

/* The page was zero: it becomes the kernel's zero page, so guest reads cost no fault at all and
 * a write copies-on-write in the kernel (the scanner sees that in pagemap and counts a refault). */
int capture_drop(struct memmgr *m, size_t page)
{
	struct uffdio_zeropage z = { .range = { .start = (uintptr_t)mem_hva(m, page), .len = MEM_PAGE } };

	/* A memfd has no zero page to map: leave the hole (a touch faults and gets a page then). */
	if (m->gm->backend == MEM_BACKEND_MEMFD) {
		fault_wake(m, mem_hva(m, page), MEM_PAGE);
		return 0;
	}
	/* Wakes whoever waits on the page: a reader retries and maps the zero page, a writer
	 * blocked on the write protection retries and copies it. */
	while (ioctl(m->uffd, UFFDIO_ZEROPAGE, &z) < 0) {
		if (errno != EAGAIN) {
			fault_wake(m, mem_hva(m, page), MEM_PAGE);
			return 0;
		}
		z.zeropage = 0;
	}
	return 0;
}

void capture_end(struct memmgr *m, size_t n)
{
	/* In move mode the staging pages hold the guest's old pages: they go back to the host here,
	 * and the next move needs them empty. In wp mode they are copies, and stay: freeing and
	 * refaulting them would charge a page to the VM's cgroup per page taken, and over a cgroup's
	 * memory.high each charge costs the reclaimer a throttling sleep (2 MiB kept instead). */
	if (m->capture == MEM_CAPTURE_MOVE)
		madvise(m->stage, n * MEM_PAGE, MADV_DONTNEED);
}
