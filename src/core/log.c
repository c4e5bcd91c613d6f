#include <kvmm/log.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static _Atomic int log_threshold = LOG_INFO;
static const char *const log_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level)
{
	atomic_store(&log_threshold, (int)level);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_threshold);
}

static double log_uptime(void)
{
	static struct timespec start;
	static _Atomic bool started;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!atomic_exchange(&started, true))
		start = now;
	return (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	n = snprintf(line, sizeof(line), "kvmm[%.3f] %s: ", log_uptime(), log_names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs of a whole line: stdio locks the stream, so threads never interleave mid-line. */
	fprintf(stderr, "%s\n", line);
}
