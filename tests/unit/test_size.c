#include <kvmm/size.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

static uint64_t parse_ok(const char *text)
{
	uint64_t v = 0;
	int r = size_parse(text, &v);

	cr_assert_eq(r, 0, "size_parse(\"%s\") = %d", text, r);
	return v;
}

static int parse_err(const char *text)
{
	uint64_t v = 12345;
	int r = size_parse(text, &v);

	cr_assert_eq(v, 12345, "size_parse(\"%s\") wrote its output on failure", text);
	return r;
}

Test(size, suffixes, .timeout = 5)
{
	cr_expect_eq(parse_ok("0"), 0);
	cr_expect_eq(parse_ok("4096"), 4096);
	cr_expect_eq(parse_ok("4096B"), 4096);
	cr_expect_eq(parse_ok("4k"), 4096);
	cr_expect_eq(parse_ok("4K"), 4096);
	cr_expect_eq(parse_ok("512M"), 512ull << 20);
	cr_expect_eq(parse_ok("512MiB"), 512ull << 20);
	cr_expect_eq(parse_ok("512mb"), 512ull << 20);
	cr_expect_eq(parse_ok("3G"), 3ull << 30);
	cr_expect_eq(parse_ok("2T"), 2ull << 40);
	cr_expect_eq(parse_ok("0x1000"), 4096);
}

Test(size, rejects_malformed, .timeout = 5)
{
	const char *bad[] = { "", "M", "-1", " 1M", "1M ", "1.5G", "1X", "1MM", "1Mi", "0x", "0x10M",
			      "1e6", "+4" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(parse_err(bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
	cr_expect_eq(parse_err(NULL), -EINVAL);
}

Test(size, rejects_overflow, .timeout = 5)
{
	cr_expect_eq(parse_ok("18446744073709551615"), UINT64_MAX);
	cr_expect_eq(parse_err("18446744073709551616"), -ERANGE);
	cr_expect_eq(parse_ok("16777215T"), 16777215ull << 40);
	cr_expect_eq(parse_err("16777216T"), -ERANGE);
	cr_expect_eq(parse_err("0x10000000000000000"), -ERANGE);
}

Test(size, format_round_trips, .timeout = 5)
{
	const uint64_t values[] = { 0, 1, 4095, 4096, 1536ull << 10, 512ull << 20, 3ull << 30,
				    5ull << 40, UINT64_MAX };
	char buf[32];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		cr_expect_eq(parse_ok(size_format(values[i], buf, sizeof(buf))), values[i], "%s", buf);
	cr_expect_str_eq(size_format(512ull << 20, buf, sizeof(buf)), "512M");
	cr_expect_str_eq(size_format(1536ull << 10, buf, sizeof(buf)), "1536K");
	cr_expect_str_eq(size_format(4097, buf, sizeof(buf)), "4097");
}
