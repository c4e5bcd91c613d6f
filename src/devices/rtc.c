/* CMOS/RTC on ports 0x70 (index) and 0x71 (data): the model is pure (rtc.h); the glue at the end
 * registers it and feeds it the host's UTC time. */
#include "rtc.h"

#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RTC_PORT 0x70

static bool rtc_is_time_reg(unsigned reg)
{
	switch (reg) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_WEEKDAY:
	case RTC_DAY:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	default:
		return false;
	}
}

static uint8_t rtc_encode(uint8_t b, unsigned v)
{
	return (b & RTC_B_DM_BINARY) ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
}

static unsigned rtc_decode(uint8_t b, uint8_t v)
{
	return (b & RTC_B_DM_BINARY) ? v : (v >> 4) * 10u + (v & 0x0f);
}

/* Fills the time registers with host time + offset in register B's format. */
static void rtc_snapshot(struct rtc_cmos *c, time_t now)
{
	uint8_t b = c->ram[RTC_REG_B];
	time_t t = now + (time_t)c->offset;
	struct tm tm;
	unsigned year;

	if (!gmtime_r(&t, &tm))
		return;
	year = (unsigned)tm.tm_year + 1900;
	c->ram[RTC_SECONDS] = rtc_encode(b, (unsigned)tm.tm_sec);
	c->ram[RTC_MINUTES] = rtc_encode(b, (unsigned)tm.tm_min);
	if (b & RTC_B_24H) {
		c->ram[RTC_HOURS] = rtc_encode(b, (unsigned)tm.tm_hour);
	} else {
		/* 12-hour mode: 12, 1..11 with bit 7 set for PM (MC146818 datasheet, table 3). */
		unsigned h12 = tm.tm_hour % 12 ? (unsigned)tm.tm_hour % 12 : 12;

		c->ram[RTC_HOURS] = (uint8_t)(rtc_encode(b, h12) | (tm.tm_hour >= 12 ? 0x80 : 0));
	}
	c->ram[RTC_WEEKDAY] = rtc_encode(b, (unsigned)tm.tm_wday + 1); /* Sunday = 1 */
	c->ram[RTC_DAY] = rtc_encode(b, (unsigned)tm.tm_mday);
	c->ram[RTC_MONTH] = rtc_encode(b, (unsigned)tm.tm_mon + 1);
	c->ram[RTC_YEAR] = rtc_encode(b, year % 100);
	c->ram[RTC_CENTURY] = rtc_encode(b, year / 100);
}

/* The guest's time registers (in format b) become the new offset to host time. */
static void rtc_commit(struct rtc_cmos *c, uint8_t b, time_t now)
{
	struct tm tm = { 0 };
	uint8_t h = c->ram[RTC_HOURS];
	unsigned hour;
	time_t t;

	if (b & RTC_B_24H) {
		hour = rtc_decode(b, h);
	} else {
		hour = rtc_decode(b, h & 0x7f) % 12;
		if (h & 0x80)
			hour += 12;
	}
	tm.tm_sec = (int)rtc_decode(b, c->ram[RTC_SECONDS]);
	tm.tm_min = (int)rtc_decode(b, c->ram[RTC_MINUTES]);
	tm.tm_hour = (int)hour;
	tm.tm_mday = (int)rtc_decode(b, c->ram[RTC_DAY]);
	tm.tm_mon = (int)rtc_decode(b, c->ram[RTC_MONTH]) - 1;
	tm.tm_year = (int)(rtc_decode(b, c->ram[RTC_CENTURY]) * 100 + rtc_decode(b, c->ram[RTC_YEAR])) -
		     1900;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return;
	c->offset = (int64_t)(t - now);
}

static uint16_t rtc_cap16(uint64_t v)
{
	return v > 0xffff ? 0xffff : (uint16_t)v;
}

void rtc_cmos_init(struct rtc_cmos *c, uint64_t low_top, uint64_t high)
{
	uint64_t ext_kb = low_top > (1 << 20) ? (low_top - (1 << 20)) >> 10 : 0;
	uint64_t mem_16m = low_top > (16 << 20) ? (low_top - (16 << 20)) >> 16 : 0;
	uint64_t mem_4g = high >> 16;
	uint16_t v;

	memset(c, 0, sizeof(*c));
	/* A: 32.768 kHz time base, 1024 Hz rate; B: 24-hour, BCD; D: the battery is good. */
	c->ram[RTC_REG_A] = 0x26;
	c->ram[RTC_REG_B] = RTC_B_24H;
	c->ram[RTC_REG_D] = RTC_D_VRT;

	c->ram[RTC_CMOS_BASE_KB] = 640 & 0xff;
	c->ram[RTC_CMOS_BASE_KB + 1] = 640 >> 8;
	v = rtc_cap16(ext_kb);
	c->ram[RTC_CMOS_EXT_KB] = c->ram[RTC_CMOS_EXT_KB2] = (uint8_t)v;
	c->ram[RTC_CMOS_EXT_KB + 1] = c->ram[RTC_CMOS_EXT_KB2 + 1] = (uint8_t)(v >> 8);
	v = rtc_cap16(mem_16m);
	c->ram[RTC_CMOS_MEM_16M] = (uint8_t)v;
	c->ram[RTC_CMOS_MEM_16M + 1] = (uint8_t)(v >> 8);
	if (mem_4g > 0xffffff)
		mem_4g = 0xffffff;
	c->ram[RTC_CMOS_MEM_4G] = (uint8_t)mem_4g;
	c->ram[RTC_CMOS_MEM_4G + 1] = (uint8_t)(mem_4g >> 8);
	c->ram[RTC_CMOS_MEM_4G + 2] = (uint8_t)(mem_4g >> 16);
}

