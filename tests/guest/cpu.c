/* CPU state after boot: an IDT whose exception handlers report and exit (instead of a silent
 * triple fault), a TSS so that exceptions at CPL3 get a kernel stack, and the exit sequence. */
#include "guest.h"

#define CR4_TSD (1ull << 2)
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)
#define GATE_INTR_DPL0 0x8e
#define GATE_INTR_DPL3 0xee
#define EXIT_VECTOR 0x80
#define ISR_STUB_SIZE 16
#define DEBUG_EXIT_PORT 0xf4
#define I8042_CMD_PORT 0x64
#define I8042_RESET 0xfe

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, attr;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iopb;
} __attribute__((packed));

struct trap_frame {
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

extern uint64_t gdt[];
extern char isr_stubs[], isr_exit_stub[], kstack_top[];

static struct idt_gate idt[EXIT_VECTOR + 1] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));

static void set_gate(unsigned vec, void *handler, uint8_t attr)
{
	uint64_t a = (uint64_t)handler;

	idt[vec] = (struct idt_gate){
		.off_lo = a & 0xffff, .sel = SEL_CODE64, .attr = attr,
		.off_mid = (a >> 16) & 0xffff, .off_hi = a >> 32,
	};
}

void cpu_init(void)
{
	for (unsigned v = 0; v < 32; v++)
		set_gate(v, isr_stubs + v * ISR_STUB_SIZE, GATE_INTR_DPL0);
	set_gate(EXIT_VECTOR, isr_exit_stub, GATE_INTR_DPL3);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));

	/* No I/O bitmap (iopb past the limit): IOPL 3 alone grants the ports to CPL3. */
	tss.rsp[0] = (uint64_t)kstack_top;
	tss.iopb = sizeof(tss);
	uint64_t base = (uint64_t)&tss, limit = sizeof(tss) - 1;
	gdt[SEL_TSS / 8] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 |
			   ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[SEL_TSS / 8 + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));

	/* The user side reads the TSC and touches pages the kernel also uses. */
	uint64_t cr4;
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 &= ~(CR4_TSD | CR4_SMEP | CR4_SMAP);
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
}

/* Called by isr_common (head.S) for exceptions 0-31; never returns. */
void trap(const struct trap_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	print("KVMM error=exception vector=%lu error_code=0x%lx rip=0x%lx cs=0x%lx rsp=0x%lx cr2=0x%lx\n",
	       f->vector, f->error, f->rip, f->cs, f->rsp, cr2);
	guest_exit(EXIT_INTERNAL);
}

/* Port 0xf4 ends the run under QEMU's isa-debug-exit and kvmm; the i8042 reset ends it under
 * kvmtool; if neither stops the VM, halt (via int 0x80 when at CPL3). */
void guest_exit(int status)
{
	print("KVMM guest=test event=exit status=%d\n", status);
	outb(DEBUG_EXIT_PORT, (uint8_t)status);
	outb(I8042_CMD_PORT, I8042_RESET);
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (;;) {
		if (cs & 3)
			__asm__ volatile("int $0x80");
		else
			__asm__ volatile("cli; hlt");
	}
}
