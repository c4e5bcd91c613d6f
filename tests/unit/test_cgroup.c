/* cgroup v2 memory limits (kvmm/cgroup.h): value and events parsing, finding the process's cgroup
 * from /proc texts, reading a fake cgroup tree in a temp dir, the mapping rule, and the watcher's
 * change detection with a fake apply. Bad contents give an error and no change, never a crash. */
#include <kvmm/cgroup.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1ull << 20)
#define GIB (1ull << 30)

Test(cgroup, parse_value, .timeout = 10)
{
	uint64_t v = 7;

	cr_assert_eq(cgroup_parse_value("max\n", &v), 0);
	cr_assert_eq(v, CGROUP_NO_LIMIT);
	cr_assert_eq(cgroup_parse_value("536870912\n", &v), 0);
	cr_assert_eq(v, 512 * MIB);
	cr_assert_eq(cgroup_parse_value(" 0 ", &v), 0);
	cr_assert_eq(v, 0);
	v = 7;
	cr_assert_eq(cgroup_parse_value("garbage", &v), -EINVAL);
	cr_assert_eq(cgroup_parse_value("", &v), -EINVAL);
	cr_assert_eq(cgroup_parse_value("12abc", &v), -EINVAL);
	cr_assert_eq(cgroup_parse_value("-1", &v), -EINVAL);
	cr_assert_eq(cgroup_parse_value("maxx", &v), -EINVAL);
	cr_assert_eq(cgroup_parse_value("99999999999999999999999", &v), -EINVAL);
	cr_assert_eq(cgroup_parse_value(NULL, &v), -EINVAL);
	cr_assert_eq(v, 7);
}

Test(cgroup, parse_events, .timeout = 10)
{
	struct cgroup_events ev;

	cr_assert_eq(cgroup_parse_events("low 1\nhigh 22\nmax 3\noom 0\noom_kill 4\noom_group_kill 9\n", &ev), 0);
	cr_assert_eq(ev.low, 1);
	cr_assert_eq(ev.high, 22);
	cr_assert_eq(ev.max, 3);
	cr_assert_eq(ev.oom_kill, 4);
	cr_assert_eq(cgroup_parse_events("", &ev), 0);
	cr_assert_eq(ev.high, 0);
	cr_assert_eq(cgroup_parse_events("high lots\n", &ev), -EINVAL);
	cr_assert_eq(cgroup_parse_events("high max\n", &ev), -EINVAL);
}

static const char mountinfo[] =
	"22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
	"30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

Test(cgroup, self_dir, .timeout = 10)
{
	char dir[256], top[256];

	cr_assert_eq(cgroup_self_dir("0::/machine.slice/vm.scope/libvirt/emulator\n", mountinfo,
				     dir, sizeof(dir), top, sizeof(top)), 0);
	cr_assert_str_eq(dir, "/sys/fs/cgroup/machine.slice/vm.scope/libvirt/emulator");
	cr_assert_str_eq(top, "/sys/fs/cgroup");
	/* The root cgroup. */
	cr_assert_eq(cgroup_self_dir("0::/\n", mountinfo, dir, sizeof(dir), top, sizeof(top)), 0);
	cr_assert_str_eq(dir, "/sys/fs/cgroup");
	/* Hybrid: v1 lines first. */
	cr_assert_eq(cgroup_self_dir("12:memory:/x\n0::/a\n", mountinfo, dir, sizeof(dir), top, sizeof(top)), 0);
	cr_assert_str_eq(dir, "/sys/fs/cgroup/a");
}

Test(cgroup, self_dir_subtree_and_escapes, .timeout = 10)
{
	char dir[256], top[256];
	const char *mi = "40 22 0:26 /machine.slice /mnt/cg\\040x rw - cgroup2 cgroup2 rw\n";

	cr_assert_eq(cgroup_self_dir("0::/machine.slice/vm\n", mi, dir, sizeof(dir), top, sizeof(top)), 0);
	cr_assert_str_eq(top, "/mnt/cg x");
	cr_assert_str_eq(dir, "/mnt/cg x/vm");
	/* Outside the mounted sub-tree. */
	cr_assert_eq(cgroup_self_dir("0::/user.slice\n", mi, dir, sizeof(dir), top, sizeof(top)), -ENOENT);
}

