/* Virtio PCI transport, KVM glue: queue notifications through ioeventfds (the vCPU does not exit
 * to kvmm; the loop thread reads the eventfd and calls the device), MSI-X vectors through irqfds
 * on GSIs routed as KVM_IRQ_ROUTING_MSI, INTx through vm_irq_line on the function's pin.
 *
 * GSI routing: KVM_SET_GSI_ROUTING replaces the VM's whole table, so the table is kept here for
 * every virtio function at once: KVM's default x86 entries (GSIs 0-15 on the PICs and the IOAPIC,
 * 16-23 on the IOAPIC only; what KVM_CREATE_IRQCHIP installs) plus one MSI entry per unmasked
 * vector. kvmm runs one VM per process, so one table per process. */
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/virtio.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define GSI_FIRST_MSI 24           /* after the IOAPIC's 24 pins */
#define GSI_MAX_MSI 1024
#define ROUTES_DEFAULT (16 * 2 + 8)

struct vkvm;

struct vkvm_queue {
	struct vkvm *k;
	unsigned q;
	int fd;
	uint64_t addr;                 /* where the ioeventfd is assigned, 0: not assigned */
};

struct vkvm {
	struct virtio_pci vp;          /* first: ops get it back with a cast */
	struct vm *vm;
	unsigned intx_gsi;
	struct vkvm_queue qs[VIRTIO_MAX_QUEUES];
	int msi_fd[VIRTIO_MSIX_MAX];
	unsigned gsi[VIRTIO_MSIX_MAX];
};

/* The process's MSI routes, indexed by GSI - GSI_FIRST_MSI. */
static struct {
	pthread_mutex_t lock;
	unsigned next;
	bool used[GSI_MAX_MSI];
	struct kvm_irq_routing_msi msi[GSI_MAX_MSI];
} routes = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int routes_commit(int vm_fd)
{
	struct kvm_irq_routing *t;
	unsigned n = 0;
	int r = 0;

	t = calloc(1, sizeof(*t) + (ROUTES_DEFAULT + GSI_MAX_MSI) * sizeof(t->entries[0]));
	if (!t)
		return -ENOMEM;
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi } };
		if (gsi < 16)
			t->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
								  : KVM_IRQCHIP_PIC_SLAVE,
					       .pin = gsi % 8 } };
	}
	for (unsigned i = 0; i < routes.next; i++)
		if (routes.used[i])
			t->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = GSI_FIRST_MSI + i, .type = KVM_IRQ_ROUTING_MSI,
				.u.msi = routes.msi[i] };
	t->nr = n;
	if (ioctl(vm_fd, KVM_SET_GSI_ROUTING, t) < 0)
		r = -errno;
	free(t);
	return r;
}

static int gsi_alloc(unsigned *gsi)
{
	int r = -ENOSPC;

	pthread_mutex_lock(&routes.lock);
	if (routes.next < GSI_MAX_MSI) {
		*gsi = GSI_FIRST_MSI + routes.next++;
		r = 0;
	}
	pthread_mutex_unlock(&routes.lock);
	return r;
}

/* Routes vector v as its table entry says, or drops the route while it is masked. */
static void kvm_msix_route(struct virtio_pci *vp, unsigned v)
{
	struct vkvm *k = (struct vkvm *)vp;
	struct virtio_msix_entry *e = &vp->msix[v];
	unsigned i = k->gsi[v] - GSI_FIRST_MSI;
	bool on = !(e->ctrl & 1);
	int r;

	pthread_mutex_lock(&routes.lock);
	routes.used[i] = on;
	routes.msi[i] = (struct kvm_irq_routing_msi){ .address_lo = e->addr_lo,
						      .address_hi = e->addr_hi, .data = e->data };
	r = routes_commit(k->vm->vm_fd);
	pthread_mutex_unlock(&routes.lock);
	if (r < 0)
		log_warn("virtio: %s: MSI-X vector %u: KVM_SET_GSI_ROUTING: %s", vp->dev->name, v,
			 strerror(-r));
}

