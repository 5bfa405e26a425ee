/* SPDX-License-Identifier: Apache-2.0 */
/* Image reference parsing and normalisation (containerd/docker rules). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "registry.h"

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct ok_case {
	const char *in;
	const char *domain, *path, *tag, *digest;
	const char *formatted;
};

static const struct ok_case ok_cases[] = {
        {"busybox", "docker.io", "library/busybox", "latest", NULL,
         "docker.io/library/busybox:latest"},
        {"busybox:1.36", "docker.io", "library/busybox", "1.36", NULL,
         "docker.io/library/busybox:1.36"},
        {"library/busybox", "docker.io", "library/busybox", "latest", NULL, NULL},
        {"docker.io/busybox", "docker.io", "library/busybox", "latest", NULL, NULL},
        {"index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", NULL, NULL},
        {"user/app:v1", "docker.io", "user/app", "v1", NULL, "docker.io/user/app:v1"},
        {"ghcr.io/org/team/app:1.0", "ghcr.io", "org/team/app", "1.0", NULL, NULL},
        {"localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest"},
        {"localhost:5000/app:dev", "localhost:5000", "app", "dev", NULL, NULL},
        {"127.0.0.1:5000/x:y", "127.0.0.1:5000", "x", "y", NULL, "127.0.0.1:5000/x:y"},
        {"[::1]:5000/a/b:c", "[::1]:5000", "a/b", "c", NULL, NULL},
        {"busybox@" D64, "docker.io", "library/busybox", NULL, D64,
         "docker.io/library/busybox@" D64},
        {"busybox:1.36@" D64, "docker.io", "library/busybox", "1.36", D64,
         "docker.io/library/busybox:1.36@" D64},
        {"reg.example.com:443/a/b@" D64, "reg.example.com:443", "a/b", NULL, D64, NULL},
        {"a__b/c-d.e_f:T_ag-1.x", "docker.io", "a__b/c-d.e_f", "T_ag-1.x", NULL, NULL},
        {"a---b/c", "docker.io", "a---b/c", "latest", NULL, NULL},
        {"Foo.example/bar", "Foo.example", "bar", "latest", NULL, NULL},
        {"x:_underscore", "docker.io", "library/x", "_underscore", NULL, NULL},
};

struct bad_case {
	const char *in;
	const char *msg_part;
};

static const struct bad_case bad_cases[] = {
        {"", "empty"},
        {"Busybox", "must be lowercase"},
        {"docker.io/Library/busybox", "must be lowercase"},
        {"busybox:", "bad tag"},
        {"busybox:.x", "bad tag"},
        {"busybox:-x", "bad tag"},
        {"busybox:a+b", "bad tag"},
        {"busybox@sha256:1234", "bad digest"},
        {"busybox@md5:0123456789abcdef0123456789abcdef", "bad digest"},
        {"busybox@" D64 "x", "bad digest"},
        {"a//b", "bad repository path component"},
        {"a/b/", "bad repository path component"},
        {"-a/b", "bad repository path component"},
        {"a_/b", "bad repository path component"},
        {"a.-b", "bad repository path component"},
        {"host:port/x", "bad registry domain"},
        {"-bad.example/x", "bad registry domain"},
        {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "64-character hex"},
        {"a b", "bad repository path component"},
        {":tag", "empty name"},
};

static void test_ok(void **state)
{
	for (size_t i = 0; i < ELEMENTSOF(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
		_cleanup_error_ struct strata_error *err = NULL;
		_cleanup_free_ char *f = NULL;

		if (!c->domain || !c->path)
			continue;
		int r = content_ref_parse(c->in, &ref, &err);
		if (r < 0)
			print_error("%s: %s\n", c->in, strata_error_message(err));
		assert_int_equal(r, 0);
		assert_string_equal(ref->domain, c->domain);
		assert_string_equal(ref->path, c->path);
		if (c->tag)
			assert_string_equal(ref->tag, c->tag);
		else
			assert_null(ref->tag);
		if (c->digest)
			assert_string_equal(ref->digest, c->digest);
		else
			assert_null(ref->digest);
		f = content_ref_format(ref);
		assert_non_null(f);
		if (c->formatted)
			assert_string_equal(f, c->formatted);
		/* formatting is a fixed point */
		_cleanup_(content_ref_freep) struct content_ref *again = NULL;
		assert_int_equal(content_ref_parse(f, &again, NULL), 0);
		_cleanup_free_ char *f2 = content_ref_format(again);
		assert_string_equal(f, f2);
	}
}

static void test_bad(void **state)
{
	for (size_t i = 0; i < ELEMENTSOF(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
		_cleanup_error_ struct strata_error *err = NULL;
		int r = content_ref_parse(c->in, &ref, &err);
		if (r == 0)
			print_error("\"%s\" parsed but should not\n", c->in);
		assert_true(r < 0);
		assert_null(ref);
		assert_non_null(err);
		if (!strstr(strata_error_message(err), c->msg_part))
			print_error("\"%s\": message \"%s\" lacks \"%s\"\n", c->in,
			            strata_error_message(err), c->msg_part);
		assert_non_null(strstr(strata_error_message(err), c->msg_part));
	}
}

static void test_long_name(void **state)
{
	char buf[400];
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_error_ struct strata_error *err = NULL;

	memset(buf, 'a', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	assert_int_equal(content_ref_parse(buf, &ref, &err), -EINVAL);
	assert_non_null(strstr(strata_error_message(err), "longer than 255"));
}

static void test_registry_host(void **state)
{
	_cleanup_(content_ref_freep) struct content_ref *a = NULL, *b = NULL;
	_cleanup_free_ char *name = NULL;

	assert_int_equal(content_ref_parse("busybox", &a, NULL), 0);
	assert_string_equal(content_ref_registry_host(a), "registry-1.docker.io");
	name = content_ref_name(a);
	assert_string_equal(name, "docker.io/library/busybox");
	assert_int_equal(content_ref_parse("quay.io/x/y", &b, NULL), 0);
	assert_string_equal(content_ref_registry_host(b), "quay.io");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ok),
	        cmocka_unit_test(test_bad),
	        cmocka_unit_test(test_long_name),
	        cmocka_unit_test(test_registry_host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
