/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The content store object, its startup check, and the blob operations
 * (Info, Update, Walk, Delete, readers). Ingests are in writer.c.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "content-internal.h"
#include "filter.h"
#include "log.h"
#include "path.h"

int64_t content_now_ns(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec now_ts(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static int open_dir(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? negative_errno() : fd;
}

static bool parse_hex_name(const char *name, struct strata_digest *ret)
{
	char buf[STRATA_DIGEST_STRING_MAX];

	if (strlen(name) != STRATA_SHA256_HEX_LEN)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	snprintf(buf, sizeof(buf), "sha256:%s", name);
	return strata_digest_parse(buf, ret, NULL) >= 0;
}

/* Hash a blob file; -EBADMSG when it does not match d. */
static int verify_blob_fd(int fd, const struct strata_digest *d, uint64_t *ret_size)
{
	struct strata_digest got;
	int r;

	r = strata_sha256_fd(fd, &got, ret_size);
	if (r < 0)
		return r;
	return strata_digest_equal(&got, d) ? 0 : -EBADMSG;
}

/* --- startup check ------------------------------------------------------- */

/*
 * The repairs below are logged at info level although this is library code:
 * they only happen after a crash or outside interference, and an operator
 * needs to see them.
 */
static int reindex_blob(struct content_store *s, const char *name, const struct strata_digest *d)
{
	_cleanup_close_ int fd = -1;
	struct content_info info = {.digest = *d};
	struct stat st;
	uint64_t size;
	int r;

	fd = openat(s->blobs_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0)
		return negative_errno();
	r = S_ISREG(st.st_mode) ? verify_blob_fd(fd, d, &size) : -EBADMSG;
	if (r == -EBADMSG) {
		log_info("content: removing blob %s: not indexed and does not verify", name);
		if (unlinkat(s->blobs_fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
			return negative_errno();
		return 1;
	}
	if (r < 0)
		return r;
	info.size = (int64_t)size;
	info.created_at = st.st_mtim;
	info.updated_at = st.st_mtim;
	r = content_db_put(s, &info, false);
	if (r == -EEXIST)
		return 0;
	if (r < 0)
		return r;
	log_info("content: re-indexed blob sha256:%s found without index entry", name);
	return 1;
}

static int check_blob_files(struct content_store *s, unsigned *repaired)
{
	_cleanup_close_ int fd = -1;
	DIR *dir;
	struct dirent *de;
	int r = 0;

	fd = fcntl(s->blobs_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return negative_errno();
	dir = fdopendir(fd);
	if (!dir)
		return negative_errno();
	TAKE_FD(fd);
	rewinddir(dir);
	while ((de = readdir(dir))) {
		struct strata_digest d;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (!parse_hex_name(de->d_name, &d)) {
			log_info("content: removing stray file blobs/sha256/%s", de->d_name);
			r = path_rm_rf_at(s->blobs_fd, de->d_name);
			if (r < 0)
				break;
			(*repaired)++;
			continue;
		}
		r = content_db_get(s, &d, NULL);
		if (r == 0)
			continue;
		if (r != -ENOENT)
			break;
		r = reindex_blob(s, de->d_name, &d);
		if (r < 0)
			break;
		*repaired += (unsigned)r;
		r = 0;
	}
	closedir(dir);
	return r;
}

struct missing {
	struct strata_digest *d;
	size_t n, cap;
	struct content_store *s;
};

static int find_missing(const struct content_info *info, void *userdata)
{
	struct missing *m = userdata;
	char hex[STRATA_SHA256_HEX_LEN + 1];
	struct stat st;

	strata_digest_hex(&info->digest, hex);
	if (fstatat(m->s->blobs_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size == info->size)
		return 0;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct strata_digest *a = realloc(m->d, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		m->d = a;
		m->cap = cap;
	}
	m->d[m->n++] = info->digest;
	return 0;
}

static int check_index(struct content_store *s, unsigned *repaired)
{
	struct missing m = {.s = s};
	int r;

	r = content_db_walk(s, find_missing, &m);
	for (size_t i = 0; r >= 0 && i < m.n; i++) {
		char hex[STRATA_SHA256_HEX_LEN + 1];
		struct stat st;

		strata_digest_hex(&m.d[i], hex);
		if (fstatat(s->blobs_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			/* present but the wrong size or type: the file is bad */
			log_info("content: removing blob sha256:%s: size differs from the index",
			         hex);
			r = path_rm_rf_at(s->blobs_fd, hex);
			if (r < 0)
				break;
		} else {
			log_info("content: dropping index entry sha256:%s: blob file missing", hex);
		}
		r = content_db_delete(s, &m.d[i]);
		if (r == -ENOENT)
			r = 0;
		(*repaired)++;
	}
	free(m.d);
	return r;
}

/* --- open/close ---------------------------------------------------------- */

struct content_store *content_store_close(struct content_store *s)
{
	if (!s)
		return NULL;
	content_refs_free(s);
	safe_close(s->content_fd);
	safe_close(s->blobs_fd);
	safe_close(s->ingest_fd);
	pthread_mutex_destroy(&s->refs_lock);
	for (size_t i = 0; i < CONTENT_DIGEST_LOCKS; i++)
		pthread_mutex_destroy(&s->digest_locks[i]);
	free(s);
	return NULL;
}

int content_store_open(const char *root, struct strata_meta *meta,
                       const struct content_options *opts, struct content_store **ret,
                       struct strata_error **ret_err)
{
	_cleanup_(content_store_closep) struct content_store *s = NULL;
	_cleanup_free_ char *dir = NULL;
	unsigned repaired = 0;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return strata_error_set(ret_err, -ENOMEM, "open content store: out of memory");
	s->content_fd = s->blobs_fd = s->ingest_fd = -1;
	pthread_mutex_init(&s->refs_lock, NULL);
	for (size_t i = 0; i < CONTENT_DIGEST_LOCKS; i++)
		pthread_mutex_init(&s->digest_locks[i], NULL);
	s->meta = meta;
	if (opts)
		s->opts = *opts;
	if (s->opts.ingest_expiry_sec == 0)
		s->opts.ingest_expiry_sec = 24 * 3600;

	dir = path_join(root, "content");
	if (!dir)
		return strata_error_set(ret_err, -ENOMEM, "open content store: out of memory");
	r = path_mkdir_p(dir, 0711);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "create \"%s\"", dir);
	s->content_fd = open_dir(AT_FDCWD, dir);
	if (s->content_fd < 0)
		return strata_error_set_errno(ret_err, s->content_fd, "open \"%s\"", dir);
	r = path_mkdir_p_at(s->content_fd, "blobs/sha256", 0755);
	if (r >= 0)
		r = path_mkdir_p_at(s->content_fd, "ingest", 0700);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "create directories in \"%s\"", dir);
	s->blobs_fd = open_dir(s->content_fd, "blobs/sha256");
	if (s->blobs_fd < 0)
		return strata_error_set_errno(ret_err, s->blobs_fd, "open \"%s/blobs/sha256\"",
		                              dir);
	s->ingest_fd = open_dir(s->content_fd, "ingest");
	if (s->ingest_fd < 0)
		return strata_error_set_errno(ret_err, s->ingest_fd, "open \"%s/ingest\"", dir);

	r = content_db_open(s);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "open content index");

	if (!s->opts.skip_startup_check) {
		r = check_blob_files(s, &repaired);
		if (r >= 0)
			r = check_index(s, &repaired);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "content store check in \"%s\"",
			                              dir);
		if (repaired > 0)
			log_info("content: startup check repaired %u blob(s)", repaired);
		r = content_ingest_startup(s);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "check ingests in \"%s\"", dir);
	}

	*ret = TAKE_PTR(s);
	return 0;
}

/* --- blob operations ----------------------------------------------------- */

static int not_found(struct strata_error **ret_err, const struct strata_digest *d)
{
	char buf[STRATA_DIGEST_STRING_MAX];
	return strata_error_set(ret_err, -ENOENT, "content %s: not found",
	                        strata_digest_format(d, buf));
}

int content_info(struct content_store *s, const struct strata_digest *digest,
                 struct content_info *ret, struct strata_error **ret_err)
{
	int r = content_db_get(s, digest, ret);

	if (r == -ENOENT)
		return not_found(ret_err, digest);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "content index lookup");
	return 0;
}

struct update_ctx {
	const struct content_info *in;
	const char *const *paths;
	size_t n;
	struct strata_error *err;
};

/* Drop labels with empty values: containerd stores none ("" deletes). */
static void drop_empty_labels(struct content_info *info)
{
	size_t o = 0;

	for (size_t i = 0; i < info->n_labels; i++) {
		if (info->labels[i].value[0] == '\0') {
			free(info->labels[i].key);
			free(info->labels[i].value);
			continue;
		}
		info->labels[o++] = info->labels[i];
	}
	info->n_labels = o;
}

static int replace_labels(struct content_info *info, const struct content_info *in)
{
	struct content_label *l;
	size_t n;
	int r;

	r = content_labels_copy(in->labels, in->n_labels, &l, &n);
	if (r < 0)
		return r;
	content_labels_free(info->labels, info->n_labels);
	info->labels = l;
	info->n_labels = n;
	return 0;
}

static int update_fn(struct content_info *info, void *userdata)
{
	struct update_ctx *c = userdata;
	int r;

	strata_error_free(TAKE_PTR(c->err)); /* a rerun starts clean */
	if (c->n == 0) {
		r = replace_labels(info, c->in);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < c->n; i++) {
		const char *p = c->paths[i];

		if (streq(p, "labels")) {
			r = replace_labels(info, c->in);
		} else if (strncmp(p, "labels.", 7) == 0) {
			const char *v = content_info_label(c->in, p + 7);
			r = content_info_set_label(info, p + 7, v && v[0] ? v : NULL);
		} else {
			return strata_error_set(&c->err, -EINVAL,
			                        "cannot update \"%s\" field on content info", p);
		}
		if (r < 0)
			return r;
	}
	drop_empty_labels(info);
	for (size_t i = 0; i < info->n_labels; i++) {
		r = content_label_validate(info->labels[i].key, info->labels[i].value, &c->err);
		if (r < 0)
			return r;
	}
	info->updated_at = now_ts();
	return 0;
}

int content_update(struct content_store *s, const struct content_info *info,
                   const char *const paths[], size_t n, struct content_info *ret,
                   struct strata_error **ret_err)
{
	struct update_ctx c = {.in = info, .paths = paths, .n = n};
	char buf[STRATA_DIGEST_STRING_MAX];
	int r;

	/* Reject bad paths before touching the index. */
	for (size_t i = 0; i < n; i++)
		if (!streq(paths[i], "labels") && strncmp(paths[i], "labels.", 7) != 0)
			return strata_error_set(ret_err, -EINVAL,
			                        "cannot update \"%s\" field on content info %s",
			                        paths[i], strata_digest_format(&info->digest, buf));

	r = content_db_modify(s, &info->digest, update_fn, &c, ret);
	if (r == -ENOENT) {
		strata_error_free(c.err);
		return not_found(ret_err, &info->digest);
	}
	if (r < 0) {
		if (c.err) {
			strata_error_propagate(ret_err, &c.err);
			return strata_error_prefix(ret_err, r, "update %s",
			                           strata_digest_format(&info->digest, buf));
		}
		return strata_error_set_errno(ret_err, r, "update %s",
		                              strata_digest_format(&info->digest, buf));
	}
	strata_error_free(c.err);
	return 0;
}

struct walk_ctx {
	const struct strata_filter *filter;
	content_walk_fn fn;
	void *userdata;
	const struct content_info *cur;
	char digest[STRATA_DIGEST_STRING_MAX];
	char size[24];
};

static bool info_field(const char *const fieldpath[], size_t n, void *userdata,
                       const char **ret_value)
{
	struct walk_ctx *c = userdata;
	const struct content_info *info = c->cur;
	char key[CONTENT_LABEL_MAX + 1];
	size_t o = 0;

	if (n == 0)
		return false;
	if (streq(fieldpath[0], "digest")) {
		*ret_value = strata_digest_format(&info->digest, c->digest);
		return true;
	}
	if (streq(fieldpath[0], "size")) {
		/* containerd leaves size unsupported ("TODO"); a decimal string
		 * is the obvious extension and harmless */
		snprintf(c->size, sizeof(c->size), "%" PRId64, info->size);
		*ret_value = c->size;
		return true;
	}
	if (!streq(fieldpath[0], "labels") || info->n_labels == 0)
		return false;
	/* labels.a.b and labels."a.b" name the same key, as in containerd */
	for (size_t i = 1; i < n; i++) {
		size_t l = strlen(fieldpath[i]);
		if (o + l + 1 > sizeof(key))
			return false;
		if (i > 1)
			key[o++] = '.';
		memcpy(key + o, fieldpath[i], l);
		o += l;
	}
	key[o] = '\0';
	*ret_value = content_info_label(info, key);
	return *ret_value != NULL;
}

static int walk_fn(const struct content_info *info, void *userdata)
{
	struct walk_ctx *c = userdata;

	c->cur = info;
	if (!strata_filter_match(c->filter, info_field, c))
		return 0;
	return c->fn(info, c->userdata);
}

int content_walk(struct content_store *s, const char *const filters[], size_t n, content_walk_fn fn,
                 void *userdata, struct strata_error **ret_err)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	struct walk_ctx c = {.fn = fn, .userdata = userdata};
	int r;

	r = strata_filter_parse(filters, n, &f, ret_err);
	if (r < 0)
		return r;
	c.filter = f;
	r = content_db_walk(s, walk_fn, &c);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "walk content");
	return 0;
}

