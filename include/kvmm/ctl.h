/* The internal command queue (src/core/ctl.c): every front end (signals, the CLI, vCPU threads asking
 * to stop, and later QMP and hostd) acts on a VM by posting a command here; the commands run on the
 * event loop thread in the order they were posted, so VM state has one writer. */
#ifndef KVMM_CTL_H
#define KVMM_CTL_H

#include <pthread.h>

struct loop;

enum ctl_op {
	CTL_STOP,  /* arg: enum vm_exit_reason; arg2: exit code; detail: reason text */
	CTL_RESET, /* arg: enum vm_reset_cause; detail: reason text */
};

struct ctl_cmd {
	enum ctl_op op;
	int arg, arg2;
	char detail[128];
	struct ctl_cmd *next;
};

typedef void (*ctl_handler)(void *opaque, const struct ctl_cmd *cmd);

struct ctl {
	pthread_mutex_t lock;
	struct ctl_cmd *head, **tail;
	int efd;
	struct loop *loop;
	ctl_handler fn;
	void *opaque;
};

int ctl_init(struct ctl *c, struct loop *l, ctl_handler fn, void *opaque);
void ctl_destroy(struct ctl *c);
/* Copies cmd onto the queue and wakes the loop. Safe from any thread, async-signal-unsafe. */
int ctl_post(struct ctl *c, const struct ctl_cmd *cmd);

#endif
