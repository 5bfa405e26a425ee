/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata.images.v1.Images: Strata's own image store on the daemon's socket
 * (Pull in pull.c; List, Get, Delete, Prune here).
 *
 * Coexistence with containerd on one store
 * ----------------------------------------
 * containerd uses the same Snapshots and Content services through
 * proxy_plugins, and its garbage collector lists everything there and
 * deletes what its own metadata does not know (metadata/gc + content.go
 * garbageCollect: Walk the backend, Delete every digest no namespace has).
 * Strata's images must survive that, and Strata's Prune must never remove
 * what containerd uses.
 *
 * Snapshots. Strata's are named "@strata/<chainID>" (committed layers) and
 * "@strata/extract/<chainID>" (a layer being unpacked). containerd's keys
 * are "<namespace>/<seq>/<key>" and namespaces match
 * ^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$, so no containerd key starts with '@'.
 * The Snapshots service (svc-snapshots.c) leaves '@' keys out of List and
 * answers NotFound for them (as key, name or parent) on every other call:
 * containerd can neither see nor remove them, nor build on them. Prune
 * removes only '@strata/' snapshots that no image's chain names, children
 * first; containerd's are never considered.
 *
 * Content. Blobs are shared: one file per digest, whoever wrote it. A blob
 * Strata's pull stores for itself is marked private (content.h,
 * CONTENT_MARK_PRIVATE) right after its commit; a blob that was already
 * there keeps its owner. The Content service (svc-content.c) then:
 *   - List: leaves private blobs out, so containerd's collector never sees
 *     them and never deletes them;
 *   - Info: answers, and claims the blob for containerd (clears the mark).
 *     That is what containerd's "shared" content policy relies on: its
 *     Writer asks the backend for Info of the expected digest and, when it
 *     exists, records it in its metadata without writing a byte. From then
 *     on containerd may reference the blob, so it must be listed (for its
 *     collector) and Prune must not remove it. A claim that turns out
 *     unnecessary is harmless: the collector deletes what containerd does
 *     not know, which (below) turns the blob back into Strata's;
 *   - Write: a commit, successful or AlreadyExists, claims the blob.
 *     containerd's metadata writer treats AlreadyExists from the backend's
 *     Commit as success and records the blob (namespacedWriter.commit), so
 *     containerd pulling an image Strata already has works, downloading or
 *     not;
 *   - Delete: when a Strata image names the blob (or a running pull pinned
 *     it), only containerd's claim goes: the blob stays and becomes private
 *     again. Otherwise it is deleted.
 * Strata's Prune runs content_gc as a dry run with every image's target,
 * manifest, config and layers as roots (its GC labels reach the rest), then
 * deletes only the unreachable blobs that are private. A blob containerd
 * wrote or claimed is never private, so Prune never removes it; containerd's
 * collector owns those.
 *
 * Lazy layers. A layer pulled lazily (pull.c) is a remote snapshot under
 * "@strata/<chainID>" like any other chain, so Prune keeps it while an image
 * names the chain; its blob was never stored, and a root that names missing
 * content is fine for content_gc, so nothing else changes. Get reads only
 * the manifest and config, which every pull stores. Prune with `cache`
 * also evicts the shared chunk cache (snap_lazy_prune_cache): chunks are
 * refetched from the registry when read again, so dropping any is safe.
 *
 * Snapshots. ListSnapshots shows every snapshot of the store, Strata's own
 * ('@' keys, hidden from containerd's Snapshots service) included, with the
 * counters of mounted lazy layers; RemoveSnapshots refuses a chain an image
 * record names.
 *
 * Races. Pulls hold img->prune_lock shared and Prune holds it exclusively,
 * so Prune never sees a pull's blobs or snapshots before their image record
 * exists. containerd's collector can run during a pull: a pull pins every
 * digest it is about to store before storing it, and a pinned blob counts as
 * referenced, so the window between a blob's commit and its private mark is
 * covered too. containerd serialises its own writers and its collector, so
 * Info's claim and the collector's List never interleave for one blob.
 */
#include <inttypes.h>
#include <string.h>

#include "empty.pb-c.h"
#include "metrics.h"
#include "proxy-internal.h"
#include "pull-internal.h"

#define LABEL_REMOTE "containerd.io/snapshot/remote"

typedef Strata__Images__V1__Image ImagePb;
typedef Strata__Images__V1__Image__LabelsEntry ImageLabelPb;

/* --- Image messages -------------------------------------------------------- */

static char *digest_strdup(const struct strata_digest *d)
{
	char buf[STRATA_DIGEST_STRING_MAX];

	return strdup(strata_digest_format(d, buf));
}

void proxy_image_pb_free(ImagePb *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->digest);
	free(p->media_type);
	free(p->created_at);
	free(p->updated_at);
	free(p->config_digest);
	free(p->manifest_digest);
	for (size_t i = 0; i < p->n_chain_ids; i++)
		free(p->chain_ids[i]);
	free(p->chain_ids);
	free(p->platform);
	proxy_labels_pb_free((struct proxy_label_pb **)p->labels, p->n_labels);
	free(p);
}

