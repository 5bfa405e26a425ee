/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/toml.c: every value type, the define-once rules, the
 * configs Strata really reads, and the line/column of each syntax error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>

#include "path.h"
#include "toml.h"

/* ---- helpers ---- */

static struct toml_value *parse_ok(const char *src)
{
	struct strata_error *err = NULL;
	struct toml_value *v = NULL;
	int r = toml_parse(src, strlen(src), "test.toml", &v, &err);

	if (r < 0)
		fail_msg("parse failed (%d): %s", r, strata_error_message(err));
	assert_null(err);
	assert_non_null(v);
	assert_int_equal(toml_type(v), TOML_TABLE);
	return v;
}

/* Parsing src must fail with -EINVAL and a message
 * "test.toml: line L, column C: ...reason...". */
static void check_error_len(const char *src, size_t len, unsigned line, unsigned col,
                            const char *reason)
{
	struct strata_error *err = NULL;
	struct toml_value *v = NULL;
	char want[80];
	int r;

	r = toml_parse(src, len, "test.toml", &v, &err);
	assert_int_equal(r, -EINVAL);
	assert_null(v);
	assert_non_null(err);
	assert_int_equal(err->code, -EINVAL);
	assert_non_null(err->msg);
	(void)snprintf(want, sizeof(want), "test.toml: line %u, column %u: ", line, col);
	if (strncmp(err->msg, want, strlen(want)) != 0 || !strstr(err->msg, reason))
		fail_msg("got \"%s\", want \"%s...%s...\"", err->msg, want, reason);
	strata_error_free(err);
}

#define check_error(src, line, col, reason) check_error_len(src, strlen(src), line, col, reason)

static const char *str_of(const struct toml_value *v)
{
	const char *s = NULL;

	assert_non_null(v);
	assert_int_equal(toml_as_string(v, &s), 0);
	return s;
}

static int64_t int_of(const struct toml_value *v)
{
	int64_t i = 0;

	assert_non_null(v);
	assert_int_equal(toml_as_int(v, &i), 0);
	return i;
}

static double float_of(const struct toml_value *v)
{
	double d = 0;

	assert_non_null(v);
	assert_int_equal(toml_as_float(v, &d), 0);
	return d;
}

static bool bool_of(const struct toml_value *v)
{
	bool b = false;

	assert_non_null(v);
	assert_int_equal(toml_as_bool(v, &b), 0);
	return b;
}

#define STR(root, ...)   str_of(toml_get_path(root, __VA_ARGS__, NULL))
#define INT(root, ...)   int_of(toml_get_path(root, __VA_ARGS__, NULL))
#define FLOAT(root, ...) float_of(toml_get_path(root, __VA_ARGS__, NULL))
#define BOOL(root, ...)  bool_of(toml_get_path(root, __VA_ARGS__, NULL))

/* ---- values ---- */

static void test_basic_string(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("s = \"hello world\"\n"
	                                               "empty = \"\"\n"
	                                               "tab = \"a\tb\"\n"
	                                               "hash = \"not # a comment\"\n");

	assert_string_equal(STR(t, "s"), "hello world");
	assert_string_equal(STR(t, "empty"), "");
	assert_string_equal(STR(t, "tab"), "a\tb");
	assert_string_equal(STR(t, "hash"), "not # a comment");
	assert_int_equal(toml_type(toml_get(t, "s")), TOML_STRING);
}

