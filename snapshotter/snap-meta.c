/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot metadata in LMDB: the only file of snapshotter/ that includes
 * <lmdb.h>. The layout mirrors containerd's snapshots/storage/bolt.go:
 *
 *   snap.keys      key (or committed name) -> record (see encode_record)
 *   snap.ids       id (8 bytes big-endian) -> key; Cleanup's "which dirs are
 *                  ours" and a dense index for the id -> key direction
 *   snap.children  parent id BE8 || child id BE8 -> child key; a prefix seek
 *                  answers "has children?" without scanning
 *   snap.seq       "next" -> next unused id (host-endian u64)
 *
 * Records are host-endian: the store is never moved between machines.
 * Every write is a closure run by strata_meta_write(); closures may run more
 * than once (the batch is retried after the map grows), so they reset their
 * outputs first.
 */
#include <lmdb.h>
#include <string.h>

#include "snap-internal.h"

enum {
	DBI_KEYS,
	DBI_IDS,
	DBI_CHILDREN,
	DBI_SEQ,
};

#define RECORD_VERSION 1

/* Fixed part of a record; followed by u32 parent length + parent bytes, then
 * u32 label count and per label u32 key length, key, u32 value length,
 * value. */
struct record_head {
	uint8_t version;
	uint8_t kind;
	uint8_t pad[6];
	uint64_t id;
	int64_t created_sec, created_nsec;
	int64_t updated_sec, updated_nsec;
	int64_t size, inodes;
};

void snap_record_done(struct snap_record *rec)
{
	if (!rec)
		return;
	snap_info_done(&rec->info);
	*rec = (struct snap_record){0};
}

static void id_key(uint64_t id, uint8_t out[8])
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)(id & 0xff);
		id >>= 8;
	}
}

static uint64_t id_from_key(const uint8_t in[8])
{
	uint64_t id = 0;
	for (int i = 0; i < 8; i++)
		id = (id << 8) | in[i];
	return id;
}

static void child_key(uint64_t parent, uint64_t child, uint8_t out[16])
{
	id_key(parent, out);
	id_key(child, out + 8);
}

/* Labels with an empty value are not stored (containerd's boltutil drops
 * them), which is how "labels.k" with k absent from the request deletes k. */
static size_t stored_label_count(const struct snap_label *labels, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (labels[i].value && labels[i].value[0])
			c++;
	return c;
}

