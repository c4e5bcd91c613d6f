/* `kvmm import-libvirt DOMAIN.xml [kvmm run options...]` (src/libvirt/import.c): a libvirt domain
 * definition turned into `kvmm run` options, then run as `kvmm run` would (the options after the
 * file override the domain's). What kvmm cannot map is never dropped silently: elements and
 * attributes without an effect are listed in one warning, devices kvmm lacks are an error naming
 * them. docs/libvirt.md, "kvmm import-libvirt", has the table. */
#ifndef KVMM_LIBVIRT_IMPORT_H
#define KVMM_LIBVIRT_IMPORT_H

#include <stddef.h>
#include <stdint.h>

struct libvirt_import {
	char **argv;           /* "run", then options, NULL-terminated */
	int argc;
	char *unmapped;        /* "a, b@attr, c" (what has no effect), NULL when everything maps */
	char error[512];       /* why the domain cannot run, when parsing failed */
};

/* Parses a domain XML document. 0, or -EINVAL (malformed XML, wrong units or values, devices
 * kvmm lacks, no direct kernel boot) with out->error set; -ENOMEM. libvirt_import_free after
 * either. */
int libvirt_import_parse(const char *xml, size_t len, struct libvirt_import *out);
void libvirt_import_free(struct libvirt_import *imp);

/* A libvirt size: value and unit (NULL: KiB) as libvirt reads them (b, bytes, KB, k, KiB, MB, M,
 * MiB, GB, G, GiB, TB, T, TiB, PB, P, PiB, EB, E, EiB). -EINVAL for a bad number or unit,
 * -ERANGE when it does not fit in 64 bits. */
int libvirt_parse_size(const char *value, const char *unit, uint64_t *bytes);

/* The subcommand: argv[0] is "import-libvirt", argv[1] the file, the rest `kvmm run` options;
 * `--print` prints the equivalent `kvmm run` command line instead of running it. Returns kvmm's
 * exit status (2 for a domain kvmm cannot run). */
int libvirt_import_main(int argc, char **argv);

#endif
