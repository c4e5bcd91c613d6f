#include <kvmm/bus.h>
#include <kvmm/log.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	pthread_rwlock_init(&b->lock, NULL);
	pthread_mutex_init(&b->unhandled_lock, NULL);
}

void bus_destroy(struct bus *b)
{
	free(b->ranges);
	pthread_rwlock_destroy(&b->lock);
	pthread_mutex_destroy(&b->unhandled_lock);
	memset(b, 0, sizeof(*b));
}

/* Index of the first range whose end is above addr (ranges are sorted and disjoint). */
static size_t bus_search(const struct bus *b, uint64_t addr)
{
	size_t lo = 0, hi = b->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->ranges[mid];

		if (addr - r->base >= r->len && addr >= r->base)
			lo = mid + 1;
		else if (addr < r->base)
			hi = mid;
		else
			return mid;
	}
	return lo;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_handler fn, void *opaque,
		 const char *name)
{
	struct bus_range *r;
	size_t i;
	int ret = 0;

	if (len == 0 || base + len < base || !fn)
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	i = bus_search(b, base);
	if ((i < b->nr && b->ranges[i].base < base + len) ||
	    (i > 0 && b->ranges[i - 1].base + b->ranges[i - 1].len > base)) {
		ret = -EEXIST;
		goto out;
	}
	if (b->nr == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;

		r = realloc(b->ranges, cap * sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		b->ranges = r;
		b->cap = cap;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->nr - i) * sizeof(*b->ranges));
	b->ranges[i] = (struct bus_range){ base, len, fn, opaque, name };
	b->nr++;
out:
	pthread_rwlock_unlock(&b->lock);
	if (ret == -EEXIST)
		log_error("%s: %s at %#llx+%#llx overlaps another device", b->name, name,
			  (unsigned long long)base, (unsigned long long)len);
	return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	size_t i;
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&b->lock);
	i = bus_search(b, base);
	if (i < b->nr && b->ranges[i].base == base) {
		memmove(&b->ranges[i], &b->ranges[i + 1], (b->nr - i - 1) * sizeof(*b->ranges));
		b->nr--;
		ret = 0;
	}
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

static void bus_report_unhandled(struct bus *b, uint64_t addr, unsigned len, bool is_write)
{
	bool first = true;

	pthread_mutex_lock(&b->unhandled_lock);
	for (unsigned i = 0; i < b->nr_unhandled; i++)
		if (b->unhandled[i] == addr)
			first = false;
	if (first && b->nr_unhandled < BUS_UNHANDLED_LOGGED)
		b->unhandled[b->nr_unhandled++] = addr;
	else
		first = false;
	pthread_mutex_unlock(&b->unhandled_lock);
	if (first)
		log_debug("%s: unhandled %u-byte %s at %#llx (reported once)", b->name, len,
			  is_write ? "write" : "read", (unsigned long long)addr);
}

bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, unsigned len, bool is_write)
{
	struct bus_range r = { 0 };
	bool found = false;
	size_t i;

	pthread_rwlock_rdlock(&b->lock);
	i = bus_search(b, addr);
	if (i < b->nr && addr >= b->ranges[i].base && addr - b->ranges[i].base < b->ranges[i].len &&
	    len <= b->ranges[i].len - (addr - b->ranges[i].base)) {
		r = b->ranges[i];
		found = true;
	}
	pthread_rwlock_unlock(&b->lock);
	if (found) {
		r.fn(r.opaque, addr - r.base, data, len, is_write);
		return true;
	}
	if (!is_write)
		memset(data, 0xff, len);
	bus_report_unhandled(b, addr, len, is_write);
	return false;
}
