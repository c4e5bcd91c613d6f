/*
 * The real-mode part of the bzImage: the legacy boot sector, the setup header (Linux
 * Documentation/arch/x86/boot.rst, protocol 2.12) and the setup code that QEMU's linuxboot ROM and
 * kvmtool enter in real mode. The setup code builds a boot_params ("zero page") with the e820 map
 * from int 0x15, switches to 32-bit protected mode and jumps to the protected-mode part at
 * code32_start (0x100000, head.S) with esi = the zero page, as the 32-bit boot protocol does.
 *
 * This section is linked at 0: every address here is an offset in the real-mode segment X the
 * loader chose (QEMU and kvmtool: X = 0x10000). Per boot.rst, X .. X+0x8000 is setup code and
 * X+0x8000 .. X+0x10000 is ours for stack and heap (both loaders put the command line at X+0x10000).
 */
#define ZP 0x8000            /* the zero page we build: X+0x8000 .. X+0x9000 */
#define STACK_TOP 0x9ff0
#define SMAP 0x534d4150      /* "SMAP" */
#define E820_MAX 128

	.code16
	.section .setup, "ax"
	.globl setup_start
setup_start:
	/* Booted from a disk as a boot sector: there is nothing to do. */
	cli
1:	hlt
	jmp 1b

	.org 0x1f1
hdr:
	.byte setup_sects_val          /* 0x1f1 setup_sects (linker script) */
	.word 0                        /* 0x1f2 root_flags */
	.long syssize_val              /* 0x1f4 syssize: protected-mode part in 16-byte units */
	.word 0                        /* 0x1f8 ram_size */
	.word 0xffff                   /* 0x1fa vid_mode: normal */
	.word 0                        /* 0x1fc root_dev */
	.word 0xaa55                   /* 0x1fe boot_flag */
	.byte 0xeb, start_of_setup - 1f  /* 0x200 jump: a 2-byte short jmp, as the protocol requires */
1:	.ascii "HdrS"                  /* 0x202 header */
	.word 0x020c                   /* 0x206 version */
	.long 0                        /* 0x208 realmode_swtch */
	.word 0                        /* 0x20c start_sys_seg */
	.word kernel_version - 0x200   /* 0x20e kernel_version */
	.byte 0                        /* 0x210 type_of_loader (written by the loader) */
	.byte 0x01                     /* 0x211 loadflags: LOADED_HIGH */
	.word 0                        /* 0x212 setup_move_size */
	.long 0x100000                 /* 0x214 code32_start */
	.long 0                        /* 0x218 ramdisk_image */
	.long 0                        /* 0x21c ramdisk_size */
	.long 0                        /* 0x220 bootsect_kludge */
	.word 0                        /* 0x224 heap_end_ptr */
	.byte 0                        /* 0x226 ext_loader_ver */
	.byte 0                        /* 0x227 ext_loader_type */
	.org 0x228
	.long 0                        /* 0x228 cmd_line_ptr (written by the loader) */
	.long 0x7fffffff               /* 0x22c initrd_addr_max */
	.long 0x100000                 /* 0x230 kernel_alignment */
	.byte 0                        /* 0x234 relocatable_kernel: linked at 1 MiB, not relocatable */
	.byte 12                       /* 0x235 min_alignment (log2) */
	.org 0x236
	.word 0x0001                   /* 0x236 xloadflags: XLF_KERNEL_64 (64-bit entry at +0x200) */
	.long 4095                     /* 0x238 cmdline_size */
	.long 0                        /* 0x23c hardware_subarch */
	.quad 0                        /* 0x240 hardware_subarch_data */
	.long 0                        /* 0x248 payload_offset */
	.long 0                        /* 0x24c payload_length */
	.quad 0                        /* 0x250 setup_data */
	.org 0x258
	.quad 0x100000                 /* 0x258 pref_address */
	.long init_size_val            /* 0x260 init_size: image + bss + early page tables */
	.long 0                        /* 0x264 handover_offset: no EFI handover */
hdr_end:

kernel_version:
	.asciz "kvmm-test-guest 1"

start_of_setup:
	/* Loaders set ds = es = ss = X but may enter at (X/16 + 0x20):0 (QEMU does): make cs = ds. */
	cli
	cld
	movw %ds, %ax
	movw %ax, %es
	movw %ax, %ss
	movw $STACK_TOP, %sp
	pushw %ds
	pushw $1f
	lretw
1:
	/* The zero page: zeroed, then the setup header as the loader left it (cmd_line_ptr). */
	movw $ZP, %di
	xorw %ax, %ax
	movw $2048, %cx
	rep stosw
	movw $hdr, %si
	movw $ZP + 0x1f1, %di
	movw $hdr_end - hdr, %cx
	rep movsb

	/* e820 map into boot_params.e820_table (0x2d0), count at 0x1e8. */
	xorl %ebx, %ebx
	xorw %bp, %bp
	movw $ZP + 0x2d0, %di
2:	movl $0xe820, %eax
	movl $SMAP, %edx
	movl $20, %ecx
	int $0x15
	jc 3f
	cmpl $SMAP, %eax
	jne 3f
	incw %bp
	addw $20, %di
	testl %ebx, %ebx
	jz 3f
	cmpw $E820_MAX, %bp
	jb 2b
3:	cli
	movw %bp, %ax
	movb %al, ZP + 0x1e8

	/* Fast A20 (port 0x92 bit 1; bit 0 would reset). Loaders that do not emulate it ignore it. */
	inb $0x92, %al
	orb $0x02, %al
	andb $0xfe, %al
	outb %al, $0x92

	/* esi = linear address of the zero page; the GDT's base is linear too. */
	xorl %esi, %esi
	movw %ds, %si
	shll $4, %esi
	leal gdt(%esi), %eax
	movl %eax, gdt_desc + 2
	addl $ZP, %esi

	lidtl idt_null
	lgdtl gdt_desc
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x10, $0x100000

	.balign 8
gdt:
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff       /* 0x10: __BOOT_CS, flat 32-bit code */
	.quad 0x00cf92000000ffff       /* 0x18: __BOOT_DS, flat data */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long 0                        /* base, filled in above */
idt_null:
	.word 0
	.long 0
