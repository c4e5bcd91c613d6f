/* PCI bus 0 behind configuration mechanism 1 (PCI Local Bus spec 3.0, 3.2.2.3.2), the type-0
 * config-space model devices build on, and BAR placement.
 *
 * Ports: CONFIG_ADDRESS is a 32-bit register at 0xcf8, CONFIG_DATA is 0xcfc-0xcff. As on the PIIX,
 * only a dword access at 0xcf8 reaches CONFIG_ADDRESS; a byte at 0xcf9 is the reset control
 * register (bit 2 resets the machine; it is also the FADT reset register, value 0x06), and other
 * narrow accesses in 0xcf8-0xcfb go nowhere.
 *
 * Bus 0 only, function 0 only (header type 0x00, single function): anything else reads as all
 * ones. 00:00.0 is a host bridge with QEMU's generic ids (1b36:0008, class 060000), which Linux
 * accepts for pci_sanity_check and binds no driver to.
 *
 * Interrupts: every device uses INTx pin A; its line is the one SeaBIOS programs for QEMU's i440FX
 * (PIRQ (slot + pin - 1) & 3 over IRQs 10, 10, 11, 11, pci_intx_gsi), and the DSDT's _PRT
 * (src/boot/acpi.c) describes that map, so the guest routes INTx through ACPI as level-triggered
 * PCI interrupts rather than falling back to the Interrupt Line register.
 *
 * Threads: config accesses come from vCPU threads; p->lock serialises them with pci_add. A guest
 * moving a BAR (or toggling decode in the command register) moves the bus range while holding it;
 * bus_register / bus_unregister take the bus's own lock, never the other way round. */
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/pci.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_ADDR_ENABLE 0x80000000u
#define PCI_ADDR_MASK 0x80fffffcu /* bits 30:24 and 1:0 are reserved and read as 0 */

/* Type-0 header offsets (PCI 3.0, 6.1). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_CLASS_PROG 0x09
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_LATENCY_TIMER 0x0d
#define PCI_BAR0 0x10
#define PCI_BAR_END 0x28
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_HEADER_END 0x40

#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_PARITY 0x0040
#define PCI_COMMAND_SERR 0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_BAR_IO 0x1

/* PIIX reset control register (82371AB datasheet, 4.1.5). */
#define PCI_RCR_SYS_RST 0x02
#define PCI_RCR_RST_CPU 0x04
#define PCI_RCR_FULL_RST 0x08

#define PCI_HOST_VENDOR 0x1b36
#define PCI_HOST_DEVICE 0x0008
#define PCI_HOST_CLASS 0x060000

struct pci_map {
	bool mapped;
	uint64_t addr;
};

struct pci {
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t addr;                  /* CONFIG_ADDRESS */
	uint8_t rcr;
	bool pio_addr, pio_data;        /* our port ranges are registered */
	struct pci_dev host;
	struct pci_dev *devs[PCI_MAX_DEVICES];
	struct pci_map maps[PCI_MAX_DEVICES][PCI_NR_BARS]; /* what is on the buses now */
	uint8_t power_on[PCI_MAX_DEVICES][PCI_CFG_SIZE];    /* config space as pci_add left it */
	uint64_t next_mmio;
	uint64_t next_io;
};

static bool pci_len_ok(unsigned off, unsigned len)
{
	return (len == 1 || len == 2 || len == 4) && off < PCI_CFG_SIZE && len <= PCI_CFG_SIZE - off;
}

