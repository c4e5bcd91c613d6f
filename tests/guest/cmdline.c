/* The kernel command line: space-separated key=value words. Keys other than ours are ignored
 * (loaders add their own, e.g. kvmtool's console= and reboot=); a bad value of ours is an error. */
#include "guest.h"

#define DEFAULT_SIZE (64ull << 20)
#define DEFAULT_HOT_PCT 20
#define DEFAULT_SECONDS 5
#define MAX_SECONDS 86400

struct word {
	const char *s;
	size_t n;
};

static bool word_is(struct word w, const char *lit)
{
	size_t n = strlen(lit);

	return w.n == n && !strncmp(w.s, lit, n);
}

static void print_word(struct word w)
{
	for (size_t i = 0; i < w.n; i++)
		console_putc(w.s[i] == '"' ? '\'' : w.s[i]);
}

static int bad_value(const char *key, struct word v)
{
	print("KVMM error=bad-value key=%s value=\"", key);
	print_word(v);
	print("\"\n");
	return -1;
}

/* Unsigned decimal, or hex with 0x; the whole word must be used. */
static bool parse_u64(struct word w, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	unsigned base = 10;

	if (w.n > 2 && w.s[0] == '0' && (w.s[1] == 'x' || w.s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == w.n)
		return false;
	for (; i < w.n; i++) {
		char c = w.s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

/* Bytes with an optional binary suffix K, M, G or T; a positive multiple of 4 KiB. */
static bool parse_size(struct word w, uint64_t *out)
{
	unsigned shift = 0;

	if (w.n > 1) {
		switch (w.s[w.n - 1] | 0x20) {
		case 'k': shift = 10; break;
		case 'm': shift = 20; break;
		case 'g': shift = 30; break;
		case 't': shift = 40; break;
		}
		if (shift)
			w.n--;
	}
	uint64_t v;
	if (!parse_u64(w, &v) || !v || v > (UINT64_MAX >> shift))
		return false;
	v <<= shift;
	if (v % PAGE_SIZE)
		return false;
	*out = v;
	return true;
}

/* Splits `list` at the next `sep`; returns false when it is empty. */
static bool next_item(struct word *list, char sep, struct word *item)
{
	if (!list->n)
		return false;
	size_t i = 0;
	while (i < list->n && list->s[i] != sep)
		i++;
	*item = (struct word){ list->s, i };
	list->s += i < list->n ? i + 1 : i;
	list->n -= i < list->n ? i + 1 : i;
	return true;
}

static bool split_colon(struct word w, struct word *name, struct word *arg)
{
	for (size_t i = 0; i < w.n; i++)
		if (w.s[i] == ':') {
			*name = (struct word){ w.s, i };
			*arg = (struct word){ w.s + i + 1, w.n - i - 1 };
			return true;
		}
	*name = w;
	*arg = (struct word){ w.s + w.n, 0 };
	return false;
}

/* Steps with an argument, name:N with N in [0, max]. */
static const struct {
	const char *name;
	enum step_kind kind;
	uint64_t max;
} arg_steps[] = {
	{ "idle", STEP_IDLE, MAX_SECONDS },
	{ "balloon", STEP_BALLOON, MAX_SECONDS },
	{ "rewrite", STEP_REWRITE, 100 },
	{ "churn", STEP_CHURN, MAX_SECONDS },
};
#define NR_ARG_STEPS (sizeof(arg_steps) / sizeof(arg_steps[0]))

static int parse_tests(struct word v, struct config *cfg)
{
	struct word item, name, arg;

	while (next_item(&v, ',', &item)) {
		bool has_arg = split_colon(item, &name, &arg);
		struct step st = { 0 };
		unsigned a = 0;
		while (a < NR_ARG_STEPS && !word_is(name, arg_steps[a].name))
			a++;
		if (a < NR_ARG_STEPS && has_arg) {
			st.kind = arg_steps[a].kind;
			if (!parse_u64(arg, &st.arg) || st.arg > arg_steps[a].max)
				return bad_value("test", item);
		} else if (word_is(name, "fill") && !has_arg) {
			st.kind = STEP_FILL;
		} else if (word_is(name, "verify") && !has_arg) {
			st.kind = STEP_VERIFY;
		} else if (word_is(name, "wss") && !has_arg) {
			st.kind = STEP_WSS;
		} else {
			print("KVMM error=unknown-test name=\"");
			print_word(item);
			print("\"\n");
			return -1;
		}
		if (cfg->nr_steps == STEPS_MAX)
			return bad_value("test", v);
		cfg->steps[cfg->nr_steps++] = st;
	}
	return 0;
}

/* kind:percent,... with distinct kinds and percents summing to 100. */
static int parse_pattern(struct word v, struct config *cfg)
{
	struct pattern p = { 0 };
	struct word item, name, arg;
	unsigned sum = 0;
	unsigned seen = 0;

	while (next_item(&v, ',', &item)) {
		uint64_t pct;
		unsigned k;
		if (!split_colon(item, &name, &arg) || !parse_u64(arg, &pct) || pct > 100)
			return bad_value("pattern", item);
		for (k = 0; k < KIND_COUNT && !word_is(name, kind_names[k]); k++)
			;
		if (k == KIND_COUNT || (seen & (1u << k)))
			return bad_value("pattern", item);
		seen |= 1u << k;
		if (!pct)
			continue;
		p.kind[p.nr] = k;
		p.pct[p.nr++] = pct;
		sum += pct;
	}
	if (sum != 100)
		return bad_value("pattern", (struct word){ "sum!=100", 8 });
	cfg->pattern = p;
	return 0;
}

const char *const misbehave_names[MISBEHAVE_COUNT] = {
	[MISBEHAVE_IGNORE] = "ignore",
	[MISBEHAVE_BAD_PFN] = "bad-pfn",
	[MISBEHAVE_BAD_CHAIN] = "bad-chain",
	[MISBEHAVE_WRITE_INFLATED] = "write-inflated",
	[MISBEHAVE_LIE_STATS] = "lie-stats",
};

static int parse_balloon_opts(struct word v, struct config *cfg)
{
	struct word item;

	cfg->balloon_opts = 0;
	while (next_item(&v, ',', &item)) {
		if (word_is(item, "stats"))
			cfg->balloon_opts |= BALLOON_OPT_STATS;
		else if (word_is(item, "report"))
			cfg->balloon_opts |= BALLOON_OPT_REPORT;
		else if (!word_is(item, "none"))
			return bad_value("balloon-opts", item);
	}
	return 0;
}

static int parse_misbehave(struct word v, struct config *cfg)
{
	struct word item;

	cfg->misbehave = 0;
	while (next_item(&v, ',', &item)) {
		unsigned k;
		for (k = 0; k < MISBEHAVE_COUNT && !word_is(item, misbehave_names[k]); k++)
			;
		if (k == MISBEHAVE_COUNT)
			return bad_value("misbehave", item);
		cfg->misbehave |= 1u << k;
	}
	return 0;
}

int cmdline_parse(const char *cmdline, struct config *cfg)
{
	*cfg = (struct config){
		.size = DEFAULT_SIZE,
		.pattern = { .nr = 1, .kind = { KIND_RANDOM }, .pct = { 100 } },
		.seed = 1,
		.hot_pct = DEFAULT_HOT_PCT,
		.seconds = DEFAULT_SECONDS,
	};
	struct word line = { cmdline, strlen(cmdline) }, w;

	while (line.n) {
		while (line.n && (*line.s == ' ' || *line.s == '\t' || *line.s == '\n')) {
			line.s++;
			line.n--;
		}
		size_t i = 0;
		while (i < line.n && line.s[i] != ' ' && line.s[i] != '\t' && line.s[i] != '\n')
			i++;
		w = (struct word){ line.s, i };
		line.s += i;
		line.n -= i;
		if (!w.n)
			continue;
		struct word key, val;
		size_t eq = 0;
		while (eq < w.n && w.s[eq] != '=')
			eq++;
		if (eq == w.n)
			continue;
		key = (struct word){ w.s, eq };
		val = (struct word){ w.s + eq + 1, w.n - eq - 1 };

		uint64_t v;
		if (word_is(key, "test")) {
			if (parse_tests(val, cfg))
				return -1;
		} else if (word_is(key, "size")) {
			if (!parse_size(val, &cfg->size))
				return bad_value("size", val);
		} else if (word_is(key, "pattern")) {
			if (parse_pattern(val, cfg))
				return -1;
		} else if (word_is(key, "seed")) {
			if (!parse_u64(val, &cfg->seed))
				return bad_value("seed", val);
		} else if (word_is(key, "hot")) {
			struct word num = val;
			if (num.n && num.s[num.n - 1] == '%')
				num.n--;
			if (!parse_u64(num, &v) || !v || v > 100)
				return bad_value("hot", val);
			cfg->hot_pct = v;
		} else if (word_is(key, "seconds")) {
			if (!parse_u64(val, &v) || !v || v > MAX_SECONDS)
				return bad_value("seconds", val);
			cfg->seconds = v;
		} else if (word_is(key, "balloon-opts")) {
			if (parse_balloon_opts(val, cfg))
				return -1;
		} else if (word_is(key, "misbehave")) {
			if (parse_misbehave(val, cfg))
				return -1;
		}
	}
	return 0;
}