uint8_t rtc_cmos_read(struct rtc_cmos *c, unsigned port, time_t now)
{
	unsigned reg = c->index;

	if (port == 0)
		return 0xff; /* the index register is write-only */
	if (rtc_is_time_reg(reg)) {
		/* While SET is on the guest is writing the time: show what it wrote. */
		if (!(c->ram[RTC_REG_B] & RTC_B_SET))
			rtc_snapshot(c, now);
		return c->ram[reg];
	}
	switch (reg) {
	case RTC_REG_A:
		return c->ram[reg] & (uint8_t)~RTC_A_UIP;
	case RTC_REG_C:
		/* Interrupt flags, cleared by reading; no interrupt source is modelled. */
		return 0;
	case RTC_REG_D:
		return RTC_D_VRT;
	default:
		return c->ram[reg];
	}
}

void rtc_cmos_write(struct rtc_cmos *c, unsigned port, uint8_t val, time_t now)
{
	unsigned reg = c->index;
	uint8_t b = c->ram[RTC_REG_B];

	if (port == 0) {
		c->index = val & 0x7f;
		return;
	}
	if (rtc_is_time_reg(reg)) {
		if (b & RTC_B_SET) {
			c->ram[reg] = val;
		} else {
			rtc_snapshot(c, now);
			c->ram[reg] = val;
			rtc_commit(c, b, now);
		}
		return;
	}
	switch (reg) {
	case RTC_REG_A:
		c->ram[reg] = val & (uint8_t)~RTC_A_UIP;
		break;
	case RTC_REG_B:
		if ((b & RTC_B_SET) && !(val & RTC_B_SET))
			rtc_commit(c, b, now); /* in the format the guest wrote the time in */
		c->ram[reg] = val;
		if (!(b & RTC_B_SET) && (val & RTC_B_SET))
			rtc_snapshot(c, now);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break;
	default:
		c->ram[reg] = val;
		break;
	}
}

/* The device: one lock, host time from CLOCK_REALTIME (UTC). */
struct rtc {
	pthread_mutex_t lock;
	struct rtc_cmos cmos;
	bool registered;
};

static void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct rtc *r = opaque;
	time_t now = time(NULL);

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < len && offset + i < 2; i++) {
		if (is_write)
			rtc_cmos_write(&r->cmos, (unsigned)(offset + i), data[i], now);
		else
			data[i] = rtc_cmos_read(&r->cmos, (unsigned)(offset + i), now);
	}
	pthread_mutex_unlock(&r->lock);
}

int rtc_init(struct vm *vm)
{
	struct rtc *r = calloc(1, sizeof(*r));
	uint64_t high = 0;
	int ret;

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	for (unsigned i = 0; i < vm->mem.nr_regions; i++)
		if (vm->mem.regions[i].gpa >= GMEM_HIGH_START)
			high += vm->mem.regions[i].size;
	rtc_cmos_init(&r->cmos, gmem_low_top(&vm->mem), high);
	vm->rtc = r;
	ret = bus_register(&vm->pio, RTC_PORT, 2, rtc_io, r, "rtc");
	if (ret < 0) {
		log_error("rtc: cannot register ports 0x70-0x71: %s", strerror(-ret));
		rtc_exit(vm);
		return ret;
	}
	r->registered = true;
	return 0;
}

void rtc_exit(struct vm *vm)
{
	struct rtc *r = vm->rtc;

	if (!r)
		return;
	if (r->registered)
		bus_unregister(&vm->pio, RTC_PORT);
	pthread_mutex_destroy(&r->lock);
	free(r);
	vm->rtc = NULL;
}

void rtc_reset(struct vm *vm)
{
	struct rtc *r = vm->rtc;

	/* CMOS RAM and the clock are battery-backed; the chip's reset input clears the interrupt
	 * enables and flags (MC146818 datasheet, "RESET"), none of which is modelled, and the
	 * index. A guest caught between setting and clearing SET loses that update, as on a PC. */
	pthread_mutex_lock(&r->lock);
	r->cmos.index = 0;
	r->cmos.ram[RTC_REG_B] &= (uint8_t)~(RTC_B_SET | RTC_B_INT_ENABLES);
	pthread_mutex_unlock(&r->lock);
}
