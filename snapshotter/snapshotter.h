/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshotter/: overlayfs snapshots with containerd's semantics (snapshots/
 * overlay and snapshots/storage in containerd 1.6.20), and layer apply.
 *
 * It owns ROOT/snapshots/<id>/{fs,work} and the LMDB databases "snap.*" in
 * the shared environment (common/meta.h). <id> is a small decimal integer
 * from a persisted sequence, so overlay mount options stay short.
 *
 * Every operation is thread-safe. Metadata writes go through
 * strata_meta_write() (group commit): each call returns after its change is
 * durable. Directory work happens outside the write closures, ordered so that
 * a crash at any point leaves either a consistent snapshot or a directory
 * without metadata, which snap_cleanup() removes:
 *   Prepare/View: mkdir <id> (+fs, work) -> commit metadata
 *   Remove:       commit metadata        -> rm -rf <id>
 *   Commit:       metadata only (the id, hence the directory, is kept)
 *
 * Error classes (negative errno, mapped to gRPC by common/error.h):
 *   unknown key -ENOENT (NotFound); existing key/name -EEXIST (AlreadyExists);
 *   removing a snapshot with children -ENOTEMPTY, committing a non-active
 *   snapshot or asking mounts of a committed one -EBADFD (FailedPrecondition);
 *   empty key, parent not committed, bad update path -EINVAL (InvalidArgument,
 *   as containerd's storage answers for a non-committed parent).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common.h"

/* containerd's snapshots.Kind numbers. */
enum snap_kind {
	SNAP_KIND_UNKNOWN = 0,
	SNAP_KIND_VIEW = 1,
	SNAP_KIND_ACTIVE = 2,
	SNAP_KIND_COMMITTED = 3,
};

/* "view", "active", "committed" (what filters and containerd print). */
const char *snap_kind_to_string(enum snap_kind kind);

struct snap_label {
	char *key;
	char *value;
};

struct snap_info {
	char *name;
	char *parent; /* "" when none */
	enum snap_kind kind;
	struct timespec created;
	struct timespec updated;
	struct snap_label *labels;
	size_t n_labels;
};

/* Frees the members, not the struct itself; safe on a zeroed struct. */
void snap_info_done(struct snap_info *info);
/* The label's value, or NULL. */
const char *snap_info_label(const struct snap_info *info, const char *key);

struct snap_usage {
	int64_t size;   /* bytes allocated (st_blocks * 512), hard links counted once */
	int64_t inodes; /* distinct inodes, the directory itself included */
};

/* A mount as containerd.types.Mount carries it (target is the caller's). */
struct snap_mount {
	char *type;
	char *source;
	char **options;
	size_t n_options;
};

struct snap_mount *snap_mounts_free(struct snap_mount *mounts, size_t n);

struct content_registry_client;

struct snap_options {
	/* -1 auto (containerd's rule: only inside a user namespace), 0 no, 1 yes */
	int userxattr;

	/* Lazy (remote) eStargz layers, see "Remote snapshots" below. */
	bool lazy_disable;
	/* Serve layers without a toc.digest label (their TOC is unverified,
	 * so chunk digests prove nothing). Off by default. */
	bool lazy_allow_unverified;
	bool lazy_no_prefetch;         /* skip the .prefetch.landmark range at mount */
	bool lazy_no_background;       /* skip fetching the rest in the background */
	unsigned lazy_bg_delay_ms;     /* before the background fetch; 0 = 30 s */
	unsigned lazy_fuse_threads;    /* per layer; 0 = 8 */
	uint64_t lazy_cache_max_bytes; /* chunk cache cap; 0 = 10 GiB */
	/* strata serve: keep lazy layers' FUSE connections in a holder process
	 * and leave layers in use mounted on close, so running containers
	 * survive a daemon restart (snapshotter/lazy-handover.c). */
	bool lazy_handover;
	/* Borrowed; must outlive the store. NULL: the store makes its own
	 * (default options: plain HTTP for loopback registries only). */
	struct content_registry_client *registry;
};

struct snap_store; /* thread-safe */

/* Open (creating ROOT/snapshots and the databases when missing). meta is
 * borrowed and must outlive the store. */
int snap_store_open(const char *root, struct strata_meta *meta, const struct snap_options *opts,
                    struct snap_store **ret, struct strata_error **ret_err);
struct snap_store *snap_store_close(struct snap_store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct snap_store *, snap_store_close)

/*
 * Remote snapshots (containerd's remote-snapshotter protocol, lazy pulling).
 *
 * snap_prepare() with the label "containerd.io/snapshot.ref" = <chainID>
 * plus a resolvable layer (CRI labels containerd.io/snapshot/cri.image-ref +
 * cri.layer-digest, or containerd.io/snapshot/remote/stargz.reference +
 * stargz.digest) that is eStargz with a verified TOC (label
 * containerd.io/snapshot/stargz/toc.digest) creates a COMMITTED snapshot
 * named <chainID> with the request's parent, labelled
 * "containerd.io/snapshot/remote" = "strata", whose fs/ is a FUSE mount
 * fetching chunks on demand, and answers -EEXIST (AlreadyExists), as
 * containerd expects. Anything else falls back to a normal Prepare and the
 * reason is logged at info. Mounts/View over a chain holding a remote layer
 * that is unhealthy (not mounted, registry unreachable) answer -EAGAIN
 * (Unavailable). snap_store_open() remounts remote snapshots (without
 * network: the verified TOC is kept beside the snapshot); snap_remove()
 * unmounts; snap_store_close() unmounts all.
 */
int snap_store_remount_remote(struct snap_store *s, struct strata_error **ret_err);
/* The FUSE fd holder (`strata serve --fuse-fd-holder`, exec'd by the store
 * with its socket on fd 3 and its directory on fd 4): runs until it holds
 * nothing; -EBADF when not started that way. */
int snap_lazy_holder_main(void);

/* A lazy layer's prefetch (the range before .prefetch.landmark, at mount)
 * and background fetch (the rest, after a delay): none (disabled or nothing
 * to fetch), pending (not started: waiting for the delay or the registry),
 * running, done, failed (the prefetch only: the background fetch retries
 * until done). */
enum snap_lazy_phase {
	SNAP_LAZY_NONE = 0,
	SNAP_LAZY_PENDING,
	SNAP_LAZY_RUNNING,
	SNAP_LAZY_DONE,
	SNAP_LAZY_FAILED,
};
const char *snap_lazy_phase_to_string(enum snap_lazy_phase p);

struct snap_lazy_stats {
	uint64_t bytes_fetched, requests, chunks_fetched, cache_hits, cache_misses, verify_failures;
	uint64_t toc_entries, toc_memory, blob_size;
	bool healthy;
	enum snap_lazy_phase prefetch, background;
	/* prefetch: bytes fetched from the registry for it (what the cache
	 * already had is not fetched) of the range's size; background: bytes
	 * of its range covered so far of the range's size */
	uint64_t prefetch_bytes, prefetch_total, background_done, background_total;
	/* reads go through a `strata pull --user/--plain-http` route */
	bool pull_credentials;
};
/* -ENOENT when key is not a mounted remote snapshot. */
int snap_lazy_stats(struct snap_store *s, const char *key, struct snap_lazy_stats *ret);
/* Drop chunk cache files down to target bytes (0: all). */
int snap_lazy_prune_cache(struct snap_store *s, uint64_t target);
/* The registry client lazy layers read through (NULL: lazy layers off). A
 * route on it (content_registry_client_set_route) makes one repository's
 * layers read with other credentials or transport: `strata pull --user`. */
struct content_registry_client *snap_lazy_registry(struct snap_store *s);

/* ROOT/snapshots, the directory every upper/lower path lives in. */
const char *snap_store_snapshots_dir(const struct snap_store *s);

/* Create an active (Prepare) or view (View) snapshot on top of the committed
 * snapshot `parent` (NULL or "" for none) and return its mounts. */
int snap_prepare(struct snap_store *s, const char *key, const char *parent,
                 const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                 size_t *ret_n_mounts, struct strata_error **ret_err);
int snap_view(struct snap_store *s, const char *key, const char *parent,
              const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
              size_t *ret_n_mounts, struct strata_error **ret_err);
int snap_mounts(struct snap_store *s, const char *key, struct snap_mount **ret_mounts,
                size_t *ret_n_mounts, struct strata_error **ret_err);

/* Commit the active snapshot `key` as `name`; labels replace the active
 * snapshot's (containerd does not inherit them). Usage is computed here and
 * stored. */
int snap_commit(struct snap_store *s, const char *name, const char *key,
                const struct snap_label *labels, size_t n_labels, struct strata_error **ret_err);
int snap_remove(struct snap_store *s, const char *key, struct strata_error **ret_err);
int snap_stat(struct snap_store *s, const char *key, struct snap_info *ret,
              struct strata_error **ret_err);

/* Update info->name's labels by field paths: "labels" replaces them all,
 * "labels.<key>" sets (or, when absent from info, deletes) one key, no paths
 * replaces them all; any other path is -EINVAL. ret receives the full
 * updated info (may be NULL). */
int snap_update(struct snap_store *s, const struct snap_info *info, const char *const paths[],
                size_t n_paths, struct snap_info *ret, struct strata_error **ret_err);

/* Stored usage for committed snapshots; computed now for active ones (views:
 * zero, as containerd answers). */
int snap_usage(struct snap_store *s, const char *key, struct snap_usage *ret,
               struct strata_error **ret_err);

/* Call fn for every snapshot matching the filters (common/filter.h, OR'd;
 * fields kind, name, parent, labels.<key>). fn runs outside any transaction;
 * a negative return stops the walk and is returned. */
typedef int (*snap_walk_fn)(const struct snap_info *info, void *userdata);
int snap_walk(struct snap_store *s, const char *const filters[], size_t n_filters, snap_walk_fn fn,
              void *userdata, struct strata_error **ret_err);

/* Remove directories under ROOT/snapshots that have no metadata (left by a
 * crash, or by a Remove whose rm -rf failed). Mounted ones are skipped. */
int snap_cleanup(struct snap_store *s, struct strata_error **ret_err);

/* The id / directory of a snapshot (for lazy layers that mount on fs/). */
int snap_get_id(struct snap_store *s, const char *key, uint64_t *ret_id,
                struct strata_error **ret_err);

/*
 * Perform mounts on target, in order (containerd's mount.All). Overlay mounts
 * use the new mount API (fsopen + one "lowerdir+" per layer, Linux >= 6.8) so
 * chains are not limited by the one-page option string; on older kernels the
 * lower dirs are made relative to their common parent directory and mounted
 * from a child process chdir'ed there, as containerd does.
 */
int snap_mount_apply(const struct snap_mount *mounts, size_t n, const char *target,
                     struct strata_error **ret_err);
/* Tests only: skip the new mount API, to exercise the fallback. */
void snap_mount_force_legacy(bool on);
/* umount2(target, MNT_DETACH), tolerating "not mounted". */
int snap_unmount(const char *target);

/*
 * Apply a layer (an OCI tar diff, plain, gzip or zstd: detected) to the
 * active snapshot `key`, writing straight into its upper dir: OCI whiteouts
 * become overlay whiteouts (a 0/0 char device; ".wh..wh..opq" sets
 * trusted.overlay.opaque=y). Every path is resolved beneath the upper dir;
 * "..", absolute names, parents that are symlinks and hardlinks leaving the
 * layer are refused with -EINVAL naming the entry.
 *
 * read() is called for compressed bytes and returns the count, 0 at EOF or
 * -errno. ret_diff_id gets sha256 of the uncompressed tar and ret_size its
 * length (either may be NULL). On failure the snapshot holds a partial
 * layer: remove it.
 */
typedef ssize_t (*snap_read_fn)(void *userdata, void *buf, size_t len);
int snap_apply_layer(struct snap_store *s, const char *key, snap_read_fn read, void *userdata,
                     struct strata_digest *ret_diff_id, int64_t *ret_size,
                     struct strata_error **ret_err);
/* Same, from an fd (read to EOF). */
int snap_apply_layer_fd(struct snap_store *s, const char *key, int fd,
                        struct strata_digest *ret_diff_id, int64_t *ret_size,
                        struct strata_error **ret_err);
/* Same, into any directory (tests, tools): the store-less core. */
int snap_apply_tar_at(int dirfd, snap_read_fn read, void *userdata,
                      struct strata_digest *ret_diff_id, int64_t *ret_size,
                      struct strata_error **ret_err);
