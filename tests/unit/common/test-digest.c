/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>

#include <cmocka.h>

#include "common.h"

/* sha256("") and sha256("abc"), from FIPS 180-2. */
#define EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC   "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void test_known_vectors(void **state)
{
	struct strata_digest d;
	char buf[STRATA_DIGEST_STRING_MAX];

	assert_int_equal(strata_sha256("", 0, &d), 0);
	assert_string_equal(strata_digest_format(&d, buf), EMPTY);
	assert_int_equal(strata_sha256("abc", 3, &d), 0);
	assert_string_equal(strata_digest_format(&d, buf), ABC);
}

static void test_streaming_equals_oneshot(void **state)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL, *copy = NULL;
	struct strata_digest a, b, c;
	char data[10000];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	assert_int_equal(strata_hasher_new(&h), 0);
	assert_int_equal(strata_hasher_update(h, data, 1234), 0);
	assert_int_equal(strata_hasher_dup(h, &copy), 0);
	assert_int_equal(strata_hasher_update(h, data + 1234, sizeof(data) - 1234), 0);
	assert_int_equal(strata_hasher_update(h, data, 0), 0);
	assert_int_equal(strata_hasher_final(h, &a), 0);
	assert_int_equal(strata_sha256(data, sizeof(data), &b), 0);
	assert_true(strata_digest_equal(&a, &b));
	/* the copy resumes from the 1234-byte state */
	assert_int_equal(strata_hasher_update(copy, data + 1234, sizeof(data) - 1234), 0);
	assert_int_equal(strata_hasher_final(copy, &c), 0);
	assert_true(strata_digest_equal(&a, &c));
	/* final resets: the hasher is reusable */
	assert_int_equal(strata_hasher_update(h, "abc", 3), 0);
	assert_int_equal(strata_hasher_final(h, &a), 0);
	assert_int_equal(strata_sha256("abc", 3, &b), 0);
	assert_true(strata_digest_equal(&a, &b));
}

static void test_parse_roundtrip(void **state)
{
	struct strata_digest d;
	char buf[STRATA_DIGEST_STRING_MAX], hex[STRATA_SHA256_HEX_LEN + 1];
	assert_int_equal(strata_digest_parse(ABC, &d, NULL), 0);
	assert_string_equal(strata_digest_format(&d, buf), ABC);
	assert_string_equal(strata_digest_hex(&d, hex), ABC + 7);
}

static void expect_parse_error(const char *in, int code, const char *needle)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct strata_digest d;
	assert_int_equal(strata_digest_parse(in, &d, &err), code);
	assert_non_null(err);
	if (!strstr(err->msg, needle))
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

static void test_parse_errors(void **state)
{
	expect_parse_error("", -EINVAL, "empty digest");
	expect_parse_error(NULL, -EINVAL, "empty digest");
	expect_parse_error("abc", -EINVAL, "missing algorithm");
	expect_parse_error(":abc", -EINVAL, "missing algorithm");
	expect_parse_error("sha256:abc", -EINVAL, "64 hex");
	expect_parse_error(
	        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", -EINVAL,
	        "not lowercase hex");
	expect_parse_error(
	        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag", -EINVAL,
	        "position 70");
	expect_parse_error("sha512:00", -EOPNOTSUPP, "unsupported digest algorithm \"sha512\"");
	expect_parse_error("SHA$:00", -EINVAL, "bad algorithm");
}

static void test_fd(void **state)
{
	char path[] = "/tmp/strata-digest-XXXXXX";
	int fd = mkstemp(path);
	struct strata_digest d;
	char buf[STRATA_DIGEST_STRING_MAX];
	uint64_t size = 0;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(loop_write(fd, "abc", 3), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(strata_sha256_fd(fd, &d, &size), 0);
	assert_int_equal(size, 3);
	assert_string_equal(strata_digest_format(&d, buf), ABC);
	close(fd);
	assert_int_equal(strata_sha256_fd(fd, &d, NULL), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_known_vectors),
	        cmocka_unit_test(test_streaming_equals_oneshot),
	        cmocka_unit_test(test_parse_roundtrip),
	        cmocka_unit_test(test_parse_errors),
	        cmocka_unit_test(test_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
