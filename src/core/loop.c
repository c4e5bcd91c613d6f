#include <kvmm/loop.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct loop_watch {
	int fd;
	loop_fn fn;
	void *opaque;
	struct loop_watch *next;
};

struct loop {
	int epfd;
	bool stop;
	struct loop_watch *watches;
};

int loop_create(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int err = -errno;

		free(l);
		return err;
	}
	*out = l;
	return 0;
}

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	while (l->watches) {
		struct loop_watch *w = l->watches;

		l->watches = w->next;
		free(w);
	}
	close(l->epfd);
	free(l);
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	struct loop_watch *w;
	struct epoll_event ev = { .events = events };

	for (w = l->watches; w; w = w->next)
		if (w->fd == fd)
			return -EEXIST;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct loop_watch){ fd, fn, opaque, l->watches };
	ev.data.ptr = w;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(w);
		return err;
	}
	l->watches = w;
	return 0;
}

int loop_del(struct loop *l, int fd)
{
	for (struct loop_watch **p = &l->watches; *p; p = &(*p)->next) {
		struct loop_watch *w = *p;

		if (w->fd != fd)
			continue;
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
		*p = w->next;
		/* An event for it may still be in loop_run's current batch: loop_run only calls watches
		 * that are still on the list. */
		free(w);
		return 0;
	}
	return -ENOENT;
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[32];

	l->stop = false;
	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, 32, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			struct loop_watch *w = evs[i].data.ptr;
			bool live = false;

			/* Skip events of watches deleted earlier in this batch. */
			for (struct loop_watch *x = l->watches; x; x = x->next)
				live |= x == w;
			if (live)
				w->fn(w->opaque, evs[i].events);
		}
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}
