/* Private to src/core/config*.c: the option table's types and the error path that config.c (the
 * table, the command line, validation) and config_ini.c (ini files) share. */
#ifndef KVMM_CORE_CONFIG_INTERNAL_H
#define KVMM_CORE_CONFIG_INTERNAL_H

#include <kvmm/config.h>

#include <stdbool.h>

/* Where the value being applied came from and what is pending until every option is read. */
struct config_ctx {
	struct vm_config *cfg;
	unsigned shares_per_mib; /* a preset waiting for the final memory size; 0: absolute */
	const char *spelling;	 /* command line: the option as written ("-m", "--memory") */
	const char *file;	 /* ini: the file being read, NULL on the command line */
	char *ini_dir;		 /* ini: relative paths are resolved against it; NULL: cwd */
	unsigned line;		 /* ini: current line */
	unsigned err_line;	 /* ini: line of the first error */
	char *err;		 /* the first error, printed by whoever drives the parse */
	int err_code;
};

struct config_option {
	const char *name; /* long option and ini key */
	int short_name;
	int has_arg;	  /* getopt_long's no_argument, required_argument, optional_argument */
	bool cli_only;	  /* not an ini key */
	const char *arg;  /* for --help */
	const char *help; /* one line, with the default */
	int (*set)(struct config_ctx *ctx, const char *value);
};

/* Records the first error with its origin prepended; returns code for `return config_fail(...)`. */
int config_fail(struct config_ctx *ctx, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int config_nomem(struct config_ctx *ctx);
/* Prints the recorded error (one line on stderr) and forgets it. */
void config_report(struct config_ctx *ctx);
/* A --mem-shares preset becomes shares once the memory size is final. */
void config_resolve_shares(struct config_ctx *ctx);
/* The option called name (long option and ini key), or NULL. */
const struct config_option *config_find(const char *name);
/* Reads the ini file at path into ctx->cfg (--config FILE.ini, config_load_ini). */
int config_ini_load(struct config_ctx *ctx, const char *path);

#endif
