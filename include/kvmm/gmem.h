/* Guest memory: the regions that back guest RAM, their KVM memslots, and the one checked accessor
 * through which every other module reaches guest memory. Owned by the memory manager (src/mem/);
 * devices and boot code never compute host pointers themselves.
 *
 * Layout (x86): RAM below the 32-bit PCI hole [GMEM_PCI_HOLE_START, 4 GiB) is region 0; RAM beyond
 * what fits there continues at 4 GiB as region 1. Both live in one mapping, gm->map.
 *
 * Backends (--mem-backend), what backs that mapping:
 *   anon    private anonymous memory (MAP_NORESERVE), 4 KiB pages;
 *   thp     the same, 2 MiB aligned and MADV_HUGEPAGE, so the kernel can back each 2 MiB of
 *           guest-physical memory with one transparent huge page;
 *   memfd   a memfd mapped MAP_SHARED: the memory is the file's, so it outlives any mapping of it
 *           and is freed only by punching a hole in the file;
 *   hugetlb a memfd of 2 MiB hugetlb pages (reserved from the host's pool at start), MAP_SHARED;
 *           memory can only be freed, and mapped, in whole 2 MiB pages.
 * gmem_punch and gmem_remap are the one place that knows how each backend frees and maps memory. */
#ifndef KVMM_GMEM_H
#define KVMM_GMEM_H

#include <kvmm/config.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMEM_PAGE_SIZE 4096ull
#define GMEM_PCI_HOLE_START 0xc0000000ull /* 3 GiB; [3 GiB, 4 GiB) is MMIO: PCI BARs, IOAPIC, LAPIC */
#define GMEM_HIGH_START 0x100000000ull
#define GMEM_MIN_SIZE (16ull << 20)
#define GMEM_MAX_REGIONS 2
#define GMEM_HUGE_PAGE_SIZE (2ull << 20) /* x86-64's PMD page: THP and the hugetlb pool kvmm uses */

struct gmem_region {
	uint64_t gpa;  /* first guest-physical address */
	uint64_t size; /* bytes, a multiple of GMEM_PAGE_SIZE */
	uint8_t *host; /* where it is mapped in kvmm */
};

struct gmem {
	uint64_t ram_size;
	unsigned nr_regions;
	struct gmem_region regions[GMEM_MAX_REGIONS];
	uint8_t *map; /* the one mapping all regions live in */
	size_t map_size;
	enum mem_backend backend;
	size_t page_size; /* the unit the backend frees and maps: 4 KiB, or 2 MiB for hugetlb */
	int fd;           /* the memfd behind map (memfd, hugetlb), else -1 */
};

/* Maps ram_size bytes (a multiple of 4 KiB, >= GMEM_MIN_SIZE; of 2 MiB for hugetlb) on the given
 * backend and lays out the regions. -EINVAL for a bad size, -ENOMEM when the host cannot map it
 * (hugetlb: fewer free 2 MiB pages than ram_size needs, logged with the sysctl to raise), other
 * -errno from memfd_create or ftruncate. */
int gmem_init(struct gmem *gm, uint64_t ram_size, enum mem_backend backend);
void gmem_destroy(struct gmem *gm);

const char *gmem_backend_name(enum mem_backend backend);

/* Whether single 4 KiB pages of RAM can be freed and mapped on their own (false for hugetlb, whose
 * pages are 2 MiB: page sharing and capture cannot work on it). */
bool gmem_small_pages(const struct gmem *gm);

/* Frees the host memory behind [off, off + len) of gm->map (offsets into the mapping, multiples of
 * 4 KiB); the range reads as zero afterwards. anon, thp: MADV_DONTNEED (thp splits only the huge
 * pages the range cuts); memfd: a hole punched in the memfd (MADV_DONTNEED would only unmap its
 * pages, which the file keeps); hugetlb: a hole of the whole 2 MiB pages inside the range, the
 * partial ones at its ends are left alone. What was mapped over the range (gmem_remap's callers)
 * is not the backend's: a memfd punch does not free it. Returns the bytes freed (hugetlb: of the
 * whole pages), -EINVAL for a range that is unaligned or outside the mapping, or -errno. */
int64_t gmem_punch(struct gmem *gm, size_t off, size_t len);

/* Puts the backend's own mapping back over [off, off + len) of gm->map with MAP_FIXED, replacing
 * whatever was mapped there (the memory manager maps pool pages over single guest pages). anon,
 * thp: fresh anonymous memory, the old contents are lost (thp: MADV_HUGEPAGE again); memfd,
 * hugetlb: the memfd at that offset, so the range shows the file's contents again. The new mapping
 * is registered with no userfaultfd. off and len must be multiples of gm->page_size.
 * 0, -EINVAL for a bad range, or -errno from mmap. */
int gmem_remap(struct gmem *gm, size_t off, size_t len);

/* Registers every region as a KVM memslot (slot = region index). */
int gmem_register(const struct gmem *gm, int vm_fd);

/* Host pointer for [gpa, gpa + len) when the whole range lies inside one region, else NULL.
 * Overflow-safe: any gpa/len a guest can produce is checked here. len 0 is never valid. */
void *gmem_ptr(const struct gmem *gm, uint64_t gpa, uint64_t len);

/* Copies to/from guest memory; -EFAULT unless the range lies inside one region. */
int gmem_read(const struct gmem *gm, uint64_t gpa, void *buf, size_t len);
int gmem_write(struct gmem *gm, uint64_t gpa, const void *buf, size_t len);

/* Gives guest pages back to the host: every whole 4 KiB page of [gpa, gpa + len) that is RAM (parts
 * outside RAM are skipped; the range may span regions) is released with one gmem_punch per region,
 * and refaults as zero. Returns the bytes released (hugetlb: whole 2 MiB pages only), or -errno.
 * Overflow-safe for any gpa/len. */
int64_t gmem_discard(struct gmem *gm, uint64_t gpa, uint64_t len);

/* Bytes of guest RAM resident in host memory now, or -errno: the Rss of the mappings inside
 * gm->map in /proc/self/smaps (the shared zero page does not count), except that for memfd and
 * hugetlb the memfd's own mappings are replaced by the memory the file holds (its st_blocks),
 * which counts pages that are unmapped but not freed too. */
int64_t gmem_resident(const struct gmem *gm);

/* Drops the contents of all guest RAM: every page reads as zero again and gives its host memory
 * back (gmem_punch of the whole mapping). For a system reset, with every vCPU stopped. 0 or -errno. */
int gmem_discard_all(struct gmem *gm);

/* End of RAM below 4 GiB (the top of region 0). */
uint64_t gmem_low_top(const struct gmem *gm);

#endif
