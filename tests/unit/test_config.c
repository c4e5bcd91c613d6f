#include <kvmm/config.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Each test runs in its own process (Criterion forks), with a fresh directory holding a kernel
 * and an initrd that config_validate() can read. */
static char tmpdir[PATH_MAX];
static char kernel[PATH_MAX + 16];
static char initrd[PATH_MAX + 16];
static char err[8192];
static struct vm_config cfg;

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/kvmm-test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", tmpdir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", tmpdir);
	write_file(kernel, "kernel");
	write_file(initrd, "initrd");
	config_init(&cfg);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 10);

/* stdout and stderr are redirected to files around each call, so messages can be checked. */
static char out[16384];
static int saved_fd[3] = { -1, -1, -1 };
static FILE *captured[3];

static void capture_begin(void)
{
	fflush(stdout);
	fflush(stderr);
	for (int fd = 1; fd <= 2; fd++) {
		captured[fd] = tmpfile();
		cr_assert_not_null(captured[fd]);
		saved_fd[fd] = dup(fd);
		dup2(fileno(captured[fd]), fd);
	}
}

static void capture_end(void)
{
	char *bufs[3] = { NULL, out, err };
	size_t sizes[3] = { 0, sizeof(out), sizeof(err) };

	fflush(stdout);
	fflush(stderr);
	for (int fd = 1; fd <= 2; fd++) {
		size_t n;

		dup2(saved_fd[fd], fd);
		close(saved_fd[fd]);
		rewind(captured[fd]);
		n = fread(bufs[fd], 1, sizes[fd] - 1, captured[fd]);
		bufs[fd][n] = '\0';
		fclose(captured[fd]);
	}
}

static int run_argv(const char *const *args)
{
	char *argv[64] = { "run" };
	int argc = 1, r;

	while (*args && argc < 63)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	capture_begin();
	r = config_parse_run(&cfg, argc, argv);
	capture_end();
	return r;
}

