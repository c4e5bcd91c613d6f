#include "../../src/devices/uart.h"

#include <criterion/criterion.h>
#include <string.h>

struct sink {
	uint8_t out[64];
	unsigned n;
	unsigned edges; /* rising edges of the interrupt line */
	bool level;
};

static void sink_tx(void *opaque, uint8_t byte)
{
	struct sink *k = opaque;

	if (k->n < sizeof(k->out))
		k->out[k->n++] = byte;
}

static void sink_irq(void *opaque, bool level)
{
	struct sink *k = opaque;

	cr_assert_neq(level, k->level, "irq callback without a change");
	k->edges += level;
	k->level = level;
}

static struct uart u;
static struct sink k;

static void setup(void)
{
	memset(&k, 0, sizeof(k));
	uart_init(&u, sink_tx, sink_irq, &k);
}

TestSuite(uart, .init = setup, .timeout = 10);

Test(uart, reset_state)
{
	cr_expect_eq(uart_read(&u, UART_IER), 0);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_NO_INT);
	cr_expect_eq(uart_read(&u, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	cr_expect_eq(uart_read(&u, UART_MSR), UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD);
	cr_expect_not(uart_irq_level(&u));
}

Test(uart, divisor_latch_and_thr)
{
	uart_write(&u, UART_LCR, UART_LCR_DLAB | 0x03);
	uart_write(&u, UART_DLL, 0x01);
	uart_write(&u, UART_DLM, 0x02);
	cr_expect_eq(uart_read(&u, UART_DLL), 0x01);
	cr_expect_eq(uart_read(&u, UART_DLM), 0x02);
	cr_expect_eq(k.n, 0, "DLL writes must not transmit");
	cr_expect_eq(uart_read(&u, UART_LCR), UART_LCR_DLAB | 0x03);
	uart_write(&u, UART_LCR, 0x03);
	cr_expect_eq(uart_read(&u, UART_IER), 0, "IER untouched by DLM");
	uart_write(&u, UART_THR, 'h');
	uart_write(&u, UART_THR, 'i');
	cr_assert_eq(k.n, 2);
	cr_expect_eq(memcmp(k.out, "hi", 2), 0);
	uart_write(&u, UART_LCR, UART_LCR_DLAB);
	cr_expect_eq(uart_read(&u, UART_DLL), 0x01, "divisor kept");
}

Test(uart, ier_reserved_bits_read_zero)
{
	uart_write(&u, UART_IER, 0xff);
	cr_expect_eq(uart_read(&u, UART_IER), 0x0f);
}

Test(uart, scratch)
{
	uart_write(&u, UART_SCR, 0xa5);
	cr_expect_eq(uart_read(&u, UART_SCR), 0xa5);
	uart_write(&u, UART_SCR, 0x5a);
	cr_expect_eq(uart_read(&u, UART_SCR), 0x5a);
}

Test(uart, thre_interrupt_semantics)
{
	/* Enabling ETBEI with THR empty raises THRE. */
	uart_write(&u, UART_IER, UART_IER_ETBEI);
	cr_expect(uart_irq_level(&u));
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_THRI);
	/* Reading IIR that reported THRE cleared it. */
	cr_expect_not(uart_irq_level(&u));
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_NO_INT);
	/* Linux's UART_BUG_THRE probe: ETBEI off then on again re-raises it. */
	uart_write(&u, UART_IER, 0);
	uart_write(&u, UART_IER, UART_IER_ETBEI);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_THRI);
	/* A THR write gives a fresh edge (the byte leaves at once). */
	unsigned edges = k.edges;

	uart_write(&u, UART_THR, 'x');
	cr_expect(uart_irq_level(&u));
	cr_expect_eq(k.edges, edges + 1);
	uart_write(&u, UART_THR, 'y');
	cr_expect_eq(k.edges, edges + 2, "each THR write is a new edge");
	/* Turning ETBEI off drops the line. */
	uart_write(&u, UART_IER, 0);
	cr_expect_not(uart_irq_level(&u));
}

Test(uart, thre_pending_without_etbei_does_not_interrupt)
{
	uart_write(&u, UART_THR, 'a');
	cr_expect_not(uart_irq_level(&u));
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_NO_INT);
}

Test(uart, iir_priorities)
{
	uart_write(&u, UART_FCR, UART_FCR_ENABLE);
	uart_write(&u, UART_IER, 0x0f);
	/* THRE (just enabled) and modem status both pending: THRE wins over MSI. */
	uart_write(&u, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS); /* DSR, DCD drop: modem status */
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	/* Only modem status left. */
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_MSI);
	cr_expect_eq(uart_read(&u, UART_MSR), UART_MSR_CTS | UART_MSR_DDSR | UART_MSR_DDCD);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	/* Data received in loopback beats THRE raised by the same write. */
	uart_write(&u, UART_THR, 'a');
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	/* Overrun: receiver line status beats data. */
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		uart_write(&u, UART_THR, 'b');
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);
	cr_expect_eq(uart_read(&u, UART_LSR) & (UART_LSR_OE | UART_LSR_DR), UART_LSR_OE | UART_LSR_DR);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI, "LSR read cleared OE");
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		uart_read(&u, UART_RBR);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	cr_expect_not(uart_irq_level(&u));
}

