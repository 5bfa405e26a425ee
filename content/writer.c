/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ingests: writers (open/resume, write, commit, close), Status,
 * ListStatuses, Abort and expiry.
 *
 * An ingest directory is created as ingest/.new-<hex> and renamed into
 * place, and removed by renaming it to ingest/.del-<hex> first, so other
 * threads and the startup check only ever see whole ingests. Ingest files
 * are not fsync'd when created (an ingest is a resumable cache of a
 * download; a torn one is dropped at startup); the data is fsync'd before
 * commit links it into blobs/.
 *
 * Refs are locked in-process (the daemon is the only writer of the store):
 * the table in struct content_store, see ref_lock().
 *
 * A writer is used by one thread at a time, except for its flusher: a thread
 * of its own, started at the first large content_writer_stage(), that copies
 * the staged chunk into the ingest file while the owner hashes it. The two
 * share only the job fields under job_lock; the staged chunk, the data fd and
 * the write-back offset are left alone by the owner while a job is posted.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "content-internal.h"
#include "filter.h"
#include "log.h"
#include "path.h"

#define META_MAX (4096)
/* Start write-back of every this many bytes as data arrives so the fsync
 * at commit has little left to do. */
#define WRITEBACK_CHUNK (8u << 20)

struct content_writer {
	struct content_store *s;
	struct ingest_ref *entry; /* locked by us until close */
	int dir_fd;
	int data_fd;
	int64_t offset;
	int64_t total;
	bool have_expected;
	struct strata_digest expected;
	struct timespec started_at;
	struct timespec updated_at;
	struct strata_hasher *hasher;
	int64_t writeback_offset;
	bool done;      /* commit was attempted */
	bool committed; /* ... and succeeded */

	/* A staged chunk (content_writer_stage): hashed and counted in offset,
	 * not known to be in the file before the flush. The data is the
	 * caller's. staged_hasher is the hash before it, to roll back to if
	 * the flush fails or never comes. */
	const void *staged_data;
	size_t staged_len;
	struct strata_hasher *staged_hasher; /* non-NULL iff a chunk is staged */
	int64_t staged_at;                   /* its offset in the file */
	bool staged_posted;                  /* ... and handed to the flusher */

	/* The flusher: a thread, started at the first large staged chunk, that
	 * writes it while the owner hashes it and answers. One job at a time;
	 * the owner waits for it in content_writer_flush() (or close). */
	bool have_flusher;
	pthread_t flusher;
	pthread_mutex_t job_lock;
	pthread_cond_t job_cond;
	/* Protected by job_lock. */
	enum { JOB_NONE, JOB_POSTED, JOB_DONE, JOB_QUIT } job;
	int job_result;  /* of JOB_DONE: 0 or -errno from pwrite */
	bool job_synced; /* write-back was started up to the chunk's end */
	int64_t job_wb;  /* writeback_offset when posted */
};

/* Chunks at least this big are written by the flusher, concurrently with
 * hashing; smaller ones synchronously at flush. */
#define FLUSHER_MIN (128u * 1024)

static struct timespec ns_ts(int64_t ns)
{
	return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

static void ref_hex(const char *ref, char hex[static STRATA_SHA256_HEX_LEN + 1])
{
	struct strata_digest d;
	(void)strata_sha256(ref, strlen(ref), &d);
	strata_digest_hex(&d, hex);
}

/* --- the ref table ------------------------------------------------------- */

static void ref_entry_free(struct ingest_ref *e)
{
	strata_hasher_free(e->hasher);
	free(e->ref);
	free(e);
}

void content_refs_free(struct content_store *s)
{
	while (s->refs) {
		struct ingest_ref *e = s->refs;
		s->refs = e->next;
		ref_entry_free(e);
	}
}

/* Lock ref for this caller: -EAGAIN when another writer holds it. */
static int ref_lock(struct content_store *s, const char *ref, struct ingest_ref **ret,
                    struct strata_error **ret_err)
{
	struct ingest_ref *e;

	pthread_mutex_lock(&s->refs_lock);
	for (e = s->refs; e; e = e->next)
		if (streq(e->ref, ref))
			break;
	if (e && e->locked) {
		struct timespec now;
		(void)clock_gettime(CLOCK_REALTIME, &now);
		long held = (long)(now.tv_sec - e->locked_since.tv_sec);
		pthread_mutex_unlock(&s->refs_lock);
		return strata_error_set(ret_err, -EAGAIN, "ref %s locked for %lds: unavailable",
		                        ref, held);
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->ref = strdup(ref))) {
			free(e);
			pthread_mutex_unlock(&s->refs_lock);
			return strata_error_set(ret_err, -ENOMEM, "lock ref: out of memory");
		}
		ref_hex(ref, e->dir);
		e->next = s->refs;
		s->refs = e;
	}
	e->locked = true;
	(void)clock_gettime(CLOCK_REALTIME, &e->locked_since);
	pthread_mutex_unlock(&s->refs_lock);
	*ret = e;
	return 0;
}

