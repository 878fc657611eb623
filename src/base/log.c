/*
 * log: see log.h. Lines are written with a single write-sized fputs so
 * concurrent writers (the spool I/O thread) do not interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static bool use_syslog;
static enum log_level max_level = LOG_LVL_INFO;

void log_open_syslog(void)
{
	openlog("mxvault", LOG_PID | LOG_NDELAY, LOG_MAIL);
	use_syslog = true;
}

void log_set_level(enum log_level lvl)
{
	max_level = lvl;
}

void log_msg(enum log_level lvl, const char *module, const char *f, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	if (lvl > max_level)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, f);
	vsnprintf(line, sizeof(line), f, ap);
	va_end(ap);
	if (use_syslog) {
		syslog(prio[lvl], "%s: %s", module, line);
		return;
	}
	char stamp[32];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s: %s%s%s\n", stamp, ts.tv_nsec / 1000000, module,
		lvl <= LOG_LVL_WARN ? names[lvl] : "", lvl <= LOG_LVL_WARN ? ": " : "", line);
}

const char *log_safe(char *out, size_t n, const char *s, size_t len)
{
	size_t o = 0;
	if (n < 8) {
		if (n)
			out[0] = '\0';
		return out;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[5];
		size_t k;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			k = 2;
		} else if (c < 0x20 || c >= 0x7f) {
			snprintf(tmp, sizeof(tmp), "\\x%02x", c);
			k = 4;
		} else {
			tmp[0] = (char)c;
			k = 1;
		}
		if (o + k + 4 > n) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, tmp, k);
		o += k;
	}
	out[o] = '\0';
	return out;
}
