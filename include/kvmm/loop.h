/* The main thread's epoll event loop (src/core/loop.c). Only the loop thread adds, removes or runs
 * handlers; other threads reach it through the ctl queue (kvmm/ctl.h). */
#ifndef KVMM_LOOP_H
#define KVMM_LOOP_H

#include <stdint.h>

struct loop;
typedef void (*loop_fn)(void *opaque, uint32_t events); /* events: EPOLLIN, EPOLLHUP, ... */

int loop_create(struct loop **out);
void loop_destroy(struct loop *l);
/* -EEXIST when fd is already watched. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque);
int loop_del(struct loop *l, int fd);
/* Runs handlers until loop_stop(); 0, or -errno if epoll itself fails. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
