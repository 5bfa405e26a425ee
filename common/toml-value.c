/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The TOML value tree (see toml.h, toml-internal.h): tagged values, arrays,
 * and tables that keep their entries in definition order with a hash index
 * once they grow large (hostile files may hold thousands of keys).
 */
#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "toml-internal.h"

/* Tables with this many keys get a hash index (a power of two). */
#define TABLE_INDEX_MIN 16

struct toml_value *toml_value_new(enum toml_type type, unsigned flags)
{
	struct toml_value *v = calloc(1, sizeof(*v));

	if (v) {
		v->type = type;
		v->flags = flags;
	}
	return v;
}

struct toml_value *toml_free(struct toml_value *v)
{
	if (!v)
		return NULL;
	switch (v->type) {
	case TOML_STRING:
		free(v->str);
		break;
	case TOML_ARRAY:
		for (size_t i = 0; i < v->arr.n; i++)
			toml_free(v->arr.items[i]);
		free(v->arr.items);
		break;
	case TOML_TABLE:
		for (size_t i = 0; i < v->tab.n; i++) {
			free(v->tab.entries[i].key);
			toml_free(v->tab.entries[i].val);
		}
		free(v->tab.entries);
		free(v->tab.index);
		break;
	default:
		break;
	}
	free(v);
	return NULL;
}

/* Make room for one more element of size elem in *p. */
static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
	size_t c;
	void *np;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 4;
	np = reallocarray(*p, c, elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = c;
	return 0;
}

/* Append v; takes ownership only on success. */
int toml_array_add(struct toml_value *a, struct toml_value *v)
{
	int r = grow((void **)&a->arr.items, &a->arr.cap, a->arr.n, sizeof(struct toml_value *));

	if (r < 0)
		return r;
	a->arr.items[a->arr.n++] = v;
	return 0;
}

/* FNV-1a */
static uint64_t hash_key(const char *s)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
	return h;
}

static void index_put(size_t *index, size_t cap, const char *key, size_t i)
{
	size_t slot = hash_key(key) & (cap - 1);

	while (index[slot])
		slot = (slot + 1) & (cap - 1);
	index[slot] = i + 1;
}

/* Index the newest entry. Small tables (every real config's) do without:
 * a linear scan is faster there, but quadratic on a hostile file with
 * thousands of keys. The index is kept at most half full. */
static int table_index_last(struct toml_value *t)
{
	size_t n = t->tab.n, cap;
	size_t *index;

	if (n < TABLE_INDEX_MIN)
		return 0;
	if (n * 2 <= t->tab.index_cap) {
		index_put(t->tab.index, t->tab.index_cap, t->tab.entries[n - 1].key, n - 1);
		return 0;
	}
	cap = t->tab.index_cap ? t->tab.index_cap * 2 : TABLE_INDEX_MIN * 4;
	index = calloc(cap, sizeof(*index));
	if (!index)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		index_put(index, cap, t->tab.entries[i].key, i);
	free(t->tab.index);
	t->tab.index = index;
	t->tab.index_cap = cap;
	return 0;
}

struct toml_value *toml_table_find(const struct toml_value *t, const char *key)
{
	if (t->tab.index) {
		size_t mask = t->tab.index_cap - 1;

		for (size_t slot = hash_key(key) & mask; t->tab.index[slot];
		     slot = (slot + 1) & mask) {
			const struct toml_entry *e = &t->tab.entries[t->tab.index[slot] - 1];

			if (streq(e->key, key))
				return e->val;
		}
		return NULL;
	}
	for (size_t i = 0; i < t->tab.n; i++)
		if (streq(t->tab.entries[i].key, key))
			return t->tab.entries[i].val;
	return NULL;
}

/* Append key = v; takes ownership of both only on success. */
int toml_table_add(struct toml_value *t, char *key, struct toml_value *v)
{
	int r = grow((void **)&t->tab.entries, &t->tab.cap, t->tab.n, sizeof(struct toml_entry));

	if (r < 0)
		return r;
	t->tab.entries[t->tab.n++] = (struct toml_entry){.key = key, .val = v};
	r = table_index_last(t);
	if (r < 0)
		t->tab.n--; /* hand key and v back to the caller */
	return r;
}

/* Create an empty table or array under *key in t (taking *key on success). */
int toml_table_add_child(struct toml_value *t, char **key, enum toml_type type, unsigned flags,
                         struct toml_value **ret)
{
	_cleanup_toml_ struct toml_value *v = toml_value_new(type, flags);
	int r;

	if (!v)
		return -ENOMEM;
	r = toml_table_add(t, *key, v);
	if (r < 0)
		return r;
	*key = NULL;
	*ret = TAKE_PTR(v);
	return 0;
}

/* ---- accessors ---- */

enum toml_type toml_type(const struct toml_value *v)
{
	/* Callers check lookups for NULL first; a NULL here is a bug. */
	assert(v);
	return v->type;
}

struct toml_value *toml_get(const struct toml_value *table, const char *key)
{
	if (!table || table->type != TOML_TABLE || !key)
		return NULL;
	return toml_table_find(table, key);
}

struct toml_value *toml_get_path(const struct toml_value *table, ...)
{
	struct toml_value *v = (struct toml_value *)table;
	const char *key;
	va_list ap;

	va_start(ap, table);
	while (v && (key = va_arg(ap, const char *)))
		v = toml_get(v, key);
	va_end(ap);
	return v;
}

int toml_as_string(const struct toml_value *v, const char **ret)
{
	if (!v)
		return -ENOENT;
	if (v->type != TOML_STRING)
		return -EINVAL;
	*ret = v->str;
	return 0;
}

int toml_as_int(const struct toml_value *v, int64_t *ret)
{
	if (!v)
		return -ENOENT;
	if (v->type != TOML_INT)
		return -EINVAL;
	*ret = v->i;
	return 0;
}

int toml_as_float(const struct toml_value *v, double *ret)
{
	if (!v)
		return -ENOENT;
	if (v->type != TOML_FLOAT)
		return -EINVAL;
	*ret = v->f;
	return 0;
}

int toml_as_bool(const struct toml_value *v, bool *ret)
{
	if (!v)
		return -ENOENT;
	if (v->type != TOML_BOOL)
		return -EINVAL;
	*ret = v->b;
	return 0;
}

size_t toml_count(const struct toml_value *v)
{
	if (!v)
		return 0;
	if (v->type == TOML_ARRAY)
		return v->arr.n;
	if (v->type == TOML_TABLE)
		return v->tab.n;
	return 0;
}

struct toml_value *toml_at(const struct toml_value *v, size_t i)
{
	if (i >= toml_count(v))
		return NULL;
	return v->type == TOML_ARRAY ? v->arr.items[i] : v->tab.entries[i].val;
}

const char *toml_key_at(const struct toml_value *table, size_t i)
{
	if (!table || table->type != TOML_TABLE || i >= table->tab.n)
		return NULL;
	return table->tab.entries[i].key;
}