static void test_escapes(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("s = \"\\b\\t\\n\\f\\r\\\"\\\\\"\n"
	                                               "u = \"caf\\u00e9 \\u20AC \\U0001F600\"\n"
	                                               "path = \"C:\\\\Users\\\\x\"\n");

	assert_string_equal(STR(t, "s"), "\b\t\n\f\r\"\\");
	assert_string_equal(STR(t, "u"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	assert_string_equal(STR(t, "path"), "C:\\Users\\x");
}

static void test_literal_string(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("winpath = 'C:\\Users\\nodejs\\templates'\n"
	                                               "quoted = 'Tom \"Dubs\" Preston'\n"
	                                               "regex = '<\\i\\c*\\s*>'\n");

	assert_string_equal(STR(t, "winpath"), "C:\\Users\\nodejs\\templates");
	assert_string_equal(STR(t, "quoted"), "Tom \"Dubs\" Preston");
	assert_string_equal(STR(t, "regex"), "<\\i\\c*\\s*>");
}

static void test_multiline_basic(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("first = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n"
	                 "trim = \"\"\"\\\n   The quick brown \\\n\n\n   fox.\\\n   \"\"\"\n"
	                 "trim_ws = \"\"\"a \\   \t\n   b\"\"\"\n"
	                 "quotes = \"\"\"Here are two quotation marks: \"\". Simple.\"\"\"\n"
	                 "end = \"\"\"ends in quotes\"\"\"\"\"\n"
	                 "esc = \"\"\"tab\\there \\u00e9\"\"\"\n"
	                 "oneline = \"\"\"x\"\"\"\n");

	/* the newline right after the opening delimiter is dropped */
	assert_string_equal(STR(t, "first"), "Roses are red\nViolets are blue");
	/* a line-ending backslash eats whitespace and newlines */
	assert_string_equal(STR(t, "trim"), "The quick brown fox.");
	assert_string_equal(STR(t, "trim_ws"), "a b");
	assert_string_equal(STR(t, "quotes"), "Here are two quotation marks: \"\". Simple.");
	assert_string_equal(STR(t, "end"), "ends in quotes\"\"");
	assert_string_equal(STR(t, "esc"), "tab\there \xc3\xa9");
	assert_string_equal(STR(t, "oneline"), "x");
}

static void test_multiline_literal(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("regex = '''I [dw]on't need \\d{2} apples'''\n"
	                 "lines = '''\nThe first newline is\ntrimmed in raw strings.\n"
	                 "   All other whitespace\n   is preserved. \\\n'''\n"
	                 "q = ''''That,' she said, 'is still pointless.''''\n");

	assert_string_equal(STR(t, "regex"), "I [dw]on't need \\d{2} apples");
	assert_string_equal(STR(t, "lines"), "The first newline is\ntrimmed in raw strings.\n"
	                                     "   All other whitespace\n   is preserved. \\\n");
	assert_string_equal(STR(t, "q"), "'That,' she said, 'is still pointless.'");
}

static void test_integers(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("a = 99\nb = +42\nc = 0\nd = -17\n"
	                 "e = 1_000_000\nf = 5_349_221\n"
	                 "hex = 0xDEADbeef\noct = 0o755\nbin = 0b1101\n"
	                 "max = 9223372036854775807\n"
	                 "min = -9223372036854775808\n"
	                 "hexmax = 0x7fff_ffff_ffff_ffff\n"
	                 "zero = -0\n");

	assert_int_equal(INT(t, "a"), 99);
	assert_int_equal(INT(t, "b"), 42);
	assert_int_equal(INT(t, "c"), 0);
	assert_int_equal(INT(t, "d"), -17);
	assert_int_equal(INT(t, "e"), 1000000);
	assert_int_equal(INT(t, "f"), 5349221);
	assert_int_equal(INT(t, "hex"), 0xdeadbeef);
	assert_int_equal(INT(t, "oct"), 0755);
	assert_int_equal(INT(t, "bin"), 13);
	assert_true(INT(t, "max") == INT64_MAX);
	assert_true(INT(t, "min") == INT64_MIN);
	assert_true(INT(t, "hexmax") == INT64_MAX);
	assert_int_equal(INT(t, "zero"), 0);
	assert_int_equal(toml_type(toml_get(t, "a")), TOML_INT);
}

static void test_floats(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("a = 1.0\nb = 3.1415\nc = -0.01\nd = 5e+22\ne = 1e06\nf = -2E-2\n"
	                 "g = 6.626e-34\nh = 224_617.445_991_228\ni = inf\nj = +inf\nk = -inf\n"
	                 "l = nan\nm = -nan\nn = 0.0\no = 0e0\n");

	assert_true(FLOAT(t, "a") == 1.0);
	assert_true(FLOAT(t, "b") == 3.1415);
	assert_true(FLOAT(t, "c") == -0.01);
	assert_true(FLOAT(t, "d") == 5e22);
	assert_true(FLOAT(t, "e") == 1e6);
	assert_true(FLOAT(t, "f") == -2e-2);
	assert_true(FLOAT(t, "g") == 6.626e-34);
	assert_true(FLOAT(t, "h") == 224617.445991228);
	assert_true(isinf(FLOAT(t, "i")) && FLOAT(t, "i") > 0);
	assert_true(isinf(FLOAT(t, "j")) && FLOAT(t, "j") > 0);
	assert_true(isinf(FLOAT(t, "k")) && FLOAT(t, "k") < 0);
	assert_true(isnan(FLOAT(t, "l")));
	assert_true(isnan(FLOAT(t, "m")));
	assert_true(FLOAT(t, "n") == 0.0);
	assert_true(FLOAT(t, "o") == 0.0);
	assert_int_equal(toml_type(toml_get(t, "a")), TOML_FLOAT);
}

static void test_booleans(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("yes = true\nno = false\n");

	assert_true(BOOL(t, "yes"));
	assert_false(BOOL(t, "no"));
	assert_int_equal(toml_type(toml_get(t, "yes")), TOML_BOOL);
}

static void test_arrays(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("ints = [1, 2, 3]\n"
	                 "empty = []\n"
	                 "mixed = [1, \"two\", 3.0, true, { x = 1 }]\n"
	                 "nested = [[1, 2], [\"a\", ['b']], [[[]]]]\n"
	                 "multi = [\n  \"a\",\n\n  \"b\", # comment\n  # another\n  \"c\",\n]\n");
	struct toml_value *a, *n;

	a = toml_get(t, "ints");
	assert_int_equal(toml_type(a), TOML_ARRAY);
	assert_int_equal(toml_count(a), 3);
	assert_int_equal(int_of(toml_at(a, 0)), 1);
	assert_int_equal(int_of(toml_at(a, 2)), 3);
	assert_null(toml_at(a, 3));
	assert_null(toml_key_at(a, 0));

	assert_int_equal(toml_count(toml_get(t, "empty")), 0);

	a = toml_get(t, "mixed");
	assert_int_equal(toml_count(a), 5);
	assert_string_equal(str_of(toml_at(a, 1)), "two");
	assert_true(float_of(toml_at(a, 2)) == 3.0);
	assert_true(bool_of(toml_at(a, 3)));
	assert_int_equal(int_of(toml_get(toml_at(a, 4), "x")), 1);

	a = toml_get(t, "nested");
	assert_int_equal(toml_count(a), 3);
	n = toml_at(a, 1);
	assert_int_equal(toml_type(n), TOML_ARRAY);
	assert_string_equal(str_of(toml_at(n, 0)), "a");
	assert_string_equal(str_of(toml_at(toml_at(n, 1), 0)), "b");
	n = toml_at(toml_at(toml_at(a, 2), 0), 0);
	assert_int_equal(toml_type(n), TOML_ARRAY);
	assert_int_equal(toml_count(n), 0);

	a = toml_get(t, "multi");
	assert_int_equal(toml_count(a), 3);
	assert_string_equal(str_of(toml_at(a, 2)), "c");
}

static void test_inline_tables(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("name = { first = \"Tom\", last = \"Preston-Werner\" }\n"
	                 "point = {x=1,y=2}\n"
	                 "empty = {}\n"
	                 "animal = { type.name = \"pug\", type.size = 2 }\n"
	                 "deep = { a = { b = { c = [1, { d = true }] } } }\n");
	struct toml_value *name = toml_get(t, "name");

	assert_int_equal(toml_type(name), TOML_TABLE);
	assert_int_equal(toml_count(name), 2);
	assert_string_equal(toml_key_at(name, 0), "first");
	assert_string_equal(STR(t, "name", "last"), "Preston-Werner");
	assert_int_equal(INT(t, "point", "y"), 2);
	assert_int_equal(toml_count(toml_get(t, "empty")), 0);
	assert_string_equal(STR(t, "animal", "type", "name"), "pug");
	assert_int_equal(INT(t, "animal", "type", "size"), 2);
	assert_true(
	        bool_of(toml_get(toml_at(toml_get_path(t, "deep", "a", "b", "c", NULL), 1), "d")));
}

static void test_dotted_keys(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("name = \"Orange\"\n"
	                                               "physical.color = \"orange\"\n"
	                                               "physical.shape = \"round\"\n"
	                                               "site . \"google.com\" = true\n"
	                                               "[fruit]\n"
	                                               "apple.color = \"red\"\n"
	                                               "apple.taste.sweet = true\n"
	                                               "[fruit.apple.texture]\n"
	                                               "smooth = true\n");
	struct toml_value *phys = toml_get(t, "physical");

	assert_int_equal(toml_type(phys), TOML_TABLE);
	assert_int_equal(toml_count(phys), 2);
	assert_string_equal(STR(t, "physical", "shape"), "round");
	assert_true(BOOL(t, "site", "google.com"));
	assert_string_equal(STR(t, "fruit", "apple", "color"), "red");
	assert_true(BOOL(t, "fruit", "apple", "taste", "sweet"));
	assert_true(BOOL(t, "fruit", "apple", "texture", "smooth"));
}

static void test_quoted_keys(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("\"127.0.0.1\" = \"value\"\n"
	                                               "\"character encoding\" = \"value\"\n"
	                                               "\"\xca\x8e\xc7\x9d\xca\x9e\" = \"value\"\n"
	                                               "'key2' = 'value'\n"
	                                               "'quoted \"value\"' = 1\n"
	                                               "\"\" = \"blank\"\n"
	                                               "\"esc\\u0041\" = 2\n"
	                                               "bare_key-1 = 3\n"
	                                               "1234 = 4\n");

	assert_string_equal(STR(t, "127.0.0.1"), "value");
	assert_null(toml_get(t, "127"));
	assert_string_equal(STR(t, "character encoding"), "value");
	assert_string_equal(STR(t, "\xca\x8e\xc7\x9d\xca\x9e"), "value");
	assert_string_equal(STR(t, "key2"), "value");
	assert_int_equal(INT(t, "quoted \"value\""), 1);
	assert_string_equal(STR(t, ""), "blank");
	assert_int_equal(INT(t, "escA"), 2);
	assert_int_equal(INT(t, "bare_key-1"), 3);
	assert_int_equal(INT(t, "1234"), 4);
}

static void test_tables(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("[a.b.c]\nx = 1\n"
	                 "[ d . 'e.f' . \"g\" ]\ny = 2\n"
	                 "[a]\n" /* defining an implicit table once is fine */
	                 "z = 3\n"
	                 "[a.b]\nw = 4\n");

	assert_int_equal(INT(t, "a", "b", "c", "x"), 1);
	assert_int_equal(INT(t, "d", "e.f", "g", "y"), 2);
	assert_int_equal(INT(t, "a", "z"), 3);
	assert_int_equal(INT(t, "a", "b", "w"), 4);
	assert_null(toml_get_path(t, "a", "missing", "x", NULL));
}

static void test_array_of_tables(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("[[products]]\n"
	                                               "name = \"Hammer\"\n"
	                                               "sku = 738594937\n"
	                                               "\n"
	                                               "[[products]]  # empty table\n"
	                                               "\n"
	                                               "[[products]]\n"
	                                               "name = \"Nail\"\n"
	                                               "[products.dims]\n"
	                                               "len = 3\n"
	                                               "[[products.variants]]\n"
	                                               "color = \"gray\"\n"
	                                               "[[products.variants]]\n"
	                                               "color = \"black\"\n");
	struct toml_value *p = toml_get(t, "products"), *last;

	assert_int_equal(toml_type(p), TOML_ARRAY);
	assert_int_equal(toml_count(p), 3);
	assert_string_equal(str_of(toml_get(toml_at(p, 0), "name")), "Hammer");
	assert_int_equal(int_of(toml_get(toml_at(p, 0), "sku")), 738594937);
	assert_int_equal(toml_count(toml_at(p, 1)), 0);
	last = toml_at(p, 2);
	assert_string_equal(str_of(toml_get(last, "name")), "Nail");
	assert_int_equal(INT(last, "dims", "len"), 3);
	assert_int_equal(toml_count(toml_get(last, "variants")), 2);
	assert_string_equal(str_of(toml_get(toml_at(toml_get(last, "variants"), 1), "color")),
	                    "black");
}

static void test_comments_everywhere(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("# leading comment\n"
	                 "   # indented comment\n"
	                 "a = 1 # after a value\n"
	                 "[t] # after a header\n"
	                 "b = [ # after an open bracket\n"
	                 "  1, # after an element\n"
	                 "  # on its own line\n"
	                 "  2 # before the comma\n"
	                 "  , 3\n"
	                 "] # after the array\n"
	                 "[[arr]] # after an array-of-tables header\n"
	                 "c = \"#\" # a hash in a string is not a comment\n"
	                 "# utf-8 in a comment: \xe2\x82\xac\tand a tab\n"
	                 "#");

	assert_int_equal(INT(t, "a"), 1);
	assert_int_equal(toml_count(toml_get_path(t, "t", "b", NULL)), 3);
	assert_string_equal(str_of(toml_get(toml_at(toml_get(t, "arr"), 0), "c")), "#");
}

static void test_crlf(void **state)
{
	_cleanup_toml_ struct toml_value *t =
	        parse_ok("# comment\r\n"
	                 "a = \"x\"\r\n"
	                 "[t]\r\n"
	                 "b = [\r\n  1,\r\n  2,\r\n]\r\n"
	                 "ml = \"\"\"\r\nline1\r\nline2 \\\r\n   cont\"\"\"\r\n"
	                 "lit = '''\r\nraw\r\n'''\r\n");

	assert_string_equal(STR(t, "a"), "x");
	assert_int_equal(toml_count(toml_get_path(t, "t", "b", NULL)), 2);
	/* CRLF inside multi-line strings reads as LF */
	assert_string_equal(STR(t, "t", "ml"), "line1\nline2 cont");
	assert_string_equal(STR(t, "t", "lit"), "raw\n");
}

static void test_empty_and_bom(void **state)
{
	_cleanup_toml_ struct toml_value *e = parse_ok("");
	_cleanup_toml_ struct toml_value *ws = parse_ok(" \n\t\n# only a comment");
	_cleanup_toml_ struct toml_value *bom = parse_ok("\xef\xbb\xbf"
	                                                 "a = 1\n");

	assert_int_equal(toml_count(e), 0);
	assert_int_equal(toml_count(ws), 0);
	assert_int_equal(INT(bom, "a"), 1);
}

static void test_not_nul_terminated(void **state)
{
	/* the buffer ends in the middle of what would otherwise continue */
	const char buf[] = "a = 12345";
	_cleanup_toml_ struct toml_value *t = NULL;

	assert_int_equal(toml_parse(buf, 6, NULL, &t, NULL), 0);
	assert_int_equal(INT(t, "a"), 12);
}

static void test_accessors(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok("z = 1\ny = \"s\"\nx = [true]\n[w]\n");
	const char *s;
	int64_t i;
	double d;
	bool b;

	/* definition order, not sorted */
	assert_int_equal(toml_count(t), 4);
	assert_string_equal(toml_key_at(t, 0), "z");
	assert_string_equal(toml_key_at(t, 1), "y");
	assert_string_equal(toml_key_at(t, 2), "x");
	assert_string_equal(toml_key_at(t, 3), "w");
	assert_ptr_equal(toml_at(t, 1), toml_get(t, "y"));
	assert_null(toml_at(t, 4));
	assert_null(toml_key_at(t, 4));

	/* scalars are not containers */
	assert_int_equal(toml_count(toml_get(t, "z")), 0);
	assert_null(toml_at(toml_get(t, "z"), 0));
	assert_null(toml_get(toml_get(t, "z"), "anything"));
	assert_null(toml_get(toml_get(t, "x"), "0"));
	assert_null(toml_key_at(toml_get(t, "y"), 0));
	assert_int_equal(toml_count(NULL), 0);
	assert_null(toml_get(NULL, "z"));
	assert_null(toml_get_path(NULL, "z", NULL));
	assert_ptr_equal(toml_get_path(t, NULL), t);

	/* wrong type is -EINVAL, missing is -ENOENT */
	assert_int_equal(toml_as_string(toml_get(t, "z"), &s), -EINVAL);
	assert_int_equal(toml_as_int(toml_get(t, "y"), &i), -EINVAL);
	assert_int_equal(toml_as_float(toml_get(t, "z"), &d), -EINVAL);
	assert_int_equal(toml_as_bool(toml_get(t, "x"), &b), -EINVAL);
	assert_int_equal(toml_as_string(toml_get(t, "nope"), &s), -ENOENT);
	assert_int_equal(toml_as_int(NULL, &i), -ENOENT);
	assert_int_equal(toml_as_float(NULL, &d), -ENOENT);
	assert_int_equal(toml_as_bool(NULL, &b), -ENOENT);

	assert_null(toml_free(NULL));
}

static void test_many_keys(void **state)
{
	/* enough keys that lookups go through the hash index */
	_cleanup_toml_ struct toml_value *t = NULL;
	_cleanup_free_ char *src = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&src, &len);
	char key[32];

	assert_non_null(f);
	for (int i = 0; i < 1000; i++)
		fprintf(f, "k%d = %d\n", i, i);
	assert_int_equal(fclose(f), 0);
	t = parse_ok(src);

	assert_int_equal(toml_count(t), 1000);
	for (int i = 0; i < 1000; i++) {
		(void)snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(int_of(toml_get(t, key)), i);
		assert_string_equal(toml_key_at(t, (size_t)i), key);
	}
	assert_null(toml_get(t, "k1000"));

	/* duplicates are still caught past the indexing threshold */
	free(src);
	src = NULL;
	f = open_memstream(&src, &len);
	assert_non_null(f);
	for (int i = 0; i < 100; i++)
		fprintf(f, "k%d = %d\n", i, i);
	fprintf(f, "k42 = 0\n");
	assert_int_equal(fclose(f), 0);
	check_error(src, 101, 1, "duplicate key 'k42'");
}

/* ---- real configs ---- */

static const char hosts_toml[] = "server = \"https://registry-1.docker.io\"\n"
                                 "\n"
                                 "[host.\"https://mirror.example.com\"]\n"
                                 "  capabilities = [\"pull\", \"resolve\"]\n"
                                 "  skip_verify = true\n"
                                 "  ca = \"/etc/certs/mirror.pem\"\n"
                                 "\n"
                                 "[host.\"http://127.0.0.1:5000\"]\n"
                                 "  capabilities = [\"pull\"]\n"
                                 "  plain_http = true\n";

static void check_hosts(const struct toml_value *t)
{
	struct toml_value *host = toml_get(t, "host"), *caps;

	assert_string_equal(STR(t, "server"), "https://registry-1.docker.io");
	assert_int_equal(toml_count(host), 2);
	assert_string_equal(toml_key_at(host, 0), "https://mirror.example.com");
	assert_string_equal(toml_key_at(host, 1), "http://127.0.0.1:5000");

	caps = toml_get_path(t, "host", "https://mirror.example.com", "capabilities", NULL);
	assert_int_equal(toml_count(caps), 2);
	assert_string_equal(str_of(toml_at(caps, 0)), "pull");
	assert_string_equal(str_of(toml_at(caps, 1)), "resolve");
	assert_true(BOOL(t, "host", "https://mirror.example.com", "skip_verify"));
	assert_string_equal(STR(t, "host", "https://mirror.example.com", "ca"),
	                    "/etc/certs/mirror.pem");
	assert_null(toml_get_path(t, "host", "https://mirror.example.com", "plain_http", NULL));

	caps = toml_get_path(t, "host", "http://127.0.0.1:5000", "capabilities", NULL);
	assert_int_equal(toml_count(caps), 1);
	assert_true(BOOL(t, "host", "http://127.0.0.1:5000", "plain_http"));
}

static void test_hosts_toml(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok(hosts_toml);

	check_hosts(t);
}

static void test_containerd_config(void **state)
{
	_cleanup_toml_ struct toml_value *t = parse_ok(
	        "version = 2\n"
	        "root = \"/var/lib/containerd\"\n"
	        "disabled_plugins = [\"io.containerd.content.v1.content\"]\n"
	        "\n"
	        "[proxy_plugins]\n"
	        "  [proxy_plugins.strata]\n"
	        "    type = \"snapshot\"\n"
	        "    address = \"/run/strata/strata.sock\"\n"
	        "\n"
	        "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
	        "  snapshotter = \"strata\"\n"
	        "  disable_snapshot_annotations = false\n"
	        "\n"
	        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
	        "  runtime_type = \"io.containerd.runc.v2\"\n"
	        "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
	        "    SystemdCgroup = true\n");
	struct toml_value *dp = toml_get(t, "disabled_plugins");

	assert_int_equal(INT(t, "version"), 2);
	assert_int_equal(toml_count(dp), 1);
	assert_string_equal(str_of(toml_at(dp, 0)), "io.containerd.content.v1.content");
	assert_int_equal(toml_count(toml_get(t, "proxy_plugins")), 1);
	assert_string_equal(STR(t, "proxy_plugins", "strata", "type"), "snapshot");
	assert_string_equal(STR(t, "proxy_plugins", "strata", "address"),
	                    "/run/strata/strata.sock");
	assert_string_equal(
	        STR(t, "plugins", "io.containerd.grpc.v1.cri", "containerd", "snapshotter"),
	        "strata");
	assert_false(BOOL(t, "plugins", "io.containerd.grpc.v1.cri", "containerd",
	                  "disable_snapshot_annotations"));
	assert_true(BOOL(t, "plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes",
	                 "runc", "options", "SystemdCgroup"));
	assert_int_equal(toml_count(toml_get(t, "plugins")), 1);
}

/* ---- files ---- */

static void test_parse_file(void **state)
{
	char path[] = "/tmp/test-toml-XXXXXX";
	_cleanup_toml_ struct toml_value *t = NULL;
	struct strata_error *err = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(loop_write(fd, hosts_toml, strlen(hosts_toml)), 0);
	(void)close(fd);

	assert_int_equal(toml_parse_file(path, &t, &err), 0);
	assert_null(err);
	check_hosts(t);
	(void)unlink(path);
}

static void test_parse_file_error_names_path(void **state)
{
	char path[] = "/tmp/test-toml-XXXXXX";
	_cleanup_toml_ struct toml_value *t = NULL;
	struct strata_error *err = NULL;
	char want[64];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(loop_write(fd, "ok = 1\nbad\n", 11), 0);
	(void)close(fd);

	assert_int_equal(toml_parse_file(path, &t, &err), -EINVAL);
	assert_null(t);
	(void)snprintf(want, sizeof(want), "%s: line 2, column 4: ", path);
	assert_non_null(err);
	assert_true(strncmp(err->msg, want, strlen(want)) == 0);
	strata_error_free(err);
	(void)unlink(path);
}

static void test_parse_file_missing(void **state)
{
	struct toml_value *t = NULL;
	struct strata_error *err = NULL;

	assert_int_equal(toml_parse_file("/nonexistent/strata/hosts.toml", &t, &err), -ENOENT);
	assert_null(t);
	assert_non_null(err);
	assert_int_equal(err->code, -ENOENT);
	assert_non_null(strstr(err->msg, "\"/nonexistent/strata/hosts.toml\""));
	assert_non_null(strstr(err->msg, "No such file or directory"));
	strata_error_free(err);

	/* ret_err is optional */
	assert_int_equal(toml_parse_file("/nonexistent/strata/hosts.toml", &t, NULL), -ENOENT);
}

/* ---- syntax errors: each reports its line and column ---- */

static void test_err_missing_equals(void **state)
{
	check_error("a = 1\nkey \"value\"\n", 2, 5, "expected '=' after key, found '\"'");
	check_error("a\n", 1, 2, "expected '=' after key, found end of line");
	check_error("a.b", 1, 4, "expected '=' after key, found end of input");
	check_error("= 1\n", 1, 1, "expected a key");
	check_error("a = \n", 1, 5, "expected a value");
	check_error("a = 1\n[t]\nb c = 1", 3, 3, "expected '='");
}

static void test_err_unterminated_string(void **state)
{
	/* reported where the string starts */
	check_error("a = 1\nb = \"abc\nc = 2\n", 2, 5, "unterminated string");
	check_error("b = 'abc", 1, 5, "unterminated string");
	check_error("x = 0\nb = \"\"\"abc\n\ndef\"\"", 2, 5, "unterminated string");
	check_error("b = '''abc''", 1, 5, "unterminated string");
	check_error("\"key = 1\n", 1, 1, "unterminated string");
}

static void test_err_bad_escape(void **state)
{
	check_error("a = \"x\\qy\"\n", 1, 7, "invalid escape sequence: backslash followed by 'q'");
	check_error("a = \"\\ \"\n", 1, 6, "invalid escape");
	/* a backslash-space is only valid when the line ends there */
	check_error("a = \"\"\"x\\  y\"\"\"\n", 1, 9, "invalid escape");
	check_error("a = \"\\u12\"\n", 1, 6, "\\u escape needs 4 hex digits");
	check_error("a = \"\\U0000004\"\n", 1, 6, "\\U escape needs 8 hex digits");
	check_error("a = \"ok\\uD800\"\n", 1, 8, "not a Unicode scalar value");
	check_error("a = \"\\U00110000\"\n", 1, 6, "not a Unicode scalar value");
	check_error("a = \"\\u0000\"\n", 1, 6, "NUL");
	check_error("a = \"\\", 1, 6,
	            "invalid escape sequence: backslash followed by end of input");
}

static void test_err_duplicate_key(void **state)
{
	check_error("a = 1\nb = 2\na = 3\n", 3, 1, "duplicate key 'a'");
	check_error("[t]\nx = 1\n  \"x\" = 2\n", 3, 3, "duplicate key 'x'");
	check_error("a.b = 1\na.b = 2\n", 2, 3, "duplicate key 'b'");
	check_error("a = 1\na.b = 2\n", 2, 1, "'a' is already defined as an integer");
	check_error("p = { x = 1, x = 2 }\n", 1, 14, "duplicate key 'x'");
	check_error("[[t]]\nk = 1\nk = 2\n", 3, 1, "duplicate key 'k'");
}

static void test_err_table_redefined(void **state)
{
	check_error("[a]\nx = 1\n[a]\n", 3, 2, "'a' is already defined as a table");
	check_error("[a.b]\n[a]\n[a]\n", 3, 2, "'a' is already defined");
	/* a table created by dotted keys cannot be reopened with a header */
	check_error("a.b = 1\n[a]\n", 2, 2, "'a' is already defined as a table (by dotted keys)");
	check_error("[fruit]\napple.color = 'red'\n[fruit.apple]\n", 3, 8,
	            "'apple' is already defined as a table (by dotted keys)");
	/* [a.b] after a.b = 1 */
	check_error("a.b = 1\n[a.b]\n", 2, 4, "'b' is already defined as an integer");
	/* dotted keys cannot add to a table defined by a header */
	check_error("[a.b.c]\nz = 9\n[a]\nb.c.t = 9\n", 4, 1, "'b' is already defined as a table");
	check_error("a = 1\n[a.b]\n", 2, 2, "'a' is already defined as an integer");
	check_error("[t]\n[[t]]\n", 2, 3, "'t' is already defined as a table");
	check_error("[[t]]\n[t]\n", 2, 2, "'t' is already defined as an array of tables");
}

static void test_err_inline_table_immutable(void **state)
{
	check_error("a = { b = 1 }\n[a]\n", 2, 2, "'a' is already defined as an inline table");
	check_error("a = { b = 1 }\n[a.c]\n", 2, 2, "'a' is already defined as an inline table");
	check_error("a = { b = 1 }\na.c = 2\n", 2, 1, "'a' is already defined as an inline table");
	check_error("a = { b = { c = 1 }, b.d = 2 }\n", 1, 22,
	            "already defined as an inline table");
	/* a literal array is closed as well */
	check_error("a = []\n[[a]]\n", 2, 3, "'a' is already defined as an array");
	check_error("a = [{}]\n[a.b]\n", 2, 2, "'a' is already defined as an array");
	check_error("a = { b = 1, }\n", 1, 12, "trailing comma is not allowed in inline tables");
	check_error("a = { b = 1\n}\n", 1, 12, "newlines are not allowed in inline tables");
	check_error("a = { b = 1", 1, 5, "unterminated inline table");
	check_error("a = { b = 1 c = 2 }", 1, 13, "expected ',' or '}'");
}

static void test_err_invalid_number(void **state)
{
	check_error("a = 1\nn = 1__2\n", 2, 5, "invalid number '1__2'");
	check_error("n = 01\n", 1, 5, "leading zeros are not allowed");
	check_error("n = -012.5\n", 1, 5, "leading zeros are not allowed");
	check_error("n = 1.\n", 1, 5, "invalid number");
	check_error("n = .5\n", 1, 5, "invalid value");
	check_error("n = 1e\n", 1, 5, "invalid number");
	check_error("n = 1_\n", 1, 5, "invalid number");
	check_error("n = _1\n", 1, 5, "invalid value");
	check_error("n = 0x\n", 1, 5, "invalid number");
	check_error("n = 0xG1\n", 1, 5, "invalid number");
	check_error("n = 0o8\n", 1, 5, "invalid number");
	check_error("n = 0b102\n", 1, 5, "invalid number");
	check_error("n = +0x10\n", 1, 5, "invalid number");
	check_error("n = 0X10\n", 1, 5, "invalid number");
	check_error("n = 1.5.2\n", 1, 5, "invalid number");
	check_error("n = 1e99999\n", 1, 5, "float is out of range");
	check_error("n = infinity\n", 1, 5, "invalid value 'infinity'");
	check_error("n = 12abc\n", 1, 5, "invalid number '12abc'");
}

static void test_err_integer_overflow(void **state)
{
	check_error("big = 9223372036854775808\n", 1, 7, "integer does not fit in 64 bits");
	check_error("small = -9223372036854775809\n", 1, 9, "integer does not fit in 64 bits");
	check_error("hex = 0x8000000000000000\n", 1, 7, "integer does not fit in 64 bits");
	check_error("n = 99999999999999999999999999999\n", 1, 5, "does not fit");
}

static void test_err_dates(void **state)
{
	check_error("a = 1\nodt = 1979-05-27T07:32:00Z\n", 2, 7,
	            "dates and times are not supported");
	check_error("ld = 1979-05-27\n", 1, 6, "dates and times are not supported");
	check_error("lt = 07:32:00\n", 1, 6, "dates and times are not supported");
	check_error("arr = [1, 1979-05-27 07:32:00]\n", 1, 11, "dates and times are not supported");
}

static void test_err_trailing_garbage(void **state)
{
	check_error("a = \"x\" y\n", 1, 9, "expected end of line after value, found 'y'");
	check_error("a = 1 2\n", 1, 7, "expected end of line after value");
	check_error("a = true false\n", 1, 10, "expected end of line");
	check_error("a = 1, b = 2\n", 1, 6, "expected end of line after value, found ','");
	check_error("[t] x = 1\n", 1, 5, "expected end of line after table header");
	check_error("[t\n", 1, 3, "expected ']' to close the table header");
	check_error("[[t]\n", 1, 4, "expected ']]' to close the table header");
	check_error("[[t] ]\n", 1, 4, "expected ']]'");
	check_error("a = \"\"\"x\"\"\"\"\"\"\n", 1, 14, "too many quotes");
	check_error("a = '''x''''''\n", 1, 14, "too many quotes");
	check_error("a = hello\n", 1, 5, "invalid value 'hello' (strings must be quoted)");
	check_error("a = truex\n", 1, 5, "invalid value 'truex'");
}

static void test_err_unterminated_array(void **state)
{
	check_error("x = 1\na = [1, 2\n", 2, 5, "unterminated array");
	check_error("a = [\n  1,\n  # comment\n", 1, 5, "unterminated array");
	check_error("a = [1, 2\nb = 3\n", 2, 1, "expected ',' or ']' in array, found 'b'");
	check_error("a = [1 2]\n", 1, 8, "expected ',' or ']' in array, found '2'");
	check_error("a = [,]\n", 1, 6, "expected a value, found ','");
	check_error("a = [1,,2]\n", 1, 8, "expected a value");
}

static void test_err_control_chars(void **state)
{
	check_error("a = \"x\x01y\"\n", 1, 7, "control character U+0001 is not allowed in strings");
	check_error("a = 'x\x7fy'\n", 1, 7, "control character U+007F is not allowed in strings");
	check_error("a = \"\"\"\nok\nx\x1b\"\"\"\n", 3, 2, "control character U+001B");
	/* a lone CR is not a newline */
	check_error("a = \"\"\"x\ry\"\"\"\n", 1, 9, "control character U+000D");
	check_error("a = 1\r\nb = 2\rc = 3\n", 2, 6, "expected end of line after value");
	check_error("# comment \x02 here\n", 1, 11,
	            "control character U+0002 is not allowed in comments");
	check_error("\"k\x05\" = 1\n", 1, 3, "control character U+0005");
	check_error_len("a = \"x\0y\"\n", 10, 1, 7, "control character U+0000");
}

static void test_err_invalid_utf8(void **state)
{
	check_error("a = \"\xc3\"\n", 1, 6, "invalid UTF-8 in strings");
	check_error("a = 'x\xc0\xaf'\n", 1, 7, "invalid UTF-8");          /* overlong '/' */
	check_error("a = \"\xed\xa0\x80\"\n", 1, 6, "invalid UTF-8");     /* surrogate */
	check_error("a = \"\xf4\x90\x80\x80\"\n", 1, 6, "invalid UTF-8"); /* > U+10FFFF */
	check_error("# \xff\n", 1, 3, "invalid UTF-8 in comments");
	/* columns count characters, not bytes */
	check_error("\"\xc3\xa9\xc3\xa9\" = 1 x\n", 1, 10, "expected end of line");
}

static void test_err_multiline_key(void **state)
{
	check_error("\"\"\"k\"\"\" = 1\n", 1, 1, "multi-line strings cannot be keys");
	check_error("[]\n", 1, 2, "expected a key");
	check_error("a. = 1\n", 1, 4, "expected a key");
	check_error("a..b = 1\n", 1, 3, "expected a key");
}

static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix)
{
	size_t lp = strlen(prefix), lu = strlen(unit), ls = strlen(suffix);
	char *s = malloc(lp + lu * n + ls + 1), *q = s;

	assert_non_null(s);
	memcpy(q, prefix, lp);
	q += lp;
	for (size_t i = 0; i < n; i++, q += lu)
		memcpy(q, unit, lu);
	memcpy(q, suffix, ls + 1);
	return s;
}