ImagePb *proxy_image_pb_new(const struct content_image_record *r)
{
	ImagePb *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	strata__images__v1__image__init(p);
	p->name = strdup(strempty(r->name));
	p->digest = digest_strdup(&r->digest);
	p->media_type = strdup(strempty(r->media_type));
	p->size = r->size;
	p->created_at = proxy_timestamp_new(&r->created_at);
	p->updated_at = proxy_timestamp_new(&r->updated_at);
	p->config_digest = digest_strdup(&r->config_digest);
	p->manifest_digest = digest_strdup(&r->manifest_digest);
	p->platform = strdup(strempty(r->platform));
	p->chain_ids = calloc(MAX(r->n_chain_ids, (size_t)1), sizeof(*p->chain_ids));
	p->labels = (ImageLabelPb **)proxy_labels_to_pb(
	        &strata__images__v1__image__labels_entry__descriptor,
	        (const struct proxy_label *)r->labels, r->n_labels);
	if (p->labels)
		p->n_labels = r->n_labels;
	if (!p->name || !p->digest || !p->media_type || !p->created_at || !p->updated_at ||
	    !p->config_digest || !p->manifest_digest || !p->platform || !p->chain_ids || !p->labels)
		goto fail;
	for (size_t i = 0; i < r->n_chain_ids; i++) {
		p->chain_ids[i] = digest_strdup(&r->chain_ids[i]);
		if (!p->chain_ids[i])
			goto fail;
		p->n_chain_ids++;
	}
	return p;
fail:
	proxy_image_pb_free(p);
	return NULL;
}

/* "busybox" -> "docker.io/library/busybox:latest"; a name that does not parse
 * as a reference is used as it is (records are keyed by normalised names). */
static char *normalize_name(const char *name)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;

	if (content_ref_parse(strempty(name), &ref, NULL) < 0)
		return strdup(strempty(name));
	return content_ref_format(ref);
}

/* --- handlers -------------------------------------------------------------- */

static int images_pull(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                       struct strata_error **ret_err)
{
	return proxy_pull(userdata, call, (const void *)request, ret_err);
}

struct list_ctx {
	ImagePb **images;
	size_t n, cap;
};

static int list_one(const struct content_image_record *r, void *userdata)
{
	struct list_ctx *c = userdata;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		ImagePb **p = realloc(c->images, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		c->images = p;
		c->cap = cap;
	}
	c->images[c->n] = proxy_image_pb_new(r);
	if (!c->images[c->n])
		return -ENOMEM;
	c->n++;
	return 0;
}

static int images_list(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                       struct strata_error **ret_err)
{
	const Strata__Images__V1__ListImagesRequest *req = (const void *)request;
	Strata__Images__V1__ListImagesResponse resp =
	        STRATA__IMAGES__V1__LIST_IMAGES_RESPONSE__INIT;
	struct proxy_images *img = userdata;
	struct list_ctx c = {0};
	int r;

	r = content_image_walk(img->content, (const char *const *)req->filters, req->n_filters,
	                       list_one, &c, ret_err);
	if (r >= 0) {
		resp.images = c.images;
		resp.n_images = c.n;
		r = proxy_call_send(call, &resp.base);
	}
	for (size_t i = 0; i < c.n; i++)
		proxy_image_pb_free(c.images[i]);
	free(c.images);
	return r;
}

