/* What the host kernel offers the memory manager, detected once at start and logged. */
#include "mem_internal.h"
#include "uffd_compat.h"

#include <kvmm/log.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static bool read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = '\0';
	return ok;
}

static uint64_t read_u64(const char *path, uint64_t dflt)
{
	char buf[64];
	unsigned long long v;

	if (!read_line(path, buf, sizeof(buf)) || sscanf(buf, "%llu", &v) != 1)
		return dflt;
	return v;
}

/* A userfaultfd that also sees faults taken in the kernel (KVM's gup), which rules out
 * UFFD_USER_MODE_ONLY: the syscall needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1;
 * /dev/userfaultfd (Linux 6.1+) needs only access to the device node. UFFDIO_API reports every
 * feature the kernel has, whatever was asked, so features = 0 probes. */
int features_uffd_open(uint64_t features, uint64_t *got, const char **via)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int err;

	*via = "syscall";
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		err = errno;
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			err = errno;
			close(dev);
			*via = "/dev/userfaultfd";
		}
		if (fd < 0) {
			*via = err == EPERM || err == EACCES ?
				"not permitted (root, CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd)" :
				"not in this kernel";
			return -err;
		}
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	*got = api.features;
	return fd;
}

void features_detect(struct mem_features *f)
{
	uint64_t got = 0;
	char buf[128], *open_b, *close_b;
	int fd;

	memset(f, 0, sizeof(*f));
	f->root = geteuid() == 0;
	fd = features_uffd_open(0, &got, &f->uffd_via);
	if (fd >= 0) {
		f->uffd = true;
		f->uffd_move = got & UFFD_FEATURE_MOVE;
		f->uffd_wp = got & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
		f->uffd_wp_unpopulated = got & UFFD_FEATURE_WP_UNPOPULATED;
		close(fd);
	}
	f->ksm = access("/sys/kernel/mm/ksm/run", F_OK) == 0;
	f->ksm_writable = access("/sys/kernel/mm/ksm/run", W_OK) == 0;
	f->ksm_advisor = access("/sys/kernel/mm/ksm/advisor_mode", F_OK) == 0;
	/* "always [madvise] never": the bracketed word is the mode. */
	if (read_line("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)) &&
	    (open_b = strchr(buf, '[')) && (close_b = strchr(open_b, ']'))) {
		*close_b = '\0';
		snprintf(f->thp, sizeof(f->thp), "%s", open_b + 1);
	}
	f->hugetlb_free = read_u64("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", 0);
	f->max_map_count = read_u64("/proc/sys/vm/max_map_count", 65530);
}

void features_log(const struct mem_features *f)
{
	log_info("memory: userfaultfd %s%s%s%s%s; ksm %s%s; thp %s; hugetlb %llu free 2M pages; "
		 "vm.max_map_count %llu",
		 f->uffd ? "yes via " : "no: ", f->uffd_via, f->uffd ? (f->uffd_move ? ", move" : ", no move") : "",
		 f->uffd ? (f->uffd_wp ? ", wp" : ", no wp") : "",
		 f->uffd && f->uffd_wp_unpopulated ? ", wp-unpopulated" : "",
		 f->ksm ? (f->ksm_writable ? "yes" : "yes (read-only: not root)") : "no",
		 f->ksm && f->ksm_advisor ? ", advisor" : "", f->thp[0] ? f->thp : "unknown",
		 (unsigned long long)f->hugetlb_free, (unsigned long long)f->max_map_count);
}

/* Each shared page can split the guest RAM VMA in three (anon | pool page | anon): up to two more
 * VMAs per shared page, fewer where shared pages are neighbours. Keep a reserve for everything
 * else the process maps. */
#define VMA_RESERVE 4096u

uint64_t features_share_cap(uint64_t max_map_count, uint64_t vmas_now, uint64_t pages)
{
	uint64_t room;

	if (max_map_count <= vmas_now + VMA_RESERVE)
		return 0;
	room = (max_map_count - vmas_now - VMA_RESERVE) / 2;
	return room < pages ? room : pages;
}

static uint64_t count_vmas(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	uint64_t n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

int features_raise_map_count(struct mem_features *f, uint64_t pages)
{
	uint64_t vmas = count_vmas(), need = vmas + VMA_RESERVE + 2 * pages;
	FILE *w;

	if (f->max_map_count >= need)
		return 0;
	if (!f->root)
		return -EPERM;
	w = fopen("/proc/sys/vm/max_map_count", "we");
	if (!w)
		return -errno;
	fprintf(w, "%llu\n", (unsigned long long)need);
	if (fclose(w) != 0)
		return -errno;
	log_info("memory: raised vm.max_map_count from %llu to %llu for page sharing",
		 (unsigned long long)f->max_map_count, (unsigned long long)need);
	f->max_map_count = need;
	return 0;
}

uint64_t features_vmas_now(void)
{
	return count_vmas();
}
