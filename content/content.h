/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The content store: immutable blobs addressed by sha256, with containerd's
 * content-store semantics (content/local + services/content), so it can back
 * containerd's Content service through proxy_plugins and Strata's own pulls.
 *
 * On disk (under --root):
 *   content/blobs/sha256/<hex>       read-only blob, fsync'd, verified
 *   content/ingest/<sha256(ref)>/    one resumable ingest:
 *       ref    the ref, verbatim
 *       meta   "started=<ns>\ntotal=<n>\nexpected=<digest>\n" (written once)
 *       data   the bytes so far; its mtime is the ingest's updated_at
 * and in the LMDB environment (meta/) one database, "content.blobs":
 * sha256 (32 bytes) -> size, created/updated times and labels, in a compact
 * binary record (see content-db.c). The index is the source of truth for
 * Info/Walk; the file system for the bytes.
 *
 * Crash safety. Commit runs: fsync(data) -> verify size and digest (hashed
 * while streaming) -> link(data, blobs/sha256/<hex>) -> fsync(blobs dir) ->
 * index put -> remove the ingest. Delete unlinks the blob before dropping its
 * index entry. So after a crash a blob file is always complete and verified,
 * and the disagreements that can remain are repaired when the store opens:
 * a blob without index entry is re-hashed and re-indexed (or removed if it
 * does not verify), an entry without blob is dropped, and an ingest whose
 * data is already linked into blobs/ (link count > 1) is removed.
 *
 * Errors follow containerd's classes: -ENOENT NotFound, -EEXIST
 * AlreadyExists, -EINVAL InvalidArgument, -EAGAIN Unavailable (ref locked by
 * another writer), -EBADMSG FailedPrecondition (size/digest mismatch),
 * -ERANGE OutOfRange (read past the end, write at a wrong offset).
 *
 * Threads: every function is safe to call concurrently on one store; a
 * writer belongs to one thread at a time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "digest.h"
#include "error.h"
#include "meta.h"
#include "registry.h" /* the registry client and image formats, content/registry/ */
#include "estargz.h"  /* the eStargz footer and TOC reader */

/* containerd's labels/validate.go: key + value at most 4096 bytes. */
#define CONTENT_LABEL_MAX 4096

struct content_store;

struct content_options {
	/* Ingests not updated for this long are removed when the store opens
	 * and by content_expire_ingests(). 0 = 24 hours; < 0 = never. */
	int64_t ingest_expiry_sec;
	/* Skip the startup reconciliation of index and blobs (tests, tools
	 * that only read). */
	bool skip_startup_check;
};

struct content_label {
	char *key;
	char *value;
};

struct content_info {
	struct strata_digest digest;
	int64_t size;
	struct timespec created_at;
	struct timespec updated_at;
	struct content_label *labels; /* sorted by key, unique keys */
	size_t n_labels;
};

/* Free the labels (the struct itself is the caller's) and zero it. */
void content_info_done(struct content_info *info);
/* The value of a label, or NULL. */
const char *content_info_label(const struct content_info *info, const char *key);
/* Set (value != NULL) or remove (value == NULL) a label, keeping order. */
int content_info_set_label(struct content_info *info, const char *key, const char *value);
/* Check a label like containerd: non-empty key, key + value <= 4096. */
int content_label_validate(const char *key, const char *value, struct strata_error **ret_err);

/* root is Strata's --root; meta is the process's LMDB environment, which
 * must outlive the store. Creates the directories, opens the database, runs
 * the startup check and expires stale ingests (logging what it repaired). */
int content_store_open(const char *root, struct strata_meta *meta,
                       const struct content_options *opts, struct content_store **ret,
                       struct strata_error **ret_err);
struct content_store *content_store_close(struct content_store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_store *, content_store_close)

/* --- blobs --------------------------------------------------------------- */

int content_info(struct content_store *s, const struct strata_digest *digest,
                 struct content_info *ret, struct strata_error **ret_err);

/*
 * Update the labels of info->digest following containerd's field paths:
 * "labels" replaces all labels with info's, "labels.<key>" sets (or, when
 * info lacks it, removes) that one key (the key may contain dots), n == 0
 * replaces all labels; any other path is -EINVAL. ret (may be NULL)
 * receives the full updated Info.
 */
