/* The memory manager's lifecycle, the release and reset paths, and its figures. */
#include "mem_internal.h"
#include "uffd_compat.h"

#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/policy.h>
#include <kvmm/size.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

const char *mem_share_name(enum mem_share_mode mode)
{
	static const char *const names[] = { "off", "zero", "tps", "ksm" };
	return (unsigned)mode < 4 ? names[mode] : "?";
}

const char *mem_capture_name(const struct memmgr *m)
{
	static const char *const names[] = { "none", "move", "wp" };
	return names[m->capture];
}

enum mem_share_mode mem_share_mode(const struct memmgr *m)
{
	return m->mode;
}

const struct mem_features *mem_features(const struct memmgr *m)
{
	return &m->feat;
}

/* Pages are shared only between equal salts. "vm" draws a random salt, so no other VM can ever
 * match; "host" is one salt for all; a name is its own group. */
static uint64_t salt_for(const char *salt)
{
	uint64_t s = 0;

	if (strcmp(salt, "host") == 0)
		return 0x6b766d6d686f7374ull;
	if (strcmp(salt, "vm") == 0) {
		if (getrandom(&s, sizeof(s), 0) != sizeof(s))
			s = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&s;
		return s;
	}
	return XXH3_64bits(salt, strlen(salt));
}

static int choose_capture(struct memmgr *m)
{
	const struct mem_features *f = &m->feat;
	char opt[32] = "--mem-limit"; /* off and ksm need userfaultfd only to enforce a limit */

	if (m->cfg->hostd && !(m->cfg->mem_limit && m->cfg->mem_limit < m->gm->ram_size))
		snprintf(opt, sizeof(opt), "--hostd");
	else if (m->cfg->mem_cgroup == MEM_CGROUP_ON && !(m->cfg->mem_limit && m->cfg->mem_limit < m->gm->ram_size))
		snprintf(opt, sizeof(opt), "--mem-cgroup on");

	if (m->mode == MEM_SHARE_ZERO || m->mode == MEM_SHARE_TPS)
		snprintf(opt, sizeof(opt), "--mem-share %s", mem_share_name(m->mode));
	if (!f->uffd) {
		log_error("%s: needs userfaultfd, which is %s", opt, f->uffd_via);
		return -ENOTSUP;
	}
	if (m->gm->backend == MEM_BACKEND_MEMFD && m->cfg->mem_capture == MEM_CAPTURE_FORCE_MOVE) {
		log_error("--mem-capture move: UFFDIO_MOVE takes anonymous pages only, not --mem-backend memfd");
		return -ENOTSUP;
	}
	switch (m->cfg->mem_capture) {
	case MEM_CAPTURE_AUTO:
		/* wp first: measured faster (docs/architecture.md), because it flushes the TLB once
		 * per run of pages where UFFDIO_MOVE flushes once per page. */
		m->capture = f->uffd_wp ? MEM_CAPTURE_WP :
			     f->uffd_move && m->gm->backend != MEM_BACKEND_MEMFD ? MEM_CAPTURE_MOVE :
										  MEM_CAPTURE_NONE;
		break;
	case MEM_CAPTURE_FORCE_MOVE:
		m->capture = f->uffd_move ? MEM_CAPTURE_MOVE : MEM_CAPTURE_NONE;
		break;
	case MEM_CAPTURE_FORCE_WP:
		m->capture = f->uffd_wp ? MEM_CAPTURE_WP : MEM_CAPTURE_NONE;
		break;
	}
	if (m->capture == MEM_CAPTURE_NONE) {
		log_error("%s: this kernel has neither UFFDIO_MOVE (Linux 6.8+) nor userfaultfd "
			  "write-protect%s", opt, m->cfg->mem_capture != MEM_CAPTURE_AUTO ?
			  " as --mem-capture asks" : "");
		return -ENOTSUP;
	}
	return 0;
}

