/* tests/support/looprunner.h: a loop on a thread, stopped through an eventfd it watches. */
#include "looprunner.h"

#include <kvmm/loop.h>

#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void stop_cb(void *opaque, uint32_t events)
{
	struct loop_runner *r = opaque;
	uint64_t v;

	(void)events;
	cr_assert_eq(read(r->stop_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	loop_stop(r->lp);
}

static void *loop_main(void *arg)
{
	loop_run(((struct loop_runner *)arg)->lp);
	return NULL;
}

void loop_runner_init(struct loop_runner *r)
{
	*r = (struct loop_runner){ .stop_fd = -1 };
	cr_assert_eq(loop_create(&r->lp), 0);
	r->stop_fd = eventfd(0, EFD_CLOEXEC);
	cr_assert_geq(r->stop_fd, 0);
	cr_assert_eq(loop_add(r->lp, r->stop_fd, EPOLLIN, stop_cb, r), 0);
}

void loop_runner_go(struct loop_runner *r)
{
	cr_assert_eq(pthread_create(&r->thread, NULL, loop_main, r), 0);
	r->running = true;
}

void loop_runner_halt(struct loop_runner *r)
{
	uint64_t one = 1;

	if (!r->running)
		return;
	cr_assert_eq(write(r->stop_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_join(r->thread, NULL);
	r->running = false;
}

void loop_runner_free(struct loop_runner *r)
{
	loop_runner_halt(r);
	loop_del(r->lp, r->stop_fd);
	close(r->stop_fd);
	loop_destroy(r->lp);
	r->lp = NULL;
}
