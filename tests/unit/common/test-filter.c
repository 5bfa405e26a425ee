/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Filter parser and matcher. The corpus and most cases mirror containerd's
 * filters/filter_test.go so the two implementations agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "filter.h"

struct label {
	const char *key, *value;
};

struct entry {
	const char *name;
	const char *other;
	struct label labels[3];
};

static const struct entry corpus[] = {
        {.name = "foo", .labels = {{"foo", "true"}}},
        {.name = "bar"},
        {.name = "foo", .labels = {{"foo", "present"}, {"more complex label", "present"}}},
        {.name = "bar", .labels = {{"bar", "true"}}},
        {.name = "fooer", .labels = {{"more complex label with \\ and \"", "present"}}},
        {.name = "fooer", .labels = {{"more complex label with \\ and \".post", "present"}}},
        {.name = "baz", .other = "too complex, yo"},
        {.name = "bazo", .other = "abc"},
        {.name = "compound", .labels = {{"foo", "omg_asdf.asdf-qwer"}}},
};
#define N_CORPUS ELEMENTSOF(corpus)

/* Labels are addressed by the rest of the path joined with ".", as
 * containerd's adaptors do. */
static bool entry_field(const char *const fieldpath[], size_t n, void *userdata,
                        const char **ret_value)
{
	const struct entry *e = userdata;
	char key[256] = "";

	if (n == 0)
		return false;
	if (streq(fieldpath[0], "name")) {
		*ret_value = e->name;
		return e->name && e->name[0];
	}
	if (streq(fieldpath[0], "other")) {
		*ret_value = e->other ? e->other : "";
		return e->other && e->other[0];
	}
	if (streq(fieldpath[0], "labels")) {
		for (size_t i = 1; i < n; i++) {
			if (i > 1)
				strcat(key, ".");
			strcat(key, fieldpath[i]);
		}
		for (size_t i = 0; i < ELEMENTSOF(e->labels) && e->labels[i].key; i++)
			if (streq(e->labels[i].key, key)) {
				*ret_value = e->labels[i].value;
				return true;
			}
	}
	return false;
}

/* Returns a bitmask of matching corpus entries, or -1 on a parse error. */
static long match_mask_n(const char *const filters[], size_t n)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	long mask = 0;

	if (strata_filter_parse(filters, n, &f, &err) < 0) {
		assert_non_null(err);
		assert_int_equal(err->code, -EINVAL);
		return -1;
	}
	assert_null(err);
	for (size_t i = 0; i < N_CORPUS; i++)
		if (strata_filter_match(f, entry_field, (void *)&corpus[i]))
			mask |= 1L << i;
	return mask;
}

static long match_mask(const char *filter)
{
	return match_mask_n(&filter, 1);
}

#define ALL  ((1L << N_CORPUS) - 1)
#define B(i) (1L << (i))

static void test_containerd_cases(void **state)
{
	assert_int_equal(match_mask(""), ALL);
	assert_int_equal(match_mask("name"), ALL);
	assert_int_equal(match_mask("labels.foo"), B(0) | B(2) | B(8));
	assert_int_equal(match_mask("labels.foo,name"), B(0) | B(2) | B(8));
	assert_int_equal(match_mask("labels.foo==true"), B(0));
	assert_int_equal(match_mask("labels.foo==omg_asdf.asdf-qwer"), B(8));
	assert_int_equal(match_mask("name==bar"), B(1) | B(3));
	assert_int_equal(match_mask("name!=bar"), ALL & ~(B(1) | B(3)));
	assert_int_equal(match_mask("name==bar,labels.bar"), B(3));
	assert_int_equal(match_mask("other==\"too complex, yo\""), B(6));
	assert_int_equal(match_mask("other~=[abc]+,name!=foo"), B(6) | B(7));
	assert_int_equal(match_mask("other~=/[abc]+/,name!=foo"), B(6) | B(7));
	assert_int_equal(match_mask("other~=/[abc]{1,2}/,name!=foo"), B(6) | B(7));
	assert_int_equal(match_mask("other~=/[abc]{0,1}\"\\//,name!=foo"), 0);
	assert_int_equal(match_mask("name==bar,labels.bar==true"), B(3));
	assert_int_equal(match_mask("name==bar,labels.bar==wrong"), 0);
	assert_int_equal(match_mask("name==foo,labels.\"more complex label\""), B(2));
	assert_int_equal(match_mask("labels.\"more complex label with \\\\ and \\\"\"==present"),
	                 B(4));
	assert_int_equal(
	        match_mask("labels.\"more complex label with \\\\ and \\\"\".post==present"), B(5));
}