/* userfaultfd on guest RAM and the staging pages, for the zero and tps modes. */
static int setup_uffd(struct memmgr *m)
{
	/* The faulting thread's id lets fault.c tell the loop thread's faults from the guest's. */
	uint64_t want = (m->capture == MEM_CAPTURE_MOVE ? UFFD_FEATURE_MOVE : UFFD_FEATURE_PAGEFAULT_FLAG_WP) |
			UFFD_FEATURE_THREAD_ID;
	const char *via;
	uint64_t got;
	int r;

	m->uffd = features_uffd_open(want, &got, &via);
	if (m->uffd < 0) {
		log_error("memory: userfaultfd: %s", strerror(-m->uffd));
		return m->uffd;
	}
	m->stage = mmap(NULL, MEM_CHUNK * MEM_PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->stage == MAP_FAILED) {
		m->stage = NULL;
		return -ENOMEM;
	}
	/* UFFDIO_MOVE's destination must be registered with the same userfaultfd. */
	if (m->capture == MEM_CAPTURE_MOVE &&
	    (r = fault_register(m, m->stage, MEM_CHUNK * MEM_PAGE)) < 0)
		return r;
	return fault_register(m, m->gm->map, m->gm->map_size);
}

static int setup_tps(struct memmgr *m)
{
	int r = pool_create(&m->pool, (uint32_t)(m->pages < UINT32_MAX - 1 ? m->pages : UINT32_MAX - 1));

	if (r < 0) {
		log_error("memory: sharing pool: %s", strerror(-r));
		return r;
	}
	r = htab_init(&m->ht, m->pages);
	if (r < 0)
		return r;
	if (features_raise_map_count(&m->feat, m->pages) == -EPERM)
		log_info("memory: not root: vm.max_map_count stays %llu",
			 (unsigned long long)m->feat.max_map_count);
	m->share_cap = features_share_cap(m->feat.max_map_count, features_vmas_now(), m->pages);
	if (m->share_cap < m->pages)
		log_info("memory: vm.max_map_count %llu caps page sharing at %llu pages (%llu MiB); "
			 "zero pages are not capped", (unsigned long long)m->feat.max_map_count,
			 (unsigned long long)m->share_cap, (unsigned long long)(m->share_cap >> 8));
	return 0;
}

int mem_create(struct memmgr **out, struct gmem *gm, const struct vm_config *cfg)
{
	struct memmgr *m = calloc(1, sizeof(*m));
	int r;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->gm = gm;
	m->cfg = cfg;
	m->mode = cfg->mem_share;
	m->pages = gm->map_size / MEM_PAGE;
	m->uffd = m->pagemap_fd = m->stop_fd = m->fault_stop_fd = m->block_fd = m->stats_fd = m->vm_fd = -1;
	atomic_store(&m->limit, cfg->mem_limit ? cfg->mem_limit : gm->ram_size);
	atomic_store(&m->reservation, cfg->mem_reservation);
	atomic_store(&m->host_target, UINT64_MAX);
	atomic_store(&m->host_tech, POLICY_TECH_ALL);
	m->pool.fd = -1;
	m->salt = salt_for(cfg->mem_salt);
	atomic_store(&m->rate, cfg->mem_share_rate);
	atomic_store(&m->cpu_pct, cfg->mem_share_cpu);
	pthread_mutex_init(&m->lock, NULL);
	*out = m;

	features_detect(&m->feat);
	features_log(&m->feat);
	/* hugetlb: 2 MiB pages cannot be taken 4 KiB at a time (capture, pool pages, compression);
	 * only the balloon gives its memory back, whole huge pages at a time. */
	if (!gmem_small_pages(gm) && (m->mode == MEM_SHARE_ZERO || m->mode == MEM_SHARE_TPS)) {
		log_info("memory: --mem-backend %s: page sharing needs 4 KiB pages; sharing off",
			 gmem_backend_name(gm->backend));
		m->mode = MEM_SHARE_OFF;
	}
	if (!gmem_small_pages(gm) && cfg->mem_limit && cfg->mem_limit < gm->ram_size) {
		log_error("--mem-limit: --mem-backend %s pages cannot be compressed or swapped 4 KiB at a "
			  "time; use the balloon, or anon, memfd or thp", gmem_backend_name(gm->backend));
		return -ENOTSUP;
	}
	if ((r = pstate_init(&m->ps, m->pages)) < 0)
		return r;
	m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->fault_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->block_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->pagemap_fd < 0 || m->stop_fd < 0 || m->fault_stop_fd < 0 || m->block_fd < 0)
		return -errno;

	switch (m->mode) {
	case MEM_SHARE_OFF:
	case MEM_SHARE_KSM:
		if (m->mode == MEM_SHARE_KSM && !m->feat.ksm) {
			log_error("--mem-share ksm: this kernel has no KSM (/sys/kernel/mm/ksm)");
			return -ENOTSUP;
		}
		if (m->mode == MEM_SHARE_KSM && (r = ksm_setup(m)) < 0)
			return r;
		/* Without sharing, a limit below the memory still needs pages taken and faulted
		 * back: the same userfaultfd and capture; so does a VM under hostd, whose target
		 * can come down at any time. */
		if (((cfg->mem_limit && cfg->mem_limit < gm->ram_size) ||
		     ((cfg->hostd || cfg->mem_cgroup == MEM_CGROUP_ON) && gmem_small_pages(gm))) &&
		    ((r = choose_capture(m)) < 0 || (r = setup_uffd(m)) < 0))
			return r;
		break;
	case MEM_SHARE_ZERO:
	case MEM_SHARE_TPS:
		if ((r = choose_capture(m)) < 0 || (r = setup_uffd(m)) < 0)
			return r;
		if (m->mode == MEM_SHARE_TPS && (r = setup_tps(m)) < 0)
			return r;
		break;
	}
	if (m->uffd >= 0 && (r = reclaim_setup(m)) < 0)
		return r;
	if (strcmp(cfg->mem_salt, "vm") != 0 && m->mode == MEM_SHARE_TPS)
		log_info("memory: --mem-salt %s: pages are shared within this VM until kvmm hostd "
			 "provides a pool across VMs", cfg->mem_salt);
	log_info("memory: sharing %s%s%s", mem_share_name(m->mode),
		 m->uffd >= 0 ? ", capture by " : "", m->uffd >= 0 ? mem_capture_name(m) : "");
	return 0;
}

