/*
 * `kvmm run` options. One table (config_options) drives getopt_long, the ini keys and --help, so an
 * option cannot exist in one of them and not the others. Values are checked as they are read, so a
 * message names the option as the user wrote it; cross-option checks wait for config_validate().
 * Ini files are read in config_ini.c, through the same table.
 */
#include <kvmm/config.h>
#include <kvmm/size.h>

#include "config_internal.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONFIG_MIN_MEMORY (16ull << 20)
#define CONFIG_PAGE_SIZE 4096ull
#define CONFIG_HUGE_PAGE_SIZE (2ull << 20) /* x86-64 default hugetlb page */
#define CONFIG_APPEND_MAX 4096		   /* Linux x86 COMMAND_LINE_SIZE, with its NUL */
#define CONFIG_NAME_MAX 255
#define CONFIG_SALT_MAX 64
#define CONFIG_STATS_INTERVAL_MAX 86400
#define CONFIG_SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

static const char *const share_names[] = { "off", "zero", "tps", "ksm", NULL };
static const char *const backend_names[] = { "anon", "memfd", "hugetlb", "thp", NULL };

static void config_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void config_print(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Values are quoted back to the user as typed: a newline in one must not split the line. */
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	/* Usage errors are for the person at the terminal: the exact "kvmm run: WHERE: why" shape of
	 * DESIGN.md §1, without log_msg's timestamp. One fprintf, so it is one line. */
	fprintf(stderr, "kvmm run: %s\n", line);
}

int config_fail(struct config_ctx *ctx, int code, const char *fmt, ...)
{
	char why[768];
	va_list ap;
	int r;

	if (ctx->err)
		return code;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (ctx->file)
		r = asprintf(&ctx->err, "%s:%u: %s: %s", ctx->file, ctx->line, ctx->spelling, why);
	else
		r = asprintf(&ctx->err, "%s: %s", ctx->spelling, why);
	if (r < 0)
		ctx->err = NULL;
	ctx->err_line = ctx->line;
	ctx->err_code = code;
	return code;
}

int config_nomem(struct config_ctx *ctx)
{
	return config_fail(ctx, -ENOMEM, "out of memory");
}

/* Whole decimal numbers only: no sign, no spaces, no suffix; overflow is an error. */
static int parse_uint(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (*text == '\0')
		return -EINVAL;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

static int parse_choice(const char *text, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(text, names[i]) == 0)
			return i;
	return -EINVAL;
}

