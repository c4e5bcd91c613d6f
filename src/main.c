/* kvmm: subcommand dispatch only. */
#include <kvmm/config.h>
#include <kvmm/hostd.h>
#include <kvmm/libvirt_import.h>
#include <kvmm/log.h>
#include <kvmm/qmp.h>
#include <kvmm/qemu_args.h>
#include <kvmm/version.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct subcommand {
	const char *name;
	const char *args;
	const char *summary;
	int (*run)(int argc, char **argv);
};

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	int status;

	config_init(&cfg);
	status = config_parse_run(&cfg, argc, argv);
	if (status < 0) {
		config_free(&cfg);
		return status == -EINVAL ? 2 : 1;
	}
	status = cfg.help ? 0 : vm_run(&cfg);
	config_free(&cfg);
	return status;
}

/* KVMM_LOG=error|warn|info|debug sets how much kvmm says about itself (default info). */
static void log_from_env(void)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *v = getenv("KVMM_LOG");

	for (unsigned i = 0; v && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(v, names[i]) == 0)
			log_set_level((enum log_level)i);
}

static const struct subcommand subcommands[] = {
	{ "run", "[options]", "boot a VM (kvmm run --help)", cmd_run },
	{ "qmp", "SOCKET [COMMAND [JSON]]", "send a QMP command, or an interactive prompt", qmp_cli_main },
	{ "top", "--hostd SOCKET [--once]", "live per-VM memory view", top_main },
	{ "hostd", "--socket PATH [options]", "host memory scheduler for all VMs on the machine", hostd_main },
	{ "import-libvirt", "DOMAIN.xml", "run a libvirt domain definition", libvirt_import_main },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: kvmm COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(out, "  %-15s %-30s %s\n", subcommands[i].name, subcommands[i].args,
			subcommands[i].summary);
	fprintf(out, "\n  kvmm --version | --help\n");
}

int main(int argc, char **argv)
{
	log_from_env();
	/* Run as kvmm-qemu-system-x86_64 (a symlink), kvmm reads QEMU's command line (libvirt). */
	if (qemu_front_name(argv[0]))
		return qemu_front_main(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("kvmm %s\n", KVMM_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "kvmm: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
