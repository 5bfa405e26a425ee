/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maintenance: mark-and-sweep garbage collection over containerd's GC labels
 * and re-verification of every blob.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "content-internal.h"
#include "log.h"

#define GC_ROOT_LABEL    "containerd.io/gc.root"
#define GC_CONTENT_LABEL "containerd.io/gc.ref.content"

/* An open-addressing set of digests (sha256 bytes are uniformly spread, so
 * the first 8 bytes are the hash). */
struct digest_set {
	struct strata_digest *slots;
	bool *used;
	size_t cap, n;
};

static void digest_set_done(struct digest_set *set)
{
	free(set->slots);
	free(set->used);
	*set = (struct digest_set){0};
}

static size_t slot_of(const struct strata_digest *d, size_t cap)
{
	uint64_t h;
	memcpy(&h, d->sha256, sizeof(h));
	return (size_t)(h & (cap - 1));
}

static int digest_set_add(struct digest_set *set, const struct strata_digest *d);

static int digest_set_grow(struct digest_set *set)
{
	struct digest_set bigger = {.cap = set->cap ? set->cap * 2 : 1024};

	bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
	bigger.used = calloc(bigger.cap, sizeof(*bigger.used));
	if (!bigger.slots || !bigger.used) {
		digest_set_done(&bigger);
		return -ENOMEM;
	}
	for (size_t i = 0; i < set->cap; i++)
		if (set->used[i])
			(void)digest_set_add(&bigger, &set->slots[i]);
	digest_set_done(set);
	*set = bigger;
	return 0;
}

/* 1 when added, 0 when already present. */
static int digest_set_add(struct digest_set *set, const struct strata_digest *d)
{
	size_t i;
	int r;

	if ((set->n + 1) * 2 > set->cap) {
		r = digest_set_grow(set);
		if (r < 0)
			return r;
	}
	for (i = slot_of(d, set->cap); set->used[i]; i = (i + 1) & (set->cap - 1))
		if (strata_digest_equal(&set->slots[i], d))
			return 0;
	set->used[i] = true;
	set->slots[i] = *d;
	set->n++;
	return 1;
}

static bool digest_set_has(const struct digest_set *set, const struct strata_digest *d)
{
	if (set->cap == 0)
		return false;
	for (size_t i = slot_of(d, set->cap); set->used[i]; i = (i + 1) & (set->cap - 1))
		if (strata_digest_equal(&set->slots[i], d))
			return true;
	return false;
}

struct digest_list {
	struct strata_digest *d;
	size_t n, cap;
};

static int digest_list_push(struct digest_list *l, const struct strata_digest *d)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct strata_digest *a = realloc(l->d, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		l->d = a;
		l->cap = cap;
	}
	l->d[l->n++] = *d;
	return 0;
}

/* containerd (metadata/gc.go): the key itself, or the key followed by '.'
 * or '/' and any name. */
static bool is_content_ref_label(const char *key)
{
	size_t l = strlen(GC_CONTENT_LABEL);
	return strncmp(key, GC_CONTENT_LABEL, l) == 0 &&
	       (key[l] == '\0' || key[l] == '.' || key[l] == '/');
}

static int collect_roots(const struct content_info *info, void *userdata)
{
	struct digest_list *queue = userdata;

	if (content_info_label(info, GC_ROOT_LABEL))
		return digest_list_push(queue, &info->digest);
	return 0;
}

struct sweep_ctx {
	const struct digest_set *live;
	int64_t started_ns;
	struct digest_list dead;
};

static int collect_dead(const struct content_info *info, void *userdata)
{
	struct sweep_ctx *c = userdata;
	int64_t created = (int64_t)info->created_at.tv_sec * 1000000000 + info->created_at.tv_nsec;

	if (digest_set_has(c->live, &info->digest) || created >= c->started_ns)
		return 0;
	return digest_list_push(&c->dead, &info->digest);
}

void content_gc_result_done(struct content_gc_result *r)
{
	if (!r)
		return;
	free(r->removed);
	*r = (struct content_gc_result){0};
}

