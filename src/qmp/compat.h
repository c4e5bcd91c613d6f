/* Internals of the QMP answers libvirt's QEMU driver needs (src/qmp/: probe.c the VM-less probe
 * commands, qom.c the QOM tree and the domain monitor's commands, schema.c query-qmp-schema,
 * cpu.c the vCPU model). */
#ifndef KVMM_QMP_COMPAT_H
#define KVMM_QMP_COMPAT_H

#include <kvmm/qmp.h>

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct vm;

/* The QOM names kvmm answers with: one machine type (QEMU's i440fx name, so libvirt applies its
 * PC rules: pci.0, isa-serial, memory-backend=pc.ram) and one CPU type. */
#define COMPAT_MACHINE "pc-i440fx-7.2"
#define COMPAT_MACHINE_ALIAS "pc"
#define COMPAT_CPU_TYPE "host-x86_64-cpu"
#define COMPAT_CPU_MAX 255

/* cpu.c */
struct compat_cpu_ident {
	char vendor[13];
	char model_id[49];
	unsigned family, model, stepping;
};
const struct kvm_cpuid2 *compat_cpu_host(int kvm_fd); /* NULL without KVM; cached */
size_t compat_cpu_nfeatures(void);
const char *compat_cpu_feature_name(size_t i);
/* 0 and *on, or -ENOENT for a name that is no feature (QEMU's legacy '_' spellings accepted). */
int compat_cpu_feature(const struct kvm_cpuid2 *c, const char *name, bool *on);
json_t *compat_cpu_props(const struct kvm_cpuid2 *c); /* {"fpu": true, ...}; c may be NULL */
void compat_cpu_ident(const struct kvm_cpuid2 *c, struct compat_cpu_ident *id);

/* probe.c: the VM-less commands (also on a VM's server). opaque is the VM or NULL. */
extern const struct qmp_command compat_probe_commands[];
/* probe.c: the CPU type's property list (qom-list-properties and qom-list on a vCPU). */
json_t *compat_cpu_qom_list(void);
/* qom.c: whether migrate-set-capabilities turned "events" on (query-migrate-capabilities). */
bool compat_migrate_events(void);
/* qom.c: the QOM tree and the domain monitor's commands; opaque is the VM. */
extern const struct qmp_command compat_domain_commands[];
/* schema.c: query-qmp-schema; opaque is the server. */
extern const struct qmp_command compat_schema_commands[];
/* The whole SchemaInfo list for the server's tables (new reference, NULL on ENOMEM). */
json_t *compat_schema(struct qmp_server *s);

#endif
