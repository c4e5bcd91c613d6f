/* A minimal KVM guest for smoke tests and the native-KVM probe: one vCPU in real mode running a few
 * bytes of code from guest-physical 0x1000. Not kvmm's VMM: it exists so the test host and any
 * /dev/kvm can be checked before, and independently of, kvmm itself. */
#ifndef KVMM_TESTS_MINIKVM_H
#define KVMM_TESTS_MINIKVM_H

#include <stddef.h>
#include <stdint.h>

struct minikvm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
	size_t mem_size;
};

/* What a guest's last exit was: an OUT (port, size, value), a HLT, or something else. */
struct minikvm_exit {
	uint32_t reason; /* KVM_EXIT_* */
	uint16_t port;
	uint8_t size;
	uint32_t value;
};

#define MINIKVM_CODE_GPA 0x1000

int minikvm_open(struct minikvm *m, size_t mem_size);
int minikvm_load(struct minikvm *m, const void *code, size_t len);
int minikvm_run(struct minikvm *m, struct minikvm_exit *e);
void minikvm_close(struct minikvm *m);

/* Guest code that sums n..1 into eax, writes eax to port 0x12 and halts. */
size_t minikvm_sum_program(uint8_t *buf, size_t cap, uint32_t n);

#endif
