/* The test guest: one freestanding x86-64 image in bzImage format (README.md). Everything the C
 * files share is declared here; the boot path is setup.S (real mode) and head.S (32/64-bit entry). */
#ifndef KVMM_TEST_GUEST_H
#define KVMM_TEST_GUEST_H

/* Selectors of the GDT in head.S. 0x10/0x18 are the Linux boot protocol's __BOOT_CS/__BOOT_DS. */
#define SEL_CODE64 0x08
#define SEL_CODE32 0x10
#define SEL_DATA 0x18
#define SEL_UDATA 0x23
#define SEL_UCODE64 0x2b
#define SEL_TSS 0x30

#ifndef __ASSEMBLER__
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE 4096ul
#define PAGE_SHIFT 12
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))

/* Exit statuses (README.md). */
#define EXIT_OK 0
#define EXIT_MISMATCH 1
#define EXIT_USAGE 2    /* bad command line, or a size that does not fit in RAM */
#define EXIT_INTERNAL 3 /* CPU exception, no usable memory map, no ticking RTC */

/* Port I/O. The workloads run at CPL3 with IOPL 3, so these work on both sides. */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* console.c: COM1, polled, 8N1. */
void console_init(void);
void console_putc(char c);
void print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* boot.c: what the loader handed over, copied out of boot_params before anything else runs. */
struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

#define E820_MAX 128
#define CMDLINE_MAX 4096
extern struct e820_entry boot_e820[E820_MAX];
extern unsigned boot_e820_count;
extern char boot_cmdline[CMDLINE_MAX];
int boot_import(const void *boot_params);

/* mm.c: RAM from the e820 map, identity page tables over all of it, a bump allocator above the image. */
struct mem_chunk {
	uint64_t addr;
	uint64_t pages;
};
#define MEM_CHUNKS_MAX 64
uint64_t mm_ram_bytes(void);
int mm_init(void);
/* Returns the physical (= virtual) address of n zeroed-on-demand pages, or 0 if RAM is exhausted. */
uint64_t mm_alloc_pages(uint64_t n);
/* Takes `pages` pages from the rest of RAM, possibly discontiguous; returns the number of chunks
 * (<= max) or -1 if they do not fit. */
int mm_alloc_area(uint64_t pages, struct mem_chunk *chunks, int max);
/* Takes all the RAM that is left (the balloon's free pool); returns the number of chunks (<= max). */
int mm_alloc_rest(struct mem_chunk *chunks, int max);
/* True if [addr, addr + len) overlaps an e820 entry of any type. */
bool mm_e820_overlaps(uint64_t addr, uint64_t len);
/* The end of the highest RAM range. */
uint64_t mm_ram_end(void);

/* main.c: called by startup_64 (head.S) with the loader's boot_params. */
__attribute__((noreturn)) void kmain(const void *boot_params);

/* cpu.c */
void cpu_init(void);
__attribute__((noreturn)) void cpu_enter_user(void (*fn)(void));
__attribute__((noreturn)) void guest_exit(int status);

/* clock.c */
int clock_calibrate(void);       /* 0, or -1 when the RTC does not tick */
uint64_t clock_tsc_hz(void);
uint64_t clock_now_us(void);

/* pattern.c: page contents and checksums; pure functions of (seed, page index). */
enum page_kind { KIND_ZERO, KIND_DUP, KIND_RANDOM, KIND_TEXT, KIND_COUNT };
#define DUP_TEMPLATES 16
struct pattern {
	unsigned nr;                    /* number of parts */
	enum page_kind kind[KIND_COUNT];
	unsigned pct[KIND_COUNT];       /* sums to 100 */
};
extern const char *const kind_names[KIND_COUNT];
enum page_kind pattern_kind(const struct pattern *p, uint64_t seed, uint64_t page);
void pattern_fill_page(void *page, enum page_kind kind, uint64_t seed, uint64_t index);
uint64_t page_checksum(const void *page);
/* rewrite and churn (README.md "Page kinds"): rewrite generation g >= 1 writes unique stream g,
 * churn write n (counted over all churn steps) stream CHURN_STREAM + n. */
#define CHURN_STREAM (1ull << 63)
bool pattern_rewrite_pick(uint64_t seed, uint64_t gen, uint64_t page, unsigned pct);
void pattern_fill_unique(void *page, uint64_t seed, uint64_t stream, uint64_t index);
uint64_t pattern_churn_page(uint64_t seed, uint64_t n, uint64_t pages);
enum page_kind pattern_churn_fill(void *page, uint64_t seed, uint64_t n, uint64_t index);

/* cmdline.c */
enum step_kind { STEP_FILL, STEP_VERIFY, STEP_IDLE, STEP_WSS, STEP_BALLOON, STEP_REWRITE, STEP_CHURN };
#define STEPS_MAX 32
struct step {
	enum step_kind kind;
	uint64_t arg; /* idle, balloon, churn: seconds; rewrite: percent */
};
struct config {
	unsigned nr_steps;
	struct step steps[STEPS_MAX];
	uint64_t size;     /* bytes, a multiple of PAGE_SIZE */
	struct pattern pattern;
	uint64_t seed;
	unsigned hot_pct;  /* wss */
	uint64_t seconds;  /* wss */
	unsigned balloon_opts; /* BALLOON_OPT_* */
	unsigned misbehave;    /* 1 << MISBEHAVE_* */
};

/* balloon-opts= and misbehave= (README.md). */
#define BALLOON_OPT_STATS 1u
#define BALLOON_OPT_REPORT 2u
enum misbehave_kind {
	MISBEHAVE_IGNORE,
	MISBEHAVE_BAD_PFN,
	MISBEHAVE_BAD_CHAIN,
	MISBEHAVE_WRITE_INFLATED,
	MISBEHAVE_LIE_STATS,
	MISBEHAVE_COUNT
};
extern const char *const misbehave_names[MISBEHAVE_COUNT];
/* Parses the kernel command line; on error prints a `KVMM error=` line and returns -1. */
int cmdline_parse(const char *cmdline, struct config *cfg);

/* workload.c: each returns the step's exit status (EXIT_OK, EXIT_MISMATCH, ...). */
int workload_prepare(const struct config *cfg); /* takes the area and checksum table */
int workload_fill(const struct config *cfg);
int workload_verify(const struct config *cfg);
int workload_idle(const struct config *cfg, uint64_t seconds);
int workload_wss(const struct config *cfg);
int workload_rewrite(const struct config *cfg, unsigned pct);
int workload_churn(const struct config *cfg, uint64_t seconds);

/* balloon.c: the balloon:SECONDS step (a polling virtio-balloon driver); returns the exit status. */
int balloon_step(const struct config *cfg, uint64_t seconds);

#endif /* __ASSEMBLER__ */
#endif