static int encode_record(const struct snap_record *rec, void **ret, size_t *ret_len)
{
	const struct snap_info *in = &rec->info;
	const char *parent = strempty(in->parent);
	size_t plen = strlen(parent), len = sizeof(struct record_head) + 4 + plen + 4;
	struct record_head h = {
	        .version = RECORD_VERSION,
	        .kind = (uint8_t)in->kind,
	        .id = rec->id,
	        .created_sec = in->created.tv_sec,
	        .created_nsec = in->created.tv_nsec,
	        .updated_sec = in->updated.tv_sec,
	        .updated_nsec = in->updated.tv_nsec,
	        .size = rec->usage.size,
	        .inodes = rec->usage.inodes,
	};
	uint32_t u;
	uint8_t *buf, *p;

	for (size_t i = 0; i < in->n_labels; i++)
		if (in->labels[i].value && in->labels[i].value[0])
			len += 8 + strlen(in->labels[i].key) + strlen(in->labels[i].value);
	buf = p = malloc(len);
	if (!buf)
		return -ENOMEM;
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	u = (uint32_t)plen;
	memcpy(p, &u, 4);
	memcpy(p + 4, parent, plen);
	p += 4 + plen;
	u = (uint32_t)stored_label_count(in->labels, in->n_labels);
	memcpy(p, &u, 4);
	p += 4;
	for (size_t i = 0; i < in->n_labels; i++) {
		const char *k = in->labels[i].key, *v = in->labels[i].value;
		if (!v || !v[0])
			continue;
		u = (uint32_t)strlen(k);
		memcpy(p, &u, 4);
		memcpy(p + 4, k, u);
		p += 4 + u;
		u = (uint32_t)strlen(v);
		memcpy(p, &u, 4);
		memcpy(p + 4, v, u);
		p += 4 + u;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

struct reader {
	const uint8_t *p;
	size_t left;
};

static int read_string(struct reader *r, char **ret)
{
	uint32_t n;

	if (r->left < 4)
		return -EBADMSG;
	memcpy(&n, r->p, 4);
	r->p += 4;
	r->left -= 4;
	if (r->left < n)
		return -EBADMSG;
	*ret = strndup((const char *)r->p, n);
	if (!*ret)
		return -ENOMEM;
	r->p += n;
	r->left -= n;
	return 0;
}

static int decode_record(const MDB_val *k, const MDB_val *v, struct snap_record *ret)
{
	struct snap_record rec = {0};
	struct record_head h;
	struct reader r = {.p = v->mv_data, .left = v->mv_size};
	uint32_t n;
	int e;

	if (r.left < sizeof(h))
		return -EBADMSG;
	memcpy(&h, r.p, sizeof(h));
	if (h.version != RECORD_VERSION)
		return -EBADMSG;
	r.p += sizeof(h);
	r.left -= sizeof(h);
	rec.id = h.id;
	rec.info.kind = (enum snap_kind)h.kind;
	rec.info.created = (struct timespec){h.created_sec, h.created_nsec};
	rec.info.updated = (struct timespec){h.updated_sec, h.updated_nsec};
	rec.usage = (struct snap_usage){.size = h.size, .inodes = h.inodes};
	rec.info.name = strndup(k->mv_data, k->mv_size);
	if (!rec.info.name)
		return -ENOMEM;
	e = read_string(&r, &rec.info.parent);
	if (e < 0)
		goto fail;
	e = -EBADMSG;
	if (r.left < 4)
		goto fail;
	memcpy(&n, r.p, 4);
	r.p += 4;
	r.left -= 4;
	if (n > r.left / 8)
		goto fail;
	if (n > 0) {
		rec.info.labels = calloc(n, sizeof(struct snap_label));
		e = -ENOMEM;
		if (!rec.info.labels)
			goto fail;
	}
	for (uint32_t i = 0; i < n; i++) {
		e = read_string(&r, &rec.info.labels[i].key);
		if (e == 0)
			e = read_string(&r, &rec.info.labels[i].value);
		rec.info.n_labels = i + 1;
		if (e < 0)
			goto fail;
	}
	*ret = rec;
	return 0;
fail:
	snap_record_done(&rec);
	return e;
}

static int get_record(MDB_txn *txn, struct snap_store *s, const char *key, struct snap_record *ret)
{
	MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
	int rc = mdb_get(txn, s->dbi[DBI_KEYS], &k, &v);

	if (rc != 0)
		return strata_meta_errno(rc);
	return decode_record(&k, &v, ret);
}

static int put_record(MDB_txn *txn, struct snap_store *s, const struct snap_record *rec,
                      unsigned flags)
{
	_cleanup_free_ void *buf = NULL;
	MDB_val k = {.mv_size = strlen(rec->info.name), .mv_data = rec->info.name}, v;
	int r;

	r = encode_record(rec, &buf, &v.mv_size);
	if (r < 0)
		return r;
	v.mv_data = buf;
	return strata_meta_errno(mdb_put(txn, s->dbi[DBI_KEYS], &k, &v, flags));
}

static int put_id(MDB_txn *txn, struct snap_store *s, uint64_t id, const char *key)
{
	uint8_t kb[8];
	MDB_val k = {.mv_size = 8, .mv_data = kb},
	        v = {.mv_size = strlen(key), .mv_data = (void *)key};

	id_key(id, kb);
	return strata_meta_errno(mdb_put(txn, s->dbi[DBI_IDS], &k, &v, 0));
}

static int put_child(MDB_txn *txn, struct snap_store *s, uint64_t parent, uint64_t child,
                     const char *key)
{
	uint8_t kb[16];
	MDB_val k = {.mv_size = 16, .mv_data = kb},
	        v = {.mv_size = strlen(key), .mv_data = (void *)key};

	child_key(parent, child, kb);
	return strata_meta_errno(mdb_put(txn, s->dbi[DBI_CHILDREN], &k, &v, 0));
}

static int now(struct timespec *ret)
{
	return clock_gettime(CLOCK_REALTIME, ret) < 0 ? negative_errno() : 0;
}

/* Ids of parent and its ancestors, nearest first. */
static int parent_chain(MDB_txn *txn, struct snap_store *s, const char *parent, uint64_t **ret,
                        size_t *ret_n)
{
	_cleanup_free_ uint64_t *ids = NULL;
	_cleanup_free_ char *cur = NULL;
	size_t n = 0, cap = 0;
	int r;

	cur = strdup(parent);
	if (!cur)
		return -ENOMEM;
	while (cur[0]) {
		struct snap_record rec;

		r = get_record(txn, s, cur, &rec);
		if (r < 0)
			return r;
		if (n == cap) {
			uint64_t *a = realloc(ids, (cap = cap ? cap * 2 : 16) * sizeof(*ids));
			if (!a) {
				snap_record_done(&rec);
				return -ENOMEM;
			}
			ids = a;
		}
		ids[n++] = rec.id;
		free(cur);
		cur = TAKE_PTR(rec.info.parent);
		snap_record_done(&rec);
		if (!cur)
			return -ENOMEM;
		if (n > 100000)
			return -ELOOP; /* a cycle would be corruption */
	}
	*ret = TAKE_PTR(ids);
	*ret_n = n;
	return 0;
}

int snap_meta_open(struct snap_store *s)
{
	static const char *const names[] = {"snap.keys", "snap.ids", "snap.children", "snap.seq"};
	return strata_meta_open_dbs(s->meta, ELEMENTSOF(names), names, NULL, s->dbi);
}

struct reserve_args {
	struct snap_store *s;
	uint64_t n, first;
};

static int reserve_fn(void *txn, void *userdata)
{
	struct reserve_args *a = userdata;
	MDB_val k = {.mv_size = 4, .mv_data = (void *)"next"}, v;
	uint64_t next = 1;
	int rc;

	rc = mdb_get(txn, a->s->dbi[DBI_SEQ], &k, &v);
	if (rc == 0 && v.mv_size == sizeof(next))
		memcpy(&next, v.mv_data, sizeof(next));
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return strata_meta_errno(rc);
	a->first = next;
	next += a->n;
	v = (MDB_val){.mv_size = sizeof(next), .mv_data = &next};
	return strata_meta_errno(mdb_put(txn, a->s->dbi[DBI_SEQ], &k, &v, 0));
}

int snap_meta_reserve_ids(struct snap_store *s, uint64_t n, uint64_t *ret_first)
{
	struct reserve_args a = {.s = s, .n = n};
	int r = strata_meta_write(s->meta, reserve_fn, &a);

	if (r < 0)
		return r;
	*ret_first = a.first;
	return 0;
}

struct get_args {
	struct snap_store *s;
	const char *key;
	struct snap_record *rec;
	uint64_t *ids;
	size_t n_ids;
	bool chain;
};

static int get_fn(void *txn, void *userdata)
{
	struct get_args *a = userdata;
	int r = get_record(txn, a->s, a->key, a->rec);

	if (r < 0 || !a->chain || !a->rec->info.parent[0])
		return r;
	r = parent_chain(txn, a->s, a->rec->info.parent, &a->ids, &a->n_ids);
	if (r < 0)
		snap_record_done(a->rec);
	return r;
}

int snap_meta_get(struct snap_store *s, const char *key, struct snap_record *ret)
{
	struct get_args a = {.s = s, .key = key, .rec = ret};
	return strata_meta_read(s->meta, get_fn, &a);
}

int snap_meta_get_chain(struct snap_store *s, const char *key, struct snap_record *ret,
                        uint64_t **ret_parent_ids, size_t *ret_n)
{
	struct get_args a = {.s = s, .key = key, .rec = ret, .chain = true};
	int r = strata_meta_read(s->meta, get_fn, &a);

	if (r < 0)
		return r;
	*ret_parent_ids = a.ids;
	*ret_n = a.n_ids;
	return 0;
}

/* The committed parent a new snapshot names (none when parent is empty):
 * its record in *ret, or containerd's errors for a missing or active one. */
static int get_parent(void *txn, struct snap_store *s, const char *parent, struct snap_record *ret,
                      struct strata_error **ret_err)
{
	int r;

	if (!parent || !parent[0])
		return 0;
	r = get_record(txn, s, parent, ret);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "missing parent \"%s\": not found", parent);
	if (r < 0)
		return r;
	if (ret->info.kind != SNAP_KIND_COMMITTED) {
		snap_record_done(ret);
		return strata_error_set(ret_err, -EINVAL,
		                        "parent \"%s\" is not committed snapshot: invalid argument",
		                        parent);
	}
	return 0;
}

struct create_ctx {
	struct snap_store *s;
	struct snap_create_args *a;
};

static int create_txn(void *txn, void *userdata)
{
	struct create_ctx *c = userdata;
	struct snap_create_args *a = c->a;
	struct snap_store *s = c->s;
	struct snap_record rec = {0}, prec = {0};
	struct timespec t;
	int r;

	free(a->parent_ids);
	a->parent_ids = NULL;
	a->n_parent_ids = 0;

	r = get_parent(txn, s, a->parent, &prec, &a->err);
	if (r < 0)
		return r;
	r = now(&t);
	if (r < 0)
		goto out;
	rec.id = a->id;
	rec.info = (struct snap_info){
	        .name = (char *)a->key,
	        .parent = (char *)strempty(a->parent),
	        .kind = a->kind,
	        .created = t,
	        .updated = t,
	        .labels = (struct snap_label *)a->labels,
	        .n_labels = a->n_labels,
	};
	r = put_record(txn, s, &rec, MDB_NOOVERWRITE);
	if (r == -EEXIST) {
		r = strata_error_set(&a->err, r, "snapshot \"%s\": already exists", a->key);
		goto out;
	}
	if (r < 0)
		goto out;
	r = put_id(txn, s, a->id, a->key);
	if (r < 0)
		goto out;
	if (prec.info.name) {
		r = put_child(txn, s, prec.id, a->id, a->key);
		if (r < 0)
			goto out;
		r = parent_chain(txn, s, a->parent, &a->parent_ids, &a->n_parent_ids);
	}
out:
	snap_record_done(&prec);
	return r;
}

int snap_meta_create(struct snap_store *s, struct snap_create_args *a)
{
	struct create_ctx c = {.s = s, .a = a};
	return strata_meta_write(s->meta, create_txn, &c);
}

struct commit_ctx {
	struct snap_store *s;
	struct snap_commit_args *a;
};

static int commit_txn(void *txn, void *userdata)
{
	struct commit_ctx *c = userdata;
	struct snap_commit_args *a = c->a;
	struct snap_store *s = c->s;
	struct snap_record rec = {0}, prec = {0}, out = {0};
	MDB_val k = {.mv_size = strlen(a->name), .mv_data = (void *)a->name}, v;
	struct timespec t;
	int r, rc;

	/* containerd checks the name first: committing onto an existing name is
	 * AlreadyExists even when the key is unknown. */
	rc = mdb_get(txn, s->dbi[DBI_KEYS], &k, &v);
	if (rc == 0)
		return strata_error_set(&a->err, -EEXIST,
		                        "committed snapshot \"%s\": already exists", a->name);
	if (rc != MDB_NOTFOUND)
		return strata_meta_errno(rc);
	r = get_record(txn, s, a->key, &rec);
	if (r == -ENOENT)
		return strata_error_set(&a->err, r,
		                        "failed to get active snapshot \"%s\": not found", a->key);
	if (r < 0)
		return r;
	if (rec.info.kind != SNAP_KIND_ACTIVE) {
		r = strata_error_set(&a->err, -EBADFD,
		                     "snapshot \"%s\" is not active: failed precondition", a->key);
		goto out;
	}
	if (rec.id != a->expect_id) {
		r = -EAGAIN; /* key was removed and prepared again meanwhile */
		goto out;
	}
	r = now(&t);
	if (r < 0)
		goto out;
	out.id = rec.id;
	out.usage = a->usage;
	out.info = (struct snap_info){
	        .name = (char *)a->name,
	        .parent = rec.info.parent,
	        .kind = SNAP_KIND_COMMITTED,
	        .created = t,
	        .updated = t,
	        .labels = (struct snap_label *)a->labels,
	        .n_labels = a->n_labels,
	};
	r = put_record(txn, s, &out, MDB_NOOVERWRITE);
	if (r < 0)
		goto out;
	k = (MDB_val){.mv_size = strlen(a->key), .mv_data = (void *)a->key};
	r = strata_meta_errno(mdb_del(txn, s->dbi[DBI_KEYS], &k, NULL));
	if (r < 0)
		goto out;
	r = put_id(txn, s, rec.id, a->name);
	if (r < 0)
		goto out;
	if (rec.info.parent[0]) {
		r = get_record(txn, s, rec.info.parent, &prec);
		if (r == -ENOENT)
			r = strata_error_set(&a->err, r, "missing parent \"%s\" of snapshot \"%s\"",
			                     rec.info.parent, a->key);
		if (r < 0)
			goto out;
		r = put_child(txn, s, prec.id, rec.id, a->name);
	}
out:
	snap_record_done(&rec);
	snap_record_done(&prec);
	return r;
}

int snap_meta_commit(struct snap_store *s, struct snap_commit_args *a)
{
	struct commit_ctx c = {.s = s, .a = a};
	return strata_meta_write(s->meta, commit_txn, &c);
}

struct create_committed_ctx {
	struct snap_store *s;
	struct snap_create_committed_args *a;
};

/* create_txn and commit_txn in one: the record goes straight in under its
 * name, as a committed one, with the same id, parent and child entries. */
static int create_committed_txn(void *txn, void *userdata)
{
	struct create_committed_ctx *c = userdata;
	struct snap_create_committed_args *a = c->a;
	struct snap_store *s = c->s;
	struct snap_record rec = {0}, prec = {0};
	MDB_val k = {.mv_size = strlen(a->name), .mv_data = (void *)a->name}, v;
	struct timespec t;
	int r, rc;

	a->key_exists = false;
	rc = mdb_get(txn, s->dbi[DBI_KEYS], &k, &v);
	if (rc == 0)
		return strata_error_set(&a->err, -EEXIST,
		                        "committed snapshot \"%s\": already exists", a->name);
	if (rc != MDB_NOTFOUND)
		return strata_meta_errno(rc);
	k = (MDB_val){.mv_size = strlen(a->key), .mv_data = (void *)a->key};
	rc = mdb_get(txn, s->dbi[DBI_KEYS], &k, &v);
	if (rc == 0) {
		a->key_exists = true;
		return strata_error_set(&a->err, -EEXIST, "snapshot \"%s\": already exists",
		                        a->key);
	}
	if (rc != MDB_NOTFOUND)
		return strata_meta_errno(rc);
	r = get_parent(txn, s, a->parent, &prec, &a->err);
	if (r < 0)
		return r;
	r = now(&t);
	if (r < 0)
		goto out;
	rec.id = a->id;
	rec.usage = a->usage;
	rec.info = (struct snap_info){
	        .name = (char *)a->name,
	        .parent = (char *)strempty(a->parent),
	        .kind = SNAP_KIND_COMMITTED,
	        .created = t,
	        .updated = t,
	        .labels = (struct snap_label *)a->labels,
	        .n_labels = a->n_labels,
	};
	r = put_record(txn, s, &rec, MDB_NOOVERWRITE);
	if (r < 0)
		goto out;
	r = put_id(txn, s, a->id, a->name);
	if (r < 0)
		goto out;
	if (prec.info.name)
		r = put_child(txn, s, prec.id, a->id, a->name);
out:
	snap_record_done(&prec);
	return r;
}

int snap_meta_create_committed(struct snap_store *s, struct snap_create_committed_args *a)
{
	struct create_committed_ctx c = {.s = s, .a = a};
	return strata_meta_write(s->meta, create_committed_txn, &c);
}

struct remove_ctx {
	struct snap_store *s;
	const char *key;
	uint64_t id;
	struct strata_error *err;
};

static int remove_txn(void *txn, void *userdata)
{
	struct remove_ctx *c = userdata;
	struct snap_store *s = c->s;
	struct snap_record rec = {0}, prec = {0};
	uint8_t kb[16];
	MDB_val k, v;
	MDB_cursor *cur = NULL;
	int r, rc;

	r = get_record(txn, s, c->key, &rec);
	if (r == -ENOENT)
		return strata_error_set(&c->err, r, "snapshot \"%s\": not found", c->key);
	if (r < 0)
		return r;
	c->id = rec.id;

	child_key(rec.id, 0, kb);
	k = (MDB_val){.mv_size = 16, .mv_data = kb};
	rc = mdb_cursor_open(txn, s->dbi[DBI_CHILDREN], &cur);
	if (rc == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && k.mv_size == 16 && id_from_key(k.mv_data) == rec.id) {
		r = strata_error_set(&c->err, -ENOTEMPTY,
		                     "cannot remove snapshot \"%s\" with child \"%.*s\": failed "
		                     "precondition",
		                     c->key, (int)v.mv_size, (const char *)v.mv_data);
		goto out;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		r = strata_meta_errno(rc);
		goto out;
	}
	if (rec.info.parent[0]) {
		r = get_record(txn, s, rec.info.parent, &prec);
		if (r < 0)
			goto out;
		child_key(prec.id, rec.id, kb);
		k = (MDB_val){.mv_size = 16, .mv_data = kb};
		rc = mdb_del(txn, s->dbi[DBI_CHILDREN], &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			r = strata_meta_errno(rc);
			goto out;
		}
	}
	id_key(rec.id, kb);
	k = (MDB_val){.mv_size = 8, .mv_data = kb};
	rc = mdb_del(txn, s->dbi[DBI_IDS], &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		r = strata_meta_errno(rc);
		goto out;
	}
	k = (MDB_val){.mv_size = strlen(c->key), .mv_data = (void *)c->key};
	r = strata_meta_errno(mdb_del(txn, s->dbi[DBI_KEYS], &k, NULL));
out:
	if (cur)
		mdb_cursor_close(cur);
	snap_record_done(&rec);
	snap_record_done(&prec);
	return r;
}

int snap_meta_remove(struct snap_store *s, const char *key, uint64_t *ret_id,
                     struct strata_error **ret_err)
{
	struct remove_ctx c = {.s = s, .key = key};
	int r = strata_meta_write(s->meta, remove_txn, &c);

	if (r < 0) {
		if (c.err)
			strata_error_propagate(ret_err, &c.err);
		strata_error_free(c.err);
		return r;
	}
	strata_error_free(c.err);
	*ret_id = c.id;
	return 0;
}

/* Set (or add) one label in a heap label array. */
static int label_set(struct snap_label **labels, size_t *n, const char *key, const char *value)
{
	struct snap_label *a;
	char *v = strdup(value ? value : "");

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < *n; i++)
		if (streq((*labels)[i].key, key)) {
			free((*labels)[i].value);
			(*labels)[i].value = v;
			return 0;
		}
	a = realloc(*labels, (*n + 1) * sizeof(*a));
	if (!a) {
		free(v);
		return -ENOMEM;
	}
	*labels = a;
	a[*n] = (struct snap_label){.key = strdup(key), .value = v};
	if (!a[*n].key) {
		free(v);
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

/* Drop empty values, as storing does, so the answer matches a later Stat. */
static void labels_compact(struct snap_label *labels, size_t *n)
{
	size_t o = 0;
	for (size_t i = 0; i < *n; i++) {
		if (labels[i].value && labels[i].value[0]) {
			labels[o++] = labels[i];
			continue;
		}
		free(labels[i].key);
		free(labels[i].value);
	}
	*n = o;
}

struct update_ctx {
	struct snap_store *s;
	const struct snap_info *info;
	const char *const *paths;
	size_t n_paths;
	struct snap_record rec;
	struct strata_error *err;
};

static int update_txn(void *txn, void *userdata)
{
	struct update_ctx *c = userdata;
	const struct snap_info *in = c->info;
	int r;

	snap_record_done(&c->rec);
	r = get_record(txn, c->s, in->name, &c->rec);
	if (r == -ENOENT)
		return strata_error_set(&c->err, r, "snapshot \"%s\" does not exist: not found",
		                        in->name);
	if (r < 0)
		return r;

	for (size_t i = 0; i < c->n_paths; i++) {
		const char *p = c->paths[i];
		if (strncmp(p, "labels.", 7) == 0) {
			r = label_set(&c->rec.info.labels, &c->rec.info.n_labels, p + 7,
			              snap_info_label(in, p + 7));
			if (r < 0)
				return r;
		} else if (streq(p, "labels")) {
			snap_labels_free(c->rec.info.labels, c->rec.info.n_labels);
			c->rec.info.labels = NULL;
			c->rec.info.n_labels = 0;
			r = snap_labels_copy(in->labels, in->n_labels, &c->rec.info.labels);
			if (r < 0)
				return r;
			c->rec.info.n_labels = in->n_labels;
		} else {
			return strata_error_set(&c->err, -EINVAL,
			                        "cannot update \"%s\" field on snapshot \"%s\": "
			                        "invalid argument",
			                        p, in->name);
		}
	}
	if (c->n_paths == 0) {
		snap_labels_free(c->rec.info.labels, c->rec.info.n_labels);
		c->rec.info.labels = NULL;
		c->rec.info.n_labels = 0;
		r = snap_labels_copy(in->labels, in->n_labels, &c->rec.info.labels);
		if (r < 0)
			return r;
		c->rec.info.n_labels = in->n_labels;
	}
	labels_compact(c->rec.info.labels, &c->rec.info.n_labels);
	r = now(&c->rec.info.updated);
	if (r < 0)
		return r;
	return put_record(txn, c->s, &c->rec, 0);
}

int snap_meta_update(struct snap_store *s, const struct snap_info *info, const char *const paths[],
                     size_t n_paths, struct snap_info *ret, struct strata_error **ret_err)
{
	struct update_ctx c = {.s = s, .info = info, .paths = paths, .n_paths = n_paths};
	int r = strata_meta_write(s->meta, update_txn, &c);

	if (r < 0) {
		strata_error_propagate(ret_err, &c.err);
		strata_error_free(c.err);
		snap_record_done(&c.rec);
		return r;
	}
	strata_error_free(c.err);
	if (ret) {
		*ret = c.rec.info;
		c.rec.info = (struct snap_info){0};
	}
	snap_record_done(&c.rec);
	return 0;
}

struct list_ctx {
	struct snap_store *s;
	struct snap_record *recs;
	size_t n;
	uint64_t *ids;
};

static void list_reset(struct list_ctx *c)
{
	for (size_t i = 0; i < c->n; i++)
		snap_record_done(&c->recs[i]);
	free(c->recs);
	free(c->ids);
	c->recs = NULL;
	c->ids = NULL;
	c->n = 0;
}

static int list_txn(void *txn, void *userdata)
{
	struct list_ctx *c = userdata;
	MDB_cursor *cur = NULL;
	MDB_stat st;
	MDB_val k, v;
	int rc, r = 0;

	rc = mdb_stat(txn, c->s->dbi[DBI_KEYS], &st);
	if (rc != 0)
		return strata_meta_errno(rc);
	c->recs = calloc(st.ms_entries + 1, sizeof(*c->recs));
	if (!c->recs)
		return -ENOMEM;
	rc = mdb_cursor_open(txn, c->s->dbi[DBI_KEYS], &cur);
	if (rc != 0)
		return strata_meta_errno(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && c->n < st.ms_entries;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		r = decode_record(&k, &v, &c->recs[c->n]);
		if (r < 0)
			break;
		c->n++;
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != 0 && rc != MDB_NOTFOUND)
		r = strata_meta_errno(rc);
	return r;
}

int snap_meta_list(struct snap_store *s, struct snap_record **ret, size_t *ret_n)
{
	struct list_ctx c = {.s = s};
	int r = strata_meta_read(s->meta, list_txn, &c);

	if (r < 0) {
		list_reset(&c);
		return r;
	}
	*ret = c.recs;
	*ret_n = c.n;
	return 0;
}

static int ids_txn(void *txn, void *userdata)
{
	struct list_ctx *c = userdata;
	MDB_cursor *cur = NULL;
	MDB_stat st;
	MDB_val k, v;
	int rc;

	rc = mdb_stat(txn, c->s->dbi[DBI_IDS], &st);
	if (rc != 0)
		return strata_meta_errno(rc);
	c->ids = calloc(st.ms_entries + 1, sizeof(*c->ids));
	if (!c->ids)
		return -ENOMEM;
	rc = mdb_cursor_open(txn, c->s->dbi[DBI_IDS], &cur);
	if (rc != 0)
		return strata_meta_errno(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && c->n < st.ms_entries;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		if (k.mv_size == 8)
			c->ids[c->n++] = id_from_key(k.mv_data);
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : strata_meta_errno(rc);
}

int snap_meta_ids(struct snap_store *s, uint64_t **ret, size_t *ret_n)
{
	struct list_ctx c = {.s = s};
	int r = strata_meta_read(s->meta, ids_txn, &c);

	if (r < 0) {
		list_reset(&c);
		return r;
	}
	*ret = c.ids;
	*ret_n = c.n;
	return 0;
}