Test(cgroup, self_dir_bad, .timeout = 10)
{
	char dir[256], top[256], small[8];

	/* cgroup v1 only: no 0:: line. */
	cr_assert_eq(cgroup_self_dir("4:memory:/a\n", mountinfo, dir, sizeof(dir), top, sizeof(top)), -ENOENT);
	/* No cgroup2 mount. */
	cr_assert_eq(cgroup_self_dir("0::/a\n", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", dir, sizeof(dir),
				     top, sizeof(top)), -ENOENT);
	cr_assert_eq(cgroup_self_dir("0::relative\n", mountinfo, dir, sizeof(dir), top, sizeof(top)), -EINVAL);
	cr_assert_eq(cgroup_self_dir("0::/a/../../etc\n", mountinfo, dir, sizeof(dir), top, sizeof(top)), -EINVAL);
	cr_assert_eq(cgroup_self_dir("garbage", "garbage - cgroup2", dir, sizeof(dir), top, sizeof(top)), -ENOENT);
	cr_assert_eq(cgroup_self_dir("0::/a\n", "x - cgroup2 y\n", dir, sizeof(dir), top, sizeof(top)), -EINVAL);
	cr_assert_eq(cgroup_self_dir("0::/a\n", mountinfo, small, sizeof(small), top, sizeof(top)), -ENAMETOOLONG);
	cr_assert_eq(cgroup_self_dir(NULL, mountinfo, dir, sizeof(dir), top, sizeof(top)), -EINVAL);
}

/* A fake cgroup2 tree: top/dom/emu, with memory files written by the test. */
static char top[] = "/tmp/kvmm-cgroup-XXXXXX";
static char dom[128], emu[128];

static void put(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

static void tree_setup(void)
{
	cr_assert_not_null(mkdtemp(top));
	snprintf(dom, sizeof(dom), "%s/dom", top);
	snprintf(emu, sizeof(emu), "%s/dom/emu", top);
	cr_assert_eq(mkdir(dom, 0700), 0);
	cr_assert_eq(mkdir(emu, 0700), 0);
	put(dom, "memory.max", "max\n");
	put(dom, "memory.high", "max\n");
	put(dom, "memory.low", "0\n");
	put(dom, "memory.current", "100000000\n");
	put(dom, "memory.stat", "anon 90000000\nfile 4194304\nactive_file 1048576\ninactive_file 3145728\n");
	put(dom, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
	put(emu, "memory.max", "max\n");
	put(emu, "memory.high", "max\n");
	put(emu, "memory.low", "0\n");
}

static void tree_teardown(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(cgroup_tree, .init = tree_setup, .fini = tree_teardown, .timeout = 10);

Test(cgroup_tree, read_combines_levels)
{
	struct cgroup_mem cg;

	cr_assert_eq(cgroup_read_mem(emu, top, &cg), 0);
	cr_assert(cg.controller);
	cr_assert_eq(cg.max, CGROUP_NO_LIMIT);
	cr_assert_eq(cg.bind[0], '\0');

	put(dom, "memory.max", "536870912\n");
	put(dom, "memory.low", "268435456\n");
	put(emu, "memory.high", "805306368\n");
	cr_assert_eq(cgroup_read_mem(emu, top, &cg), 0);
	cr_assert_eq(cg.max, 512 * MIB);
	cr_assert_eq(cg.high, 768 * MIB);
	cr_assert_eq(cg.low, 256 * MIB);
	cr_assert_str_eq(cg.bind, dom);
	cr_assert_eq(cg.current, 100000000);
	cr_assert_eq(cg.file, 4 * MIB);
}

Test(cgroup_tree, read_bad_contents_change_nothing)
{
	struct cgroup_mem cg = { .max = 42 };

	put(dom, "memory.max", "garbage\n");
	cr_assert_eq(cgroup_read_mem(emu, top, &cg), -EINVAL);
	cr_assert_eq(cg.max, 42);
	put(dom, "memory.max", "");
	cr_assert_eq(cgroup_read_mem(emu, top, &cg), -EINVAL);
	cr_assert_eq(cgroup_read_mem("/elsewhere", top, &cg), -EINVAL);
	cr_assert_eq(cgroup_read_mem("/tmp/kvmm-cgroup-none/x", "/tmp/kvmm-cgroup-none", &cg), -ENOENT);
}

Test(cgroup_tree, read_without_controller)
{
	struct cgroup_mem cg;
	char path[256];

	snprintf(path, sizeof(path), "%s/memory.max", emu); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.high", emu); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.low", emu); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.max", dom); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.high", dom); unlink(path);
	cr_assert_eq(cgroup_read_mem(emu, top, &cg), 0);
	cr_assert_not(cg.controller);
	cr_assert_eq(cg.max, CGROUP_NO_LIMIT);
}

Test(cgroup, map_rule, .timeout = 10)
{
	struct cgroup_mem cg = { .max = 512 * MIB, .high = CGROUP_NO_LIMIT };
	struct cgroup_policy p;

	/* limit = value - overhead - margin, rounded down to a MiB. */
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert(p.limited);
	cr_assert_eq(p.limit, 488 * MIB);
	cr_assert_eq(p.cg_limit, 512 * MIB);
	cr_assert_eq(p.reservation, 0);
	/* high binds when lower. */
	cg.high = 400 * MIB;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert_eq(p.limit, 376 * MIB);
	/* "max", and a value above memory + overhead + margin: no limit. */
	cg = (struct cgroup_mem){ .max = CGROUP_NO_LIMIT, .high = CGROUP_NO_LIMIT };
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert_not(p.limited);
	cr_assert_eq(p.limit, GIB);
	cg.max = 2 * GIB;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert_not(p.limited);
	cr_assert_eq(p.limit, GIB);
	/* Just above memory: the overhead still has to fit. */
	cg.max = GIB + 10 * MIB;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert(p.limited);
	cr_assert_eq(p.limit, GIB - 14 * MIB);
	/* Tiny: the least limit, never zero or an underflow. */
	cg.max = 10 * MIB;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert_eq(p.limit, 4096);
	/* --mem-limit stays a ceiling. */
	cg.max = 900 * MIB;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 256 * MIB, 0, &p);
	cr_assert_eq(p.limit, 256 * MIB);
}

