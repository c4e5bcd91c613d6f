/* The virtio-balloon device in a running VM (--balloon): puts the device on the PCI bus, polls the
 * guest's stats on a timer, and raises BALLOON_CHANGE on QMP, at most one per second as QEMU
 * throttles it (the first at once, later ones coalesced to the latest value). */
#include <kvmm/balloon.h>
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/qmp.h>
#include <kvmm/virtio.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EVENT_PERIOD_NS 1000000000ll /* QEMU: BALLOON_CHANGE at most once a second */

struct balloon_dev {
	struct vm *vm;
	struct balloon *b;
	int stats_fd, event_fd; /* timerfds, read on the loop */
	bool added;

	pthread_mutex_t ev_lock;
	int64_t ev_last;        /* CLOCK_MONOTONIC ns of the last event sent */
	bool ev_pending;
	uint64_t ev_value;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void send_change(struct balloon_dev *bd, uint64_t logical)
{
	json_t *data;

	if (!bd->vm->qmp)
		return;
	data = json_pack("{s:I}", "actual", (json_int_t)logical);
	if (data)
		qmp_server_event(bd->vm->qmp, "BALLOON_CHANGE", data);
	json_decref(data);
}

/* vCPU thread, transport lock held: the guest wrote `actual`. */
static void actual_changed(void *opaque, uint64_t logical)
{
	struct balloon_dev *bd = opaque;
	int64_t now = now_ns();

	pthread_mutex_lock(&bd->ev_lock);
	bd->ev_value = logical;
	if (!bd->ev_pending && now - bd->ev_last >= EVENT_PERIOD_NS) {
		bd->ev_last = now;
		send_change(bd, logical);
	} else if (!bd->ev_pending) {
		int64_t due = bd->ev_last + EVENT_PERIOD_NS;
		struct itimerspec its = { .it_value = { .tv_sec = due / 1000000000ll,
							.tv_nsec = due % 1000000000ll } };

		bd->ev_pending = true;
		timerfd_settime(bd->event_fd, TFD_TIMER_ABSTIME, &its, NULL);
	}
	pthread_mutex_unlock(&bd->ev_lock);
}

static void event_timer(void *opaque, uint32_t events)
{
	struct balloon_dev *bd = opaque;
	uint64_t ticks;

	(void)events;
	if (read(bd->event_fd, &ticks, sizeof(ticks)) < 0)
		return;
	pthread_mutex_lock(&bd->ev_lock);
	if (bd->ev_pending) {
		bd->ev_pending = false;
		bd->ev_last = now_ns();
		send_change(bd, bd->ev_value);
	}
	pthread_mutex_unlock(&bd->ev_lock);
}

static void interval_changed(void *opaque, unsigned seconds)
{
	struct balloon_dev *bd = opaque;
	struct itimerspec its = { .it_interval = { .tv_sec = seconds },
				  .it_value = { .tv_sec = seconds } };

	if (timerfd_settime(bd->stats_fd, 0, &its, NULL) < 0)
		log_warn("virtio-balloon: stats timer: %s", strerror(errno));
}

static void stats_timer(void *opaque, uint32_t events)
{
	struct balloon_dev *bd = opaque;
	uint64_t ticks;

	(void)events;
	if (read(bd->stats_fd, &ticks, sizeof(ticks)) < 0)
		return;
	balloon_stats_request(bd->b);
}

static int watch_timer(struct balloon_dev *bd, int *fd, loop_fn fn)
{
	*fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	return loop_add(bd->vm->loop, *fd, EPOLLIN, fn, bd);
}

int balloon_init(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	struct balloon_opts o = { .deflate_on_oom = cfg->balloon_deflate_on_oom,
				  .free_page_reporting = cfg->balloon_free_page_reporting,
				  .stats_interval = cfg->balloon_stats_interval,
				  .mm = vm->memmgr };
	struct balloon_dev *bd;
	int r;

	if (!cfg->balloon)
		return 0;
	bd = calloc(1, sizeof(*bd));
	if (!bd)
		return -ENOMEM;
	bd->vm = vm;
	bd->stats_fd = bd->event_fd = -1;
	bd->ev_last = now_ns() - EVENT_PERIOD_NS;
	pthread_mutex_init(&bd->ev_lock, NULL);
	vm->balloon_dev = bd;
	r = balloon_create(&vm->mem, &o,
			   &(struct balloon_hooks){ .actual_changed = actual_changed,
						    .interval_changed = interval_changed,
						    .opaque = bd },
			   &bd->b);
	if (r < 0)
		goto fail;
	r = watch_timer(bd, &bd->stats_fd, stats_timer);
	if (r == 0)
		r = watch_timer(bd, &bd->event_fd, event_timer);
	if (r < 0)
		goto fail;
	r = virtio_pci_add(vm, balloon_virtio(bd->b));
	if (r < 0)
		goto fail;
	bd->added = true;
	vm->balloon = bd->b;
	if (o.stats_interval)
		interval_changed(bd, o.stats_interval);
	log_info("virtio-balloon: stats every %us%s%s", o.stats_interval,
		 o.deflate_on_oom ? ", deflate-on-oom" : "",
		 o.free_page_reporting ? ", free page reporting" : "");
	return 0;
fail:
	log_error("virtio-balloon: %s", strerror(-r));
	return r;
}

void balloon_exit(struct vm *vm)
{
	struct balloon_dev *bd = vm->balloon_dev;
	int fds[2];

	if (!bd)
		return;
	fds[0] = bd->stats_fd;
	fds[1] = bd->event_fd;
	vm->balloon = NULL;
	if (bd->added)
		virtio_pci_exit(balloon_virtio(bd->b));
	for (unsigned i = 0; i < 2; i++) {
		if (fds[i] < 0)
			continue;
		loop_del(vm->loop, fds[i]);
		close(fds[i]);
	}
	if (bd->b)
		balloon_destroy(bd->b);
	pthread_mutex_destroy(&bd->ev_lock);
	free(bd);
	vm->balloon_dev = NULL;
}
