/* The vCPU model as QMP shows it to libvirt: CPUID feature flags under QEMU's property names
 * (target/i386/cpu.c's feature_word_info; libvirt's cpu_map translates the same names), read from
 * the CPUID kvmm gives its vCPUs: KVM's supported CPUID as src/vcpu/x86.c patches it. kvmm has one
 * CPU model, "host" (with "max" as its alias), so every answer comes from this one table. */
#include "compat.h"

#include <kvmm/vcpu.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EAX, EBX, ECX, EDX };

struct cpu_feature {
	const char *name;
	uint32_t leaf, sub;
	uint8_t reg, bit;
};

#define F(n, l, s, r, b) { n, l, s, r, b }
static const struct cpu_feature features[] = {
	/* Leaf 1 EDX, ECX (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E). */
	F("fpu", 1, 0, EDX, 0), F("vme", 1, 0, EDX, 1), F("de", 1, 0, EDX, 2), F("pse", 1, 0, EDX, 3),
	F("tsc", 1, 0, EDX, 4), F("msr", 1, 0, EDX, 5), F("pae", 1, 0, EDX, 6), F("mce", 1, 0, EDX, 7),
	F("cx8", 1, 0, EDX, 8), F("apic", 1, 0, EDX, 9), F("sep", 1, 0, EDX, 11),
	F("mtrr", 1, 0, EDX, 12), F("pge", 1, 0, EDX, 13), F("mca", 1, 0, EDX, 14),
	F("cmov", 1, 0, EDX, 15), F("pat", 1, 0, EDX, 16), F("pse36", 1, 0, EDX, 17),
	F("clflush", 1, 0, EDX, 19), F("mmx", 1, 0, EDX, 23), F("fxsr", 1, 0, EDX, 24),
	F("sse", 1, 0, EDX, 25), F("sse2", 1, 0, EDX, 26), F("ss", 1, 0, EDX, 27),
	F("pni", 1, 0, ECX, 0), F("pclmulqdq", 1, 0, ECX, 1), F("monitor", 1, 0, ECX, 3),
	F("vmx", 1, 0, ECX, 5), F("ssse3", 1, 0, ECX, 9), F("fma", 1, 0, ECX, 12),
	F("cx16", 1, 0, ECX, 13), F("pdcm", 1, 0, ECX, 15), F("pcid", 1, 0, ECX, 17),
	F("sse4.1", 1, 0, ECX, 19), F("sse4.2", 1, 0, ECX, 20), F("x2apic", 1, 0, ECX, 21),
	F("movbe", 1, 0, ECX, 22), F("popcnt", 1, 0, ECX, 23), F("tsc-deadline", 1, 0, ECX, 24),
	F("aes", 1, 0, ECX, 25), F("xsave", 1, 0, ECX, 26), F("avx", 1, 0, ECX, 28),
	F("f16c", 1, 0, ECX, 29), F("rdrand", 1, 0, ECX, 30), F("hypervisor", 1, 0, ECX, 31),
	/* Leaf 6 EAX, leaf 7.0 EBX/ECX/EDX, leaf 7.1 EAX. */
	F("arat", 6, 0, EAX, 2),
	F("fsgsbase", 7, 0, EBX, 0), F("tsc-adjust", 7, 0, EBX, 1), F("bmi1", 7, 0, EBX, 3),
	F("hle", 7, 0, EBX, 4), F("avx2", 7, 0, EBX, 5), F("smep", 7, 0, EBX, 7),
	F("bmi2", 7, 0, EBX, 8), F("erms", 7, 0, EBX, 9), F("invpcid", 7, 0, EBX, 10),
	F("rtm", 7, 0, EBX, 11), F("avx512f", 7, 0, EBX, 16), F("avx512dq", 7, 0, EBX, 17),
	F("rdseed", 7, 0, EBX, 18), F("adx", 7, 0, EBX, 19), F("smap", 7, 0, EBX, 20),
	F("avx512ifma", 7, 0, EBX, 21), F("clflushopt", 7, 0, EBX, 23), F("clwb", 7, 0, EBX, 24),
	F("avx512cd", 7, 0, EBX, 28), F("sha-ni", 7, 0, EBX, 29), F("avx512bw", 7, 0, EBX, 30),
	F("avx512vl", 7, 0, EBX, 31),
	F("avx512vbmi", 7, 0, ECX, 1), F("umip", 7, 0, ECX, 2), F("pku", 7, 0, ECX, 3),
	F("waitpkg", 7, 0, ECX, 5), F("avx512vbmi2", 7, 0, ECX, 6), F("gfni", 7, 0, ECX, 8),
	F("vaes", 7, 0, ECX, 9), F("vpclmulqdq", 7, 0, ECX, 10), F("avx512vnni", 7, 0, ECX, 11),
	F("avx512bitalg", 7, 0, ECX, 12), F("avx512-vpopcntdq", 7, 0, ECX, 14),
	F("la57", 7, 0, ECX, 16), F("rdpid", 7, 0, ECX, 22), F("cldemote", 7, 0, ECX, 25),
	F("movdiri", 7, 0, ECX, 27), F("movdir64b", 7, 0, ECX, 28),
	F("avx512-4vnniw", 7, 0, EDX, 2), F("avx512-4fmaps", 7, 0, EDX, 3),
	F("fsrm", 7, 0, EDX, 4), F("md-clear", 7, 0, EDX, 10), F("serialize", 7, 0, EDX, 14),
	F("tsx-ldtrk", 7, 0, EDX, 16), F("avx512-fp16", 7, 0, EDX, 23),
	F("spec-ctrl", 7, 0, EDX, 26), F("stibp", 7, 0, EDX, 27),
	F("arch-capabilities", 7, 0, EDX, 29), F("core-capability", 7, 0, EDX, 30),
	F("ssbd", 7, 0, EDX, 31),
	F("avx-vnni", 7, 1, EAX, 4), F("avx512-bf16", 7, 1, EAX, 5),
	/* Leaf 0xd.1 EAX: XSAVE extensions. */
	F("xsaveopt", 0xd, 1, EAX, 0), F("xsavec", 0xd, 1, EAX, 1), F("xgetbv1", 0xd, 1, EAX, 2),
	F("xsaves", 0xd, 1, EAX, 3),
	/* KVM's paravirtual features, leaf 0x40000001 EAX (Linux Documentation/virt/kvm/x86/cpuid.rst). */
	F("kvmclock", 0x40000001, 0, EAX, 0), F("kvm-nopiodelay", 0x40000001, 0, EAX, 1),
	F("kvm-mmu", 0x40000001, 0, EAX, 2), F("kvm-asyncpf", 0x40000001, 0, EAX, 4),
	F("kvm-steal-time", 0x40000001, 0, EAX, 5), F("kvm-pv-eoi", 0x40000001, 0, EAX, 6),
	F("kvm-pv-unhalt", 0x40000001, 0, EAX, 7), F("kvm-pv-tlb-flush", 0x40000001, 0, EAX, 9),
	F("kvm-asyncpf-vmexit", 0x40000001, 0, EAX, 10), F("kvm-pv-ipi", 0x40000001, 0, EAX, 11),
	F("kvm-poll-control", 0x40000001, 0, EAX, 12), F("kvm-pv-sched-yield", 0x40000001, 0, EAX, 13),
	F("kvm-asyncpf-int", 0x40000001, 0, EAX, 14), F("kvm-msi-ext-dest-id", 0x40000001, 0, EAX, 15),
	F("kvmclock-stable-bit", 0x40000001, 0, EAX, 24),
	/* Extended leaves 0x80000001 ECX/EDX, 0x80000007 EDX, 0x80000008 EBX. */
	F("lahf-lm", 0x80000001, 0, ECX, 0), F("cmp-legacy", 0x80000001, 0, ECX, 1),
	F("svm", 0x80000001, 0, ECX, 2), F("extapic", 0x80000001, 0, ECX, 3),
	F("cr8legacy", 0x80000001, 0, ECX, 4), F("abm", 0x80000001, 0, ECX, 5),
	F("sse4a", 0x80000001, 0, ECX, 6), F("misalignsse", 0x80000001, 0, ECX, 7),
	F("3dnowprefetch", 0x80000001, 0, ECX, 8), F("osvw", 0x80000001, 0, ECX, 9),
	F("xop", 0x80000001, 0, ECX, 11), F("fma4", 0x80000001, 0, ECX, 16),
	F("tbm", 0x80000001, 0, ECX, 21), F("topoext", 0x80000001, 0, ECX, 22),
	F("perfctr-core", 0x80000001, 0, ECX, 23),
	F("syscall", 0x80000001, 0, EDX, 11), F("nx", 0x80000001, 0, EDX, 20),
	F("mmxext", 0x80000001, 0, EDX, 22), F("fxsr-opt", 0x80000001, 0, EDX, 25),
	F("pdpe1gb", 0x80000001, 0, EDX, 26), F("rdtscp", 0x80000001, 0, EDX, 27),
	F("lm", 0x80000001, 0, EDX, 29),
	F("invtsc", 0x80000007, 0, EDX, 8),
	F("clzero", 0x80000008, 0, EBX, 0), F("xsaveerptr", 0x80000008, 0, EBX, 2),
	F("wbnoinvd", 0x80000008, 0, EBX, 9), F("ibpb", 0x80000008, 0, EBX, 12),
	F("ibrs", 0x80000008, 0, EBX, 14), F("amd-stibp", 0x80000008, 0, EBX, 15),
	F("amd-ssbd", 0x80000008, 0, EBX, 24), F("virt-ssbd", 0x80000008, 0, EBX, 25),
	F("amd-no-ssb", 0x80000008, 0, EBX, 26),
};
#undef F