int content_gc(struct content_store *s, const struct strata_digest *roots, size_t n_roots,
               const struct content_gc_options *opts, struct content_gc_result *ret,
               struct strata_error **ret_err)
{
	const struct content_gc_options o = opts ? *opts : (struct content_gc_options){0};
	const bool dry_run = o.dry_run;
	const int64_t grace_ns = o.grace_ns == 0 ? 1000000000 : MAX(o.grace_ns, (int64_t)0);
	struct digest_set live = {0};
	struct digest_list queue = {0};
	struct sweep_ctx sweep = {.live = &live};
	struct content_gc_result result = {0};
	int r = 0;

	/* Anything committed from now on (less the grace period) is newer
	 * than this mark phase and survives it. */
	sweep.started_ns = content_now_ns() - grace_ns;

	for (size_t i = 0; i < n_roots && r >= 0; i++)
		r = digest_list_push(&queue, &roots[i]);
	if (r >= 0)
		r = content_db_walk(s, collect_roots, &queue);

	/* mark */
	while (r >= 0 && queue.n > 0) {
		struct strata_digest d = queue.d[--queue.n];
		struct content_info info;

		r = digest_set_add(&live, &d);
		if (r <= 0)
			continue; /* seen, or an error that ends the loop */
		r = content_db_get(s, &d, &info);
		if (r == -ENOENT) {
			r = 0; /* a reference to content we do not have */
			continue;
		}
		if (r < 0)
			break;
		for (size_t i = 0; i < info.n_labels && r >= 0; i++) {
			struct strata_digest ref;

			if (!is_content_ref_label(info.labels[i].key))
				continue;
			if (strata_digest_parse(info.labels[i].value, &ref, NULL) < 0) {
				log_debug("content gc: ignoring bad reference \"%s\" in %s",
				          info.labels[i].value, info.labels[i].key);
				continue;
			}
			if (!digest_set_has(&live, &ref))
				r = digest_list_push(&queue, &ref);
		}
		content_info_done(&info);
	}

	/* sweep */
	if (r >= 0)
		r = content_db_walk(s, collect_dead, &sweep);
	for (size_t i = 0; r >= 0 && i < sweep.dead.n; i++) {
		struct content_info info;

		if (content_db_get(s, &sweep.dead.d[i], &info) < 0)
			continue;
		if (!dry_run) {
			r = content_delete(s, &sweep.dead.d[i], NULL);
			if (r == -ENOENT) {
				r = 0;
				content_info_done(&info);
				continue;
			}
		}
		if (r >= 0) {
			result.bytes_removed += (uint64_t)info.size;
			sweep.dead.d[result.n_removed++] = sweep.dead.d[i];
		}
		content_info_done(&info);
	}
	digest_set_done(&live);
	free(queue.d);
	if (r < 0) {
		free(sweep.dead.d);
		return strata_error_set_errno(ret_err, r, "content garbage collection");
	}
	result.removed = sweep.dead.d;
	if (ret)
		*ret = result;
	else
		free(result.removed);
	return 0;
}

struct verify_ctx {
	struct content_store *s;
	content_verify_fn fn;
	void *userdata;
	int bad;
};

static int verify_one(const struct content_info *info, void *userdata)
{
	struct verify_ctx *c = userdata;
	char hex[STRATA_SHA256_HEX_LEN + 1];
	_cleanup_close_ int fd = -1;
	struct strata_digest got;
	uint64_t size = 0;
	int r;

	strata_digest_hex(&info->digest, hex);
	fd = openat(c->s->blobs_fd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		r = negative_errno();
	else
		r = strata_sha256_fd(fd, &got, &size);
	if (r >= 0 && (!strata_digest_equal(&got, &info->digest) || (int64_t)size != info->size))
		r = -EBADMSG;
	if (r < 0) {
		c->bad++;
		if (c->fn)
			c->fn(&info->digest, r, c->userdata);
	}
	return 0;
}

int content_verify_all(struct content_store *s, content_verify_fn fn, void *userdata,
                       struct strata_error **ret_err)
{
	struct verify_ctx c = {.s = s, .fn = fn, .userdata = userdata};
	int r;

	r = content_db_walk(s, verify_one, &c);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "verify content");
	return c.bad;
}
