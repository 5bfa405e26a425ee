/* SPDX-License-Identifier: Apache-2.0 */
/* logfmt logging (see log.h). */
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

enum log_level log_max_level_ = LOG_LEVEL_INFO;
static int log_fd = STDERR_FILENO;

void log_set_level(enum log_level level)
{
	log_max_level_ = level;
}

enum log_level log_get_level(void)
{
	return log_max_level_;
}

int log_set_fd(int fd)
{
	int old = log_fd;
	log_fd = fd;
	return old;
}

int log_level_from_string(const char *s, enum log_level *ret)
{
	static const struct {
		const char *name;
		enum log_level level;
	} table[] = {
	        {"debug", LOG_LEVEL_DEBUG},  {"info", LOG_LEVEL_INFO},   {"warn", LOG_LEVEL_WARN},
	        {"warning", LOG_LEVEL_WARN}, {"error", LOG_LEVEL_ERROR},
	};
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (strcasecmp(s, table[i].name) == 0) {
			*ret = table[i].level;
			return 0;
		}
	return -EINVAL;
}

const char *log_level_to_string(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_DEBUG:
		return "debug";
	case LOG_LEVEL_INFO:
		return "info";
	case LOG_LEVEL_WARN:
		return "warning";
	case LOG_LEVEL_ERROR:
	default:
		return "error";
	}
}

/* Append s to buf as a logfmt quoted string: quotes and backslashes escaped,
 * control characters as \n, \t or \xNN. Returns the new length. */
static size_t append_quoted(char *buf, size_t len, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";

#define PUT(c)                            \
	do {                              \
		if (len + 1 < cap)        \
			buf[len++] = (c); \
	} while (0)

	PUT('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
		case '\\':
			PUT('\\');
			PUT((char)*p);
			break;
		case '\n':
			PUT('\\');
			PUT('n');
			break;
		case '\t':
			PUT('\\');
			PUT('t');
			break;
		case '\r':
			PUT('\\');
			PUT('r');
			break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				PUT('\\');
				PUT('x');
				PUT(hex[*p >> 4]);
				PUT(hex[*p & 0xf]);
			} else {
				PUT((char)*p);
			}
		}
	}
	PUT('"');
#undef PUT
	buf[len < cap ? len : cap - 1] = '\0';
	return len;
}

static int needs_quoting(const char *s)
{
	if (!*s)
		return 1;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
			return 1;
	return 0;
}

char *logfmt_quote(const char *value)
{
	size_t cap;
	char *buf;

	if (!value)
		value = "";
	if (!needs_quoting(value))
		return strdup(value);
	cap = strlen(value) * 4 + 3;
	buf = malloc(cap);
	if (!buf)
		return NULL;
	(void)append_quoted(buf, 0, cap, value);
	return buf;
}

int log_emit(enum log_level level, int err, const char *kv, const char *fmt, ...)
{
	char line[8192], msg[4096], ts[64];
	struct timespec now;
	struct tm tm;
	size_t len;
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	(void)clock_gettime(CLOCK_REALTIME, &now);
	(void)gmtime_r(&now.tv_sec, &tm);
	len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	(void)snprintf(ts + len, sizeof(ts) - len, ".%09ldZ", now.tv_nsec);

	len = (size_t)snprintf(line, sizeof(line), "time=\"%s\" level=%s msg=", ts,
	                       log_level_to_string(level));
	len = append_quoted(line, len, sizeof(line), msg);
	if (kv && *kv && len + 2 < sizeof(line))
		len += (size_t)snprintf(line + len, sizeof(line) - len, " %s", kv);
	if (err != 0 && len + 10 < sizeof(line)) {
		len += (size_t)snprintf(line + len, sizeof(line) - len, " error=");
		len = append_quoted(line, MIN(len, sizeof(line) - 1), sizeof(line),
		                    strerror(err < 0 ? -err : err));
	}
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	(void)!write(log_fd, line, len);

	errno = saved_errno;
	return err;
}
