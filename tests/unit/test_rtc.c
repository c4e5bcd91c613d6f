#include "../../src/devices/rtc.h"

#include <criterion/criterion.h>

/* Saturday 2024-03-09 14:05:07 UTC */
#define T0 ((time_t)1709993107)

static uint8_t rd(struct rtc_cmos *c, unsigned reg, time_t now)
{
	rtc_cmos_write(c, 0, (uint8_t)reg, now);
	return rtc_cmos_read(c, 1, now);
}

static void wr(struct rtc_cmos *c, unsigned reg, uint8_t val, time_t now)
{
	rtc_cmos_write(c, 0, (uint8_t)reg, now);
	rtc_cmos_write(c, 1, val, now);
}

Test(rtc, bcd_time_of_a_fixed_date, .timeout = 10)
{
	struct rtc_cmos c;

	cr_assert_eq(timegm(&(struct tm){ .tm_year = 124, .tm_mon = 2, .tm_mday = 9, .tm_hour = 14,
					  .tm_min = 5, .tm_sec = 7 }),
		     T0);
	rtc_cmos_init(&c, 512 << 20, 0);
	cr_expect_eq(rd(&c, RTC_SECONDS, T0), 0x07);
	cr_expect_eq(rd(&c, RTC_MINUTES, T0), 0x05);
	cr_expect_eq(rd(&c, RTC_HOURS, T0), 0x14);
	cr_expect_eq(rd(&c, RTC_WEEKDAY, T0), 7, "Saturday, Sunday = 1");
	cr_expect_eq(rd(&c, RTC_DAY, T0), 0x09);
	cr_expect_eq(rd(&c, RTC_MONTH, T0), 0x03);
	cr_expect_eq(rd(&c, RTC_YEAR, T0), 0x24);
	cr_expect_eq(rd(&c, RTC_CENTURY, T0), 0x20);
	cr_expect_eq(rd(&c, RTC_SECONDS, T0 + 53), 0x00, "time follows the host");
	cr_expect_eq(rd(&c, RTC_MINUTES, T0 + 53), 0x06);
}

Test(rtc, status_registers, .timeout = 10)
{
	struct rtc_cmos c;

	rtc_cmos_init(&c, 512 << 20, 0);
	cr_expect_eq(rd(&c, RTC_REG_A, T0), 0x26);
	cr_expect_eq(rd(&c, RTC_REG_B, T0), 0x02);
	cr_expect_eq(rd(&c, RTC_REG_C, T0), 0x00);
	cr_expect_eq(rd(&c, RTC_REG_D, T0), 0x80);
	wr(&c, RTC_REG_A, 0xa6, T0);
	cr_expect_eq(rd(&c, RTC_REG_A, T0), 0x26, "UIP is read-only and clear");
	wr(&c, RTC_REG_D, 0x00, T0);
	cr_expect_eq(rd(&c, RTC_REG_D, T0), 0x80);
	/* Bit 7 of the index is the NMI mask, not part of the register number. */
	rtc_cmos_write(&c, 0, 0x80 | RTC_REG_B, T0);
	cr_expect_eq(rtc_cmos_read(&c, 1, T0), 0x02);
	cr_expect_eq(rtc_cmos_read(&c, 0, T0), 0xff, "index port is write-only");
	/* Other registers are plain NVRAM. */
	wr(&c, 0x40, 0x77, T0);
	wr(&c, 0x7f, 0x12, T0);
	cr_expect_eq(rd(&c, 0x40, T0), 0x77);
	cr_expect_eq(rd(&c, 0x7f, T0), 0x12);
}

