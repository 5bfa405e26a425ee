/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the content store's unit tests: a temporary root with
 * its own LMDB environment, and one-call blob writes. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common.h"
#include "content.h"
#include "meta.h"
#include "path.h"

struct fixture {
	char root[64];
	struct strata_meta *meta;
	struct content_store *store;
};

static inline int fixture_open_store(struct fixture *f, const struct content_options *opts)
{
	_cleanup_free_ char *metadir = path_join(f->root, "meta");
	_cleanup_error_ struct strata_error *err = NULL;
	int r;

	r = path_mkdir_p(metadir, 0700);
	if (r < 0)
		return r;
	r = strata_meta_open(metadir, NULL, &f->meta, &err);
	if (r < 0) {
		fprintf(stderr, "meta open: %s\n", strata_error_message(err));
		return r;
	}
	r = content_store_open(f->root, f->meta, opts, &f->store, &err);
	if (r < 0)
		fprintf(stderr, "store open: %s\n", strata_error_message(err));
	return r;
}

static inline void fixture_close_store(struct fixture *f)
{
	f->store = content_store_close(f->store);
	f->meta = strata_meta_close(f->meta);
}

static inline struct fixture *fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/strata-content-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	return f;
}

static inline void fixture_free(struct fixture *f)
{
	fixture_close_store(f);
	(void)path_rm_rf_at(AT_FDCWD, f->root);
	free(f);
}

static inline int fixture_setup(void **state)
{
	struct fixture *f = fixture_new();
	assert_int_equal(fixture_open_store(f, NULL), 0);
	*state = f;
	return 0;
}

static inline int fixture_teardown(void **state)
{
	fixture_free(*state);
	return 0;
}

/* Write data under ref and commit it; returns commit's result. */
static inline int put_blob(struct content_store *s, const char *ref, const void *data, size_t len,
                           const struct content_label *labels, size_t n_labels,
                           struct strata_digest *ret)
{
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	struct strata_digest d;
	int r;

	r = content_writer_open(s, ref, (int64_t)len, NULL, &w, NULL);
	if (r < 0)
		return r;
	r = content_writer_write(w, 0, data, len, NULL);
	if (r < 0)
		return r;
	(void)strata_sha256(data, len, &d);
	r = content_writer_commit(w, (int64_t)len, &d, labels, n_labels, NULL, NULL);
	if (ret)
		*ret = d;
	return r;
}

static inline void blob_path(const struct fixture *f, const struct strata_digest *d, char *buf,
                             size_t len)
{
	char hex[STRATA_SHA256_HEX_LEN + 1];
	snprintf(buf, len, "%s/content/blobs/sha256/%s", f->root, strata_digest_hex(d, hex));
}
