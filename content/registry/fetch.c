/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The distribution API calls: resolve, manifests, blobs, ranges. Each tries
 * the configured hosts that have the needed capability, in order (mirrors
 * first, the origin last), and moves to the next one on "not found" or on a
 * transport failure; an error from a later host does not hide a more
 * telling one ("refused access") from an earlier host.
 *
 * Everything that comes back is checked against the digest it was asked for
 * before it is handed out, except the bytes of a resumed or ranged blob
 * read, which only the caller can verify.
 */
#include <inttypes.h>
#include <string.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"

static const char manifest_accept[] = CONTENT_MEDIA_TYPE_OCI_MANIFEST
        ", " CONTENT_MEDIA_TYPE_OCI_INDEX ", " CONTENT_MEDIA_TYPE_DOCKER_MANIFEST
        ", " CONTENT_MEDIA_TYPE_DOCKER_LIST ", */*";

/* Keep the more telling of two errors: anything beats "not found". */
static void keep_error(struct strata_error **kept, struct strata_error **next)
{
	if (!*next)
		return;
	if (*kept && (*next)->code == -ENOENT && (*kept)->code != -ENOENT) {
		*next = strata_error_free(*next);
		return;
	}
	strata_error_free(*kept);
	*kept = TAKE_PTR(*next);
}

static int finish_error(struct strata_error **kept, int r, struct strata_error **ret_err,
                        const char *domain, const char *what)
{
	if (*kept) {
		r = (*kept)->code;
		strata_error_propagate(ret_err, kept);
		return r;
	}
	return strata_error_set(ret_err, r < 0 ? r : -ENOENT,
	                        "registry %s: %s: no configured host can serve it", domain, what);
}

struct membuf {
	char *buf;
	size_t len;
};

static int membuf_write(const void *buf, size_t len, void *userdata)
{
	struct membuf *m = userdata;
	char *n = realloc(m->buf, m->len + len + 1);
	if (!n)
		return -ENOMEM;
	memcpy(n + m->len, buf, len);
	m->len += len;
	n[m->len] = '\0';
	m->buf = n;
	return 0;
}

/* "type/subtype; charset=..." -> "type/subtype" */
static char *media_type_strip(const char *ct)
{
	size_t n;
	if (!ct)
		return NULL;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return strndup(ct, n);
}

/* The media type of a manifest-ish document: its announced Content-Type
 * when that is specific, else its own mediaType, else its shape. */
static char *manifest_media_type(const char *content_type, const char *buf, size_t len)
{
	_cleanup_free_ char *ct = media_type_strip(content_type);
	_cleanup_json_ json_t *j = NULL;
	const char *mt;

	if (ct && content_image_media_kind(ct) != CONTENT_MEDIA_UNKNOWN)
		return TAKE_PTR(ct);
	if (ct && !streq(ct, "application/json") && !streq(ct, "text/plain") &&
	    !streq(ct, "application/octet-stream"))
		return TAKE_PTR(ct); /* e.g. schema 1: refused later, by name */
	j = json_loadb(buf, len, 0, NULL);
	mt = json_get_str(j, "mediaType");
	if (mt)
		return strdup(mt);
	if (json_get_array(j, "manifests"))
		return strdup(CONTENT_MEDIA_TYPE_OCI_INDEX);
	if (json_get_obj(j, "config"))
		return strdup(CONTENT_MEDIA_TYPE_OCI_MANIFEST);
	return strdup(ct ? ct : "application/octet-stream");
}

static int check_digest(const void *buf, size_t len, const struct strata_digest *want,
                        const char *domain, const char *repo, const char *what,
                        const struct content_registry_host *h, struct strata_error **ret_err)
{
	struct strata_digest got;
	char gs[STRATA_DIGEST_STRING_MAX], ws[STRATA_DIGEST_STRING_MAX];
	int r = strata_sha256(buf, len, &got);
	if (r < 0)
		return r;
	if (strata_digest_equal(&got, want))
		return 0;
	return strata_error_set(ret_err, -EBADMSG,
	                        "registry %s: repository %s: %s: %s://%s returned content with "
	                        "digest %s, expected %s",
	                        domain, repo, what, h->scheme, h->host,
	                        strata_digest_format(&got, gs), strata_digest_format(want, ws));
}