void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	bus_data_put(&d->cfg[PCI_VENDOR_ID], 2, vendor);
	bus_data_put(&d->cfg[PCI_DEVICE_ID], 2, device);
	bus_data_put(&d->cfg[PCI_CLASS_PROG], 3, class_code); /* prog-if, subclass, base class */
	bus_data_put(&d->cfg[PCI_SUBSYSTEM_VENDOR_ID], 2, subsys_vendor);
	bus_data_put(&d->cfg[PCI_SUBSYSTEM_ID], 2, subsys_id);
	d->cfg[PCI_INTERRUPT_PIN] = 1; /* INTA# */

	bus_data_put(&d->wmask[PCI_COMMAND], 2,
		PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
			PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

void pci_dev_set_bar(struct pci_dev *d, unsigned n, uint64_t size, bool io, bus_handler fn,
		     void *opaque)
{
	uint32_t mask;

	/* PCI 3.0, 6.2.5.1: memory BARs claim at least 16 bytes, IO BARs 4 to 256; 32-bit only. */
	if (n >= PCI_NR_BARS || !fn || (size & (size - 1)) || size < (io ? 4 : 16) ||
	    size > (io ? 256 : 1ull << 31)) {
		log_error("pci: %s: invalid BAR %u (size %#llx)", d->name, n, (unsigned long long)size);
		return;
	}
	d->bars[n] = (struct pci_bar){ .size = size, .io = io, .fn = fn, .opaque = opaque };
	/* IO BARs decode 16 bits (x86 port space); bit 0 marks IO. Memory: 32-bit, not prefetchable. */
	mask = io ? (uint32_t)~(size - 1) & 0xfffc : (uint32_t)~(size - 1);
	bus_data_put(&d->cfg[PCI_BAR0 + 4 * n], 4, io ? PCI_BAR_IO : 0);
	bus_data_put(&d->wmask[PCI_BAR0 + 4 * n], 4, mask);
}

uint32_t pci_dev_cfg_read(struct pci_dev *d, unsigned off, unsigned len)
{
	if (!pci_len_ok(off, len))
		return 0xffffffffu;
	return bus_data_get(&d->cfg[off], len);
}

static uint64_t pci_bar_addr(const struct pci_dev *d, unsigned n)
{
	uint32_t v = bus_data_get(&d->cfg[PCI_BAR0 + 4 * n], 4);

	return d->bars[n].io ? v & ~3u : v & ~0xfu;
}

/* Makes the buses match config space for every BAR of d: decoded (command register) at a non-zero
 * address that fits its address space -> registered there. Under p->lock. Returns the first
 * registration error (the BAR then stays off the bus). */
static int pci_remap(struct pci *p, struct pci_dev *d)
{
	uint16_t cmd = (uint16_t)bus_data_get(&d->cfg[PCI_COMMAND], 2);
	int ret = 0;

	for (unsigned n = 0; n < PCI_NR_BARS; n++) {
		struct pci_bar *b = &d->bars[n];
		struct pci_map *m = &p->maps[d->slot][n];
		struct bus *bus = b->io ? &p->vm->pio : &p->vm->mmio;
		uint64_t limit = b->io ? 0x10000 : 0x100000000ull;
		bool want;
		int r;

		if (!b->size)
			continue;
		want = (cmd & (b->io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)) && b->addr &&
		       b->addr + b->size <= limit;
		if (m->mapped && (!want || m->addr != b->addr)) {
			bus_unregister(bus, m->addr);
			m->mapped = false;
		}
		if (!want || m->mapped)
			continue;
		r = bus_register(bus, b->addr, b->size, b->fn, b->opaque, d->name);
		if (r < 0) {
			/* A guest may place a BAR over another device; it then decodes nothing. */
			log_warn("pci: %s: BAR %u at %#llx not mapped: %s", d->name, n,
				 (unsigned long long)b->addr, strerror(-r));
			if (!ret)
				ret = r;
			continue;
		}
		m->mapped = true;
		m->addr = b->addr;
	}
	return ret;
}

void pci_dev_cfg_write(struct pci_dev *d, unsigned off, unsigned len, uint32_t val)
{
	bool bars = off < PCI_BAR_END && off + len > PCI_BAR0;
	bool cmd = off < PCI_COMMAND + 2 && off + len > PCI_COMMAND;

	if (!pci_len_ok(off, len))
		return;
	for (unsigned i = 0; i < len; i++) {
		uint8_t w = d->wmask[off + i];

		d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~w) | ((val >> (8 * i)) & w));
	}
	if (bars)
		for (unsigned n = 0; n < PCI_NR_BARS; n++)
			if (d->bars[n].size)
				d->bars[n].addr = pci_bar_addr(d, n);
	/* Without a vm (unit tests) only config space changes. */
	if (d->vm && d->vm->pci && (bars || cmd))
		pci_remap(d->vm->pci, d);
	if (off >= PCI_HEADER_END && d->cfg_write)
		d->cfg_write(d, off, len);
}

static struct pci_dev *pci_target(struct pci *p)
{
	unsigned bus = (p->addr >> 16) & 0xff, dev = (p->addr >> 11) & 0x1f, fn = (p->addr >> 8) & 7;

