/* The MC146818 RTC + CMOS model behind ports 0x70/0x71 (src/devices/rtc.c): pure, with the host
 * time passed in, so it is unit-tested without a VM.
 *
 * Time registers show host UTC plus an offset the guest sets by writing them (with register B's SET
 * bit, as Linux's mc146818_set_time does, or without); register B's DM (binary) and 24/12 bits are
 * honoured. No periodic, alarm or update interrupts (register C reads 0), and UIP is never set, so
 * a guest polling for the end of an update never waits. */
#ifndef KVMM_DEVICES_RTC_H
#define KVMM_DEVICES_RTC_H

#include <stdint.h>
#include <time.h>

#define RTC_SECONDS 0x00
#define RTC_MINUTES 0x02
#define RTC_HOURS 0x04
#define RTC_WEEKDAY 0x06
#define RTC_DAY 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32 /* the FADT's century field must point here */

#define RTC_A_UIP 0x80
#define RTC_B_SET 0x80
#define RTC_B_INT_ENABLES 0x78 /* PIE, AIE, UIE, SQWE */
#define RTC_B_DM_BINARY 0x04
#define RTC_B_24H 0x02
#define RTC_D_VRT 0x80

/* CMOS memory-size bytes (the IBM PC/AT layout SeaBIOS and QEMU use). */
#define RTC_CMOS_BASE_KB 0x15       /* 2 bytes: conventional memory, KiB */
#define RTC_CMOS_EXT_KB 0x17        /* 2 bytes: KiB above 1 MiB, capped at 0xffff */
#define RTC_CMOS_EXT_KB2 0x30       /* the same, second copy */
#define RTC_CMOS_MEM_16M 0x34       /* 2 bytes: RAM between 16 MiB and 4 GiB, 64 KiB units */
#define RTC_CMOS_MEM_4G 0x5b        /* 3 bytes: RAM above 4 GiB, 64 KiB units */

struct rtc_cmos {
	uint8_t index;
	uint8_t ram[128];
	int64_t offset; /* guest time - host time, seconds */
};

/* Power-on state: A = 0x26, B = 0x02 (24 h, BCD), D = VRT; low_top is the end of RAM below 4 GiB,
 * high the bytes of RAM above 4 GiB. */
void rtc_cmos_init(struct rtc_cmos *c, uint64_t low_top, uint64_t high);

/* port 0 is 0x70 (index; bit 7 is the NMI mask, ignored), port 1 is 0x71 (data). now: host UTC. */
uint8_t rtc_cmos_read(struct rtc_cmos *c, unsigned port, time_t now);
void rtc_cmos_write(struct rtc_cmos *c, unsigned port, uint8_t val, time_t now);

#endif