static int resolve_on_host(struct content_registry_client *c, const struct content_ref *ref,
                           const struct content_registry_host *h,
                           struct content_image_descriptor *ret, struct strata_error **ret_err)
{
	const char *target = ref->digest ? ref->digest : ref->tag;
	_cleanup_free_ char *path = NULL, *what = NULL;
	struct registry_request req = {
	        .host = h,
	        .domain = ref->domain,
	        .repo = ref->path,
	        .method = "HEAD",
	        .accept = manifest_accept,
	        .range_start = -1,
	        .range_end = -1,
	};
	struct strata_digest want, got;
	bool have_want = false;
	struct membuf body = {0};
	int r;

	if (asprintf(&path, "/manifests/%s", target) < 0 ||
	    asprintf(&what, "resolve \"%s\"", target) < 0)
		return -ENOMEM;
	req.path = path;
	if (ref->digest) {
		r = strata_digest_parse(ref->digest, &want, ret_err);
		if (r < 0)
			return r;
		have_want = true;
	}

	r = registry_request_do(c, &req, what, ret_err);
	if (r == 0 && req.content_type && req.content_length > 0 &&
	    content_image_media_kind(req.content_type) != CONTENT_MEDIA_UNKNOWN &&
	    (have_want || req.docker_digest)) {
		if (!have_want) {
			_cleanup_error_ struct strata_error *derr = NULL;
			if (strata_digest_parse(req.docker_digest, &got, &derr) < 0)
				goto get; /* odd header: let the bytes decide */
		} else {
			got = want;
		}
		*ret = (struct content_image_descriptor){
		        .media_type = media_type_strip(req.content_type),
		        .digest = got,
		        .size = req.content_length,
		};
		registry_request_done(&req);
		return ret->media_type ? 0 : -ENOMEM;
	}
	if (r == -ENOENT || r == -EACCES || r == -ENOMEM)
		goto out;

get:
	/* HEAD refused, or said too little: GET and look at the bytes */
	if (ret_err && *ret_err)
		*ret_err = strata_error_free(*ret_err);
	registry_request_done(&req);
	req.method = "GET";
	req.max_body = CONTENT_MANIFEST_SIZE_MAX;
	req.fn = membuf_write;
	req.userdata = &body;
	req.delivered = 0;
	r = registry_request_do(c, &req, what, ret_err);
	if (r < 0)
		goto out;
	r = strata_sha256(body.buf ? body.buf : "", body.len, &got);
	if (r < 0)
		goto out;
	if (have_want) {
		r = check_digest(body.buf ? body.buf : "", body.len, &want, ref->domain, ref->path,
		                 what, h, ret_err);
		if (r < 0)
			goto out;
	} else if (req.docker_digest) {
		_cleanup_error_ struct strata_error *derr = NULL;
		struct strata_digest claimed;
		if (strata_digest_parse(req.docker_digest, &claimed, &derr) == 0) {
			r = check_digest(body.buf ? body.buf : "", body.len, &claimed, ref->domain,
			                 ref->path, what, h, ret_err);
			if (r < 0)
				goto out;
		}
	}
	*ret = (struct content_image_descriptor){
	        .media_type = manifest_media_type(req.content_type, body.buf, body.len),
	        .digest = got,
	        .size = (int64_t)body.len,
	};
	r = ret->media_type ? 0 : -ENOMEM;
out:
	free(body.buf);
	registry_request_done(&req);
	return r;
}