Test(cgroup, map_reservation, .timeout = 10)
{
	struct cgroup_mem cg = { .max = 512 * MIB, .high = CGROUP_NO_LIMIT, .low = 256 * MIB };
	struct cgroup_policy p;

	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 64 * MIB, &p);
	cr_assert_eq(p.reservation, 240 * MIB);
	/* No memory.low: --mem-reservation. */
	cg.low = 0;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 64 * MIB, &p);
	cr_assert_eq(p.reservation, 64 * MIB);
	/* Never above the limit ("max" protects everything). */
	cg.low = CGROUP_NO_LIMIT;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert_eq(p.reservation, p.limit);
	cg.low = 4 * MIB;
	cgroup_map(&cg, GIB, 16 * MIB, 8 * MIB, 0, 0, &p);
	cr_assert_eq(p.reservation, 0);
}

Test(cgroup, overhead, .timeout = 10)
{
	struct cgroup_mem cg = { 0 };

	/* Nothing measured: the estimate, 8 MiB + memory / 256. */
	cr_assert_eq(cgroup_overhead(&cg, GIB, 0), 12 * MIB);
	/* Measured: current - page cache - consumed, when larger. */
	cg.current = 600 * MIB;
	cg.file = 50 * MIB;
	cr_assert_eq(cgroup_overhead(&cg, GIB, 500 * MIB), 50 * MIB);
	cr_assert_eq(cgroup_overhead(&cg, GIB, 700 * MIB), 12 * MIB);
}

/* The watcher with a fake apply. */
static int applies, refuse;
static uint64_t got_limit, got_res;

static int fake_apply(void *opaque, uint64_t limit, uint64_t reservation, char *why, size_t len)
{
	(void)opaque;
	if (refuse) {
		snprintf(why, len, "refused for the test");
		return -EPERM;
	}
	applies++;
	got_limit = limit;
	got_res = reservation;
	return 0;
}

static int64_t fake_consumed(void *opaque)
{
	(void)opaque;
	return 100000000 - 4 * (int64_t)MIB - 2 * (int64_t)MIB; /* measured overhead 2 MiB: the estimate wins */
}

