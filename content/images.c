/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image store: image records (JSON in LMDB, through content-db.c), chain
 * IDs, pins held by running pulls, and the marks that let Strata's images and
 * containerd's share one content store (see content.h and the design comment
 * at the top of proxy/svc-images.c).
 */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>

#include "filter.h"
#include "images-internal.h"
#include "json.h"
#include "log.h"

#define RECORD_VERSION 1

void content_image_record_done(struct content_image_record *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->media_type);
	free(r->platform);
	free(r->layers);
	free(r->chain_ids);
	content_labels_free(r->labels, r->n_labels);
	*r = (struct content_image_record){0};
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};

	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000;
	}
	return ts;
}

static json_t *digest_json(const struct strata_digest *d)
{
	char buf[STRATA_DIGEST_STRING_MAX];

	return json_string(strata_digest_format(d, buf));
}

static json_t *digests_json(const struct strata_digest *d, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, digest_json(&d[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

int content_image_record_encode(const struct content_image_record *r, char **ret, size_t *ret_len)
{
	_cleanup_json_ json_t *o = json_object();
	json_t *labels = json_object();
	char *s;
	int r_ = 0;

	if (!o || !labels) {
		json_decref(labels);
		return -ENOMEM;
	}
	for (size_t i = 0; i < r->n_labels; i++)
		r_ |= json_object_set_new(labels, r->labels[i].key,
		                          json_string(r->labels[i].value));
	r_ |= json_object_set_new(o, "labels", labels);
	r_ |= json_object_set_new(o, "v", json_integer(RECORD_VERSION));
	r_ |= json_object_set_new(o, "name", json_string(strempty(r->name)));
	r_ |= json_object_set_new(o, "digest", digest_json(&r->digest));
	r_ |= json_object_set_new(o, "mediaType", json_string(strempty(r->media_type)));
	r_ |= json_object_set_new(o, "size", json_integer(r->size));
	r_ |= json_object_set_new(o, "platform", json_string(strempty(r->platform)));
	r_ |= json_object_set_new(o, "manifest", digest_json(&r->manifest_digest));
	r_ |= json_object_set_new(o, "config", digest_json(&r->config_digest));
	r_ |= json_object_set_new(o, "layers", digests_json(r->layers, r->n_layers));
	r_ |= json_object_set_new(o, "chainIDs", digests_json(r->chain_ids, r->n_chain_ids));
	r_ |= json_object_set_new(o, "created", json_integer(ts_ns(&r->created_at)));
	r_ |= json_object_set_new(o, "updated", json_integer(ts_ns(&r->updated_at)));
	if (r_ != 0)
		return -ENOMEM;
	s = json_dump_compact(o);
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}

static int digest_from_json(const json_t *o, const char *key, struct strata_digest *ret)
{
	const char *s = json_get_str(o, key);

	if (!s || strata_digest_parse(s, ret, NULL) < 0)
		return -EBADMSG;
	return 0;
}

static int digests_from_json(const json_t *o, const char *key, struct strata_digest **ret,
                             size_t *ret_n)
{
	json_t *a = json_get_array(o, key), *v;
	struct strata_digest *d;
	size_t i;

	if (!a)
		return -EBADMSG;
	d = calloc(MAX(json_array_size(a), (size_t)1), sizeof(*d));
	if (!d)
		return -ENOMEM;
	json_array_foreach (a, i, v)
		if (!json_is_string(v) ||
		    strata_digest_parse(json_string_value(v), &d[i], NULL) < 0) {
			free(d);
			return -EBADMSG;
		}
	*ret = d;
	*ret_n = json_array_size(a);
	return 0;
}

static int strdup_json(const json_t *o, const char *key, char **ret)
{
	const char *s = json_get_str(o, key);

	if (!s)
		return -EBADMSG;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

int content_image_record_decode(const void *buf, size_t len, struct content_image_record *ret)
{
	_cleanup_json_ json_t *o = NULL;
	struct content_image_record r = {0};
	json_t *labels, *v;
	const char *key;
	int e;

	if (json_parse(buf, len, "image record", &o, NULL) < 0 || !json_is_object(o))
		return -EBADMSG;
	if (json_get_int(o, "v", 0) != RECORD_VERSION)
		return -EBADMSG;
	e = strdup_json(o, "name", &r.name);
	if (e >= 0)
		e = strdup_json(o, "mediaType", &r.media_type);
	if (e >= 0)
		e = strdup_json(o, "platform", &r.platform);
	if (e >= 0)
		e = digest_from_json(o, "digest", &r.digest);
	if (e >= 0)
		e = digest_from_json(o, "manifest", &r.manifest_digest);
	if (e >= 0)
		e = digest_from_json(o, "config", &r.config_digest);
	if (e >= 0)
		e = digests_from_json(o, "layers", &r.layers, &r.n_layers);
	if (e >= 0)
		e = digests_from_json(o, "chainIDs", &r.chain_ids, &r.n_chain_ids);
	if (e < 0)
		goto fail;
	r.size = json_get_int(o, "size", 0);
	r.created_at = ns_ts(json_get_int(o, "created", 0));
	r.updated_at = ns_ts(json_get_int(o, "updated", 0));
	labels = json_get_obj(o, "labels");
	if (labels && json_object_size(labels) > 0) {
		r.labels = calloc(json_object_size(labels), sizeof(*r.labels));
		if (!r.labels) {
			e = -ENOMEM;
			goto fail;
		}
		json_object_foreach (labels, key, v) {
			struct content_label *l = &r.labels[r.n_labels];

			if (!json_is_string(v)) {
				e = -EBADMSG;
				goto fail;
			}
			l->key = strdup(key);
			l->value = strdup(json_string_value(v));
			r.n_labels++;
			if (!l->key || !l->value) {
				e = -ENOMEM;
				goto fail;
			}
		}
		/* jansson keeps insertion order; the dump sorted them */
		e = content_labels_normalize(r.labels, r.n_labels, NULL);
		if (e < 0)
			goto fail;
	}
	*ret = r;
	return 0;
fail:
	content_image_record_done(&r);
	return e;
}

int content_image_chain_ids(const struct strata_digest *diff_ids, size_t n,
                            struct strata_digest *ret)
{
	for (size_t i = 0; i < n; i++) {
		char prev[STRATA_DIGEST_STRING_MAX], cur[STRATA_DIGEST_STRING_MAX];
		char buf[2 * STRATA_DIGEST_STRING_MAX];
		int len, r;

		if (i == 0) {
			ret[0] = diff_ids[0];
			continue;
		}
		len = snprintf(buf, sizeof(buf), "%s %s", strata_digest_format(&ret[i - 1], prev),
		               strata_digest_format(&diff_ids[i], cur));
		r = strata_sha256(buf, (size_t)len, &ret[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* --- the store ------------------------------------------------------------- */

struct put_ctx {
	const struct content_image_record *r;
	int64_t now;
};

static int put_fn(const void *old, size_t old_len, void *userdata, void **ret_new,
                  size_t *ret_new_len)
{
	struct put_ctx *c = userdata;
	struct content_image_record copy = *c->r;
	struct content_image_record prev = {0};
	char *buf;
	size_t len;
	int r;

	copy.updated_at = ns_ts(c->now);
	if (old && content_image_record_decode(old, old_len, &prev) >= 0) {
		copy.created_at = prev.created_at;
		content_image_record_done(&prev);
	} else if (ts_ns(&c->r->created_at) == 0) {
		copy.created_at = copy.updated_at;
	}
	r = content_image_record_encode(&copy, &buf, &len);
	if (r < 0)
		return r;
	*ret_new = buf;
	*ret_new_len = len;
	return 0;
}

int content_image_put(struct content_store *s, const struct content_image_record *r,
                      struct strata_error **ret_err)
{
	struct put_ctx c = {.r = r, .now = content_now_ns()};
	int e;

	if (!r->name || !*r->name)
		return strata_error_set(ret_err, -EINVAL, "image record without a name");
	if (r->n_layers != r->n_chain_ids)
		return strata_error_set(ret_err, -EINVAL, "image %s: %zu layers but %zu chain IDs",
		                        r->name, r->n_layers, r->n_chain_ids);
	e = content_db_image_update(s, r->name, put_fn, &c);
	if (e < 0)
		return strata_error_set_errno(ret_err, e, "store image record %s", r->name);
	return 0;
}

int content_image_get(struct content_store *s, const char *name, struct content_image_record *ret,
                      struct strata_error **ret_err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = content_db_image_get(s, name, &buf, &len);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "image \"%s\": not found", name);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read image record \"%s\"", name);
	r = content_image_record_decode(buf, len, ret);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "decode image record \"%s\"", name);
	return 0;
}

static int delete_fn(const void *old, size_t old_len, void *userdata, void **ret_new,
                     size_t *ret_new_len)
{
	*ret_new = NULL;
	*ret_new_len = 0;
	return 0;
}

int content_image_delete(struct content_store *s, const char *name, struct strata_error **ret_err)
{
	int r = content_db_image_update(s, name, delete_fn, NULL);

	if (r == -ENOENT || r == -EINVAL)
		return strata_error_set(ret_err, -ENOENT, "image \"%s\": not found", name);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "delete image record \"%s\"", name);
	return 0;
}

struct walk_ctx {
	const struct strata_filter *filter;
	content_image_walk_fn fn;
	void *userdata;
	const struct content_image_record *cur;
	char digest[STRATA_DIGEST_STRING_MAX];
	char manifest[STRATA_DIGEST_STRING_MAX];
	char config[STRATA_DIGEST_STRING_MAX];
};

static bool field_of(const char *const path[], size_t n, void *userdata, const char **ret)
{
	struct walk_ctx *c = userdata;
	const struct content_image_record *r = c->cur;

	if (n == 1 && streq(path[0], "name"))
		*ret = r->name;
	else if ((n == 1 && streq(path[0], "digest")) ||
	         (n == 2 && streq(path[0], "target") && streq(path[1], "digest")))
		*ret = c->digest;
	else if (n == 1 && streq(path[0], "manifest"))
		*ret = c->manifest;
	else if (n == 1 && streq(path[0], "config"))
		*ret = c->config;
	else if (n == 1 && streq(path[0], "platform"))
		*ret = r->platform;
	else if ((n == 1 && streq(path[0], "mediatype")) ||
	         (n == 2 && streq(path[0], "target") && streq(path[1], "mediatype")))
		*ret = r->media_type;
	else if (n == 2 && streq(path[0], "labels")) {
		for (size_t i = 0; i < r->n_labels; i++)
			if (streq(r->labels[i].key, path[1])) {
				*ret = r->labels[i].value;
				return true;
			}
		return false;
	} else
		return false;
	return true;
}

static int walk_one(const char *buf, size_t len, void *userdata)
{
	struct walk_ctx *c = userdata;
	struct content_image_record r;
	int e;

	if (content_image_record_decode(buf, len, &r) < 0) {
		log_debug("image store: undecodable record skipped");
		return 0;
	}
	c->cur = &r;
	(void)strata_digest_format(&r.digest, c->digest);
	(void)strata_digest_format(&r.manifest_digest, c->manifest);
	(void)strata_digest_format(&r.config_digest, c->config);
	e = 0;
	if (!c->filter || strata_filter_match(c->filter, field_of, c))
		e = c->fn(&r, c->userdata);
	content_image_record_done(&r);
	return e;
}

int content_image_walk(struct content_store *s, const char *const filters[], size_t n,
                       content_image_walk_fn fn, void *userdata, struct strata_error **ret_err)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	struct walk_ctx c = {.fn = fn, .userdata = userdata};
	int r;

	if (n > 0) {
		r = strata_filter_parse(filters, n, &f, ret_err);
		if (r < 0)
			return r;
		c.filter = f;
	}
	r = content_db_image_walk(s, walk_one, &c);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "list images");
	return 0;
}

/* --- pins ------------------------------------------------------------------ */

/* Protected by pins_lock. Per process: the daemon has one store, and pins
 * only matter while the pull that took them runs. */
struct pin {
	const struct content_store *s;
	struct strata_digest d;
	unsigned count;
	struct pin *next;
};

static pthread_mutex_t pins_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pin *pins;

int content_image_pin(struct content_store *s, const struct strata_digest *d)
{
	struct pin *p;

	pthread_mutex_lock(&pins_lock);
	for (p = pins; p; p = p->next)
		if (p->s == s && strata_digest_equal(&p->d, d))
			break;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&pins_lock);
			return -ENOMEM;
		}
		p->s = s;
		p->d = *d;
		p->next = pins;
		pins = p;
	}
	p->count++;
	pthread_mutex_unlock(&pins_lock);
	return 0;
}

