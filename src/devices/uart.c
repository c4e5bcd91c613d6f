#include "uart.h"

#include <string.h>

static unsigned uart_rx_capacity(const struct uart *u)
{
	/* With the FIFOs off the 16550 behaves as a 16450: one receive holding register. */
	return (u->fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

/* The highest-priority pending source as IIR bits 3:0 (datasheet table IV). */
static uint8_t uart_pending(const struct uart *u)
{
	if ((u->ier & UART_IER_ELSI) && u->lsr_errors)
		return UART_IIR_RLSI;
	if ((u->ier & UART_IER_ERBFI) && u->rx_count)
		return UART_IIR_RDI;
	if ((u->ier & UART_IER_ETBEI) && u->thri_pending)
		return UART_IIR_THRI;
	if ((u->ier & UART_IER_EDSSI) && u->msr_delta)
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

/* Called after every state change, so each change of the output is one call of u->irq: ISA IRQ 4
 * is edge-triggered, and a THR write must drop the line before the instant transmission raises it
 * again, or the guest would see no new edge. */
static void uart_update_irq(struct uart *u)
{
	bool level = uart_pending(u) != UART_IIR_NO_INT;

	if (level == u->irq_level)
		return;
	u->irq_level = level;
	if (u->irq)
		u->irq(u->opaque, level);
}

static bool uart_rx_put(struct uart *u, uint8_t byte)
{
	if (u->rx_count >= uart_rx_capacity(u)) {
		/* 16550: the FIFO keeps its contents, the new character is lost. */
		u->lsr_errors |= UART_LSR_OE;
		uart_update_irq(u);
		return false;
	}
	u->rx[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = byte;
	u->rx_count++;
	uart_update_irq(u);
	return true;
}

/* MSR bits 7:4: CTS, DSR, DCD asserted by the (absent) peer; in loopback mode they follow RTS, DTR,
 * OUT2 and RI follows OUT1 (datasheet, MCR bit 4). */
static uint8_t uart_msr_lines(const struct uart *u)
{
	uint8_t m = u->mcr, s = 0;

	if (!(m & UART_MCR_LOOP))
		return UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD;
	if (m & UART_MCR_RTS)
		s |= UART_MSR_CTS;
	if (m & UART_MCR_DTR)
		s |= UART_MSR_DSR;
	if (m & UART_MCR_OUT1)
		s |= UART_MSR_RI;
	if (m & UART_MCR_OUT2)
		s |= UART_MSR_DCD;
	return s;
}

static void uart_set_msr_lines(struct uart *u, uint8_t lines)
{
	uint8_t changed = lines ^ u->msr_status;

	if (changed & UART_MSR_CTS)
		u->msr_delta |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		u->msr_delta |= UART_MSR_DDSR;
	if (changed & UART_MSR_DCD)
		u->msr_delta |= UART_MSR_DDCD;
	/* TERI: only the trailing edge of RI (1 -> 0). */
	if ((u->msr_status & UART_MSR_RI) && !(lines & UART_MSR_RI))
		u->msr_delta |= UART_MSR_TERI;
	u->msr_status = lines;
}

void uart_init(struct uart *u, void (*tx)(void *opaque, uint8_t byte),
	       void (*irq)(void *opaque, bool level), void *opaque)
{
	memset(u, 0, sizeof(*u));
	u->tx = tx;
	u->irq = irq;
	u->opaque = opaque;
	u->divisor = 12; /* 9600 baud from the PC's 1.8432 MHz clock; only read back */
	u->msr_status = uart_msr_lines(u);
}

static uint8_t uart_read_rbr(struct uart *u)
{
	uint8_t byte;

	if (!u->rx_count)
		return 0;
	byte = u->rx[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
	u->rx_count--;
	uart_update_irq(u);
	return byte;
}

static uint8_t uart_read_iir(struct uart *u)
{
	uint8_t id = uart_pending(u);

	if (id == UART_IIR_THRI) {
		/* Reading IIR while it reports THRE is one of the two ways to clear that source. */
		u->thri_pending = false;
		uart_update_irq(u);
	}
	return id | ((u->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0);
}

static uint8_t uart_read_lsr(struct uart *u)
{
	uint8_t lsr = UART_LSR_THRE | UART_LSR_TEMT | u->lsr_errors;

	if (u->rx_count)
		lsr |= UART_LSR_DR;
	if (u->lsr_errors) {
		u->lsr_errors = 0;
		uart_update_irq(u);
	}
	return lsr;
}

static uint8_t uart_read_msr(struct uart *u)
{
	uint8_t msr = u->msr_status | u->msr_delta;

	if (u->msr_delta) {
		u->msr_delta = 0;
		uart_update_irq(u);
	}
	return msr;
}

uint8_t uart_read(struct uart *u, unsigned reg)
{
	bool dlab = u->lcr & UART_LCR_DLAB;

	switch (reg & 7) {
	case UART_RBR:
		return dlab ? (uint8_t)u->divisor : uart_read_rbr(u);
	case UART_IER:
		return dlab ? (uint8_t)(u->divisor >> 8) : u->ier;
	case UART_IIR:
		return uart_read_iir(u);
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		return uart_read_lsr(u);
	case UART_MSR:
		return uart_read_msr(u);
	default:
		return u->scr;
	}
}

static void uart_write_thr(struct uart *u, uint8_t byte)
{
	u->thri_pending = false;
	uart_update_irq(u);
	if (u->mcr & UART_MCR_LOOP)
		uart_rx_put(u, byte);
	else if (u->tx)
		u->tx(u->opaque, byte);
	/* The byte left at once: THR is empty again, which is a new THRE event. */
	u->thri_pending = true;
	uart_update_irq(u);
}

static void uart_write_ier(struct uart *u, uint8_t val)
{
	uint8_t old = u->ier;

	/* Bits 7:4 are reserved on the 16550A and read as 0 (Linux's autoconfig checks this). */
	u->ier = val & 0x0f;
	/* Enabling ETBEI while THR is empty raises THRE again, even if an IIR read had cleared it:
	 * Linux tests this at startup and otherwise falls back to polling (UART_BUG_THRE). */
	if (!(old & UART_IER_ETBEI) && (u->ier & UART_IER_ETBEI))
		u->thri_pending = true;
	uart_update_irq(u);
}

static void uart_write_fcr(struct uart *u, uint8_t val)
{
	/* Changing the FIFO enable bit resets both FIFOs; the clear bits self-clear. */
	if ((val ^ u->fcr) & UART_FCR_ENABLE)
		val |= UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX;
	if (val & UART_FCR_CLEAR_RX) {
		u->rx_head = 0;
		u->rx_count = 0;
	}
	/* Kept: enable, DMA mode, receiver trigger level (only read back through IIR bits 7:6). */
	u->fcr = val & 0xc9;
	uart_update_irq(u);
}

static void uart_write_mcr(struct uart *u, uint8_t val)
{
	u->mcr = val & 0x1f;
	uart_set_msr_lines(u, uart_msr_lines(u));
	uart_update_irq(u);
}

void uart_write(struct uart *u, unsigned reg, uint8_t val)
{
	bool dlab = u->lcr & UART_LCR_DLAB;

	switch (reg & 7) {
	case UART_THR:
		if (dlab)
			u->divisor = (u->divisor & 0xff00) | val;
		else
			uart_write_thr(u, val);
		break;
	case UART_IER:
		if (dlab)
			u->divisor = (uint16_t)((u->divisor & 0x00ff) | (val << 8));
		else
			uart_write_ier(u, val);
		break;
	case UART_FCR:
		uart_write_fcr(u, val);
		break;
	case UART_LCR:
		u->lcr = val;
		break;
	case UART_MCR:
		uart_write_mcr(u, val);
		break;
	case UART_LSR:
	case UART_MSR:
		/* Read-only on the 16550A (factory test writes are ignored). */
		break;
	default:
		u->scr = val;
		break;
	}
}

bool uart_rx_push(struct uart *u, uint8_t byte)
{
	if (u->mcr & UART_MCR_LOOP)
		return false;
	return uart_rx_put(u, byte);
}

unsigned uart_rx_room(const struct uart *u)
{
	if (u->mcr & UART_MCR_LOOP)
		return 0;
	return uart_rx_capacity(u) - u->rx_count;
}

bool uart_irq_level(const struct uart *u)
{
	return u->irq_level;
}
