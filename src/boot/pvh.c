/* ELF kernels through the PVH entry (Xen's x86 HVM direct boot ABI, docs/misc/pvh.pandoc; the
 * structures in xen/include/public/arch-x86/hvm/start_info.h): PT_LOAD segments go to their
 * physical addresses, vCPU 0 starts in 32-bit protected mode without paging at the address in the
 * XEN_ELFNOTE_PHYS32_ENTRY note, with ebx = hvm_start_info. Linux (CONFIG_PVH) and many unikernels
 * carry the note. ELF32 and ELF64 are both accepted; every header field is checked first. */
#include "loader.h"

#include <kvmm/log.h>

#include <elf.h>
#include <errno.h>
#include <stdlib.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u /* "xEn3" with the 0x80 bit of the "E" set */
#define HVM_START_VERSION 1         /* version 1 adds the memory map */

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* the e820 types */
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "start_info.h layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "start_info.h layout");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "start_info.h layout");

/* The page at BOOT_PVH_INFO_GPA: start_info, then the memory map, then the module list. */
#define PVH_MEMMAP_OFF 64
#define PVH_MEMMAP_MAX 16
#define PVH_MODLIST_OFF (PVH_MEMMAP_OFF + PVH_MEMMAP_MAX * sizeof(struct hvm_memmap_table_entry))
_Static_assert(PVH_MODLIST_OFF + sizeof(struct hvm_modlist_entry) <= GMEM_PAGE_SIZE,
	       "the PVH info page holds start_info, the memory map and one module");

/* A program header of either class. */
struct phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

struct elf {
	bool is64;
	uint64_t phoff;
	unsigned phnum, phentsize;
};

bool pvh_probe(const struct kfile *k)
{
	return k->size >= SELFMAG && memcmp(k->data, ELFMAG, SELFMAG) == 0;
}

static int elf_parse(const struct kfile *k, struct elf *e)
{
	const uint8_t *id = k->data;

	if (k->size < EI_NIDENT || (id[EI_CLASS] != ELFCLASS32 && id[EI_CLASS] != ELFCLASS64) ||
	    id[EI_DATA] != ELFDATA2LSB) {
		log_error("kernel %s: not a little-endian ELF32/ELF64 file", k->path);
		return -ENOEXEC;
	}
	e->is64 = id[EI_CLASS] == ELFCLASS64;
	if (e->is64) {
		Elf64_Ehdr h;

		if (k->size < sizeof(h))
			goto truncated;
		memcpy(&h, k->data, sizeof(h));
		if (h.e_machine != EM_X86_64 && h.e_machine != EM_386)
			goto machine;
		e->phoff = h.e_phoff;
		e->phnum = h.e_phnum;
		e->phentsize = h.e_phentsize;
	} else {
		Elf32_Ehdr h;

		if (k->size < sizeof(h))
			goto truncated;
		memcpy(&h, k->data, sizeof(h));
		if (h.e_machine != EM_386 && h.e_machine != EM_X86_64)
			goto machine;
		e->phoff = h.e_phoff;
		e->phnum = h.e_phnum;
		e->phentsize = h.e_phentsize;
	}
	if (e->phentsize < (e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)) ||
	    e->phoff > k->size || (uint64_t)e->phnum * e->phentsize > k->size - e->phoff) {
		log_error("kernel %s: ELF program headers lie outside the file", k->path);
		return -EINVAL;
	}
	return 0;
truncated:
	log_error("kernel %s: truncated ELF header (%zu bytes)", k->path, k->size);
	return -EINVAL;
machine:
	log_error("kernel %s: an ELF file for another machine than x86", k->path);
	return -ENOEXEC;
}

static void elf_phdr(const struct kfile *k, const struct elf *e, unsigned i, struct phdr *p)
{
	const uint8_t *raw = k->data + e->phoff + (size_t)i * e->phentsize;

	if (e->is64) {
		Elf64_Phdr h;

		memcpy(&h, raw, sizeof(h));
		*p = (struct phdr){ h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz };
	} else {
		Elf32_Phdr h;

		memcpy(&h, raw, sizeof(h));
		*p = (struct phdr){ h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz };
	}
}

/* Looks for the Xen PHYS32_ENTRY note in the PT_NOTE segments; 0 when there is none. Note
 * headers have the same layout in both classes (n_namesz, n_descsz, n_type; 4-byte padding). */
static uint64_t pvh_find_entry(const struct kfile *k, const struct elf *e)
{
	for (unsigned i = 0; i < e->phnum; i++) {
		struct phdr p;
		uint64_t off, end;

		elf_phdr(k, e, i, &p);
		if (p.type != PT_NOTE || p.offset > k->size || p.filesz > k->size - p.offset)
			continue;
		off = p.offset;
		end = p.offset + p.filesz;
		while (end - off >= sizeof(Elf64_Nhdr)) {
			Elf64_Nhdr nh;
			uint64_t name, desc, next;

			memcpy(&nh, k->data + off, sizeof(nh));
			name = off + sizeof(nh);
			desc = name + ((nh.n_namesz + 3ull) & ~3ull);
			next = desc + ((nh.n_descsz + 3ull) & ~3ull);
			if (next > end)
				break;
			if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
			    memcmp(k->data + name, "Xen", 4) == 0) {
				/* Linux writes a .quad (_ASM_PTR) on 64-bit builds, others a .long. */
				if (nh.n_descsz == 8)
					return kf_rd64(k->data + desc);
				if (nh.n_descsz == 4)
					return kf_rd32(k->data + desc);
			}
			off = next;
		}
	}
	return 0;
}