void content_image_unpin(struct content_store *s, const struct strata_digest *d)
{
	pthread_mutex_lock(&pins_lock);
	for (struct pin **pp = &pins; *pp; pp = &(*pp)->next) {
		struct pin *p = *pp;

		if (p->s != s || !strata_digest_equal(&p->d, d))
			continue;
		if (--p->count == 0) {
			*pp = p->next;
			free(p);
		}
		break;
	}
	pthread_mutex_unlock(&pins_lock);
}

static bool pinned(struct content_store *s, const struct strata_digest *d)
{
	bool found = false;

	pthread_mutex_lock(&pins_lock);
	for (struct pin *p = pins; p && !found; p = p->next)
		found = p->s == s && strata_digest_equal(&p->d, d);
	pthread_mutex_unlock(&pins_lock);
	return found;
}

struct ref_ctx {
	const struct strata_digest *d;
	bool found;
};

static int ref_one(const struct content_image_record *r, void *userdata)
{
	struct ref_ctx *c = userdata;

	c->found = strata_digest_equal(&r->digest, c->d) ||
	           strata_digest_equal(&r->manifest_digest, c->d) ||
	           strata_digest_equal(&r->config_digest, c->d);
	for (size_t i = 0; !c->found && i < r->n_layers; i++)
		c->found = strata_digest_equal(&r->layers[i], c->d);
	return c->found ? 1 : 0;
}

