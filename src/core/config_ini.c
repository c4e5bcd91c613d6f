/* `kvmm run --config FILE.ini`: ini files through libinih, with the keys of config.c's option
 * table (the long options' names) and its setters, so a key and its option cannot differ. */
#include "config_internal.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct config_ini_reader {
	FILE *file;
	struct config_ctx *ctx;
	char *buf;
	size_t cap;
};

/*
 * Feeds libinih one physical line per call, so its line count (and so every file:line we print)
 * is exact. Leading blanks are dropped: libinih would otherwise take an indented line as the
 * continuation of the previous value and set that key a second time. libinih's line buffer is
 * fixed (200 bytes in Debian's build); a longer line would be split and its tail parsed as a line
 * of its own, so it is refused here instead.
 */
static char *config_ini_read(char *str, int num, void *stream)
{
	struct config_ini_reader *rd = stream;
	struct config_ctx *ctx = rd->ctx;
	ssize_t n = getline(&rd->buf, &rd->cap, rd->file);
	char *start;
	size_t len;

	if (n < 0)
		return NULL;
	ctx->line++;
	start = rd->buf + strspn(rd->buf, " \t");
	len = (size_t)n - (size_t)(start - rd->buf);
	if (strlen(start) != len) {
		ctx->spelling = "invalid line";
		config_fail(ctx, -EINVAL, "contains a NUL byte");
		len = 0;
	} else if (len + 2 > (size_t)num) {
		ctx->spelling = "line too long";
		config_fail(ctx, -EINVAL, "more than %d bytes (libinih's limit): pass long values on "
				   "the command line", num - 3);
		len = 0;
	}
	memcpy(str, start, len);
	str[len] = '\0';
	return str;
}

static int config_ini_handle(void *user, const char *section, const char *name, const char *value)
{
	struct config_ctx *ctx = user;
	const struct config_option *opt = config_find(name);

	ctx->spelling = name;
	if (ctx->err)
		return 1; /* only the first error is reported; inih goes on reading regardless */
	if (*section && strcmp(section, "vm") != 0) {
		config_fail(ctx, -EINVAL, "unknown section [%s]: put keys at top level or in [vm]",
			    section);
		return 0;
	}
	if (!opt || opt->cli_only) {
		config_fail(ctx, -EINVAL, "unknown key: use the long options' names, e.g. memory");
		return 0;
	}
	return opt->set(ctx, value) == 0;
}

int config_ini_load(struct config_ctx *ctx, const char *path)
{
	struct config_ini_reader rd = { .ctx = ctx };
	const char *slash = strrchr(path, '/');
	struct stat st;
	int r;

	rd.file = fopen(path, "re");
	if (!rd.file)
		return config_fail(ctx, -errno, "'%s': %s", path, strerror(errno));
	if (fstat(fileno(rd.file), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(rd.file);
		return config_fail(ctx, -EINVAL, "'%s': %s", path, strerror(EISDIR));
	}
	free(ctx->ini_dir);
	ctx->ini_dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
	if (slash && !ctx->ini_dir) {
		fclose(rd.file);
		return config_nomem(ctx);
	}
	if (ctx->ini_dir && strcmp(ctx->ini_dir, "/") == 0)
		ctx->ini_dir[0] = '\0'; /* "" + "/" + "kernel" = "/kernel" */
	ctx->file = path;
	ctx->line = 0;

	r = ini_parse_stream(config_ini_read, &rd, config_ini_handle, ctx);
	if (r > 0 && (!ctx->err || (unsigned)r < ctx->err_line)) {
		/* A line libinih itself rejected, before any error of ours. */
		free(ctx->err);
		ctx->err = NULL;
		ctx->line = (unsigned)r;
		ctx->spelling = "syntax error";
		config_fail(ctx, -EINVAL, "expected 'key = value', '[vm]' or a comment");
	} else if (r < 0 && !ctx->err) {
		config_nomem(ctx);
	}
	free(rd.buf);
	fclose(rd.file);
	free(ctx->ini_dir);
	ctx->ini_dir = NULL;
	ctx->file = NULL;
	return ctx->err ? ctx->err_code : 0;
}

int config_load_ini(struct vm_config *cfg, const char *path)
{
	/* Standalone, presets resolve against the memory size known at the end of this file. */
	struct config_ctx ctx = { .cfg = cfg, .spelling = "config" };
	int r = config_ini_load(&ctx, path);

	if (r == 0)
		config_resolve_shares(&ctx);
	config_report(&ctx);
	return r == -ENOMEM || r == -ENOENT ? r : r < 0 ? -EINVAL : 0;
}