int content_registry_resolve(struct content_registry_client *c, const struct content_ref *ref,
                             struct content_image_descriptor *ret, struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_error_ struct strata_error *kept = NULL;
	const struct content_registry_hosts *hs;
	int r = -ENOENT;

	if (via)
		return content_registry_resolve(via, ref, ret, ret_err);

	r = registry_client_hosts(c, ref->domain, &hs, ret_err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < hs->n_hosts; i++) {
		_cleanup_error_ struct strata_error *err = NULL;
		struct content_image_descriptor d = {0};
		if (!(hs->hosts[i].capabilities & CONTENT_REGISTRY_CAP_RESOLVE))
			continue;
		r = resolve_on_host(c, ref, &hs->hosts[i], &d, &err);
		if (r == -ENOMEM)
			return r;
		if (r < 0) {
			log_debug("resolve %s/%s on %s: %s", ref->domain, ref->path,
			          hs->hosts[i].host, strata_error_message(err));
			keep_error(&kept, &err);
			continue;
		}
		if (content_image_media_kind(d.media_type) != CONTENT_MEDIA_MANIFEST &&
		    content_image_media_kind(d.media_type) != CONTENT_MEDIA_INDEX) {
			r = strata_error_set(
			        ret_err, -EOPNOTSUPP,
			        "registry %s: repository %s: \"%s\" has unsupported "
			        "media type \"%s\" (Strata reads OCI and Docker schema 2 "
			        "manifests and indexes)",
			        ref->domain, ref->path, ref->digest ? ref->digest : ref->tag,
			        d.media_type);
			content_image_descriptor_done(&d);
			return r;
		}
		*ret = d;
		return 0;
	}
	return finish_error(&kept, r, ret_err, ref->domain, "resolve");
}

int content_registry_fetch_manifest(struct content_registry_client *c,
                                    const struct content_ref *ref,
                                    const struct content_image_descriptor *desc, char **ret_buf,
                                    size_t *ret_len, struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_error_ struct strata_error *kept = NULL;
	const struct content_registry_hosts *hs;
	char ds[STRATA_DIGEST_STRING_MAX];
	_cleanup_free_ char *path = NULL, *what = NULL;
	int r;

	if (via)
		return content_registry_fetch_manifest(via, ref, desc, ret_buf, ret_len, ret_err);

	strata_digest_format(&desc->digest, ds);
	if (desc->size > (int64_t)CONTENT_MANIFEST_SIZE_MAX)
		return strata_error_set(ret_err, -EMSGSIZE,
		                        "registry %s: repository %s: manifest %s is %" PRId64
		                        " bytes, more than the %u MiB Strata accepts",
		                        ref->domain, ref->path, ds, desc->size,
		                        CONTENT_MANIFEST_SIZE_MAX >> 20);
	if (asprintf(&path, "/manifests/%s", ds) < 0 || asprintf(&what, "manifest %s", ds) < 0)
		return -ENOMEM;

	r = registry_client_hosts(c, ref->domain, &hs, ret_err);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < hs->n_hosts; i++) {
		const struct content_registry_host *h = &hs->hosts[i];
		_cleanup_error_ struct strata_error *err = NULL;
		struct membuf body = {0};
		struct registry_request req = {
		        .host = h,
		        .domain = ref->domain,
		        .repo = ref->path,
		        .method = "GET",
		        .path = path,
		        .accept = desc->media_type ? desc->media_type : manifest_accept,
		        .range_start = -1,
		        .range_end = -1,
		        .max_body = CONTENT_MANIFEST_SIZE_MAX,
		        .fn = membuf_write,
		        .userdata = &body,
		};

		if (!(h->capabilities & CONTENT_REGISTRY_CAP_PULL))
			continue;
		r = registry_request_do(c, &req, what, &err);
		registry_request_done(&req);
		if (r == 0 && desc->size > 0 && (int64_t)body.len != desc->size)
			r = strata_error_set(&err, -EBADMSG,
			                     "registry %s: repository %s: %s: %s://%s returned %zu "
			                     "bytes, expected %" PRId64,
			                     ref->domain, ref->path, what, h->scheme, h->host,
			                     body.len, desc->size);
		if (r == 0)
			r = check_digest(body.buf ? body.buf : "", body.len, &desc->digest,
			                 ref->domain, ref->path, what, h, &err);
		if (r == 0) {
			if (!body.buf && !(body.buf = strdup("")))
				return -ENOMEM;
			*ret_buf = body.buf;
			*ret_len = body.len;
			return 0;
		}
		free(body.buf);
		if (r == -ENOMEM)
			return r;
		keep_error(&kept, &err);
	}
	return finish_error(&kept, r, ret_err, ref->domain, what);
}

struct blob_sink {
	content_registry_write_fn fn;
	void *userdata;
	struct strata_hasher *hasher; /* NULL unless verifying */
	uint64_t pos;                 /* absolute offset of the next byte */
	int64_t size;                 /* expected, <= 0 unknown */
	bool overflow;
	int fn_err; /* the caller's callback failed: stop, do not retry */
};

