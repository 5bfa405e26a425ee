/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LMDB environment and group commit (see meta.h). The only file in common/
 * that includes <lmdb.h>.
 */
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "meta.h"
#include "path.h"

struct write_req {
	strata_meta_txn_fn fn;
	void *userdata;
	int result;
	bool done;
	struct write_req *next;
};

struct read_txn {
	MDB_txn *txn;
	struct read_txn *next;
};

struct strata_meta {
	MDB_env *env;
	bool read_only;

	/* Protected by lock: the queue of pending writes, the leader flag and
	 * the stats. Waiters sleep on `cond`. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct write_req *queue_head, *queue_tail;
	bool leader_active;
	struct strata_meta_stats stats;

	/* Readers hold `resize` shared for the life of a read transaction; the
	 * leader takes it exclusively to grow the map (LMDB requires no live
	 * transaction in the process for mdb_env_set_mapsize). */
	pthread_rwlock_t resize;

	/* Protected by pool_lock: reset read transactions for reuse. */
	pthread_mutex_t pool_lock;
	struct read_txn *pool;
};

int strata_meta_errno(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
		return -EAGAIN;
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	default:
		/* Positive values are plain errnos from LMDB. */
		return rc > 0 ? -rc : -EIO;
	}
}

int strata_meta_open(const char *dir, const struct strata_meta_options *opts,
                     struct strata_meta **ret, struct strata_error **ret_err)
{
	struct strata_meta_options o = opts ? *opts : (struct strata_meta_options){0};
	struct strata_meta *m;
	unsigned flags = MDB_NOTLS;
	int rc, r;

	if (!o.initial_map_size)
		o.initial_map_size = 1ULL << 30;
	if (!o.max_dbs)
		o.max_dbs = 32;
	if (o.read_only)
		flags |= MDB_RDONLY;
	else {
		r = path_mkdir_p(dir, 0700);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "create metadata dir \"%s\"",
			                              dir);
	}

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->read_only = o.read_only;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_rwlock_init(&m->resize, NULL);
	pthread_mutex_init(&m->pool_lock, NULL);

	rc = mdb_env_create(&m->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(m->env, o.max_dbs);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(m->env, 512);
	if (rc == 0)
		rc = mdb_env_set_mapsize(m->env, o.initial_map_size);
	if (rc == 0)
		rc = mdb_env_open(m->env, dir, flags, 0600);
	if (rc != 0) {
		r = strata_meta_errno(rc);
		(void)strata_error_set(ret_err, r, "open metadata store \"%s\": %s", dir,
		                       mdb_strerror(rc));
		(void)strata_meta_close(m);
		return r;
	}
	/* LMDB opens data.mdb without O_CLOEXEC: keep it out of the
	 * processes we start (shims, CNI plugins, the FUSE fd holder). */
	{
		mdb_filehandle_t fd;
		if (mdb_env_get_fd(m->env, &fd) == 0)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	/* An existing environment may already be larger than asked. */
	{
		MDB_envinfo info;
		if (mdb_env_info(m->env, &info) == 0)
			m->stats.map_size = info.me_mapsize;
	}
	/* Clear reader slots left by a crashed process. */
	{
		int dead = 0;
		(void)mdb_reader_check(m->env, &dead);
		if (dead > 0)
			log_debug("metadata store: cleared %d stale reader slots", dead);
	}
	*ret = m;
	return 0;
}

struct strata_meta *strata_meta_close(struct strata_meta *m)
{
	if (!m)
		return NULL;
	while (m->pool) {
		struct read_txn *t = m->pool;
		m->pool = t->next;
		mdb_txn_abort(t->txn);
		free(t);
	}
	if (m->env)
		mdb_env_close(m->env);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	pthread_rwlock_destroy(&m->resize);
	pthread_mutex_destroy(&m->pool_lock);
	free(m);
	return NULL;
}

int strata_meta_open_dbs(struct strata_meta *m, size_t n, const char *const names[],
                         const unsigned flags[], unsigned ret_dbi[])
{
	MDB_txn *txn = NULL;
	int rc;

	rc = mdb_txn_begin(m->env, NULL, m->read_only ? MDB_RDONLY : 0, &txn);
	if (rc != 0)
		return strata_meta_errno(rc);
	for (size_t i = 0; i < n; i++) {
		MDB_dbi dbi;
		unsigned f = (flags ? flags[i] : 0) | (m->read_only ? 0 : MDB_CREATE);
		rc = mdb_dbi_open(txn, names[i], f, &dbi);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return strata_meta_errno(rc);
		}
		ret_dbi[i] = dbi;
	}
	rc = mdb_txn_commit(txn);
	return strata_meta_errno(rc);
}