size_t compat_cpu_nfeatures(void)
{
	return sizeof(features) / sizeof(features[0]);
}

const char *compat_cpu_feature_name(size_t i)
{
	return i < compat_cpu_nfeatures() ? features[i].name : NULL;
}

static const struct kvm_cpuid_entry2 *entry(const struct kvm_cpuid2 *c, uint32_t leaf,
					    uint32_t sub)
{
	for (unsigned i = 0; c && i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == leaf &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == sub))
			return e;
	}
	return NULL;
}

static bool feature_on(const struct kvm_cpuid2 *c, const struct cpu_feature *f)
{
	const struct kvm_cpuid_entry2 *e = entry(c, f->leaf, f->sub);
	uint32_t regs[4];

	if (!e)
		return false;
	regs[EAX] = e->eax;
	regs[EBX] = e->ebx;
	regs[ECX] = e->ecx;
	regs[EDX] = e->edx;
	return regs[f->reg] >> f->bit & 1;
}

int compat_cpu_feature(const struct kvm_cpuid2 *c, const char *name, bool *on)
{
	char alt[32];

	/* QEMU takes "sse4_1" for "sse4.1" and "kvm_pv_eoi" for "kvm-pv-eoi" (legacy spellings,
	 * which libvirt also reads). */
	snprintf(alt, sizeof(alt), "%s", name);
	for (char *p = alt; *p; p++)
		if (*p == '_')
			*p = strncmp(alt, "sse4", 4) ? '-' : '.';
	for (size_t i = 0; i < compat_cpu_nfeatures(); i++)
		if (!strcmp(features[i].name, name) || !strcmp(features[i].name, alt)) {
			*on = feature_on(c, &features[i]);
			return 0;
		}
	return -ENOENT;
}

