/*
 * The protected-mode part, loaded at 0x100000 (code32_start = pref_address):
 *   +0x000  startup_32: the 32-bit boot protocol entry (from setup.S, or any 32-bit loader):
 *           flat __BOOT_CS/__BOOT_DS, paging off, esi = boot_params. Builds identity page tables
 *           for 0-4 GiB, enables long mode and continues at startup_64.
 *   +0x200  startup_64: the 64-bit boot protocol entry (kvmm): long mode, identity paging of at
 *           least the image and boot_params, interrupts off, rsi = boot_params.
 * startup_64 loads our own GDT and stack, zeroes .bss and calls kmain(boot_params) (main.c).
 */
#include "guest.h"

#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define CR4_PAE 0x20
#define CR0_PE_PG 0x80000001
#define PTE_P_RW_US 0x7
#define PTE_P_RW_US_PS 0x87

	.section .head32, "ax"
	.code32
	.globl startup_32
startup_32:
	cli
	cld
	/* The loader's GDT is flat at 0x18 (__BOOT_DS); ds must be flat before lgdt reads memory. */
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	lgdt gdt_desc
	ljmp $SEL_CODE32, $1f
1:	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %fs
	movl %eax, %gs
	movl %eax, %ss

	/* early_pgt: PML4, PDPT, 4 PDs of 2 MiB pages = identity 0-4 GiB (outside .bss, which
	 * startup_64 zeroes while these tables are live). */
	movl $early_pgt, %edi
	movl $(6 * 4096 / 4), %ecx
	xorl %eax, %eax
	rep stosl
	movl $early_pgt + 0x1000 + PTE_P_RW_US, early_pgt
	movl $early_pgt + 0x1000, %edi
	movl $early_pgt + 0x2000 + PTE_P_RW_US, %eax
	movl $4, %ecx
2:	movl %eax, (%edi)
	addl $0x1000, %eax
	addl $8, %edi
	loop 2b
	movl $early_pgt + 0x2000, %edi
	movl $PTE_P_RW_US_PS, %eax
	movl $2048, %ecx
3:	movl %eax, (%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 3b

	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $early_pgt, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $CR0_PE_PG, %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $from32

	.section .head64, "ax"
	.code64
	.globl startup_64
startup_64:
	cli
	cld
	lgdt gdt_desc(%rip)
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %fs
	movl %eax, %gs
	movl %eax, %ss
	/* The loader's rsp may point anywhere (or nowhere): use ours from here on. */
	leaq kstack_top(%rip), %rsp
	pushq $SEL_CODE64
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	movq %rsi, %r12
	leaq __bss_start(%rip), %rdi
	leaq __bss_end(%rip), %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	leaq kstack_top(%rip), %rsp
	movq %r12, %rdi
	call kmain
4:	cli
	hlt
	jmp 4b

	/* From startup_32: the upper halves of registers are undefined after the switch to 64-bit. */
from32:
	movl %esi, %esi
	jmp startup_64

	.text
/* cpu_enter_user(fn): iretq to fn at CPL3 on the user stack, IOPL 3 (port I/O for the console,
 * RTC and exit ports), interrupts off. */
	.globl cpu_enter_user
cpu_enter_user:
	pushq $SEL_UDATA
	leaq ustack_top(%rip), %rax
	pushq %rax
	pushq $0x3002
	pushq $SEL_UCODE64
	pushq %rdi
	iretq

/* Exception stubs: 16 bytes each, a uniform frame (vector, error code, then the CPU's frame). */
	.balign 16
	.globl isr_stubs
isr_stubs:
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign 16
	.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp isr_common
	.endr
	.balign 16
	.globl isr_exit_stub
isr_exit_stub:                         /* int 0x80 from CPL3: the guest is done, halt */
	cli
	hlt
	jmp isr_exit_stub

isr_common:
	movq %rsp, %rdi
	andq $-16, %rsp
	call trap
5:	cli
	hlt
	jmp 5b

	.data
	.balign 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00af9a000000ffff       /* 0x08: 64-bit code */
	.quad 0x00cf9a000000ffff       /* 0x10: 32-bit code (__BOOT_CS) */
	.quad 0x00cf92000000ffff       /* 0x18: data (__BOOT_DS) */
	.quad 0x00cff2000000ffff       /* 0x20: user data */
	.quad 0x00affa000000ffff       /* 0x28: user 64-bit code */
	.quad 0, 0                     /* 0x30: TSS, filled in by cpu.c */
gdt_end:
	.balign 8
	.word 0, 0, 0
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.bss
	.balign 4096
	.globl kstack_top
kstack:
	.skip 16384
kstack_top:
ustack:
	.skip 65536
ustack_top:

	.section .early_pgt, "aw", @nobits
	.balign 4096
early_pgt:
	.skip 6 * 4096