static int blob_sink_write(const void *buf, size_t len, void *userdata)
{
	struct blob_sink *s = userdata;
	int r;

	if (s->size > 0 && s->pos + len > (uint64_t)s->size) {
		s->overflow = true;
		return -EBADMSG;
	}
	if (s->hasher) {
		r = strata_hasher_update(s->hasher, buf, len);
		if (r < 0)
			return r;
	}
	r = s->fn(buf, len, s->userdata);
	if (r < 0) {
		s->fn_err = r;
		return r;
	}
	s->pos += len;
	return 0;
}

int content_registry_fetch_blob(struct content_registry_client *c, const struct content_ref *ref,
                                const struct content_image_descriptor *desc, uint64_t offset,
                                unsigned flags, content_registry_write_fn fn, void *userdata,
                                struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_error_ struct strata_error *kept = NULL;
	_cleanup_(strata_hasher_freep) struct strata_hasher *hasher = NULL;
	const struct content_registry_hosts *hs;
	char ds[STRATA_DIGEST_STRING_MAX];
	_cleanup_free_ char *path = NULL, *what = NULL;
	struct blob_sink sink = {.fn = fn, .userdata = userdata, .pos = offset, .size = desc->size};
	unsigned resumes = 0;
	int r;

	if (via)
		return content_registry_fetch_blob(via, ref, desc, offset, flags, fn, userdata,
		                                   ret_err);

	strata_digest_format(&desc->digest, ds);
	if (asprintf(&path, "/blobs/%s", ds) < 0 || asprintf(&what, "blob %s", ds) < 0)
		return -ENOMEM;
	if ((flags & CONTENT_REGISTRY_FETCH_VERIFY) && offset == 0) {
		r = strata_hasher_new(&hasher);
		if (r < 0)
			return r;
		sink.hasher = hasher;
	}
	if (desc->size > 0 && offset > (uint64_t)desc->size)
		return strata_error_set(ret_err, -ERANGE,
		                        "registry %s: %s: offset %" PRIu64
		                        " is past its size %" PRId64,
		                        ref->domain, what, offset, desc->size);

	r = registry_client_hosts(c, ref->domain, &hs, ret_err);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < hs->n_hosts; i++) {
		const struct content_registry_host *h = &hs->hosts[i];
		if (!(h->capabilities & CONTENT_REGISTRY_CAP_PULL))
			continue;
		for (;;) {
			_cleanup_error_ struct strata_error *err = NULL;
			uint64_t start = sink.pos;
			struct registry_request req = {
			        .host = h,
			        .domain = ref->domain,
			        .repo = ref->path,
			        .method = "GET",
			        .path = path,
			        .range_start = start > 0 ? (int64_t)start : -1,
			        .range_end = -1,
			        .fn = blob_sink_write,
			        .userdata = &sink,
			};

			if (desc->size > 0 && start == (uint64_t)desc->size && start > 0) {
				r = 0; /* nothing left to fetch */
				break;
			}
			r = registry_request_do(c, &req, what, &err);
			registry_request_done(&req);
			if (r == 0 || r == -ENOMEM)
				break;
			if (sink.overflow)
				return strata_error_set(ret_err, -EBADMSG,
				                        "registry %s: repository %s: %s: %s://%s "
				                        "sent more than the %" PRId64
				                        " bytes expected",
				                        ref->domain, ref->path, what, h->scheme,
				                        h->host, desc->size);
			if (sink.fn_err)
				return strata_error_set_errno(ret_err, sink.fn_err,
				                              "registry %s: repository %s: %s: "
				                              "store the data",
				                              ref->domain, ref->path, what);
			/* a transfer that broke after delivering something resumes */
			if (sink.pos > start && resumes < c->max_tries &&
			    (r == -EIO || r == -ETIMEDOUT || r == -EAGAIN || r == -ECONNREFUSED ||
			     r == -EHOSTUNREACH)) {
				resumes++;
				log_debug("registry %s: %s: resuming at byte %" PRIu64 " (%s)",
				          ref->domain, what, sink.pos, strata_error_message(err));
				continue;
			}
			keep_error(&kept, &err);
			break;
		}
		if (r == 0 || r == -ENOMEM)
			break;
	}
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return finish_error(&kept, r, ret_err, ref->domain, what);

	if (desc->size > 0 && sink.pos != (uint64_t)desc->size)
		return strata_error_set(ret_err, -EBADMSG,
		                        "registry %s: repository %s: %s: got %" PRIu64
		                        " bytes, expected %" PRId64,
		                        ref->domain, ref->path, what, sink.pos, desc->size);
	if (hasher) {
		struct strata_digest got;
		char gs[STRATA_DIGEST_STRING_MAX];
		r = strata_hasher_final(hasher, &got);
		if (r < 0)
			return r;
		if (!strata_digest_equal(&got, &desc->digest))
			return strata_error_set(ret_err, -EBADMSG,
			                        "registry %s: repository %s: %s: registry returned "
			                        "content with digest %s, expected %s",
			                        ref->domain, ref->path, what,
			                        strata_digest_format(&got, gs), ds);
	}
	return 0;
}