int content_update(struct content_store *s, const struct content_info *info,
                   const char *const paths[], size_t n, struct content_info *ret,
                   struct strata_error **ret_err);

/* Called for each blob matching the filters. Return 0 to go on, > 0 to stop
 * (content_walk returns 0), < 0 to stop with that error. info is valid for
 * the call only. */
typedef int (*content_walk_fn)(const struct content_info *info, void *userdata);

/* Walk the blobs matching any of the filters (containerd syntax; fields
 * "digest", "size" and "labels.<key>"), in digest order. n == 0 walks all. */
int content_walk(struct content_store *s, const char *const filters[], size_t n, content_walk_fn fn,
                 void *userdata, struct strata_error **ret_err);

int content_delete(struct content_store *s, const struct strata_digest *digest,
                   struct strata_error **ret_err);

/* An open blob for positional reads. Many readers may read one blob at the
 * same time; a reader may be shared between threads (pread only). */
struct content_reader;

int content_reader_open(struct content_store *s, const struct strata_digest *digest,
                        struct content_reader **ret, struct strata_error **ret_err);
int64_t content_reader_size(const struct content_reader *r);
/* The blob's fd (O_RDONLY), e.g. for sendfile/splice; owned by the reader. */
int content_reader_fd(const struct content_reader *r);
/* Read up to len bytes at offset; returns the count (0 at the end, short
 * only at the end). offset > size is -ERANGE, like containerd's Read. */
ssize_t content_reader_pread(struct content_reader *r, void *buf, size_t len, int64_t offset);
struct content_reader *content_reader_free(struct content_reader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_reader *, content_reader_free)

/* --- ingests ------------------------------------------------------------- */

struct content_status {
	char *ref;
	int64_t offset; /* bytes written so far */
	int64_t total;  /* expected size, 0 if unknown */
	bool have_expected;
	struct strata_digest expected;
	struct timespec started_at;
	struct timespec updated_at;
};

void content_status_done(struct content_status *st);

/* One active write: locks its ref until closed. Not thread-safe. */
struct content_writer;

/*
 * Open (or resume) the ingest for ref. total (0 = unknown) and expected
 * (NULL = unknown) describe the blob; when expected is already stored the
 * result is -EEXIST. A ref held by another writer is -EAGAIN. Resuming keeps
 * the data written so far (its total must agree when both are known).
 */
int content_writer_open(struct content_store *s, const char *ref, int64_t total,
                        const struct strata_digest *expected, struct content_writer **ret,
                        struct strata_error **ret_err);

/*
 * Write len bytes at offset. offset must be the current size (append), or 0
 * to truncate what was written and start over; anything else is -ERANGE.
 * offset < 0 means "append". Data is hashed as it arrives.
 */
int content_writer_write(struct content_writer *w, int64_t offset, const void *data, size_t len,
                         struct strata_error **ret_err);

/*
 * The same in two steps, for a server that answers a chunk before its bytes
 * reach the file (and so overlaps the file write with receiving the next
 * chunk). content_writer_stage() checks the offset as content_writer_write()
 * does and hashes the bytes: from then on the writer's status, offset and
 * digest include them. content_writer_flush() writes them to the ingest; data
 * must stay valid and unchanged until then. One chunk may be staged at a
 * time: write, stage and commit fail with -EBUSY until the flush. A failed
 * flush rolls the writer back to before the stage (offset, hash, file) and
 * returns the error; content_writer_close() drops a staged chunk the same way
 * (the ingest keeps only what was flushed). Until the flush, content_status()
 * and content_list_statuses() (which read the ingest on disk) do not count
 * the staged bytes. Flush with nothing staged is a no-op.
 */
int content_writer_stage(struct content_writer *w, int64_t offset, const void *data, size_t len,
                         struct strata_error **ret_err);
int content_writer_flush(struct content_writer *w, struct strata_error **ret_err);

/* Current state (ref is owned by the writer: do not free; other fields are
 * copies). */
