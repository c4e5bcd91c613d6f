/* The userfaultfd handler thread ("mem-fault"): every missing-page or write-protect fault on
 * guest RAM, whoever takes it (a vCPU through KVM, a device on the loop thread, the scanner), is
 * served here by the page's state (pstate_fault_action). It waits for the lock, so a fault on a
 * page being captured waits until the capture is over and then sees the page's new state.
 *
 * hostd's low state blocks allocation (mem_blocked): a fault that would take a new host page is
 * then held, not served: its thread waits in the kernel while this one goes on serving the others
 * and, without the lock, waits for the block to lift (mem_block_changed), or for the VM to stop,
 * and then serves what it held. The loop thread's faults (device emulation) are never held: it
 * carries hostd's link, which lifts the block. */
#include "mem_internal.h"
#include "uffd_compat.h"

#include <kvmm/log.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ZERO_WINDOW_PAGES 512u /* 2 MiB: one userspace fault per window of untouched memory */
#define HELD_MAX 256u          /* faults held at once; more are served (threads fault one at a time) */
#define RECHECK_MS 50          /* while holding: how often to ask whether the VM is stopping */

struct held {
	struct uffd_msg msg;
	uint64_t since_ns;
};

struct holding {
	struct held f[HELD_MAX];
	size_t n;
};

int fault_register(struct memmgr *m, uint8_t *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			(m->capture == MEM_CAPTURE_WP ? UFFDIO_REGISTER_MODE_WP : 0),
	};

	if (ioctl(m->uffd, UFFDIO_REGISTER, &reg) < 0) {
		int err = -errno;

		log_error("memory: UFFDIO_REGISTER %p+%#zx: %s", (void *)addr, len, strerror(-err));
		return err;
	}
	return 0;
}

void fault_wake(struct memmgr *m, uint8_t *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	if (m->uffd >= 0)
		ioctl(m->uffd, UFFDIO_WAKE, &r);
}

/* UFFDIO_ZEROPAGE over [addr, addr + len); on EEXIST (a page there is mapped already) retries
 * only the first page, and if that is mapped too just wakes the faulting thread. */
static void zero_map(struct memmgr *m, uint8_t *addr, size_t len)
{
	struct uffdio_zeropage z = { .range = { .start = (uintptr_t)addr, .len = len } };

	while (ioctl(m->uffd, UFFDIO_ZEROPAGE, &z) < 0) {
		if (errno == EAGAIN)
			continue;
		if (errno == EEXIST && z.range.len > MEM_PAGE) {
			z.range.len = MEM_PAGE;
			z.zeropage = 0;
			continue;
		}
		if (errno != EEXIST)
			log_error("memory: UFFDIO_ZEROPAGE %p: %s", (void *)addr, strerror(errno));
		fault_wake(m, addr, MEM_PAGE);
		return;
	}
}

/* A write fault on a dropped page gets a zeroed private page at once (UFFDIO_COPY), saving the
 * second, copy-on-write fault that a zero-page mapping would take. */
static void zero_copy(struct memmgr *m, uint8_t *addr)
{
	static const uint8_t zeros[MEM_PAGE] __attribute__((aligned(MEM_PAGE)));
	struct uffdio_copy c = { .dst = (uintptr_t)addr, .src = (uintptr_t)zeros, .len = MEM_PAGE };

	while (ioctl(m->uffd, UFFDIO_COPY, &c) < 0) {
		if (errno == EAGAIN) {
			c.copy = 0;
			continue;
		}
		if (errno != EEXIST)
			log_error("memory: UFFDIO_COPY %p: %s", (void *)addr, strerror(errno));
		fault_wake(m, addr, MEM_PAGE);
		return;
	}
}

/* Untouched neighbours of page i (same 2 MiB window, PRESENT and anonymous, not the faulting one's
 * other side of a pool mapping) get the zero page too: one userspace fault per window instead of
 * one per page. Writes then copy-on-write in the kernel without coming here. */
/* --mem-backend thp: a userfaultfd-registered range gets no huge page from the kernel's own
 * faults. A window nothing has touched yet is filled with zeros in one UFFDIO_COPY and collapsed
 * into a huge page (MADV_COLLAPSE, Linux 6.1+); capture splits it later only where pages are
 * taken. False when the window is not wholly untouched or the kernel will not. */
