/* Exits 0 when /dev/kvm runs guest code at native speed: a 150 M-instruction real-mode loop must
 * finish within 5 s. A nested PVM backend, which emulates guest CPL0 at ~1.4 M instructions/s,
 * would need about two minutes and is reported as unusable. Used by scripts/testhost. */
#include "minikvm.h"

#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOOPS 50000000u

static void on_alarm(int sig)
{
	(void)sig;
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct minikvm m;
	struct minikvm_exit e;
	uint8_t code[64];
	size_t len = minikvm_sum_program(code, sizeof(code), LOOPS);
	uint32_t want = (uint32_t)((uint64_t)LOOPS * (LOOPS + 1) / 2);
	int r;

	r = minikvm_open(&m, 1 << 16);
	if (r < 0) {
		fprintf(stderr, "kvm-probe: /dev/kvm: %s\n", strerror(-r));
		return 1;
	}
	r = minikvm_load(&m, code, len);
	sigaction(SIGALRM, &sa, NULL);
	alarm(5);
	if (r == 0)
		r = minikvm_run(&m, &e);
	alarm(0);
	minikvm_close(&m);
	if (r < 0) {
		fprintf(stderr, "kvm-probe: guest did not finish: %s\n", strerror(-r));
		return 1;
	}
	if (e.reason != KVM_EXIT_IO || e.port != 0x12 || e.value != want) {
		fprintf(stderr, "kvm-probe: unexpected exit %u port %#x value %u\n", e.reason, e.port, e.value);
		return 1;
	}
	puts("kvm-probe: native KVM");
	return 0;
}
