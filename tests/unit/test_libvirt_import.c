/* `kvmm import-libvirt` (kvmm/libvirt_import.h): domain XML files under tests/unit/data/libvirt/
 * mapped to `kvmm run` options, checked option by option and through config_parse_run; what has
 * no effect is listed, unsupported devices, malformed XML and wrong units are refused. */
#include <kvmm/config.h>
#include <kvmm/libvirt_import.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1ull << 20)

static int load(const char *name, struct libvirt_import *imp)
{
	char src[] = __FILE__, path[512], *xml;
	FILE *f;
	long len;
	int r;

	snprintf(path, sizeof(path), "%s/data/libvirt/%s", dirname(src), name);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	xml = malloc((size_t)len + 1);
	cr_assert_eq(fread(xml, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	r = libvirt_import_parse(xml, (size_t)len, imp);
	free(xml);
	return r;
}

/* The value after option opt, or "" for a flag, or NULL when absent. */
static const char *opt(const struct libvirt_import *imp, const char *o)
{
	for (int i = 1; i < imp->argc; i++) {
		if (strcmp(imp->argv[i], o) == 0)
			return i + 1 < imp->argc && imp->argv[i + 1][0] != '-' ? imp->argv[i + 1] : "";
		if (strncmp(imp->argv[i], o, strlen(o)) == 0 && imp->argv[i][strlen(o)] == '=')
			return imp->argv[i] + strlen(o) + 1;
	}
	return NULL;
}

static bool listed(const struct libvirt_import *imp, const char *what)
{
	return imp->unmapped && strstr(imp->unmapped, what);
}

/* The options must also be valid `kvmm run` options (kernel files aside). */
static void parses_as_run(struct libvirt_import *imp)
{
	struct vm_config cfg;
	char kernel[] = "/tmp/kvmm-import-kernel-XXXXXX";
	int fd = mkstemp(kernel);

	cr_assert_geq(fd, 0);
	close(fd);
	for (int i = 1; i < imp->argc; i++)
		if (!strcmp(imp->argv[i - 1], "--kernel") || !strcmp(imp->argv[i - 1], "--initrd")) {
			free(imp->argv[i]);
			imp->argv[i] = strdup(kernel);
		}
	config_init(&cfg);
	cr_assert_eq(config_parse_run(&cfg, imp->argc, imp->argv), 0);
	config_free(&cfg);
	unlink(kernel);
}

Test(libvirt_import, libvirt_trace_domain, .timeout = 10)
{
	struct libvirt_import imp;

	cr_assert_eq(load("bal.xml", &imp), 0, "%s", imp.error);
	cr_assert_str_eq(imp.argv[0], "run");
	cr_assert_str_eq(opt(&imp, "--name"), "bal");
	cr_assert_str_eq(opt(&imp, "--memory"), "1073741824");
	cr_assert_str_eq(opt(&imp, "--cpus"), "1");
	cr_assert_str_eq(opt(&imp, "--kernel"), "/inner/vmlinuz");
	cr_assert_str_eq(opt(&imp, "--initrd"), "/verify/balloon-guest.gz");
	cr_assert_str_eq(opt(&imp, "--append"), "console=ttyS0 quiet");
	cr_assert_str_eq(opt(&imp, "--serial"), "file:/var/log/libvirt/qemu/bal-serial.log");
	cr_assert_str_eq(opt(&imp, "--balloon"), "stats-interval=2");
	cr_assert_not_null(opt(&imp, "--no-reboot"));   /* on_reboot destroy */
	cr_assert_null(opt(&imp, "--mem-limit"));
	cr_assert(listed(&imp, "os/type@machine"));
	cr_assert(listed(&imp, "devices/emulator"));
	cr_assert(listed(&imp, "on_crash"));
	cr_assert_not(listed(&imp, "acpi"));
	parses_as_run(&imp);
	libvirt_import_free(&imp);
}

Test(libvirt_import, nosharepages_hugepages, .timeout = 10)
{
	struct libvirt_import imp;

	cr_assert_eq(load("hugepages.xml", &imp), 0, "%s", imp.error);
	cr_assert_str_eq(opt(&imp, "--mem-share"), "off");
	cr_assert_str_eq(opt(&imp, "--mem-backend"), "hugetlb");
	cr_assert_str_eq(opt(&imp, "--memory"), "2147483648");
	cr_assert_str_eq(opt(&imp, "--serial"), "stdio");      /* console pty */
	cr_assert_null(opt(&imp, "--balloon"));
	cr_assert(listed(&imp, "memoryBacking/locked"));
	parses_as_run(&imp);
	libvirt_import_free(&imp);
}

Test(libvirt_import, memtune, .timeout = 10)
{
	struct libvirt_import imp;

	cr_assert_eq(load("memtune.xml", &imp), 0, "%s", imp.error);
	cr_assert_str_eq(opt(&imp, "--memory"), "1073741824"); /* KiB by default */
	/* soft_limit 640M binds: 640M - overhead 12M (8M + 1G/256) - margin 20M (640M/32). */
	cr_assert_eq(strtoull(opt(&imp, "--mem-limit"), NULL, 10), 608 * MIB);
	/* min_guarantee 256M - overhead. */
	cr_assert_eq(strtoull(opt(&imp, "--mem-reservation"), NULL, 10), 244 * MIB);
	cr_assert_str_eq(opt(&imp, "--mem-backend"), "memfd");
	cr_assert_str_eq(opt(&imp, "--serial"), "unix:/run/tuned.sock");
	cr_assert_null(opt(&imp, "--balloon"));                /* model none */
	cr_assert_null(opt(&imp, "--no-reboot"));              /* on_reboot restart */
	cr_assert(listed(&imp, "memtune/swap_hard_limit"));
	cr_assert(listed(&imp, "memoryBacking/access"));
	cr_assert(listed(&imp, "currentMemory"));
	parses_as_run(&imp);
	libvirt_import_free(&imp);
}

Test(libvirt_import, autodeflate_free_page_reporting, .timeout = 10)
{
	struct libvirt_import imp;

	cr_assert_eq(load("balloon.xml", &imp), 0, "%s", imp.error);
	cr_assert_str_eq(opt(&imp, "--balloon"), "deflate-on-oom,free-page-reporting,stats-interval=5");
	cr_assert(listed(&imp, "memballoon/address"));
	cr_assert(listed(&imp, "devices/controller[usb]"));
	cr_assert(listed(&imp, "devices/input[keyboard]"));
	cr_assert_not(listed(&imp, "pci"));
	parses_as_run(&imp);
	libvirt_import_free(&imp);
}

Test(libvirt_import, unsupported_devices_named, .timeout = 10)
{
	struct libvirt_import imp;

	cr_assert_eq(load("unsupported.xml", &imp), -EINVAL);
	cr_assert(strstr(imp.error, "<disk>"), "%s", imp.error);
	cr_assert(strstr(imp.error, "<interface>"), "%s", imp.error);
	libvirt_import_free(&imp);
}

Test(libvirt_import, malformed_xml, .timeout = 10)
{
	struct libvirt_import imp;

	cr_assert_eq(load("malformed.xml", &imp), -EINVAL);
	cr_assert(strstr(imp.error, "not well-formed"), "%s", imp.error);
	libvirt_import_free(&imp);
	cr_assert_eq(libvirt_import_parse("", 0, &imp), -EINVAL);
	libvirt_import_free(&imp);
	cr_assert_eq(libvirt_import_parse("<vm/>", 5, &imp), -EINVAL);
	cr_assert(strstr(imp.error, "<vm>"), "%s", imp.error);
	libvirt_import_free(&imp);
}

Test(libvirt_import, wrong_units, .timeout = 10)
{
	struct libvirt_import imp;
	const char *big = "<domain><memory unit='EiB'>99</memory><os><kernel>/k</kernel></os></domain>";
	const char *neg = "<domain><memory>-5</memory><os><kernel>/k</kernel></os></domain>";

	cr_assert_eq(load("badunit.xml", &imp), -EINVAL);
	cr_assert(strstr(imp.error, "furlongs"), "%s", imp.error);
	libvirt_import_free(&imp);
	cr_assert_eq(libvirt_import_parse(big, strlen(big), &imp), -EINVAL);
	cr_assert(strstr(imp.error, "too large"), "%s", imp.error);
	libvirt_import_free(&imp);
	cr_assert_eq(libvirt_import_parse(neg, strlen(neg), &imp), -EINVAL);
	libvirt_import_free(&imp);
}

Test(libvirt_import, needs_kernel_and_memory, .timeout = 10)
{
	struct libvirt_import imp;
	const char *nokernel = "<domain><memory>1024</memory><os><boot dev='hd'/></os></domain>";
	const char *nomem = "<domain><os><kernel>/k</kernel></os></domain>";

	cr_assert_eq(libvirt_import_parse(nokernel, strlen(nokernel), &imp), -EINVAL);
	cr_assert(strstr(imp.error, "kernel"), "%s", imp.error);
	libvirt_import_free(&imp);
	cr_assert_eq(libvirt_import_parse(nomem, strlen(nomem), &imp), -EINVAL);
	cr_assert(strstr(imp.error, "<memory>"), "%s", imp.error);
	libvirt_import_free(&imp);
}

Test(libvirt_import, sizes, .timeout = 10)
{
	uint64_t b;

	cr_assert_eq(libvirt_parse_size("4", NULL, &b), 0);
	cr_assert_eq(b, 4096);
	cr_assert_eq(libvirt_parse_size("1", "KB", &b), 0);
	cr_assert_eq(b, 1000);
	cr_assert_eq(libvirt_parse_size("1", "mib", &b), 0);
	cr_assert_eq(b, MIB);
	cr_assert_eq(libvirt_parse_size("3", "bytes", &b), 0);
	cr_assert_eq(b, 3);
	cr_assert_eq(libvirt_parse_size("2", "G", &b), 0);
	cr_assert_eq(b, 2ull << 30);
	cr_assert_eq(libvirt_parse_size("1.5", "G", &b), -EINVAL);
	cr_assert_eq(libvirt_parse_size("", "G", &b), -EINVAL);
	cr_assert_eq(libvirt_parse_size("1", "parsecs", &b), -EINVAL);
	cr_assert_eq(libvirt_parse_size("16", "EiB", &b), -ERANGE);
	cr_assert_eq(libvirt_parse_size(NULL, NULL, &b), -EINVAL);
}
