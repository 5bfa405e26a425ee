/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The eStargz TOC JSON read with yajl's event parser (see estargz-json.h).
 * The shape read: {"version": N, "entries": [{...}, ...]}; other keys, and
 * unknown keys of an entry, are skipped whatever their value.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "common.h"
#include "estargz-json.h"

#define BLOCK_SIZE       (64u << 10)
#define XATTRS_PER_ENTRY 1024 /* far above what a file system stores */

struct toc_block {
	struct toc_block *next;
	size_t used, cap;
	char data[];
};

enum field {
	F_NAME,
	F_TYPE,
	F_LINK,
	F_MODTIME,
	F_CHUNK_DIGEST,
	F_SIZE,
	F_OFFSET,
	F_INNER,
	F_CHUNK_OFFSET,
	F_CHUNK_SIZE,
	F_MODE,
	F_UID,
	F_GID,
	F_DEV_MAJOR,
	F_DEV_MINOR,
	F_XATTRS,
	F_OTHER,
};

static const char *const field_names[] = {
        [F_NAME] = "name",
        [F_TYPE] = "type",
        [F_LINK] = "linkName",
        [F_MODTIME] = "modtime",
        [F_CHUNK_DIGEST] = "chunkDigest",
        [F_SIZE] = "size",
        [F_OFFSET] = "offset",
        [F_INNER] = "innerOffset",
        [F_CHUNK_OFFSET] = "chunkOffset",
        [F_CHUNK_SIZE] = "chunkSize",
        [F_MODE] = "mode",
        [F_UID] = "uid",
        [F_GID] = "gid",
        [F_DEV_MAJOR] = "devMajor",
        [F_DEV_MINOR] = "devMinor",
        [F_XATTRS] = "xattrs",
};

/* Root keys read; the others are skipped. */
enum { R_VERSION = 1, R_ENTRIES = 2, R_OTHER = 4 };

struct reader {
	struct toc_raw *raw;
	size_t cap_entries, cap_xattrs;
	int depth;      /* containers open */
	int skip_until; /* >= 0: skipping a value until depth falls back to it */
	int root_key;   /* pending key at depth 1 */
	int field;      /* pending key at depth 3 */
	int root_seen;
	bool in_entries;
	const char *xattr_key; /* pending key at depth 4 */
	int err;
	char msg[160];
};

static int fail(struct reader *r, int err, const char *fmt, ...) _printf_(3, 4);
static int fail(struct reader *r, int err, const char *fmt, ...)
{
	va_list ap;

	r->err = err;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	return 0; /* cancels the parse */
}

static char *copy_string(struct reader *r, const unsigned char *s, size_t n)
{
	struct toc_block *b = r->raw->blocks;
	char *out;

	if (memchr(s, '\0', n)) {
		fail(r, -EBADMSG, "eStargz TOC: a string holds a NUL character");
		return NULL;
	}
	if (!b || b->cap - b->used < n + 1) {
		size_t cap = MAX((size_t)BLOCK_SIZE, n + 1);
		b = malloc(sizeof(*b) + cap);
		if (!b) {
			fail(r, -ENOMEM, "out of memory");
			return NULL;
		}
		b->used = 0;
		b->cap = cap;
		b->next = r->raw->blocks;
		r->raw->blocks = b;
	}
	out = b->data + b->used;
	memcpy(out, s, n);
	out[n] = '\0';
	b->used += n + 1;
	return out;
}

static struct toc_rawent *cur(struct reader *r)
{
	return &r->raw->entries[r->raw->n_entries - 1];
}

static int new_entry(struct reader *r, bool object)
{
	struct toc_raw *raw = r->raw;

	if (raw->n_entries == r->cap_entries) {
		size_t cap = r->cap_entries ? r->cap_entries * 2 : 1024;
		struct toc_rawent *a = realloc(raw->entries, cap * sizeof(*a));
		if (!a)
			return fail(r, -ENOMEM, "out of memory");
		raw->entries = a;
		r->cap_entries = cap;
	}
	raw->entries[raw->n_entries++] = (struct toc_rawent){
	        .offset = -1,
	        .first_xattr = (uint32_t)raw->n_xattrs,
	        .object = object,
	};
	return 1;
}

static void skip(struct reader *r)
{
	r->skip_until = r->depth;
}

static bool skipping(const struct reader *r)
{
	return r->skip_until >= 0;
}

