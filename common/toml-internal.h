/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the TOML reader: the value tree (toml-value.c) shared with the
 * parser (toml.c). The parser builds the tree only through these functions.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "toml.h"

/*
 * How a table or array came to exist, which decides what may still be done
 * with it (TOML 1.0, "Table" and "Array of Tables"):
 *   - [a.b] makes a IMPLICIT; a later [a] may define it, once (DEFINED).
 *   - a dotted key b.c = 1 makes b DOTTED; further dotted keys in the same
 *     table may add to b, a [header] naming b may not, though [b.x] may
 *     still create a sub-table beneath it.
 *   - dotted keys may not add to a table made by a header (IMPLICIT or
 *     DEFINED): it was "defined" elsewhere.
 *   - an inline table { ... } is closed once written (INLINE).
 *   - only arrays created by [[x]] (ARRAY_OF_TABLES) may gain elements
 *     through [[x]]; a literal x = [...] is closed too.
 */
enum {
	TABLE_IMPLICIT = 1u << 0,
	TABLE_DEFINED = 1u << 1,
	TABLE_DOTTED = 1u << 2,
	TABLE_INLINE = 1u << 3,
	ARRAY_OF_TABLES = 1u << 4,
};

struct toml_entry {
	char *key;
	struct toml_value *val;
};

struct toml_value {
	enum toml_type type;
	unsigned flags;
	union {
		char *str;
		int64_t i;
		double f;
		bool b;
		struct {
			struct toml_value **items;
			size_t n, cap;
		} arr;
		struct {
			struct toml_entry *entries;
			size_t n, cap;
			size_t *index; /* entry + 1 by key hash; 0 is empty */
			size_t index_cap;
		} tab;
	};
};

struct toml_value *toml_value_new(enum toml_type type, unsigned flags);
/* Append v; takes ownership only on success. */
int toml_array_add(struct toml_value *a, struct toml_value *v);
struct toml_value *toml_table_find(const struct toml_value *t, const char *key);
/* Append key = v; takes ownership of both only on success. */
int toml_table_add(struct toml_value *t, char *key, struct toml_value *v);
/* Create an empty table or array under *key in t (taking *key on success). */
int toml_table_add_child(struct toml_value *t, char **key, enum toml_type type, unsigned flags,
                         struct toml_value **ret);
