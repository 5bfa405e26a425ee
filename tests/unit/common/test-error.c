/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static int inner(struct strata_error **ret_err)
{
	return strata_error_set_errno(ret_err, -ENOSPC, "write \"%s\"", "/x/y");
}

static int middle(struct strata_error **ret_err)
{
	int r = inner(ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "layer %s", "sha256:ab");
	return 0;
}

static void test_context_chain(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	int r = middle(&err);
	assert_int_equal(r, -ENOSPC);
	assert_non_null(err);
	assert_int_equal(err->code, -ENOSPC);
	assert_string_equal(strata_error_message(err),
	                    "layer sha256:ab: write \"/x/y\": No space left on device");
	r = strata_error_prefix(&err, -EIO, "pull \"%s\"", "img");
	/* The innermost code wins: the class must not change on the way up. */
	assert_int_equal(r, -ENOSPC);
	assert_true(strncmp(strata_error_message(err), "pull \"img\": layer", 17) == 0);
}

static void test_null_ret_err(void **state)
{
	assert_int_equal(strata_error_set(NULL, -EINVAL, "x"), -EINVAL);
	assert_int_equal(strata_error_prefix(NULL, -ENOENT, "y"), -ENOENT);
	assert_int_equal(middle(NULL), -ENOSPC);
}

static void test_first_cause_kept(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	(void)strata_error_set(&err, -ENOENT, "first");
	assert_int_equal(strata_error_set(&err, -EEXIST, "second"), -EEXIST);
	assert_string_equal(err->msg, "first");
	assert_int_equal(err->code, -ENOENT);
}

static void test_prefix_without_error(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	assert_int_equal(strata_error_prefix(&err, -ENOENT, "open \"%s\"", "a"), -ENOENT);
	assert_string_equal(strata_error_message(err), "open \"a\": No such file or directory");
}

static void test_positive_code_becomes_eio(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	assert_int_equal(strata_error_set(&err, 0, "bad"), -EIO);
	assert_int_equal(err->code, -EIO);
}

static void test_propagate(void **state)
{
	_cleanup_error_ struct strata_error *a = NULL, *b = NULL;
	(void)strata_error_set(&b, -EINVAL, "b");
	strata_error_propagate(&a, &b);
	assert_null(b);
	assert_string_equal(a->msg, "b");
	(void)strata_error_set(&b, -ENOENT, "c");
	strata_error_propagate(&a, &b); /* a keeps its error; b is freed */
	assert_null(b);
	assert_string_equal(a->msg, "b");
	strata_error_propagate(NULL, NULL);
	assert_null(strata_error_free(NULL));
	assert_string_equal(strata_error_message(NULL), "unknown error");
}

static void test_grpc_mapping(void **state)
{
	/* containerd's errdefs classes */
	assert_int_equal(strata_errno_to_grpc(-ENOENT), GRPC_NOT_FOUND);
	assert_int_equal(strata_errno_to_grpc(-EEXIST), GRPC_ALREADY_EXISTS);
	assert_int_equal(strata_errno_to_grpc(-EINVAL), GRPC_INVALID_ARGUMENT);
	assert_int_equal(strata_errno_to_grpc(-EAGAIN), GRPC_UNAVAILABLE);
	assert_int_equal(strata_errno_to_grpc(-ENOTEMPTY), GRPC_FAILED_PRECONDITION);
	assert_int_equal(strata_errno_to_grpc(-EBADMSG), GRPC_FAILED_PRECONDITION);
	assert_int_equal(strata_errno_to_grpc(-ENOSYS), GRPC_UNIMPLEMENTED);
	assert_int_equal(strata_errno_to_grpc(-ERANGE), GRPC_OUT_OF_RANGE);
	assert_int_equal(strata_errno_to_grpc(-ECANCELED), GRPC_CANCELLED);
	assert_int_equal(strata_errno_to_grpc(-ETIMEDOUT), GRPC_DEADLINE_EXCEEDED);
	assert_int_equal(strata_errno_to_grpc(-ENOSPC), GRPC_RESOURCE_EXHAUSTED);
	assert_int_equal(strata_errno_to_grpc(-EIO), GRPC_UNKNOWN);
	assert_int_equal(strata_errno_to_grpc(0), GRPC_OK);
	/* and back: every class survives a round trip */
	for (int s = GRPC_CANCELLED; s <= GRPC_UNAVAILABLE; s++) {
		int e = strata_grpc_to_errno((enum grpc_status)s);
		if (s == GRPC_UNKNOWN || s == GRPC_ABORTED || s == GRPC_INTERNAL)
			continue;
		assert_int_equal(strata_errno_to_grpc(e), s);
	}
	assert_string_equal(strata_grpc_status_name(GRPC_FAILED_PRECONDITION),
	                    "FailedPrecondition");
	assert_string_equal(strata_grpc_status_name((enum grpc_status)99), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_context_chain),
	        cmocka_unit_test(test_null_ret_err),
	        cmocka_unit_test(test_first_cause_kept),
	        cmocka_unit_test(test_prefix_without_error),
	        cmocka_unit_test(test_positive_code_becomes_eio),
	        cmocka_unit_test(test_propagate),
	        cmocka_unit_test(test_grpc_mapping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
