#include "minikvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int ioctl_errno(int fd, unsigned long req, void *arg)
{
	int r = ioctl(fd, req, arg);
	return r < 0 ? -errno : r;
}

int minikvm_open(struct minikvm *m, size_t mem_size)
{
	struct kvm_userspace_memory_region region;
	int r;

	memset(m, 0, sizeof(*m));
	m->kvm = m->vm = m->vcpu = -1;
	m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm < 0)
		return -errno;
	r = ioctl_errno(m->kvm, KVM_GET_API_VERSION, NULL);
	if (r != KVM_API_VERSION) {
		r = r < 0 ? r : -EPROTO;
		goto fail;
	}
	r = m->vm = ioctl_errno(m->kvm, KVM_CREATE_VM, 0);
	if (r < 0)
		goto fail;
	m->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->mem == MAP_FAILED) {
		m->mem = NULL;
		r = -errno;
		goto fail;
	}
	m->mem_size = mem_size;
	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = mem_size,
		.userspace_addr = (uintptr_t)m->mem,
	};
	r = ioctl_errno(m->vm, KVM_SET_USER_MEMORY_REGION, &region);
	if (r < 0)
		goto fail;
	r = m->vcpu = ioctl_errno(m->vm, KVM_CREATE_VCPU, 0);
	if (r < 0)
		goto fail;
	r = ioctl_errno(m->kvm, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (r < 0)
		goto fail;
	m->run_size = (size_t)r;
	m->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	if (m->run == MAP_FAILED) {
		m->run = NULL;
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	minikvm_close(m);
	return r;
}

int minikvm_load(struct minikvm *m, const void *code, size_t len)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = MINIKVM_CODE_GPA, .rflags = 0x2 };
	int r;

	if (len > m->mem_size - MINIKVM_CODE_GPA)
		return -E2BIG;
	memcpy(m->mem + MINIKVM_CODE_GPA, code, len);
	r = ioctl_errno(m->vcpu, KVM_GET_SREGS, &sregs);
	if (r < 0)
		return r;
	/* Real mode with CS:IP = 0000:1000 (reset leaves CS at f000:fff0). */
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	r = ioctl_errno(m->vcpu, KVM_SET_SREGS, &sregs);
	if (r < 0)
		return r;
	return ioctl_errno(m->vcpu, KVM_SET_REGS, &regs);
}

int minikvm_run(struct minikvm *m, struct minikvm_exit *e)
{
	int r = ioctl_errno(m->vcpu, KVM_RUN, NULL);

	if (r < 0)
		return r;
	memset(e, 0, sizeof(*e));
	e->reason = m->run->exit_reason;
	if (e->reason == KVM_EXIT_IO && m->run->io.direction == KVM_EXIT_IO_OUT) {
		e->port = m->run->io.port;
		e->size = m->run->io.size;
		if (e->size > sizeof(e->value))
			return -EPROTO;
		memcpy(&e->value, (uint8_t *)m->run + m->run->io.data_offset, e->size);
	}
	return 0;
}

void minikvm_close(struct minikvm *m)
{
	if (m->run)
		munmap(m->run, m->run_size);
	if (m->mem)
		munmap(m->mem, m->mem_size);
	if (m->vcpu >= 0)
		close(m->vcpu);
	if (m->vm >= 0)
		close(m->vm);
	if (m->kvm >= 0)
		close(m->kvm);
	memset(m, 0, sizeof(*m));
	m->kvm = m->vm = m->vcpu = -1;
}

size_t minikvm_sum_program(uint8_t *buf, size_t cap, uint32_t n)
{
	/* 16-bit code; 0x66 selects 32-bit operands. */
	const uint8_t code[] = {
		0x66, 0x31, 0xc0,             /* xor eax, eax */
		0x66, 0xb9, 0, 0, 0, 0,       /* mov ecx, n */
		0x66, 0x01, 0xc8,             /* 1: add eax, ecx */
		0x66, 0x49,                   /* dec ecx */
		0x75, 0xf9,                   /* jnz 1b */
		0xba, 0x12, 0x00,             /* mov dx, 0x12 */
		0x66, 0xef,                   /* out dx, eax */
		0xf4,                         /* hlt */
	};

	if (cap < sizeof(code))
		return 0;
	memcpy(buf, code, sizeof(code));
	memcpy(buf + 5, &n, sizeof(n));
	return sizeof(code);
}