/* Unlock, keeping `saved` (taken over, may be NULL) as the running hash of
 * the first `offset` bytes for a later resume. */
static void ref_unlock(struct content_store *s, struct ingest_ref *e, struct strata_hasher *saved,
                       int64_t offset)
{
	pthread_mutex_lock(&s->refs_lock);
	strata_hasher_free(e->hasher);
	e->hasher = saved;
	e->hashed_offset = offset;
	e->locked = false;
	if (!saved) {
		/* nothing worth remembering: drop the entry */
		for (struct ingest_ref **p = &s->refs; *p; p = &(*p)->next)
			if (*p == e) {
				*p = e->next;
				ref_entry_free(e);
				break;
			}
	}
	pthread_mutex_unlock(&s->refs_lock);
}

/* --- ingest directory helpers ------------------------------------------- */

struct ingest_meta {
	int64_t started_ns;
	int64_t total;
	bool have_expected;
	struct strata_digest expected;
};

static int write_meta(int dir_fd, const struct ingest_meta *m)
{
	char buf[256], dbuf[STRATA_DIGEST_STRING_MAX];
	int n;

	n = snprintf(buf, sizeof(buf), "started=%" PRId64 "\ntotal=%" PRId64 "\nexpected=%s\n",
	             m->started_ns, m->total,
	             m->have_expected ? strata_digest_format(&m->expected, dbuf) : "");
	return path_write_file_atomic_at(dir_fd, "meta", buf, (size_t)n, 0644);
}

static int read_meta(int dir_fd, struct ingest_meta *ret)
{
	_cleanup_free_ char *buf = NULL;
	struct ingest_meta m = {0};
	char *line, *save = NULL;
	size_t len;
	int r;

	r = path_read_file_at(dir_fd, "meta", META_MAX, &buf, &len);
	if (r < 0)
		return r;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "started=", 8) == 0)
			m.started_ns = strtoll(line + 8, NULL, 10);
		else if (strncmp(line, "total=", 6) == 0)
			m.total = strtoll(line + 6, NULL, 10);
		else if (strncmp(line, "expected=", 9) == 0 && line[9])
			m.have_expected = strata_digest_parse(line + 9, &m.expected, NULL) >= 0;
	}
	if (m.started_ns <= 0)
		return -EBADMSG;
	*ret = m;
	return 0;
}

/* Remove ingest/<name> atomically (rename, then rm -rf). */
static int remove_ingest_dir(struct content_store *s, const char *name)
{
	char del[STRATA_SHA256_HEX_LEN + 8];
	int r;

	snprintf(del, sizeof(del), ".del-%s", name);
	r = path_rm_rf_at(s->ingest_fd, del);
	if (r < 0)
		return r;
	if (renameat(s->ingest_fd, name, s->ingest_fd, del) < 0)
		return negative_errno();
	return path_rm_rf_at(s->ingest_fd, del);
}

/* Read ingest/<name> into st (ref and times); ret_data_st (may be NULL)
 * receives the data file's stat. -ENOENT / -EBADMSG for missing or torn. */
static int read_ingest(struct content_store *s, const char *name, struct content_status *ret,
                       struct stat *ret_data_st)
{
	_cleanup_close_ int dir_fd = -1;
	_cleanup_free_ char *ref = NULL;
	struct content_status st = {0};
	struct ingest_meta m;
	struct stat data_st;
	size_t len;
	int r;

