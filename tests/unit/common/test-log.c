/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

/* Capture log lines through a pipe. */
static int capture(char *buf, size_t cap, void (*emit)(void))
{
	int p[2], old;
	ssize_t n;

	assert_int_equal(pipe(p), 0);
	old = log_set_fd(p[1]);
	emit();
	(void)log_set_fd(old);
	close(p[1]);
	n = read(p[0], buf, cap - 1);
	close(p[0]);
	buf[n > 0 ? n : 0] = '\0';
	return (int)n;
}

static int side_effects;
static int bump(void)
{
	return ++side_effects;
}

static void emit_info(void)
{
	log_info("pulled %s in %d ms", "docker.io/library/busybox:latest", 42);
}

static void test_logfmt_line(void **state)
{
	char buf[1024];
	log_set_level(LOG_LEVEL_INFO);
	capture(buf, sizeof(buf), emit_info);
	assert_true(strncmp(buf, "time=\"", 6) == 0);
	/* RFC 3339 with nanoseconds, UTC */
	assert_non_null(strstr(buf, "Z\" level=info msg=\"pulled "));
	assert_non_null(strstr(buf, "busybox:latest in 42 ms\"\n"));
}

static void emit_escape(void)
{
	log_warn("a \"quoted\" \\ line\nnext\ttab\x01");
}

static void test_escaping(void **state)
{
	char buf[1024];
	capture(buf, sizeof(buf), emit_escape);
	assert_non_null(
	        strstr(buf, "level=warning msg=\"a \\\"quoted\\\" \\\\ line\\nnext\\ttab\\x01\""));
	/* exactly one line */
	assert_ptr_equal(strchr(buf, '\n'), buf + strlen(buf) - 1);
}

static void emit_errno(void)
{
	int r = log_error_errno(-ENOENT, "open \"%s\"", "/x");
	assert_int_equal(r, -ENOENT);
}

static void test_errno_field(void **state)
{
	char buf[1024];
	capture(buf, sizeof(buf), emit_errno);
	assert_non_null(strstr(
	        buf, "level=error msg=\"open \\\"/x\\\"\" error=\"No such file or directory\""));
}

static void emit_kv(void)
{
	log_info_kv("ref=abc size=12", "committed");
}

static void test_kv(void **state)
{
	char buf[1024];
	capture(buf, sizeof(buf), emit_kv);
	assert_non_null(strstr(buf, "msg=\"committed\" ref=abc size=12\n"));
}

static void emit_debug_filtered(void)
{
	log_debug("expensive %d", bump());
}

static void test_level_filter_skips_arguments(void **state)
{
	char buf[256];
	side_effects = 0;
	log_set_level(LOG_LEVEL_INFO);
	assert_int_equal(capture(buf, sizeof(buf), emit_debug_filtered), 0);
	/* arguments are not evaluated when the level is off */
	assert_int_equal(side_effects, 0);
	log_set_level(LOG_LEVEL_DEBUG);
	assert_true(capture(buf, sizeof(buf), emit_debug_filtered) > 0);
	assert_int_equal(side_effects, 1);
	log_set_level(LOG_LEVEL_INFO);
}

static void test_level_parse(void **state)
{
	enum log_level l;
	assert_int_equal(log_level_from_string("debug", &l), 0);
	assert_int_equal(l, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_from_string("WARN", &l), 0);
	assert_int_equal(l, LOG_LEVEL_WARN);
	assert_int_equal(log_level_from_string("warning", &l), 0);
	assert_int_equal(log_level_from_string("error", &l), 0);
	assert_int_equal(l, LOG_LEVEL_ERROR);
	assert_int_equal(log_level_from_string("loud", &l), -EINVAL);
	assert_int_equal(log_level_from_string(NULL, &l), -EINVAL);
}

static void test_quote(void **state)
{
	_cleanup_free_ char *a = logfmt_quote("plain");
	_cleanup_free_ char *b = logfmt_quote("has space");
	_cleanup_free_ char *c = logfmt_quote("");
	_cleanup_free_ char *d = logfmt_quote("k=v");
	assert_string_equal(a, "plain");
	assert_string_equal(b, "\"has space\"");
	assert_string_equal(c, "\"\"");
	assert_string_equal(d, "\"k=v\"");
}

static void emit_long(void)
{
	char big[20000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_info("%s", big);
}

static void test_truncation_keeps_newline(void **state)
{
	char buf[16384];
	int n = capture(buf, sizeof(buf), emit_long);
	assert_true(n > 0 && n <= 8192);
	assert_int_equal(buf[n - 1], '\n');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_logfmt_line),
	        cmocka_unit_test(test_escaping),
	        cmocka_unit_test(test_errno_field),
	        cmocka_unit_test(test_kv),
	        cmocka_unit_test(test_level_filter_skips_arguments),
	        cmocka_unit_test(test_level_parse),
	        cmocka_unit_test(test_quote),
	        cmocka_unit_test(test_truncation_keeps_newline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