	if (!(p->addr & PCI_ADDR_ENABLE) || bus != 0 || fn != 0)
		return NULL;
	return p->devs[dev];
}

static void pci_addr_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct pci *p = opaque;

	pthread_mutex_lock(&p->lock);
	if (offset == 0 && len == 4) {
		if (is_write)
			p->addr = bus_data_get(data, 4) & PCI_ADDR_MASK;
		else
			bus_data_put(data, 4, p->addr);
	} else if (offset == 1 && len == 1) {
		if (!is_write) {
			data[0] = p->rcr;
		} else {
			p->rcr = data[0] & (PCI_RCR_SYS_RST | PCI_RCR_FULL_RST);
			if (data[0] & PCI_RCR_RST_CPU)
				vm_request_reset(p->vm, VM_RESET_GUEST, "reset control register 0xcf9");
		}
	} else if (!is_write) {
		memset(data, 0xff, len);
	}
	pthread_mutex_unlock(&p->lock);
}

static void pci_data_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct pci *p = opaque;
	struct pci_dev *d;
	unsigned reg;

	pthread_mutex_lock(&p->lock);
	d = pci_target(p);
	reg = (p->addr & 0xfc) + (unsigned)offset;
	if (!d) {
		if (!is_write)
			memset(data, 0xff, len);
	} else if (is_write) {
		pci_dev_cfg_write(d, reg, len, bus_data_get(data, len));
	} else {
		bus_data_put(data, len, pci_dev_cfg_read(d, reg, len));
	}
	pthread_mutex_unlock(&p->lock);
}

unsigned pci_intx_gsi(unsigned slot, unsigned pin)
{
	static const uint8_t pirq_irq[4] = { 10, 10, 11, 11 };

	return pirq_irq[(slot + pin) & 3];
}

/* Naturally aligned bump allocation in the window; 0 when it is full. */
static uint64_t pci_alloc(uint64_t *next, uint64_t end, uint64_t size)
{
	uint64_t base = (*next + size - 1) & ~(size - 1);

	if (base < *next || base + size > end)
		return 0;
	*next = base + size;
	return base;
}

static void pci_unmap_all(struct pci *p, struct pci_dev *d)
{
	for (unsigned n = 0; n < PCI_NR_BARS; n++) {
		struct pci_map *m = &p->maps[d->slot][n];

		if (m->mapped)
			bus_unregister(d->bars[n].io ? &p->vm->pio : &p->vm->mmio, m->addr);
		m->mapped = false;
	}
}

int pci_add(struct vm *vm, struct pci_dev *d)
{
	struct pci *p = vm->pci;
	uint64_t next_mmio, next_io;
	uint16_t cmd = 0;
	unsigned slot;
	int r;

	if (!p)
		return -ENODEV;
	pthread_mutex_lock(&p->lock);
	for (slot = 0; slot < PCI_MAX_DEVICES && p->devs[slot]; slot++)
		;
	if (slot == PCI_MAX_DEVICES) {
		r = -ENOSPC;
		log_error("pci: %s: all %d slots of bus 0 are taken", d->name, PCI_MAX_DEVICES);
		goto out;
	}
	next_mmio = p->next_mmio;
	next_io = p->next_io;
	for (unsigned n = 0; n < PCI_NR_BARS; n++) {
		struct pci_bar *b = &d->bars[n];
		uint64_t base;

		if (!b->size)
			continue;
		base = b->io ? pci_alloc(&next_io, PCI_IO_END, b->size)
			     : pci_alloc(&next_mmio, PCI_MMIO_END, b->size);
		if (!base) {
			r = -ENOSPC;
			log_error("pci: %s: no room for BAR %u (%#llx bytes) in the %s window", d->name,
				  n, (unsigned long long)b->size, b->io ? "IO" : "MMIO");
			goto out;
		}
		bus_data_put(&d->cfg[PCI_BAR0 + 4 * n], 4, (uint32_t)base | (b->io ? PCI_BAR_IO : 0));
		b->addr = base;
		cmd |= b->io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
	}
	/* Programmed and decoding, as firmware leaves devices; the guest takes it from here. */
	bus_data_put(&d->cfg[PCI_COMMAND], 2, bus_data_get(&d->cfg[PCI_COMMAND], 2) | cmd);
	if (d->cfg[PCI_INTERRUPT_PIN])
		d->cfg[PCI_INTERRUPT_LINE] = (uint8_t)pci_intx_gsi(slot, d->cfg[PCI_INTERRUPT_PIN] - 1);
	d->slot = slot;
	d->vm = vm;
	r = pci_remap(p, d);
	if (r < 0) {
		pci_unmap_all(p, d);
		d->vm = NULL;
		goto out;
	}
	p->devs[slot] = d;
	memcpy(p->power_on[slot], d->cfg, PCI_CFG_SIZE);
	p->next_mmio = next_mmio;
	p->next_io = next_io;
	log_debug("pci: 00:%02x.0 %s, IRQ %u", slot, d->name, d->cfg[PCI_INTERRUPT_LINE]);
out:
	pthread_mutex_unlock(&p->lock);
	return r;
}

