/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote snapshots: the decision in Prepare (serve this layer lazily, or let
 * containerd pull it), the on-disk record that lets a restarted daemon
 * remount it without the network, and the health check of Mounts/View.
 *
 * Every "no" is logged at info with its reason: images silently not pulled
 * lazily are the first complaint of stargz users.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lazy-internal.h"

#define LABEL_TARGET     "containerd.io/snapshot.ref"
#define LABEL_REMOTE     "containerd.io/snapshot/remote"
#define LABEL_CRI_REF    "containerd.io/snapshot/cri.image-ref"
#define LABEL_CRI_DIGEST "containerd.io/snapshot/cri.layer-digest"
#define LABEL_SGZ_REF    "containerd.io/snapshot/remote/stargz.reference"
#define LABEL_SGZ_DIGEST "containerd.io/snapshot/remote/stargz.digest"

static const char *label(const struct snap_label *labels, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (streq(labels[i].key, key))
			return labels[i].value;
	return NULL;
}

/* --- an image's other layers, ahead of their Prepare --------------------------
 *
 * containerd prepares an image's layers one after another, and each Prepare
 * would resolve the image again and wait for its own footer and TOC reads.
 * So the first Prepare of an image records every layer of the manifest it
 * resolved (size, toc.digest annotation) and fetches the TOCs of the other
 * annotated layers in parallel with its own (all joined before it returns:
 * no thread outlives it). A later Prepare of the same reference and layer
 * takes its entry: no request at all when its TOC came along. A TOC is
 * verified against its annotation when fetched; a Prepare whose labels name
 * another toc.digest does not take it. Entries expire after AHEAD_TTL_SEC;
 * the table is small and bounded (a full one records nothing more). */
#define AHEAD_MAX     16
#define AHEAD_TTL_SEC 120
#define SIBLINGS_MAX  8

struct ahead {
	char *ref; /* NULL: a free slot */
	struct strata_digest digest;
	uint64_t size;
	bool has_tocd;
	struct strata_digest tocd;
	struct timespec t;
	struct content_estargz_toc *toc; /* verified against tocd, or NULL */
	char *json;
	size_t json_len;
	uint64_t fetched;
};

/* ahead_lock protects ahead_tab; held only around table updates. */
static pthread_mutex_t ahead_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ahead ahead_tab[AHEAD_MAX];

static void ahead_clear(struct ahead *a)
{
	free(a->ref);
	content_estargz_toc_free(a->toc);
	free(a->json);
	*a = (struct ahead){0};
}

static void ahead_expire_locked(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (size_t i = 0; i < AHEAD_MAX; i++)
		if (ahead_tab[i].ref && ahead_tab[i].t.tv_sec + AHEAD_TTL_SEC < now.tv_sec)
			ahead_clear(&ahead_tab[i]);
}

static struct ahead *ahead_find_locked(const char *ref, const struct strata_digest *d)
{
	for (size_t i = 0; i < AHEAD_MAX; i++)
		if (ahead_tab[i].ref && streq(ahead_tab[i].ref, ref) &&
		    strata_digest_equal(&ahead_tab[i].digest, d))
			return &ahead_tab[i];
	return NULL;
}

