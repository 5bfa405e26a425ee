/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to content/: the eStargz TOC JSON read in one streaming pass
 * (yajl's event parser) into flat records, for estargz.c's compiler. No JSON
 * tree is built: a layer's TOC is megabytes of JSON that a tree would turn
 * into a hundred thousand small allocations on the pull's critical path.
 */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* One TOC entry: the fields the compiler reads. Strings are NUL-terminated
 * copies owned by the toc_raw (NULL when absent or not a string); numbers
 * keep their default when absent or not an integer, as the spec's Go
 * decoder would leave them zero. */
struct toc_rawent {
	const char *name, *type, *link_name, *modtime, *chunk_digest;
	int64_t size, offset, inner_offset, chunk_offset, chunk_size;
	int64_t mode, uid, gid, dev_major, dev_minor;
	uint32_t first_xattr, n_xattrs; /* into toc_raw.xattrs */
	uint32_t seen;                  /* keys seen: a repeated one is refused */
	bool object;                    /* false: the array element was not an object */
	bool bad_xattr;                 /* an xattr value that is not a string */
};

struct toc_rawxattr {
	const char *key, *value; /* value: base64 text as in the JSON */
};

struct toc_raw {
	int64_t version; /* 1 when absent */
	bool has_entries;
	struct toc_rawent *entries;
	size_t n_entries;
	struct toc_rawxattr *xattrs;
	size_t n_xattrs;
	struct toc_block *blocks; /* string storage */
};

/* Reads json[0..len) into raw. On failure -EBADMSG (malformed JSON, a
 * repeated key, a string with a NUL) or -ENOMEM, with a message; raw must
 * be released with toc_raw_done() either way. */
int toc_raw_read(const void *json, size_t len, struct toc_raw *raw, struct strata_error **ret_err);
void toc_raw_done(struct toc_raw *raw);
