/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Between images.c (the image store, containerd coexistence marks) and
 * content-db.c (their LMDB databases, "content.images" and "content.marks").
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "content-internal.h"

/* fn gets the stored record (NULL when absent) and sets *ret_new to a malloc'd
 * replacement, or leaves it NULL to delete the record (-ENOENT when there was
 * none). It may run more than once (map resize). */
typedef int (*content_db_image_update_fn)(const void *old, size_t old_len, void *userdata,
                                          void **ret_new, size_t *ret_new_len);
int content_db_image_update(struct content_store *s, const char *name,
                            content_db_image_update_fn fn, void *userdata);
/* *ret is malloc'd and NUL-terminated; -ENOENT when absent. */
int content_db_image_get(struct content_store *s, const char *name, char **ret, size_t *ret_len);
/* fn gets each stored record, in name order, outside any transaction; > 0
 * stops the walk (returns 0), < 0 stops it with that error. */
typedef int (*content_db_image_walk_fn)(const char *buf, size_t len, void *userdata);
int content_db_image_walk(struct content_store *s, content_db_image_walk_fn fn, void *userdata);

/* Flags of a blob (0 when none). Setting 0 removes the entry. */
int content_db_mark_get(struct content_store *s, const struct strata_digest *d, uint32_t *ret);
int content_db_mark_set(struct content_store *s, const struct strata_digest *d, uint32_t flags);
