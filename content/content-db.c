/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The content index in LMDB: the only file of content/ that includes
 * <lmdb.h>.
 *
 * Database "content.blobs": key = the 32 raw sha256 bytes (so a cursor walks
 * in digest order and lookups compare fixed-size keys), value = a record
 * decoded without any parsing beyond bounds checks, to keep Info cheap:
 *
 *   u8  version (1)
 *   i64 size
 *   i64 created_at ns since the epoch
 *   i64 updated_at ns
 *   u32 number of labels
 *   per label, sorted by key: u32 key length, u32 value length, key, value
 *
 * Integers are little-endian (the host's, checked at build time).
 */
#include <lmdb.h>
#include <pthread.h>
#include <string.h>

#include "content-internal.h"
#include "images-internal.h"
#include "log.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "record encoding assumes LE");

#define RECORD_VERSION 1
#define RECORD_HEADER  (1 + 8 + 8 + 8 + 4)
#define WALK_BATCH     512

static int64_t ts_to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000;
	}
	return ts;
}

int content_record_encode(const struct content_info *info, void **ret, size_t *ret_len)
{
	size_t len = RECORD_HEADER, o = 0;
	uint8_t *buf;
	int64_t v;
	uint32_t n;

	for (size_t i = 0; i < info->n_labels; i++)
		len += 8 + strlen(info->labels[i].key) + strlen(info->labels[i].value);
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	buf[o++] = RECORD_VERSION;
	v = info->size;
	memcpy(buf + o, &v, 8), o += 8;
	v = ts_to_ns(&info->created_at);
	memcpy(buf + o, &v, 8), o += 8;
	v = ts_to_ns(&info->updated_at);
	memcpy(buf + o, &v, 8), o += 8;
	n = (uint32_t)info->n_labels;
	memcpy(buf + o, &n, 4), o += 4;
	for (size_t i = 0; i < info->n_labels; i++) {
		uint32_t kl = (uint32_t)strlen(info->labels[i].key);
		uint32_t vl = (uint32_t)strlen(info->labels[i].value);
		memcpy(buf + o, &kl, 4), o += 4;
		memcpy(buf + o, &vl, 4), o += 4;
		memcpy(buf + o, info->labels[i].key, kl), o += kl;
		memcpy(buf + o, info->labels[i].value, vl), o += vl;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

int content_record_decode(const void *data, size_t len, const struct strata_digest *d,
                          struct content_info *ret)
{
	const uint8_t *buf = data;
	struct content_info info = {.digest = *d};
	size_t o = 1;
	int64_t v;
	uint32_t n;

	if (len < RECORD_HEADER || buf[0] != RECORD_VERSION)
		return -EBADMSG;
	memcpy(&v, buf + o, 8), o += 8;
	info.size = v;
	memcpy(&v, buf + o, 8), o += 8;
	info.created_at = ns_to_ts(v);
	memcpy(&v, buf + o, 8), o += 8;
	info.updated_at = ns_to_ts(v);
	memcpy(&n, buf + o, 4), o += 4;
	/* each label needs at least 8 bytes: bounds n before allocating */
	if (n > (len - o) / 8)
		return -EBADMSG;
	if (n > 0) {
		info.labels = calloc(n, sizeof(*info.labels));
		if (!info.labels)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t kl, vl;
		struct content_label *l = &info.labels[i];

		if (len - o < 8)
			goto bad;
		memcpy(&kl, buf + o, 4), o += 4;
		memcpy(&vl, buf + o, 4), o += 4;
		if ((uint64_t)kl + vl > len - o)
			goto bad;
		l->key = strndup((const char *)buf + o, kl);
		l->value = strndup((const char *)buf + o + kl, vl);
		info.n_labels++;
		if (!l->key || !l->value) {
			content_info_done(&info);
			return -ENOMEM;
		}
		o += (size_t)kl + vl;
	}
	*ret = info;
	return 0;
bad:
	content_info_done(&info);
	return -EBADMSG;
}

/*
 * The image store's databases (see images.c), opened with content.blobs:
 *
 *   "content.images": normalised image name -> the image record (JSON,
 *                     encoded by content_image_record_encode()).
 *   "content.marks":  sha256 (32 bytes) -> u32 flags, CONTENT_MARK_* (blobs
 *                     Strata wrote for itself and containerd has not claimed).
 *
 * struct content_store (content-internal.h) has one dbi field; the handles of
 * these two live in a small table keyed by the store, filled at open. An
 * entry left by a closed store is harmless: the next store at that address
 * overwrites it when it opens.
 */
#define DB_TABLE_SIZE 16

struct db_handles {
	const struct content_store *s;
	unsigned images;
	unsigned marks;
};

static pthread_mutex_t db_table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct db_handles db_table[DB_TABLE_SIZE];
static size_t db_table_next;

static int db_handles_get(const struct content_store *s, struct db_handles *ret)
{
	int r = -ENXIO;

	pthread_mutex_lock(&db_table_lock);
	for (size_t i = 0; i < DB_TABLE_SIZE; i++)
		if (db_table[i].s == s) {
			*ret = db_table[i];
			r = 0;
			break;
		}
	pthread_mutex_unlock(&db_table_lock);
	return r;
}

static void db_handles_set(const struct content_store *s, unsigned images, unsigned marks)
{
	size_t slot = DB_TABLE_SIZE;

	pthread_mutex_lock(&db_table_lock);
	for (size_t i = 0; i < DB_TABLE_SIZE; i++)
		if (db_table[i].s == s) {
			slot = i;
			break;
		}
	if (slot == DB_TABLE_SIZE)
		slot = db_table_next++ % DB_TABLE_SIZE;
	db_table[slot] = (struct db_handles){s, images, marks};
	pthread_mutex_unlock(&db_table_lock);
}

int content_db_open(struct content_store *s)
{
	const char *names[] = {"content.blobs", "content.images", "content.marks"};
	unsigned dbi[3];
	int r;

	r = strata_meta_open_dbs(s->meta, 3, names, NULL, dbi);
	if (r < 0)
		return r;
	s->dbi = dbi[0];
	db_handles_set(s, dbi[1], dbi[2]);
	return 0;
}

struct get_ctx {
	struct content_store *s;
	const struct strata_digest *d;
	struct content_info *ret;
};

static int get_txn(void *txn, void *userdata)
{
	struct get_ctx *c = userdata;
	MDB_val k = {.mv_size = STRATA_SHA256_LEN, .mv_data = (void *)c->d->sha256}, v;
	int rc;

	rc = mdb_get(txn, c->s->dbi, &k, &v);
	if (rc != 0)
		return strata_meta_errno(rc);
	if (!c->ret)
		return 0;
	return content_record_decode(v.mv_data, v.mv_size, c->d, c->ret);
}

int content_db_get(struct content_store *s, const struct strata_digest *d, struct content_info *ret)
{
	struct get_ctx c = {s, d, ret};
	return strata_meta_read(s->meta, get_txn, &c);
}

struct put_ctx {
	struct content_store *s;
	const struct content_info *info;
	void *rec;
	size_t len;
	bool overwrite;
};

static int put_txn(void *txn, void *userdata)
{
	struct put_ctx *c = userdata;
	MDB_val k = {.mv_size = STRATA_SHA256_LEN, .mv_data = (void *)c->info->digest.sha256};
	MDB_val v = {.mv_size = c->len, .mv_data = c->rec};

	return strata_meta_errno(
	        mdb_put(txn, c->s->dbi, &k, &v, c->overwrite ? 0 : MDB_NOOVERWRITE));
}

int content_db_put(struct content_store *s, const struct content_info *info, bool overwrite)
{
	struct put_ctx c = {.s = s, .info = info, .overwrite = overwrite};
	int r;

	r = content_record_encode(info, &c.rec, &c.len);
	if (r < 0)
		return r;
	r = strata_meta_write(s->meta, put_txn, &c);
	free(c.rec);
	return r;
}

struct put_many_ctx {
	struct content_store *s;
	const struct content_info *infos;
	size_t n;
};

static int put_many_txn(void *txn, void *userdata)
{
	struct put_many_ctx *c = userdata;
	int r = 0;

	for (size_t i = 0; i < c->n && r >= 0; i++) {
		struct put_ctx p = {.s = c->s, .info = &c->infos[i], .overwrite = true};

		r = content_record_encode(p.info, &p.rec, &p.len);
		if (r >= 0)
			r = put_txn(txn, &p);
		free(p.rec);
	}
	return r;
}

int content_db_put_many(struct content_store *s, const struct content_info *infos, size_t n)
{
	struct put_many_ctx c = {s, infos, n};
	return strata_meta_write(s->meta, put_many_txn, &c);
}

static int delete_txn(void *txn, void *userdata)
{
	struct get_ctx *c = userdata;
	MDB_val k = {.mv_size = STRATA_SHA256_LEN, .mv_data = (void *)c->d->sha256};

	return strata_meta_errno(mdb_del(txn, c->s->dbi, &k, NULL));
}

int content_db_delete(struct content_store *s, const struct strata_digest *d)
{
	struct get_ctx c = {s, d, NULL};
	return strata_meta_write(s->meta, delete_txn, &c);
}

struct modify_ctx {
	struct content_store *s;
	const struct strata_digest *d;
	content_db_modify_fn fn;
	void *userdata;
	struct content_info result;
	bool have_result;
};

static int modify_txn(void *txn, void *userdata)
{
	struct modify_ctx *c = userdata;
	MDB_val k = {.mv_size = STRATA_SHA256_LEN, .mv_data = (void *)c->d->sha256}, v;
	struct content_info info = {0};
	void *rec = NULL;
	size_t len;
	int rc, r;

	/* a rerun after a map resize starts from the stored record again */
	if (c->have_result) {
		content_info_done(&c->result);
		c->have_result = false;
	}
	rc = mdb_get(txn, c->s->dbi, &k, &v);
	if (rc != 0)
		return strata_meta_errno(rc);
	r = content_record_decode(v.mv_data, v.mv_size, c->d, &info);
	if (r < 0)
		return r;
	r = c->fn(&info, c->userdata);
	if (r >= 0)
		r = content_record_encode(&info, &rec, &len);
	if (r >= 0) {
		v = (MDB_val){.mv_size = len, .mv_data = rec};
		r = strata_meta_errno(mdb_put(txn, c->s->dbi, &k, &v, 0));
		free(rec);
	}
	if (r < 0) {
		content_info_done(&info);
		return r;
	}
	c->result = info;
	c->have_result = true;
	return 0;
}

int content_db_modify(struct content_store *s, const struct strata_digest *d,
                      content_db_modify_fn fn, void *userdata, struct content_info *ret)
{
	struct modify_ctx c = {.s = s, .d = d, .fn = fn, .userdata = userdata};
	int r;

	r = strata_meta_write(s->meta, modify_txn, &c);
	if (r < 0) {
		if (c.have_result)
			content_info_done(&c.result);
		return r;
	}
	if (ret)
		*ret = c.result;
	else
		content_info_done(&c.result);
	return r;
}

struct walk_batch {
	struct content_store *s;
	uint8_t after[STRATA_SHA256_LEN];
	bool have_after;
	struct content_info infos[WALK_BATCH];
	size_t n;
	bool end;
};

static int walk_txn(void *txn, void *userdata)
{
	struct walk_batch *b = userdata;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, r = 0;

	rc = mdb_cursor_open(txn, b->s->dbi, &cur);
	if (rc != 0)
		return strata_meta_errno(rc);
	if (b->have_after) {
		k = (MDB_val){.mv_size = STRATA_SHA256_LEN, .mv_data = b->after};
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == STRATA_SHA256_LEN &&
		    memcmp(k.mv_data, b->after, STRATA_SHA256_LEN) == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	while (rc == 0 && b->n < WALK_BATCH) {
		struct strata_digest d;

		if (k.mv_size != STRATA_SHA256_LEN) {
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		memcpy(d.sha256, k.mv_data, STRATA_SHA256_LEN);
		r = content_record_decode(v.mv_data, v.mv_size, &d, &b->infos[b->n]);
		if (r == -EBADMSG) {
			log_debug("content index: undecodable record skipped");
			r = 0;
		} else if (r < 0) {
			break;
		} else {
			b->n++;
		}
		memcpy(b->after, d.sha256, STRATA_SHA256_LEN);
		b->have_after = true;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (r < 0)
		return r;
	if (rc == MDB_NOTFOUND)
		b->end = true;
	else if (rc != 0)
		return strata_meta_errno(rc);
	return 0;
}

int content_db_walk(struct content_store *s, content_walk_fn fn, void *userdata)
{
	_cleanup_free_ struct walk_batch *b = calloc(1, sizeof(*b));
	int r = 0;

	if (!b)
		return -ENOMEM;
	b->s = s;
	while (!b->end) {
		size_t i;

		b->n = 0;
		r = strata_meta_read(s->meta, walk_txn, b);
		if (r < 0) {
			for (i = 0; i < b->n; i++)
				content_info_done(&b->infos[i]);
			return r;
		}
		r = 0;
		for (i = 0; i < b->n && r == 0; i++)
			r = fn(&b->infos[i], userdata);
		for (i = 0; i < b->n; i++)
			content_info_done(&b->infos[i]);
		if (r != 0)
			return r < 0 ? r : 0;
	}
	return 0;
}

/* --- image records and marks (images.c) ------------------------------------ */

struct image_update_ctx {
	unsigned dbi;
	const char *name;
	content_db_image_update_fn fn;
	void *userdata;
};

static int image_update_txn(void *txn, void *userdata)
{
	struct image_update_ctx *c = userdata;
	MDB_val k = {.mv_size = strlen(c->name), .mv_data = (void *)c->name}, v;
	_cleanup_free_ void *old = NULL;
	_cleanup_free_ void *new = NULL;
	size_t old_len = 0, new_len = 0;
	int rc, r;

	rc = mdb_get(txn, c->dbi, &k, &v);
	if (rc == 0) {
		/* copy: fn may run again after a map resize, and v dies with
		 * the transaction */
		old = malloc(MAX(v.mv_size, (size_t)1));
		if (!old)
			return -ENOMEM;
		memcpy(old, v.mv_data, v.mv_size);
		old_len = v.mv_size;
	} else if (rc != MDB_NOTFOUND) {
		return strata_meta_errno(rc);
	}
	r = c->fn(old, old_len, c->userdata, &new, &new_len);
	if (r < 0)
		return r;
	if (!new) {
		if (!old)
			return -ENOENT;
		return strata_meta_errno(mdb_del(txn, c->dbi, &k, NULL));
	}
	v = (MDB_val){.mv_size = new_len, .mv_data = new};
	return strata_meta_errno(mdb_put(txn, c->dbi, &k, &v, 0));
}

int content_db_image_update(struct content_store *s, const char *name,
                            content_db_image_update_fn fn, void *userdata)
{
	struct image_update_ctx c = {.name = name, .fn = fn, .userdata = userdata};
	struct db_handles h;
	int r;

	if (!name || !*name || strlen(name) > 511) /* LMDB's default key limit */
		return -EINVAL;
	r = db_handles_get(s, &h);
	if (r < 0)
		return r;
	c.dbi = h.images;
	return strata_meta_write(s->meta, image_update_txn, &c);
}

struct image_get_ctx {
	unsigned dbi;
	const char *name;
	char *buf;
	size_t len;
};

static int image_get_txn(void *txn, void *userdata)
{
	struct image_get_ctx *c = userdata;
	MDB_val k = {.mv_size = strlen(c->name), .mv_data = (void *)c->name}, v;
	int rc;

	rc = mdb_get(txn, c->dbi, &k, &v);
	if (rc != 0)
		return strata_meta_errno(rc);
	c->buf = malloc(v.mv_size + 1);
	if (!c->buf)
		return -ENOMEM;
	memcpy(c->buf, v.mv_data, v.mv_size);
	c->buf[v.mv_size] = '\0';
	c->len = v.mv_size;
	return 0;
}

int content_db_image_get(struct content_store *s, const char *name, char **ret, size_t *ret_len)
{
	struct image_get_ctx c = {.name = name};
	struct db_handles h;
	int r;

	if (!name || !*name || strlen(name) > 511)
		return -ENOENT;
	r = db_handles_get(s, &h);
	if (r < 0)
		return r;
	c.dbi = h.images;
	r = strata_meta_read(s->meta, image_get_txn, &c);
	if (r < 0) {
		free(c.buf);
		return r;
	}
	*ret = c.buf;
	*ret_len = c.len;
	return 0;
}

struct image_list_ctx {
	unsigned dbi;
	char **bufs;
	size_t *lens;
	size_t n, cap;
};

static void image_list_clear(struct image_list_ctx *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->bufs[i]);
	c->n = 0;
}

static int image_list_txn(void *txn, void *userdata)
{
	struct image_list_ctx *c = userdata;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, r = 0;

	image_list_clear(c); /* a retried read starts over */
	rc = mdb_cursor_open(txn, c->dbi, &cur);
	if (rc != 0)
		return strata_meta_errno(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (c->n == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 16;
			char **b = realloc(c->bufs, cap * sizeof(*b));
			size_t *l;

			if (!b) {
				r = -ENOMEM;
				break;
			}
			c->bufs = b;
			l = realloc(c->lens, cap * sizeof(*l));
			if (!l) {
				r = -ENOMEM;
				break;
			}
			c->lens = l;
			c->cap = cap;
		}
		c->bufs[c->n] = malloc(v.mv_size + 1);
		if (!c->bufs[c->n]) {
			r = -ENOMEM;
			break;
		}
		memcpy(c->bufs[c->n], v.mv_data, v.mv_size);
		c->bufs[c->n][v.mv_size] = '\0';
		c->lens[c->n++] = v.mv_size;
	}
	mdb_cursor_close(cur);
	if (r < 0)
		return r;
	if (rc != MDB_NOTFOUND)
		return strata_meta_errno(rc);
	return 0;
}

int content_db_image_walk(struct content_store *s, content_db_image_walk_fn fn, void *userdata)
{
	struct image_list_ctx c = {0};
	struct db_handles h;
	int r;

	r = db_handles_get(s, &h);
	if (r < 0)
		return r;
	c.dbi = h.images;
	/* Image records are few: copy them all out, then call fn outside the
	 * transaction so it may call back into the store. */
	r = strata_meta_read(s->meta, image_list_txn, &c);
	for (size_t i = 0; r >= 0 && i < c.n; i++) {
		r = fn(c.bufs[i], c.lens[i], userdata);
		if (r > 0) {
			r = 0;
			break;
		}
	}
	image_list_clear(&c);
	free(c.bufs);
	free(c.lens);
	return r;
}

struct mark_ctx {
	unsigned dbi;
	const struct strata_digest *d;
	uint32_t flags;
};

static int mark_get_txn(void *txn, void *userdata)
{
	struct mark_ctx *c = userdata;
	MDB_val k = {.mv_size = STRATA_SHA256_LEN, .mv_data = (void *)c->d->sha256}, v;
	int rc;

	rc = mdb_get(txn, c->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		c->flags = 0;
		return 0;
	}
	if (rc != 0)
		return strata_meta_errno(rc);
	if (v.mv_size != sizeof(uint32_t))
		return -EBADMSG;
	memcpy(&c->flags, v.mv_data, sizeof(uint32_t));
	return 0;
}

int content_db_mark_get(struct content_store *s, const struct strata_digest *d, uint32_t *ret)
{
	struct mark_ctx c = {.d = d};
	struct db_handles h;
	int r;

	r = db_handles_get(s, &h);
	if (r < 0)
		return r;
	c.dbi = h.marks;
	r = strata_meta_read(s->meta, mark_get_txn, &c);
	if (r < 0)
		return r;
	*ret = c.flags;
	return 0;
}

static int mark_set_txn(void *txn, void *userdata)
{
	struct mark_ctx *c = userdata;
	MDB_val k = {.mv_size = STRATA_SHA256_LEN, .mv_data = (void *)c->d->sha256};
	MDB_val v = {.mv_size = sizeof(uint32_t), .mv_data = &c->flags};
	int rc;

	if (c->flags == 0) {
		rc = mdb_del(txn, c->dbi, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : strata_meta_errno(rc);
	}
	return strata_meta_errno(mdb_put(txn, c->dbi, &k, &v, 0));
}

int content_db_mark_set(struct content_store *s, const struct strata_digest *d, uint32_t flags)
{
	struct mark_ctx c = {.d = d, .flags = flags};
	struct db_handles h;
	int r;

	r = db_handles_get(s, &h);
	if (r < 0)
		return r;
	c.dbi = h.marks;
	return strata_meta_write(s->meta, mark_set_txn, &c);
}