static void expect_error(const char *filter, const char *msg_part)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	int r;

	r = strata_filter_parse(&filter, 1, &f, &err);
	assert_int_equal(r, -EINVAL);
	assert_null(f);
	assert_non_null(err);
	if (!strstr(err->msg, msg_part))
		fail_msg("filter %s: message \"%s\" lacks \"%s\"", filter, err->msg, msg_part);
}

static void test_containerd_errors(void **state)
{
	expect_error("labels.|foo|==omg_asdf.asdf-qwer", "position 7: invalid quote encountered");
	expect_error("labels.?\"more complex label with \\\\ and \\\"\".post==present",
	             "position 7: expected field or quoted");
	expect_error("name==foo,", "expected field or quoted");
	expect_error("labels.", "expected field or quoted");
	expect_error("image~=,id?=?fbaq", "position 7: expected value or quoted");
	expect_error("labels.ns/key==value", "position 9: quoted literal not terminated");
	expect_error("labels.key==/value", "position 12: quoted literal not terminated");
}

static void test_more_errors(void **state)
{
	expect_error("kind==", "position 6: expected value or quoted");
	expect_error("a===b", "unsupported operator \"===\"");
	expect_error("a=b", "unsupported operator \"=\"");
	expect_error("a==b ", "position 4: unexpected input");
	expect_error("a==b ,c", "unexpected input");
	expect_error("a ,b", "expected an operator");
	expect_error("a==/x/", "invalid quote encountered");
	expect_error("a~=\"(\"", "bad regexp");
	expect_error("a==\"\\q\"", "quote syntax error");
	expect_error("a==\"\\x0\"", "quote syntax error");
	expect_error("a==\"\\x00\"", "NUL character not supported");
	expect_error("a==\"\\777\"", "quote syntax error");
	expect_error("a==\"\\U00110000\"", "quote syntax error");
	expect_error("a==\"x\\\"", "quoted literal not terminated");
	expect_error("a==\"x\ny\"", "quoted literal not terminated");
	expect_error("a==b\xff", "unexpected input");
	expect_error("\xff", "rune error");
	expect_error("@", "expected field or quoted");
	expect_error(",", "expected field or quoted");
	expect_error("a==.b", "expected value or quoted");
	expect_error("a.\"b\"c", "expected an operator");
}

static bool kv_field(const char *const fieldpath[], size_t n, void *userdata,
                     const char **ret_value)
{
	const char *const *kv = userdata;

	if (n == 1 && streq(fieldpath[0], kv[0])) {
		*ret_value = kv[1];
		return true;
	}
	return false;
}

static bool kv_matches(const char *filter, const char *key, const char *value)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	const char *kv[2] = {key, value};

	assert_int_equal(strata_filter_parse(&filter, 1, &f, NULL), 0);
	return strata_filter_match(f, kv_field, (void *)kv);
}

static void test_values_and_quoting(void **state)
{
	/* blanks before tokens are skipped */
	assert_true(kv_matches("  a  ==  b", "a", "b"));
	/* a bare value runs to ',' or a blank and may hold '.', '=', '/' */
	assert_true(kv_matches("a==x.y=z/w", "a", "x.y=z/w"));
	assert_true(kv_matches("a==sha256:abc", "a", "sha256:abc"));
	assert_true(kv_matches("a==h\xc3\xa9llo", "a", "h\xc3\xa9llo"));
	/* escapes */
	assert_true(kv_matches("a==\"\\x41\\u00e9\\101\\t\"", "a",
	                       "A\xc3\xa9"
	                       "A\t"));
	assert_true(kv_matches("a==\"\\U0001F600\"", "a", "\xf0\x9f\x98\x80"));
	assert_true(kv_matches("a~=|x\\|y|", "a", "x|y"));
	assert_true(kv_matches("\"a\"==\"\"", "a", ""));
	/* != treats an absent field as "" */
	assert_true(kv_matches("b!=x", "a", "v"));
	assert_false(kv_matches("b!=\"\"", "a", "v"));
	assert_false(kv_matches("b==\"\"", "a", "v"));
	/* ~= on an absent field runs against "" */
	assert_true(kv_matches("b~=^$", "a", "v"));
}

