/* /dev/kvm works: a minimal guest runs real-mode code and its results come back through IO exits. */
#include "minikvm.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

Test(kvm_smoke, dev_kvm_api, .timeout = 30)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	cr_assert_geq(fd, 0, "open /dev/kvm: %s", strerror(errno));
	cr_expect_eq(ioctl(fd, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
	cr_expect_gt(ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 0);
	cr_expect_gt(ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP), 0);
	close(fd);
}

Test(kvm_smoke, out_and_hlt, .timeout = 60)
{
	/* mov al, 0x2a; out 0x10, al; hlt */
	const uint8_t code[] = { 0xb0, 0x2a, 0xe6, 0x10, 0xf4 };
	struct minikvm m;
	struct minikvm_exit e;

	cr_assert_eq(minikvm_open(&m, 1 << 16), 0);
	cr_assert_eq(minikvm_load(&m, code, sizeof(code)), 0);
	cr_assert_eq(minikvm_run(&m, &e), 0);
	cr_expect_eq(e.reason, KVM_EXIT_IO, "exit reason %u", e.reason);
	cr_expect_eq(e.port, 0x10);
	cr_expect_eq(e.size, 1);
	cr_expect_eq(e.value, 0x2a);
	cr_assert_eq(minikvm_run(&m, &e), 0);
	cr_expect_eq(e.reason, KVM_EXIT_HLT, "exit reason %u", e.reason);
	minikvm_close(&m);
}

Test(kvm_smoke, guest_computes, .timeout = 120)
{
	const uint32_t n[] = { 1, 1000, 3000000 };

	for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		uint8_t code[64];
		size_t len = minikvm_sum_program(code, sizeof(code), n[i]);
		uint32_t want = (uint32_t)((uint64_t)n[i] * (n[i] + 1) / 2);
		struct minikvm m;
		struct minikvm_exit e;

		cr_assert_gt(len, 0);
		cr_assert_eq(minikvm_open(&m, 1 << 16), 0);
		cr_assert_eq(minikvm_load(&m, code, len), 0);
		cr_assert_eq(minikvm_run(&m, &e), 0);
		cr_expect_eq(e.reason, KVM_EXIT_IO);
		cr_expect_eq(e.port, 0x12);
		cr_expect_eq(e.size, 4);
		cr_expect_eq(e.value, want, "sum 1..%u: guest says %u, expected %u", n[i], e.value, want);
		minikvm_close(&m);
	}
}
