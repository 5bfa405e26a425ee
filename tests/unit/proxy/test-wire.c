/* SPDX-License-Identifier: Apache-2.0 */
/* proxy/grpc-wire.c: grpc-message percent encoding and grpc-timeout parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy-internal.h"

static void test_percent_encode(void **state)
{
	_cleanup_free_ char *a = proxy_percent_encode("plain text: ok");
	_cleanup_free_ char *b = proxy_percent_encode("100% na\xc3\xafve\n");
	_cleanup_free_ char *c = proxy_percent_encode("");

	assert_string_equal(a, "plain text: ok");
	assert_string_equal(b, "100%25 na%C3%AFve%0A");
	assert_string_equal(c, "");
}

static void test_timeout(void **state)
{
	uint64_t v = 0;

	assert_int_equal(proxy_parse_timeout("1S", &v), 0);
	assert_int_equal(v, 1000000);
	assert_int_equal(proxy_parse_timeout("250m", &v), 0);
	assert_int_equal(v, 250000);
	assert_int_equal(proxy_parse_timeout("2H", &v), 0);
	assert_int_equal(v, 7200ull * 1000000);
	assert_int_equal(proxy_parse_timeout("3M", &v), 0);
	assert_int_equal(v, 180ull * 1000000);
	assert_int_equal(proxy_parse_timeout("7u", &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(proxy_parse_timeout("1500n", &v), 0);
	assert_int_equal(v, 2); /* rounded up: never earlier than asked */
	assert_int_equal(proxy_parse_timeout("99999999S", &v), 0);

	assert_int_equal(proxy_parse_timeout("", &v), -EINVAL);
	assert_int_equal(proxy_parse_timeout("S", &v), -EINVAL);
	assert_int_equal(proxy_parse_timeout("10", &v), -EINVAL);
	assert_int_equal(proxy_parse_timeout("10x", &v), -EINVAL);
	assert_int_equal(proxy_parse_timeout("10SS", &v), -EINVAL);
	assert_int_equal(proxy_parse_timeout("123456789S", &v), -EINVAL); /* > 8 digits */
	assert_int_equal(proxy_parse_timeout("-1S", &v), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_percent_encode),
	        cmocka_unit_test(test_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