int content_writer_status(struct content_writer *w, struct content_status *ret);
/* Digest of the bytes written so far. */
int content_writer_digest(struct content_writer *w, struct strata_digest *ret);

/*
 * Commit: size (<= 0: not checked) and expected (NULL: not checked) must
 * match what was streamed (-EBADMSG otherwise; the ingest is kept). If the
 * digest is already stored the result is -EEXIST and the ingest is removed.
 * labels (validated first) are stored with the blob. After commit, success or
 * not, the writer only accepts content_writer_close().
 */
int content_writer_commit(struct content_writer *w, int64_t size,
                          const struct strata_digest *expected, const struct content_label *labels,
                          size_t n_labels, struct strata_digest *ret_digest,
                          struct strata_error **ret_err);

/* Release the ref and free the writer. An uncommitted ingest stays on disk
 * for a later writer to resume. */
struct content_writer *content_writer_close(struct content_writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_writer *, content_writer_close)

int content_status(struct content_store *s, const char *ref, struct content_status *ret,
                   struct strata_error **ret_err);

typedef int (*content_status_fn)(const struct content_status *st, void *userdata);
/* Walk the ingests matching any of the filters (field "ref"); callback
 * return values as for content_walk. */
int content_list_statuses(struct content_store *s, const char *const filters[], size_t n,
                          content_status_fn fn, void *userdata, struct strata_error **ret_err);

/* Remove an ingest. -ENOENT if there is none, -EAGAIN while a writer holds
 * it. */
int content_abort(struct content_store *s, const char *ref, struct strata_error **ret_err);

/* Remove ingests not updated for max_age_sec (<= 0: the store's option) and
 * not locked by a writer. */
int content_expire_ingests(struct content_store *s, int64_t max_age_sec, size_t *ret_removed);

/* --- maintenance ----------------------------------------------------------- */

struct content_gc_result {
	struct strata_digest *removed;
	size_t n_removed;
	uint64_t bytes_removed;
};
void content_gc_result_done(struct content_gc_result *r);

struct content_gc_options {
	bool dry_run; /* report, remove nothing */
	/* Blobs committed less than this long before the mark phase starts
	 * are spared: a writer that took its timestamp before the mark but
	 * indexed the blob after the walk must not lose it. 0 = 1 s; < 0 = no
	 * grace (callers that exclude concurrent writers themselves). */
	int64_t grace_ns;
};

/*
 * Mark and sweep. Live: the roots, blobs labelled "containerd.io/gc.root",
 * and, recursively, every digest named by a "containerd.io/gc.ref.content"
 * label (exactly that key or with a "." or "/" suffix) of a live blob. All
 * other blobs are deleted (unless opts->dry_run) and reported in ret (may be
 * NULL). opts may be NULL (defaults). Blobs committed while the sweep runs,
 * or within the grace period before it, are never removed.
 */
int content_gc(struct content_store *s, const struct strata_digest *roots, size_t n_roots,
               const struct content_gc_options *opts, struct content_gc_result *ret,
               struct strata_error **ret_err);

/* Called for each blob that fails verification: error is -EBADMSG (digest or
 * size mismatch), -ENOENT (indexed but missing) or another read error. */
typedef void (*content_verify_fn)(const struct strata_digest *digest, int error, void *userdata);

/* Re-hash every indexed blob. Returns the number of bad blobs (>= 0). */
int content_verify_all(struct content_store *s, content_verify_fn fn, void *userdata,
                       struct strata_error **ret_err);

/* --- image store (images.c) ------------------------------------------------ */
/*
 * Strata's own images: records by normalised name ("docker.io/library/
 * busybox:latest") in the LMDB database "content.images". A record names
 * what the image needs (target manifest or index, platform manifest, config,
 * layer blobs, snapshot chain IDs); the blobs themselves live in the content
 * store with containerd's GC labels, the snapshots in snapshotter/ under
 * "@strata/<chainID>". Deleting a record removes nothing else: unreferenced
 * blobs and snapshots go at Prune (proxy/svc-images.c).
 *
 * Coexistence with containerd on the same store (design in proxy/
 * svc-images.c): a blob Strata wrote for itself carries the mark
 * CONTENT_MARK_PRIVATE until containerd claims it (writes it or asks for it
 * over gRPC). Private blobs are invisible to containerd's List, so its
 * garbage collector never sees them; a containerd Delete of a blob a Strata
 * image still needs only drops containerd's claim (the blob turns private
 * again). Strata's Prune removes only private blobs.
 */

