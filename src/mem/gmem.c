#include <kvmm/gmem.h>
#include <kvmm/log.h>

#include <asm-generic/hugetlb_encode.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Guest RAM is allocated by one of four backends (gmem.h). This file holds the only calls that map
 * or free guest RAM by backend: gmem_init, gmem_punch and gmem_remap. */

static const char *const backend_names[] = { "anon", "memfd", "hugetlb", "thp" };

const char *gmem_backend_name(enum mem_backend backend)
{
	return (unsigned)backend <= MEM_BACKEND_THP ? backend_names[backend] : "?";
}

bool gmem_small_pages(const struct gmem *gm)
{
	return gm->page_size == GMEM_PAGE_SIZE;
}

static uint64_t read_u64(const char *path)
{
	unsigned long long v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

#define HUGEPAGES_2M "/sys/kernel/mm/hugepages/hugepages-2048kB/"

/* hugetlb pages come from a pool the administrator sizes; say how far it falls short, up front,
 * rather than let mmap fail with a bare ENOMEM. Pages reserved by other mappings are counted in
 * free_hugepages but cannot be had, so they are taken off. */
static int hugetlb_check(uint64_t ram_size)
{
	uint64_t free = read_u64(HUGEPAGES_2M "free_hugepages");
	uint64_t resv = read_u64(HUGEPAGES_2M "resv_hugepages");
	uint64_t total = read_u64(HUGEPAGES_2M "nr_hugepages");
	uint64_t avail = free > resv ? free - resv : 0, need = ram_size / GMEM_HUGE_PAGE_SIZE;

	if (avail >= need)
		return 0;
	log_error("--mem-backend hugetlb: %llu MiB of guest RAM needs %llu free 2 MiB huge pages, the host "
		  "has %llu (" HUGEPAGES_2M "free_hugepages, less reserved ones); raise vm.nr_hugepages, "
		  "e.g. sysctl vm.nr_hugepages=%llu", (unsigned long long)(ram_size >> 20),
		  (unsigned long long)need, (unsigned long long)avail,
		  (unsigned long long)(total + need - avail));
	return -ENOMEM;
}

/* THP set to "never" makes MADV_HUGEPAGE a no-op; the VM still runs, on 4 KiB pages. */
static void thp_check(void)
{
	char line[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
	}
	if (!f || strstr(line, "[never]"))
		log_warn("--mem-backend thp: transparent huge pages are %s on this host "
			 "(/sys/kernel/mm/transparent_hugepage/enabled): guest RAM gets 4 KiB pages",
			 f ? "disabled" : "not available");
}

/* anon and thp. For thp the mapping starts on a 2 MiB boundary (over-mapped by 2 MiB, the excess
 * trimmed), so each 2 MiB of guest-physical RAM is one 2 MiB-aligned host range a huge page can
 * back; KVM maps the guest with 2 MiB pages only where both line up. */
static int map_anon(struct gmem *gm)
{
	bool thp = gm->backend == MEM_BACKEND_THP;
	size_t extra = thp ? GMEM_HUGE_PAGE_SIZE : 0, head;
	/* MAP_NORESERVE: guest RAM is overcommitted by design; pages appear as the guest touches them. */
	uint8_t *p = mmap(NULL, gm->map_size + extra, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return -ENOMEM;
	if (thp) {
		head = (size_t)(-(uintptr_t)p & (GMEM_HUGE_PAGE_SIZE - 1));
		if (head)
			munmap(p, head);
		if (extra - head)
			munmap(p + head + gm->map_size, extra - head);
		p += head;
		thp_check();
		if (madvise(p, gm->map_size, MADV_HUGEPAGE) < 0)
			log_warn("--mem-backend thp: madvise(MADV_HUGEPAGE): %s; guest RAM gets 4 KiB pages",
				 strerror(errno));
	}
	gm->map = p;
	return 0;
}

/* memfd and hugetlb: the memory belongs to the file, so it can be mapped again (gmem_remap) and
 * is freed only by punching the file. hugetlb maps without MAP_NORESERVE: the kernel then reserves
 * every huge page at mmap, and a short pool fails here instead of with SIGBUS on a guest touch. */
static int map_memfd(struct gmem *gm)
{
	bool huge = gm->backend == MEM_BACKEND_HUGETLB;
	const char *what = huge ? "--mem-backend hugetlb" : "--mem-backend memfd";
	int err;

	if (huge && (err = hugetlb_check(gm->map_size)) < 0)
		return err;
	gm->fd = memfd_create("kvmm-ram", MFD_CLOEXEC | (huge ? MFD_HUGETLB | HUGETLB_FLAG_ENCODE_2MB : 0));
	if (gm->fd < 0) {
		err = -errno;
		log_error("%s: memfd_create: %s", what, strerror(-err));
		return err;
	}
	if (ftruncate(gm->fd, (off_t)gm->map_size) < 0) {
		err = -errno;
		log_error("%s: sizing the memfd: %s", what, strerror(-err));
		return err;
	}
	gm->map = mmap(NULL, gm->map_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (huge ? 0 : MAP_NORESERVE), gm->fd, 0);
	if (gm->map == MAP_FAILED) {
		err = -errno;
		gm->map = NULL;
		log_error("%s: mapping %llu MiB: %s", what, (unsigned long long)(gm->map_size >> 20),
			  strerror(-err));
		return err == -EINVAL ? -EINVAL : -ENOMEM;
	}
	return 0;
}

int gmem_init(struct gmem *gm, uint64_t ram_size, enum mem_backend backend)
{
	uint64_t low;
	int r;

	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
	if (ram_size < GMEM_MIN_SIZE || ram_size % GMEM_PAGE_SIZE || ram_size > SIZE_MAX / 2 ||
	    (unsigned)backend > MEM_BACKEND_THP ||
	    (backend == MEM_BACKEND_HUGETLB && ram_size % GMEM_HUGE_PAGE_SIZE))
		return -EINVAL;
	gm->backend = backend;
	gm->page_size = backend == MEM_BACKEND_HUGETLB ? GMEM_HUGE_PAGE_SIZE : GMEM_PAGE_SIZE;
	gm->map_size = ram_size;
	r = backend == MEM_BACKEND_MEMFD || backend == MEM_BACKEND_HUGETLB ? map_memfd(gm) : map_anon(gm);
	if (r < 0) {
		if (gm->fd >= 0)
			close(gm->fd);
		memset(gm, 0, sizeof(*gm));
		gm->fd = -1;
		return r;
	}
	gm->ram_size = ram_size;
	low = ram_size < GMEM_PCI_HOLE_START ? ram_size : GMEM_PCI_HOLE_START;
	gm->regions[0] = (struct gmem_region){ .gpa = 0, .size = low, .host = gm->map };
	gm->nr_regions = 1;
	if (ram_size > low) {
		gm->regions[1] = (struct gmem_region){
			.gpa = GMEM_HIGH_START, .size = ram_size - low, .host = gm->map + low };
		gm->nr_regions = 2;
	}
	return 0;
}

void gmem_destroy(struct gmem *gm)
{
	/* Only a mapped gmem owns an fd: a zeroed, never-initialised struct has fd 0. */
	if (gm->map) {
		munmap(gm->map, gm->map_size);
		if (gm->fd >= 0)
			close(gm->fd);
	}
	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
}

static bool range_ok(const struct gmem *gm, size_t off, size_t len, size_t align)
{
	return gm->map && off % align == 0 && len % align == 0 && off <= gm->map_size &&
	       len <= gm->map_size - off;
}

int64_t gmem_punch(struct gmem *gm, size_t off, size_t len)
{
	size_t lo, hi;

	if (!range_ok(gm, off, len, GMEM_PAGE_SIZE))
		return -EINVAL;
	switch (gm->backend) {
	case MEM_BACKEND_HUGETLB:
		/* A huge page is freed whole or not at all; hugetlbfs would zero the partial ones at
		 * the ends, which frees nothing and may not be what the range's neighbours want. */
		lo = (off + GMEM_HUGE_PAGE_SIZE - 1) & ~(size_t)(GMEM_HUGE_PAGE_SIZE - 1);
		hi = (off + len) & ~(size_t)(GMEM_HUGE_PAGE_SIZE - 1);
		if (lo >= hi)
			return 0;
		off = lo;
		len = hi - lo;
		/* fall through */
	case MEM_BACKEND_MEMFD:
		/* On a shared mapping MADV_DONTNEED only unmaps: the pages stay in the file. The
		 * punch frees them and unmaps them from every mapping of the file. */
		if (len && fallocate(gm->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				     (off_t)len) < 0)
			return -errno;
		return (int64_t)len;
	case MEM_BACKEND_ANON:
	case MEM_BACKEND_THP:
		/* For thp the kernel frees the huge pages inside the range and splits those it cuts. */
		if (len && madvise(gm->map + off, len, MADV_DONTNEED) < 0)
			return -errno;
		return (int64_t)len;
	}
	return -EINVAL;
}

int gmem_remap(struct gmem *gm, size_t off, size_t len)
{
	int flags = MAP_FIXED, fd = -1;
	void *p;

	if (!range_ok(gm, off, len, gm->page_size) || len == 0)
		return -EINVAL;
	switch (gm->backend) {
	case MEM_BACKEND_ANON:
	case MEM_BACKEND_THP:
		flags |= MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
		break;
	case MEM_BACKEND_MEMFD:
		flags |= MAP_SHARED | MAP_NORESERVE;
		fd = gm->fd;
		break;
	case MEM_BACKEND_HUGETLB:
		flags |= MAP_SHARED; /* as at init: pages punched meanwhile are reserved again */
		fd = gm->fd;
		break;
	}
	p = mmap(gm->map + off, len, PROT_READ | PROT_WRITE, flags, fd, fd >= 0 ? (off_t)off : 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Best effort, as at init: without THP the range still works, on 4 KiB pages. */
	if (gm->backend == MEM_BACKEND_THP)
		madvise(p, len, MADV_HUGEPAGE);
	return 0;
}

int gmem_register(const struct gmem *gm, int vm_fd)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = gm->regions[i].gpa,
			.memory_size = gm->regions[i].size,
			.userspace_addr = (uintptr_t)gm->regions[i].host,
		};

		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			int err = -errno;

			log_error("KVM_SET_USER_MEMORY_REGION %u (%#llx+%#llx): %s", i,
				  (unsigned long long)slot.guest_phys_addr,
				  (unsigned long long)slot.memory_size, strerror(-err));
			return err;
		}
	}
	return 0;
}