	dir_fd = openat(s->ingest_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir_fd < 0)
		return negative_errno();
	if (fstatat(dir_fd, "data", &data_st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? -EBADMSG : negative_errno();
	r = path_read_file_at(dir_fd, "ref", META_MAX, &ref, &len);
	if (r == -ENOENT)
		return -EBADMSG;
	if (r < 0)
		return r;
	if (len == 0 || strlen(ref) != len)
		return -EBADMSG;
	r = read_meta(dir_fd, &m);
	if (r == -ENOENT)
		return -EBADMSG;
	if (r < 0)
		return r;
	st.ref = TAKE_PTR(ref);
	st.offset = data_st.st_size;
	st.total = m.total;
	st.have_expected = m.have_expected;
	st.expected = m.expected;
	st.started_at = ns_ts(m.started_ns);
	st.updated_at = data_st.st_mtim;
	*ret = st;
	if (ret_data_st)
		*ret_data_st = data_st;
	return 0;
}

/* Hash the first `size` bytes of fd into a new hasher. */
static int rehash(int fd, int64_t size, struct strata_hasher **ret)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL;
	_cleanup_free_ char *buf = NULL;
	const size_t bufsz = 1 << 20;
	int64_t off = 0;
	int r;

	r = strata_hasher_new(&h);
	if (r < 0)
		return r;
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	while (off < size) {
		ssize_t n =
		        loop_pread(fd, buf, (size_t)MIN((int64_t)bufsz, size - off), (uint64_t)off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EBADMSG; /* shrank under us */
		r = strata_hasher_update(h, buf, (size_t)n);
		if (r < 0)
			return r;
		off += n;
	}
	*ret = TAKE_PTR(h);
	return 0;
}

/* Create ingest/<hex> for a new writer. */
static int create_ingest(struct content_writer *w, const char *ref, const char *hex)
{
	struct content_store *s = w->s;
	char tmp[STRATA_SHA256_HEX_LEN + 8];
	_cleanup_close_ int dir_fd = -1, data_fd = -1;
	struct ingest_meta m = {
	        .started_ns = content_now_ns(),
	        .total = w->total,
	        .have_expected = w->have_expected,
	        .expected = w->expected,
	};
	int r;

	snprintf(tmp, sizeof(tmp), ".new-%s", hex);
	r = path_rm_rf_at(s->ingest_fd, tmp);
	if (r < 0)
		return r;
	if (mkdirat(s->ingest_fd, tmp, 0700) < 0)
		return negative_errno();
	dir_fd = openat(s->ingest_fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir_fd < 0)
		return negative_errno();
	r = path_write_file_atomic_at(dir_fd, "ref", ref, strlen(ref), 0644);
	if (r < 0)
		return r;
	r = write_meta(dir_fd, &m);
	if (r < 0)
		return r;
	data_fd = openat(dir_fd, "data", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (data_fd < 0)
		return negative_errno();
	if (renameat(s->ingest_fd, tmp, s->ingest_fd, hex) < 0)
		return negative_errno();
	w->started_at = ns_ts(m.started_ns);
	(void)clock_gettime(CLOCK_REALTIME, &w->updated_at);
	w->offset = 0;
	w->dir_fd = TAKE_FD(dir_fd);
	w->data_fd = TAKE_FD(data_fd);
	return strata_hasher_new(&w->hasher);
}

/* Resume ingest/<hex>: -ENOENT when absent, -EBADMSG when torn or not
 * resumable (the caller recreates it). */
static int resume_ingest(struct content_writer *w, const char *ref, const char *hex,
                         struct strata_hasher **saved, int64_t saved_offset)
{
	struct content_store *s = w->s;
	struct content_status st = {0};
	_cleanup_close_ int dir_fd = -1, data_fd = -1;
	struct stat data_st;
	int r;

	r = read_ingest(s, hex, &st, NULL);
	if (r < 0)
		return r;
	r = streq(st.ref, ref) ? 0 : -EBADMSG;
	if (r == 0 && w->total > 0 && st.total > 0 && w->total != st.total) {
		log_debug("ingest %s: total %" PRId64 " differs from %" PRId64 ": recreating", ref,
		          w->total, st.total);
		r = -EBADMSG;
	}
	if (r < 0) {
		content_status_done(&st);
		return r;
	}
	dir_fd = openat(s->ingest_fd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir_fd < 0) {
		content_status_done(&st);
		return negative_errno();
	}
	data_fd = openat(dir_fd, "data", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (data_fd < 0 || fstat(data_fd, &data_st) < 0) {
		content_status_done(&st);
		return negative_errno();
	}
	if (data_st.st_nlink > 1) {
		/* already linked into blobs/ by a commit that did not finish */
		content_status_done(&st);
		return -EBADMSG;
	}
	if (*saved && saved_offset == data_st.st_size) {
		w->hasher = TAKE_PTR(*saved);
	} else {
		r = rehash(data_fd, data_st.st_size, &w->hasher);
		if (r < 0) {
			content_status_done(&st);
			return r;
		}
	}
	if (w->total <= 0)
		w->total = st.total;
	else if (st.total <= 0) {
		struct ingest_meta m = {
		        .started_ns =
		                (int64_t)st.started_at.tv_sec * 1000000000 + st.started_at.tv_nsec,
		        .total = w->total,
		        .have_expected = st.have_expected,
		        .expected = st.expected,
		};
		(void)write_meta(dir_fd, &m);
	}
	if (!w->have_expected && st.have_expected) {
		w->have_expected = true;
		w->expected = st.expected;
	}
	w->offset = data_st.st_size;
	w->writeback_offset = w->offset;
	w->started_at = st.started_at;
	w->updated_at = data_st.st_mtim;
	w->dir_fd = TAKE_FD(dir_fd);
	w->data_fd = TAKE_FD(data_fd);
	content_status_done(&st);
	return 0;
}

/* --- writer -------------------------------------------------------------- */

int content_writer_open(struct content_store *s, const char *ref, int64_t total,
                        const struct strata_digest *expected, struct content_writer **ret,
                        struct strata_error **ret_err)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *saved = NULL;
	struct content_writer *w;
	struct ingest_ref *e;
	int64_t saved_offset;
	int r;

	if (!ref || !ref[0])
		return strata_error_set(ret_err, -EINVAL, "ref must not be empty");
	if (total < 0)
		return strata_error_set(ret_err, -EINVAL, "ref %s: negative total", ref);

	if (expected && content_db_get(s, expected, NULL) == 0) {
		char buf[STRATA_DIGEST_STRING_MAX];
		return strata_error_set(ret_err, -EEXIST, "content %s: already exists",
		                        strata_digest_format(expected, buf));
	}

	r = ref_lock(s, ref, &e, ret_err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->refs_lock);
	saved = TAKE_PTR(e->hasher);
	saved_offset = e->hashed_offset;
	pthread_mutex_unlock(&s->refs_lock);

	w = calloc(1, sizeof(*w));
	if (!w) {
		ref_unlock(s, e, NULL, 0);
		return strata_error_set(ret_err, -ENOMEM, "open writer: out of memory");
	}
	w->s = s;
	w->entry = e;
	w->dir_fd = w->data_fd = -1;
	pthread_mutex_init(&w->job_lock, NULL);
	pthread_cond_init(&w->job_cond, NULL);
	w->total = total;
	if (expected) {
		w->have_expected = true;
		w->expected = *expected;
	}

	r = resume_ingest(w, ref, e->dir, &saved, saved_offset);
	if (r == -EBADMSG) {
		log_debug("ingest %s: not resumable, starting over", ref);
		r = remove_ingest_dir(s, e->dir);
		if (r >= 0)
			r = -ENOENT;
	}
	if (r == -ENOENT)
		r = create_ingest(w, ref, e->dir);
	if (r < 0) {
		safe_close(w->dir_fd);
		safe_close(w->data_fd);
		strata_hasher_free(w->hasher);
		pthread_mutex_destroy(&w->job_lock);
		pthread_cond_destroy(&w->job_cond);
		free(w);
		ref_unlock(s, e, NULL, 0);
		return strata_error_set_errno(ret_err, r, "open ingest %s", ref);
	}
	*ret = w;
	return 0;
}

/* Check offset (append, or 0 to start over) and truncate for a restart. */
static int write_prepare(struct content_writer *w, int64_t offset, struct strata_error **ret_err)
{
	int r;

	if (w->done)
		return strata_error_set(ret_err, -EBADFD, "ref %s: writer already committed",
		                        w->entry->ref);
	if (w->staged_hasher)
		return strata_error_set(ret_err, -EBUSY, "ref %s: a staged write is not flushed",
		                        w->entry->ref);
	if (offset < 0)
		offset = w->offset;
	if (offset == 0 && w->offset > 0) {
		/* containerd: a write at 0 over existing data starts over */
		if (ftruncate(w->data_fd, 0) < 0)
			return strata_error_set_errno(ret_err, negative_errno(),
			                              "truncate ingest %s", w->entry->ref);
		struct strata_digest dummy;
		r = strata_hasher_final(w->hasher, &dummy); /* resets */
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "reset hash");
		w->offset = 0;
		w->writeback_offset = 0;
	} else if (offset != w->offset) {
		return strata_error_set(ret_err, -ERANGE,
		                        "write @%" PRId64 " must occur at current offset %" PRId64,
		                        offset, w->offset);
	}
	return 0;
}

/* pwrite len bytes at `at` (the file's size), then start write-back of what
 * accumulated since wb so the fsync at commit has little left to do. Touches
 * nothing in w but the fd: the flusher runs it. 1 when write-back was
 * started up to the end. */
static int write_io(int fd, int64_t at, const void *data, size_t len, int64_t wb)
{
	int64_t end = at + (int64_t)len;
	int r = loop_pwrite(fd, data, len, (uint64_t)at);

	if (r < 0)
		return r;
	if (end - wb < WRITEBACK_CHUNK)
		return 0;
	(void)sync_file_range(fd, wb, end - wb, SYNC_FILE_RANGE_WRITE);
	return 1;
}

/* Account for write_io()'s result r on the chunk [at, at + len). */
static int write_done(struct content_writer *w, int64_t at, size_t len, int r,
                      struct strata_error **ret_err)
{
	if (r < 0) {
		/* keep the file equal to what was hashed */
		(void)ftruncate(w->data_fd, at);
		return strata_error_set_errno(ret_err, r, "write ingest %s", w->entry->ref);
	}
	(void)clock_gettime(CLOCK_REALTIME_COARSE, &w->updated_at);
	if (r > 0)
		w->writeback_offset = at + (int64_t)len;
	return 0;
}

static int write_data(struct content_writer *w, int64_t at, const void *data, size_t len,
                      struct strata_error **ret_err)
{
	return write_done(w, at, len, write_io(w->data_fd, at, data, len, w->writeback_offset),
	                  ret_err);
}

static void *flusher_main(void *arg)
{
	struct content_writer *w = arg;

	pthread_mutex_lock(&w->job_lock);
	for (;;) {
		while (w->job != JOB_POSTED && w->job != JOB_QUIT)
			pthread_cond_wait(&w->job_cond, &w->job_lock);
		if (w->job == JOB_QUIT)
			break;
		/* The owner leaves fd, the staged chunk and job_wb alone until
		 * JOB_DONE. */
		int64_t at = w->staged_at, wb = w->job_wb;
		const void *data = w->staged_data;
		size_t len = w->staged_len;
		pthread_mutex_unlock(&w->job_lock);

		int r = write_io(w->data_fd, at, data, len, wb);

		pthread_mutex_lock(&w->job_lock);
		w->job_result = MIN(r, 0);
		w->job_synced = r > 0;
		w->job = JOB_DONE;
		pthread_cond_broadcast(&w->job_cond);
	}
	pthread_mutex_unlock(&w->job_lock);
	return NULL;
}

/* Hand the staged chunk to the flusher (starting it if needed): false when
 * it cannot run, and the flush then writes synchronously. */
static bool flusher_post(struct content_writer *w)
{
	if (!w->have_flusher) {
		sigset_t all, old;
		int r;

		/* Never a target for the daemon's signals. */
		(void)sigfillset(&all);
		(void)pthread_sigmask(SIG_SETMASK, &all, &old);
		r = pthread_create(&w->flusher, NULL, flusher_main, w);
		(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r != 0)
			return false;
		w->have_flusher = true;
	}
	pthread_mutex_lock(&w->job_lock);
	w->job_wb = w->writeback_offset;
	w->job = JOB_POSTED;
	pthread_cond_signal(&w->job_cond);
	pthread_mutex_unlock(&w->job_lock);
	return true;
}

/* Wait for the posted job; its write_io() result. */
static int flusher_wait(struct content_writer *w)
{
	int r;

	pthread_mutex_lock(&w->job_lock);
	while (w->job == JOB_POSTED)
		pthread_cond_wait(&w->job_cond, &w->job_lock);
	r = w->job_result < 0 ? w->job_result : w->job_synced;
	w->job = JOB_NONE;
	pthread_mutex_unlock(&w->job_lock);
	return r;
}

static void flusher_stop(struct content_writer *w)
{
	if (!w->have_flusher)
		return;
	pthread_mutex_lock(&w->job_lock);
	w->job = JOB_QUIT;
	pthread_cond_signal(&w->job_cond);
	pthread_mutex_unlock(&w->job_lock);
	(void)pthread_join(w->flusher, NULL);
	w->have_flusher = false;
}

/*
 * End the staged chunk: wait for its write (or, when not posted and keep,
 * write it now). keep and the write succeeded: the chunk is in. Otherwise
 * roll back to before the stage: hash, offset, and the file truncated back
 * (the write may have landed). Returns the write's error, or 0.
 */
static int stage_finish(struct content_writer *w, bool keep, struct strata_error **ret_err)
{
	int64_t at = w->staged_at;
	size_t len = w->staged_len;
	int r = 0;

	if (w->staged_posted)
		r = flusher_wait(w);
	else if (keep)
		r = write_io(w->data_fd, at, w->staged_data, len, w->writeback_offset);
	w->staged_posted = false;
	w->staged_data = NULL;
	w->staged_len = 0;
	if (r < 0 || !keep) {
		if (r < 0)
			r = write_done(w, at, len, r, ret_err); /* truncates back */
		else
			(void)ftruncate(w->data_fd, at);
		strata_hasher_free(w->hasher);
		w->hasher = TAKE_PTR(w->staged_hasher);
		w->offset = at;
		return r;
	}
	w->staged_hasher = strata_hasher_free(w->staged_hasher);
	return write_done(w, at, len, r, ret_err);
}

int content_writer_write(struct content_writer *w, int64_t offset, const void *data, size_t len,
                         struct strata_error **ret_err)
{
	int r;

	r = write_prepare(w, offset, ret_err);
	if (r < 0 || len == 0)
		return r;
	r = write_data(w, w->offset, data, len, ret_err);
	if (r < 0)
		return r;
	r = strata_hasher_update(w->hasher, data, len);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "hash ingest %s", w->entry->ref);
	w->offset += (int64_t)len;
	return 0;
}

int content_writer_stage(struct content_writer *w, int64_t offset, const void *data, size_t len,
                         struct strata_error **ret_err)
{
	int r;