int content_image_referenced(struct content_store *s, const struct strata_digest *d)
{
	struct ref_ctx c = {.d = d};
	int r;

	if (pinned(s, d))
		return 1;
	r = content_image_walk(s, NULL, 0, ref_one, &c, NULL);
	if (r < 0)
		return r;
	/* a pull may have pinned it while we walked */
	return c.found || pinned(s, d);
}

/* --- marks ------------------------------------------------------------------ */

int content_mark_is_private(struct content_store *s, const struct strata_digest *d)
{
	uint32_t flags;
	int r = content_db_mark_get(s, d, &flags);

	if (r < 0)
		return r;
	return !!(flags & CONTENT_MARK_PRIVATE);
}

int content_mark_set_private(struct content_store *s, const struct strata_digest *d, bool on)
{
	return content_db_mark_set(s, d, on ? CONTENT_MARK_PRIVATE : 0);
}

int content_containerd_claim(struct content_store *s, const struct strata_digest *d)
{
	int r = content_mark_is_private(s, d);

	if (r <= 0)
		return r;
	return content_mark_set_private(s, d, false);
}

int content_containerd_delete(struct content_store *s, const struct strata_digest *d,
                              struct strata_error **ret_err)
{
	char buf[STRATA_DIGEST_STRING_MAX];
	int r;

	r = content_db_get(s, d, NULL);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "content digest %s: not found",
		                        strata_digest_format(d, buf));
	r = content_image_referenced(s, d);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "delete %s",
		                              strata_digest_format(d, buf));
	if (r > 0) {
		log_debug("content %s: still used by a Strata image, keeping the blob",
		          strata_digest_format(d, buf));
		r = content_mark_set_private(s, d, true);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "mark %s",
			                              strata_digest_format(d, buf));
		return 0;
	}
	r = content_delete(s, d, ret_err);
	if (r < 0)
		return r;
	(void)content_mark_set_private(s, d, false);
	return 0;
}

int content_ingest_open_data(struct content_store *s, const char *ref)
{
	char hex[STRATA_SHA256_HEX_LEN + 1], path[STRATA_SHA256_HEX_LEN + 8];
	struct strata_digest d;
	int fd, r;

	/* the ingest directory is named by sha256(ref) (writer.c) */
	r = strata_sha256(ref, strlen(ref), &d);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/data", strata_digest_hex(&d, hex));
	fd = openat(s->ingest_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? negative_errno() : fd;
}