static struct cgroup_watch *start_watch(uint64_t memory)
{
	struct cgroup_watch_cfg wc = { .dir = emu, .top = top, .memory = memory };
	struct cgroup_watch_ops ops = { .apply = fake_apply, .consumed = fake_consumed };
	struct cgroup_watch *w;

	applies = refuse = 0;
	cr_assert_eq(cgroup_watch_start(&w, NULL, &wc, &ops), 0);
	return w;
}

Test(cgroup_tree, watch_follows_changes)
{
	struct cgroup_watch *w = start_watch(GIB);
	struct cgroup_policy p;
	uint64_t margin;

	/* At start: applied once, no limit. */
	cr_assert_eq(applies, 1);
	cr_assert_eq(got_limit, GIB);
	cr_assert_eq(cgroup_watch_poll(w), 0);
	cr_assert_eq(applies, 1);

	/* virsh memtune --hard-limit 512M: memory.max on the domain's cgroup. */
	put(dom, "memory.max", "536870912\n");
	cr_assert_eq(cgroup_watch_poll(w), 1);
	cr_assert_eq(applies, 2);
	cgroup_watch_current(w, &p, &margin);
	cr_assert_eq(margin, 16 * MIB);
	cr_assert_eq(got_limit, 512 * MIB - 12 * MIB - 16 * MIB);
	cr_assert_eq(p.limit, got_limit);
	cr_assert_eq(cgroup_watch_poll(w), 0);

	/* Back to "max": no limit. */
	put(dom, "memory.max", "max\n");
	cr_assert_eq(cgroup_watch_poll(w), 1);
	cr_assert_eq(got_limit, GIB);
	cgroup_watch_destroy(w);
}

Test(cgroup_tree, watch_bad_contents_keep_the_limit)
{
	struct cgroup_watch *w = start_watch(GIB);
	char path[256];

	put(dom, "memory.max", "536870912\n");
	cr_assert_eq(cgroup_watch_poll(w), 1);
	cr_assert_eq(applies, 2);
	put(dom, "memory.max", "garbage\n");
	cr_assert_eq(cgroup_watch_poll(w), -EINVAL);
	cr_assert_eq(cgroup_watch_poll(w), -EINVAL);
	cr_assert_eq(applies, 2);
	cr_assert_eq(got_limit, 484 * MIB);
	/* Every memory file gone: no change either. */
	snprintf(path, sizeof(path), "%s/memory.max", emu); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.high", emu); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.max", dom); unlink(path);
	snprintf(path, sizeof(path), "%s/memory.high", dom); unlink(path);
	cr_assert_eq(cgroup_watch_poll(w), -ENOENT);
	cr_assert_eq(applies, 2);
	/* Readable again. */
	put(dom, "memory.max", "805306368\n");
	cr_assert_eq(cgroup_watch_poll(w), 1);
	cr_assert_eq(got_limit, 768 * MIB - 12 * MIB - 24 * MIB);
	cgroup_watch_destroy(w);
}

Test(cgroup_tree, watch_refusal_is_said_once)
{
	struct cgroup_watch *w = start_watch(GIB);

	refuse = 1;
	put(dom, "memory.max", "536870912\n");
	cr_assert_eq(cgroup_watch_poll(w), -EPERM);
	cr_assert_eq(cgroup_watch_poll(w), 0);
	refuse = 0;
	put(dom, "memory.max", "536870911\n");
	cr_assert_eq(cgroup_watch_poll(w), 1);
	cr_assert_eq(applies, 2);
	cgroup_watch_destroy(w);
}

Test(cgroup_tree, watch_events_widen_the_margin)
{
	struct cgroup_watch *w = start_watch(GIB);
	uint64_t before;

	put(dom, "memory.high", "536870912\n");
	cr_assert_eq(cgroup_watch_poll(w), 1);
	before = got_limit;
	/* No new event: nothing. */
	cgroup_watch_events(w);
	cr_assert_eq(got_limit, before);
	put(dom, "memory.events", "low 0\nhigh 5\nmax 0\noom 0\noom_kill 0\n");
	cgroup_watch_events(w);
	cr_assert_eq(got_limit, before - 8 * MIB);
	put(dom, "memory.events", "garbage");
	cgroup_watch_events(w);
	cr_assert_eq(got_limit, before - 8 * MIB);
	cgroup_watch_destroy(w);
}