/* Record a layer of ref's manifest (not its TOC). */
static void ahead_record(const char *ref, const struct content_image_descriptor *d)
{
	const char *t = content_image_descriptor_annotation(d, CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
	struct ahead *a;

	pthread_mutex_lock(&ahead_lock);
	ahead_expire_locked();
	a = ahead_find_locked(ref, &d->digest);
	for (size_t i = 0; !a && i < AHEAD_MAX; i++)
		if (!ahead_tab[i].ref) {
			a = &ahead_tab[i];
			a->ref = strdup(ref);
			if (!a->ref)
				a = NULL;
			break;
		}
	if (a) {
		a->digest = d->digest;
		a->size = (uint64_t)d->size;
		a->has_tocd = t && strata_digest_parse(t, &a->tocd, NULL) == 0;
		clock_gettime(CLOCK_MONOTONIC, &a->t);
	}
	pthread_mutex_unlock(&ahead_lock);
}

/* Take (remove) ref's entry for layer d: 0 and its fields, or -ENOENT. */
static int ahead_take(const char *ref, const struct strata_digest *d, struct ahead *ret)
{
	struct ahead *a;

	pthread_mutex_lock(&ahead_lock);
	ahead_expire_locked();
	a = ahead_find_locked(ref, d);
	if (a) {
		*ret = *a;
		*a = (struct ahead){0};
	}
	pthread_mutex_unlock(&ahead_lock);
	return a ? 0 : -ENOENT;
}

/* Store a fetched TOC in ref's entry for d (when it is still there). */
static void ahead_store(const char *ref, const struct strata_digest *d,
                        struct content_estargz_toc *toc, char *json, size_t json_len,
                        uint64_t fetched)
{
	struct ahead *a;

	pthread_mutex_lock(&ahead_lock);
	a = ahead_find_locked(ref, d);
	if (a && !a->toc) {
		a->toc = TAKE_PTR(toc);
		a->json = TAKE_PTR(json);
		a->json_len = json_len;
		a->fetched = fetched;
	}
	pthread_mutex_unlock(&ahead_lock);
	content_estargz_toc_free(toc);
	free(json);
}

/* Forget ref's layers (TOCs included). */
static void ahead_drop(const char *ref)
{
	pthread_mutex_lock(&ahead_lock);
	for (size_t i = 0; i < AHEAD_MAX; i++)
		if (ahead_tab[i].ref && streq(ahead_tab[i].ref, ref))
			ahead_clear(&ahead_tab[i]);
	pthread_mutex_unlock(&ahead_lock);
}

struct sibling {
	struct lazy_manager *m;
	const struct content_ref *ref;
	const char *ref_s;
	struct ahead a; /* a copy: digest, size, tocd */
	pthread_t thread;
};

static void *sibling_main(void *userdata)
{
	struct sibling *sb = userdata;
	struct content_estargz_toc *toc = NULL;
	char *json = NULL;
	size_t json_len = 0;
	uint64_t fetched = 0;

	if (content_estargz_open_remote(sb->m->registry, sb->ref, &sb->a.digest, sb->a.size,
	                                &sb->a.tocd, &toc, &json, &json_len, &fetched, NULL) == 0)
		ahead_store(sb->ref_s, &sb->a.digest, toc, json, json_len, fetched);
	return NULL;
}

/* Start fetching the TOCs of ref's other recorded, annotated layers. */
static size_t siblings_start(struct lazy_manager *m, const struct content_ref *ref,
                             const char *ref_s, const struct strata_digest *self,
                             struct sibling *sb)
{
	size_t n = 0;

	pthread_mutex_lock(&ahead_lock);
	for (size_t i = 0; i < AHEAD_MAX && n < SIBLINGS_MAX; i++) {
		const struct ahead *a = &ahead_tab[i];
		if (a->ref && streq(a->ref, ref_s) && a->has_tocd && !a->toc &&
		    !strata_digest_equal(&a->digest, self)) {
			sb[n] = (struct sibling){.m = m, .ref = ref, .ref_s = ref_s};
			sb[n].a.digest = a->digest;
			sb[n].a.size = a->size;
			sb[n].a.tocd = a->tocd;
			n++;
		}
	}
	pthread_mutex_unlock(&ahead_lock);
	for (size_t i = 0; i < n; i++)
		if (pthread_create(&sb[i].thread, NULL, sibling_main, &sb[i]) != 0)
			sb[i].m = NULL;
	return n;
}

struct siblings {
	struct sibling sb[SIBLINGS_MAX];
	size_t n;
};

/* Also the cleanup of every return after siblings_start(): the threads use
 * the caller's ref. */
static void siblings_join(struct siblings *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->sb[i].m)
			pthread_join(s->sb[i].thread, NULL);
	s->n = 0;
}

