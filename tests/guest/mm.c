/* Memory: the RAM ranges of the e820 map, identity page tables (2 MiB pages) over all of it, and a
 * bump allocator that hands out RAM above the image (never low memory, the image or its .bss). */
#include "guest.h"

#define PTE_P_RW_US 0x7ull
#define PTE_PS 0x80ull
#define PTE_PWT_PCD 0x18ull /* with the power-on PAT: uncached */
#define GIB (1ull << 30)
#define E820_RAM 1

extern char __init_end[];

/* Page tables for up to 64 GiB of address space live in .bss, inside init_size: the 64-bit boot
 * protocol only promises that init_size, boot_params and the command line are mapped at entry.
 * More RAM than that takes tables from the allocator (under 4 GiB, which kvmm maps). */
#define PT_POOL_GIB 64
static uint8_t pt_pool[(2 + PT_POOL_GIB) * PAGE_SIZE] __attribute__((aligned(4096)));

static struct mem_chunk ram[E820_MAX]; /* sorted, merged, page-aligned; pages = length */
static int nr_ram;
static uint64_t cursor;                /* next free byte for mm_alloc_* */

uint64_t mm_ram_bytes(void)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < boot_e820_count; i++)
		if (boot_e820[i].type == E820_RAM)
			sum += boot_e820[i].size;
	return sum;
}

static void ram_from_e820(void)
{
	nr_ram = 0;
	for (unsigned i = 0; i < boot_e820_count; i++) {
		const struct e820_entry *e = &boot_e820[i];
		uint64_t start = ALIGN_UP(e->addr, PAGE_SIZE), end = (e->addr + e->size) & ~(PAGE_SIZE - 1);
		if (e->type != E820_RAM || end <= start)
			continue;
		int j = nr_ram++;
		while (j > 0 && ram[j - 1].addr > start) {
			ram[j] = ram[j - 1];
			j--;
		}
		ram[j] = (struct mem_chunk){ start, (end - start) >> PAGE_SHIFT };
	}
	/* Merge overlapping or adjacent ranges. */
	int n = 0;
	for (int i = 0; i < nr_ram; i++) {
		uint64_t end = ram[i].addr + (ram[i].pages << PAGE_SHIFT);
		if (n && ram[i].addr <= ram[n - 1].addr + (ram[n - 1].pages << PAGE_SHIFT)) {
			uint64_t prev_end = ram[n - 1].addr + (ram[n - 1].pages << PAGE_SHIFT);
			if (end > prev_end)
				ram[n - 1].pages = (end - ram[n - 1].addr) >> PAGE_SHIFT;
		} else {
			ram[n++] = ram[i];
		}
	}
	nr_ram = n;
}

uint64_t mm_alloc_pages(uint64_t n)
{
	uint64_t bytes = n << PAGE_SHIFT;

	for (int i = 0; i < nr_ram; i++) {
		uint64_t start = ram[i].addr, end = start + (ram[i].pages << PAGE_SHIFT);
		if (cursor > start)
			start = cursor;
		if (start < end && end - start >= bytes) {
			cursor = start + bytes;
			return start;
		}
	}
	return 0;
}

int mm_alloc_area(uint64_t pages, struct mem_chunk *chunks, int max)
{
	int n = 0;
	uint64_t need = pages, cur = cursor;

	for (int i = 0; i < nr_ram && need; i++) {
		uint64_t start = ram[i].addr, end = start + (ram[i].pages << PAGE_SHIFT);
		if (cur > start)
			start = cur;
		if (start >= end)
			continue;
		if (n == max)
			return -1;
		uint64_t take = (end - start) >> PAGE_SHIFT;
		if (take > need)
			take = need;
		chunks[n++] = (struct mem_chunk){ start, take };
		need -= take;
		cur = start + (take << PAGE_SHIFT);
	}
	if (need)
		return -1;
	cursor = cur;
	return n;
}

int mm_alloc_rest(struct mem_chunk *chunks, int max)
{
	int n = 0;

	for (int i = 0; i < nr_ram && n < max; i++) {
		uint64_t start = ram[i].addr, end = start + (ram[i].pages << PAGE_SHIFT);
		if (cursor > start)
			start = cursor;
		if (start < end)
			chunks[n++] = (struct mem_chunk){ start, (end - start) >> PAGE_SHIFT };
	}
	if (n)
		cursor = chunks[n - 1].addr + (chunks[n - 1].pages << PAGE_SHIFT);
	return n;
}

bool mm_e820_overlaps(uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < boot_e820_count; i++)
		if (boot_e820[i].addr < addr + len && addr < boot_e820[i].addr + boot_e820[i].size)
			return true;
	return false;
}

uint64_t mm_ram_end(void)
{
	return nr_ram ? ram[nr_ram - 1].addr + (ram[nr_ram - 1].pages << PAGE_SHIFT) : 0;
}

static bool has_ram(uint64_t addr, uint64_t len)
{
	for (int i = 0; i < nr_ram; i++)
		if (ram[i].addr < addr + len && addr < ram[i].addr + (ram[i].pages << PAGE_SHIFT))
			return true;
	return false;
}

/* Identity map [0, top) with 2 MiB pages, top = max(4 GiB, end of RAM) rounded up to 1 GiB:
 * one PD per GiB, one PDPT per 512 GiB. All user-accessible: the workloads run at CPL3, and so does
 * the balloon driver, which reaches its device's BARs in the PCI hole. 2 MiB pages without any RAM
 * (the PCI hole, the APICs) are uncached, as MMIO must be; this is done here, at CPL0 before CR3 is
 * loaded, because CPL3 cannot flush the TLB after changing an entry. */
static int build_page_tables(void)
{
	uint64_t top = 4 * GIB;

	for (int i = 0; i < nr_ram; i++) {
		uint64_t end = ram[i].addr + (ram[i].pages << PAGE_SHIFT);
		if (end > top)
			top = end;
	}
	top = ALIGN_UP(top, GIB);
	uint64_t nr_pd = top / GIB, nr_pdpt = (nr_pd + 511) / 512;
	if (nr_pdpt > 512)
		return -1;
	uint64_t pml4 = nr_pd <= PT_POOL_GIB ? (uint64_t)pt_pool : mm_alloc_pages(1 + nr_pdpt + nr_pd);
	if (!pml4)
		return -1;
	uint64_t pdpt = pml4 + PAGE_SIZE, pd = pdpt + (nr_pdpt << PAGE_SHIFT);
	memset((void *)pml4, 0, (1 + nr_pdpt + nr_pd) << PAGE_SHIFT);

	uint64_t *pml4e = (uint64_t *)pml4, *pdpte = (uint64_t *)pdpt, *pde = (uint64_t *)pd;
	for (uint64_t i = 0; i < nr_pdpt; i++)
		pml4e[i] = (pdpt + (i << PAGE_SHIFT)) | PTE_P_RW_US;
	for (uint64_t i = 0; i < nr_pd; i++)
		pdpte[i] = (pd + (i << PAGE_SHIFT)) | PTE_P_RW_US;
	for (uint64_t i = 0; i < nr_pd * 512; i++)
		pde[i] = (i << 21) | PTE_P_RW_US | PTE_PS | (has_ram(i << 21, 1ull << 21) ? 0 : PTE_PWT_PCD);
	__asm__ volatile("mov %0, %%cr3" : : "r"(pml4) : "memory");
	return 0;
}

int mm_init(void)
{
	ram_from_e820();
	cursor = ALIGN_UP((uint64_t)__init_end, PAGE_SIZE);
	return build_page_tables();
}
