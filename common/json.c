/* SPDX-License-Identifier: Apache-2.0 */
/* jansson helpers (see json.h). */
#include "json.h"

int json_parse(const char *buf, size_t len, const char *what, json_t **ret,
               struct strata_error **ret_err)
{
	json_error_t jerr;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!j)
		return strata_error_set(ret_err, -EINVAL, "%s: line %d column %d: %s",
		                        what ? what : "json", jerr.line, jerr.column, jerr.text);
	*ret = j;
	return 0;
}

const char *json_get_str(const json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

int64_t json_get_int(const json_t *obj, const char *key, int64_t dflt)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

json_t *json_get_obj(const json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_object(v) ? v : NULL;
}

json_t *json_get_array(const json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_array(v) ? v : NULL;
}

char *json_dump_compact(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}
