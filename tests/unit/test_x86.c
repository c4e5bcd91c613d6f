#include <kvmm/vcpu.h>

#include <criterion/criterion.h>
#include <stdlib.h>

static struct kvm_cpuid2 *fake_cpuid(void)
{
	const uint32_t leaves[][2] = { { 1, 0 }, { 0xb, 0 }, { 0xb, 1 }, { 0xb, 2 }, { 0x8000001e, 0 } };
	const unsigned n = sizeof(leaves) / sizeof(leaves[0]);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	c->nent = n;
	for (unsigned i = 0; i < n; i++) {
		c->entries[i].function = leaves[i][0];
		c->entries[i].index = leaves[i][1];
		c->entries[i].ebx = 0xffffffff;
	}
	return c;
}

Test(x86, cpuid_apic_ids_and_topology, .timeout = 10)
{
	struct kvm_cpuid2 *c = fake_cpuid();

	x86_cpuid_patch(c, 3, 4);
	cr_expect_eq(c->entries[0].ebx >> 24, 3, "leaf 1 initial APIC id");
	cr_expect_eq((c->entries[0].ebx >> 16) & 0xff, 4, "leaf 1 logical processor count");
	cr_expect_eq(c->entries[0].ebx & 0xffff, 0xffff, "other leaf 1 EBX fields kept");
	cr_expect(c->entries[0].ecx & (1u << 31), "hypervisor bit");
	cr_expect(c->entries[0].edx & (1u << 28), "HTT with more than one CPU");
	cr_expect_eq(c->entries[1].edx, 3, "x2APIC id in leaf 0xb");
	cr_expect_eq(c->entries[1].ebx, 1, "one thread per core");
	cr_expect_eq(c->entries[2].ebx, 4, "four cores");
	cr_expect_eq(c->entries[2].eax, 2, "core level shift for 4 CPUs");
	cr_expect_eq((c->entries[2].ecx >> 8) & 0xff, 2, "level type core");
	cr_expect_eq(c->entries[3].ebx, 0, "no level beyond core");
	cr_expect_eq(c->entries[4].eax, 3, "AMD extended APIC id");
	free(c);
}

Test(x86, linux64_boot_state, .timeout = 10)
{
	struct boot_entry e = { .mode = BOOT_LINUX64, .rip = 0x100200, .cr3 = BOOT_PML4_GPA,
				.gdt_base = BOOT_GDT_GPA, .gdt_limit = 31 };
	struct kvm_sregs s = { 0 };

	x86_boot_sregs(&e, &s);
	cr_expect(s.cr0 & 1u && s.cr0 & 0x80000000u, "protected mode with paging");
	cr_expect_eq(s.cr4 & 0x20, 0x20, "PAE");
	cr_expect_eq(s.efer & 0x500, 0x500, "long mode enabled and active");
	cr_expect_eq(s.cr3, BOOT_PML4_GPA);
	cr_expect_eq(s.cs.selector, BOOT_SEL_CODE);
	cr_expect(s.cs.l && !s.cs.db, "64-bit code segment");
	cr_expect_eq(s.ds.selector, BOOT_SEL_DATA);
	cr_expect_eq(s.gdt.base, BOOT_GDT_GPA);
	cr_expect(s.tr.present && s.tr.type == 0xb, "a usable TR");
}

Test(x86, pvh_boot_state, .timeout = 10)
{
	struct boot_entry e = { .mode = BOOT_PVH, .rip = 0x1000000, .rbx = BOOT_PVH_INFO_GPA };
	struct kvm_sregs s = { 0 };

	x86_boot_sregs(&e, &s);
	cr_expect_eq(s.cr0 & 0x80000001u, 1, "protected mode, paging off");
	cr_expect_eq(s.efer, 0);
	cr_expect_eq(s.cr4, 0);
	cr_expect(!s.cs.l && s.cs.db, "32-bit code segment");
	cr_expect_eq(s.cs.limit, 0xffffffff);
}