int mem_start(struct memmgr *m)
{
	int r;

	if (m->uffd < 0)
		return 0;
	if ((r = fault_start(m)) < 0)
		return r;
	if ((m->mode == MEM_SHARE_ZERO || m->mode == MEM_SHARE_TPS) && (r = share_start(m)) < 0)
		return r;
	return m->reclaim ? reclaim_start(m) : 0;
}

void mem_stop(struct memmgr *m)
{
	if (!m || atomic_exchange(&m->stopping, true))
		return;
	if (m->stop_fd >= 0)
		eventfd_write(m->stop_fd, 1);
	mem_block_changed(m); /* faults held for hostd go on: the VM is stopping */
	if (m->share_started)
		pthread_join(m->share_thread, NULL);
	if (m->reclaim_started)
		pthread_join(m->reclaim_thread, NULL);
}

void mem_destroy(struct memmgr *m)
{
	if (!m)
		return;
	mem_stop(m);
	atomic_store(&m->fault_stopping, true);
	if (m->fault_stop_fd >= 0)
		eventfd_write(m->fault_stop_fd, 1);
	if (m->fault_started)
		pthread_join(m->fault_thread, NULL);
	if (m->stats_fd >= 0) {
		if (m->stats_loop)
			loop_del(m->stats_loop, m->stats_fd);
		close(m->stats_fd);
	}
	if (m->uffd >= 0)
		close(m->uffd);
	if (m->stage)
		munmap(m->stage, MEM_CHUNK * MEM_PAGE);
	if (m->pagemap_fd >= 0)
		close(m->pagemap_fd);
	if (m->stop_fd >= 0)
		close(m->stop_fd);
	if (m->fault_stop_fd >= 0)
		close(m->fault_stop_fd);
	if (m->block_fd >= 0)
		close(m->block_fd);
	reclaim_free(m);
	pool_destroy(&m->pool);
	htab_free(&m->ht);
	pstate_free(&m->ps);
	free(m->skip);
	free(m->seen);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* Pages of region r inside [gpa, end), whole pages only: [*a, *b) as page indices in gm->map. */
static bool region_pages(const struct gmem *gm, const struct gmem_region *r, uint64_t gpa,
			 uint64_t end, size_t *a, size_t *b)
{
	uint64_t lo = gpa > r->gpa ? gpa : r->gpa;
	uint64_t hi = end < r->gpa + r->size ? end : r->gpa + r->size;

	lo = (lo + MEM_PAGE - 1) & ~(uint64_t)(MEM_PAGE - 1);
	hi &= ~(uint64_t)(MEM_PAGE - 1);
	if (lo >= hi)
		return false;
	*a = (size_t)((r->host - gm->map) + (lo - r->gpa)) / MEM_PAGE;
	*b = *a + (size_t)((hi - lo) / MEM_PAGE);
	return true;
}

/* Pages [a, b) given up: compressed or swapped ones lose their copy, the ones in pool mappings
 * become anonymous again, then all go. */
static int release_pages(struct memmgr *m, size_t a, size_t b)
{
	if (m->reclaim)
		for (size_t i = a; i < b; i++)
			reclaim_forget(m, i);
	for (size_t i = a; i < b;) {
		size_t j = i;

		while (j < b && (pstate_get(&m->ps, j) == PS_SHARED || pstate_file_vma(&m->ps, j)))
			j++;
		if (j > i) {
			int r = share_unmap(m, i, j - i);

			if (r < 0)
				return r;
			i = j;
		} else {
			i++;
		}
	}
	int64_t r = gmem_punch(m->gm, a * MEM_PAGE, (b - a) * MEM_PAGE);

	if (r < 0)
		return (int)r;
	for (size_t i = a; i < b; i++)
		pstate_set(&m->ps, i, PS_BALLOONED, 0, false);
	return 0;
}

int64_t mem_release(struct memmgr *m, struct gmem *gm, uint64_t gpa, uint64_t len)
{
	uint64_t end = len > UINT64_MAX - gpa ? UINT64_MAX : gpa + len;
	int64_t released = 0;
	size_t a, b;

	if (!m)
		return gmem_discard(gm, gpa, len);
	pthread_mutex_lock(&m->lock);
	for (unsigned k = 0; k < gm->nr_regions; k++) {
		if (!region_pages(gm, &gm->regions[k], gpa, end, &a, &b))
			continue;
		int r = release_pages(m, a, b);

		if (r < 0) {
			released = r;
			break;
		}
		released += (int64_t)(b - a) * MEM_PAGE;
	}
	pthread_mutex_unlock(&m->lock);
	return released;
}

int mem_reset(struct memmgr *m, struct gmem *gm)
{
	int r = 0;

	if (!m || m->uffd < 0) {
		r = gmem_discard_all(gm);
		if (m) {
			pthread_mutex_lock(&m->lock);
			pstate_reset(&m->ps);
			pthread_mutex_unlock(&m->lock);
		}
		return r;
	}
	pthread_mutex_lock(&m->lock);
	r = share_unmap(m, 0, m->pages);
	if (m->mode == MEM_SHARE_TPS) {
		pool_clear(&m->pool);
		htab_clear(&m->ht);
	}
	if (m->reclaim)
		reclaim_reset(m);
	if (m->skip)
		memset(m->skip, 0, m->pages);
	if (m->seen)
		memset(m->seen, 0, m->pages * sizeof(*m->seen));
	pstate_reset(&m->ps);
	m->file_vma_pages = 0;
	pthread_mutex_unlock(&m->lock);
	if (r < 0)
		log_error("memory: reset: %s", strerror(-r));
	return r;
}

int mem_set_share_rate(struct memmgr *m, uint64_t pages_per_sec, unsigned cpu_pct)
{
	if (pages_per_sec > CONFIG_SHARE_RATE_MAX || cpu_pct > 100)
		return -EINVAL;
	if (pages_per_sec)
		atomic_store(&m->rate, pages_per_sec);
	if (cpu_pct)
		atomic_store(&m->cpu_pct, cpu_pct);
	if (m->mode == MEM_SHARE_KSM && pages_per_sec)
		return ksm_setup(m);
	return 0;
}

void mem_get_share_rate(const struct memmgr *m, uint64_t *pages_per_sec, unsigned *cpu_pct)
{
	*pages_per_sec = atomic_load(&((struct memmgr *)m)->rate);
	*cpu_pct = atomic_load(&((struct memmgr *)m)->cpu_pct);
}
