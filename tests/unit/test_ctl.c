#include <kvmm/ctl.h>
#include <kvmm/loop.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

struct seen {
	struct loop *loop;
	int order[8];
	int n;
};

static void on_cmd(void *opaque, const struct ctl_cmd *cmd)
{
	struct seen *s = opaque;

	s->order[s->n++] = cmd->arg;
	if (cmd->arg == 3)
		loop_stop(s->loop);
}

static void *poster(void *arg)
{
	struct ctl *c = arg;

	for (int i = 1; i <= 3; i++) {
		struct ctl_cmd cmd = { .op = CTL_STOP, .arg = i };

		cr_assert_eq(ctl_post(c, &cmd), 0);
	}
	return NULL;
}

Test(ctl, commands_from_another_thread_run_on_the_loop_in_order, .timeout = 10)
{
	struct seen s = { 0 };
	struct ctl c;
	pthread_t t;

	cr_assert_eq(loop_create(&s.loop), 0);
	cr_assert_eq(ctl_init(&c, s.loop, on_cmd, &s), 0);
	pthread_create(&t, NULL, poster, &c);
	cr_assert_eq(loop_run(s.loop), 0);
	pthread_join(t, NULL);
	cr_expect_eq(s.n, 3);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(s.order[i], i + 1);
	ctl_destroy(&c);
	loop_destroy(s.loop);
}

Test(loop, add_twice_is_refused, .timeout = 10)
{
	struct loop *l;
	int fds[2];

	cr_assert_eq(loop_create(&l), 0);
	cr_assert_eq(pipe(fds), 0);
	cr_expect_eq(loop_add(l, fds[0], 1, NULL, NULL), 0);
	cr_expect_eq(loop_add(l, fds[0], 1, NULL, NULL), -EEXIST);
	cr_expect_eq(loop_del(l, fds[0]), 0);
	cr_expect_eq(loop_del(l, fds[0]), -ENOENT);
	close(fds[0]);
	close(fds[1]);
	loop_destroy(l);
}
