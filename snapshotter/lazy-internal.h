/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to snapshotter/: lazy (remote) layers. An eStargz layer is served
 * by a FUSE file system (lazy-fs.c) mounted on ROOT/snapshots/<id>/fs, whose
 * reads fetch chunks from the registry (lazy-fetch.c) through a chunk cache
 * shared by all layers (lazy-cache.c). lazy-remote.c decides, in Prepare,
 * whether a layer can be served remotely, and remounts after a restart.
 *
 * Per remote snapshot, next to fs/:
 *   remote      "key=value" lines: ref, digest, size, toc_digest (or
 *               "unverified"), toc_offset; written (fsync'd) before the
 *               snapshot is committed, so a crash never leaves a remote
 *               snapshot that cannot be remounted
 *   toc.json    the verified TOC, so a restart needs no network to remount
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "estargz.h"
#include "snap-internal.h"

/* --- lazy-cache.c: chunks on disk by sha256, shared, size-capped ---------- */

/* Thread-safe. Files: DIR/<2 hex>/<64 hex>, written to a temp name and
 * renamed, so a reader sees a whole verified chunk or nothing. Eviction
 * removes the least recently used files (mtime, refreshed on a hit at most
 * every few minutes) until the total is under 90% of the cap. */
struct lazy_cache;

int lazy_cache_open(const char *dir, uint64_t max_bytes, struct lazy_cache **ret);
struct lazy_cache *lazy_cache_free(struct lazy_cache *c);
/* Read [off, off + len) of a cached chunk of `size` bytes into buf: the count,
 * or -ENOENT when not cached (or the file is damaged: then it is removed). */
ssize_t lazy_cache_read(struct lazy_cache *c, const struct strata_digest *d, uint64_t size,
                        void *buf, size_t len, uint64_t off);
bool lazy_cache_has(struct lazy_cache *c, const struct strata_digest *d);
/* A cached chunk's open, size-checked fd, valid until lazy_cache_unpin()
 * (a FUSE reply can splice from it). The cache keeps a bounded set of chunk
 * files open, LRU, so cached reads need no open/stat/close. A chunk still
 * waiting for the write-behind writer has no fd yet: -ENOENT, and
 * lazy_cache_read() serves it. */
struct lazy_cache_pin {
	int fd;
	int slot; /* -1: a private fd, closed by unpin */
};
/* 0, or -ENOENT when not cached (or damaged: then it is removed). */
int lazy_cache_pin(struct lazy_cache *c, const struct strata_digest *d, uint64_t size,
                   struct lazy_cache_pin *ret);
void lazy_cache_unpin(struct lazy_cache *c, struct lazy_cache_pin *p);
/* Store verified bytes: a small chunk (up to 256 KiB, 16 MiB in all) is
 * kept in memory and written to its file later by a writer thread at idle
 * priority (has and read see it at once). Errors are for the caller to log; a failed put only costs
 * a later refetch. */
int lazy_cache_put(struct lazy_cache *c, const struct strata_digest *d, const void *buf,
                   size_t len);
/* Wait until every chunk put is in its file. */
void lazy_cache_flush(struct lazy_cache *c);
/* Evict down to target bytes (0: empty the cache). */
int lazy_cache_evict(struct lazy_cache *c, uint64_t target);
uint64_t lazy_cache_size(struct lazy_cache *c);

/* --- lazy-layer.c: one mounted layer ------------------------------------ */

struct lazy_manager;

struct lazy_layer {
	/* Immutable after lazy_layer_new(). */
	struct lazy_manager *mgr;
	uint64_t id;
	char *ref_str;
	struct content_ref *ref;
	struct strata_digest digest;
	uint64_t blob_size;
	struct content_estargz_toc *toc;
	char *mountpoint;

	/* Owned by lazy-fs.c: set before the loop thread starts, torn down
	 * after it is joined. */
	struct fuse_session *se;
	dev_t fuse_dev; /* the connection, for aborting it */
	pthread_t fuse_thread;
	bool fuse_running;
	pthread_t bg_thread;
	bool bg_running;
	/* lazy-fetch.c's read-ahead workers: created by lazy_fs_mount()
	 * before the loop thread starts, freed by lazy_fs_unmount() after it
	 * is joined; NULL when not mounted. */
	struct lazy_fetch *fetch;
	/* lazy-handover.c: a kept /dev/fuse fd to serve instead of mounting
	 * (-1: mount), and whether unmounting leaves the mount to the next
	 * daemon. Set before lazy_fs_mount()/lazy_fs_unmount(). */
	int adopt_fd;
	bool keep_mounted;

	/* Counters (relaxed atomics: figures, not synchronisation). */
	atomic_uint_fast64_t bytes_fetched, requests, chunks_fetched, cache_hits, cache_misses,
	        verify_failures;
	atomic_bool healthy;
	atomic_bool stopping;
	/* The helper thread's progress (enum snap_lazy_phase; bytes as in
	 * struct snap_lazy_stats): written by it, read by stats. */
	atomic_int prefetch_phase, bg_phase;
	atomic_uint_fast64_t prefetch_bytes, bg_done;

	/* Protected by lock: compressed ranges being fetched right now, so two
	 * readers of one chunk share one request. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct {
		uint64_t start, end;
	} inflight[32];
	unsigned n_inflight;
};

struct lazy_options {
	bool allow_unverified; /* serve layers without toc.digest */
	bool no_prefetch;      /* skip the landmark prefetch at mount */
	bool no_background;    /* skip fetching the rest in the background */
	bool handover;         /* keep FUSE connections across restarts */
	unsigned bg_delay_ms;  /* wait before the background fetch starts */
	unsigned fuse_threads; /* max FUSE worker threads per layer */
	uint64_t cache_max_bytes;
};

/* Shared by all layers of one store. layers/n_layers are protected by lock,
 * which is never held across network I/O, mounts or FUSE replies. */
struct lazy_manager {
	char *root;
	struct lazy_options opts;
	struct lazy_cache *cache;
	struct content_registry_client *registry;
	bool own_registry;
	pthread_mutex_t lock;
	struct lazy_layer **layers;
	size_t n_layers;
	struct lazy_handover *handover; /* thread-safe; NULL: none */
	/* known remote snapshots that could not be mounted (ids) */
	uint64_t *broken;
	size_t n_broken;
};

int lazy_manager_new(const char *root, const struct lazy_options *opts,
                     struct content_registry_client *registry, struct lazy_manager **ret,
                     struct strata_error **ret_err);
/* Unmounts every layer. */
struct lazy_manager *lazy_manager_free(struct lazy_manager *m);

int lazy_layer_new(struct lazy_manager *m, uint64_t id, const char *ref,
                   const struct strata_digest *digest, uint64_t blob_size,
                   struct content_estargz_toc *toc, const char *mountpoint,
                   struct lazy_layer **ret);
struct lazy_layer *lazy_layer_free(struct lazy_layer *l);

/* Fetch and cache every chunk with a member in [start, end) of the blob:
 * the prefetch (one Range request when it fits) and background fetch. */
int lazy_layer_fetch_range(struct lazy_layer *l, uint64_t start, uint64_t end);
/* One small Range read of the blob's tail: sets and returns healthy. */
bool lazy_layer_probe(struct lazy_layer *l);
/* Mount (FUSE), register in the manager, start prefetch/background work. */
int lazy_layer_start(struct lazy_layer *l, struct strata_error **ret_err);
/* The manager's layer for snapshot id, or NULL. */
struct lazy_layer *lazy_manager_find(struct lazy_manager *m, uint64_t id);
/* Remove from the manager, unmount and free. */
void lazy_manager_drop(struct lazy_manager *m, uint64_t id);

/* --- lazy-fetch.c: FUSE reads, with read-ahead fetched in parallel --------- */

struct lazy_fetch;
int lazy_fetch_new(struct lazy_layer *l, struct lazy_fetch **ret);
/* Stops the workers (queued read-ahead is dropped) and frees. */
struct lazy_fetch *lazy_fetch_free(struct lazy_fetch *f);
/* At mount: queue the files nearly every container start reads (dynamic
 * loader, libc, ...), unless the layer has a prefetch landmark. */
void lazy_fetch_start(struct lazy_fetch *f);
/* Wait until no read-ahead is queued or running (tests). */
void lazy_fetch_wait_idle(struct lazy_fetch *f);
/* Read file data of entry idx (already resolved through hardlinks): the
 * byte count, or -EIO when the bytes cannot be fetched and verified.
 * Answered as soon as the read's own chunks are verified, while l->fetch's
 * workers fetch what comes next. */
ssize_t lazy_fetch_read(struct lazy_layer *l, uint32_t idx, void *buf, size_t len, uint64_t off);
/* One Range request for [start, end) of the blob; every chunk whose member
 * lies in it is verified and cached. -EAGAIN when an overlapping fetch was
 * waited for instead (look at the cache again), -EIO when it failed. */
int lazy_fetch_span(struct lazy_layer *l, uint64_t start, uint64_t end, const char *why);
/* First position in toc->by_offset whose chunk starts at or after off. */
uint32_t lazy_fetch_first_at(const struct content_estargz_toc *toc, uint64_t off);
/* Entry idx was opened: queue what its opener will read next (a stale
 * .pyc's source). Never blocks on the network. */
void lazy_fetch_opened(struct lazy_layer *l, uint32_t idx);
/* Entry idx was looked up: when it is an executable, fetch its first chunks
 * in the background. runc looks a container's command up in PATH when it
 * creates the container, tens of ms (with CRI, more) before start execs
 * it; a shell looks a command up right before it execs it. Never blocks. */
void lazy_fetch_looked_up(struct lazy_layer *l, uint32_t idx);

/* --- lazy-fs.c ------------------------------------------------------------ */

int lazy_fs_mount(struct lazy_layer *l, struct strata_error **ret_err);
/* Unmount, abort the connection, join the loop thread. */
void lazy_fs_unmount(struct lazy_layer *l);
/* Detach whatever is mounted on path (a stale mount of a dead daemon). */
void lazy_fs_force_unmount(const char *path);

/* --- lazy-handover.c: FUSE connections kept across daemon restarts -------- */

struct lazy_handover;

/* Connects to a holder left by the previous daemon and takes the list of
 * fds it keeps; keep: start a holder on the first put and keep layers in
 * use mounted on exit. */
int lazy_handover_open(const char *root, bool keep, struct lazy_handover **ret);
struct lazy_handover *lazy_handover_free(struct lazy_handover *h);
/* Whether layers in use are left mounted on exit (keep, and a holder). */
bool lazy_handover_keeps(const struct lazy_handover *h);
/* The kept fd of snapshot id (the caller owns it) and the device it was
 * mounted as, or -ENOENT. */
int lazy_handover_take(struct lazy_handover *h, uint64_t id, dev_t *ret_dev);
/* Hand a freshly mounted layer's fd to the holder (started on demand). */
void lazy_handover_put(struct lazy_handover *h, struct lazy_layer *l);
void lazy_handover_del(struct lazy_handover *h, uint64_t id);
/* Tell the holder to drop the kept fds no layer took. */
void lazy_handover_release_unclaimed(struct lazy_handover *h);
bool lazy_handover_mount_live(const char *mountpoint, dev_t dev, int fd);
bool lazy_handover_in_use(const char *mountpoint, dev_t dev);
/* After fuse_session_mount(se, "/dev/fd/N"): make the session initialised
 * without a kernel INIT, and have the kernel resend unanswered requests. */
int lazy_handover_resume(struct lazy_layer *l);
/* Stop serving without unmounting or aborting (keep_mounted). */
void lazy_handover_detach(struct lazy_layer *l);
void lazy_handover_on_signal(int sig);

/* --- lazy-remote.c -------------------------------------------------------- */

/* In Prepare: 1 when a remote snapshot for the target now exists (the
 * caller answers AlreadyExists), 0 when the caller should fall back to a
 * normal Prepare (the reason is logged). */
int lazy_remote_prepare(struct snap_store *s, const char *key, const char *parent,
                        const struct snap_label *labels, size_t n_labels,
                        struct strata_error **ret_err);
/* Mount every snapshot labelled remote that is not mounted yet. */
int lazy_remote_remount_all(struct snap_store *s, struct strata_error **ret_err);
/* -EAGAIN naming the layer when one of the ids is an unhealthy remote layer. */
int lazy_remote_check_chain(struct snap_store *s, const uint64_t *ids, size_t n,
                            struct strata_error **ret_err);