int pci_remove(struct vm *vm, struct pci_dev *d)
{
	struct pci *p = vm->pci;
	int r = 0;

	if (!p)
		return -ENODEV;
	pthread_mutex_lock(&p->lock);
	if (d->slot >= PCI_MAX_DEVICES || p->devs[d->slot] != d) {
		r = -ENOENT;
	} else {
		pci_unmap_all(p, d);
		p->devs[d->slot] = NULL;
		d->vm = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Config space (and with it BAR addresses, decode enables, interrupt line, capabilities) goes back
 * to what pci_add left, which is what kvmm's firmware role sets up at start: on a PC the reset
 * clears the command register and the BARs and firmware then programs them again, so the guest
 * finds the same state at every boot. */
void pci_reset(struct vm *vm)
{
	struct pci *p = vm->pci;

	pthread_mutex_lock(&p->lock);
	p->addr = 0;
	p->rcr = 0;
	for (unsigned slot = 0; slot < PCI_MAX_DEVICES; slot++) {
		struct pci_dev *d = p->devs[slot];

		if (!d)
			continue;
		memcpy(d->cfg, p->power_on[slot], PCI_CFG_SIZE);
		for (unsigned n = 0; n < PCI_NR_BARS; n++)
			if (d->bars[n].size)
				d->bars[n].addr = pci_bar_addr(d, n);
		pci_remap(p, d);
		if (d->reset)
			d->reset(d);
	}
	pthread_mutex_unlock(&p->lock);
}

int pci_init(struct vm *vm)
{
	struct pci *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	pthread_mutex_init(&p->lock, NULL);
	p->next_mmio = PCI_MMIO_BASE;
	p->next_io = PCI_IO_BASE;
	vm->pci = p;

	pci_dev_init(&p->host, "host-bridge", PCI_HOST_VENDOR, PCI_HOST_DEVICE, PCI_HOST_CLASS, 0, 0);
	p->host.cfg[PCI_INTERRUPT_PIN] = 0;
	p->host.wmask[PCI_INTERRUPT_LINE] = 0;
	bus_data_put(&p->host.cfg[PCI_COMMAND], 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	r = pci_add(vm, &p->host);
	if (r < 0)
		goto fail;

	r = bus_register(&vm->pio, PCI_CONFIG_ADDRESS, 4, pci_addr_io, p, "pci-config-address");
	if (r < 0)
		goto fail;
	p->pio_addr = true;
	r = bus_register(&vm->pio, PCI_CONFIG_DATA, 4, pci_data_io, p, "pci-config-data");
	if (r < 0)
		goto fail;
	p->pio_data = true;
	return 0;
fail:
	log_error("pci: cannot set up the host bridge: %s", strerror(-r));
	pci_exit(vm);
	return r;
}

void pci_exit(struct vm *vm)
{
	struct pci *p = vm->pci;

	if (!p)
		return;
	if (p->pio_addr)
		bus_unregister(&vm->pio, PCI_CONFIG_ADDRESS);
	if (p->pio_data)
		bus_unregister(&vm->pio, PCI_CONFIG_DATA);
	/* Devices belong to whoever added them; only their bus ranges are undone here. */
	for (unsigned slot = 0; slot < PCI_MAX_DEVICES; slot++)
		if (p->devs[slot])
			pci_unmap_all(p, p->devs[slot]);
	pthread_mutex_destroy(&p->lock);
	free(p);
	vm->pci = NULL;
}