Test(rtc, binary_and_12_hour_modes, .timeout = 10)
{
	struct rtc_cmos c;

	rtc_cmos_init(&c, 512 << 20, 0);
	wr(&c, RTC_REG_B, RTC_B_24H | RTC_B_DM_BINARY, T0);
	cr_expect_eq(rd(&c, RTC_SECONDS, T0), 7);
	cr_expect_eq(rd(&c, RTC_HOURS, T0), 14);
	cr_expect_eq(rd(&c, RTC_YEAR, T0), 24);
	cr_expect_eq(rd(&c, RTC_CENTURY, T0), 20);
	wr(&c, RTC_REG_B, RTC_B_DM_BINARY, T0);
	cr_expect_eq(rd(&c, RTC_HOURS, T0), 0x80 | 2, "2 PM, binary");
	wr(&c, RTC_REG_B, 0, T0);
	cr_expect_eq(rd(&c, RTC_HOURS, T0), 0x82, "2 PM, BCD");
	cr_expect_eq(rd(&c, RTC_HOURS, T0 - 14 * 3600), 0x12, "midnight is 12 AM");
	cr_expect_eq(rd(&c, RTC_HOURS, T0 - 2 * 3600), 0x92, "noon is 12 PM");
}

Test(rtc, guest_sets_the_time, .timeout = 10)
{
	struct rtc_cmos c;

	rtc_cmos_init(&c, 512 << 20, 0);
	/* Like Linux's mc146818_set_time: SET, write, clear SET. */
	wr(&c, RTC_REG_B, RTC_B_SET | RTC_B_24H, T0);
	wr(&c, RTC_YEAR, 0x25, T0);
	wr(&c, RTC_HOURS, 0x09, T0);
	cr_expect_eq(rd(&c, RTC_HOURS, T0 + 5), 0x09, "frozen while SET");
	wr(&c, RTC_REG_B, RTC_B_24H, T0);
	cr_expect_eq(rd(&c, RTC_YEAR, T0), 0x25);
	cr_expect_eq(rd(&c, RTC_HOURS, T0), 0x09);
	cr_expect_eq(rd(&c, RTC_SECONDS, T0 + 10), 0x17, "and then it runs");
	/* A single write without SET applies at once. */
	wr(&c, RTC_MINUTES, 0x30, T0);
	cr_expect_eq(rd(&c, RTC_MINUTES, T0), 0x30);
	cr_expect_eq(rd(&c, RTC_HOURS, T0), 0x09);
}

Test(rtc, memory_size_registers, .timeout = 10)
{
	struct rtc_cmos c;

	rtc_cmos_init(&c, 3ull << 30, 1ull << 30);
	cr_expect_eq(rd(&c, 0x15, T0) | rd(&c, 0x16, T0) << 8, 640);
	cr_expect_eq(rd(&c, 0x17, T0) | rd(&c, 0x18, T0) << 8, 0xffff, "capped");
	cr_expect_eq(rd(&c, 0x30, T0) | rd(&c, 0x31, T0) << 8, 0xffff);
	cr_expect_eq(rd(&c, 0x34, T0) | rd(&c, 0x35, T0) << 8, ((3u << 30) - (16u << 20)) >> 16);
	cr_expect_eq(rd(&c, 0x5b, T0) | rd(&c, 0x5c, T0) << 8 | rd(&c, 0x5d, T0) << 16,
		     (1u << 30) >> 16);

	rtc_cmos_init(&c, 32 << 20, 0);
	cr_expect_eq(rd(&c, 0x17, T0) | rd(&c, 0x18, T0) << 8, 31 * 1024);
	cr_expect_eq(rd(&c, 0x34, T0) | rd(&c, 0x35, T0) << 8, 256, "16 MiB in 64 KiB units");
	cr_expect_eq(rd(&c, 0x5b, T0) | rd(&c, 0x5c, T0) << 8 | rd(&c, 0x5d, T0) << 16, 0);

	rtc_cmos_init(&c, 0xc0000000ull, 1ull << 42);
	cr_expect_eq(rd(&c, 0x5b, T0) | rd(&c, 0x5c, T0) << 8 | rd(&c, 0x5d, T0) << 16, 0xffffff,
		     "capped at 24 bits");
}
