/* SPDX-License-Identifier: Apache-2.0 */
/* Private to snapshotter/: the store, the metadata records and their access. */
#pragma once

#include <pthread.h>

#include "snapshotter.h"

/* One snapshot's metadata, as stored under its key (or name once
 * committed). */
struct snap_record {
	uint64_t id;
	struct snap_info info; /* info.name is the record's key */
	struct snap_usage usage;
};

void snap_record_done(struct snap_record *rec);

struct snap_store {
	char *root;
	char *snapshots_dir; /* ROOT/snapshots */
	int snapshots_fd;    /* O_DIRECTORY fd of snapshots_dir */
	struct strata_meta *meta;
	unsigned dbi[4]; /* see snap-meta.c */
	bool index_off;
	bool userxattr;

	/* Protected by id_lock: ids handed out come from [next_id, id_end),
	 * a block already persisted as used, so a crash never reuses one. */
	pthread_mutex_t id_lock;
	uint64_t next_id, id_end;

	/* Prepare/View hold it shared from mkdir until the metadata commit;
	 * Cleanup holds it exclusive, so it never deletes a directory whose
	 * metadata is about to be written. */
	pthread_rwlock_t dirs_lock;

	/* Remove renames a snapshot's directory into ROOT/snapshots-trash
	 * right after its metadata commit and the trash thread deletes it
	 * there, as containerd's overlayfs removes asynchronously: the
	 * client waits for one commit, not for rm -rf (whose directory
	 * operations queue behind the journal commits of every fsync).
	 * Entries are named by snapshot id, never reused. Whatever a crash
	 * leaves in the trash is swept at the next open, and by Cleanup.
	 * trash_lock protects trash_pending, trash_due and trash_stop;
	 * sweep_lock serialises sweeps (the thread's and Cleanup's). trash_fd
	 * is -1 when the trash cannot be used: Remove then deletes in place. */
	int trash_fd;
	pthread_mutex_t trash_lock;
	pthread_cond_t trash_cond; /* CLOCK_MONOTONIC */
	bool trash_pending, trash_stop, have_trash_thread;
	uint64_t trash_due; /* usec, CLOCK_MONOTONIC */
	pthread_t trash_thread;
	pthread_mutex_t sweep_lock;

	/* Lazy (remote) layers; NULL when disabled. Thread-safe itself. */
	struct lazy_manager *lazy;
};

/* --- snapshotter.c --- */
/* Prepare/View without the remote-snapshot path. */
int snap_create(struct snap_store *s, enum snap_kind kind, const char *key, const char *parent,
                const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                size_t *ret_n_mounts, struct strata_error **ret_err);
/* A remote layer's Prepare: the committed snapshot name (labels as given)
 * in one metadata write, key never stored. fill(id) writes what must be in
 * the snapshot's directory when the snapshot becomes visible (and makes it
 * durable as it needs); a crash before the write leaves an orphan directory
 * for Cleanup. -EEXIST with *ret_name_exists when name is taken (key taken:
 * false). */
int snap_create_committed(struct snap_store *s, const char *name, const char *key,
                          const char *parent, const struct snap_label *labels, size_t n_labels,
                          int (*fill)(struct snap_store *s, uint64_t id, void *userdata),
                          void *userdata, uint64_t *ret_id, bool *ret_name_exists,
                          struct strata_error **ret_err);

/* --- snap-meta.c (the only file including <lmdb.h>) --- */
int snap_meta_open(struct snap_store *s);
/* Reserve n ids; *ret_first is the first one. Durable on return. */
int snap_meta_reserve_ids(struct snap_store *s, uint64_t n, uint64_t *ret_first);

/* Read a record by key. -ENOENT when unknown. */
int snap_meta_get(struct snap_store *s, const char *key, struct snap_record *ret);
/* Read a record and the ids of its parent chain (nearest parent first). */
int snap_meta_get_chain(struct snap_store *s, const char *key, struct snap_record *ret,
                        uint64_t **ret_parent_ids, size_t *ret_n);

struct snap_create_args {
	const char *key;
	const char *parent;
	enum snap_kind kind;
	uint64_t id;
	const struct snap_label *labels;
	size_t n_labels;
	/* out */
	uint64_t *parent_ids;
	size_t n_parent_ids;
	struct strata_error *err;
};
int snap_meta_create(struct snap_store *s, struct snap_create_args *a);

struct snap_commit_args {
	const char *name, *key;
	const struct snap_label *labels;
	size_t n_labels;
	struct snap_usage usage;
	uint64_t expect_id; /* the id the usage was computed for */
	struct strata_error *err;
};
int snap_meta_commit(struct snap_store *s, struct snap_commit_args *a);

/* A committed snapshot in one write (a remote layer's Prepare, which would
 * otherwise create key as active and commit it): name must be unused, and
 * so must key, which is not stored. key_exists tells the two -EEXIST apart. */
struct snap_create_committed_args {
	const char *name, *key, *parent;
	uint64_t id;
	const struct snap_label *labels;
	size_t n_labels;
	struct snap_usage usage;
	/* out */
	bool key_exists;
	struct strata_error *err;
};
int snap_meta_create_committed(struct snap_store *s, struct snap_create_committed_args *a);

/* Remove key's record; *ret_id gets its id. */
int snap_meta_remove(struct snap_store *s, const char *key, uint64_t *ret_id,
                     struct strata_error **ret_err);

int snap_meta_update(struct snap_store *s, const struct snap_info *info, const char *const paths[],
                     size_t n_paths, struct snap_info *ret, struct strata_error **ret_err);

/* Every record, in key order (caller frees with snap_record_done each). */
int snap_meta_list(struct snap_store *s, struct snap_record **ret, size_t *ret_n);
/* Every id in use, sorted ascending. */
int snap_meta_ids(struct snap_store *s, uint64_t **ret, size_t *ret_n);

/* --- mounts.c --- */
int snap_build_mounts(const struct snap_store *s, enum snap_kind kind, uint64_t id,
                      const uint64_t *parent_ids, size_t n_parents, struct snap_mount **ret,
                      size_t *ret_n);

/* --- usage.c --- */
int snap_disk_usage_at(int dirfd, const char *path, struct snap_usage *ret);

/* --- labels --- */
int snap_labels_copy(const struct snap_label *src, size_t n, struct snap_label **ret);
void snap_labels_free(struct snap_label *labels, size_t n);