/* Grow the map: called by the leader with no write transaction open. */
static int meta_grow(struct strata_meta *m)
{
	MDB_envinfo info;
	int rc;

	pthread_rwlock_wrlock(&m->resize);
	/* Readers parked in the pool still count as transactions: drop them. */
	pthread_mutex_lock(&m->pool_lock);
	while (m->pool) {
		struct read_txn *t = m->pool;
		m->pool = t->next;
		mdb_txn_abort(t->txn);
		free(t);
	}
	pthread_mutex_unlock(&m->pool_lock);
	rc = mdb_env_info(m->env, &info);
	if (rc == 0)
		rc = mdb_env_set_mapsize(m->env, info.me_mapsize * 2);
	if (rc == 0) {
		pthread_mutex_lock(&m->lock);
		m->stats.map_resizes++;
		m->stats.map_size = info.me_mapsize * 2;
		pthread_mutex_unlock(&m->lock);
		log_debug("metadata store: map grown to %zu bytes", info.me_mapsize * 2);
	}
	pthread_rwlock_unlock(&m->resize);
	return strata_meta_errno(rc);
}

/* Run one batch in one transaction. Returns 0, or a transaction-level error
 * (-ENOSPC when the map is full: the caller grows it and retries). */
static int run_batch(struct strata_meta *m, struct write_req *batch, uint64_t *ret_calls)
{
	MDB_txn *txn = NULL;
	uint64_t calls = 0;
	int rc;

	rc = mdb_txn_begin(m->env, NULL, 0, &txn);
	if (rc == MDB_MAP_RESIZED) {
		(void)mdb_env_set_mapsize(m->env, 0);
		rc = mdb_txn_begin(m->env, NULL, 0, &txn);
	}
	if (rc != 0)
		return strata_meta_errno(rc);

	for (struct write_req *w = batch; w; w = w->next) {
		MDB_txn *child = NULL;
		rc = mdb_txn_begin(m->env, txn, 0, &child);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return strata_meta_errno(rc);
		}
		w->result = w->fn(child, w->userdata);
		calls++;
		if (w->result == -ENOSPC) {
			/* Possibly MDB_MAP_FULL: the whole txn is now unusable. */
			mdb_txn_abort(child);
			mdb_txn_abort(txn);
			return -ENOSPC;
		}
		if (w->result < 0) {
			mdb_txn_abort(child);
			continue;
		}
		rc = mdb_txn_commit(child);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return strata_meta_errno(rc);
		}
	}
	rc = mdb_txn_commit(txn);
	*ret_calls = calls;
	return strata_meta_errno(rc);
}

int strata_meta_write(struct strata_meta *m, strata_meta_txn_fn fn, void *userdata)
{
	struct write_req req = {.fn = fn, .userdata = userdata};

	if (m->read_only)
		return -EROFS;

	pthread_mutex_lock(&m->lock);
	if (m->queue_tail)
		m->queue_tail->next = &req;
	else
		m->queue_head = &req;
	m->queue_tail = &req;

	while (!req.done) {
		struct write_req *batch;
		uint64_t calls = 0;
		int r;

		if (m->leader_active) {
			pthread_cond_wait(&m->cond, &m->lock);
			continue;
		}
		/* Become the leader for everything queued so far. */
		m->leader_active = true;
		batch = m->queue_head;
		m->queue_head = m->queue_tail = NULL;
		pthread_mutex_unlock(&m->lock);

		for (int attempt = 0;; attempt++) {
			r = run_batch(m, batch, &calls);
			if (r != -ENOSPC || attempt >= 4)
				break;
			r = meta_grow(m);
			if (r < 0)
				break;
		}

		pthread_mutex_lock(&m->lock);
		for (struct write_req *w = batch; w;) {
			struct write_req *next = w->next;
			if (r < 0)
				w->result = r;
			w->done = true;
			w->next = NULL;
			w = next;
		}
		m->stats.write_calls += calls;
		if (r >= 0)
			m->stats.commits++;
		m->leader_active = false;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return req.result;
}

int strata_meta_read(struct strata_meta *m, strata_meta_txn_fn fn, void *userdata)
{
	struct read_txn *t;
	int rc, r;

	pthread_rwlock_rdlock(&m->resize);
	pthread_mutex_lock(&m->pool_lock);
	t = m->pool;
	if (t)
		m->pool = t->next;
	pthread_mutex_unlock(&m->pool_lock);

	if (t) {
		rc = mdb_txn_renew(t->txn);
		if (rc != 0) {
			mdb_txn_abort(t->txn);
			free(t);
			t = NULL;
		}
	}
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t) {
			pthread_rwlock_unlock(&m->resize);
			return -ENOMEM;
		}
		rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &t->txn);
		if (rc == MDB_MAP_RESIZED) {
			(void)mdb_env_set_mapsize(m->env, 0);
			rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &t->txn);
		}
		if (rc != 0) {
			free(t);
			pthread_rwlock_unlock(&m->resize);
			return strata_meta_errno(rc);
		}
	}

	r = fn(t->txn, userdata);

	mdb_txn_reset(t->txn);
	pthread_mutex_lock(&m->pool_lock);
	t->next = m->pool;
	m->pool = t;
	pthread_mutex_unlock(&m->pool_lock);
	pthread_rwlock_unlock(&m->resize);
	return r;
}

void strata_meta_get_stats(struct strata_meta *m, struct strata_meta_stats *ret)
{
	pthread_mutex_lock(&m->lock);
	*ret = m->stats;
	pthread_mutex_unlock(&m->lock);
}
