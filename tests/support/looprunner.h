/* An event loop (kvmm/loop.h) run on a thread of its own, for unit tests that drive a server
 * (QMP, hostd, a VM's hostd link) over real sockets from the test's thread. Setup failures are
 * Criterion assertions. */
#ifndef KVMM_TEST_LOOPRUNNER_H
#define KVMM_TEST_LOOPRUNNER_H

#include <pthread.h>
#include <stdbool.h>

struct loop;

struct loop_runner {
	struct loop *lp;
	int stop_fd;        /* eventfd: written to end loop_run */
	pthread_t thread;
	bool running;
};

/* A new loop, not running yet: add the server under test to r->lp, then loop_runner_go. */
void loop_runner_init(struct loop_runner *r);
/* Runs the loop on a new thread. */
void loop_runner_go(struct loop_runner *r);
/* Ends loop_run and joins the thread (nothing if not running); loop_runner_go may follow. */
void loop_runner_halt(struct loop_runner *r);
/* Halts and destroys the loop (what was added to it must be gone). */
void loop_runner_free(struct loop_runner *r);

#endif
