/* PCI on bus 0 through configuration mechanism 1 (ports 0xcf8/0xcfc), enough to find a virtio
 * device, walk its capabilities and make sure a memory BAR is assigned inside the PCI hole. */
#include "guest.h"
#include "virtio.h"

#define PCI_ADDR_PORT 0xcf8
#define PCI_DATA_PORT 0xcfc
#define PCI_SLOTS 32
#define PCI_FUNCS 8
#define PCI_VENDOR 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CMD_MEM 0x2
#define PCI_BAR_IO 0x1
#define PCI_BAR_TYPE_64 0x4
#define PCI_BARS 6
/* Where a BAR may be put when firmware left it unassigned or above 4 GiB: the 3-4 GiB hole, below
 * the IOAPIC (0xfec00000), clear of every e820 entry and every other device's BAR. */
#define HOLE_START 0xc0000000ull
#define HOLE_END 0xfec00000ull

uint32_t pci_read32(uint8_t dev, uint8_t fn, uint8_t off)
{
	outl(PCI_ADDR_PORT, 0x80000000u | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (off & 0xfc));
	return inl(PCI_DATA_PORT);
}

void pci_write32(uint8_t dev, uint8_t fn, uint8_t off, uint32_t v)
{
	outl(PCI_ADDR_PORT, 0x80000000u | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (off & 0xfc));
	outl(PCI_DATA_PORT, v);
}

static uint16_t pci_read16(uint8_t dev, uint8_t fn, uint8_t off)
{
	return pci_read32(dev, fn, off) >> ((off & 2) * 8);
}

static uint8_t pci_read8(uint8_t dev, uint8_t fn, uint8_t off)
{
	return pci_read32(dev, fn, off) >> ((off & 3) * 8);
}

bool pci_find(bool (*match)(uint16_t vendor, uint16_t device, uint16_t subsys), struct pci_fn *out)
{
	for (uint8_t dev = 0; dev < PCI_SLOTS; dev++) {
		uint8_t nfn = pci_read8(dev, 0, PCI_HEADER_TYPE) & 0x80 ? PCI_FUNCS : 1;
		for (uint8_t fn = 0; fn < nfn; fn++) {
			uint32_t id = pci_read32(dev, fn, PCI_VENDOR);
			if ((id & 0xffff) == 0xffff)
				continue;
			if (match(id & 0xffff, id >> 16, pci_read16(dev, fn, PCI_SUBSYSTEM_ID))) {
				*out = (struct pci_fn){ .dev = dev, .fn = fn, .device = id >> 16 };
				return true;
			}
		}
	}
	return false;
}

/* Calls fn(cap offset) for each capability with the given id; stops when it returns true. */
bool pci_caps(const struct pci_fn *f, uint8_t cap_id, bool (*fn)(const struct pci_fn *, uint8_t, void *),
	      void *arg)
{
	if (!(pci_read16(f->dev, f->fn, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return false;
	uint8_t off = pci_read8(f->dev, f->fn, PCI_CAP_PTR) & 0xfc;
	for (int guard = 0; off >= 0x40 && guard < 48; guard++) {
		if (pci_read8(f->dev, f->fn, off) == cap_id && fn(f, off, arg))
			return true;
		off = pci_read8(f->dev, f->fn, off + 1) & 0xfc;
	}
	return false;
}

/* A memory BAR's address and size (sized by writing all ones with decoding off). */
static void bar_probe(uint8_t dev, uint8_t fn, unsigned bar, uint64_t *addr, uint64_t *size, bool *is64)
{
	uint8_t off = PCI_BAR0 + 4 * bar;
	uint32_t lo = pci_read32(dev, fn, off), hi = 0;

	*is64 = (lo & 0x7) == PCI_BAR_TYPE_64;
	if (*is64)
		hi = pci_read32(dev, fn, off + 4);
	pci_write32(dev, fn, off, 0xffffffff);
	uint64_t mask = pci_read32(dev, fn, off) & ~0xfull;
	pci_write32(dev, fn, off, lo);
	if (*is64) {
		pci_write32(dev, fn, off + 4, 0xffffffff);
		mask |= (uint64_t)pci_read32(dev, fn, off + 4) << 32;
		pci_write32(dev, fn, off + 4, hi);
	} else {
		mask |= 0xffffffff00000000ull;
	}
	*addr = ((uint64_t)hi << 32 | lo) & ~0xfull;
	*size = mask ? ~mask + 1 : 0;
}

/* True if [a, a + len) overlaps a memory BAR of any device on bus 0 other than (dev, fn, bar). */
static bool bar_conflict(uint8_t self_dev, uint8_t self_fn, unsigned self_bar, uint64_t a, uint64_t len)
{
	for (uint8_t dev = 0; dev < PCI_SLOTS; dev++)
		for (uint8_t fn = 0; fn < PCI_FUNCS; fn++) {
			uint32_t id = pci_read32(dev, fn, PCI_VENDOR);
			if ((id & 0xffff) == 0xffff || (pci_read8(dev, fn, PCI_HEADER_TYPE) & 0x7f) != 0)
				continue;
			for (unsigned b = 0; b < PCI_BARS; b++) {
				uint32_t lo = pci_read32(dev, fn, PCI_BAR0 + 4 * b);
				bool is64 = (lo & 0x7) == PCI_BAR_TYPE_64;
				if (!(lo & PCI_BAR_IO) && !(dev == self_dev && fn == self_fn && b == self_bar)) {
					uint64_t addr, size;
					uint16_t cmd = pci_read16(dev, fn, PCI_COMMAND);
					pci_write32(dev, fn, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
					bar_probe(dev, fn, b, &addr, &size, &is64);
					pci_write32(dev, fn, PCI_COMMAND, cmd);
					if (addr && size && addr < a + len && a < addr + size)
						return true;
				}
				if (is64)
					b++;
			}
		}
	return false;
}

int pci_bar_map(struct pci_fn *f, unsigned bar, uint64_t *base, uint64_t *size)
{
	uint8_t dev = f->dev, fn = f->fn;
	uint16_t cmd = pci_read16(dev, fn, PCI_COMMAND);
	uint64_t addr, len;
	bool is64;

	if (bar >= PCI_BARS || (pci_read32(dev, fn, PCI_BAR0 + 4 * bar) & PCI_BAR_IO))
		return -1;
	pci_write32(dev, fn, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
	bar_probe(dev, fn, bar, &addr, &len, &is64);
	if (!len) {
		pci_write32(dev, fn, PCI_COMMAND, cmd);
		return -1;
	}
	/* Unassigned, or outside the hole (above 4 GiB nothing but RAM is mapped): pick a place. */
	if (!addr || addr < HOLE_START || addr + len > HOLE_END) {
		uint64_t a = (HOLE_END - len) & ~(len - 1);
		while (a >= HOLE_START && (mm_e820_overlaps(a, len) || bar_conflict(dev, fn, bar, a, len)))
			a -= len;
		if (a < HOLE_START || (!is64 && a >> 32)) {
			pci_write32(dev, fn, PCI_COMMAND, cmd);
			return -1;
		}
		pci_write32(dev, fn, PCI_BAR0 + 4 * bar, (uint32_t)a);
		if (is64)
			pci_write32(dev, fn, PCI_BAR0 + 4 * bar + 4, 0);
		addr = a;
		f->reassigned_bars |= 1u << bar;
	}
	pci_write32(dev, fn, PCI_COMMAND, cmd | PCI_CMD_MEM);
	*base = addr;
	*size = len;
	return 0;
}