/* The whole blob d, NUL-terminated (manifests and configs: small). */
static int read_blob(struct content_store *s, const struct strata_digest *d, uint8_t **ret,
                     size_t *ret_len, struct strata_error **ret_err)
{
	_cleanup_(content_reader_freep) struct content_reader *rd = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	int64_t size;
	ssize_t n;
	int r;

	r = content_reader_open(s, d, &rd, ret_err);
	if (r < 0)
		return r;
	size = content_reader_size(rd);
	if (size > (int64_t)PROXY_MAX_MESSAGE_SIZE / 2)
		return strata_error_set(ret_err, -EMSGSIZE, "blob of %" PRId64 " bytes", size);
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	n = content_reader_pread(rd, buf, (size_t)size, 0);
	if (n != size)
		return strata_error_set_errno(ret_err, n < 0 ? (int)n : -EIO, "read blob");
	*ret_len = (size_t)size;
	*ret = TAKE_PTR(buf);
	return 0;
}

static int images_get(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                      struct strata_error **ret_err)
{
	const Strata__Images__V1__GetImageRequest *req = (const void *)request;
	Strata__Images__V1__GetImageResponse resp = STRATA__IMAGES__V1__GET_IMAGE_RESPONSE__INIT;
	struct proxy_images *img = userdata;
	_cleanup_free_ char *name = normalize_name(req->name);
	_cleanup_free_ uint8_t *manifest = NULL, *config = NULL;
	struct content_image_record rec = {0};
	char d[STRATA_DIGEST_STRING_MAX];
	int r;

	if (!name)
		return -ENOMEM;
	r = content_image_get(img->content, name, &rec, ret_err);
	if (r < 0)
		return r;
	r = read_blob(img->content, &rec.manifest_digest, &manifest, &resp.manifest.len, ret_err);
	if (r < 0)
		(void)strata_error_prefix(ret_err, r, "image %s: manifest %s", name,
		                          strata_digest_format(&rec.manifest_digest, d));
	if (r >= 0) {
		r = read_blob(img->content, &rec.config_digest, &config, &resp.config.len, ret_err);
		if (r < 0)
			(void)strata_error_prefix(ret_err, r, "image %s: config %s", name,
			                          strata_digest_format(&rec.config_digest, d));
	}
	if (r >= 0) {
		resp.manifest.data = manifest;
		resp.config.data = config;
		resp.image = proxy_image_pb_new(&rec);
		r = resp.image ? proxy_call_send(call, &resp.base) : -ENOMEM;
		proxy_image_pb_free(resp.image);
	}
	content_image_record_done(&rec);
	return r;
}

static int images_delete(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                         struct strata_error **ret_err)
{
	const Strata__Images__V1__DeleteImageRequest *req = (const void *)request;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	struct proxy_images *img = userdata;
	_cleanup_free_ char *name = normalize_name(req->name);
	int r;

	if (!name)
		return -ENOMEM;
	r = content_image_delete(img->content, name, ret_err);
	if (r < 0)
		return r;
	return proxy_call_send(call, &e.base);
}

/* --- prune ----------------------------------------------------------------- */

struct strv {
	char **v;
	size_t n, cap;
};

static int strv_push(struct strv *s, char *str)
{
	if (!str)
		return -ENOMEM;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			free(str);
			return -ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = str;
	return 0;
}

static bool strv_has(const struct strv *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (streq(s->v[i], str))
			return true;
	return false;
}

static void strv_done(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){0};
}

struct prune_roots {
	struct strata_digest *d;
	size_t n, cap;
	struct strv chains; /* "@strata/<chainID>" of every image */
};

static int roots_push(struct prune_roots *p, const struct strata_digest *d)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct strata_digest *a = realloc(p->d, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		p->d = a;
		p->cap = cap;
	}
	p->d[p->n++] = *d;
	return 0;
}

static int roots_one(const struct content_image_record *r, void *userdata)
{
	struct prune_roots *p = userdata;
	int e;

	e = roots_push(p, &r->digest);
	if (e >= 0)
		e = roots_push(p, &r->manifest_digest);
	if (e >= 0)
		e = roots_push(p, &r->config_digest);
	for (size_t i = 0; e >= 0 && i < r->n_layers; i++)
		e = roots_push(p, &r->layers[i]);
	for (size_t i = 0; e >= 0 && i < r->n_chain_ids; i++) {
		char key[PROXY_STRATA_KEY_MAX];

		proxy_strata_snapshot_key(&r->chain_ids[i], key);
		if (!strv_has(&p->chains, key))
			e = strv_push(&p->chains, strdup(key));
	}
	return e;
}

struct snap_candidates {
	const struct strv *keep;
	struct strv names;
};

