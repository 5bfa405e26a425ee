/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between the files of content/: the store object, the index
 * (content-db.c, the only file that includes <lmdb.h>) and the ingest ref
 * table (writer.c).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "content.h"

#define CONTENT_DIGEST_LOCKS 64

/* What this process knows about one ingest ref. */
struct ingest_ref {
	char *ref;
	char dir[STRATA_SHA256_HEX_LEN + 1]; /* ingest/<sha256(ref)> */
	bool locked;                         /* a writer holds it */
	struct timespec locked_since;
	/* Saved by content_writer_close() so a resume in this process does not
	 * re-hash: the running hash of the first hashed_offset bytes. */
	struct strata_hasher *hasher;
	int64_t hashed_offset;
	struct ingest_ref *next;
};

struct content_store {
	struct strata_meta *meta;
	unsigned dbi; /* "content.blobs" */
	struct content_options opts;

	int content_fd; /* ROOT/content */
	int blobs_fd;   /* ROOT/content/blobs/sha256 */
	int ingest_fd;  /* ROOT/content/ingest */

	/* Protected by refs_lock: the ingest refs this process has seen (locked
	 * or holding a saved hash). Never held across I/O. */
	pthread_mutex_t refs_lock;
	struct ingest_ref *refs;

	/* Commit and delete of one digest serialise on
	 * digest_locks[digest.sha256[0] % CONTENT_DIGEST_LOCKS], so the check
	 * "already stored?", the link into blobs/ and the index update are one
	 * step for other threads. Held across the link, the directory fsync and
	 * the index write (not across data fsync or hashing). */
	pthread_mutex_t digest_locks[CONTENT_DIGEST_LOCKS];
};

static inline pthread_mutex_t *content_digest_lock(struct content_store *s,
                                                   const struct strata_digest *d)
{
	return &s->digest_locks[d->sha256[0] % CONTENT_DIGEST_LOCKS];
}

/* --- index (content-db.c) --- */

int content_db_open(struct content_store *s);
/* -ENOENT when absent. ret may be NULL (existence check). */
int content_db_get(struct content_store *s, const struct strata_digest *d,
                   struct content_info *ret);
/* Insert; -EEXIST when the digest is indexed and !overwrite. */
int content_db_put(struct content_store *s, const struct content_info *info, bool overwrite);
/* Insert or overwrite many records in one transaction (bulk imports). */
int content_db_put_many(struct content_store *s, const struct content_info *infos, size_t n);
int content_db_delete(struct content_store *s, const struct strata_digest *d);

/* Read-modify-write of one record in one write transaction: fn edits a
 * decoded copy (it may run more than once, when the map grows) and the
 * result is stored and copied to ret (may be NULL). */
typedef int (*content_db_modify_fn)(struct content_info *info, void *userdata);
int content_db_modify(struct content_store *s, const struct strata_digest *d,
                      content_db_modify_fn fn, void *userdata, struct content_info *ret);

/* Visit every record in digest order, in batches (no transaction is held
 * while fn runs, so fn may call back into the store). */
int content_db_walk(struct content_store *s, content_walk_fn fn, void *userdata);

/* Binary record codec (exposed for tests and the fuzzer). */
int content_record_encode(const struct content_info *info, void **ret, size_t *ret_len);
int content_record_decode(const void *buf, size_t len, const struct strata_digest *d,
                          struct content_info *ret);

/* --- labels (labels.c) --- */

int content_labels_copy(const struct content_label *src, size_t n, struct content_label **ret,
                        size_t *ret_n);
void content_labels_free(struct content_label *labels, size_t n);
/* Sort and reject duplicate keys / invalid labels. */
int content_labels_normalize(struct content_label *labels, size_t n, struct strata_error **ret_err);

/* --- ingests (writer.c) --- */

/* Reconcile ingests at open: drop half-created and already committed ones
 * and expire stale ones. */
int content_ingest_startup(struct content_store *s);
void content_refs_free(struct content_store *s);

/* --- misc --- */
int64_t content_now_ns(void);