Test(uart, lsr_bits)
{
	cr_expect_eq(uart_read(&u, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	cr_expect(uart_rx_push(&u, 'z'));
	cr_expect_eq(uart_read(&u, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_DR);
	/* FIFOs off: a 16450 holding register, so a second byte overruns. */
	cr_expect_not(uart_rx_push(&u, 'y'));
	cr_expect_eq(uart_read(&u, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_DR | UART_LSR_OE);
	cr_expect_eq(uart_read(&u, UART_LSR) & UART_LSR_OE, 0, "OE clears on read");
	cr_expect_eq(uart_read(&u, UART_RBR), 'z');
	cr_expect_eq(uart_read(&u, UART_LSR) & UART_LSR_DR, 0);
}

Test(uart, rx_fifo_order_and_overflow)
{
	uart_write(&u, UART_FCR, UART_FCR_ENABLE);
	uart_write(&u, UART_IER, UART_IER_ERBFI);
	cr_expect_eq(uart_rx_room(&u), UART_FIFO_SIZE);
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		cr_expect(uart_rx_push(&u, (uint8_t)('A' + i)));
	cr_expect(uart_irq_level(&u));
	cr_expect_eq(uart_rx_room(&u), 0);
	cr_expect_not(uart_rx_push(&u, '!'));
	cr_expect(uart_read(&u, UART_LSR) & UART_LSR_OE);
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		cr_expect_eq(uart_read(&u, UART_RBR), 'A' + i, "byte %d", i);
	cr_expect_not(uart_irq_level(&u));
	cr_expect_eq(uart_read(&u, UART_LSR) & UART_LSR_DR, 0);
	/* Wrap around the ring. */
	uart_rx_push(&u, '1');
	uart_rx_push(&u, '2');
	cr_expect_eq(uart_read(&u, UART_RBR), '1');
	cr_expect_eq(uart_read(&u, UART_RBR), '2');
}

Test(uart, fcr)
{
	cr_expect_eq(uart_read(&u, UART_IIR) & UART_IIR_FIFO, 0);
	uart_write(&u, UART_FCR, UART_FCR_ENABLE | 0xc0);
	cr_expect_eq(uart_read(&u, UART_IIR) & UART_IIR_FIFO, UART_IIR_FIFO);
	uart_rx_push(&u, 'a');
	uart_rx_push(&u, 'b');
	/* Clear RX keeps the FIFOs enabled. */
	uart_write(&u, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	cr_expect_eq(uart_read(&u, UART_LSR) & UART_LSR_DR, 0);
	cr_expect_eq(uart_read(&u, UART_IIR) & UART_IIR_FIFO, UART_IIR_FIFO);
	/* Disabling the FIFOs empties them. */
	uart_rx_push(&u, 'c');
	uart_write(&u, UART_FCR, 0);
	cr_expect_eq(uart_read(&u, UART_LSR) & UART_LSR_DR, 0);
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_NO_INT);
	cr_expect_eq(uart_rx_room(&u), 1);
}

Test(uart, loopback)
{
	uart_write(&u, UART_FCR, UART_FCR_ENABLE);
	/* Linux's autoconfig check: MCR = LOOP | OUT2 | RTS must read MSR status 0x90. */
	uart_write(&u, UART_MCR, UART_MCR_LOOP | 0x0a);
	cr_expect_eq(uart_read(&u, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_CTS);
	uart_write(&u, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT1);
	cr_expect_eq(uart_read(&u, UART_MSR) & 0xf0, UART_MSR_DSR | UART_MSR_RI);
	uart_write(&u, UART_MCR, UART_MCR_LOOP);
	cr_expect(uart_read(&u, UART_MSR) & UART_MSR_TERI, "RI trailing edge");
	/* Transmitted bytes come back on the receiver, nothing leaves. */
	uart_write(&u, UART_THR, 'L');
	cr_expect_eq(k.n, 0);
	cr_expect(uart_read(&u, UART_LSR) & UART_LSR_DR);
	cr_expect_eq(uart_read(&u, UART_RBR), 'L');
	/* The serial input is disconnected meanwhile. */
	cr_expect_eq(uart_rx_room(&u), 0);
	cr_expect_not(uart_rx_push(&u, 'x'));
	cr_expect_eq(uart_read(&u, UART_LSR) & (UART_LSR_DR | UART_LSR_OE), 0);
	/* Leaving loopback: the lines are the peer's again, output goes out. */
	uart_write(&u, UART_MCR, UART_MCR_OUT2);
	cr_expect_eq(uart_read(&u, UART_MSR) & 0xf0, UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD);
	uart_write(&u, UART_THR, 'o');
	cr_expect_eq(k.n, 1);
}

Test(uart, rx_interrupt_follows_data)
{
	uart_write(&u, UART_FCR, UART_FCR_ENABLE);
	uart_rx_push(&u, 'a');
	cr_expect_not(uart_irq_level(&u), "ERBFI off");
	uart_write(&u, UART_IER, UART_IER_ERBFI);
	cr_expect(uart_irq_level(&u));
	cr_expect_eq(uart_read(&u, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	cr_expect(uart_irq_level(&u), "IIR read does not clear received data");
	cr_expect_eq(uart_read(&u, UART_RBR), 'a');
	cr_expect_not(uart_irq_level(&u));
}

/* The glue (serial.c) with a real event loop and no KVM: a file and a unix-socket backend. */
#include <kvmm/bus.h>
#include <kvmm/config.h>
#include <kvmm/devices.h>
#include <kvmm/loop.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

__attribute__((weak)) int vm_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	(void)vm, (void)gsi, (void)level;
	return 0;
}

__attribute__((weak)) void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int code,
					   const char *detail)
{
	(void)vm, (void)why, (void)code, (void)detail;
}

struct rig {
	struct vm vm;
	struct vm_config cfg;
	char dir[64], path[128];
	pthread_t loop_thread;
	int stop_fd;
	bool running;
};

static void rig_stop_fn(void *opaque, uint32_t events)
{
	struct rig *r = opaque;
	uint64_t v;

	(void)events;
	cr_assert_eq(read(r->stop_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	loop_stop(r->vm.loop);
}

static void *rig_loop(void *opaque)
{
	struct rig *r = opaque;

	loop_run(r->vm.loop);
	return NULL;
}

static void rig_init(struct rig *r, enum serial_kind kind, const char *name)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->dir, "/tmp/kvmm-test-serial-XXXXXX");
	cr_assert_not_null(mkdtemp(r->dir));
	snprintf(r->path, sizeof(r->path), "%s/%s", r->dir, name);
	r->cfg.serial = kind;
	r->cfg.serial_path = r->path;
	r->vm.cfg = &r->cfg;
	bus_init(&r->vm.pio, "pio");
	bus_init(&r->vm.mmio, "mmio");
	cr_assert_eq(loop_create(&r->vm.loop), 0);
	r->stop_fd = eventfd(0, EFD_CLOEXEC);
	cr_assert_eq(loop_add(r->vm.loop, r->stop_fd, EPOLLIN, rig_stop_fn, r), 0);
}

static void rig_start(struct rig *r)
{
	cr_assert_eq(pthread_create(&r->loop_thread, NULL, rig_loop, r), 0);
	r->running = true;
}

static void rig_fini(struct rig *r)
{
	uint64_t one = 1;

	if (r->running) {
		cr_assert_eq(write(r->stop_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
		pthread_join(r->loop_thread, NULL);
	}
	serial_exit(&r->vm);
	cr_expect_eq(r->vm.pio.nr, 0);
	loop_destroy(r->vm.loop);
	close(r->stop_fd);
	bus_destroy(&r->vm.pio);
	bus_destroy(&r->vm.mmio);
	unlink(r->path);
	rmdir(r->dir);
}

static uint8_t com1_in(struct rig *r, unsigned reg)
{
	uint8_t v = 0;

	bus_dispatch(&r->vm.pio, 0x3f8 + reg, &v, 1, false);
	return v;
}

static void com1_out(struct rig *r, unsigned reg, uint8_t v)
{
	bus_dispatch(&r->vm.pio, 0x3f8 + reg, &v, 1, true);
}

/* Reads one received byte as a polling guest would; -1 after two seconds without one. */
static int com1_getc(struct rig *r)
{
	for (int i = 0; i < 2000; i++) {
		if (com1_in(r, UART_LSR) & UART_LSR_DR)
			return com1_in(r, UART_RBR);
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return -1;
}

Test(serial, file_backend_appends_output, .timeout = 10)
{
	struct rig r;
	char buf[16] = { 0 };
	int fd;

	rig_init(&r, SERIAL_FILE, "out.log");
	r.cfg.serial_append = true; /* `kvmm run`'s default, QEMU's append=on */
	fd = open(r.path, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(fd, "old:", 4), 4);
	close(fd);
	cr_assert_eq(serial_init(&r.vm), 0);
	com1_out(&r, UART_THR, 'h');
	com1_out(&r, UART_THR, 'i');
	fd = open(r.path, O_RDONLY);
	cr_assert_eq(read(fd, buf, sizeof(buf) - 1), 6);
	close(fd);
	cr_expect_str_eq(buf, "old:hi");
	rig_fini(&r);
}

/* QEMU's -chardev file without append=on truncates the file at start. */
Test(serial, file_backend_truncates_without_append, .timeout = 10)
{
	struct rig r;
	char buf[16] = { 0 };
	int fd;

	rig_init(&r, SERIAL_FILE, "out.log");
	r.cfg.serial_append = false;
	fd = open(r.path, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(fd, "older output", 12), 12);
	close(fd);
	cr_assert_eq(serial_init(&r.vm), 0);
	com1_out(&r, UART_THR, 'h');
	com1_out(&r, UART_THR, 'i');
	fd = open(r.path, O_RDONLY);
	cr_assert_eq(read(fd, buf, sizeof(buf) - 1), 2);
	close(fd);
	cr_expect_str_eq(buf, "hi");
	rig_fini(&r);
}

Test(serial, file_backend_reports_a_bad_path, .timeout = 10)
{
	struct rig r;

	rig_init(&r, SERIAL_FILE, "missing-dir/out.log");
	cr_expect_eq(serial_init(&r.vm), -ENOENT);
	cr_expect_null(r.vm.serial);
	rig_fini(&r);
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s", strerror(errno));
	return fd;
}

Test(serial, unix_backend_input_output_and_cleanup, .timeout = 10)
{
	struct rig r;
	struct stat st;
	char c = 0;
	int fd;

	rig_init(&r, SERIAL_UNIX, "com1.sock");
	/* A stale socket from an earlier run is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		strcpy(sa.sun_path, r.path);
		cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(fd);
	}
	cr_assert_eq(serial_init(&r.vm), 0);
	cr_assert_eq(stat(r.path, &st), 0);
	cr_expect(S_ISSOCK(st.st_mode));
	cr_expect_eq(st.st_mode & 0777, 0600);
	/* No client yet: output is dropped, the guest goes on. */
	com1_out(&r, UART_THR, '-');
	rig_start(&r);

	fd = unix_connect(r.path);
	cr_assert_eq(write(fd, "ab", 2), 2);
	cr_expect_eq(com1_getc(&r), 'a');
	cr_expect_eq(com1_getc(&r), 'b');
	com1_out(&r, UART_THR, 'y');
	cr_assert_eq(read(fd, &c, 1), 1);
	cr_expect_eq(c, 'y');
	close(fd);

	/* The next client is served after the first left. */
	fd = unix_connect(r.path);
	cr_assert_eq(write(fd, "z", 1), 1);
	cr_expect_eq(com1_getc(&r), 'z');
	close(fd);
	rig_fini(&r);
	cr_expect_neq(access(r.path, F_OK), 0, "socket unlinked at exit");
}

Test(serial, unix_backend_refuses_a_regular_file, .timeout = 10)
{
	struct rig r;
	int fd;

	rig_init(&r, SERIAL_UNIX, "not-a-socket");
	fd = open(r.path, O_WRONLY | O_CREAT, 0644);
	close(fd);
	cr_expect_eq(serial_init(&r.vm), -EEXIST);
	cr_expect_eq(access(r.path, F_OK), 0, "left alone");
	rig_fini(&r);
}

static void *bulk_writer(void *opaque)
{
	int fd = *(int *)opaque;
	uint8_t buf[10000];

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	for (size_t done = 0; done < sizeof(buf);) {
		ssize_t n = write(fd, buf + done, sizeof(buf) - done);

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	return NULL;
}

Test(serial, input_backpressure_loses_nothing, .timeout = 10)
{
	struct rig r;
	pthread_t writer;
	int fd;

	rig_init(&r, SERIAL_UNIX, "bulk.sock");
	cr_assert_eq(serial_init(&r.vm), 0);
	com1_out(&r, UART_FCR, UART_FCR_ENABLE);
	rig_start(&r);
	fd = unix_connect(r.path);
	cr_assert_eq(pthread_create(&writer, NULL, bulk_writer, &fd), 0);
	/* Let the ring fill up and the input pause before the guest starts reading. */
	nanosleep(&(struct timespec){ .tv_nsec = 200000000 }, NULL);
	for (unsigned i = 0; i < 10000; i++) {
		int c = com1_getc(&r);

		cr_assert_eq(c, (uint8_t)(i * 7), "byte %u: %d", i, c);
	}
	cr_expect_eq(com1_in(&r, UART_LSR) & UART_LSR_OE, 0, "no overrun");
	pthread_join(writer, NULL);
	close(fd);
	rig_fini(&r);
}