static int snap_candidate(const struct snap_info *info, void *userdata)
{
	struct snap_candidates *c = userdata;

	/* "@strata/ctr/<id>" belongs to a container (svc-snapshots.c): never
	 * pruned; its image's layers stay while it exists (they have a child). */
	if (strncmp(info->name, PROXY_STRATA_KEY_PREFIX, strlen(PROXY_STRATA_KEY_PREFIX)) != 0 ||
	    strncmp(info->name, PROXY_STRATA_KEY_PREFIX "ctr/",
	            strlen(PROXY_STRATA_KEY_PREFIX "ctr/")) == 0 ||
	    strv_has(c->keep, info->name))
		return 0;
	return strv_push(&c->names, strdup(info->name));
}

struct prune_result {
	struct strv blobs;
	struct strv snapshots;
	int64_t bytes;
};

static int prune_blobs(struct proxy_images *img, const struct prune_roots *roots, bool dry_run,
                       struct prune_result *res, struct strata_error **ret_err)
{
	struct content_gc_result gc = {0};
	int r;

	/* Mark with containerd's GC labels from our roots; we sweep ourselves,
	 * because only private blobs are ours to remove. */
	/* No grace period: Prune holds the lock that keeps Strata's pulls out,
	 * and only private (Strata-written) blobs are removed below, so a
	 * concurrent containerd write can never be swept. */
	r = content_gc(img->content, roots->d, roots->n,
	               &(struct content_gc_options){.dry_run = true, .grace_ns = -1}, &gc, ret_err);
	if (r < 0)
		return r;
	for (size_t i = 0; r >= 0 && i < gc.n_removed; i++) {
		const struct strata_digest *d = &gc.removed[i];
		struct content_info info = {0};

		if (content_mark_is_private(img->content, d) != 1)
			continue; /* containerd's: its collector decides */
		if (content_info(img->content, d, &info, NULL) < 0)
			continue;
		if (!dry_run) {
			r = content_delete(img->content, d, ret_err);
			if (r == -ENOENT)
				r = 0;
			if (r >= 0)
				(void)content_mark_set_private(img->content, d, false);
		}
		if (r >= 0) {
			res->bytes += info.size;
			r = strv_push(&res->blobs, digest_strdup(d));
		}
		content_info_done(&info);
	}
	content_gc_result_done(&gc);
	return r;
}

static int prune_snapshots(struct proxy_images *img, const struct prune_roots *roots, bool dry_run,
                           struct prune_result *res, struct strata_error **ret_err)
{
	struct snap_candidates c = {.keep = &roots->chains};
	bool progress = true;
	int r;

	r = snap_walk(img->snaps, NULL, 0, snap_candidate, &c, ret_err);
	if (r < 0)
		goto out;
	/* Children first: a parent refuses removal (-ENOTEMPTY) until its
	 * children are gone, so go round until nothing more can go. */
	while (progress && c.names.n > 0) {
		progress = false;
		for (size_t i = 0; i < c.names.n;) {
			struct snap_usage u = {0};
			char *name = c.names.v[i];

			(void)snap_usage(img->snaps, name, &u, NULL);
			r = dry_run ? 0 : snap_remove(img->snaps, name, NULL);
			if (r == -ENOTEMPTY) {
				i++;
				continue;
			}
			if (r < 0 && r != -ENOENT)
				log_debug("prune: remove snapshot %s: %s", name, strerror(-r));
			if (r >= 0) {
				res->bytes += u.size;
				r = strv_push(&res->snapshots, name);
				if (r < 0)
					goto out;
			} else {
				free(name);
			}
			c.names.v[i] = c.names.v[--c.names.n];
			progress = true;
		}
	}
	r = 0;
out:
	strv_done(&c.names);
	return r;
}