	r = write_prepare(w, offset, ret_err);
	if (r < 0 || len == 0)
		return r;
	r = strata_hasher_dup(w->hasher, &w->staged_hasher);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "hash ingest %s", w->entry->ref);
	w->staged_data = data;
	w->staged_len = len;
	w->staged_at = w->offset;
	/* The file write runs while we hash. */
	w->staged_posted = len >= FLUSHER_MIN && flusher_post(w);
	r = strata_hasher_update(w->hasher, data, len);
	if (r < 0) {
		(void)stage_finish(w, false, NULL);
		return strata_error_set_errno(ret_err, r, "hash ingest %s", w->entry->ref);
	}
	w->offset += (int64_t)len;
	(void)clock_gettime(CLOCK_REALTIME_COARSE, &w->updated_at);
	return 0;
}

int content_writer_flush(struct content_writer *w, struct strata_error **ret_err)
{
	return w->staged_hasher ? stage_finish(w, true, ret_err) : 0;
}

int content_writer_status(struct content_writer *w, struct content_status *ret)
{
	*ret = (struct content_status){
	        .ref = w->entry->ref,
	        .offset = w->offset,
	        .total = w->total,
	        .have_expected = w->have_expected,
	        .expected = w->expected,
	        .started_at = w->started_at,
	        .updated_at = w->updated_at,
	};
	return 0;
}