static bool serve_huge(struct memmgr *m, size_t lo)
{
	static const uint8_t zeros[ZERO_WINDOW_PAGES * MEM_PAGE] __attribute__((aligned(MEM_PAGE)));
	uint64_t pm[ZERO_WINDOW_PAGES];
	struct uffdio_copy c = { .dst = (uintptr_t)mem_hva(m, lo), .src = (uintptr_t)zeros,
				 .len = sizeof(zeros) };

	if (lo + ZERO_WINDOW_PAGES > m->pages || pagemap_read(m, lo, ZERO_WINDOW_PAGES, pm) < 0)
		return false;
	for (size_t k = 0; k < ZERO_WINDOW_PAGES; k++)
		if (pstate_get(&m->ps, lo + k) != PS_PRESENT || pstate_file_vma(&m->ps, lo + k) ||
		    (pm[k] & (PM_PRESENT | PM_SWAP)))
			return false;
	if (ioctl(m->uffd, UFFDIO_COPY, &c) < 0)
		return false; /* a partial copy leaves the rest to the 4 KiB path */
	madvise(mem_hva(m, lo), sizeof(zeros), MADV_COLLAPSE);
	return true;
}

/* While allocation is blocked (`narrow`), only the faulting page: a later write to a neighbour
 * must fault here to be held, not copy the zero page in the kernel. */
static void serve_window(struct memmgr *m, size_t i, bool narrow)
{
	size_t lo = i & ~(size_t)(ZERO_WINDOW_PAGES - 1), hi = lo + ZERO_WINDOW_PAGES, end = i + 1;

	if (m->gm->backend == MEM_BACKEND_THP && !narrow && serve_huge(m, lo))
		return;
	/* A memfd has no zero page: UFFDIO_ZEROPAGE allocates, so only the faulting page. */
	if (m->gm->backend == MEM_BACKEND_MEMFD || narrow)
		hi = i + 1;

	if (hi > m->pages)
		hi = m->pages;
	while (end < hi && pstate_get(&m->ps, end) == PS_PRESENT && !pstate_file_vma(&m->ps, end))
		end++;
	zero_map(m, mem_hva(m, i), (end - i) * MEM_PAGE);
}

static void serve_missing(struct memmgr *m, size_t i, bool write, bool blocked)
{
	enum pstate s = pstate_get(&m->ps, i);

	switch (pstate_fault_action(s)) {
	case FA_ZERO_WINDOW:
		serve_window(m, i, blocked);
		break;
	case FA_ZERO:
		/* A ballooned page touched again is the guest's once more (it deflated); a dropped
		 * zero page read stays ZERO (the zero page costs nothing), written it refaults. */
		if (s == PS_ZERO)
			atomic_fetch_add(&m->refaults, 1);
		if (write || s == PS_BALLOONED)
			pstate_set(&m->ps, i, PS_PRESENT, 0, false);
		if (write)
			zero_copy(m, mem_hva(m, i));
		else
			zero_map(m, mem_hva(m, i), MEM_PAGE);
		break;
	case FA_WAKE:
		fault_wake(m, mem_hva(m, i), MEM_PAGE);
		break;
	case FA_DECOMPRESS:
	case FA_SWAP_IN:
		reclaim_fault_in(m, i);
		break;
	}
}

/* A write to a page a WP capture protected: by now the capture is over (we held the lock). If the
 * page is still there, unprotect it (which wakes the writer); if the capture took it, wake the
 * writer so that it faults again as a missing page. */