static int images_prune(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                        struct strata_error **ret_err)
{
	const Strata__Images__V1__PruneRequest *req = (const void *)request;
	Strata__Images__V1__PruneResponse resp = STRATA__IMAGES__V1__PRUNE_RESPONSE__INIT;
	struct proxy_images *img = userdata;
	struct prune_roots roots = {0};
	struct prune_result res = {0};
	int r;

	pthread_rwlock_wrlock(&img->prune_lock);
	r = content_image_walk(img->content, NULL, 0, roots_one, &roots, ret_err);
	if (r >= 0)
		r = prune_snapshots(img, &roots, req->dry_run, &res, ret_err);
	if (r >= 0)
		r = prune_blobs(img, &roots, req->dry_run, &res, ret_err);
	pthread_rwlock_unlock(&img->prune_lock);
	if (r >= 0 && req->cache) {
		/* after the snapshots: chunks of removed layers go too */
		uint64_t before = 0, after = 0;

		r = proxy_lazy_cache_usage(img->snaps, &before, NULL);
		if (r >= 0 && !req->dry_run)
			r = snap_lazy_prune_cache(img->snaps, req->cache_keep_bytes);
		if (r >= 0)
			r = proxy_lazy_cache_usage(img->snaps, &after, NULL);
		if (r < 0)
			(void)strata_error_set_errno(ret_err, r, "chunk cache");
		if (req->dry_run)
			after = MIN(before, req->cache_keep_bytes);
		resp.cache_bytes_before = (int64_t)before;
		resp.cache_bytes_after = (int64_t)after;
		if (r >= 0)
			log_info("prune: chunk cache %" PRIu64 " -> %" PRIu64 " bytes%s", before,
			         after, req->dry_run ? " (dry run)" : "");
	}
	if (r >= 0) {
		log_info("prune: %s %zu blobs and %zu snapshots, %" PRId64 " bytes",
		         req->dry_run ? "would remove" : "removed", res.blobs.n, res.snapshots.n,
		         res.bytes);
		resp.removed_blobs = res.blobs.v;
		resp.n_removed_blobs = res.blobs.n;
		resp.removed_snapshots = res.snapshots.v;
		resp.n_removed_snapshots = res.snapshots.n;
		resp.reclaimed_bytes = res.bytes;
		r = proxy_call_send(call, &resp.base);
	} else {
		(void)strata_error_prefix(ret_err, r, "prune");
	}
	free(roots.d);
	strv_done(&roots.chains);
	strv_done(&res.blobs);
	strv_done(&res.snapshots);
	return r;
}

/* --- snapshots ------------------------------------------------------------- */

typedef Strata__Images__V1__Snapshot SnapPb;
typedef Strata__Images__V1__Snapshot__LabelsEntry SnapLabelPb;
typedef Strata__Images__V1__LazyStats LazyStatsPb;

static void snap_pb_free(SnapPb *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->parent);
	free(p->kind);
	free(p->created_at);
	free(p->updated_at);
	proxy_labels_pb_free((struct proxy_label_pb **)p->labels, p->n_labels);
	free(p->lazy);
	free(p);
}

static SnapPb *snap_pb_new(struct snap_store *snaps, const struct snap_info *info, bool usage)
{
	SnapPb *p = calloc(1, sizeof(*p));
	struct snap_lazy_stats st;

	if (!p)
		return NULL;
	strata__images__v1__snapshot__init(p);
	p->name = strdup(info->name);
	p->parent = strdup(strempty(info->parent));
	p->kind = strdup(snap_kind_to_string(info->kind));
	p->created_at = proxy_timestamp_new(&info->created);
	p->updated_at = proxy_timestamp_new(&info->updated);
	p->labels = (SnapLabelPb **)proxy_labels_to_pb(
	        &strata__images__v1__snapshot__labels_entry__descriptor,
	        (const struct proxy_label *)info->labels, info->n_labels);
	if (p->labels)
		p->n_labels = info->n_labels;
	if (!p->name || !p->parent || !p->kind || !p->created_at || !p->updated_at || !p->labels)
		goto fail;
	p->strata = info->name[0] == '@';
	p->remote = snap_info_label(info, LABEL_REMOTE) != NULL;
	if (p->remote && snap_lazy_stats(snaps, info->name, &st) >= 0) {
		LazyStatsPb *l = malloc(sizeof(*l));

		if (!l)
			goto fail;
		strata__images__v1__lazy_stats__init(l);
		l->bytes_fetched = st.bytes_fetched;
		l->requests = st.requests;
		l->chunks_fetched = st.chunks_fetched;
		l->cache_hits = st.cache_hits;
		l->cache_misses = st.cache_misses;
		l->verify_failures = st.verify_failures;
		l->toc_entries = st.toc_entries;
		l->toc_memory = st.toc_memory;
		l->blob_size = st.blob_size;
		l->healthy = st.healthy;
		/* constant strings: snap_pb_free frees only the message */
		l->prefetch = (char *)snap_lazy_phase_to_string(st.prefetch);
		l->prefetch_bytes = st.prefetch_bytes;
		l->prefetch_total = st.prefetch_total;
		l->background = (char *)snap_lazy_phase_to_string(st.background);
		l->background_done = st.background_done;
		l->background_total = st.background_total;
		l->pull_credentials = st.pull_credentials;
		p->lazy = l;
	}
	if (usage) {
		struct snap_usage u = {0};

		if (snap_usage(snaps, info->name, &u, NULL) >= 0) {
			p->has_usage = true;
			p->size = u.size;
			p->inodes = u.inodes;
		}
	}
	return p;
fail:
	snap_pb_free(p);
	return NULL;
}