int content_writer_digest(struct content_writer *w, struct strata_digest *ret)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL;
	int r;

	if (!w->hasher)
		return -EBADFD;
	r = strata_hasher_dup(w->hasher, &h);
	if (r < 0)
		return r;
	return strata_hasher_final(h, ret);
}

/* Link the verified data into blobs/ and index it; called with the digest
 * lock held. 1 when the blob turned out to be stored already. */
static int publish(struct content_writer *w, const struct content_info *info)
{
	struct content_store *s = w->s;
	char hex[STRATA_SHA256_HEX_LEN + 1];
	bool linked = false;
	int r;

	strata_digest_hex(&info->digest, hex);
	r = content_db_get(s, &info->digest, NULL);
	if (r == 0)
		return 1;
	if (r != -ENOENT)
		return r;

	/* Read-only from here: more important for readers than a guarantee
	 * (we are root), as containerd does. */
	(void)fchmod(w->data_fd, 0444);
	for (int attempt = 0; attempt < 2 && !linked; attempt++) {
		if (linkat(w->dir_fd, "data", s->blobs_fd, hex, 0) == 0) {
			linked = true;
			break;
		}
		if (errno != EEXIST)
			return negative_errno();
		/* A file nobody indexed (left by interference after the
		 * startup check): replace it. */
		log_debug("content: replacing unindexed blob file sha256:%s", hex);
		if (unlinkat(s->blobs_fd, hex, 0) < 0 && errno != ENOENT)
			return negative_errno();
	}
	if (!linked)
		return -EEXIST;
	if (fsync(s->blobs_fd) < 0) {
		r = negative_errno();
		goto rollback;
	}
	r = content_db_put(s, info, false);
	if (r < 0)
		goto rollback;
	return 0;
rollback:
	(void)unlinkat(s->blobs_fd, hex, 0);
	(void)fchmod(w->data_fd, 0644);
	return r;
}