/* The layer's size and toc.digest annotation from the image's manifest
 * (verified against the digest it resolved to). Records the manifest's
 * layers for the Prepare calls that follow. */
static int resolve_layer(struct lazy_manager *m, const struct content_ref *ref, const char *ref_s,
                         const struct strata_digest *layer, uint64_t *ret_size,
                         char **ret_toc_digest, struct strata_error **ret_err)
{
	struct content_image_descriptor desc = {0};
	_cleanup_(content_image_manifest_freep) struct content_image_manifest *man = NULL;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = content_registry_resolve(m->registry, ref, &desc, ret_err);
	if (r < 0)
		return r;
	for (int depth = 0; depth < 2; depth++) {
		enum content_media_kind k = content_image_media_kind(desc.media_type);
		free(buf);
		buf = NULL;
		r = content_registry_fetch_manifest(m->registry, ref, &desc, &buf, &len, ret_err);
		if (r < 0)
			goto out;
		if (k == CONTENT_MEDIA_INDEX) {
			_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;
			struct content_image_platform want = {0};
			const struct content_image_descriptor *pick;

			r = content_image_index_parse(buf, len, desc.media_type, &idx, ret_err);
			if (r >= 0)
				r = content_image_platform_default(&want);
			if (r >= 0)
				r = content_image_index_select(idx, &want, &pick, ret_err);
			if (r >= 0) {
				content_image_descriptor_done(&desc);
				r = content_image_descriptor_copy(pick, &desc);
			}
			content_image_platform_done(&want);
			if (r < 0)
				goto out;
			continue;
		}
		r = content_image_manifest_parse(buf, len, desc.media_type, &man, ret_err);
		if (r < 0)
			goto out;
		break;
	}
	r = -ENOENT;
	if (man)
		for (size_t i = 0; i < man->n_layers; i++) {
			const struct content_image_descriptor *d = &man->layers[i];
			const char *t;

			if (!strata_digest_equal(&d->digest, layer)) {
				ahead_record(ref_s, d);
				continue;
			}
			if (r == 0)
				continue; /* listed twice */
			*ret_size = (uint64_t)d->size;
			t = content_image_descriptor_annotation(d,
			                                        CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
			*ret_toc_digest = t ? strdup(t) : NULL;
			r = 0;
		}
	if (r == -ENOENT)
		(void)strata_error_set(ret_err, r, "layer not found in the image's manifest");
out:
	content_image_descriptor_done(&desc);
	return r;
}

static char *snap_dir(struct snap_store *s, uint64_t id, const char *name)
{
	char *p;
	return asprintf(&p, "%s/%" PRIu64 "/%s", s->snapshots_dir, id, name) < 0 ? NULL : p;
}

/* Write name in dfd whole, replacing it; fdatasync'ed when sync. */
static int write_at(int dfd, const char *name, const void *data, size_t len, bool sync)
{
	_cleanup_close_ int fd = -1;
	int r;

	fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return negative_errno();
	r = loop_write(fd, data, len);
	if (r == 0 && sync && fdatasync(fd) < 0)
		r = negative_errno();
	return r;
}

static int open_snap_dir(struct snap_store *s, uint64_t id)
{
	char d[24];

	snprintf(d, sizeof(d), "%" PRIu64, id);
	return openat(s->snapshots_fd, d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

struct fill_ctx {
	const char *rec, *json;
	size_t json_len;
};

/* The snapshot's directory before the metadata write makes it visible.
 * The record is what a restart remounts from: durable, data and directory
 * entry, first. toc.json is not synced: remount() fetches the TOC again
 * (and checks it against the record's toc_digest) when a crash lost or cut
 * it. Written in place, not renamed: nothing reads them before the write,
 * and a crash before it leaves the directory to Cleanup. */
static int fill_remote(struct snap_store *s, uint64_t id, void *userdata)
{
	const struct fill_ctx *c = userdata;
	_cleanup_close_ int dfd = open_snap_dir(s, id);
	int r;

	if (dfd < 0)
		return negative_errno();
	r = write_at(dfd, "toc.json", c->json, c->json_len, false);
	if (r == 0)
		r = write_at(dfd, "remote", c->rec, strlen(c->rec), true);
	if (r == 0 && fsync(dfd) < 0)
		r = negative_errno();
	return r;
}

struct remote_record {
	char ref[1024];
	char digest[STRATA_DIGEST_STRING_MAX];
	char toc_digest[STRATA_DIGEST_STRING_MAX];
	uint64_t size, toc_offset;
	bool unverified;
	bool pull_credentials; /* read through a `strata pull`'s route */
};

static int read_record(struct snap_store *s, uint64_t id, struct remote_record *rec)
{
	_cleanup_free_ char *buf = NULL;
	char d[40];
	int r;

	snprintf(d, sizeof(d), "%" PRIu64 "/remote", id);
	r = path_read_file_at(s->snapshots_fd, d, 8192, &buf, NULL);
	if (r < 0)
		return r;
	*rec = (struct remote_record){0};
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char *v = strchr(line, '=');
		if (!v)
			continue;
		*v++ = '\0';
		if (streq(line, "ref"))
			snprintf(rec->ref, sizeof(rec->ref), "%s", v);
		else if (streq(line, "digest"))
			snprintf(rec->digest, sizeof(rec->digest), "%s", v);
		else if (streq(line, "toc_digest"))
			snprintf(rec->toc_digest, sizeof(rec->toc_digest), "%s", v);
		else if (streq(line, "size"))
			rec->size = strtoull(v, NULL, 10);
		else if (streq(line, "toc_offset"))
			rec->toc_offset = strtoull(v, NULL, 10);
		else if (streq(line, "unverified"))
			rec->unverified = streq(v, "1");
		else if (streq(line, "pull_credentials"))
			rec->pull_credentials = streq(v, "1");
	}
	return rec->ref[0] && rec->digest[0] && rec->toc_digest[0] && rec->size ? 0 : -EBADMSG;
}

static void fallback(const char *what, const char *why, const struct strata_error *err)
{
	if (err)
		log_info("layer %s: %s: %s: falling back to full pull", what, why,
		         strata_error_message(err));
	else
		log_info("layer %s: %s: falling back to full pull", what, why);
}

int lazy_remote_prepare(struct snap_store *s, const char *key, const char *parent,
                        const struct snap_label *labels, size_t n_labels,
                        struct strata_error **ret_err)
{
	struct lazy_manager *m = s->lazy;
	const char *target = label(labels, n_labels, LABEL_TARGET);
	const char *ref_s = label(labels, n_labels, LABEL_CRI_REF);
	const char *dig_s = label(labels, n_labels, LABEL_CRI_DIGEST);
	const char *toc_s = label(labels, n_labels, CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_free_ char *json = NULL, *man_toc = NULL, *rec = NULL, *mp = NULL;
	_cleanup_free_ struct snap_label *cl = NULL;
	struct strata_digest digest, tocd;
	struct snap_record existing = {0};
	struct lazy_layer *l = NULL;
	uint64_t size = 0, fetched = 0, id;
	size_t json_len = 0;
	bool verified = true;
	_cleanup_(ahead_clear) struct ahead ahead = {0};
	double t[5];
	int r;

	if (!m || !target)
		return 0;
	t[0] = log_now_ms();
	if (!ref_s || !dig_s) {
		ref_s = label(labels, n_labels, LABEL_SGZ_REF);
		dig_s = label(labels, n_labels, LABEL_SGZ_DIGEST);
	}
	if (!ref_s || !dig_s) {
		fallback(target, "no image reference and layer digest labels (cri.* or stargz.*)",
		         NULL);
		return 0;
	}
	if (strata_digest_parse(dig_s, &digest, NULL) < 0) {
		fallback(dig_s, "bad layer digest label", NULL);
		return 0;
	}

	/* The target may exist already (another namespace pulled this chain). */
	r = snap_meta_get(s, target, &existing);
	if (r == 0) {
		bool same = existing.info.kind == SNAP_KIND_COMMITTED &&
		            streq(strempty(existing.info.parent), strempty(parent)) &&
		            snap_info_label(&existing.info, LABEL_REMOTE);
		snap_record_done(&existing);
		if (same)
			return 1;
		fallback(dig_s, "a different snapshot is already named by its chain ID", NULL);
		return 0;
	}

	r = content_ref_parse(ref_s, &ref, &err);
	if (r < 0) {
		fallback(dig_s, "bad image reference", err);
		return 0;
	}
	/* after ref: joined before ref is freed */
	_cleanup_(siblings_join) struct siblings sibs = {.n = 0};
	if (ahead_take(ref_s, &digest, &ahead) == 0) {
		char ts[STRATA_DIGEST_STRING_MAX];
		size = ahead.size;
		if (ahead.has_tocd)
			man_toc = strdup(strata_digest_format(&ahead.tocd, ts));
	} else {
		r = resolve_layer(m, ref, ref_s, &digest, &size, &man_toc, &err);
		if (r < 0) {
			fallback(dig_s, "cannot resolve the layer", err);
			return 0;
		}
		sibs.n = siblings_start(m, ref, ref_s, &digest, sibs.sb);
	}
	t[1] = log_now_ms();
	if (!toc_s)
		toc_s = man_toc;
	if (toc_s) {
		if (strata_digest_parse(toc_s, &tocd, NULL) < 0) {
			fallback(dig_s, "bad toc.digest annotation", NULL);
			return 0;
		}
	} else if (!m->opts.allow_unverified) {
		fallback(dig_s, "no toc.digest annotation: refusing unverified layer", NULL);
		return 0;
	} else {
		verified = false;
	}

	if (ahead.toc && verified && strata_digest_equal(&ahead.tocd, &tocd)) {
		/* fetched (and verified against tocd) by the image's first Prepare */
		toc = TAKE_PTR(ahead.toc);
		json = TAKE_PTR(ahead.json);
		json_len = ahead.json_len;
		fetched = ahead.fetched;
		r = 0;
	} else {
		r = content_estargz_open_remote(m->registry, ref, &digest, size,
		                                verified ? &tocd : NULL, &toc, &json, &json_len,
		                                &fetched, &err);
	}
	siblings_join(&sibs);
	if (r == -EMEDIUMTYPE) {
		log_info("layer %s is not eStargz (no footer): falling back to full pull", dig_s);
		return 0;
	}
	if (r == -EOPNOTSUPP) {
		/* a small sibling's whole-blob "range" may have looked fine:
		 * none of this image's layers can be read lazily from here */
		ahead_drop(ref_s);
		fallback(dig_s, "registry ignores Range", err);
		return 0;
	}
	if (r < 0) {
		fallback(dig_s, "cannot read its eStargz TOC", err);
		return 0;
	}
	if (!verified)
		(void)strata_sha256(json, json_len, &tocd);
	t[2] = log_now_ms();

	/* Remote record + TOC -> the committed snapshot, in one metadata
	 * write (the Prepare key is never stored) -> mount. */
	{
		char ts[STRATA_DIGEST_STRING_MAX];
		if (asprintf(&rec,
		             "ref=%s\ndigest=%s\nsize=%" PRIu64
		             "\ntoc_digest=%s\ntoc_offset=%" PRIu64
		             "\nunverified=%d\npull_credentials=%d\n",
		             ref_s, dig_s, size, strata_digest_format(&tocd, ts), toc->toc_offset,
		             !verified, content_registry_client_routed(m->registry, ref)) < 0)
			return -ENOMEM;
	}
	cl = calloc(n_labels + 1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	{
		struct fill_ctx fc = {.rec = rec, .json = json, .json_len = json_len};
		bool name_exists = false;
		size_t n = 0;

		for (size_t i = 0; i < n_labels; i++)
			if (!streq(labels[i].key, LABEL_REMOTE))
				cl[n++] = labels[i];
		cl[n++] =
		        (struct snap_label){.key = (char *)LABEL_REMOTE, .value = (char *)"strata"};
		r = snap_create_committed(s, target, key, parent, cl, n, fill_remote, &fc, &id,
		                          &name_exists, &err);
		if (r < 0 && name_exists) {
			/* made meanwhile by another Prepare of the chain */
			fallback(dig_s, "commit of the remote snapshot failed", err);
			return 0;
		}
		if (r < 0) {
			strata_error_propagate(ret_err, &err);
			return r;
		}
	}
	t[3] = log_now_ms();
	mp = snap_dir(s, id, "fs");
	if (!mp) {
		r = -ENOMEM;
		goto fail_target;
	}
	r = lazy_layer_new(m, id, ref_s, &digest, size, toc, mp, &l);
	if (r < 0)
		goto fail_target;
	toc = NULL; /* the layer owns it */
	r = lazy_layer_start(l, &err);
	if (r < 0) {
		lazy_layer_free(l);
		goto fail_target;
	}
	log_info("layer %s: mounted lazily (eStargz, %" PRIu32 " entries, TOC %zu bytes in "
	         "memory, %" PRIu64 " of %" PRIu64 " bytes fetched)",
	         dig_s, l->toc->n_entries, content_estargz_toc_memory(l->toc), fetched, size);
	atomic_fetch_add(&l->bytes_fetched, fetched);
	t[4] = log_now_ms();
	log_debug("layer %s: resolve %.1f ms, TOC %.1f ms, record+commit %.1f ms, mount %.1f ms",
	          dig_s, t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3]);
	return 1;

fail_target:
	fallback(dig_s, "mount failed", err);
	(void)snap_remove(s, target, NULL);
	return 0;
}

/* The layer's TOC from the registry, checked against the record's
 * toc_digest (for an unverified layer, the digest of the TOC it was mounted
 * with) and toc_offset. */
static int refetch_toc(struct lazy_manager *m, const struct remote_record *rec,
                       const struct strata_digest *digest, const struct strata_digest *tocd,
                       struct content_estargz_toc **ret, char **ret_json, size_t *ret_json_len,
                       uint64_t *ret_fetched, struct strata_error **ret_err)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	int r;

	r = content_ref_parse(rec->ref, &ref, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "its TOC is lost and its reference is bad");
	r = content_estargz_open_remote(m->registry, ref, digest, rec->size, tocd, &toc, ret_json,
	                                ret_json_len, ret_fetched, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "its TOC is lost: fetch it again");
	if (toc->toc_offset != rec->toc_offset) {
		free(TAKE_PTR(*ret_json));
		return strata_error_set(ret_err, -EBADMSG,
		                        "its TOC is lost and the registry's blob differs");
	}
	*ret = TAKE_PTR(toc);
	return 0;
}

/* Remount one remote snapshot from its record and local TOC (or, when a
 * crash lost that, the registry's). */
static int remount(struct snap_store *s, const struct snap_record *sr,
                   struct strata_error **ret_err)
{
	struct lazy_manager *m = s->lazy;
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_free_ char *json = NULL, *mp = NULL;
	struct remote_record rec;
	struct strata_digest digest, tocd;
	_cleanup_error_ struct strata_error *err = NULL;
	struct lazy_layer *l = NULL;
	size_t json_len = 0;
	uint64_t fetched = 0;
	char p[40];
	int r;

	r = read_record(s, sr->id, &rec);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read its remote record");
	if (strata_digest_parse(rec.digest, &digest, NULL) < 0 ||
	    strata_digest_parse(rec.toc_digest, &tocd, NULL) < 0)
		return strata_error_set(ret_err, -EBADMSG, "bad digests in its remote record");
	snprintf(p, sizeof(p), "%" PRIu64 "/toc.json", sr->id);
	r = path_read_file_at(s->snapshots_fd, p, CONTENT_ESTARGZ_TOC_MAX, &json, &json_len);
	if (r < 0)
		(void)strata_error_set_errno(&err, r, "read its TOC");
	else
		r = content_estargz_toc_parse(json, json_len, &tocd, rec.toc_offset, &toc, &err);
	if (r < 0) {
		log_info("remote snapshot \"%s\": local TOC unusable (%s): fetching it again",
		         sr->info.name, strata_error_message(err));
		free(TAKE_PTR(json));
		toc = content_estargz_toc_free(toc);
		r = refetch_toc(m, &rec, &digest, &tocd, &toc, &json, &json_len, &fetched, ret_err);
		if (r < 0)
			return r;
		/* best effort, unsynced as at Prepare: the next start fetches
		 * again if this one is lost */
		_cleanup_close_ int dfd = open_snap_dir(s, sr->id);
		if (dfd < 0 || write_at(dfd, "toc.json", json, json_len, false) < 0)
			log_debug("remote snapshot \"%s\": cannot store its TOC again",
			          sr->info.name);
	}
	mp = snap_dir(s, sr->id, "fs");
	if (!mp)
		return -ENOMEM;
	/* lazy_layer_start resumes a mount kept across the restart, or
	 * detaches what is left there and mounts afresh */
	r = lazy_layer_new(m, sr->id, rec.ref, &digest, rec.size, toc, mp, &l);
	if (r < 0)
		return r;
	toc = NULL;
	/* Unknown until the helper thread's probe answers: reads may still
	 * succeed from the cache meanwhile. */
	atomic_store(&l->healthy, false);
	r = lazy_layer_start(l, ret_err);
	if (r < 0) {
		lazy_layer_free(l);
		return r;
	}
	atomic_fetch_add(&l->bytes_fetched, fetched);
	/* the route a pull set died with the previous daemon */
	if (rec.pull_credentials && !content_registry_client_routed(m->registry, l->ref))
		log_warn("remote snapshot \"%s\" (%s): mounted with the credentials or transport "
		         "given to `strata pull`, which are kept in memory only; it now reads with "
		         "the daemon's (certs.d, docker config.json): if the registry refuses "
		         "them, reads fail and Mounts answers Unavailable until the image is "
		         "pulled again with them",
		         sr->info.name, rec.ref);
	return 0;
}

int lazy_remote_remount_all(struct snap_store *s, struct strata_error **ret_err)
{
	struct lazy_manager *m = s->lazy;
	struct snap_record *recs = NULL;
	size_t n = 0, mounted = 0, failed = 0;
	int r;

	if (!m)
		return 0;
	r = snap_meta_list(s, &recs, &n);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "list snapshots");
	for (size_t i = 0; i < n; i++) {
		_cleanup_error_ struct strata_error *err = NULL;

		if (recs[i].info.kind != SNAP_KIND_COMMITTED ||
		    !snap_info_label(&recs[i].info, LABEL_REMOTE) ||
		    lazy_manager_find(m, recs[i].id))
			continue;
		r = remount(s, &recs[i], &err);
		if (r < 0) {
			failed++;
			log_warn("remote snapshot \"%s\": cannot remount: %s (Mounts will answer "
			         "Unavailable)",
			         recs[i].info.name, strata_error_message(err));
			pthread_mutex_lock(&m->lock);
			uint64_t *a = realloc(m->broken, (m->n_broken + 1) * sizeof(*a));
			if (a) {
				m->broken = a;
				m->broken[m->n_broken++] = recs[i].id;
			}
			pthread_mutex_unlock(&m->lock);
			continue;
		}
		mounted++;
	}
	for (size_t i = 0; i < n; i++)
		snap_record_done(&recs[i]);
	free(recs);
	if (m->handover)
		lazy_handover_release_unclaimed(m->handover);
	if (mounted || failed)
		log_info("remote snapshots: %zu remounted, %zu failed", mounted, failed);
	return failed ? -EIO : 0;
}

int lazy_remote_check_chain(struct snap_store *s, const uint64_t *ids, size_t n,
                            struct strata_error **ret_err)
{
	struct lazy_manager *m = s->lazy;

	if (!m)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct lazy_layer *l;
		bool broken = false;

		pthread_mutex_lock(&m->lock);
		for (size_t k = 0; k < m->n_broken; k++)
			broken |= m->broken[k] == ids[i];
		pthread_mutex_unlock(&m->lock);
		if (broken)
			return strata_error_set(ret_err, -EAGAIN,
			                        "remote layer of snapshot id %" PRIu64
			                        " is not mounted: unavailable",
			                        ids[i]);
		l = lazy_manager_find(m, ids[i]);
		/* one synchronous probe: right after a restart the helper's
		 * probe may not have answered yet */
		if (l && !atomic_load(&l->healthy) && !lazy_layer_probe(l))
			return strata_error_set(ret_err, -EAGAIN,
			                        "remote layer %s (snapshot id %" PRIu64
			                        "): registry unreachable: unavailable",
			                        l->ref_str, ids[i]);
	}
	return 0;
}

