/* Guest memory: the regions that back guest RAM, their KVM memslots, and the one checked accessor
 * through which every other module reaches guest memory. Owned by the memory manager (src/mem/);
 * devices and boot code never compute host pointers themselves.
 *
 * Layout (x86): RAM below the 32-bit PCI hole [GMEM_PCI_HOLE_START, 4 GiB) is region 0; RAM beyond
 * what fits there continues at 4 GiB as region 1. Both live in one anonymous mapping. */
#ifndef KVMM_GMEM_H
#define KVMM_GMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMEM_PAGE_SIZE 4096ull
#define GMEM_PCI_HOLE_START 0xc0000000ull /* 3 GiB; [3 GiB, 4 GiB) is MMIO: PCI BARs, IOAPIC, LAPIC */
#define GMEM_HIGH_START 0x100000000ull
#define GMEM_MIN_SIZE (16ull << 20)
#define GMEM_MAX_REGIONS 2

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
};

/* Maps ram_size bytes (a multiple of 4 KiB, >= GMEM_MIN_SIZE) and lays out the regions.
 * -EINVAL for a bad size, -ENOMEM when the host cannot map it. */
int gmem_init(struct gmem *gm, uint64_t ram_size);
void gmem_destroy(struct gmem *gm);

/* Registers every region as a KVM memslot (slot = region index). */
int gmem_register(const struct gmem *gm, int vm_fd);

/* Host pointer for [gpa, gpa + len) when the whole range lies inside one region, else NULL.
 * Overflow-safe: any gpa/len a guest can produce is checked here. len 0 is never valid. */
void *gmem_ptr(const struct gmem *gm, uint64_t gpa, uint64_t len);

/* Copies to/from guest memory; -EFAULT unless the range lies inside one region. */
int gmem_read(const struct gmem *gm, uint64_t gpa, void *buf, size_t len);
int gmem_write(struct gmem *gm, uint64_t gpa, const void *buf, size_t len);

/* Gives guest pages back to the host: every whole 4 KiB page of [gpa, gpa + len) that is RAM (parts
 * outside RAM are skipped; the range may span regions) is released with one madvise per region
 * (MADV_DONTNEED: the anonymous mapping refaults it as zero). Returns the bytes released, or
 * -errno when madvise fails. Overflow-safe for any gpa/len. */
int64_t gmem_discard(struct gmem *gm, uint64_t gpa, uint64_t len);

/* Bytes of guest RAM resident in host memory now (the Rss of its mappings in /proc/self/smaps;
 * the shared zero page does not count), or -errno. */
int64_t gmem_resident(const struct gmem *gm);

/* Drops the contents of all guest RAM: every page reads as zero again and gives its host memory
 * back (MADV_DONTNEED on the anonymous private mapping). For a system reset, with every vCPU
 * stopped. 0 or -errno. */
int gmem_discard_all(struct gmem *gm);

/* End of RAM below 4 GiB (the top of region 0). */
uint64_t gmem_low_top(const struct gmem *gm);

#endif