static void test_regexp(void **state)
{
	assert_true(kv_matches("a~=^v[0-9]+$", "a", "v12"));
	assert_false(kv_matches("a~=^v[0-9]+$", "a", "v12x"));
	/* unanchored search like Go's MatchString */
	assert_true(kv_matches("a~=b", "a", "abc"));
	/* RE2 spellings */
	assert_true(kv_matches("a~=^\\d+$", "a", "123"));
	assert_false(kv_matches("a~=^\\d+$", "a", "12a"));
	assert_true(kv_matches("a~=^\\D+$", "a", "abc"));
	assert_true(kv_matches("a~=(?i)^ABC$", "a", "abc"));
	assert_true(kv_matches("a~=^\\w+\\s\\w+$", "a", "ab cd"));
	assert_true(kv_matches("a~=^[[:digit:]\\]]+$", "a", "1]2"));
	assert_true(kv_matches("a~=^[]a]+$", "a", "]a]"));
	assert_true(kv_matches("a~=/^x|y$/", "a", "y"));
}

static void test_or_of_filters(void **state)
{
	const char *f1[] = {"name==bar", "name==baz"};
	const char *f2[] = {"", "name==nothing"};
	const char *f3[] = {"name==bar", "name=="};

	assert_int_equal(match_mask_n(f1, 2), B(1) | B(3) | B(6));
	assert_int_equal(match_mask_n(f2, 2), ALL);
	assert_int_equal(match_mask_n(f3, 2), -1);
	assert_int_equal(match_mask_n(NULL, 0), ALL);
	/* NULL filter object matches everything */
	assert_true(strata_filter_match(NULL, entry_field, (void *)&corpus[0]));
	assert_null(strata_filter_free(NULL));
}

static int seen_n;
static char seen[4][64];

static bool record_field(const char *const fieldpath[], size_t n, void *userdata,
                         const char **ret_value)
{
	seen_n = (int)n;
	for (size_t i = 0; i < n && i < 4; i++)
		snprintf(seen[i], sizeof(seen[i]), "%s", fieldpath[i]);
	return false;
}

static void test_fieldpath_components(void **state)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	const char *s = "labels.\"containerd.io/gc.ref.content.l.0\".x";

	assert_int_equal(strata_filter_parse(&s, 1, &f, NULL), 0);
	assert_false(strata_filter_match(f, record_field, NULL));
	assert_int_equal(seen_n, 3);
	assert_string_equal(seen[0], "labels");
	assert_string_equal(seen[1], "containerd.io/gc.ref.content.l.0");
	assert_string_equal(seen[2], "x");
}

/* A crude fuzz pass: random strings drawn from the grammar's alphabet must
 * parse or fail cleanly (run under ASan/valgrind in CI). */
static void test_random_inputs(void **state)
{
	static const char alphabet[] = "ab_.,=!~\"/|\\ x0\xc3\xa9\xff[]wd^-:";
	char buf[32];

	srand(1);
	for (int i = 0; i < 20000; i++) {
		_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
		_cleanup_error_ struct strata_error *err = NULL;
		const char *p = buf;
		size_t len = (size_t)(rand() % 24);
		int r;

		size_t j = 0;

		/* half of the inputs exercise the regexp translation */
		if (i % 2)
			j = (size_t)snprintf(buf, sizeof(buf), "a~=");
		for (; j < len; j++)
			buf[j] = alphabet[rand() % (sizeof(alphabet) - 1)];
		buf[MAX(len, j)] = '\0';
		r = strata_filter_parse(&p, 1, &f, &err);
		if (r < 0) {
			assert_int_equal(r, -EINVAL);
			assert_non_null(err);
		} else {
			(void)strata_filter_match(f, entry_field, (void *)&corpus[2]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_containerd_cases),
	        cmocka_unit_test(test_containerd_errors),
	        cmocka_unit_test(test_more_errors),
	        cmocka_unit_test(test_values_and_quoting),
	        cmocka_unit_test(test_regexp),
	        cmocka_unit_test(test_or_of_filters),
	        cmocka_unit_test(test_fieldpath_components),
	        cmocka_unit_test(test_random_inputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
