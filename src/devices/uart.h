/* The 16550A register model behind COM1 (src/devices/uart.c): pure state, no file descriptors
 * and no struct vm, so it is unit-tested on its own. src/devices/serial.c is the glue: bus
 * registration, locking, backends and the interrupt line.
 *
 * Transmission is instantaneous: a byte written to THR goes straight to tx() (or, in loopback
 * mode, to the receiver), so LSR.THRE and LSR.TEMT always read as set. The THR-empty interrupt
 * still follows the 16550 rules the Linux 8250 driver probes for (UART_BUG_THRE): it is pending
 * after a THR write completes and when IER.ETBEI goes from 0 to 1, and is cleared by a THR write
 * or by an IIR read that reports it. Not modelled: baud rate timing, the character-timeout
 * indication (received data is reported as IIR 0x04 as soon as one byte is there),
 * break/framing/parity errors, DMA mode. */
#ifndef KVMM_DEVICES_UART_H
#define KVMM_DEVICES_UART_H

#include <stdbool.h>
#include <stdint.h>

#define UART_FIFO_SIZE 16

/* Register offsets (PC16550D datasheet, table II). */
enum uart_reg {
	UART_RBR = 0, /* read, DLAB 0; THR on write; DLL with DLAB 1 */
	UART_IER = 1, /* DLM with DLAB 1 */
	UART_IIR = 2, /* read; FCR on write */
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};
#define UART_THR UART_RBR
#define UART_DLL UART_RBR
#define UART_DLM UART_IER
#define UART_FCR UART_IIR

#define UART_IER_ERBFI 0x01 /* received data available */
#define UART_IER_ETBEI 0x02 /* transmitter holding register empty */
#define UART_IER_ELSI 0x04  /* receiver line status */
#define UART_IER_EDSSI 0x08 /* modem status */

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI 0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_RLSI 0x06
#define UART_IIR_FIFO 0xc0  /* both bits set when FCR enabled the FIFOs */

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR 0x01
#define UART_LSR_OE 0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40

#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_TERI 0x04
#define UART_MSR_DDCD 0x08
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80

struct uart {
	uint8_t ier, fcr, lcr, mcr, scr;
	uint8_t lsr_errors;     /* sticky LSR error bits (OE) until LSR is read */
	uint8_t msr_status;     /* MSR bits 7:4 */
	uint8_t msr_delta;      /* MSR bits 3:0, cleared by reading MSR */
	uint16_t divisor;
	bool thri_pending;
	bool irq_level;

	uint8_t rx[UART_FIFO_SIZE];
	unsigned rx_head, rx_count;

	/* Called with each transmitted byte (not in loopback mode) and at every change of the
	 * interrupt output, from inside uart_read / uart_write / uart_rx_push. */
	void (*tx)(void *opaque, uint8_t byte);
	void (*irq)(void *opaque, bool level);
	void *opaque;
};

/* Power-on state; tx and irq may be NULL. */
void uart_init(struct uart *u, void (*tx)(void *opaque, uint8_t byte),
	       void (*irq)(void *opaque, bool level), void *opaque);

uint8_t uart_read(struct uart *u, unsigned reg);
void uart_write(struct uart *u, unsigned reg, uint8_t val);

/* A byte from the outside world. false when it was lost: the receiver is full (LSR.OE is set) or in
 * loopback mode (the serial input is disconnected from the pins). */
bool uart_rx_push(struct uart *u, uint8_t byte);
/* How many bytes uart_rx_push would accept now: 0 in loopback mode, else the free receive space
 * (16 bytes with the FIFOs enabled, one holding register without). */
unsigned uart_rx_room(const struct uart *u);

bool uart_irq_level(const struct uart *u);

#endif