static int parse_onoff(const char *text, bool *out)
{
	if (strcmp(text, "on") == 0)
		*out = true;
	else if (strcmp(text, "off") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int set_string(struct config_ctx *ctx, char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return config_nomem(ctx);
	free(*field);
	*field = copy;
	return 0;
}

/* A path from an ini file is relative to the file's directory, as a user reading the file expects. */
static int set_path(struct config_ctx *ctx, char **field, const char *value)
{
	char *path;

	if (*value == '\0')
		return config_fail(ctx, -EINVAL, "empty path");
	if (!ctx->ini_dir || value[0] == '/')
		return set_string(ctx, field, value);
	if (asprintf(&path, "%s/%s", ctx->ini_dir, value) < 0)
		return config_nomem(ctx);
	free(*field);
	*field = path;
	return 0;
}

static int set_socket_path(struct config_ctx *ctx, char **field, const char *value)
{
	int r = set_path(ctx, field, value);

	if (r == 0 && strlen(*field) > CONFIG_SOCKET_PATH_MAX)
		return config_fail(ctx, -EINVAL, "'%s' is too long for a unix socket (at most %zu bytes)",
				   *field, CONFIG_SOCKET_PATH_MAX);
	return r;
}

static int get_size(struct config_ctx *ctx, const char *value, uint64_t *out)
{
	int r = size_parse(value, out);

	if (r == -ERANGE)
		return config_fail(ctx, -EINVAL, "'%s' is too large", value);
	if (r < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not a valid size: use e.g. 512M or 2G", value);
	return 0;
}

static int get_page_size(struct config_ctx *ctx, const char *value, uint64_t *out)
{
	int r = get_size(ctx, value, out);

	if (r == 0 && *out % CONFIG_PAGE_SIZE)
		return config_fail(ctx, -EINVAL, "'%s' is not a multiple of 4K", value);
	return r;
}

static int set_memory(struct config_ctx *ctx, const char *value)
{
	uint64_t bytes;
	int r = get_page_size(ctx, value, &bytes);

	if (r)
		return r;
	if (bytes == 0)
		return config_fail(ctx, -EINVAL, "'%s' is not a valid size: use e.g. 512M or 2G", value);
	if (bytes < CONFIG_MIN_MEMORY)
		return config_fail(ctx, -EINVAL, "'%s' is too small: at least 16M", value);
	ctx->cfg->memory = bytes;
	return 0;
}

static int set_cpus(struct config_ctx *ctx, const char *value)
{
	uint64_t n;

	if (parse_uint(value, CONFIG_MAX_CPUS, &n) < 0 || n == 0)
		return config_fail(ctx, -EINVAL, "'%s' is not a valid vCPU count: use 1 to %u", value,
				   CONFIG_MAX_CPUS);
	ctx->cfg->cpus = (unsigned)n;
	return 0;
}

static int set_kernel(struct config_ctx *ctx, const char *value)
{
	return set_path(ctx, &ctx->cfg->kernel, value);
}

static int set_initrd(struct config_ctx *ctx, const char *value)
{
	return set_path(ctx, &ctx->cfg->initrd, value);
}

static int set_append(struct config_ctx *ctx, const char *value)
{
	return set_string(ctx, &ctx->cfg->append, value);
}

static int set_reservation(struct config_ctx *ctx, const char *value)
{
	return get_page_size(ctx, value, &ctx->cfg->mem_reservation);
}

static int set_limit(struct config_ctx *ctx, const char *value)
{
	return get_page_size(ctx, value, &ctx->cfg->mem_limit);
}

int config_parse_shares(const char *value, unsigned *per_mib, uint64_t *shares)
{
	static const char *const presets[] = { "low", "normal", "high", NULL };
	static const unsigned preset_per_mib[] = { CONFIG_SHARES_LOW, CONFIG_SHARES_NORMAL,
						   CONFIG_SHARES_HIGH };
	int preset = parse_choice(value, presets);

	*per_mib = 0;
	*shares = 0;
	if (preset >= 0) {
		*per_mib = preset_per_mib[preset];
		return 0;
	}
	if (parse_uint(value, UINT32_MAX, shares) < 0 || *shares == 0)
		return -EINVAL;
	return 0;
}

static int set_shares(struct config_ctx *ctx, const char *value)
{
	uint64_t n;

	/* A preset is resolved once every option is read: -m may come after --mem-shares. */
	if (config_parse_shares(value, &ctx->shares_per_mib, &n) < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use low, normal, high or a number "
				   "from 1 to %u", value, UINT32_MAX);
	if (n)
		ctx->cfg->mem_shares = n;
	return 0;
}

void config_resolve_shares(struct config_ctx *ctx)
{
	if (ctx->shares_per_mib)
		ctx->cfg->mem_shares = (uint64_t)ctx->shares_per_mib * (ctx->cfg->memory >> 20);
}

static int set_share(struct config_ctx *ctx, const char *value)
{
	int mode = parse_choice(value, share_names);

	if (mode < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use off, zero, tps or ksm", value);
	ctx->cfg->mem_share = (enum mem_share_mode)mode;
	return 0;
}

static int set_salt(struct config_ctx *ctx, const char *value)
{
	size_t len = strlen(value);

	if (len == 0 || len > CONFIG_SALT_MAX || strspn(value, "abcdefghijklmnopqrstuvwxyz"
							"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use vm, host or a name of up to %d "
				   "letters, digits, '.', '_' or '-'", value, CONFIG_SALT_MAX);
	return set_string(ctx, &ctx->cfg->mem_salt, value);
}

static int set_share_rate(struct config_ctx *ctx, const char *value)
{
	uint64_t n;

	if (parse_uint(value, CONFIG_SHARE_RATE_MAX, &n) < 0 || n == 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: pages per second, 1 to %u", value,
				   CONFIG_SHARE_RATE_MAX);
	ctx->cfg->mem_share_rate = n;
	return 0;
}

/* "1" to "100", with or without a trailing '%'. */
static int parse_percent(const char *value, unsigned *pct)
{
	char digits[8];
	size_t len = strlen(value);
	uint64_t n;

	if (len && value[len - 1] == '%')
		len--;
	if (len == 0 || len >= sizeof(digits))
		return -EINVAL;
	memcpy(digits, value, len);
	digits[len] = '\0';
	if (parse_uint(digits, 100, &n) < 0 || n == 0)
		return -EINVAL;
	*pct = (unsigned)n;
	return 0;
}

static int set_share_cpu(struct config_ctx *ctx, const char *value)
{
	if (parse_percent(value, &ctx->cfg->mem_share_cpu) < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not a valid percentage of one core: use 1 to 100",
				   value);
	return 0;
}

static int set_capture(struct config_ctx *ctx, const char *value)
{
	static const char *const names[] = { "auto", "move", "wp", NULL };
	int mode = parse_choice(value, names);

	if (mode < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use auto, move or wp", value);
	ctx->cfg->mem_capture = (enum mem_capture_choice)mode;
	return 0;
}

static int set_mem_cgroup(struct config_ctx *ctx, const char *value)
{
	static const char *const names[] = { "auto", "on", "off", NULL };
	int mode = parse_choice(value, names);

	if (mode < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use on, off or auto", value);
	ctx->cfg->mem_cgroup = (enum mem_cgroup_mode)mode;
	return 0;
}

static int set_stats_interval(struct config_ctx *ctx, const char *value)
{
	uint64_t n;

	if (parse_uint(value, 86400, &n) < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: seconds, 0 (off) to 86400", value);
	ctx->cfg->mem_stats_interval = (unsigned)n;
	return 0;
}

static int set_compress(struct config_ctx *ctx, const char *value)
{
	if (parse_onoff(value, &ctx->cfg->mem_compress) < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use on or off", value);
	return 0;
}

static int set_compress_max(struct config_ctx *ctx, const char *value)
{
	if (parse_percent(value, &ctx->cfg->mem_compress_max_pct) < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not a valid percentage: use 1 to 100, e.g. 10%%",
				   value);
	return 0;
}

/* FILE[,size=SIZE] (default size: the guest's memory) or off. */
static int set_swap(struct config_ctx *ctx, const char *value)
{
	const char *opt = strstr(value, ",size=");
	char *file;
	int r;

	ctx->cfg->mem_swap_size = 0;
	if (strcmp(value, "off") == 0) {
		free(ctx->cfg->mem_swap);
		ctx->cfg->mem_swap = NULL;
		return 0;
	}
	if (!opt)
		return set_path(ctx, &ctx->cfg->mem_swap, value);
	if ((r = get_size(ctx, opt + 6, &ctx->cfg->mem_swap_size)) < 0)
		return r;
	if (ctx->cfg->mem_swap_size < 4096)
		return config_fail(ctx, -EINVAL, "size=%s is too small: at least 4K", opt + 6);
	if (!(file = strndup(value, (size_t)(opt - value))))
		return config_nomem(ctx);
	r = set_path(ctx, &ctx->cfg->mem_swap, file);
	free(file);
	return r;
}

static int set_backend(struct config_ctx *ctx, const char *value)
{
	int backend = parse_choice(value, backend_names);

	if (backend < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use anon, memfd, hugetlb or thp",
				   value);
	ctx->cfg->mem_backend = (enum mem_backend)backend;
	return 0;
}

/* "on", "off", or a comma list of deflate-on-oom[=on|off], free-page-reporting[=on|off],
 * stats-interval=S. Each --balloon replaces the previous one entirely. */
static int set_balloon(struct config_ctx *ctx, const char *value)
{
	struct vm_config *cfg = ctx->cfg;
	bool deflate = false, reporting = false, on = true;
	uint64_t interval = 0;
	char *list, *item, *save = NULL;
	int r = 0;

	if (value && parse_onoff(value, &on) == 0)
		value = NULL;
	if (value) {
		list = strdup(value);
		if (!list)
			return config_nomem(ctx);
		for (item = strtok_r(list, ",", &save); item && r == 0; item = strtok_r(NULL, ",", &save)) {
			char *arg = strchr(item, '=');

			if (arg)
				*arg++ = '\0';
			if (strcmp(item, "deflate-on-oom") == 0 && (!arg || parse_onoff(arg, &deflate) == 0))
				deflate = deflate || !arg;
			else if (strcmp(item, "free-page-reporting") == 0 &&
				 (!arg || parse_onoff(arg, &reporting) == 0))
				reporting = reporting || !arg;
			else if (strcmp(item, "stats-interval") == 0 && arg)
				r = parse_uint(arg, CONFIG_STATS_INTERVAL_MAX, &interval) < 0 ? -EINVAL : 0;
			else
				r = -EINVAL;
		}
		/* strtok_r skips empty items; an empty list or a stray comma is still a mistake. */
		if (r == 0 && (*value == '\0' || *value == ',' || value[strlen(value) - 1] == ',' ||
			       strstr(value, ",,")))
			r = -EINVAL;
		free(list);
		if (r)
			return config_fail(ctx, -EINVAL, "'%s' is not valid: use on, off, or a list of "
					   "deflate-on-oom, free-page-reporting, stats-interval=SECONDS "
					   "(0 to %d)", value, CONFIG_STATS_INTERVAL_MAX);
	}
	cfg->balloon = on;
	cfg->balloon_deflate_on_oom = on && deflate;
	cfg->balloon_free_page_reporting = on && reporting;
	cfg->balloon_stats_interval = on ? (unsigned)interval : 0;
	return 0;
}

static int set_qmp(struct config_ctx *ctx, const char *value)
{
	if (strncmp(value, "unix:", 5) != 0 || value[5] == '\0')
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use unix:PATH", value);
	return set_socket_path(ctx, &ctx->cfg->qmp, value + 5);
}

static int set_serial(struct config_ctx *ctx, const char *value)
{
	struct vm_config *cfg = ctx->cfg;
	int r;

	if (strcmp(value, "stdio") == 0) {
		free(cfg->serial_path);
		cfg->serial_path = NULL;
		cfg->serial = SERIAL_STDIO;
		return 0;
	}
	if (strncmp(value, "file:", 5) == 0 && value[5]) {
		r = set_path(ctx, &cfg->serial_path, value + 5);
		cfg->serial = SERIAL_FILE;
	} else if (strncmp(value, "unix:", 5) == 0 && value[5]) {
		r = set_socket_path(ctx, &cfg->serial_path, value + 5);
		cfg->serial = SERIAL_UNIX;
	} else {
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use stdio, file:PATH or unix:PATH",
				   value);
	}
	return r;
}

static int set_hostd(struct config_ctx *ctx, const char *value)
{
	return set_socket_path(ctx, &ctx->cfg->hostd, value);
}

/* A flag on the command line; in an ini file, on or off. */
static int set_no_reboot(struct config_ctx *ctx, const char *value)
{
	if (!value) {
		ctx->cfg->no_reboot = true;
		return 0;
	}
	if (parse_onoff(value, &ctx->cfg->no_reboot) < 0)
		return config_fail(ctx, -EINVAL, "'%s' is not valid: use on or off", value);
	return 0;
}

static int set_name(struct config_ctx *ctx, const char *value)
{
	size_t len = strlen(value);

	if (len == 0 || len > CONFIG_NAME_MAX)
		return config_fail(ctx, -EINVAL, "the name must have 1 to %d bytes", CONFIG_NAME_MAX);
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '/')
			return config_fail(ctx, -EINVAL, "'%s' is not valid: no '/' or control characters",
					   value);
	return set_string(ctx, &ctx->cfg->name, value);
}

static int set_config(struct config_ctx *ctx, const char *value)
{
	const char *spelling = ctx->spelling;
	int r = config_ini_load(ctx, value);

	ctx->spelling = spelling;
	return r;
}

static int set_help(struct config_ctx *ctx, const char *value)
{
	(void)value;
	ctx->cfg->help = true;
	return 0;
}

static const struct config_option config_options[] = {
	{ "memory", 'm', required_argument, false, "SIZE", "guest RAM, at least 16M, a multiple of 4K (default 512M)", set_memory },
	{ "cpus", 0, required_argument, false, "N", "vCPUs, 1 to 255 (default 1)", set_cpus },
	{ "kernel", 0, required_argument, false, "FILE", "Linux bzImage or PVH ELF kernel (required)", set_kernel },
	{ "initrd", 0, required_argument, false, "FILE", "initial ramdisk (default none)", set_initrd },
	{ "append", 0, required_argument, false, "STRING", "kernel command line, under 4096 bytes (default empty)", set_append },
	{ "mem-reservation", 0, required_argument, false, "SIZE", "host memory guaranteed to the VM (default none)", set_reservation },
	{ "mem-limit", 0, required_argument, false, "SIZE", "most host memory the VM may use (default: its memory)", set_limit },
	{ "mem-shares", 0, required_argument, false, "N|low|normal|high", "priority under contention; presets: 5/10/20 per MiB (default normal)", set_shares },
	{ "mem-share", 0, required_argument, false, "off|zero|tps|ksm", "page sharing: none, zero pages, kvmm's, the kernel's KSM (default tps)", set_share },
	{ "mem-salt", 0, required_argument, false, "vm|host|NAME", "share pages in this VM, all VMs, or VMs with this salt (default vm)", set_salt },
	{ "mem-share-rate", 0, required_argument, false, "PAGES", "sharing scan limit, pages per second (default 65536)", set_share_rate },
	{ "mem-share-cpu", 0, required_argument, false, "PCT", "sharing CPU limit, 1 to 100% of one core (default 50%)", set_share_cpu },
	{ "mem-capture", 0, required_argument, false, "auto|move|wp", "how pages are taken from the guest: write-protect +\n"
	  "copy, or UFFDIO_MOVE (default auto: wp, else move)", set_capture },
	{ "mem-stats-interval", 0, required_argument, false, "SECONDS", "log memory stats every SECONDS (default 0: never)", set_stats_interval },
	{ "mem-compress", 0, required_argument, false, "on|off", "keep cold pages LZ4-compressed in memory (default on)", set_compress },
	{ "mem-compress-max", 0, required_argument, false, "PCT", "compression cache cap, 1 to 100% of memory (default 10%)", set_compress_max },
	{ "mem-swap", 0, required_argument, false, "FILE[,size=SIZE]|off", "per-VM swap file, created and deleted by kvmm; size\n"
	  "defaults to --memory (default off)", set_swap },
	{ "mem-cgroup", 0, required_argument, false, "on|off|auto", "follow the process's cgroup v2 memory.max/high/low\n"
	  "(default auto: when its cgroup has the memory controller)", set_mem_cgroup },
	{ "mem-backend", 0, required_argument, false, "anon|memfd|hugetlb|thp", "how guest RAM is allocated (default anon)", set_backend },
	{ "balloon", 0, optional_argument, false, "[=OPTS]", "virtio-balloon (default off); OPTS: deflate-on-oom,\n"
	  "free-page-reporting,stats-interval=SECONDS", set_balloon },
	{ "qmp", 0, required_argument, false, "unix:PATH", "QMP socket, mode 0600 (default none)", set_qmp },
	{ "serial", 0, required_argument, false, "stdio|file:PATH|unix:PATH", "where COM1 goes (default stdio)", set_serial },
	{ "hostd", 0, required_argument, false, "SOCKET", "join the host scheduler (default: enforce own limit)", set_hostd },
	{ "no-reboot", 0, no_argument, false, NULL, "exit when the guest resets instead of rebooting it\n"
	  "(ini: no-reboot = on)", set_no_reboot },
	{ "name", 0, required_argument, false, "NAME", "VM name (default kvmm)", set_name },
	{ "config", 0, required_argument, true, "FILE.ini", "read options from FILE.ini at this point (may repeat)", set_config },
	{ "help", 'h', no_argument, true, NULL, "show this help", set_help },
};

#define CONFIG_NOPTIONS (sizeof(config_options) / sizeof(config_options[0]))

void config_usage(FILE *out)
{
	fprintf(out, "usage: kvmm run --kernel FILE [options]\n\noptions:\n");
	for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *opt = &config_options[i];
		char flags[64];

		snprintf(flags, sizeof(flags), "%c%c%c --%s%s%s", opt->short_name ? '-' : ' ',
			 opt->short_name ? opt->short_name : ' ', opt->short_name ? ',' : ' ', opt->name,
			 opt->arg && opt->has_arg == required_argument ? " " : "", opt->arg ? opt->arg : "");
		const char *help = opt->help, *nl;

		if (strlen(flags) > 30)
			fprintf(out, "  %s\n  %-30s", flags, "");
		else
			fprintf(out, "  %-30s", flags);
		/* A long help text carries its own line break; continue it under the first line. */
		while ((nl = strchr(help, '\n'))) {
			fprintf(out, "  %.*s\n  %-30s", (int)(nl - help), help, "");
			help = nl + 1;
		}
		fprintf(out, "  %s\n", help);
	}
	fprintf(out, "\nSIZE takes a K, M, G or T suffix (powers of 1024). Options apply in order, later ones\n"
		     "overriding earlier ones. FILE.ini holds the long options' names without dashes as\n"
		     "keys (e.g. memory = 1G, balloon = deflate-on-oom), at top level or under [vm];\n"
		     "relative paths in it are relative to its directory.\n"
		     "Exit codes: 0 guest powered off, 1 runtime failure, 2 bad usage.\n");
}

void config_init(struct vm_config *cfg)
{
	*cfg = (struct vm_config){
		.name = strdup("kvmm"),
		.memory = CONFIG_DEFAULT_MEMORY,
		.cpus = 1,
		.mem_shares = (uint64_t)CONFIG_SHARES_NORMAL * (CONFIG_DEFAULT_MEMORY >> 20),
		.mem_share = MEM_SHARE_TPS,
		.mem_salt = strdup("vm"),
		.mem_compress = true,
		.mem_compress_max_pct = 10,
		.mem_backend = MEM_BACKEND_ANON,
		.mem_share_rate = CONFIG_SHARE_RATE_DEFAULT,
		.mem_share_cpu = CONFIG_SHARE_CPU_DEFAULT,
		.serial = SERIAL_STDIO,
		.qmp_fd = -1,
		.serial_fd = -1,
		.serial_append = true,
	};
}

void config_free(struct vm_config *cfg)
{
	free(cfg->name);
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->append);
	free(cfg->mem_salt);
	free(cfg->mem_swap);
	free(cfg->qmp);
	free(cfg->serial_path);
	free(cfg->hostd);
	free(cfg->pidfile);
	free(cfg->balloon_id);
	free(cfg->chardev_serial);
	free(cfg->chardev_monitor);
	*cfg = (struct vm_config){ 0 };
}

const struct config_option *config_find(const char *name)
{
	for (size_t i = 0; i < CONFIG_NOPTIONS; i++)
		if (strcmp(config_options[i].name, name) == 0)
			return &config_options[i];
	return NULL;
}

void config_report(struct config_ctx *ctx)
{
	if (ctx->err)
		config_print("%s", ctx->err);
	else if (ctx->err_code == -ENOMEM)
		config_print("out of memory");
	free(ctx->err);
	ctx->err = NULL;
}

/* --- command line -------------------------------------------------------------------------- */

/* getopt_long's '?' (unknown option, or an argument given to a flag) and ':' (argument missing). */
static int config_getopt_error(struct config_ctx *ctx, int c, char **argv, char *spelling, size_t len)
{
	const char *text = argv[optind - 1];
	const struct config_option *known = NULL;

	if (optopt >= 256)
		known = &config_options[optopt - 256];
	for (size_t i = 0; !known && optopt > 0 && i < CONFIG_NOPTIONS; i++)
		if (config_options[i].short_name == optopt)
			known = &config_options[i];
	if (text[0] == '-' && text[1] == '-')
		snprintf(spelling, len, "%.*s", (int)strcspn(text, "="), text);
	else
		snprintf(spelling, len, "-%c", optopt);
	ctx->spelling = spelling;
	if (c == ':')
		return config_fail(ctx, -EINVAL, "missing argument %s", known ? known->arg : "");
	if (known)
		return config_fail(ctx, -EINVAL, "takes no argument");
	return config_fail(ctx, -EINVAL, "unknown option (see kvmm run --help)");
}

/* The option as the user typed it, for messages: "-m", "--memory". */
static void config_spelling(char **argv, int index, const struct config_option *opt, bool long_form,
			    char *buf, size_t len)
{
	const char *arg = argv[index];

	if (!long_form) {
		snprintf(buf, len, "-%c", opt->short_name);
		return;
	}
	snprintf(buf, len, "%.*s", (int)strcspn(arg, "="), arg);
}

int config_parse_run(struct vm_config *cfg, int argc, char **argv)
{
	struct option longopts[CONFIG_NOPTIONS + 1] = { { 0 } };
	struct config_ctx ctx = { .cfg = cfg, .shares_per_mib = CONFIG_SHARES_NORMAL };
	char optstring[2 * CONFIG_NOPTIONS + 3] = "+:", *o = optstring + 2;
	const struct config_option *bare_optional = NULL;
	char spelling[64];
	int r = 0;

	if (!cfg->name || !cfg->mem_salt) {
		config_print("out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *opt = &config_options[i];

		longopts[i] = (struct option){ opt->name, opt->has_arg, NULL, 256 + (int)i };
		if (opt->short_name) {
			*o++ = (char)opt->short_name;
			if (opt->has_arg == required_argument)
				*o++ = ':';
		}
	}
	*o = '\0';

	optind = 0; /* glibc: a full restart, as parse may run more than once in one process */
	opterr = 0;
	while (r == 0 && !cfg->help) {
		int start = optind ? optind : 1, longindex = -1;
		int c = getopt_long(argc, argv, optstring, longopts, &longindex);
		const struct config_option *opt = NULL;
		bool long_form = longindex >= 0;

		if (c == -1)
			break;
		if (c >= 256)
			opt = &config_options[c - 256];
		for (size_t i = 0; !opt && c > 0 && i < CONFIG_NOPTIONS; i++)
			if (config_options[i].short_name == c)
				opt = &config_options[i];
		if (c == '?' || c == ':') {
			r = config_getopt_error(&ctx, c, argv, spelling, sizeof(spelling));
			break;
		}
		/* The option word is argv[start]; its argument, if separate, follows it. */
		config_spelling(argv, start, opt, long_form, spelling, sizeof(spelling));
		ctx.spelling = spelling;
		if (long_form && strcmp(spelling + 2, opt->name) != 0) {
			/* glibc accepts unique prefixes; a new option would silently change their meaning. */
			r = config_fail(&ctx, -EINVAL, "unknown option: write it in full, --%s", opt->name);
			break;
		}
		if (opt->has_arg == required_argument && optind == start + 2 && optarg == argv[start + 1] &&
		    strncmp(optarg, "--", 2) == 0 && optarg[2]) {
			/* "--kernel --cpus 2": the next option is surely not the file meant. */
			r = config_fail(&ctx, -EINVAL, "missing argument %s (got '%s')", opt->arg, optarg);
			break;
		}
		r = opt->set(&ctx, optarg);
		bare_optional = opt->has_arg == optional_argument && !optarg ? opt : NULL;
	}
	if (r == 0 && !cfg->help && optind < argc) {
		snprintf(spelling, sizeof(spelling), "'%.60s'", argv[optind]);
		ctx.spelling = spelling;
		if (bare_optional)
			/* "--balloon deflate-on-oom": an optional argument must be attached. */
			r = config_fail(&ctx, -EINVAL, "unexpected argument: write --%s=%s",
					bare_optional->name, argv[optind]);
		else
			r = config_fail(&ctx, -EINVAL, "unexpected argument: kvmm run takes only options");
	}
	config_report(&ctx);
	free(ctx.ini_dir);
	if (r < 0)
		return r == -ENOMEM ? r : -EINVAL;
	config_resolve_shares(&ctx);
	if (cfg->help) {
		config_usage(stdout);
		return 0;
	}
	return config_validate(cfg);
}

/* --- cross-option checks ------------------------------------------------------------------- */

static int config_check_file(const char *option, const char *path)
{
	struct stat st;

	if (access(path, R_OK) < 0) {
		config_print("%s: '%s': %s", option, path, strerror(errno));
		return -EINVAL;
	}
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		config_print("%s: '%s': %s", option, path, strerror(EISDIR));
		return -EINVAL;
	}
	return 0;
}

int config_validate(const struct vm_config *cfg)
{
	char a[32], b[32];

	if (!cfg->name || !cfg->mem_salt) {
		config_print("out of memory");
		return -ENOMEM;
	}
	if (!cfg->kernel) {
		config_print("--kernel: missing: a Linux bzImage or PVH ELF kernel is required");
		return -EINVAL;
	}
	if (config_check_file("--kernel", cfg->kernel) < 0)
		return -EINVAL;
	if (cfg->initrd && config_check_file("--initrd", cfg->initrd) < 0)
		return -EINVAL;
	if (cfg->append && strlen(cfg->append) >= CONFIG_APPEND_MAX) {
		config_print("--append: %zu bytes is too long: at most %d", strlen(cfg->append),
			     CONFIG_APPEND_MAX - 1);
		return -EINVAL;
	}
	if (cfg->mem_limit && cfg->mem_reservation > cfg->mem_limit) {
		config_print("--mem-reservation: %s is more than --mem-limit %s",
			     size_format(cfg->mem_reservation, a, sizeof(a)),
			     size_format(cfg->mem_limit, b, sizeof(b)));
		return -EINVAL;
	}
	if (cfg->mem_reservation > cfg->memory) {
		config_print("--mem-reservation: %s is more than --memory %s",
			     size_format(cfg->mem_reservation, a, sizeof(a)),
			     size_format(cfg->memory, b, sizeof(b)));
		return -EINVAL;
	}
	if (cfg->mem_limit > cfg->memory) {
		config_print("--mem-limit: %s is more than --memory %s",
			     size_format(cfg->mem_limit, a, sizeof(a)), size_format(cfg->memory, b, sizeof(b)));
		return -EINVAL;
	}
	if (cfg->mem_backend == MEM_BACKEND_HUGETLB && cfg->memory % CONFIG_HUGE_PAGE_SIZE) {
		config_print("--mem-backend: hugetlb needs --memory to be a multiple of 2M, not %s",
			     size_format(cfg->memory, a, sizeof(a)));
		return -EINVAL;
	}
	return 0;
}