struct range_sink {
	uint8_t *buf;
	size_t len;
	size_t got;
};

static int range_sink_write(const void *buf, size_t len, void *userdata)
{
	struct range_sink *s = userdata;
	size_t k = MIN(len, s->len - s->got);

	memcpy(s->buf + s->got, buf, k);
	s->got += k;
	/* a server sending more than asked for is cut off, successfully */
	return s->got == s->len ? 1 : 0;
}

int64_t content_registry_read_range(struct content_registry_client *c,
                                    const struct content_ref *ref,
                                    const struct strata_digest *digest, uint64_t offset, size_t len,
                                    void *buf, struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_error_ struct strata_error *kept = NULL;
	const struct content_registry_hosts *hs;
	char ds[STRATA_DIGEST_STRING_MAX];
	_cleanup_free_ char *path = NULL, *what = NULL;
	struct range_sink sink = {.buf = buf, .len = len};
	int r;

	if (via)
		return content_registry_read_range(via, ref, digest, offset, len, buf, ret_err);

	if (len == 0)
		return 0;
	strata_digest_format(digest, ds);
	if (asprintf(&path, "/blobs/%s", ds) < 0 ||
	    asprintf(&what, "blob %s bytes %" PRIu64 "-%" PRIu64, ds, offset, offset + len - 1) < 0)
		return -ENOMEM;

	r = registry_client_hosts(c, ref->domain, &hs, ret_err);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < hs->n_hosts; i++) {
		const struct content_registry_host *h = &hs->hosts[i];
		unsigned resumes = 0;

		if (!(h->capabilities & CONTENT_REGISTRY_CAP_PULL))
			continue;
		if (registry_host_quirk(c, h, REGISTRY_QUIRK_NO_RANGE)) {
			_cleanup_error_ struct strata_error *err = NULL;
			r = strata_error_set(&err, -EOPNOTSUPP,
			                     "registry %s: %s://%s does not support Range requests",
			                     ref->domain, h->scheme, h->host);
			keep_error(&kept, &err);
			continue;
		}
		for (;;) {
			_cleanup_error_ struct strata_error *err = NULL;
			size_t start = sink.got;
			struct registry_request req = {
			        .host = h,
			        .domain = ref->domain,
			        .repo = ref->path,
			        .method = "GET",
			        .path = path,
			        .range_start = (int64_t)(offset + start),
			        .range_end = (int64_t)(offset + len - 1),
			        .range_strict = true,
			        .fn = range_sink_write,
			        .userdata = &sink,
			};
			r = registry_request_do(c, &req, what, &err);
			registry_request_done(&req);
			if (r == -EOPNOTSUPP) {
				registry_host_set_quirk(c, h, REGISTRY_QUIRK_NO_RANGE);
				log_debug("registry %s: %s://%s ignores Range; lazy reads are off "
				          "for it",
				          ref->domain, h->scheme, h->host);
			}
			if (r == 0 || r == -ENOMEM)
				break;
			if (sink.got > start && resumes < c->max_tries &&
			    (r == -EIO || r == -ETIMEDOUT)) {
				resumes++;
				continue;
			}
			keep_error(&kept, &err);
			break;
		}
		if (r == 0)
			return (int64_t)sink.got;
		if (r == -ENOMEM)
			return r;
	}
	return finish_error(&kept, r, ret_err, ref->domain, what);
}

