#include <kvmm/gmem.h>
#include <kvmm/log.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int gmem_init(struct gmem *gm, uint64_t ram_size)
{
	uint64_t low;

	memset(gm, 0, sizeof(*gm));
	if (ram_size < GMEM_MIN_SIZE || ram_size % GMEM_PAGE_SIZE || ram_size > SIZE_MAX / 2)
		return -EINVAL;
	/* MAP_NORESERVE: guest RAM is overcommitted by design; pages appear as the guest touches them. */
	gm->map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (gm->map == MAP_FAILED) {
		gm->map = NULL;
		return -ENOMEM;
	}
	gm->map_size = ram_size;
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
	if (gm->map)
		munmap(gm->map, gm->map_size);
	memset(gm, 0, sizeof(*gm));
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
		if (madvise(r->host + (lo - r->gpa), hi - lo, MADV_DONTNEED) < 0)
			return -errno;
		released += (int64_t)(hi - lo);
	}
	return released;
}

/* From /proc/self/smaps: the Rss of every mapping inside gm->map. Rss counts the pages really
 * backed by host memory; unlike mincore it leaves out the shared zero page that a read of a
 * released page maps. */
int64_t gmem_resident(const struct gmem *gm)
{
	unsigned long lo = (uintptr_t)gm->map, hi = lo + gm->map_size, start, end;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool inside = false;
	int64_t kib = 0;
	unsigned long long v;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = start >= lo && end <= hi;
		else if (inside && sscanf(line, "Rss: %llu kB", &v) == 1)
			kib += (int64_t)v;
	}
	fclose(f);
	return kib * 1024;
}

int gmem_discard_all(struct gmem *gm)
{
	int64_t r;

	if (!gm->map)
		return -EINVAL;
	r = gmem_discard(gm, 0, UINT64_MAX);
	if (r < 0)
		log_error("discarding guest RAM: %s", strerror((int)-r));
	return r < 0 ? (int)r : 0;
}

uint64_t gmem_low_top(const struct gmem *gm)
{
	return gm->regions[0].size;
}
