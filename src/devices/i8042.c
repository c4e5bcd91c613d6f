/* The keyboard controller (8042) on ports 0x60 (data) and 0x64 (status / command), kept for what
 * guests use it for without a keyboard: the reset line (command 0xfe, Linux's reboot=k and the
 * fallback of its default reboot path) and the controller probes. No keyboard or mouse sits behind
 * it: bytes sent to them are dropped and nothing answers, and no IRQ 1/12 is raised (every
 * controller reply is polled through the status register). */
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define I8042_DATA 0x60
#define I8042_CMD 0x64

#define I8042_STR_OBF 0x01      /* output buffer full */
#define I8042_STR_SYS 0x04      /* system flag: self-test passed */
#define I8042_STR_CMD 0x08      /* last write went to the command port */
#define I8042_STR_UNLOCKED 0x10 /* keyboard not inhibited */
#define I8042_STR_AUXDATA 0x20  /* output buffer holds mouse data */

#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20
/* Keyboard and mouse interrupts on, system flag, scan-code translation: what firmware leaves. */
#define I8042_CTR_DEFAULT 0x47

/* Output port (command 0xd0/0xd1): bit 0 is the CPU reset line (active low), bit 1 the A20 gate. */
#define I8042_OUTPORT_RESET 0x01
#define I8042_OUTPORT_A20 0x02

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t status, ctr, out, pending;
	bool registered_data, registered_cmd;
};

static void i8042_reply(struct i8042 *k, uint8_t v, bool aux)
{
	k->out = v;
	k->status |= I8042_STR_OBF;
	if (aux)
		k->status |= I8042_STR_AUXDATA;
	else
		k->status &= (uint8_t)~I8042_STR_AUXDATA;
}

/* The controller pulses the CPU's reset line: a system reset (kvmm, like QEMU, resets the whole
 * machine, not just the CPU). */
static void i8042_pulse_reset(struct i8042 *k)
{
	vm_request_reset(k->vm, VM_RESET_GUEST, "i8042 reset");
}

static void i8042_power_on(struct i8042 *k)
{
	k->status = I8042_STR_SYS | I8042_STR_UNLOCKED;
	k->ctr = I8042_CTR_DEFAULT;
	k->out = k->pending = 0;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20: /* read command byte */
		i8042_reply(k, k->ctr, false);
		break;
	case 0x60: /* write command byte: the next data byte */
	case 0xd1: /* write output port */
	case 0xd2: /* write keyboard output buffer */
	case 0xd3: /* write mouse output buffer */
	case 0xd4: /* write to the mouse */
		k->pending = cmd;
		break;
	case 0xa7:
		k->ctr |= I8042_CTR_AUXDIS;
		break;
	case 0xa8:
		k->ctr &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case 0xa9: /* mouse interface test: 0 = no error */
	case 0xab: /* keyboard interface test */
		i8042_reply(k, 0x00, false);
		break;
	case 0xaa: /* controller self-test */
		k->status |= I8042_STR_SYS;
		i8042_reply(k, 0x55, false);
		break;
	case 0xad:
		k->ctr |= I8042_CTR_KBDDIS;
		break;
	case 0xae:
		k->ctr &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case 0xd0: /* read output port */
		i8042_reply(k, I8042_OUTPORT_RESET | I8042_OUTPORT_A20, false);
		break;
	default:
		/* 0xf0-0xff pulse the output port bits whose command bit is 0; bit 0 is reset. */
		if (cmd >= 0xf0 && !(cmd & 0x01))
			i8042_pulse_reset(k);
		else if (cmd < 0xf0)
			log_debug("i8042: command %#x ignored", cmd);
		break;
	}
}

static void i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;

	k->pending = 0;
	switch (cmd) {
	case 0x60:
		k->ctr = v;
		break;
	case 0xd1:
		if (!(v & I8042_OUTPORT_RESET))
			i8042_pulse_reset(k);
		break;
	case 0xd2:
	case 0xd3:
		i8042_reply(k, v, cmd == 0xd3);
		break;
	default:
		/* To the keyboard (or, after 0xd4, the mouse): there is none. */
		break;
	}
}

static void i8042_access(struct i8042 *k, bool cmd_port, uint8_t *data, unsigned len, bool is_write)
{
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&k->lock);
	if (!cmd_port) {
		if (is_write) {
			k->status &= (uint8_t)~I8042_STR_CMD;
			i8042_data(k, data[0]);
		} else {
			data[0] = k->out;
			k->status &= (uint8_t)~(I8042_STR_OBF | I8042_STR_AUXDATA);
		}
	} else if (is_write) {
		k->status |= I8042_STR_CMD;
		i8042_command(k, data[0]);
	} else {
		data[0] = k->status;
	}
	pthread_mutex_unlock(&k->lock);
}

static void i8042_data_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	(void)offset;
	i8042_access(opaque, false, data, len, is_write);
}

static void i8042_cmd_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	(void)offset;
	i8042_access(opaque, true, data, len, is_write);
}

int i8042_init(struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return -ENOMEM;
	k->vm = vm;
	pthread_mutex_init(&k->lock, NULL);
	i8042_power_on(k);
	vm->i8042 = k;
	/* Two single ports, so 0x61 (PC speaker / NMI status) stays free for its own owner. */
	r = bus_register(&vm->pio, I8042_DATA, 1, i8042_data_io, k, "i8042");
	if (r < 0)
		goto fail;
	k->registered_data = true;
	r = bus_register(&vm->pio, I8042_CMD, 1, i8042_cmd_io, k, "i8042");
	if (r < 0)
		goto fail;
	k->registered_cmd = true;
	return 0;
fail:
	log_error("i8042: cannot register ports 0x60/0x64: %s", strerror(-r));
	i8042_exit(vm);
	return r;
}

void i8042_exit(struct vm *vm)
{
	struct i8042 *k = vm->i8042;

	if (!k)
		return;
	if (k->registered_data)
		bus_unregister(&vm->pio, I8042_DATA);
	if (k->registered_cmd)
		bus_unregister(&vm->pio, I8042_CMD);
	pthread_mutex_destroy(&k->lock);
	free(k);
	vm->i8042 = NULL;
}

void i8042_reset(struct vm *vm)
{
	struct i8042 *k = vm->i8042;

	pthread_mutex_lock(&k->lock);
	i8042_power_on(k);
	pthread_mutex_unlock(&k->lock);
}