struct snaps_ctx {
	struct snap_store *snaps;
	bool usage;
	SnapPb **v;
	size_t n, cap;
};

static int snaps_one(const struct snap_info *info, void *userdata)
{
	struct snaps_ctx *c = userdata;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 32;
		SnapPb **v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n] = snap_pb_new(c->snaps, info, c->usage);
	if (!c->v[c->n])
		return -ENOMEM;
	c->n++;
	return 0;
}

static int images_list_snapshots(struct proxy_call *call, const ProtobufCMessage *request,
                                 void *userdata, struct strata_error **ret_err)
{
	const Strata__Images__V1__ListSnapshotsRequest *req = (const void *)request;
	Strata__Images__V1__ListSnapshotsResponse resp =
	        STRATA__IMAGES__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
	struct proxy_images *img = userdata;
	struct snaps_ctx c = {.snaps = img->snaps, .usage = req->usage};
	int r;

	if (req->key && *req->key) {
		struct snap_info info = {0};

		r = snap_stat(img->snaps, req->key, &info, ret_err);
		if (r >= 0)
			r = snaps_one(&info, &c);
		snap_info_done(&info);
	} else {
		r = snap_walk(img->snaps, (const char *const *)req->filters, req->n_filters,
		              snaps_one, &c, ret_err);
	}
	if (r >= 0) {
		resp.snapshots = c.v;
		resp.n_snapshots = c.n;
		r = proxy_call_send(call, &resp.base);
	}
	for (size_t i = 0; i < c.n; i++)
		snap_pb_free(c.v[i]);
	free(c.v);
	return r;
}

static int images_remove_snapshots(struct proxy_call *call, const ProtobufCMessage *request,
                                   void *userdata, struct strata_error **ret_err)
{
	const Strata__Images__V1__RemoveSnapshotsRequest *req = (const void *)request;
	Strata__Images__V1__RemoveSnapshotsResponse resp =
	        STRATA__IMAGES__V1__REMOVE_SNAPSHOTS_RESPONSE__INIT;
	struct proxy_images *img = userdata;
	struct prune_roots roots = {0};
	struct strv removed = {0}, errors = {0};
	int r;

	/* exclusive, like Prune: no pull is between its snapshots and its
	 * image record while we decide what an image names */
	pthread_rwlock_wrlock(&img->prune_lock);
	r = content_image_walk(img->content, NULL, 0, roots_one, &roots, ret_err);
	for (size_t i = 0; r >= 0 && i < req->n_keys; i++) {
		_cleanup_error_ struct strata_error *err = NULL;
		const char *key = req->keys[i];
		char *line = NULL;
		int e;

		if (strv_has(&roots.chains, key)) {
			if (asprintf(&line, "%s: an image uses it (remove the image first)", key) <
			    0)
				line = NULL;
			r = strv_push(&errors, line);
			continue;
		}
		e = snap_remove(img->snaps, key, &err);
		if (e >= 0) {
			r = strv_push(&removed, strdup(key));
			continue;
		}
		if (asprintf(&line, "%s: %s", key, err ? strata_error_message(err) : strerror(-e)) <
		    0)
			line = NULL;
		r = strv_push(&errors, line);
	}
	pthread_rwlock_unlock(&img->prune_lock);
	if (r >= 0) {
		resp.removed = removed.v;
		resp.n_removed = removed.n;
		resp.errors = errors.v;
		resp.n_errors = errors.n;
		r = proxy_call_send(call, &resp.base);
	}
	free(roots.d);
	strv_done(&roots.chains);
	strv_done(&removed);
	strv_done(&errors);
	return r;
}

