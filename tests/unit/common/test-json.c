/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_parse_and_get(void **state)
{
	const char *doc =
	        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	        "\"config\":{\"size\":7},\"layers\":[1,2]}";
	_cleanup_(json_decrefp) json_t *j = NULL;
	assert_int_equal(json_parse(doc, strlen(doc), "manifest", &j, NULL), 0);
	assert_int_equal(json_get_int(j, "schemaVersion", -1), 2);
	assert_string_equal(json_get_str(j, "mediaType"),
	                    "application/vnd.oci.image.manifest.v1+json");
	assert_null(json_get_str(j, "schemaVersion")); /* wrong type */
	assert_null(json_get_str(j, "missing"));
	assert_int_equal(json_get_int(json_get_obj(j, "config"), "size", 0), 7);
	assert_int_equal(json_array_size(json_get_array(j, "layers")), 2);
	assert_null(json_get_obj(j, "layers"));
	assert_null(json_get_array(NULL, "layers"));
	assert_int_equal(json_get_int(NULL, "x", 5), 5);
}

static void test_parse_error_has_position(void **state)
{
	const char *doc = "{\n  \"a\": 1,\n  \"b\": }";
	_cleanup_error_ struct strata_error *err = NULL;
	json_t *j = NULL;
	assert_int_equal(json_parse(doc, strlen(doc), "config.json", &j, &err), -EINVAL);
	assert_null(j);
	assert_non_null(strstr(err->msg, "config.json: line 3 column"));
}

static void test_duplicate_keys_rejected(void **state)
{
	/* a registry or image must not be able to smuggle a second value */
	const char *doc = "{\"digest\":\"a\",\"digest\":\"b\"}";
	_cleanup_error_ struct strata_error *err = NULL;
	json_t *j = NULL;
	assert_int_equal(json_parse(doc, strlen(doc), NULL, &j, &err), -EINVAL);
	assert_non_null(strstr(err->msg, "duplicate"));
}

static void test_dump_sorted(void **state)
{
	_cleanup_(json_decrefp) json_t *j = json_pack("{s:i,s:s}", "b", 1, "a", "x");
	_cleanup_free_ char *s = json_dump_compact(j);
	assert_string_equal(s, "{\"a\":\"x\",\"b\":1}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_and_get),
	        cmocka_unit_test(test_parse_error_has_position),
	        cmocka_unit_test(test_duplicate_keys_rejected),
	        cmocka_unit_test(test_dump_sorted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