/* Copies the PT_LOAD segments; *top is the end of the highest one. */
static int pvh_load_segments(struct gmem *gm, const struct kfile *k, const struct elf *e,
			     uint64_t entry, uint64_t *top)
{
	bool entry_loaded = false;
	unsigned loaded = 0;

	*top = BOOT_KERNEL_GPA;
	for (unsigned i = 0; i < e->phnum; i++) {
		struct phdr p;
		uint8_t *dst;

		elf_phdr(k, e, i, &p);
		if (p.type != PT_LOAD || p.memsz == 0)
			continue;
		if (p.filesz > p.memsz || p.offset > k->size || p.filesz > k->size - p.offset) {
			log_error("kernel %s: ELF segment %u lies outside the file", k->path, i);
			return -EINVAL;
		}
		/* Below 1 MiB are kvmm's GDT, page tables, zero page, command line and ACPI tables. */
		dst = p.paddr >= BOOT_KERNEL_GPA ? gmem_ptr(gm, p.paddr, p.memsz) : NULL;
		if (!dst) {
			log_error("kernel %s: ELF segment %u [%#llx, +%#llx) is not inside guest RAM above "
				  "1 MiB", k->path, i, (unsigned long long)p.paddr,
				  (unsigned long long)p.memsz);
			return -E2BIG;
		}
		memcpy(dst, k->data + p.offset, p.filesz);
		memset(dst + p.filesz, 0, p.memsz - p.filesz);
		if (p.paddr + p.memsz > *top)
			*top = p.paddr + p.memsz;
		entry_loaded |= entry >= p.paddr && entry - p.paddr < p.memsz;
		loaded++;
	}
	if (!loaded || !entry_loaded) {
		log_error("kernel %s: the PVH entry %#llx is in no loadable ELF segment", k->path,
			  (unsigned long long)entry);
		return -EINVAL;
	}
	return 0;
}

int pvh_load(struct gmem *gm, const struct boot_config *bc, const struct kfile *k,
	     struct boot_entry *entry)
{
	struct elf e;
	uint8_t *page;
	struct hvm_start_info si = { .magic = HVM_START_MAGIC, .version = HVM_START_VERSION };
	struct hvm_modlist_entry mod = { 0 };
	struct e820_entry map[PVH_MEMMAP_MAX];
	struct initrd_place rd;
	uint64_t pvh_entry, top, rsdp;
	size_t n;
	int err;

	err = elf_parse(k, &e);
	if (err < 0)
		return err;
	pvh_entry = pvh_find_entry(k, &e);
	if (!pvh_entry) {
		log_error("kernel %s: an ELF file without a PVH entry note (Xen, "
			  "XEN_ELFNOTE_PHYS32_ENTRY): not a bootable kernel", k->path);
		return -ENOEXEC;
	}
	if (pvh_entry >= (1ull << 32)) {
		log_error("kernel %s: the PVH entry %#llx is above 4 GiB", k->path,
			  (unsigned long long)pvh_entry);
		return -EINVAL;
	}
	err = boot_cmdline_write(gm, bc->cmdline, BOOT_CMDLINE_MAX - 1);
	if (err < 0)
		return err;
	err = pvh_load_segments(gm, k, &e, pvh_entry, &top);
	if (err < 0)
		return err;
	err = boot_initrd_load(gm, bc->initrd_path, top, gmem_low_top(gm), &rd);
	if (err < 0)
		return err;
	err = acpi_build(gm, bc->nr_cpus, &rsdp);
	if (err < 0)
		return err;

	si.cmdline_paddr = BOOT_CMDLINE_GPA;
	si.rsdp_paddr = rsdp;
	n = e820_build(gm, map, PVH_MEMMAP_MAX);
	si.memmap_paddr = BOOT_PVH_INFO_GPA + PVH_MEMMAP_OFF;
	si.memmap_entries = (uint32_t)n;
	if (rd.size) {
		mod.paddr = rd.gpa;
		mod.size = rd.size;
		si.nr_modules = 1;
		si.modlist_paddr = BOOT_PVH_INFO_GPA + PVH_MODLIST_OFF;
	}
	page = calloc(1, GMEM_PAGE_SIZE);
	if (!page)
		return -ENOMEM;
	memcpy(page, &si, sizeof(si));
	for (size_t i = 0; i < n; i++) {
		struct hvm_memmap_table_entry m = { map[i].addr, map[i].size, map[i].type, 0 };

		memcpy(page + PVH_MEMMAP_OFF + i * sizeof(m), &m, sizeof(m));
	}
	memcpy(page + PVH_MODLIST_OFF, &mod, sizeof(mod));
	err = gmem_write(gm, BOOT_PVH_INFO_GPA, page, GMEM_PAGE_SIZE);
	free(page);
	if (err == 0)
		err = boot_cpu_tables_write(gm, BOOT_PVH, entry);
	if (err < 0) {
		log_error("kernel %s: guest RAM too small for the boot structures", k->path);
		return err;
	}
	entry->mode = BOOT_PVH;
	entry->rip = pvh_entry;
	entry->rbx = BOOT_PVH_INFO_GPA;
	entry->rsp = BOOT_STACK_GPA;
	return 0;
}
