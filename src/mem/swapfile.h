/* Host swap (DESIGN.md section 4): a per-VM file of 4 KiB slots, preallocated, written in batches,
 * each slot's xxh64 kept in memory so that a slot the file no longer holds faithfully (corruption
 * on disk, a truncated or overwritten file) is detected and never handed to the guest as data.
 * The file is created by kvmm (never an existing one) and deleted when it is closed.
 *
 * I/O errors never lose a page: a failed write leaves the caller's pages untouched (they stay
 * resident) and the file stops accepting writes (swapfile_usable is false); pages already in it
 * stay readable. Not thread-safe (the memory manager's lock). */
#ifndef KVMM_MEM_SWAPFILE_H
#define KVMM_MEM_SWAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SWAPFILE_PAGE 4096u
#define SWAPFILE_NONE UINT32_MAX

/* How slots are read and written: O_DIRECT (the host page cache holds no copy) or through the
 * page cache (written back and dropped with sync_file_range + POSIX_FADV_DONTNEED). AUTO picks
 * the measured better one the file system supports (docs/benchmarks.md). */
enum swapfile_io { SWAPFILE_IO_AUTO, SWAPFILE_IO_DIRECT, SWAPFILE_IO_CACHED };

struct swapfile;

struct swapfile_stats {
	uint64_t slots;           /* slots in the file */
	uint64_t used;            /* slots holding a page */
	uint64_t written, read;   /* pages, since creation */
	uint64_t write_calls;     /* pwritev calls (batching shows as written / write_calls) */
	uint64_t write_errors, read_errors, checksum_errors;
	int last_error;           /* errno of the last I/O error, 0 if none */
	bool usable;              /* still accepting writes */
	bool direct;              /* O_DIRECT in use */
};

/* Creates `path` (-EEXIST if something is there already: kvmm never overwrites a file) with room
 * for `slots` pages, preallocated (-ENOSPC when the file system cannot hold it; a file system
 * without fallocate gets a sparse file and may report ENOSPC on write later). */
int swapfile_create(struct swapfile **out, const char *path, uint64_t slots, enum swapfile_io io);
/* Closes and deletes the file. NULL is fine. */
void swapfile_destroy(struct swapfile *s);

/* Writes n pages (pages[k]: 4 KiB-aligned buffers) to newly allocated slots, slots[k], with as
 * few writes as the free slots allow (runs of consecutive slots go in one pwritev). Returns n;
 * -ENOSPC when fewer than n slots are free (nothing written); -EIO, -ENOSPC (file system full) or
 * another -errno when a write fails: then none of the n is stored and the file stops accepting
 * writes. */
int swapfile_write(struct swapfile *s, const void *const *pages, unsigned n, uint32_t *slots);
/* Reads slot into the 4 KiB-aligned dst. -EBADMSG when the data does not match its checksum,
 * -EIO (or another -errno) when the read fails, -EINVAL for a slot not in use. The slot stays in
 * use either way. */
int swapfile_read(struct swapfile *s, uint32_t slot, void *dst);
/* Reads n (1 to 64) consecutive slots from `slot` into dst (n pages, 4 KiB-aligned) with one read;
 * bit k of *bad is set for each page that fails its checksum (never use those). 0, or -errno when
 * the read fails (-EINVAL: a slot not in use). */
int swapfile_read_run(struct swapfile *s, uint32_t slot, unsigned n, void *dst, uint64_t *bad);
void swapfile_free(struct swapfile *s, uint32_t slot);
/* Frees every slot (system reset). */
void swapfile_clear(struct swapfile *s);
bool swapfile_usable(const struct swapfile *s);
uint64_t swapfile_free_slots(const struct swapfile *s);
void swapfile_get_stats(const struct swapfile *s, struct swapfile_stats *st);
const char *swapfile_path(const struct swapfile *s);

#endif
