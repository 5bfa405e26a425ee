/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The process's one LMDB environment (ROOT/meta/), shared by every module.
 *
 * Opened once by the daemon (or a CLI command working offline) with
 * MDB_NOTLS, because FUSE and RPC worker threads come and go. Each module
 * opens its named databases once, at start, through strata_meta_open_dbs(),
 * and touches LMDB's API from one file of its own; this file is common's.
 *
 * Writes go through strata_meta_write(), which implements group commit:
 * concurrent writers queue their closures; one of them (the leader) runs a
 * whole batch in a single write transaction, each closure in a nested
 * transaction so one failure does not undo the others, and commits once
 * (one fsync for the batch). Every caller returns only after its change is
 * durable. Closures must be short and must not block on I/O other than
 * LMDB's.
 *
 * Reads go through strata_meta_read(): a read transaction taken from a pool
 * of reset transactions and renewed. Copy values out before returning from
 * the callback: LMDB's pointers die with the transaction.
 *
 * When the map fills, the leader aborts the batch, doubles the map size
 * (waiting for readers to leave, as LMDB requires) and runs the batch again.
 * LMDB codes are mapped to errno: MDB_NOTFOUND -ENOENT, MDB_KEYEXIST -EEXIST,
 * MDB_MAP_FULL -ENOSPC (only if growing fails), others -EIO.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct strata_meta; /* thread-safe */

struct strata_meta_options {
	uint64_t initial_map_size; /* bytes; 0 = 1 GiB (sparse) */
	unsigned max_dbs;          /* 0 = 32 */
	int read_only;             /* offline inspection (doctor, tests) */
};

int strata_meta_open(const char *dir, const struct strata_meta_options *opts,
                     struct strata_meta **ret, struct strata_error **ret_err);
struct strata_meta *strata_meta_close(struct strata_meta *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct strata_meta *, strata_meta_close)

/* Open (creating if needed) named databases in one committed transaction.
 * flags are LMDB's MDB_DUPSORT etc. (0 for plain). ret_dbi receives the
 * handles (MDB_dbi values) to use with the transactions below. */
int strata_meta_open_dbs(struct strata_meta *m, size_t n, const char *const names[],
                         const unsigned flags[], unsigned ret_dbi[]);

/* `txn` is an MDB_txn* (void here so this header needs no <lmdb.h>). A
 * negative return from fn aborts only fn's own changes. */
typedef int (*strata_meta_txn_fn)(void *txn, void *userdata);

/* Run fn in a (group-committed) write transaction; returns fn's result, or
 * the commit's error. Durable when it returns >= 0. */
int strata_meta_write(struct strata_meta *m, strata_meta_txn_fn fn, void *userdata);
/* Run fn in a read-only transaction. */
int strata_meta_read(struct strata_meta *m, strata_meta_txn_fn fn, void *userdata);

/* Map an LMDB return code to a negative errno (0 stays 0). */
int strata_meta_errno(int mdb_rc);

struct strata_meta_stats {
	uint64_t write_calls; /* closures run */
	uint64_t commits;     /* write transactions committed */
	uint64_t map_resizes;
	uint64_t map_size;
};
void strata_meta_get_stats(struct strata_meta *m, struct strata_meta_stats *ret);
