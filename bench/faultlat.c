/* Fault-in latency (DESIGN.md section 8): how long one first touch of a guest page takes when kvmm's
 * memory manager has to bring it back -- a dropped zero page, a page in the LZ4 compression cache, a
 * page in the swap file -- beside the bare userfaultfd round trip measured in the same run (the
 * floor: a handler thread of its own that answers every fault with UFFDIO_COPY of a constant page)
 * and the kernel's own anonymous first touch (no userfaultfd at all, for context).
 *
 * Runs without a VM, against the memory manager of build/release's static library: a gmem mapping,
 * mem_create/mem_start, pages written from here, mem_page_out(), then a toucher thread (standing in
 * for a vCPU) reads or writes one byte of each page, in a random order, timing each touch with
 * clock_gettime(CLOCK_MONOTONIC). Every touched page is checked afterwards (outside the timing): it
 * must hold exactly what was written before it went out.
 *
 *   faultlat [-n PAGES] [-r ROUNDS] [-o OUTDIR] [-s SWAPDIR] [-p none|same|split] [-d] [-q]
 *
 * -d drops the whole system's page cache (/proc/sys/vm/drop_caches, root) before timing swapped
 * pages, so that they are read from the disk: for the test host (faultlat.sh passes it), not for a
 * machine others use. *
 * -p pins the toucher and the handler threads: none (default: where the scheduler puts them), same
 * (both on CPU 0: each fault is a switch on one CPU) or split (toucher CPU 0, handlers CPU 1: each
 * fault wakes the other CPU).
 *
 * Writes OUTDIR/faultlat.dat (one JSON object per set and round, plus a header and a summary) and
 * OUTDIR/faultlat-PHASE-ACCESS.ns (every sample of every round, in ns, one per line), which
 * bench/report_faultlat.py reads. Needs userfaultfd (root, or vm.unprivileged_userfaultfd=1).
 * bench/faultlat.sh builds it against build/release/libkvmm_core.a and runs it in the test host.
 *
 * The text pages are tests/guest/pattern.c's `text` kind (pattern_fill_page, KIND_TEXT: about 2.5x
 * with LZ4 per 4 KiB page), linked in from there, so these pages compress as the test guest's do. */
#include <kvmm/config.h>
#include <kvmm/gmem.h>
#include <kvmm/mem.h>

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul
#define SEED 1ull
#define KIND_TEXT 3 /* tests/guest/guest.h: enum page_kind { ZERO, DUP, RANDOM, TEXT } */

/* tests/guest/pattern.c (built from there by faultlat.sh). */
void pattern_fill_page(void *page, int kind, uint64_t seed, uint64_t index);

/* gmem_init gained a backend argument in part 2; faultlat.sh tells which one this tree has. */
#ifdef GMEM_INIT_HAS_BACKEND
#define GMEM_INIT(gm, size) gmem_init((gm), (size), MEM_BACKEND_ANON)
#else
#define GMEM_INIT(gm, size) gmem_init((gm), (size))
#endif

static unsigned npages = 20000, rounds = 3;
static const char *outdir = ".", *swapdir = "/var/tmp";
static bool quiet, drop_page_cache;
static FILE *dat;
/* Where the toucher and the handler threads run: -1 anywhere (the scheduler's choice), else the
 * toucher on CPU toucher_cpu and every handler (the floor's, kvmm's mem-fault and mem-share) on
 * handler_cpu: the same CPU (a local switch per fault) or two (a cross-CPU wake-up per fault). */
static int toucher_cpu = -1, handler_cpu = -1;
static const char *pin_name = "none";

static void pin_tid(pid_t tid, int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(tid, sizeof(set), &set) < 0) {
		fprintf(stderr, "faultlat: sched_setaffinity(%d, CPU %d): %s\n", (int)tid, cpu, strerror(errno));
		exit(1);
	}
}

