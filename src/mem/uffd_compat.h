/* userfaultfd uapi newer than Debian 12's linux-libc-dev (6.1): defined here when the headers lack
 * it, and detected at run time (features.c) before use. Values from include/uapi/linux/
 * userfaultfd.h of Linux 6.8. */
#ifndef KVMM_MEM_UFFD_COMPAT_H
#define KVMM_MEM_UFFD_COMPAT_H

#include <linux/userfaultfd.h>
#include <stdint.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	__s64 move; /* bytes moved, or -errno */
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

/* Linux 6.1's uapi has it; glibc's sys/mman.h may not. */
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#endif
