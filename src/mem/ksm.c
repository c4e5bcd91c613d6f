/* `--mem-share ksm`: the kernel's KSM does the sharing (MADV_MERGEABLE on guest RAM); kvmm sets
 * its scan rate from --mem-share-rate where it may (root) and reports its counters. KSM's knobs
 * are global: they apply to every process that opted in, and KSM merges across all of them, so it
 * cannot keep sharing inside one VM (ESX-FACTS.md). */
#include "mem_internal.h"

#include <kvmm/log.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define KSM_SYSFS "/sys/kernel/mm/ksm/"
#define KSM_SLEEP_MS 20 /* the kernel's default; the rate is set through pages_to_scan */

static int ksm_write(const char *knob, unsigned long long v)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), KSM_SYSFS "%s", knob);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "%llu\n", v);
	return fclose(f) == 0 ? 0 : -errno;
}

static uint64_t ksm_read_u64(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

int ksm_setup(struct memmgr *m)
{
	unsigned long long per_wake = atomic_load(&m->rate) * KSM_SLEEP_MS / 1000;

	if (madvise(m->gm->map, m->gm->map_size, MADV_MERGEABLE) < 0) {
		int err = -errno;

		log_error("--mem-share ksm: madvise(MADV_MERGEABLE): %s", strerror(-err));
		return err;
	}
	if (!m->feat.ksm_writable) {
		log_info("memory: ksm: not root, KSM's own settings stay as they are");
		return 0;
	}
	if (per_wake == 0)
		per_wake = 1;
	if (ksm_write("pages_to_scan", per_wake) < 0 || ksm_write("sleep_millisecs", KSM_SLEEP_MS) < 0 ||
	    ksm_write("run", 1) < 0) {
		log_error("--mem-share ksm: cannot set " KSM_SYSFS ": %s", strerror(errno));
		return -EIO;
	}
	/* Zero pages merge into the kernel's zero page instead of one KSM page (Linux 4.8+). */
	ksm_write("use_zero_pages", 1);
	log_info("memory: ksm: pages_to_scan %llu every %d ms (%llu pages/s), use_zero_pages 1",
		 per_wake, KSM_SLEEP_MS, per_wake * 1000 / KSM_SLEEP_MS);
	return 0;
}

void ksm_read(struct mem_stats *st)
{
	FILE *f = fopen("/proc/self/ksm_stat", "re");
	char key[64];
	unsigned long long v;

	if (f) {
		while (fscanf(f, "%63s %llu", key, &v) == 2) {
			if (strcmp(key, "ksm_merging_pages") == 0)
				st->ksm_merging = v;
			else if (strcmp(key, "ksm_zero_pages") == 0)
				st->ksm_zero = v;
		}
		fclose(f);
	}
	st->ksm_pages_shared = ksm_read_u64(KSM_SYSFS "pages_shared");
	st->ksm_pages_sharing = ksm_read_u64(KSM_SYSFS "pages_sharing");
	st->ksm_full_scans = ksm_read_u64(KSM_SYSFS "full_scans");
}
