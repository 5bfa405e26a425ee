/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd's filter expressions (containerd/filters), used by List/Walk of
 * content, snapshots and ingest statuses.
 *
 *   filters  := one string per filter; the list is OR'd
 *   filter   := selector ("," selector)*       (AND'd)
 *   selector := fieldpath [op value]          (no op: "field is present")
 *   fieldpath:= field ("." field)*             field may be quoted ("a.b")
 *   op       := "==" | "!=" | "~="            (~= is a POSIX extended regexp)
 *   value    := quoted string | bare run of characters up to "," or space
 *
 * Matching follows containerd: "==" needs the field present and equal; "!="
 * is true when the value differs (an absent field reads as ""); "~=" matches
 * the regexp against the value. An empty filter list matches everything.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct strata_filter; /* immutable after parsing; safe to share between threads */

/* Parse n filter strings. -EINVAL with a message naming the filter and the
 * position of the problem ("filter \"kind==\": position 6: expected value"). */
int strata_filter_parse(const char *const filters[], size_t n, struct strata_filter **ret,
                        struct strata_error **ret_err);
struct strata_filter *strata_filter_free(struct strata_filter *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct strata_filter *, strata_filter_free)

/* Look up a field: set *ret_value (may point into the object) and return true
 * when present. fieldpath has n components, e.g. {"labels", "a.b"}. */
typedef bool (*strata_filter_field_fn)(const char *const fieldpath[], size_t n, void *userdata,
                                       const char **ret_value);

bool strata_filter_match(const struct strata_filter *f, strata_filter_field_fn field,
                         void *userdata);
