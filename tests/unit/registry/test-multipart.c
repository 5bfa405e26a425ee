/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The multipart/byteranges parser (content/registry/multipart.c): parts
 * found whatever way the body is split, and malformed answers refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "registry-internal.h"

#define CT "multipart/byteranges; boundary=XyZ"

struct got {
	char data[4][64];
	uint64_t off[4];
	size_t len[4];
	unsigned n;
	int fail;
};

static int on_part(uint64_t off, const uint8_t *data, size_t len, void *userdata)
{
	struct got *g = userdata;

	if (g->fail)
		return g->fail;
	assert_true(g->n < 4 && len < 64);
	memcpy(g->data[g->n], data, len);
	g->data[g->n][len] = '\0';
	g->off[g->n] = off;
	g->len[g->n] = len;
	g->n++;
	return 0;
}

/* Feed body in pieces cut at a and b; the parser's verdict. */
static int parse3(const char *ct, const char *body, size_t a, size_t b, struct got *g)
{
	struct registry_multipart mp;
	size_t len = strlen(body);
	int r;

	r = registry_multipart_init(&mp, ct, 32, on_part, g);
	if (r < 0)
		return r;
	r = registry_multipart_feed(&mp, body, a);
	if (r == 0)
		r = registry_multipart_feed(&mp, body + a, b - a);
	if (r == 0)
		r = registry_multipart_feed(&mp, body + b, len - b);
	if (r == 0)
		r = registry_multipart_finish(&mp);
	registry_multipart_done(&mp);
	return r;
}

static int parse(const char *ct, const char *body, struct got *g)
{
	return parse3(ct, body, 0, 0, g);
}

static const char good[] = "--XyZ\r\n"
                           "Content-Type: application/octet-stream\r\n"
                           "Content-Range: bytes 10-14/100\r\n"
                           "\r\n"
                           "hello\r\n"
                           "--XyZ\r\n"
                           "content-range:bytes 50-61/100\r\n"
                           "\r\n"
                           "--XyZ\r\n\r\nab\r\n" /* data that looks like a delimiter */
                           "--XyZ--\r\n"
                           "an epilogue";

static void test_every_split(void **state)
{
	size_t len = strlen(good);

	for (size_t a = 0; a <= len; a++)
		for (size_t b = a; b <= len; b += 7) {
			struct got g = {0};
			assert_int_equal(parse3(CT, good, a, b, &g), 0);
			assert_int_equal(g.n, 2);
			assert_int_equal(g.off[0], 10);
			assert_string_equal(g.data[0], "hello");
			assert_int_equal(g.off[1], 50);
			assert_int_equal(g.len[1], 12);
			assert_memory_equal(g.data[1], "--XyZ\r\n\r\nab\r\n", 12);
		}
}

static void test_lenient_forms(void **state)
{
	struct got g = {0};
	/* a quoted boundary, parameters around it, a preamble, bare LFs */
	assert_int_equal(parse("Multipart/ByteRanges; charset=x; boundary=\"XyZ\"; q=1",
	                       "preamble\n--XyZ\nContent-Range: bytes 0-0/1\n\nZ\n--XyZ--\n", &g),
	                 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.data[0], "Z");
}

static void test_refused(void **state)
{
	static const char *const bad_types[] = {
	        "application/octet-stream",
	        "multipart/byteranges",
	        "multipart/byteranges; boundary=",
	        "multipart/byteranges; boundary=\"open",
	        "multipart/byteranges; boundary="
	        "01234567890123456789012345678901234567890123456789012345678901234567890",
	        NULL,
	};
	static const char *const bad_bodies[] = {
	        /* no Content-Range */
	        "--XyZ\r\nContent-Type: x\r\n\r\nhello\r\n--XyZ--\r\n",
	        /* end before start, garbage, no total */
	        "--XyZ\r\nContent-Range: bytes 14-10/100\r\n\r\nhello\r\n--XyZ--\r\n",
	        "--XyZ\r\nContent-Range: bytes x-10/100\r\n\r\nhello\r\n--XyZ--\r\n",
	        "--XyZ\r\nContent-Range: bytes 0-4\r\n\r\nhello\r\n--XyZ--\r\n",
	        /* larger than max_part (32) */
	        "--XyZ\r\nContent-Range: bytes 0-99/100\r\n\r\n",
	        /* cut off: in the data, in the headers, before the last delimiter */
	        "--XyZ\r\nContent-Range: bytes 0-9/100\r\n\r\nhel",
	        "--XyZ\r\nContent-Ran",
	        "--XyZ\r\nContent-Range: bytes 0-4/100\r\n\r\nhello\r\n",
	        "",
	};

	for (size_t i = 0; i < ELEMENTSOF(bad_types); i++) {
		struct registry_multipart mp;
		assert_int_equal(registry_multipart_init(&mp, bad_types[i], 32, on_part, NULL),
		                 -EBADMSG);
		registry_multipart_done(&mp);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad_bodies); i++) {
		struct got g = {0};
		if (parse(CT, bad_bodies[i], &g) != -EBADMSG)
			fail_msg("accepted body %zu", i);
	}
}

static void test_limits(void **state)
{
	struct got g = {0};
	_cleanup_free_ char *junk = malloc(128 << 10);
	_cleanup_free_ char *longline = malloc(4096);

	/* text outside the parts is bounded */
	for (size_t i = 0; i < (128u << 10) - 1; i++)
		junk[i] = i % 64 == 63 ? '\n' : 'j';
	junk[(128u << 10) - 1] = '\0';
	assert_int_equal(parse(CT, junk, &g), -EBADMSG);
	/* and so is a line */
	memset(longline, 'l', 4095);
	longline[4095] = '\0';
	assert_int_equal(parse(CT, longline, &g), -EBADMSG);
	/* the callback's error comes back as is */
	g.fail = -ENOSPC;
	assert_int_equal(parse(CT, good, &g), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_every_split),
	        cmocka_unit_test(test_lenient_forms),
	        cmocka_unit_test(test_refused),
	        cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