struct content_image_record {
	char *name;                           /* normalised reference (the key) */
	struct strata_digest digest;          /* what the name resolved to: manifest or index */
	char *media_type;                     /* of digest */
	int64_t size;                         /* manifest + config + layers */
	char *platform;                       /* "os/arch[/variant]" */
	struct strata_digest manifest_digest; /* the platform manifest */
	struct strata_digest config_digest;
	struct strata_digest *layers; /* layer blobs, bottom first */
	size_t n_layers;
	struct strata_digest *chain_ids; /* one per layer */
	size_t n_chain_ids;
	struct timespec created_at; /* first recorded */
	struct timespec updated_at; /* last pulled */
	struct content_label *labels;
	size_t n_labels;
};

void content_image_record_done(struct content_image_record *r);
/* JSON with a version field; *ret is malloc'd (not NUL-terminated data is
 * fine for decode: len is used). */
int content_image_record_encode(const struct content_image_record *r, char **ret, size_t *ret_len);
/* -EBADMSG for a malformed or unknown-version record. */
int content_image_record_decode(const void *buf, size_t len, struct content_image_record *ret);

/* OCI chain IDs: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " +
 * diff(n)) over the "sha256:<hex>" strings. ret has room for n. */
int content_image_chain_ids(const struct strata_digest *diff_ids, size_t n,
                            struct strata_digest *ret);

/* Store r under r->name: created_at is kept from an existing record (or set
 * now), updated_at set now. */
int content_image_put(struct content_store *s, const struct content_image_record *r,
                      struct strata_error **ret_err);
int content_image_get(struct content_store *s, const char *name, struct content_image_record *ret,
                      struct strata_error **ret_err);
int content_image_delete(struct content_store *s, const char *name, struct strata_error **ret_err);

typedef int (*content_image_walk_fn)(const struct content_image_record *r, void *userdata);
/* Walk records matching any filter (containerd syntax; fields "name",
 * "digest" (also "target.digest"), "manifest", "config", "platform",
 * "labels.<key>"), in name order. Callback returns as for content_walk. */
int content_image_walk(struct content_store *s, const char *const filters[], size_t n,
                       content_image_walk_fn fn, void *userdata, struct strata_error **ret_err);

/* Pins: an in-memory, per-process count per digest that marks a blob as in use
 * by a running pull before any image record names it. */
int content_image_pin(struct content_store *s, const struct strata_digest *d);
void content_image_unpin(struct content_store *s, const struct strata_digest *d);

/* 1 when an image record names d (as target, manifest, config or layer) or d
 * is pinned, 0 otherwise. */
int content_image_referenced(struct content_store *s, const struct strata_digest *d);

/* --- containerd coexistence marks ---------------------------------------- */

enum {
	/* Written by Strata for its own images; containerd has not claimed it. */
	CONTENT_MARK_PRIVATE = 1u << 0,
};

/* 1 when private, 0 when not, < 0 on error. */
int content_mark_is_private(struct content_store *s, const struct strata_digest *d);
int content_mark_set_private(struct content_store *s, const struct strata_digest *d, bool on);

/* containerd wrote d, or asked about it: it may now reference it. Clears the
 * private mark (no write when there is none). */
int content_containerd_claim(struct content_store *s, const struct strata_digest *d);
/* containerd's Delete: a blob a Strata image (or running pull) references
 * only loses containerd's claim and stays; anything else is deleted. */
int content_containerd_delete(struct content_store *s, const struct strata_digest *d,
                              struct strata_error **ret_err);

/* A read-only fd on the data of ingest `ref` (for a consumer that follows a
 * download while it is written). It stays valid after the ingest commits (the
 * blob is the same inode). -ENOENT when there is no such ingest. */
int content_ingest_open_data(struct content_store *s, const char *ref);
