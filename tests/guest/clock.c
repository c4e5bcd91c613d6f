/* Time: the TSC, calibrated once against the CMOS RTC's seconds (ports 0x70/0x71), which every
 * VMM we run under emulates. Waiting then needs no port I/O, so an idle guest makes no exits. */
#include "guest.h"

#define RTC_INDEX 0x70
#define RTC_DATA 0x71
#define RTC_SECONDS 0x00
#define RTC_STATUS_A 0x0a
#define RTC_UIP 0x80
/* Give up on an RTC that does not tick within this many TSC cycles (10 s at 3 GHz). */
#define RTC_EDGE_MAX_CYCLES 30000000000ull

static uint64_t tsc_hz;
static uint64_t tsc_base;

static uint8_t rtc_read(uint8_t reg)
{
	outb(RTC_INDEX, reg);
	return inb(RTC_DATA);
}

/* The seconds register, read outside an update cycle (status A bit 7: an update starts within
 * 244 us, so the value read right after UIP is seen clear is stable). The encoding (BCD or
 * binary) does not matter: only changes are used. Returns -1 if UIP never clears. */
static int rtc_seconds(uint64_t deadline)
{
	while (rtc_read(RTC_STATUS_A) & RTC_UIP)
		if (rdtsc() > deadline)
			return -1;
	return rtc_read(RTC_SECONDS);
}

/* Waits for the seconds register to change; returns the TSC right after, or 0 on time-out. */
static uint64_t rtc_next_second(void)
{
	uint64_t deadline = rdtsc() + RTC_EDGE_MAX_CYCLES;
	int s0 = rtc_seconds(deadline), s;

	if (s0 < 0)
		return 0;
	do {
		s = rtc_seconds(deadline);
		if (s < 0 || rdtsc() > deadline)
			return 0;
	} while (s == s0);
	return rdtsc();
}

int clock_calibrate(void)
{
	if (tsc_hz)
		return 0;
	uint64_t t0 = rtc_next_second(), t1 = t0 ? rtc_next_second() : 0;
	if (!t1 || t1 <= t0)
		return -1;
	tsc_hz = t1 - t0;
	tsc_base = t1;
	return 0;
}

uint64_t clock_tsc_hz(void)
{
	return tsc_hz;
}

/* Microseconds since calibration. */
uint64_t clock_now_us(void)
{
	uint64_t t = rdtsc() - tsc_base;

	return t / tsc_hz * 1000000 + t % tsc_hz * 1000000 / tsc_hz;
}