int content_writer_commit(struct content_writer *w, int64_t size,
                          const struct strata_digest *expected, const struct content_label *labels,
                          size_t n_labels, struct strata_digest *ret_digest,
                          struct strata_error **ret_err)
{
	struct content_store *s = w->s;
	struct content_info info = {0};
	char got[STRATA_DIGEST_STRING_MAX], want[STRATA_DIGEST_STRING_MAX];
	pthread_mutex_t *lock;
	int r;

	if (w->done)
		return strata_error_set(ret_err, -EBADFD, "ref %s: writer already committed",
		                        w->entry->ref);
	if (w->staged_hasher)
		return strata_error_set(ret_err, -EBUSY, "ref %s: a staged write is not flushed",
		                        w->entry->ref);
	w->done = true;

	r = content_labels_copy(labels, n_labels, &info.labels, &info.n_labels);
	if (r < 0)
		return strata_error_set(ret_err, r, "commit: out of memory");
	r = content_labels_normalize(info.labels, info.n_labels, ret_err);
	if (r < 0)
		goto out;

	if (size > 0 && size != w->offset) {
		r = strata_error_set(ret_err, -EBADMSG,
		                     "unexpected commit size %" PRId64 ", expected %" PRId64,
		                     w->offset, size);
		goto out;
	}
	r = content_writer_digest(w, &info.digest);
	if (r < 0) {
		strata_error_set_errno(ret_err, r, "commit %s: digest", w->entry->ref);
		goto out;
	}
	if (expected && !strata_digest_equal(expected, &info.digest)) {
		r = strata_error_set(ret_err, -EBADMSG, "unexpected commit digest %s, expected %s",
		                     strata_digest_format(&info.digest, got),
		                     strata_digest_format(expected, want));
		goto out;
	}
	if (fdatasync(w->data_fd) < 0) {
		r = strata_error_set_errno(ret_err, negative_errno(), "sync ingest %s",
		                           w->entry->ref);
		goto out;
	}

