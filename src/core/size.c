#include <kvmm/size.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

static int size_shift(const char *suffix, unsigned *shift)
{
	static const char units[] = "KMGT";
	const char *rest = suffix + 1;

	if (*suffix == '\0' || strcasecmp(suffix, "B") == 0) {
		*shift = 0;
		return 0;
	}
	for (unsigned i = 0; units[i]; i++) {
		if (toupper((unsigned char)*suffix) != units[i])
			continue;
		if (*rest == '\0' || strcasecmp(rest, "B") == 0 || strcasecmp(rest, "iB") == 0) {
			*shift = 10 * (i + 1);
			return 0;
		}
	}
	return -EINVAL;
}

int size_parse(const char *text, uint64_t *bytes)
{
	uint64_t value = 0;
	unsigned shift, base = 10;
	const char *p = text;

	if (!text || !isdigit((unsigned char)*p))
		return -EINVAL;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
		if (!isxdigit((unsigned char)*p))
			return -EINVAL;
	}
	for (; base == 16 ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p); p++) {
		unsigned digit = isdigit((unsigned char)*p) ? (unsigned)(*p - '0')
							    : (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
		if (value > (UINT64_MAX - digit) / base)
			return -ERANGE;
		value = value * base + digit;
	}
	if (base == 16 && *p != '\0')
		return -EINVAL;
	if (size_shift(p, &shift) < 0)
		return -EINVAL;
	if (shift && value > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = value << shift;
	return 0;
}

char *size_format(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int unit = -1;

	while (bytes && unit < 3 && (bytes & 1023) == 0) {
		bytes >>= 10;
		unit++;
	}
	if (unit < 0)
		snprintf(buf, len, "%" PRIu64, bytes);
	else
		snprintf(buf, len, "%" PRIu64 "%c", bytes, units[unit]);
	return buf;
}
