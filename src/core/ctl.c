#include <kvmm/ctl.h>
#include <kvmm/loop.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void ctl_drain(void *opaque, uint32_t events)
{
	struct ctl *c = opaque;
	struct ctl_cmd *list;
	uint64_t n;

	(void)events;
	if (read(c->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&c->lock);
	list = c->head;
	c->head = NULL;
	c->tail = &c->head;
	pthread_mutex_unlock(&c->lock);
	while (list) {
		struct ctl_cmd *cmd = list;

		list = cmd->next;
		c->fn(c->opaque, cmd);
		free(cmd);
	}
}

int ctl_init(struct ctl *c, struct loop *l, ctl_handler fn, void *opaque)
{
	int r;

	c->head = NULL;
	c->tail = &c->head;
	c->loop = l;
	c->fn = fn;
	c->opaque = opaque;
	pthread_mutex_init(&c->lock, NULL);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0)
		return -errno;
	r = loop_add(l, c->efd, EPOLLIN, ctl_drain, c);
	if (r < 0) {
		close(c->efd);
		c->efd = -1;
	}
	return r;
}

void ctl_destroy(struct ctl *c)
{
	if (c->efd >= 0) {
		loop_del(c->loop, c->efd);
		close(c->efd);
		c->efd = -1;
	}
	while (c->head) {
		struct ctl_cmd *cmd = c->head;

		c->head = cmd->next;
		free(cmd);
	}
	pthread_mutex_destroy(&c->lock);
}

int ctl_post(struct ctl *c, const struct ctl_cmd *cmd)
{
	struct ctl_cmd *copy = malloc(sizeof(*copy));
	uint64_t one = 1;

	if (!copy)
		return -ENOMEM;
	*copy = *cmd;
	copy->next = NULL;
	pthread_mutex_lock(&c->lock);
	*c->tail = copy;
	c->tail = &copy->next;
	pthread_mutex_unlock(&c->lock);
	if (write(c->efd, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}