int snap_store_remount_remote(struct snap_store *s, struct strata_error **ret_err)
{
	return lazy_remote_remount_all(s, ret_err);
}

int snap_lazy_stats(struct snap_store *s, const char *key, struct snap_lazy_stats *ret)
{
	struct lazy_layer *l;
	uint64_t id;
	int r;

	if (!s->lazy)
		return -ENOENT;
	r = snap_get_id(s, key, &id, NULL);
	if (r < 0)
		return r;
	/* Under the manager's lock: a Remove of this snapshot (metrics walk
	 * every snapshot while containerd removes some) frees l only after it
	 * left m->layers. */
	pthread_mutex_lock(&s->lazy->lock);
	l = NULL;
	for (size_t i = 0; i < s->lazy->n_layers && !l; i++)
		if (s->lazy->layers[i]->id == id)
			l = s->lazy->layers[i];
	if (!l) {
		pthread_mutex_unlock(&s->lazy->lock);
		return -ENOENT;
	}
	*ret = (struct snap_lazy_stats){
	        .bytes_fetched = atomic_load(&l->bytes_fetched),
	        .requests = atomic_load(&l->requests),
	        .chunks_fetched = atomic_load(&l->chunks_fetched),
	        .cache_hits = atomic_load(&l->cache_hits),
	        .cache_misses = atomic_load(&l->cache_misses),
	        .verify_failures = atomic_load(&l->verify_failures),
	        .toc_entries = l->toc->n_entries,
	        .toc_memory = content_estargz_toc_memory(l->toc),
	        .blob_size = l->blob_size,
	        .healthy = atomic_load(&l->healthy),
	        .prefetch = (enum snap_lazy_phase)atomic_load(&l->prefetch_phase),
	        .background = (enum snap_lazy_phase)atomic_load(&l->bg_phase),
	        .prefetch_bytes = atomic_load(&l->prefetch_bytes),
	        .prefetch_total = l->toc->prefetch_end,
	        .background_done = atomic_load(&l->bg_done),
	        .background_total = l->toc->toc_offset > l->toc->prefetch_end
	                                    ? l->toc->toc_offset - l->toc->prefetch_end
	                                    : 0,
	        .pull_credentials = content_registry_client_routed(s->lazy->registry, l->ref),
	};
	pthread_mutex_unlock(&s->lazy->lock);
	return 0;
}

const char *snap_lazy_phase_to_string(enum snap_lazy_phase p)
{
	switch (p) {
	case SNAP_LAZY_NONE:
		return "none";
	case SNAP_LAZY_PENDING:
		return "pending";
	case SNAP_LAZY_RUNNING:
		return "running";
	case SNAP_LAZY_DONE:
		return "done";
	case SNAP_LAZY_FAILED:
		return "failed";
	}
	return "unknown";
}

struct content_registry_client *snap_lazy_registry(struct snap_store *s)
{
	return s->lazy ? s->lazy->registry : NULL;
}

int snap_lazy_prune_cache(struct snap_store *s, uint64_t target)
{
	if (!s->lazy)
		return 0;
	return lazy_cache_evict(s->lazy->cache, target);
}