static void test_err_depth_limit(void **state)
{
	_cleanup_free_ char *ok = repeat("a = ", "[", 64, "");
	_cleanup_free_ char *arr = repeat("a = ", "[", 65, "");
	_cleanup_free_ char *huge = repeat("a = ", "[", 100000, "");
	_cleanup_free_ char *inl = repeat("a = ", "{b=", 65, "");
	_cleanup_free_ char *dotted = repeat("a", ".a", 64, " = 1\n");
	_cleanup_free_ char *dotted_ok = repeat("a", ".a", 63, " = 1\n");
	_cleanup_free_ char *header = repeat("[a", ".a", 64, "]\n");
	_cleanup_free_ char *mixed_header = repeat("[a", ".a", 39, "]\nb");
	_cleanup_free_ char *mixed = repeat(mixed_header, ".b", 24, " = 1\n");
	_cleanup_toml_ struct toml_value *t = NULL;
	char *closed;

	/* 64 levels parse (then fail for the missing brackets, not depth) */
	check_error(ok, 1, 68, "unterminated array");
	check_error(arr, 1, 69, "values nested deeper than 64 levels");
	check_error(huge, 1, 69, "values nested deeper than 64 levels");
	check_error(inl, 1, 4 + 64 * 3 + 1, "values nested deeper than 64 levels");
	check_error(dotted, 1, 129, "key has more than 64 dotted parts");
	check_error(header, 1, 130, "key has more than 64 dotted parts");
	check_error(mixed, 2, 53, "values nested deeper than 64 levels");

	t = parse_ok(dotted_ok);
	t = toml_free(t);
	closed = repeat("a = ", "[", 64, "");
	{
		_cleanup_free_ char *full = repeat(closed, "]", 64, "\n");

		t = parse_ok(full);
		assert_int_equal(toml_count(toml_get(t, "a")), 1);
	}
	free(closed);
}