json_t *compat_cpu_props(const struct kvm_cpuid2 *c)
{
	json_t *props = json_object();

	for (size_t i = 0; props && i < compat_cpu_nfeatures(); i++)
		json_object_set_new(props, features[i].name, json_boolean(feature_on(c, &features[i])));
	return props;
}

void compat_cpu_ident(const struct kvm_cpuid2 *c, struct compat_cpu_ident *id)
{
	const struct kvm_cpuid_entry2 *e = entry(c, 0, 0);
	unsigned base;

	memset(id, 0, sizeof(*id));
	if (e) {
		memcpy(id->vendor, &e->ebx, 4);
		memcpy(id->vendor + 4, &e->edx, 4);
		memcpy(id->vendor + 8, &e->ecx, 4);
	}
	e = entry(c, 1, 0);
	if (e) {
		base = e->eax >> 8 & 0xf;
		id->family = base == 0xf ? base + (e->eax >> 20 & 0xff) : base;
		id->model = (e->eax >> 4 & 0xf) | (e->eax >> 12 & 0xf0);
		id->stepping = e->eax & 0xf;
	}
	for (uint32_t l = 0; l < 3; l++) {
		e = entry(c, 0x80000002 + l, 0);
		if (!e)
			break;
		memcpy(id->model_id + 16 * l, &e->eax, 4);
		memcpy(id->model_id + 16 * l + 4, &e->ebx, 4);
		memcpy(id->model_id + 16 * l + 8, &e->ecx, 4);
		memcpy(id->model_id + 16 * l + 12, &e->edx, 4);
	}
	id->model_id[48] = '\0';
}

/* KVM's supported CPUID is the host's, the same for every VM: read once per process, from the
 * VM's /dev/kvm handle or (probe mode) a handle of our own. Patched as a one-vCPU VM's vCPU 0
 * (the hypervisor bit, as the guest sees it). Handlers run on one loop thread only. */
const struct kvm_cpuid2 *compat_cpu_host(int kvm_fd)
{
	static struct kvm_cpuid2 *cached;
	static bool tried;
	int fd = kvm_fd;

	if (tried)
		return cached;
	tried = true;
	if (fd < 0)
		fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	cached = x86_supported_cpuid(fd);
	if (cached)
		x86_cpuid_patch(cached, 0, 1);
	if (kvm_fd < 0)
		close(fd);
	return cached;
}
