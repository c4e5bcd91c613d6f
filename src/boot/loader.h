/* Private to src/boot/: what the kernel-format loaders (bzimage.c, pvh.c) share with loader.c. */
#ifndef KVMM_BOOT_LOADER_H
#define KVMM_BOOT_LOADER_H

#include <kvmm/boot.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A kernel file read into host memory; every offset taken from it is checked against size. */
struct kfile {
	const char *path;
	uint8_t *data;
	size_t size;
};

/* Where the initrd ended up; size 0 without one. */
struct initrd_place {
	uint64_t gpa;
	uint64_t size;
};

static inline uint16_t kf_rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t kf_rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t kf_rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Format probes: true when the contents claim to be that format (the loader then validates). */
bool bzimage_probe(const struct kfile *k);
bool pvh_probe(const struct kfile *k);

int bzimage_load(struct gmem *gm, const struct boot_config *bc, const struct kfile *k,
		 struct boot_entry *entry);
int pvh_load(struct gmem *gm, const struct boot_config *bc, const struct kfile *k,
	     struct boot_entry *entry);

/* Writes the command line at BOOT_CMDLINE_GPA; -E2BIG when longer than max (bytes without the NUL,
 * capped at BOOT_CMDLINE_MAX - 1). */
int boot_cmdline_write(struct gmem *gm, const char *cmdline, size_t max);

/* Loads bc->initrd_path page-aligned as high as possible inside [floor, ceiling) of low RAM. */
int boot_initrd_load(struct gmem *gm, const char *path, uint64_t floor, uint64_t ceiling,
		     struct initrd_place *out);

/* GDT at BOOT_GDT_GPA (0x10 code: 64-bit for Linux, 32-bit for PVH; 0x18 flat data) and, for
 * Linux, the identity page tables at BOOT_PML4_GPA; fills the gdt/cr3 fields of *entry. */
int boot_cpu_tables_write(struct gmem *gm, enum boot_mode mode, struct boot_entry *entry);

#endif