/* What a value (a scalar or the start of a container) at the current
 * position is for: an entry's field (depth 3), a whole element of the
 * entries array (depth 2), or nothing we read. */
enum { V_NOTHING = -1, V_ELEMENT = -2 };

static int value_field(struct reader *r)
{
	switch (r->depth) {
	case 2:
		return r->in_entries ? V_ELEMENT : V_NOTHING;
	case 3:
		return r->field;
	default:
		return V_NOTHING;
	}
}

static int on_integer(void *ctx, long long v)
{
	struct reader *r = ctx;

	if (skipping(r))
		return 1;
	if (r->depth == 1 && r->root_key == R_VERSION) {
		r->raw->version = v;
		return 1;
	}
	switch (value_field(r)) {
	case V_ELEMENT:
		return new_entry(r, false);
	case F_SIZE:
		cur(r)->size = v;
		break;
	case F_OFFSET:
		cur(r)->offset = v;
		break;
	case F_INNER:
		cur(r)->inner_offset = v;
		break;
	case F_CHUNK_OFFSET:
		cur(r)->chunk_offset = v;
		break;
	case F_CHUNK_SIZE:
		cur(r)->chunk_size = v;
		break;
	case F_MODE:
		cur(r)->mode = v;
		break;
	case F_UID:
		cur(r)->uid = v;
		break;
	case F_GID:
		cur(r)->gid = v;
		break;
	case F_DEV_MAJOR:
		cur(r)->dev_major = v;
		break;
	case F_DEV_MINOR:
		cur(r)->dev_minor = v;
		break;
	}
	if (r->depth == 4)
		cur(r)->bad_xattr = true;
	return 1;
}

/* Values of no interest: a real, a boolean, null. */
static int on_other(struct reader *r)
{
	if (skipping(r))
		return 1;
	if (value_field(r) == V_ELEMENT)
		return new_entry(r, false);
	if (r->depth == 4)
		cur(r)->bad_xattr = true;
	return 1;
}

static int on_double(void *ctx, double v)
{
	(void)v;
	return on_other(ctx);
}

static int on_boolean(void *ctx, int v)
{
	(void)v;
	return on_other(ctx);
}

static int on_null(void *ctx)
{
	return on_other(ctx);
}

static int add_xattr(struct reader *r, const char *value)
{
	struct toc_raw *raw = r->raw;
	struct toc_rawent *e = cur(r);

	for (size_t i = e->first_xattr; i < raw->n_xattrs; i++)
		if (streq(raw->xattrs[i].key, r->xattr_key))
			return fail(r, -EBADMSG, "eStargz TOC: xattr \"%s\" given twice",
			            r->xattr_key);
	if (e->n_xattrs >= XATTRS_PER_ENTRY)
		return fail(r, -EBADMSG, "eStargz TOC: too many xattrs on \"%s\"",
		            strempty(e->name));
	if (raw->n_xattrs == r->cap_xattrs) {
		size_t cap = r->cap_xattrs ? r->cap_xattrs * 2 : 64;
		struct toc_rawxattr *a = realloc(raw->xattrs, cap * sizeof(*a));
		if (!a)
			return fail(r, -ENOMEM, "out of memory");
		raw->xattrs = a;
		r->cap_xattrs = cap;
	}
	raw->xattrs[raw->n_xattrs++] = (struct toc_rawxattr){.key = r->xattr_key, .value = value};
	e->n_xattrs++;
	return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
	struct reader *r = ctx;
	const char **slot = NULL;
	char *v;

	if (skipping(r))
		return 1;
	switch (value_field(r)) {
	case V_ELEMENT:
		return new_entry(r, false);
	case F_NAME:
		slot = &cur(r)->name;
		break;
	case F_TYPE:
		slot = &cur(r)->type;
		break;
	case F_LINK:
		slot = &cur(r)->link_name;
		break;
	case F_MODTIME:
		slot = &cur(r)->modtime;
		break;
	case F_CHUNK_DIGEST:
		slot = &cur(r)->chunk_digest;
		break;
	}
	if (!slot && r->depth != 4)
		return 1;
	v = copy_string(r, s, n);
	if (!v)
		return 0;
	if (slot)
		*slot = v;
	else
		return add_xattr(r, v);
	return 1;
}

static int lookup_field(const unsigned char *k, size_t n)
{
	for (size_t i = 0; i < ELEMENTSOF(field_names); i++)
		if (strlen(field_names[i]) == n && memcmp(field_names[i], k, n) == 0)
			return (int)i;
	return F_OTHER;
}