/* --- several ranges in one request --------------------------------------------- */

#define RANGES_MAX 64 /* per request: keeps the Range header a few KiB */

struct ranges_ctx {
	const struct content_registry_range *ranges;
	size_t n;
	bool *done;
	size_t n_done;
	content_registry_range_fn fn;
	void *userdata;
	const struct registry_request *req;
	uint64_t span; /* first range's start to last range's end */
	uint64_t bytes;
	int fn_err; /* fn's, passed on as is */
	/* the answer: multipart, or one part (buffered) */
	bool started, multipart;
	struct registry_multipart mp;
	uint8_t *single;
	size_t single_len;
};

/* Hand over every range that the part [off, off + len) holds whole. */
static int ranges_deliver(uint64_t off, const uint8_t *data, size_t len, void *userdata)
{
	struct ranges_ctx *x = userdata;

	x->bytes += len;
	for (size_t i = 0; i < x->n; i++) {
		const struct content_registry_range *g = &x->ranges[i];
		int r;

		if (x->done[i] || g->offset < off || g->offset - off > len ||
		    g->len > len - (g->offset - off))
			continue;
		r = x->fn(i, data + (g->offset - off), (size_t)g->len, x->userdata);
		if (r < 0)
			return x->fn_err = r;
		x->done[i] = true;
		x->n_done++;
	}
	return 0;
}

static int ranges_sink_write(const void *buf, size_t len, void *userdata)
{
	struct ranges_ctx *x = userdata;

	if (!x->started) {
		int r = registry_multipart_init(&x->mp, x->req->content_type, (size_t)x->span,
		                                ranges_deliver, x);
		if (r == -ENOMEM)
			return r;
		x->started = true;
		x->multipart = r == 0;
		if (!x->multipart) {
			x->single = malloc((size_t)x->span);
			if (!x->single)
				return -ENOMEM;
		}
	}
	if (x->multipart)
		return registry_multipart_feed(&x->mp, buf, len);
	if (len > x->span - x->single_len)
		return -EBADMSG;
	memcpy(x->single + x->single_len, buf, len);
	x->single_len += len;
	return 0;
}