static void serve_wp(struct memmgr *m, uint8_t *addr)
{
	struct uffdio_writeprotect wp = { .range = { .start = (uintptr_t)addr, .len = MEM_PAGE } };

	if (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		fault_wake(m, addr, MEM_PAGE);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* Whether a missing fault on page i must wait for the block to lift (lock held). */
static bool must_hold(struct memmgr *m, const struct uffd_msg *msg, size_t i)
{
	pid_t tid = (pid_t)msg->arg.pagefault.feat.ptid;

	if (!tid || tid == m->loop_tid)
		return false;
	return pstate_fault_allocates(pstate_fault_action(pstate_get(&m->ps, i)),
				      msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE,
				      m->gm->backend != MEM_BACKEND_MEMFD);
}

/* Keeps a fault for later; a second message for a page already held (the thread was interrupted
 * and faulted again) adds nothing. */
static void hold(struct memmgr *m, struct holding *h, const struct uffd_msg *msg)
{
	for (size_t k = 0; k < h->n; k++)
		if (h->f[k].msg.arg.pagefault.address == msg->arg.pagefault.address)
			return;
	/* Debug only: under a lasting block this comes and goes with every reclaimer tick;
	 * mem_set_host_target logs the block itself, the stats count the waits. */
	if (!h->n)
		log_debug("memory: allocation is blocked (hostd's low state, or a hard limit) and this VM "
			  "holds its target: guest faults that allocate wait");
	h->f[h->n++] = (struct held){ .msg = *msg, .since_ns = now_ns() };
	atomic_fetch_add(&m->blocked_faults, 1);
	atomic_store(&m->blocked_now, h->n);
}

/* Serves one fault, or holds it (h non-NULL and allocation blocked). */
static void serve(struct memmgr *m, const struct uffd_msg *msg, struct holding *h)
{
	uintptr_t base = (uintptr_t)m->gm->map, addr = msg->arg.pagefault.address & ~(uintptr_t)(MEM_PAGE - 1);
	uint64_t flags = msg->arg.pagefault.flags;
	bool blocked = h && h->n < HELD_MAX && mem_blocked(m);
	size_t page;

	if (addr < base || addr - base >= m->pages * (uintptr_t)MEM_PAGE) {
		atomic_fetch_add(&m->faults, 1);
		/* Not guest RAM: a staging page (never read while empty, but never hang on it). */
		zero_map(m, (uint8_t *)addr, MEM_PAGE);
		return;
	}
	page = (addr - base) / MEM_PAGE;
	atomic_fetch_add(&m->fault_waiting, 1);
	pthread_mutex_lock(&m->lock);
	atomic_fetch_sub(&m->fault_waiting, 1);
	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		serve_wp(m, (uint8_t *)addr);
	} else if (blocked && must_hold(m, msg, page)) {
		pthread_mutex_unlock(&m->lock);
		hold(m, h, msg);
		return;
	} else {
		serve_missing(m, page, flags & UFFD_PAGEFAULT_FLAG_WRITE, blocked);
	}
	atomic_fetch_add(&m->faults, 1);
	pthread_mutex_unlock(&m->lock);
}

/* The block lifted, or the VM stops: every held fault is served now. */
static void release(struct memmgr *m, struct holding *h)
{
	uint64_t now = now_ns(), most = 0;

	for (size_t k = 0; k < h->n; k++) {
		uint64_t waited = now - h->f[k].since_ns;

		atomic_fetch_add(&m->blocked_ns, waited);
		most = waited > most ? waited : most;
		serve(m, &h->f[k].msg, NULL);
	}
	log_debug("memory: %zu guest fault%s held by hostd's block go on (the longest waited %llu ms)",
		  h->n, h->n == 1 ? "" : "s", (unsigned long long)(most / 1000000));
	h->n = 0;
	atomic_store(&m->blocked_now, 0);
}

static void *fault_main(void *opaque)
{
	struct memmgr *m = opaque;
	struct uffd_msg msgs[16];
	struct holding *h = calloc(1, sizeof(*h));
	struct pollfd fds[3] = { { .fd = m->uffd, .events = POLLIN }, { .fd = m->fault_stop_fd, .events = POLLIN },
				 { .fd = m->block_fd, .events = POLLIN } };

	if (!h)
		log_error("memory: out of memory: hostd's block will not hold guest faults");
	while (!atomic_load(&m->fault_stopping)) {
		ssize_t n;
		uint64_t ev;

		if (poll(fds, 3, h && h->n ? RECHECK_MS : -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("memory: poll on userfaultfd: %s", strerror(errno));
			break;
		}
		if (fds[1].revents)
			break;
		if (fds[2].revents && read(m->block_fd, &ev, sizeof(ev)) < 0 && errno != EAGAIN)
			log_error("memory: reading the block eventfd: %s", strerror(errno));
		if (h && h->n && !mem_blocked(m))
			release(m, h);
		if (!fds[0].revents)
			continue;
		n = read(m->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			log_error("memory: reading userfaultfd: %s", strerror(errno));
			break;
		}
		for (ssize_t k = 0; k < n / (ssize_t)sizeof(msgs[0]); k++)
			if (msgs[k].event == UFFD_EVENT_PAGEFAULT)
				serve(m, &msgs[k], h);
	}
	if (h && h->n)
		release(m, h);
	free(h);
	return NULL;
}

int fault_start(struct memmgr *m)
{
	int r = pthread_create(&m->fault_thread, NULL, fault_main, m);

	if (r)
		return -r;
	pthread_setname_np(m->fault_thread, "mem-fault");
	m->fault_started = true;
	return 0;
}
