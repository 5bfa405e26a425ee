/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Thin helpers over jansson: parse with an error that names line and column,
 * typed getters that tolerate absent keys, and cleanup for json_t.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "error.h"

/* jansson >= 2.9 provides json_decrefp() (NULL-safe) for cleanup. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Parse buf; on failure -EINVAL with "what: line L column C: reason". */
int json_parse(const char *buf, size_t len, const char *what, json_t **ret,
               struct strata_error **ret_err);

/* Getters: NULL / default when the key is missing or of the wrong type. */
const char *json_get_str(const json_t *obj, const char *key);
int64_t json_get_int(const json_t *obj, const char *key, int64_t dflt);
json_t *json_get_obj(const json_t *obj, const char *key);
json_t *json_get_array(const json_t *obj, const char *key);

/* Serialise compactly with sorted keys (stable output); malloc'd string. */
char *json_dump_compact(const json_t *j);