/* Pins this process's threads named `comm` (kvmm's mem-fault, mem-share) to cpu. */
static unsigned pin_threads(const char *comm, int cpu)
{
	char path[300], name[64];
	unsigned n = 0;
	DIR *d;
	struct dirent *e;

	if (cpu < 0 || !(d = opendir("/proc/self/task")))
		return 0;
	while ((e = readdir(d))) {
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		if (fgets(name, sizeof(name), f)) {
			name[strcspn(name, "\n")] = 0;
			if (strcmp(name, comm) == 0) {
				pin_tid((pid_t)atoi(e->d_name), cpu);
				n++;
			}
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "faultlat: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	va_start(ap, fmt);
	fputs("faultlat: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* --- what a page should hold --- */

static uint8_t *text_cache; /* expected text pages, by index in a set */

static const uint8_t *text_page(unsigned i)
{
	return text_cache + (size_t)i * PAGE;
}

/* --- the toucher: one thread, one touch per page, timed --- */

struct touch_job {
	uint8_t *const *addr; /* pages, in touch order */
	unsigned n;
	bool write;
	const uint8_t *wbyte;  /* for writes: the byte each page already holds (so it stays the same) */
	uint32_t *ns;          /* out: per touch */
};

static void *toucher(void *opaque)
{
	struct touch_job *j = opaque;
	volatile uint8_t sink = 0;

	pin_tid(0, toucher_cpu);
	for (unsigned k = 0; k < j->n; k++) {
		volatile uint8_t *p = j->addr[k];
		uint64_t t0 = now_ns(), t1;

		if (j->write)
			*p = j->wbyte[k];
		else
			sink += *p;
		t1 = now_ns();
		j->ns[k] = t1 - t0 > UINT32_MAX ? UINT32_MAX : (uint32_t)(t1 - t0);
	}
	(void)sink;
	return NULL;
}

static void run_toucher(struct touch_job *j)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, toucher, j);

	if (r)
		die("pthread_create", r);
	pthread_setname_np(t, "toucher");
	pthread_join(t, NULL);
}

/* --- order and figures --- */

static uint64_t rng = 0x6661756c746c6174ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* order[k]: the page index touched k-th, a random permutation of [0, n). */
static void shuffle(unsigned *order, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		order[i] = i;
	for (unsigned i = n - 1; i > 0; i--) {
		unsigned j = (unsigned)(rnd() % (i + 1)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(const uint32_t *sorted, unsigned n, double p)
{
	double pos = p * (n - 1);
	unsigned lo = (unsigned)pos;

	if (lo + 1 >= n)
		return sorted[n - 1];
	return sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo]);
}

/* One JSON line of figures for one set; the samples go to the phase's .ns file. */
static void record(const char *phase, const char *access, unsigned round, const uint32_t *ns, unsigned n,
		   const char *extra)
{
	uint32_t *s = malloc(n * sizeof(*s));
	char path[4096];
	double sum = 0;
	FILE *f;

	if (!s)
		die("malloc", ENOMEM);
	memcpy(s, ns, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u32);
	for (unsigned k = 0; k < n; k++)
		sum += s[k];
	fprintf(dat, "{\"phase\": \"%s\", \"access\": \"%s\", \"round\": %u, \"n\": %u, \"median_us\": %.3f, "
		"\"p90_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"min_us\": %.3f, \"max_us\": %.3f%s%s}\n",
		phase, access, round, n, pct(s, n, 0.5) / 1e3, pct(s, n, 0.9) / 1e3, pct(s, n, 0.99) / 1e3,
		sum / n / 1e3, s[0] / 1e3, s[n - 1] / 1e3, extra && *extra ? ", " : "", extra ? extra : "");
	fflush(dat);
	say("round %u %-14s %-5s median %8.2f us  p90 %8.2f  p99 %8.2f  %s", round, phase, access,
	    pct(s, n, 0.5) / 1e3, pct(s, n, 0.9) / 1e3, pct(s, n, 0.99) / 1e3, extra ? extra : "");
	snprintf(path, sizeof(path), "%s/faultlat-%s-%s.ns", outdir, phase, access);
	f = fopen(path, round == 0 ? "w" : "a");
	if (!f)
		die(path, errno);
	for (unsigned k = 0; k < n; k++)
		fprintf(f, "%" PRIu32 "\n", ns[k]);
	fclose(f);
	free(s);
}

/* --- the floor: a bare userfaultfd and a handler thread doing UFFDIO_COPY --- */

struct floor {
	clockid_t cpu_clock;   /* the handler thread's CPU time */
	int uffd;
	uint8_t *region, *src;
	size_t len;
	atomic_bool stop;
	atomic_uint_fast64_t served;
};

static int uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0) {
		/* vm.unprivileged_userfaultfd=0 and not root: /dev/userfaultfd (Linux 6.1+). */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev < 0)
			return -errno;
		fd = ioctl(dev, _IO(0xAA, 0x00), O_CLOEXEC); /* USERFAULTFD_IOC_NEW */
		close(dev);
		if (fd < 0)
			return -errno;
	}
	struct uffdio_api api = { .api = UFFD_API };

	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Blocking read (no poll): the fewest system calls a handler can make per fault. It stops when told
 * to and then woken by one more fault (on the region's last page, which no set uses). */
static void *floor_handler(void *opaque)
{
	struct floor *f = opaque;
	struct uffd_msg msg;

	pin_tid(0, handler_cpu);
	for (;;) {
		ssize_t n = read(f->uffd, &msg, sizeof(msg));

		if (n != sizeof(msg)) {
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			die("floor: read userfaultfd", n < 0 ? errno : EIO);
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy c = { .dst = msg.arg.pagefault.address & ~(PAGE - 1), .src = (uintptr_t)f->src,
					 .len = PAGE };

		while (ioctl(f->uffd, UFFDIO_COPY, &c) < 0) {
			if (errno == EAGAIN) {
				c.copy = 0;
				continue;
			}
			if (errno != EEXIST)
				die("floor: UFFDIO_COPY", errno);
			break;
		}
		atomic_fetch_add(&f->served, 1);
		if (atomic_load(&f->stop))
			return NULL;
	}
}

/* Touches page k * stride of base for k in [0, n), in a random order (or ascending with seq), one
 * timing each; wbytes_by_page[k]: the byte a write stores (the page's own, so it stays the same). */
static void time_set_ex(uint8_t *base, unsigned n, unsigned stride, bool seq, bool write,
			const uint8_t *wbytes_by_page, uint32_t *ns)
{
	unsigned *order = malloc(n * sizeof(*order));
	uint8_t **addr = malloc(n * sizeof(*addr));
	uint8_t *wb = malloc(n);

	if (!order || !addr || !wb)
		die("malloc", ENOMEM);
	shuffle(order, n);
	for (unsigned k = 0; k < n; k++) {
		unsigned i = seq ? k : order[k];

		addr[k] = base + (size_t)i * stride * PAGE;
		wb[k] = wbytes_by_page ? wbytes_by_page[i] : 0;
	}
	struct touch_job j = { .addr = addr, .n = n, .write = write, .wbyte = wb, .ns = ns };

	run_toucher(&j);
	free(order);
	free(addr);
	free(wb);
}

static void time_set(uint8_t *base, unsigned n, bool write, const uint8_t *wbytes_by_page, uint32_t *ns)
{
	time_set_ex(base, n, 1, false, write, wbytes_by_page, ns);
}

/* Pages [0, n) of base must equal expect(i) (NULL: all zero); returns the mismatches. */
static unsigned check_pages(const uint8_t *base, unsigned n, const uint8_t *(*expect)(unsigned))
{
	static const uint8_t zeros[PAGE];
	unsigned bad = 0;

	for (unsigned i = 0; i < n; i++)
		bad += memcmp(base + (size_t)i * PAGE, expect ? expect(i) : zeros, PAGE) != 0;
	return bad;
}

static const uint8_t *floor_page(unsigned i)
{
	(void)i;
	return text_page(0);
}

static void phase_floor(unsigned round, uint32_t *ns)
{
	struct floor f = { .len = (2ul * npages + 1) * PAGE };
	pthread_t t;
	char extra[256];
	int r;

	f.uffd = uffd_open();
	if (f.uffd < 0)
		die("userfaultfd (root, or sysctl vm.unprivileged_userfaultfd=1)", f.uffd);
	f.region = mmap(NULL, f.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	f.src = aligned_alloc(PAGE, PAGE);
	if (f.region == MAP_FAILED || !f.src)
		die("floor: mmap", errno);
	memcpy(f.src, text_page(0), PAGE);
	struct uffdio_register reg = { .range = { .start = (uintptr_t)f.region, .len = f.len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };

	if (ioctl(f.uffd, UFFDIO_REGISTER, &reg) < 0)
		die("floor: UFFDIO_REGISTER", errno);
	if ((r = pthread_create(&t, NULL, floor_handler, &f)))
		die("pthread_create", r);
	pthread_setname_np(t, "floor-uffd");
	if ((r = pthread_getcpuclockid(t, &f.cpu_clock)))
		die("pthread_getcpuclockid", r);

	for (int w = 0; w <= 1; w++) {
		uint8_t *base = f.region + (size_t)w * npages * PAGE;
		uint8_t *wbytes = malloc(npages);
		uint64_t s0 = atomic_load(&f.served), c0 = clock_ns(f.cpu_clock), c1;

		memset(wbytes, text_page(0)[0], npages);
		time_set(base, npages, w, wbytes, ns);
		c1 = clock_ns(f.cpu_clock);
		free(wbytes);
		snprintf(extra, sizeof(extra), "\"handler_faults\": %" PRIu64 ", \"handler_cpu_us\": %.1f, \"mismatches\": %u",
			 (uint64_t)(atomic_load(&f.served) - s0), (c1 - c0) / 1e3, check_pages(base, npages, floor_page));
		record("floor", w ? "write" : "read", round, ns, npages, extra);
	}
	atomic_store(&f.stop, true);
	(void)*(volatile uint8_t *)(f.region + f.len - PAGE); /* wakes the handler to stop */
	pthread_join(t, NULL);
	close(f.uffd);
	munmap(f.region, f.len);
	free(f.src);
}

/* --- the kernel's own first touch of anonymous memory (no userfaultfd) --- */

static void phase_anon(unsigned round, uint32_t *ns)
{
	size_t len = 2ul * npages * PAGE;
	uint8_t *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *zeros = calloc(1, npages);

	if (region == MAP_FAILED || !zeros)
		die("anon: mmap", errno);
	/* One fault per 4 KiB page, as for guest RAM under userfaultfd (the test host runs THP always). */
	madvise(region, len, MADV_NOHUGEPAGE);
	for (int w = 0; w <= 1; w++) {
		uint8_t *base = region + (size_t)w * npages * PAGE;

		time_set(base, npages, w, zeros, ns);
		char extra[64];

		snprintf(extra, sizeof(extra), "\"mismatches\": %u", check_pages(base, npages, NULL));
		record("anon", w ? "write" : "read", round, ns, npages, extra);
	}
	munmap(region, len);
	free(zeros);
}

/* --- the memory manager --- */

/* Sets in the manager's RAM, each 2 * npages pages long, each starting on a 2 MiB boundary.
 * Compressed and swapped pages are timed three ways:
 *  - isolated: every other page of the set is taken out, the ones between stay: the manager's
 *    readahead (up to 15 pages that are out after the touched one) stops at once, so each touch is
 *    one fault-in of one page: the figure the target compares with the floor;
 *  - random: npages consecutive pages out, touched in a random order (readahead brings some in
 *    before they are touched; a touch may wait while the handler reads ahead for another);
 *  - seq: npages consecutive pages out, touched in ascending order (a guest reading through
 *    memory: one fault per 16 pages when readahead works). */
enum { S_UNTOUCHED_R, S_UNTOUCHED_W, S_ZERO_R, S_ZERO_W, S_REL_R, S_REL_W,
       S_COMP_ISO_R, S_COMP_ISO_W, S_COMP_RAND, S_COMP_SEQ,
       S_SWAP_ISO_R, S_SWAP_ISO_W, S_SWAP_RAND, S_SWAP_SEQ, S_NR };

static size_t set_stride(void)
{
	size_t b = 2ul * npages * PAGE;

	return (b + (2ul << 20) - 1) & ~((2ul << 20) - 1);
}

static const char *fs_name(const char *dir)
{
	struct statfs s;

	if (statfs(dir, &s) < 0)
		return "?";
	switch ((unsigned long)s.f_type) {
	case 0xEF53: return "ext4";
	case 0x01021994: return "tmpfs";
	case 0x65735546: return "fuse/virtiofs";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	default: return "other";
	}
}

static void stats(struct memmgr *m, struct mem_stats *st)
{
	int r = mem_get_stats(m, st);

	if (r < 0)
		die("mem_get_stats", r);
}

static bool __attribute__((unused)) drop_caches(void)
{
	int fd;
	bool ok;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		return false;
	ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

/* Expected contents: dense sets hold text page i at page i; isolated sets text page i at pages
 * 2i and 2i + 1 (the one taken out and the one that stays). */
static const uint8_t *text_iso(unsigned i)
{
	return text_page(i / 2);
}

#ifdef HAVE_PAGE_OUT
/* Takes n pages out: all of base's first n (every 1, one call) or every other one (every 2, one
 * call per page). */
static void page_out(struct memmgr *m, struct gmem *gm, uint8_t *base, unsigned n, unsigned every,
		     enum mem_out how, const char *what)
{
	uint64_t gpa = (uint64_t)(base - gm->map); /* RAM below 3 GiB: gpa = offset in the mapping */
	uint64_t t0 = now_ns(), dt;
	int64_t got = 0;

	if (every == 1) {
		got = mem_page_out(m, gpa, (uint64_t)n * PAGE, how);
	} else {
		for (unsigned k = 0; k < n && got >= 0; k++) {
			int64_t r = mem_page_out(m, gpa + (uint64_t)k * every * PAGE, PAGE, how);

			got = r < 0 ? r : got + r;
		}
	}
	dt = now_ns() - t0;
	if (got < 0)
		die(what, (int)got);
	say("%s: mem_page_out took %" PRId64 " of %u pages in %.1f ms (%.1f us/page)", what, got, n, dt / 1e6,
	    dt / 1e3 / (n ? n : 1));
	if ((uint64_t)got != n) {
		fprintf(stderr, "faultlat: %s: mem_page_out took %" PRId64 " of %u pages\n", what, got, n);
		exit(1);
	}
	fprintf(dat, "{\"page_out\": \"%s\", \"pages\": %u, \"calls\": %u, \"ms\": %.3f}\n", what, n,
		every == 1 ? 1 : n, dt / 1e6);
}
#endif

/* Times one set and records it with the manager's counters around it. */
static void timed(struct memmgr *m, uint8_t *base, unsigned stride, bool seq, bool write, const char *phase,
		  unsigned round, unsigned check_n, const uint8_t *(*expect)(unsigned), const uint8_t *wbytes,
		  uint32_t *ns, const char *note)
{
	struct mem_stats a, b;
	char extra[768];

	stats(m, &a);
	time_set_ex(base, npages, stride, seq, write, wbytes, ns);
	stats(m, &b);
	snprintf(extra, sizeof(extra),
		 "\"handler_faults\": %" PRIu64 ", \"handler_cpu_us\": %.1f, \"refaults\": %" PRIu64
		 ", \"reclaim_refaults\": %" PRIu64 ", \"compress_in\": %" PRIu64 ", \"swap_in\": %" PRIu64
		 ", \"mismatches\": %u%s%s",
		 b.faults - a.faults, (b.share_cpu_ns - a.share_cpu_ns) / 1e3, b.refaults - a.refaults,
		 b.reclaim_refaults - a.reclaim_refaults, b.compress_in - a.compress_in, b.swap_in - a.swap_in,
		 check_pages(base, check_n, expect), note ? ", " : "", note ? note : "");
	record(phase, write ? "write" : "read", round, ns, npages, extra);
}

static void timed_pair(struct memmgr *m, uint8_t *ram, int set_r, const char *phase, unsigned round,
		       const uint8_t *(*expect)(unsigned), const uint8_t *wbytes, uint32_t *ns, const char *note)
{
	for (int w = 0; w <= 1; w++)
		timed(m, ram + (size_t)(set_r + w) * set_stride(), 1, false, w, phase, round, npages, expect, wbytes,
		      ns, note);
}

static void phase_memmgr(unsigned round, uint32_t *ns)
{
	size_t stride = set_stride();
	uint64_t size = (uint64_t)stride * S_NR + (16ull << 20);
	struct gmem gm;
	struct vm_config cfg;
	struct memmgr *m;
	char swap[4096];
	uint8_t *zbytes = calloc(1, npages), *tbytes = malloc(npages);
	int r;

	if (!zbytes || !tbytes)
		die("malloc", ENOMEM);
	for (unsigned i = 0; i < npages; i++)
		tbytes[i] = text_page(i)[0];
	if ((r = GMEM_INIT(&gm, size)) < 0)
		die("gmem_init", r);
	if (size > GMEM_PCI_HOLE_START)
		die("too many pages for one region below 3 GiB", EINVAL);
	config_init(&cfg);
	cfg.memory = size;
	cfg.mem_share = MEM_SHARE_ZERO;
	/* The cache must hold four sets of text pages (~40% of a page each after LZ4). */
	cfg.mem_compress_max_pct = 50;
	snprintf(swap, sizeof(swap), "%s/faultlat-%d-%u.swap", swapdir, (int)getpid(), round);
#ifdef HAVE_SWAP_SIZE
	/* --mem-swap FILE,size=SIZE: room for the swapped sets and some slack (the default, the guest's
	 * memory, is preallocated and may not fit on the test host's root file system). */
	cfg.mem_swap_size = (uint64_t)4 * npages * PAGE + (64ull << 20);
#endif
	free(cfg.mem_swap);
	cfg.mem_swap = strdup(swap);
	if ((r = mem_create(&m, &gm, &cfg)) < 0)
		die("mem_create", r);
	if ((r = mem_start(m)) < 0)
		die("mem_start", r);
	/* The zero-page scanner would compete with the toucher for the lock and the CPUs: 1 page/s. */
	mem_set_share_rate(m, 1, 1);
	if (handler_cpu >= 0 && !pin_threads("mem-fault", handler_cpu))
		die("no mem-fault thread to pin", ESRCH);
	pin_threads("mem-share", handler_cpu);
	pin_threads("mem-reclaim", handler_cpu);
	if (round == 0) {
		fprintf(dat, "{\"memmgr\": {\"capture\": \"%s\", \"uffd_via\": \"%s\", \"uffd_move\": %s, "
			"\"uffd_wp\": %s, \"thp\": \"%s\", \"swap\": \"%s\", \"swap_fs\": \"%s\"}}\n",
			mem_capture_name(m), mem_features(m)->uffd_via, mem_features(m)->uffd_move ? "true" : "false",
			mem_features(m)->uffd_wp ? "true" : "false", mem_features(m)->thp, swap, fs_name(swapdir));
		say("memory manager: capture by %s, swap %s on %s", mem_capture_name(m), swap, fs_name(swapdir));
	}
	uint8_t *ram = gm.map;
#define SET(s) (ram + (size_t)(s) * stride)

	/* (b1) never touched: the handler maps the zero page over the page's untouched 2 MiB window. */
	timed_pair(m, ram, S_UNTOUCHED_R, "untouched", round, NULL, zbytes, ns, NULL);

#ifdef HAVE_PAGE_OUT
	/* (b2) written with zeros, then taken out: the page is ZERO (see the report for its path). */
	for (int s = S_ZERO_R; s <= S_ZERO_W; s++)
		memset(SET(s), 0, (size_t)npages * PAGE);
	for (int s = S_ZERO_R; s <= S_ZERO_W; s++)
		page_out(m, &gm, SET(s), npages, 1, MEM_OUT_AUTO, "zero");
	timed_pair(m, ram, S_ZERO_R, "zero", round, NULL, zbytes, ns, NULL);

	/* (b3) written, then released (mem_release, the balloon's path: state BALLOONED, a hole): the
	 * handler maps the zero page for a read (UFFDIO_ZEROPAGE), copies a zeroed page for a write. */
	for (int s = S_REL_R; s <= S_REL_W; s++) {
		int64_t got;

		memcpy(SET(s), text_cache, (size_t)npages * PAGE);
		got = mem_release(m, &gm, (uint64_t)(SET(s) - gm.map), (uint64_t)npages * PAGE);
		if (got != (int64_t)npages * (int64_t)PAGE)
			die("mem_release", got < 0 ? (int)got : EIO);
	}
	timed_pair(m, ram, S_REL_R, "released", round, NULL, zbytes, ns, NULL);

	/* (c), (d): text pages; isolated sets hold each text page twice (pages 2i and 2i + 1). */
	for (int s = S_COMP_ISO_R; s <= S_SWAP_SEQ; s++) {
		bool iso = s == S_COMP_ISO_R || s == S_COMP_ISO_W || s == S_SWAP_ISO_R || s == S_SWAP_ISO_W;

		for (unsigned i = 0; i < (iso ? 2 * npages : npages); i++)
			memcpy(SET(s) + (size_t)i * PAGE, iso ? text_iso(i) : text_page(i), PAGE);
	}
	for (int k = 0; k < 2; k++) {
		bool sw = k == 1;
		int base = sw ? S_SWAP_ISO_R : S_COMP_ISO_R;
		enum mem_out how = sw ? MEM_OUT_SWAP : MEM_OUT_COMPRESS;
		const char *ph = sw ? "swapped" : "compressed";
		const char *note = NULL;
		char name[64];

		page_out(m, &gm, SET(base), npages, 2, how, sw ? "swap isolated" : "compress isolated");
		page_out(m, &gm, SET(base + 1), npages, 2, how, sw ? "swap isolated" : "compress isolated");
		page_out(m, &gm, SET(base + 2), npages, 1, how, sw ? "swap" : "compress");
		page_out(m, &gm, SET(base + 3), npages, 1, how, sw ? "swap" : "compress");
		if (!sw) {
			struct mem_stats a;

			stats(m, &a);
			say("compressed %" PRIu64 " MiB of guest pages into %" PRIu64 " KiB of cache", a.compressed >> 20,
			    a.zcache >> 10);
			fprintf(dat, "{\"zcache\": {\"compressed\": %" PRIu64 ", \"zcache\": %" PRIu64
				", \"compress_saved\": %" PRIu64 ", \"round\": %u}}\n", a.compressed, a.zcache,
				a.compress_saved, round);
		}
		for (int t = 0; t < 4; t++) {
			/* Swapped pages come from the disk: the page cache is dropped before each set (-d). */
			if (sw)
				note = drop_page_cache && drop_caches() ? "\"caches_dropped\": true" : "\"caches_dropped\": false";
			snprintf(name, sizeof(name), "%s%s", ph, t == 2 ? "-random" : t == 3 ? "-seq" : "");
			if (t < 2)
				timed(m, SET(base + t), 2, false, t == 1, name, round, 2 * npages, text_iso, tbytes, ns, note);
			else
				timed(m, SET(base + t), 1, t == 3, false, name, round, npages, text_page, tbytes, ns, note);
		}
	}
#else
	(void)tbytes;
	(void)text_iso;
	if (round == 0)
		say("this tree has no mem_page_out yet: zero (dropped), compressed and swapped are skipped");
#endif
#undef SET
	struct mem_stats end;

	stats(m, &end);
	fprintf(dat, "{\"memmgr_end\": {\"round\": %u, \"faults\": %" PRIu64 ", \"refaults\": %" PRIu64
		", \"reclaim_refaults\": %" PRIu64 ", \"swap_errors\": %" PRIu64 ", \"swap_corrupt\": %" PRIu64 "}}\n",
		round, end.faults, end.refaults, end.reclaim_refaults, end.swap_errors, end.swap_corrupt);
	mem_destroy(m);
	gmem_destroy(&gm);
	config_free(&cfg);
	free(zbytes);
	free(tbytes);
}

static double timer_overhead_us(void)
{
	enum { N = 100000 };
	static uint32_t s[N];

	for (unsigned k = 0; k < N; k++) {
		uint64_t t0 = now_ns();

		s[k] = (uint32_t)(now_ns() - t0);
	}
	qsort(s, N, sizeof(s[0]), cmp_u32);
	return s[N / 2] / 1e3;
}

int main(int argc, char **argv)
{
	int c;
	char path[4096];
	struct utsname u;
	uint32_t *ns;

	while ((c = getopt(argc, argv, "n:r:o:s:p:dq")) != -1) {
		switch (c) {
		case 'd': drop_page_cache = true; break;
		case 'p':
			pin_name = optarg;
			if (strcmp(optarg, "same") == 0)
				toucher_cpu = handler_cpu = 0;
			else if (strcmp(optarg, "split") == 0)
				toucher_cpu = 0, handler_cpu = 1;
			else if (strcmp(optarg, "none") != 0)
				die("-p takes none, same or split", EINVAL);
			break;
		case 'n': npages = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': rounds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'o': outdir = optarg; break;
		case 's': swapdir = optarg; break;
		case 'q': quiet = true; break;
		default:
			fprintf(stderr, "usage: faultlat [-n PAGES] [-r ROUNDS] [-o OUTDIR] [-s SWAPDIR] [-p none|same|split] [-d] [-q]\n");
			return 2;
		}
	}
	if (npages < 100 || npages > 100000 || !rounds)
		die("-n takes 100-100000 pages, -r at least 1", EINVAL);
	snprintf(path, sizeof(path), "%s/faultlat.dat", outdir);
	dat = fopen(path, "w");
	ns = malloc(npages * sizeof(*ns));
	text_cache = aligned_alloc(PAGE, (size_t)npages * PAGE);
	if (!dat || !ns || !text_cache)
		die(path, errno);
	for (unsigned i = 0; i < npages; i++)
		pattern_fill_page(text_cache + (size_t)i * PAGE, KIND_TEXT, SEED, i);
	uname(&u);
	fprintf(dat, "{\"header\": {\"pages\": %u, \"rounds\": %u, \"kernel\": \"%s\", \"cpus\": %ld, "
		"\"timer_overhead_us\": %.3f, \"pin\": \"%s\", \"page_out\": %s}}\n", npages, rounds, u.release,
		sysconf(_SC_NPROCESSORS_ONLN), timer_overhead_us(), pin_name,
#ifdef HAVE_PAGE_OUT
		"true"
#else
		"false"
#endif
	);
	for (unsigned r = 0; r < rounds; r++) {
		/* Interleaved, so drift in the test host hits every phase alike. */
		phase_floor(r, ns);
		phase_anon(r, ns);
		phase_memmgr(r, ns);
	}
	fclose(dat);
	free(ns);
	free(text_cache);
	return 0;
}