int content_delete(struct content_store *s, const struct strata_digest *digest,
                   struct strata_error **ret_err)
{
	char hex[STRATA_SHA256_HEX_LEN + 1];
	pthread_mutex_t *lock = content_digest_lock(s, digest);
	int r;

	strata_digest_hex(digest, hex);
	pthread_mutex_lock(lock);
	r = content_db_get(s, digest, NULL);
	if (r < 0) {
		pthread_mutex_unlock(lock);
		if (r == -ENOENT)
			return not_found(ret_err, digest);
		return strata_error_set_errno(ret_err, r, "delete sha256:%s", hex);
	}
	/* File first: a crash after this leaves an entry without file, which
	 * the startup check drops (never a resurrected blob). */
	if (unlinkat(s->blobs_fd, hex, 0) < 0 && errno != ENOENT) {
		r = negative_errno();
		pthread_mutex_unlock(lock);
		return strata_error_set_errno(ret_err, r, "delete blob sha256:%s", hex);
	}
	r = content_db_delete(s, digest);
	pthread_mutex_unlock(lock);
	if (r < 0 && r != -ENOENT)
		return strata_error_set_errno(ret_err, r, "delete index entry sha256:%s", hex);
	return 0;
}

/* --- readers ------------------------------------------------------------- */

struct content_reader {
	int fd;
	int64_t size;
};

