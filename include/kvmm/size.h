/* The one size parser: every size kvmm reads (CLI, config files, QMP) goes through it. */
#ifndef KVMM_SIZE_H
#define KVMM_SIZE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses a byte count: digits with an optional suffix K, M, G or T (powers of 1024, either case,
 * an optional trailing "B" or "iB"), or with no suffix, bytes. "0x" hex is accepted without suffix.
 * Returns 0, or -EINVAL for malformed text, -ERANGE when the value does not fit in 64 bits.
 */
int size_parse(const char *text, uint64_t *bytes);

/* Formats bytes as the largest exact unit ("512M", "1536K", "3G", "4097"); returns buf. */
char *size_format(uint64_t bytes, char *buf, size_t len);

#endif
