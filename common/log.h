/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging in containerd's logfmt:
 *   time="2026-11-27T05:10:11.123456789Z" level=info msg="..." key=value error="..."
 * written to stderr (or the fd set by log_set_fd()) with one write(2) per line,
 * so lines from concurrent threads never interleave.
 *
 * The level is process-wide (set once by the executable). Library code logs at
 * debug only; executables log above it. log_debug() costs one integer compare
 * when debug is off: arguments are not evaluated.
 */
#pragma once

#include <time.h>

#include "macro.h"

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_WARN = 2,
	LOG_LEVEL_ERROR = 3,
};

extern enum log_level log_max_level_; /* read through log_enabled() */

static inline int log_enabled(enum log_level level)
{
	return level >= log_max_level_;
}

void log_set_level(enum log_level level);

/* Monotonic milliseconds: for the durations debug lines report. */
static inline double log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
enum log_level log_get_level(void);
/* Parse "debug|info|warn|warning|error"; -EINVAL otherwise. */
int log_level_from_string(const char *s, enum log_level *ret);
const char *log_level_to_string(enum log_level level);
/* Redirect log output (default 2). Returns the previous fd. */
int log_set_fd(int fd);

/*
 * Emit one line. `kv` is NULL or extra logfmt fields already rendered
 * ("key=value key2=\"v 2\""); `err` (negative errno, or 0) adds error="...".
 * Returns err, so `return log_error_errno(r, ...)` works.
 */
int log_emit(enum log_level level, int err, const char *kv, const char *fmt, ...) _printf_(4, 5);

/* Append a logfmt-quoted value to a buffer when it needs quoting. The result
 * is malloc'd; NULL on allocation failure. */
char *logfmt_quote(const char *value);

#define log_full(level, err, kv, ...)                                               \
	({                                                                          \
		int _e = (err);                                                     \
		log_enabled(level) ? log_emit((level), _e, (kv), __VA_ARGS__) : _e; \
	})

#define log_debug(...) (void)log_full(LOG_LEVEL_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...)  (void)log_full(LOG_LEVEL_INFO, 0, NULL, __VA_ARGS__)
#define log_warn(...)  (void)log_full(LOG_LEVEL_WARN, 0, NULL, __VA_ARGS__)
#define log_error(...) (void)log_full(LOG_LEVEL_ERROR, 0, NULL, __VA_ARGS__)

#define log_debug_errno(err, ...) log_full(LOG_LEVEL_DEBUG, (err), NULL, __VA_ARGS__)
#define log_info_errno(err, ...)  log_full(LOG_LEVEL_INFO, (err), NULL, __VA_ARGS__)
#define log_warn_errno(err, ...)  log_full(LOG_LEVEL_WARN, (err), NULL, __VA_ARGS__)
#define log_error_errno(err, ...) log_full(LOG_LEVEL_ERROR, (err), NULL, __VA_ARGS__)

#define log_info_kv(kv, ...)  (void)log_full(LOG_LEVEL_INFO, 0, (kv), __VA_ARGS__)
#define log_debug_kv(kv, ...) (void)log_full(LOG_LEVEL_DEBUG, 0, (kv), __VA_ARGS__)
