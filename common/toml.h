/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small TOML reader for Strata's config.toml and containerd's hosts.toml.
 *
 * Supported subset (anything else is a syntax error with line and column):
 *   - comments (#), blank lines
 *   - key = value, with bare keys (A-Za-z0-9_-), "basic" and 'literal' quoted
 *     keys, and dotted keys (a.b.c = 1)
 *   - [table] and [a."b.c".d] headers, [[array.of.tables]]
 *   - values: basic strings with escapes (\b \t \n \f \r \" \\ \uXXXX
 *     \UXXXXXXXX), literal strings, multi-line """...""" and '''...''',
 *     integers (decimal with _ separators, 0x/0o/0b), floats, booleans,
 *     arrays (mixed, nested, multi-line, trailing comma), inline tables
 *   - not supported: dates/times (a clear error says so)
 * Defining a key or table twice is an error, as TOML requires.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum toml_type {
	TOML_STRING,
	TOML_INT,
	TOML_FLOAT,
	TOML_BOOL,
	TOML_ARRAY,
	TOML_TABLE,
};

struct toml_value; /* opaque; owned by the root table */

/* Parse buf (need not be NUL-terminated). `what` names the source in errors:
 * "config.toml: line 3, column 7: expected '=' after key". */
int toml_parse(const char *buf, size_t len, const char *what, struct toml_value **ret,
               struct strata_error **ret_err);
/* Read and parse a file; -ENOENT (with message) if missing. */
int toml_parse_file(const char *path, struct toml_value **ret, struct strata_error **ret_err);
struct toml_value *toml_free(struct toml_value *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct toml_value *, toml_free)
#define _cleanup_toml_ _cleanup_(toml_freep)

enum toml_type toml_type(const struct toml_value *v);

/* Lookups in a table by one key (not dotted); NULL if missing or not a table. */
struct toml_value *toml_get(const struct toml_value *table, const char *key);
/* Lookup by a path of keys: toml_get_path(root, "host", "https://x", "ca", NULL). */
struct toml_value *toml_get_path(const struct toml_value *table, ...) __attribute__((sentinel));

/* Typed accessors: return -ENOENT if v is NULL, -EINVAL on a wrong type. */
int toml_as_string(const struct toml_value *v, const char **ret);
int toml_as_int(const struct toml_value *v, int64_t *ret);
int toml_as_float(const struct toml_value *v, double *ret);
int toml_as_bool(const struct toml_value *v, bool *ret);

/* Tables and arrays: count and index access (tables in definition order). */
size_t toml_count(const struct toml_value *v);
struct toml_value *toml_at(const struct toml_value *v, size_t i);
/* The key of the i-th entry of a table. */
const char *toml_key_at(const struct toml_value *table, size_t i);
