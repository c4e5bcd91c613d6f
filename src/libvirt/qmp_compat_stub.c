/* TODO(issue 9, merge): a stand-in for qmp_compat_register() until the "qprobe" part (src/qmp/,
 * the probe and QOM command table) is merged. Delete this file then: the linker takes the first
 * definition it finds in libkvmm_core.a, and a weak stub found first would hide the real table. */
#include <kvmm/qmp.h>

__attribute__((weak)) int qmp_compat_register(struct qmp_server *s, struct vm *vm)
{
	(void)s;
	(void)vm;
	return 0;
}