	info.size = w->offset;
	(void)clock_gettime(CLOCK_REALTIME, &info.created_at);
	info.updated_at = info.created_at;

	lock = content_digest_lock(s, &info.digest);
	pthread_mutex_lock(lock);
	r = publish(w, &info);
	pthread_mutex_unlock(lock);
	if (r < 0) {
		strata_error_set_errno(ret_err, r, "commit %s as %s", w->entry->ref,
		                       strata_digest_format(&info.digest, got));
		goto out;
	}

	/* Done either way: drop the ingest (a crash before this leaves it
	 * linked, and the startup check removes it). */
	safe_close(w->dir_fd);
	w->dir_fd = -1;
	if (remove_ingest_dir(s, w->entry->dir) < 0)
		log_debug("content: could not remove ingest %s", w->entry->ref);
	w->committed = true;
	if (r == 1)
		r = strata_error_set(ret_err, -EEXIST, "content %s: already exists",
		                     strata_digest_format(&info.digest, got));
	else
		r = 0;
	if (r == 0 && ret_digest)
		*ret_digest = info.digest;
out:
	content_info_done(&info);
	return r;
}

struct content_writer *content_writer_close(struct content_writer *w)
{
	struct strata_hasher *saved = NULL;

	if (!w)
		return NULL;
	/* Never flushed: the client was not told it is in, drop it. */
	if (w->staged_hasher)
		(void)stage_finish(w, false, NULL);
	flusher_stop(w);
	/* No fsync: an uncommitted ingest is only a cache of a download. */
	safe_close(w->data_fd);
	safe_close(w->dir_fd);
	if (!w->committed)
		saved = TAKE_PTR(w->hasher);
	ref_unlock(w->s, w->entry, saved, w->offset);
	strata_hasher_free(w->hasher);
	pthread_mutex_destroy(&w->job_lock);
	pthread_cond_destroy(&w->job_cond);
	free(w);
	return NULL;
}

/* --- status, list, abort, expiry ------------------------------------------ */

int content_status(struct content_store *s, const char *ref, struct content_status *ret,
                   struct strata_error **ret_err)
{
	char hex[STRATA_SHA256_HEX_LEN + 1];
	int r;

	if (!ref || !ref[0])
		return strata_error_set(ret_err, -EINVAL, "ref must not be empty");
	ref_hex(ref, hex);
	r = read_ingest(s, hex, ret, NULL);
	if (r == -ENOENT || r == -EBADMSG || (r >= 0 && !streq(ret->ref, ref))) {
		if (r >= 0)
			content_status_done(ret);
		return strata_error_set(ret_err, -ENOENT, "ingest ref %s: not found", ref);
	}
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "status of ingest %s", ref);
	return 0;
}

static bool status_field(const char *const fieldpath[], size_t n, void *userdata,
                         const char **ret_value)
{
	const struct content_status *st = userdata;

	if (n >= 1 && streq(fieldpath[0], "ref")) {
		*ret_value = st->ref;
		return true;
	}
	return false;
}

int content_list_statuses(struct content_store *s, const char *const filters[], size_t n,
                          content_status_fn fn, void *userdata, struct strata_error **ret_err)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	_cleanup_close_ int fd = -1;
	DIR *dir;
	struct dirent *de;
	int r = 0;

	r = strata_filter_parse(filters, n, &f, ret_err);
	if (r < 0)
		return r;
	fd = openat(s->ingest_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "open ingest directory");
	dir = fdopendir(fd);
	if (!dir)
		return strata_error_set_errno(ret_err, negative_errno(), "open ingest directory");
	TAKE_FD(fd);
	while ((de = readdir(dir))) {
		struct content_status st;

		if (de->d_name[0] == '.')
			continue;
		r = read_ingest(s, de->d_name, &st, NULL);
		if (r == -ENOENT || r == -EBADMSG) {
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		if (strata_filter_match(f, status_field, &st))
			r = fn(&st, userdata);
		content_status_done(&st);
		if (r != 0)
			break;
	}
	closedir(dir);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "list ingests");
	return 0;
}