static bool key_is(const unsigned char *k, size_t n, const char *what)
{
	return strlen(what) == n && memcmp(what, k, n) == 0;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t n)
{
	struct reader *r = ctx;

	if (skipping(r))
		return 1;
	switch (r->depth) {
	case 1:
		r->root_key = key_is(k, n, "version")   ? R_VERSION
		              : key_is(k, n, "entries") ? R_ENTRIES
		                                        : R_OTHER;
		if (r->root_key != R_OTHER) {
			if (r->root_seen & r->root_key)
				return fail(r, -EBADMSG, "eStargz TOC: key \"%s\" given twice",
				            r->root_key == R_VERSION ? "version" : "entries");
			r->root_seen |= r->root_key;
		}
		return 1;
	case 3: {
		struct toc_rawent *e = cur(r);
		r->field = lookup_field(k, n);
		if (r->field != F_OTHER) {
			if (e->seen & (1u << r->field))
				return fail(r, -EBADMSG,
				            "eStargz TOC: entry key \"%s\" given twice",
				            field_names[r->field]);
			e->seen |= 1u << r->field;
		}
		return 1;
	}
	case 4:
		r->xattr_key = copy_string(r, k, n);
		return r->xattr_key != NULL;
	default:
		return 1;
	}
}

static int on_start_map(void *ctx)
{
	struct reader *r = ctx;
	int f;

	if (skipping(r)) {
		r->depth++;
		return 1;
	}
	f = value_field(r);
	if (r->depth == 0) {
		/* the root */
	} else if (f == V_ELEMENT) {
		if (!new_entry(r, true))
			return 0;
		r->field = F_OTHER;
	} else if (f == F_XATTRS) {
		/* read at depth 4 */
	} else {
		if (r->depth == 4)
			cur(r)->bad_xattr = true;
		skip(r);
	}
	r->depth++;
	return 1;
}

static int on_start_array(void *ctx)
{
	struct reader *r = ctx;

	if (skipping(r)) {
		r->depth++;
		return 1;
	}
	if (r->depth == 0)
		return fail(r, -EBADMSG, "eStargz TOC: no \"entries\" array");
	if (r->depth == 1 && r->root_key == R_ENTRIES) {
		r->in_entries = true;
		r->raw->has_entries = true;
	} else {
		if (value_field(r) == V_ELEMENT && !new_entry(r, false))
			return 0;
		if (r->depth == 4)
			cur(r)->bad_xattr = true;
		skip(r);
	}
	r->depth++;
	return 1;
}

static int on_end(void *ctx)
{
	struct reader *r = ctx;

	r->depth--;
	if (skipping(r)) {
		if (r->depth == r->skip_until)
			r->skip_until = -1;
		return 1;
	}
	if (r->depth == 1)
		r->in_entries = false;
	return 1;
}

static const yajl_callbacks callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_boolean,
        .yajl_integer = on_integer,
        .yajl_double = on_double,
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_map_key,
        .yajl_end_map = on_end,
        .yajl_start_array = on_start_array,
        .yajl_end_array = on_end,
};

int toc_raw_read(const void *json, size_t len, struct toc_raw *raw, struct strata_error **ret_err)
{
	struct reader r = {.raw = raw, .skip_until = -1, .field = F_OTHER};
	yajl_handle h;
	yajl_status st;

	*raw = (struct toc_raw){.version = 1};
	h = yajl_alloc(&callbacks, NULL, &r);
	if (!h)
		return -ENOMEM;
	st = yajl_parse(h, json, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st == yajl_status_client_canceled) {
		yajl_free(h);
		return strata_error_set(ret_err, r.err, "%s", r.msg);
	}
	if (st != yajl_status_ok) {
		unsigned char *m = yajl_get_error(h, 0, json, len);
		size_t at = yajl_get_bytes_consumed(h);
		int ret = strata_error_set(ret_err, -EBADMSG, "eStargz TOC: byte %zu: %s", at,
		                           m ? (const char *)m : "malformed JSON");
		if (m)
			yajl_free_error(h, m);
		yajl_free(h);
		return ret;
	}
	yajl_free(h);
	return 0;
}

void toc_raw_done(struct toc_raw *raw)
{
	while (raw->blocks) {
		struct toc_block *b = raw->blocks;
		raw->blocks = b->next;
		free(b);
	}
	free(raw->entries);
	free(raw->xattrs);
	*raw = (struct toc_raw){0};
}