static int images_view_snapshot(struct proxy_call *call, const ProtobufCMessage *request,
                                void *userdata, struct strata_error **ret_err)
{
	const Strata__Images__V1__ViewSnapshotRequest *req = (const void *)request;
	Strata__Images__V1__ViewSnapshotResponse resp =
	        STRATA__IMAGES__V1__VIEW_SNAPSHOT_RESPONSE__INIT;
	struct proxy_images *img = userdata;
	struct snap_mount *mounts = NULL;
	Strata__Images__V1__SnapshotMount *pb = NULL, **ptrs = NULL;
	size_t n = 0;
	int r;

	if (strncmp(strempty(req->key), PROXY_STRATA_KEY_PREFIX, strlen(PROXY_STRATA_KEY_PREFIX)) !=
	    0)
		return strata_error_set(ret_err, -EINVAL,
		                        "view key \"%s\" must start with \"" PROXY_STRATA_KEY_PREFIX
		                        "\" (containerd removes snapshots it does not know)",
		                        strempty(req->key));
	r = snap_view(img->snaps, req->key, req->parent, NULL, 0, &mounts, &n, ret_err);
	if (r < 0)
		return r;
	pb = calloc(MAX(n, (size_t)1), sizeof(*pb));
	ptrs = calloc(MAX(n, (size_t)1), sizeof(*ptrs));
	if (!pb || !ptrs) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		strata__images__v1__snapshot_mount__init(&pb[i]);
		pb[i].type = mounts[i].type;
		pb[i].source = mounts[i].source;
		pb[i].options = mounts[i].options;
		pb[i].n_options = mounts[i].n_options;
		ptrs[i] = &pb[i];
	}
	resp.mounts = ptrs;
	resp.n_mounts = n;
	r = proxy_call_send(call, &resp.base);
out:
	if (r < 0)
		(void)snap_remove(img->snaps, req->key, NULL);
	free(pb);
	free(ptrs);
	snap_mounts_free(mounts, n);
	return r;
}

static const struct proxy_method images_methods[] = {
        {"Pull", PROXY_SERVER_STREAM, &strata__images__v1__pull_request__descriptor, images_pull},
        {"List", PROXY_UNARY, &strata__images__v1__list_images_request__descriptor, images_list},
        {"Get", PROXY_UNARY, &strata__images__v1__get_image_request__descriptor, images_get},
        {"Delete", PROXY_UNARY, &strata__images__v1__delete_image_request__descriptor,
         images_delete},
        {"Prune", PROXY_UNARY, &strata__images__v1__prune_request__descriptor, images_prune},
        {"ListSnapshots", PROXY_UNARY, &strata__images__v1__list_snapshots_request__descriptor,
         images_list_snapshots},
        {"RemoveSnapshots", PROXY_UNARY, &strata__images__v1__remove_snapshots_request__descriptor,
         images_remove_snapshots},
        {"ViewSnapshot", PROXY_UNARY, &strata__images__v1__view_snapshot_request__descriptor,
         images_view_snapshot},
};

struct proxy_images *proxy_images_free(struct proxy_images *img)
{
	if (!img)
		return NULL;
	pthread_rwlock_destroy(&img->prune_lock);
	free(img->hosts_dir);
	free(img->docker_config_dir);
	free(img);
	return NULL;
}

int proxy_images_register(struct proxy_server *server, struct content_store *content,
                          struct snap_store *snaps, const struct proxy_images_options *opts,
                          struct proxy_images **ret, struct strata_error **ret_err)
{
	struct proxy_images *img = calloc(1, sizeof(*img));
	const char *hosts = opts && opts->hosts_dir ? opts->hosts_dir : PROXY_IMAGES_HOSTS_DIR;
	int r;

	if (!img)
		return -ENOMEM;
	img->content = content;
	img->snaps = snaps;
	pthread_rwlock_init(&img->prune_lock, NULL);
	img->hosts_dir = strdup(hosts);
	if (opts && opts->docker_config_dir)
		img->docker_config_dir = strdup(opts->docker_config_dir);
	if (!img->hosts_dir || (opts && opts->docker_config_dir && !img->docker_config_dir)) {
		proxy_images_free(img);
		return -ENOMEM;
	}
	r = proxy_server_register_service(server, "strata.images.v1.Images", images_methods,
	                                  ELEMENTSOF(images_methods), img, ret_err);
	if (r < 0) {
		proxy_images_free(img);
		return r;
	}
	*ret = img;
	return 0;
}