void *gmem_ptr(const struct gmem *gm, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		return NULL;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];

		/* Written so that no sum can overflow: gpa - r->gpa only once gpa >= r->gpa. */
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int gmem_read(const struct gmem *gm, uint64_t gpa, void *buf, size_t len)
{
	void *p = gmem_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int gmem_write(struct gmem *gm, uint64_t gpa, const void *buf, size_t len)
{
	void *p = gmem_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

int64_t gmem_discard(struct gmem *gm, uint64_t gpa, uint64_t len)
{
	/* [gpa, end) with end saturated, so no sum below can overflow. */
	uint64_t end = len > UINT64_MAX - gpa ? UINT64_MAX : gpa + len;
	int64_t released = 0;

	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gmem_region *r = &gm->regions[i];
		uint64_t lo = gpa > r->gpa ? gpa : r->gpa;
		uint64_t hi = end < r->gpa + r->size ? end : r->gpa + r->size;

		/* Whole pages only: round lo up and hi down. */
		lo = (lo + GMEM_PAGE_SIZE - 1) & ~(GMEM_PAGE_SIZE - 1);
		hi &= ~(GMEM_PAGE_SIZE - 1);
		if (lo >= hi)
			continue;
		int64_t n = gmem_punch(gm, (size_t)(r->host - gm->map) + (size_t)(lo - r->gpa),
				       (size_t)(hi - lo));

		if (n < 0)
			return n;
		released += n;
	}
	return released;
}

/* From /proc/self/smaps: the Rss of every mapping inside gm->map. Rss counts the pages really
 * backed by host memory; unlike mincore it leaves out the shared zero page that a read of a
 * released page maps. The memfd's own mappings are the exception: their pages are counted from
 * the file (st_blocks), because a memfd page that is unmapped (MADV_DONTNEED) still holds memory,
 * and smaps leaves hugetlb pages out of Rss altogether. */
int64_t gmem_resident(const struct gmem *gm)
{
	unsigned long lo = (uintptr_t)gm->map, hi = lo + gm->map_size, start, end, ino;
	struct stat st = { 0 };
	char line[512];
	bool inside = false;
	int64_t kib = 0;
	unsigned long long v;
	unsigned maj, min;
	FILE *f;

	if (gm->fd >= 0 && fstat(gm->fd, &st) < 0)
		return -errno;
	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %*s %*x %x:%x %lu", &start, &end, &maj, &min, &ino) == 5 &&
		    strchr(line, '-') < strchr(line, ' '))
			inside = start >= lo && end <= hi &&
				 !(gm->fd >= 0 && ino == st.st_ino && makedev(maj, min) == st.st_dev);
		else if (inside && sscanf(line, "Rss: %llu kB", &v) == 1)
			kib += (int64_t)v;
	}
	fclose(f);
	return kib * 1024 + (gm->fd >= 0 ? (int64_t)st.st_blocks * 512 : 0);
}

int gmem_discard_all(struct gmem *gm)
{
	int64_t r;

	if (!gm->map)
		return -EINVAL;
	r = gmem_punch(gm, 0, gm->map_size);
	if (r < 0)
		log_error("discarding guest RAM: %s", strerror((int)-r));
	return r < 0 ? (int)r : 0;
}

uint64_t gmem_low_top(const struct gmem *gm)
{
	return gm->regions[0].size;
}