#define RUN(...) run_argv((const char *const[]){ __VA_ARGS__, NULL })
/* Every success prints nothing; every failure is -EINVAL and exactly one line naming its cause. */
#define OK(...)                                                                                     \
	do {                                                                                        \
		int r_ = RUN(__VA_ARGS__);                                                          \
		cr_assert_eq(r_, 0, "%s: returned %d: %s", #__VA_ARGS__, r_, err);                  \
		cr_assert_str_empty(err, "%s: printed %s", #__VA_ARGS__, err);                      \
	} while (0)
#define FAILS(needle, ...)                                                                          \
	do {                                                                                        \
		int r_ = RUN(__VA_ARGS__);                                                          \
		cr_assert_eq(r_, -EINVAL, "%s: returned %d", #__VA_ARGS__, r_);                     \
		expect_one_line(err, needle, #__VA_ARGS__);                                         \
	} while (0)

static void expect_one_line(const char *text, const char *needle, const char *what)
{
	size_t len = strlen(text);

	cr_assert(strncmp(text, "kvmm run: ", 10) == 0, "%s: message '%s' lacks the prefix", what, text);
	cr_assert(len > 0 && text[len - 1] == '\n' && strchr(text, '\n') == text + len - 1,
		  "%s: not exactly one line: '%s'", what, text);
	cr_assert_not_null(strstr(text, needle), "%s: '%s' does not contain '%s'", what, text, needle);
}

/* A fresh config between two parses in one test. */
static void reset(void)
{
	config_free(&cfg);
	config_init(&cfg);
}

static char *ini(const char *name, const char *text)
{
	static char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	write_file(path, text);
	return path;
}

static int load(const char *path)
{
	int r;

	capture_begin();
	r = config_load_ini(&cfg, path);
	capture_end();
	return r;
}

Test(config, defaults, .timeout = 10)
{
	cr_expect_str_eq(cfg.name, "kvmm");
	cr_expect_eq(cfg.memory, CONFIG_DEFAULT_MEMORY);
	cr_expect_eq(cfg.cpus, 1);
	cr_expect_null(cfg.kernel);
	cr_expect_eq(cfg.mem_shares, 10 * 512);
	OK("--kernel", kernel);
	cr_expect_str_eq(cfg.name, "kvmm");
	cr_expect_eq(cfg.memory, 512ull << 20);
	cr_expect_eq(cfg.cpus, 1);
	cr_expect_str_eq(cfg.kernel, kernel);
	cr_expect_null(cfg.initrd);
	cr_expect_null(cfg.append);
	cr_expect_eq(cfg.mem_reservation, 0);
	cr_expect_eq(cfg.mem_limit, 0);
	cr_expect_eq(cfg.mem_shares, CONFIG_SHARES_NORMAL * 512);
	cr_expect_eq(cfg.mem_share, MEM_SHARE_TPS);
	cr_expect_str_eq(cfg.mem_salt, "vm");
	cr_expect(cfg.mem_compress);
	cr_expect_eq(cfg.mem_compress_max_pct, 10);
	cr_expect_null(cfg.mem_swap);
	cr_expect_eq(cfg.mem_backend, MEM_BACKEND_ANON);
	cr_expect_not(cfg.balloon);
	cr_expect_null(cfg.qmp);
	cr_expect_eq(cfg.serial, SERIAL_STDIO);
	cr_expect_null(cfg.serial_path);
	cr_expect_null(cfg.hostd);
	cr_expect_not(cfg.help);
}

Test(config, memory_valid, .timeout = 10)
{
	OK("--kernel", kernel, "-m", "1G");
	cr_expect_eq(cfg.memory, 1ull << 30);
	OK("--kernel", kernel, "-m2G");
	cr_expect_eq(cfg.memory, 2ull << 30);
	OK("--kernel", kernel, "--memory", "768M");
	cr_expect_eq(cfg.memory, 768ull << 20);
	OK("--kernel", kernel, "--memory=16M");
	cr_expect_eq(cfg.memory, 16ull << 20);
	OK("--kernel", kernel, "--memory", "1048576K");
	cr_expect_eq(cfg.memory, 1ull << 30);
}

Test(config, memory_invalid, .timeout = 10)
{
	cr_assert_eq(RUN("--kernel", kernel, "--memory", "0"), -EINVAL);
	cr_expect_str_eq(err, "kvmm run: --memory: '0' is not a valid size: use e.g. 512M or 2G\n");
	FAILS("-m: '0' is not a valid size", "--kernel", kernel, "-m", "0");
	FAILS("-m: '8M' is too small: at least 16M", "--kernel", kernel, "-m", "8M");
	FAILS("'16777217' is not a multiple of 4K", "--kernel", kernel, "-m", "16777217");
	FAILS("'abc' is not a valid size", "--kernel", kernel, "-m", "abc");
	FAILS("'-1' is not a valid size", "--kernel", kernel, "-m", "-1");
	FAILS("'1.5G' is not a valid size", "--kernel", kernel, "-m", "1.5G");
	FAILS("'1G ' is not a valid size", "--kernel", kernel, "-m", "1G ");
	FAILS("'' is not a valid size", "--kernel", kernel, "-m", "");
	FAILS("'99999999999T' is too large", "--kernel", kernel, "-m", "99999999999T");
	FAILS("'18446744073709551616' is too large", "--kernel", kernel, "-m", "18446744073709551616");
}

Test(config, cpus, .timeout = 10)
{
	const char *bad[] = { "0", "256", "-1", "2x", "", "+2", " 2", "0x2", "1e2",
			      "18446744073709551617" };

	OK("--kernel", kernel, "--cpus", "1");
	cr_expect_eq(cfg.cpus, 1);
	OK("--kernel", kernel, "--cpus", "255");
	cr_expect_eq(cfg.cpus, CONFIG_MAX_CPUS);
	OK("--kernel", kernel, "--cpus=4");
	cr_expect_eq(cfg.cpus, 4);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		FAILS("--cpus: ", "--kernel", kernel, "--cpus", bad[i]);
	FAILS("use 1 to 255", "--kernel", kernel, "--cpus", "256");
}

Test(config, kernel_and_initrd, .timeout = 10)
{
	char missing[PATH_MAX + 16];

	snprintf(missing, sizeof(missing), "%s/nope", tmpdir);
	FAILS("--kernel: missing", "-m", "1G");
	FAILS("No such file or directory", "--kernel", missing);
	cr_expect_not_null(strstr(err, missing), "the file is named: %s", err);
	cr_expect_not_null(strstr(err, "--kernel"), "%s", err);
	FAILS("Is a directory", "--kernel", tmpdir);
	FAILS("--initrd: ", "--kernel", kernel, "--initrd", missing);
	cr_expect_not_null(strstr(err, strerror(ENOENT)), "%s", err);
	FAILS("--kernel: empty path", "--kernel", "");
	reset();
	OK("--kernel", kernel, "--initrd", initrd);
	cr_expect_str_eq(cfg.initrd, initrd);
	/* On the command line a relative path stays relative to the working directory. */
	cr_assert_eq(chdir(tmpdir), 0);
	OK("--kernel", "vmlinuz");
	cr_expect_str_eq(cfg.kernel, "vmlinuz");
}

Test(config, append, .timeout = 10)
{
	char *longest = malloc(4096), *too_long = malloc(4097);

	cr_assert(longest && too_long);
	memset(longest, 'a', 4095);
	longest[4095] = '\0';
	memset(too_long, 'a', 4096);
	too_long[4096] = '\0';
	OK("--kernel", kernel, "--append", "console=ttyS0 quiet");
	cr_expect_str_eq(cfg.append, "console=ttyS0 quiet");
	OK("--kernel", kernel, "--append", longest);
	cr_expect_eq(strlen(cfg.append), 4095);
	FAILS("--append: 4096 bytes is too long", "--kernel", kernel, "--append", too_long);
	free(longest);
	free(too_long);
}

Test(config, reservation_and_limit, .timeout = 10)
{
	OK("--kernel", kernel, "-m", "2G", "--mem-reservation", "512M", "--mem-limit", "1G");
	cr_expect_eq(cfg.mem_reservation, 512ull << 20);
	cr_expect_eq(cfg.mem_limit, 1ull << 30);
	reset();
	OK("--kernel", kernel, "-m", "2G", "--mem-reservation", "2G", "--mem-limit", "2G");
	reset();
	OK("--kernel", kernel, "-m", "2G", "--mem-reservation", "1G");
	cr_expect_eq(cfg.mem_limit, 0);
	reset();
	/* The checks run after every option is read, so order does not matter. */
	OK("--kernel", kernel, "--mem-limit", "3G", "-m", "4G");
	FAILS("--mem-reservation: 1G is more than --mem-limit 512M", "--kernel", kernel, "-m", "2G",
	      "--mem-reservation", "1G", "--mem-limit", "512M");
	reset();
	FAILS("--mem-reservation: 1G is more than --memory 512M", "--kernel", kernel,
	      "--mem-reservation", "1G");
	reset();
	FAILS("--mem-limit: 1G is more than --memory 512M", "--kernel", kernel, "--mem-limit", "1G");
	reset();
	FAILS("--mem-limit: 'lots' is not a valid size", "--kernel", kernel, "--mem-limit", "lots");
	FAILS("--mem-reservation: '-5M' is not a valid size", "--kernel", kernel,
	      "--mem-reservation", "-5M");
	FAILS("--mem-limit: '1000' is not a multiple of 4K", "--kernel", kernel, "--mem-limit", "1000");
}

Test(config, shares, .timeout = 10)
{
	const char *bad[] = { "0", "medium", "-5", "4294967296", "10x", "", "HIGH" };

	OK("--kernel", kernel, "-m", "1G", "--mem-shares", "low");
	cr_expect_eq(cfg.mem_shares, 5 * 1024);
	OK("--kernel", kernel, "-m", "1G", "--mem-shares", "normal");
	cr_expect_eq(cfg.mem_shares, 10 * 1024);
	OK("--kernel", kernel, "-m", "1G", "--mem-shares", "high");
	cr_expect_eq(cfg.mem_shares, 20 * 1024);
	/* A preset is per MiB of the final memory size, even when -m comes after it. */
	reset();
	OK("--kernel", kernel, "--mem-shares", "high", "-m", "4G");
	cr_expect_eq(cfg.mem_shares, 20 * 4096);
	reset();
	OK("--kernel", kernel, "-m", "4G");
	cr_expect_eq(cfg.mem_shares, CONFIG_SHARES_NORMAL * 4096, "the default is normal");
	reset();
	OK("--kernel", kernel, "--mem-shares", "high", "--mem-shares", "1234", "-m", "4G");
	cr_expect_eq(cfg.mem_shares, 1234, "a number after a preset wins");
	reset();
	OK("--kernel", kernel, "--mem-shares", "1234", "--mem-shares", "low", "-m", "2G");
	cr_expect_eq(cfg.mem_shares, 5 * 2048, "a preset after a number wins");
	OK("--kernel", kernel, "--mem-shares", "4294967295");
	cr_expect_eq(cfg.mem_shares, 4294967295ull);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		FAILS("--mem-shares: ", "--kernel", kernel, "--mem-shares", bad[i]);
}

/* The parser QMP's x-kvmm-set-memory shares uses too. */
Test(config, parse_shares, .timeout = 10)
{
	unsigned per_mib;
	uint64_t n;

	cr_expect_eq(config_parse_shares("high", &per_mib, &n), 0);
	cr_expect_eq(per_mib, CONFIG_SHARES_HIGH);
	cr_expect_eq(n, 0);
	cr_expect_eq(config_parse_shares("77", &per_mib, &n), 0);
	cr_expect_eq(per_mib, 0);
	cr_expect_eq(n, 77);
	cr_expect_eq(config_parse_shares("0", &per_mib, &n), -EINVAL);
	cr_expect_eq(config_parse_shares("low ", &per_mib, &n), -EINVAL);
}

Test(config, share_salt_backend, .timeout = 10)
{
	static const char *const shares[] = { "off", "zero", "tps", "ksm" };
	static const char *const backends[] = { "anon", "memfd", "hugetlb", "thp" };

	for (int i = 0; i < 4; i++) {
		OK("--kernel", kernel, "--mem-share", shares[i]);
		cr_expect_eq((int)cfg.mem_share, i, "%s", shares[i]);
		OK("--kernel", kernel, "--mem-backend", backends[i]);
		cr_expect_eq((int)cfg.mem_backend, i, "%s", backends[i]);
	}
	FAILS("--mem-share: 'on' is not valid: use off, zero, tps or ksm", "--kernel", kernel,
	      "--mem-share", "on");
	FAILS("--mem-backend: 'huge' is not valid", "--kernel", kernel, "--mem-backend", "huge");
	FAILS("--mem-backend: hugetlb needs --memory to be a multiple of 2M", "--kernel", kernel,
	      "-m", "20484K", "--mem-backend", "hugetlb");
	reset();

	OK("--kernel", kernel, "--mem-salt", "host");
	cr_expect_str_eq(cfg.mem_salt, "host");
	OK("--kernel", kernel, "--mem-salt", "tenant-a.web_1");
	cr_expect_str_eq(cfg.mem_salt, "tenant-a.web_1");
	OK("--kernel", kernel, "--mem-salt", "vm");
	cr_expect_str_eq(cfg.mem_salt, "vm");
	FAILS("--mem-salt: '' is not valid", "--kernel", kernel, "--mem-salt", "");
	FAILS("--mem-salt: 'a b' is not valid", "--kernel", kernel, "--mem-salt", "a b");
	FAILS("--mem-salt: ", "--kernel", kernel, "--mem-salt",
	      "0123456789012345678901234567890123456789012345678901234567890123456789");
}

Test(config, compression_and_swap, .timeout = 10)
{
	const char *bad[] = { "0", "101", "0%", "-1", "10%%", "%", "", "ten", "10 %", "5.5" };

	OK("--kernel", kernel, "--mem-compress", "off");
	cr_expect_not(cfg.mem_compress);
	OK("--kernel", kernel, "--mem-compress", "on");
	cr_expect(cfg.mem_compress);
	FAILS("--mem-compress: 'yes' is not valid: use on or off", "--kernel", kernel,
	      "--mem-compress", "yes");
	OK("--kernel", kernel, "--mem-compress-max", "25");
	cr_expect_eq(cfg.mem_compress_max_pct, 25);
	OK("--kernel", kernel, "--mem-compress-max", "100%");
	cr_expect_eq(cfg.mem_compress_max_pct, 100);
	OK("--kernel", kernel, "--mem-compress-max", "1%");
	cr_expect_eq(cfg.mem_compress_max_pct, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		FAILS("--mem-compress-max: ", "--kernel", kernel, "--mem-compress-max", bad[i]);

	OK("--kernel", kernel, "--mem-swap", "/var/tmp/vm.swap");
	cr_expect_str_eq(cfg.mem_swap, "/var/tmp/vm.swap");
	cr_expect_eq(cfg.mem_swap_size, 0);
	OK("--kernel", kernel, "--mem-swap", "/var/tmp/vm.swap,size=64M");
	cr_expect_str_eq(cfg.mem_swap, "/var/tmp/vm.swap");
	cr_expect_eq(cfg.mem_swap_size, 64ull << 20);
	OK("--kernel", kernel, "--mem-swap", "off");
	cr_expect_null(cfg.mem_swap);
	cr_expect_eq(cfg.mem_swap_size, 0);
	FAILS("--mem-swap: empty path", "--kernel", kernel, "--mem-swap", "");
	FAILS("--mem-swap: empty path", "--kernel", kernel, "--mem-swap", ",size=1M");
	FAILS("--mem-swap: size=1 is too small", "--kernel", kernel, "--mem-swap", "/var/tmp/s,size=1");
	FAILS("--mem-swap", "--kernel", kernel, "--mem-swap", "/var/tmp/s,size=lots");
}

Test(config, balloon, .timeout = 10)
{
	OK("--kernel", kernel, "--balloon");
	cr_expect(cfg.balloon);
	cr_expect_not(cfg.balloon_deflate_on_oom);
	cr_expect_not(cfg.balloon_free_page_reporting);
	cr_expect_eq(cfg.balloon_stats_interval, 0);
	OK("--kernel", kernel, "--balloon=deflate-on-oom,free-page-reporting,stats-interval=5");
	cr_expect(cfg.balloon);
	cr_expect(cfg.balloon_deflate_on_oom);
	cr_expect(cfg.balloon_free_page_reporting);
	cr_expect_eq(cfg.balloon_stats_interval, 5);
	/* Each --balloon replaces the previous one. */
	OK("--kernel", kernel, "--balloon=deflate-on-oom", "--balloon=stats-interval=2");
	cr_expect_not(cfg.balloon_deflate_on_oom);
	cr_expect_eq(cfg.balloon_stats_interval, 2);
	OK("--kernel", kernel, "--balloon=deflate-on-oom=on,free-page-reporting=off");
	cr_expect(cfg.balloon_deflate_on_oom);
	cr_expect_not(cfg.balloon_free_page_reporting);
	OK("--kernel", kernel, "--balloon=on");
	cr_expect(cfg.balloon);
	OK("--kernel", kernel, "--balloon=deflate-on-oom", "--balloon=off");
	cr_expect_not(cfg.balloon);
	cr_expect_not(cfg.balloon_deflate_on_oom);

	FAILS("--balloon: 'inflate' is not valid", "--kernel", kernel, "--balloon=inflate");
	FAILS("--balloon: 'stats-interval' is not valid", "--kernel", kernel, "--balloon=stats-interval");
	FAILS("--balloon: 'stats-interval=-1' is not valid", "--kernel", kernel,
	      "--balloon=stats-interval=-1");
	FAILS("--balloon: 'stats-interval=86401' is not valid", "--kernel", kernel,
	      "--balloon=stats-interval=86401");
	FAILS("--balloon: 'deflate-on-oom,' is not valid", "--kernel", kernel, "--balloon=deflate-on-oom,");
	FAILS("--balloon: 'a,,b' is not valid", "--kernel", kernel, "--balloon=a,,b");
	FAILS("--balloon: '' is not valid", "--kernel", kernel, "--balloon=");
	FAILS("--balloon: 'deflate-on-oom=maybe' is not valid", "--kernel", kernel,
	      "--balloon=deflate-on-oom=maybe");
	/* An optional argument must be attached; say so rather than "unexpected argument". */
	FAILS("'deflate-on-oom': unexpected argument: write --balloon=deflate-on-oom", "--kernel",
	      kernel, "--balloon", "deflate-on-oom");
}

Test(config, sockets_and_serial, .timeout = 10)
{
	char long_path[200];

	OK("--kernel", kernel, "--qmp", "unix:/run/vm.qmp");
	cr_expect_str_eq(cfg.qmp, "/run/vm.qmp");
	FAILS("--qmp: 'tcp:localhost:4444' is not valid: use unix:PATH", "--kernel", kernel, "--qmp",
	      "tcp:localhost:4444");
	FAILS("--qmp: 'unix:' is not valid", "--kernel", kernel, "--qmp", "unix:");
	memset(long_path, 'x', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	memcpy(long_path, "unix:/", 6);
	FAILS("is too long for a unix socket", "--kernel", kernel, "--qmp", long_path);
	FAILS("--hostd: ", "--kernel", kernel, "--hostd", long_path + 5);
	FAILS("--hostd: empty path", "--kernel", kernel, "--hostd", "");

	reset();
	OK("--kernel", kernel, "--serial", "file:/tmp/console.log");
	cr_expect_eq(cfg.serial, SERIAL_FILE);
	cr_expect_str_eq(cfg.serial_path, "/tmp/console.log");
	OK("--kernel", kernel, "--serial", "unix:/tmp/console.sock");
	cr_expect_eq(cfg.serial, SERIAL_UNIX);
	cr_expect_str_eq(cfg.serial_path, "/tmp/console.sock");
	OK("--kernel", kernel, "--serial", "stdio");
	cr_expect_eq(cfg.serial, SERIAL_STDIO);
	cr_expect_null(cfg.serial_path);
	FAILS("--serial: 'pty' is not valid: use stdio, file:PATH or unix:PATH", "--kernel", kernel,
	      "--serial", "pty");
	FAILS("--serial: 'file:' is not valid", "--kernel", kernel, "--serial", "file:");
	FAILS("--serial: ", "--kernel", kernel, "--serial", long_path);

	OK("--kernel", kernel, "--hostd", "/run/kvmm/hostd.sock");
	cr_expect_str_eq(cfg.hostd, "/run/kvmm/hostd.sock");
}

Test(config, name, .timeout = 10)
{
	OK("--kernel", kernel, "--name", "web-1");
	cr_expect_str_eq(cfg.name, "web-1");
	OK("--kernel", kernel, "--name", "My VM (test)");
	cr_expect_str_eq(cfg.name, "My VM (test)");
	FAILS("--name: the name must have 1 to 255 bytes", "--kernel", kernel, "--name", "");
	FAILS("--name: 'a/b' is not valid", "--kernel", kernel, "--name", "a/b");
	FAILS("--name: 'a?b' is not valid", "--kernel", kernel, "--name", "a\nb");
	FAILS("--kernel: 'x?y': No such file", "--kernel", "x\ny");
}

Test(config, no_reboot, .timeout = 10)
{
	OK("--kernel", kernel);
	cr_expect_not(cfg.no_reboot, "a reset reboots by default");
	reset();
	OK("--kernel", kernel, "--no-reboot");
	cr_expect(cfg.no_reboot);
	FAILS("kvmm run: --no-reboot: takes no argument", "--kernel", kernel, "--no-reboot=yes");
	reset();
	cr_assert_eq(load(ini("r.ini", "no-reboot = on\n")), 0, "%s", err);
	cr_expect(cfg.no_reboot);
	cr_assert_eq(load(ini("r.ini", "no-reboot = off\n")), 0, "%s", err);
	cr_expect_not(cfg.no_reboot);
	cr_expect_neq(load(ini("r.ini", "no-reboot = maybe\n")), 0);
	cr_expect_not_null(strstr(err, "no-reboot: 'maybe' is not valid: use on or off"), "%s", err);
}

Test(config, usage_errors, .timeout = 10)
{
	FAILS("kvmm run: --bogus: unknown option", "--kernel", kernel, "--bogus");
	FAILS("kvmm run: --bogus: unknown option", "--bogus=1", "--kernel", kernel);
	FAILS("kvmm run: -x: unknown option", "-x", "--kernel", kernel);
	FAILS("kvmm run: --mem: unknown option", "--mem", "1G", "--kernel", kernel);
	FAILS("kvmm run: --memo: unknown option: write it in full, --memory", "--memo", "1G");
	FAILS("kvmm run: --kernel: missing argument FILE", "--kernel");
	FAILS("kvmm run: -m: missing argument SIZE", "--kernel", kernel, "-m");
	FAILS("kvmm run: --memory: missing argument SIZE", "--kernel", kernel, "--memory");
	FAILS("kvmm run: --kernel: missing argument FILE (got '--cpus')", "--kernel", "--cpus", "2");
	FAILS("kvmm run: --help: takes no argument", "--help=yes");
	FAILS("kvmm run: 'disk.img': unexpected argument", "--kernel", kernel, "disk.img");
	FAILS("kvmm run: 'disk.img': unexpected argument", "disk.img", "--kernel", kernel);
	FAILS("kvmm run: 'x': unexpected argument", "--kernel", kernel, "--", "x");
	/* The first error is the one reported. */
	FAILS("--cpus: '0'", "--cpus", "0", "-m", "0");
}

Test(config, help, .timeout = 10)
{
	/* --help needs no kernel and stops at once, even before a bad option. */
	cr_assert_eq(RUN("--help", "--bogus"), 0);
	cr_expect(cfg.help);
	cr_expect_str_empty(err);
	cr_expect_not_null(strstr(out, "usage: kvmm run"), "%s", out);
	cr_expect_not_null(strstr(out, "--mem-shares"), "%s", out);

	reset();
	cr_assert_eq(RUN("-m", "1G", "-h"), 0);
	cr_expect(cfg.help);
	cr_expect_eq(cfg.memory, 1ull << 30);
	cr_expect_not_null(strstr(out, "usage: kvmm run"), "%s", out);
	reset();
	OK("--kernel", kernel);
	cr_expect_not(cfg.help);
	cr_expect_str_empty(out, "nothing on stdout without --help");
}

Test(config, usage_lists_every_option, .timeout = 10)
{
	static const char *const options[] = {
		"-m, --memory SIZE", "--cpus N", "--kernel FILE", "--initrd FILE", "--append",
		"--mem-reservation SIZE", "--mem-limit SIZE", "--mem-shares N|low|normal|high",
		"--mem-share off|zero|tps|ksm", "--mem-salt vm|host|NAME", "--mem-compress on|off",
		"--mem-compress-max PCT", "--mem-swap FILE[,size=SIZE]|off", "--mem-backend anon|memfd|hugetlb|thp",
		"--balloon[=", "--qmp unix:PATH", "--serial stdio|file:PATH|unix:PATH", "--hostd SOCKET",
		"--name NAME", "--no-reboot", "--config FILE.ini", "-h, --help",
	};
	static const char *const defaults[] = { "default 512M", "default 1)", "default tps",
						"default vm", "default on", "default 10%", "default anon",
						"default stdio", "default normal", "default kvmm" };
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_not_null(f);
	config_usage(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		cr_expect_not_null(strstr(text, options[i]), "usage lacks '%s'", options[i]);
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		cr_expect_not_null(strstr(text, defaults[i]), "usage lacks '%s'", defaults[i]);
	free(text);
}

Test(config, parse_twice, .timeout = 10)
{
	/* getopt keeps state between calls; each parse must start afresh. */
	FAILS("-x: unknown option", "-x");
	reset();
	OK("--kernel", kernel, "--cpus", "3");
	cr_expect_eq(cfg.cpus, 3);
	reset();
	OK("--kernel", kernel, "--cpus", "2");
	cr_expect_eq(cfg.cpus, 2);
}

Test(config, ini_keys, .timeout = 10)
{
	char text[3 * PATH_MAX];
	char *path;

	snprintf(text, sizeof(text),
		 "; top level\n"
		 "memory = 2G\n"
		 "\n"
		 "[vm]\n"
		 "# a comment\n"
		 "cpus = 4\n"
		 "  name = indented ; and a comment\n"
		 "kernel = %s\n"
		 "initrd = %s\n"
		 "append = console=ttyS0 root=/dev/vda\n"
		 "mem-reservation = 512M\n"
		 "mem-limit = 1536M\n"
		 "mem-shares = high\n"
		 "mem-share = ksm\n"
		 "mem-salt = host\n"
		 "mem-compress = off\n"
		 "mem-compress-max = 20%%\n"
		 "mem-swap = /var/tmp/x.swap\n"
		 "mem-backend = memfd\n"
		 "balloon = deflate-on-oom,stats-interval=5\n"
		 "qmp = unix:/run/x.qmp\n"
		 "serial = unix:/run/x.console\n"
		 "hostd = /run/kvmm/hostd.sock\n",
		 kernel, initrd);
	path = ini("all.ini", text);
	cr_assert_eq(load(path), 0, "%s", err);
	cr_expect_str_empty(err);
	cr_expect_eq(cfg.memory, 2ull << 30);
	cr_expect_eq(cfg.cpus, 4);
	cr_expect_str_eq(cfg.name, "indented");
	cr_expect_str_eq(cfg.kernel, kernel);
	cr_expect_str_eq(cfg.initrd, initrd);
	cr_expect_str_eq(cfg.append, "console=ttyS0 root=/dev/vda");
	cr_expect_eq(cfg.mem_reservation, 512ull << 20);
	cr_expect_eq(cfg.mem_limit, 1536ull << 20);
	cr_expect_eq(cfg.mem_shares, 20 * 2048);
	cr_expect_eq(cfg.mem_share, MEM_SHARE_KSM);
	cr_expect_str_eq(cfg.mem_salt, "host");
	cr_expect_not(cfg.mem_compress);
	cr_expect_eq(cfg.mem_compress_max_pct, 20);
	cr_expect_str_eq(cfg.mem_swap, "/var/tmp/x.swap");
	cr_expect_eq(cfg.mem_backend, MEM_BACKEND_MEMFD);
	cr_expect(cfg.balloon);
	cr_expect(cfg.balloon_deflate_on_oom);
	cr_expect_eq(cfg.balloon_stats_interval, 5);
	cr_expect_str_eq(cfg.qmp, "/run/x.qmp");
	cr_expect_eq(cfg.serial, SERIAL_UNIX);
	cr_expect_str_eq(cfg.serial_path, "/run/x.console");
	cr_expect_str_eq(cfg.hostd, "/run/kvmm/hostd.sock");
	cr_expect_eq(config_validate(&cfg), 0);

	reset();
	cr_assert_eq(load(ini("b.ini", "balloon = on\n")), 0, "%s", err);
	cr_expect(cfg.balloon);
	cr_expect_not(cfg.balloon_deflate_on_oom);
	cr_assert_eq(load(ini("b.ini", "balloon = off\n")), 0, "%s", err);
	cr_expect_not(cfg.balloon);
	cr_assert_eq(load(ini("b.ini", "serial = file:/tmp/x\n")), 0, "%s", err);
	cr_expect_eq(cfg.serial, SERIAL_FILE);
	cr_expect_str_eq(cfg.serial_path, "/tmp/x");
}

Test(config, ini_duplicates_later_wins, .timeout = 10)
{
	cr_assert_eq(load(ini("d.ini", "cpus = 2\nmemory = 1G\n[vm]\ncpus = 3\n")), 0, "%s", err);
	cr_expect_eq(cfg.cpus, 3);
	cr_expect_eq(cfg.memory, 1ull << 30);
}

static void expect_ini_error(const char *text, int line, const char *needle)
{
	char where[PATH_MAX + 80];
	char *path = ini("bad.ini", text);

	cr_assert_eq(load(path), -EINVAL, "'%s' accepted", text);
	snprintf(where, sizeof(where), "kvmm run: %s:%d: ", path, line);
	expect_one_line(err, where, text);
	expect_one_line(err, needle, text);
	reset();
}

Test(config, ini_errors, .timeout = 10)
{
	char long_line[400];

	expect_ini_error("memory = 1G\ncpus = 2\nfoo = 1\n", 3, "foo: unknown key");
	expect_ini_error("memory = 1G\n\n\n[net]\nmodel = virtio\n", 5, "unknown section [net]");
	expect_ini_error("memory = 1G\ncpus 2\n", 2, "syntax error");
	expect_ini_error("[vm\nmemory = 1G\n", 1, "syntax error");
	expect_ini_error("memory = 1G\n   quiet\n", 2, "syntax error"); /* no continuation lines */
	expect_ini_error("\n\nmemory = 0\n", 3, "memory: '0' is not a valid size: use e.g. 512M or 2G");
	expect_ini_error("cpus = 0\n", 1, "cpus: '0' is not a valid vCPU count");
	expect_ini_error("cpus = 2 # two\n", 1, "cpus: '2 # two' is not a valid vCPU count");
	expect_ini_error("mem-shares = lots\n", 1, "mem-shares: 'lots' is not valid");
	expect_ini_error("balloon = yes\n", 1, "balloon: 'yes' is not valid");
	expect_ini_error("kernel =\n", 1, "kernel: empty path");
	expect_ini_error("help = 1\n", 1, "help: unknown key");
	expect_ini_error("config = other.ini\n", 1, "config: unknown key");
	expect_ini_error("--memory = 1G\n", 1, "--memory: unknown key");
	/* The first error in the file is the one reported, whichever kind it is. */
	expect_ini_error("cpus = 1\nbogus = 1\n[x\n", 2, "bogus: unknown key");
	expect_ini_error("cpus = 1\n[x\nbogus = 1\n", 2, "syntax error");
	memset(long_line, 'a', sizeof(long_line));
	memcpy(long_line, "cpus = 1\nappend = ", 18);
	strcpy(long_line + 300, "\nmemory = 1G\n");
	expect_ini_error(long_line, 2, "line too long");

	cr_expect_eq(load(ini("nul.ini", "cpus = 1\n")), 0);
	{
		char path[PATH_MAX + 64];
		FILE *f;

		snprintf(path, sizeof(path), "%s/nul.ini", tmpdir);
		f = fopen(path, "w");
		cr_assert_not_null(f);
		fwrite("cpus = 1\nname = a\0b\n", 1, 21, f);
		fclose(f);
		cr_expect_eq(load(path), -EINVAL);
		expect_one_line(err, "nul.ini:2: invalid line: contains a NUL byte", "NUL");
	}
}

Test(config, ini_missing_file, .timeout = 10)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/absent.ini", tmpdir);
	cr_expect_eq(load(path), -ENOENT);
	expect_one_line(err, "No such file or directory", "absent");
	cr_expect_not_null(strstr(err, path));
	cr_expect_eq(load(tmpdir), -EINVAL);
	expect_one_line(err, "Is a directory", "directory");
	FAILS("--config: ", "--config", path);
	cr_expect_not_null(strstr(err, "absent.ini"));
}

Test(config, ini_relative_paths, .timeout = 10)
{
	char sub[PATH_MAX + 16], expect[PATH_MAX + 64], *path;

	snprintf(sub, sizeof(sub), "%s/vm", tmpdir);
	cr_assert_eq(mkdir(sub, 0755), 0);
	path = ini("vm/rel.ini", "kernel = ../vmlinuz\n"
				 "initrd = ../initrd.img\n"
				 "mem-swap = swap/vm.swap\n"
				 "qmp = unix:vm.qmp\n"
				 "serial = file:console.log\n"
				 "hostd = hostd.sock\n");
	cr_assert_eq(load(path), 0, "%s", err);
#define EXPECT_PATH(field, rel)                                          \
	snprintf(expect, sizeof(expect), "%s/%s", sub, rel);            \
	cr_expect_str_eq(field, expect)
	EXPECT_PATH(cfg.kernel, "../vmlinuz");
	EXPECT_PATH(cfg.initrd, "../initrd.img");
	EXPECT_PATH(cfg.mem_swap, "swap/vm.swap");
	EXPECT_PATH(cfg.qmp, "vm.qmp");
	EXPECT_PATH(cfg.serial_path, "console.log");
	EXPECT_PATH(cfg.hostd, "hostd.sock");
	cr_expect_eq(config_validate(&cfg), 0, "the resolved kernel and initrd are readable");
	path = ini("vm/rel.ini", "serial = unix:console.sock\n");
	cr_assert_eq(load(path), 0, "%s", err);
	EXPECT_PATH(cfg.serial_path, "console.sock");
#undef EXPECT_PATH

	/* Absolute paths and "off" stay as they are; so do paths from a file in the working directory. */
	path = ini("vm/abs.ini", "kernel = /boot/vmlinuz\nmem-swap = off\nserial = stdio\n");
	cr_assert_eq(load(path), 0, "%s", err);
	cr_expect_str_eq(cfg.kernel, "/boot/vmlinuz");
	cr_expect_null(cfg.mem_swap);
	cr_expect_null(cfg.serial_path);
	cr_assert_eq(chdir(sub), 0);
	cr_assert_eq(load("rel.ini"), 0, "%s", err);
	cr_expect_str_eq(cfg.serial_path, "console.sock");
	reset();
	OK("--config", "../vm/rel.ini", "--kernel", kernel);
	cr_expect_str_eq(cfg.serial_path, "../vm/console.sock");
}

Test(config, override_order, .timeout = 10)
{
	char *a = strdup(ini("a.ini", "cpus = 2\nmemory = 1G\nname = a\n"));
	char *b = strdup(ini("b.ini", "cpus = 3\nmem-shares = high\n"));

	OK("--kernel", kernel, "--cpus", "4", "--config", a);
	cr_expect_eq(cfg.cpus, 2, "the file comes later and wins");
	reset();
	OK("--kernel", kernel, "--config", a, "--cpus", "4");
	cr_expect_eq(cfg.cpus, 4, "the option comes later and wins");
	cr_expect_eq(cfg.memory, 1ull << 30);
	cr_expect_str_eq(cfg.name, "a");
	reset();
	OK("--kernel", kernel, "--config", a, "--config", b);
	cr_expect_eq(cfg.cpus, 3);
	cr_expect_eq(cfg.mem_shares, 20 * 1024, "a preset from b resolves against memory from a");
	reset();
	OK("--kernel", kernel, "--config", b, "--config", a);
	cr_expect_eq(cfg.cpus, 2);
	cr_expect_eq(cfg.mem_shares, 20 * 1024, "a preset from b resolves against memory from a");
	reset();
	OK("--config", b, "-m", "4G", "--kernel", kernel);
	cr_expect_eq(cfg.mem_shares, 20 * 4096, "a preset from a file resolves against a later -m");
	free(a);
	free(b);
}

Test(config, ini_error_through_cli, .timeout = 10)
{
	char *path = ini("e.ini", "memory = 1G\nmem-limit = 2G\nmem-backend = huge\n");

	/* Named by file:line and key, not by --config. */
	FAILS(":3: mem-backend: 'huge' is not valid", "--kernel", kernel, "--config", path);
	cr_expect_not_null(strstr(err, path));
	reset();
	/* Cross-option checks run on the result: this file's limit exceeds its memory. */
	path = ini("e.ini", "memory = 1G\nmem-limit = 2G\n");
	FAILS("--mem-limit: 2G is more than --memory 1G", "--kernel", kernel, "--config", path);
	reset();
	OK("--kernel", kernel, "--config", path, "-m", "2G");
}

static void configs_dir(char *dir, size_t len)
{
	const char *env = getenv("KVMM_CONFIGS_DIR");
	char source[PATH_MAX];

	if (env) {
		snprintf(dir, len, "%s", env);
		return;
	}
	/* CMake compiles with absolute paths; a direct gcc run from the repo root with relative ones. */
	snprintf(source, sizeof(source), "%s", __FILE__);
	snprintf(dir, len, "%s/../../configs", dirname(source));
}

/* The examples are parsed and validated (with a kernel given on the command line, as README.md
 * says), so they never drift from the parser. */
Test(config, example_configs_load, .timeout = 10)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *entry;
	unsigned found = 0;
	DIR *d;

	configs_dir(dir, sizeof(dir));
	d = opendir(dir);
	cr_assert_not_null(d, "%s: %s (set KVMM_CONFIGS_DIR)", dir, strerror(errno));
	while ((entry = readdir(d))) {
		size_t len = strlen(entry->d_name);

		if (len < 4 || strcmp(entry->d_name + len - 4, ".ini") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		reset();
		cr_expect_eq(load(path), 0, "%s: %s", path, err);
		cr_expect_str_empty(err, "%s", path);
		reset();
		OK("--config", path, "--kernel", kernel);
		found++;
	}
	closedir(d);
	cr_expect_geq(found, 3, "linux.ini, test-guest.ini and overcommit.ini in %s", dir);
}

Test(config, example_overcommit_values, .timeout = 10)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];

	configs_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/overcommit.ini", dir);
	OK("--config", path, "--kernel", kernel);
	cr_expect_eq(cfg.memory, 4ull << 30);
	cr_expect_eq(cfg.mem_reservation, 1ull << 30);
	cr_expect_eq(cfg.mem_limit, 3ull << 30);
	cr_expect_eq(cfg.mem_shares, 20 * 4096);
	cr_expect_eq(cfg.mem_compress_max_pct, 15);
	cr_expect_not_null(cfg.mem_swap);
	cr_expect_not_null(strstr(cfg.mem_swap, "configs/overcommit.swap"), "%s", cfg.mem_swap);
}
