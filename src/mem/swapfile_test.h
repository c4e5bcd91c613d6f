/* Fault injection for the swap file's unit tests and nothing else: production code includes
 * swapfile.h only. The state is per swap file (no global hook), and each call arms one I/O
 * system call: the next pwritev or pread of that file, whichever comes first, then disarms.
 * Injected calls count in write_calls like real ones. */
#ifndef KVMM_MEM_SWAPFILE_TEST_H
#define KVMM_MEM_SWAPFILE_TEST_H

#include <stddef.h>

struct swapfile;

/* The next call fails with err (EIO, ENOSPC, EINTR, ...) without reaching the file. */
void swapfile_test_fail_next(struct swapfile *s, int err);
/* The next call transfers at most `bytes` bytes (a short write or read; the file's own retry
 * does the rest). Keep it a multiple of 4096 for an O_DIRECT file. */
void swapfile_test_short_next(struct swapfile *s, size_t bytes);

#endif