static char *range_list(const struct content_registry_range *ranges, size_t n)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return NULL;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%" PRIu64 "-%" PRIu64, i ? "," : "", ranges[i].offset,
		        ranges[i].offset + ranges[i].len - 1);
	if (fclose(f) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

/* One request for ranges on the first host that may serve it; what it did
 * not deliver is left undone in x. 1 when a request was made, 0 when the
 * host is known not to answer it, < 0 for fn's error or -ENOMEM. */
static int ranges_request(struct content_registry_client *c, const struct content_ref *ref,
                          const char *path, const char *what, struct ranges_ctx *x)
{
	_cleanup_free_ char *list = range_list(x->ranges, x->n);
	_cleanup_error_ struct strata_error *err = NULL;
	const struct content_registry_hosts *hs;
	const struct content_registry_host *h = NULL;
	int r;

	if (!list)
		return -ENOMEM;
	r = registry_client_hosts(c, ref->domain, &hs, NULL);
	if (r < 0)
		return 0; /* the single requests say why */
	for (size_t i = 0; i < hs->n_hosts && !h; i++)
		if ((hs->hosts[i].capabilities & CONTENT_REGISTRY_CAP_PULL) &&
		    !registry_host_quirk(c, &hs->hosts[i], REGISTRY_QUIRK_NO_RANGE))
			h = &hs->hosts[i];
	if (!h || registry_host_quirk(c, h, REGISTRY_QUIRK_NO_MULTIRANGE))
		return 0;

	struct registry_request req = {
	        .host = h,
	        .domain = ref->domain,
	        .repo = ref->path,
	        .method = "GET",
	        .path = path,
	        .range_start = -1,
	        .range_end = -1,
	        .range_list = list,
	        .range_strict = true,
	        /* the parts' headers and delimiters on top of the data */
	        .max_body = x->span + 64 * 1024 + x->n * 1024,
	        .fn = ranges_sink_write,
	        .userdata = x,
	};
	x->req = &req;
	r = registry_request_do(c, &req, what, &err);
	if (r == 0 && x->started && !x->multipart) {
		/* one part: a registry that merged everything, or only serves
		 * the first range */
		if (req.content_range >= 0)
			r = ranges_deliver((uint64_t)req.content_range, x->single, x->single_len,
			                   x);
		registry_host_set_quirk(c, h, REGISTRY_QUIRK_NO_MULTIRANGE);
	} else if (r == -EOPNOTSUPP) {
		/* the whole blob for several ranges (S3 does that): single
		 * ranges may still work */
		registry_host_set_quirk(c, h, REGISTRY_QUIRK_NO_MULTIRANGE);
		r = 0;
	}
	if (x->fn_err)
		r = x->fn_err;
	else if (r < 0 && r != -ENOMEM)
		log_debug("registry %s: %s: %zu ranges in one request: %s; one per request now",
		          ref->domain, what, x->n, err ? strata_error_message(err) : strerror(-r));
	registry_request_done(&req);
	x->req = NULL;
	return r == -ENOMEM || x->fn_err ? r : 1;
}

int content_registry_read_ranges(struct content_registry_client *c, const struct content_ref *ref,
                                 const struct strata_digest *digest,
                                 const struct content_registry_range *ranges, size_t n,
                                 content_registry_range_fn fn, void *userdata, uint64_t *ret_bytes,
                                 unsigned *ret_requests, struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_free_ char *path = NULL, *what = NULL;
	_cleanup_free_ bool *done = NULL;
	char ds[STRATA_DIGEST_STRING_MAX];
	struct ranges_ctx x = {.ranges = ranges, .n = n, .fn = fn, .userdata = userdata};
	unsigned requests = 0;
	int r = 0;

	if (via)
		return content_registry_read_ranges(via, ref, digest, ranges, n, fn, userdata,
		                                    ret_bytes, ret_requests, ret_err);
	if (ret_bytes)
		*ret_bytes = 0;
	if (ret_requests)
		*ret_requests = 0;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ranges[i].len == 0 || ranges[i].len > SIZE_MAX ||
		    (i > 0 && ranges[i].offset < ranges[i - 1].offset + ranges[i - 1].len))
			return strata_error_set(
			        ret_err, -EINVAL,
			        "byte ranges must be non-empty, sorted and disjoint");
	done = calloc(n, sizeof(*done));
	if (!done)
		return -ENOMEM;
	x.done = done;
	x.span = ranges[n - 1].offset + ranges[n - 1].len - ranges[0].offset;
	strata_digest_format(digest, ds);
	if (asprintf(&path, "/blobs/%s", ds) < 0 ||
	    asprintf(&what, "blob %s (%zu ranges)", ds, n) < 0)
		return -ENOMEM;

	if (n > 1 && n <= RANGES_MAX) {
		r = ranges_request(c, ref, path, what, &x);
		if (r > 0)
			requests++;
		r = MIN(r, 0);
	}
	registry_multipart_done(&x.mp);
	free(x.single);
	x.single = NULL;
	/* what is left, one request each */
	for (size_t i = 0; r == 0 && i < n; i++) {
		_cleanup_free_ uint8_t *buf = NULL;
		int64_t got;

		if (done[i])
			continue;
		buf = malloc((size_t)ranges[i].len);
		if (!buf) {
			r = -ENOMEM;
			break;
		}
		got = content_registry_read_range(c, ref, digest, ranges[i].offset,
		                                  (size_t)ranges[i].len, buf, ret_err);
		requests++;
		if (got < 0) {
			r = (int)got;
			break;
		}
		if ((uint64_t)got != ranges[i].len) {
			r = strata_error_set(ret_err, -EBADMSG,
			                     "registry %s: %s: range %" PRIu64 "-%" PRIu64
			                     " past the end of the blob",
			                     ref->domain, what, ranges[i].offset,
			                     ranges[i].offset + ranges[i].len - 1);
			break;
		}
		r = ranges_deliver(ranges[i].offset, buf, (size_t)got, &x);
	}
	if (ret_bytes)
		*ret_bytes = x.bytes;
	if (ret_requests)
		*ret_requests = requests;
	return r;
}