static void kvm_msi(struct virtio_pci *vp, unsigned v)
{
	struct vkvm *k = (struct vkvm *)vp;
	uint64_t one = 1;

	if (write(k->msi_fd[v], &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("virtio: %s: irqfd for vector %u: %s", vp->dev->name, v, strerror(errno));
}

static void kvm_intx(struct virtio_pci *vp, bool level)
{
	struct vkvm *k = (struct vkvm *)vp;
	int r = vm_irq_line(k->vm, k->intx_gsi, level);

	if (r < 0)
		log_warn("virtio: %s: IRQ %u: %s", vp->dev->name, k->intx_gsi, strerror(-r));
}

static int ioeventfd_set(struct vkvm *k, struct vkvm_queue *kq, uint64_t addr, bool assign)
{
	/* len 0 matches writes of any width (KVM_CAP_IOEVENTFD_ANY_LENGTH); else Linux's 16 bits. */
	struct kvm_ioeventfd io = { .addr = addr, .len = 0, .fd = kq->fd,
				    .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN };

	if (ioctl(k->vm->vm_fd, KVM_IOEVENTFD, &io) == 0)
		return 0;
	io.len = 2;
	return ioctl(k->vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

/* Puts queue notifications where BAR 4 is now. A guest may move the BAR; the first kick after
 * that traps (no ioeventfd there yet) and lands here. Under the transport lock. */
static void notify_place(struct vkvm *k)
{
	uint64_t base = k->vp.pci.bars[VIRTIO_PCI_BAR].addr;

	for (unsigned q = 0; q < k->vp.dev->num_queues; q++) {
		struct vkvm_queue *kq = &k->qs[q];
		uint64_t addr = base + VIRTIO_PCI_NOTIFY_OFF + (uint64_t)q * VIRTIO_PCI_NOTIFY_MULT;
		int r;

		if (kq->addr == addr)
			continue;
		if (kq->addr)
			ioeventfd_set(k, kq, kq->addr, false);
		kq->addr = 0;
		if (!base)
			continue;
		r = ioeventfd_set(k, kq, addr, true);
		if (r < 0)
			log_warn("virtio: %s: ioeventfd for queue %u at %#llx: %s", k->vp.dev->name,
				 q, (unsigned long long)addr, strerror(-r));
		else
			kq->addr = addr;
	}
}

static void kvm_notify_trapped(struct virtio_pci *vp, unsigned q)
{
	notify_place((struct vkvm *)vp);
}

static void kvm_reset(struct virtio_pci *vp)
{
	notify_place((struct vkvm *)vp);
}

static void notify_ready(void *opaque, uint32_t events)
{
	struct vkvm_queue *kq = opaque;
	uint64_t n;

	if (read(kq->fd, &n, sizeof(n)) != sizeof(n))
		return;
	virtio_pci_notify(&kq->k->vp, kq->q);
}

static void vkvm_release(struct vkvm *k)
{
	struct virtio_dev *d = k->vp.dev;

	if (k->vp.pci.vm)
		pci_remove(k->vm, &k->vp.pci);
	for (unsigned q = 0; q < d->num_queues; q++) {
		struct vkvm_queue *kq = &k->qs[q];

		if (kq->fd < 0)
			continue;
		if (kq->addr)
			ioeventfd_set(k, kq, kq->addr, false);
		loop_del(k->vm->loop, kq->fd);
		close(kq->fd);
	}
	pthread_mutex_lock(&routes.lock);
	for (unsigned v = 0; v < k->vp.nr_vectors; v++) {
		if (k->msi_fd[v] < 0)
			continue;
		ioctl(k->vm->vm_fd, KVM_IRQFD,
		      &(struct kvm_irqfd){ .fd = (uint32_t)k->msi_fd[v], .gsi = k->gsi[v],
					   .flags = KVM_IRQFD_FLAG_DEASSIGN });
		close(k->msi_fd[v]);
		routes.used[k->gsi[v] - GSI_FIRST_MSI] = false;
	}
	routes_commit(k->vm->vm_fd);
	pthread_mutex_unlock(&routes.lock);
	virtio_pci_destroy(&k->vp);
	free(k);
}

static int wire_queue(struct vkvm *k, unsigned q)
{
	struct vkvm_queue *kq = &k->qs[q];

	kq->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (kq->fd < 0)
		return -errno;
	return loop_add(k->vm->loop, kq->fd, EPOLLIN, notify_ready, kq);
}

/* An irqfd on an unrouted GSI injects nothing; the route is added when the guest unmasks. */
static int wire_vector(struct vkvm *k, unsigned v)
{
	int r = gsi_alloc(&k->gsi[v]);

	if (r < 0)
		return r;
	k->msi_fd[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (k->msi_fd[v] < 0)
		return -errno;
	if (ioctl(k->vm->vm_fd, KVM_IRQFD,
		  &(struct kvm_irqfd){ .fd = (uint32_t)k->msi_fd[v], .gsi = k->gsi[v] }) < 0) {
		r = -errno;
		close(k->msi_fd[v]);
		k->msi_fd[v] = -1;
		return r;
	}
	return 0;
}

int virtio_pci_add(struct vm *vm, struct virtio_dev *d)
{
	struct vkvm *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return -ENOMEM;
	r = virtio_pci_init(&k->vp, d, &vm->mem);
	if (r < 0) {
		free(k);
		return r;
	}
	k->vm = vm;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		k->qs[q] = (struct vkvm_queue){ .k = k, .q = q, .fd = -1 };
	for (unsigned v = 0; v < VIRTIO_MSIX_MAX; v++)
		k->msi_fd[v] = -1;
	k->vp.ops = (struct virtio_pci_ops){ .msi = kvm_msi, .intx = kvm_intx,
					     .msix_route = kvm_msix_route,
					     .notify_trapped = kvm_notify_trapped,
					     .reset = kvm_reset };
	k->vp.opaque = k;

	for (unsigned q = 0; q < d->num_queues; q++) {
		r = wire_queue(k, q);
		if (r < 0)
			goto fail;
	}
	for (unsigned v = 0; v < k->vp.nr_vectors; v++) {
		r = wire_vector(k, v);
		if (r < 0)
			goto fail;
	}
	r = pci_add(vm, &k->vp.pci);
	if (r < 0)
		goto fail;
	/* pci_add wired the pin to this line; the guest's writes to Interrupt Line change nothing. */
	k->intx_gsi = k->vp.pci.cfg[0x3c];
	pthread_mutex_lock(&k->vp.lock);
	notify_place(k);
	pthread_mutex_unlock(&k->vp.lock);
	log_debug("virtio: %s on 00:%02x.0, %u queues, %u MSI-X vectors", d->name, k->vp.pci.slot,
		  d->num_queues, k->vp.nr_vectors);
	return 0;
fail:
	log_error("virtio: %s: cannot set up the PCI transport: %s", d->name, strerror(-r));
	/* Added to the PCI model only as the last step, so nothing there to undo. */
	vkvm_release(k);
	return r;
}

void virtio_pci_exit(struct virtio_dev *d)
{
	struct vkvm *k = (struct vkvm *)d->transport;

	if (!k)
		return;
	vkvm_release(k);
}
