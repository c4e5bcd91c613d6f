/* `kvmm import-libvirt DOMAIN.xml [kvmm run options...] [--print]`: reads the file, says in one
 * warning what has no effect, and runs the VM as `kvmm run` with the mapped options followed by
 * the user's (so the user's win). */
#include <kvmm/config.h>
#include <kvmm/libvirt_import.h>
#include <kvmm/log.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (16u << 20)

static char *read_all(const char *path, size_t *len, int *err)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0;

	*len = 0;
	*err = 0;
	if (!f) {
		*err = -errno;
		return NULL;
	}
	for (;;) {
		size_t n;

		if (*len == cap) {
			char *b = cap >= MAX_FILE ? NULL : realloc(buf, cap ? cap * 2 : 65536);

			if (!b) {
				*err = cap >= MAX_FILE ? -EFBIG : -ENOMEM;
				break;
			}
			buf = b;
			cap = cap ? cap * 2 : 65536;
		}
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
		if (n == 0) {
			if (ferror(f))
				*err = -EIO;
			break;
		}
	}
	fclose(f);
	if (*err) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Single quotes for the shell where a value needs them. */
static void print_arg(const char *a)
{
	if (a[0] && !strpbrk(a, " \t\n'\"\\$`!*?;&|<>()[]{}~#")) {
		fputs(a, stdout);
		return;
	}
	putchar('\'');
	for (; *a; a++)
		*a == '\'' ? fputs("'\\''", stdout) : (void)putchar(*a);
	putchar('\'');
}

int libvirt_import_main(int argc, char **argv)
{
	struct libvirt_import imp;
	struct vm_config cfg;
	bool print = false;
	char **args = NULL;
	int nargs = 0, r, status;
	size_t len;
	char *xml;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fprintf(argc < 2 ? stderr : stdout, "usage: kvmm import-libvirt DOMAIN.xml [kvmm run options...] "
			"[--print]\n  runs a libvirt domain definition (direct kernel boot) as `kvmm run`;\n"
			"  --print shows the kvmm run command line instead\n");
		return argc < 2 ? 2 : 0;
	}
	xml = read_all(argv[1], &len, &r);
	if (!xml) {
		fprintf(stderr, "kvmm import-libvirt: %s: %s\n", argv[1],
			r == -EFBIG ? "larger than 16 MiB" : strerror(-r));
		return 2;
	}
	r = libvirt_import_parse(xml, len, &imp);
	free(xml);
	if (r < 0) {
		fprintf(stderr, "kvmm import-libvirt: %s: %s\n", argv[1], r == -ENOMEM ? "out of memory" : imp.error);
		libvirt_import_free(&imp);
		return r == -ENOMEM ? 1 : 2;
	}
	if (imp.unmapped)
		log_warn("import-libvirt %s: no effect under kvmm: %s", argv[1], imp.unmapped);
	args = calloc((size_t)(imp.argc + argc + 1), sizeof(*args));
	if (!args) {
		libvirt_import_free(&imp);
		return 1;
	}
	for (int i = 0; i < imp.argc; i++)
		args[nargs++] = imp.argv[i];
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--print") == 0)
			print = true;
		else
			args[nargs++] = argv[i];
	}
	if (print) {
		fputs("kvmm", stdout);
		for (int i = 0; i < nargs; i++) {
			putchar(' ');
			print_arg(args[i]);
		}
		putchar('\n');
		free(args);
		libvirt_import_free(&imp);
		return 0;
	}
	config_init(&cfg);
	r = config_parse_run(&cfg, nargs, args);
	if (r < 0)
		status = r == -EINVAL ? 2 : 1;
	else
		status = cfg.help ? 0 : vm_run(&cfg);
	config_free(&cfg);
	free(args);
	libvirt_import_free(&imp);
	return status;
}