static void test_err_crlf_position(void **state)
{
	check_error("a = 1\r\nb = 2\r\nc = @\r\n", 3, 5, "expected a value, found '@'");
	check_error("a = \"\"\"\r\n\r\nx\r\ny\\q\"\"\"\r\n", 4, 2, "invalid escape");
}

static void test_error_without_ret_err(void **state)
{
	struct toml_value *t = NULL;

	assert_int_equal(toml_parse("a = ", 4, "x", &t, NULL), -EINVAL);
	assert_null(t);
	assert_int_equal(toml_parse(NULL, 0, NULL, &t, NULL), 0);
	assert_int_equal(toml_count(t), 0);
	t = toml_free(t);
}

static void test_error_default_what(void **state)
{
	struct toml_value *t = NULL;
	struct strata_error *err = NULL;

	assert_int_equal(toml_parse("x", 1, NULL, &t, &err), -EINVAL);
	assert_string_equal(err->msg,
	                    "toml: line 1, column 2: expected '=' after key, found end of input");
	strata_error_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_basic_string),
	        cmocka_unit_test(test_escapes),
	        cmocka_unit_test(test_literal_string),
	        cmocka_unit_test(test_multiline_basic),
	        cmocka_unit_test(test_multiline_literal),
	        cmocka_unit_test(test_integers),
	        cmocka_unit_test(test_floats),
	        cmocka_unit_test(test_booleans),
	        cmocka_unit_test(test_arrays),
	        cmocka_unit_test(test_inline_tables),
	        cmocka_unit_test(test_dotted_keys),
	        cmocka_unit_test(test_quoted_keys),
	        cmocka_unit_test(test_tables),
	        cmocka_unit_test(test_array_of_tables),
	        cmocka_unit_test(test_comments_everywhere),
	        cmocka_unit_test(test_crlf),
	        cmocka_unit_test(test_empty_and_bom),
	        cmocka_unit_test(test_not_nul_terminated),
	        cmocka_unit_test(test_accessors),
	        cmocka_unit_test(test_many_keys),
	        cmocka_unit_test(test_hosts_toml),
	        cmocka_unit_test(test_containerd_config),
	        cmocka_unit_test(test_parse_file),
	        cmocka_unit_test(test_parse_file_error_names_path),
	        cmocka_unit_test(test_parse_file_missing),
	        cmocka_unit_test(test_err_missing_equals),
	        cmocka_unit_test(test_err_unterminated_string),
	        cmocka_unit_test(test_err_bad_escape),
	        cmocka_unit_test(test_err_duplicate_key),
	        cmocka_unit_test(test_err_table_redefined),
	        cmocka_unit_test(test_err_inline_table_immutable),
	        cmocka_unit_test(test_err_invalid_number),
	        cmocka_unit_test(test_err_integer_overflow),
	        cmocka_unit_test(test_err_dates),
	        cmocka_unit_test(test_err_trailing_garbage),
	        cmocka_unit_test(test_err_unterminated_array),
	        cmocka_unit_test(test_err_control_chars),
	        cmocka_unit_test(test_err_invalid_utf8),
	        cmocka_unit_test(test_err_multiline_key),
	        cmocka_unit_test(test_err_depth_limit),
	        cmocka_unit_test(test_err_crlf_position),
	        cmocka_unit_test(test_error_without_ret_err),
	        cmocka_unit_test(test_error_default_what),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