int content_reader_open(struct content_store *s, const struct strata_digest *digest,
                        struct content_reader **ret, struct strata_error **ret_err)
{
	char hex[STRATA_SHA256_HEX_LEN + 1];
	struct content_reader *rd;
	struct stat st;
	int fd;

	strata_digest_hex(digest, hex);
	fd = openat(s->blobs_fd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int r = negative_errno();
		if (r == -ENOENT)
			return not_found(ret_err, digest);
		return strata_error_set_errno(ret_err, r, "open blob sha256:%s", hex);
	}
	if (fstat(fd, &st) < 0) {
		int r = negative_errno();
		safe_close(fd);
		return strata_error_set_errno(ret_err, r, "stat blob sha256:%s", hex);
	}
	rd = malloc(sizeof(*rd));
	if (!rd) {
		safe_close(fd);
		return strata_error_set(ret_err, -ENOMEM, "open blob: out of memory");
	}
	rd->fd = fd;
	rd->size = st.st_size;
	*ret = rd;
	return 0;
}

int64_t content_reader_size(const struct content_reader *r)
{
	return r->size;
}

int content_reader_fd(const struct content_reader *r)
{
	return r->fd;
}

ssize_t content_reader_pread(struct content_reader *r, void *buf, size_t len, int64_t offset)
{
	if (offset < 0 || offset > r->size)
		return -ERANGE;
	if ((uint64_t)(r->size - offset) < len)
		len = (size_t)(r->size - offset);
	if (len == 0)
		return 0;
	return loop_pread(r->fd, buf, len, (uint64_t)offset);
}

struct content_reader *content_reader_free(struct content_reader *r)
{
	if (!r)
		return NULL;
	safe_close(r->fd);
	free(r);
	return NULL;
}