int content_abort(struct content_store *s, const char *ref, struct strata_error **ret_err)
{
	struct ingest_ref *e;
	struct stat st;
	int r;

	if (!ref || !ref[0])
		return strata_error_set(ret_err, -EINVAL, "ref must not be empty");
	r = ref_lock(s, ref, &e, ret_err);
	if (r < 0)
		return r;
	if (fstatat(s->ingest_fd, e->dir, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = negative_errno();
		ref_unlock(s, e, NULL, 0);
		if (r == -ENOENT)
			return strata_error_set(ret_err, -ENOENT, "ingest ref %s: not found", ref);
		return strata_error_set_errno(ret_err, r, "abort %s", ref);
	}
	r = remove_ingest_dir(s, e->dir);
	ref_unlock(s, e, NULL, 0);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "abort %s", ref);
	return 0;
}

/* Visit ingest directories; fn decides. Used at startup and for expiry. */
static int expire_one(struct content_store *s, const char *name, int64_t cutoff_ns, bool startup,
                      size_t *removed)
{
	struct content_status st = {0};
	struct stat data_st;
	struct ingest_ref *e = NULL;
	const char *why = NULL;
	int r;

	r = read_ingest(s, name, &st, &data_st);
	if (r == -ENOENT)
		return 0;
	if (r == -EBADMSG) {
		if (!startup)
			return 0; /* could be one being created: only at startup */
		why = "incomplete";
	} else if (r < 0) {
		return r;
	} else if (data_st.st_nlink > 1) {
		why = "already committed";
	} else if (cutoff_ns > 0 &&
	           (int64_t)data_st.st_mtim.tv_sec * 1000000000 + data_st.st_mtim.tv_nsec <
	                   cutoff_ns) {
		why = "expired";
	}
	if (!why) {
		content_status_done(&st);
		return 0;
	}
	if (st.ref) {
		r = ref_lock(s, st.ref, &e, NULL);
		if (r < 0) {
			content_status_done(&st);
			return 0; /* in use */
		}
		/* a writer may have resumed and closed it since we looked */
		char data[NAME_MAX + 8];
		snprintf(data, sizeof(data), "%s/data", name);
		if (streq(why, "expired") &&
		    (fstatat(s->ingest_fd, data, &data_st, AT_SYMLINK_NOFOLLOW) < 0 ||
		     (int64_t)data_st.st_mtim.tv_sec * 1000000000 + data_st.st_mtim.tv_nsec >=
		             cutoff_ns)) {
			ref_unlock(s, e, NULL, 0);
			content_status_done(&st);
			return 0;
		}
	}
	if (startup)
		log_info("content: removing %s ingest %s", why, st.ref ? st.ref : name);
	else
		log_debug("content: removing %s ingest %s", why, st.ref);
	r = remove_ingest_dir(s, name);
	if (e)
		ref_unlock(s, e, NULL, 0);
	content_status_done(&st);
	if (r >= 0)
		(*removed)++;
	return r;
}

static int scan_ingests(struct content_store *s, int64_t cutoff_ns, bool startup, size_t *removed)
{
	_cleanup_close_ int fd = -1;
	DIR *dir;
	struct dirent *de;
	int r = 0;

	fd = openat(s->ingest_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	dir = fdopendir(fd);
	if (!dir)
		return negative_errno();
	TAKE_FD(fd);
	while ((de = readdir(dir))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (de->d_name[0] == '.') {
			/* .new-* and .del-* are transient while a thread holds
			 * the ref; at startup they are leftovers */
			if (startup) {
				r = path_rm_rf_at(s->ingest_fd, de->d_name);
				if (r < 0)
					break;
			}
			continue;
		}
		r = expire_one(s, de->d_name, cutoff_ns, startup, removed);
		if (r < 0)
			break;
	}
	closedir(dir);
	return r;
}

int content_ingest_startup(struct content_store *s)
{
	int64_t cutoff = 0;
	size_t removed = 0;

	if (s->opts.ingest_expiry_sec > 0)
		cutoff = content_now_ns() - s->opts.ingest_expiry_sec * 1000000000;
	return scan_ingests(s, cutoff, true, &removed);
}

int content_expire_ingests(struct content_store *s, int64_t max_age_sec, size_t *ret_removed)
{
	size_t removed = 0;
	int64_t cutoff;
	int r;

	if (max_age_sec <= 0)
		max_age_sec = s->opts.ingest_expiry_sec;
	if (max_age_sec <= 0) {
		if (ret_removed)
			*ret_removed = 0;
		return 0;
	}
	cutoff = content_now_ns() - max_age_sec * 1000000000;
	r = scan_ingests(s, cutoff, false, &removed);
	if (ret_removed)
		*ret_removed = removed;
	return r;
}
