/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pushing to a registry (distribution spec): blobs (HEAD to skip what is
 * there, then POST /blobs/uploads/ and one monolithic PUT ?digest=) and
 * manifests (PUT /manifests/<tag or digest>), on the first configured host
 * with the push capability, as containerd's pusher does: a hosts.toml
 * mirror declared with capabilities = ["pull", "resolve"] is never pushed to.
 *
 * The exchanges are registry_request_do()'s (http.c): same pooled handles,
 * challenge and token caches (tokens keyed by the "pull,push" scope), same
 * credential lookup and retries. Every request here can be repeated (a
 * failed upload is started again).
 */
#include <inttypes.h>
#include <string.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"

struct pusher {
	const struct content_registry_host *h;
	const char *domain;
	const char *repo;
};

static int pusher_init(struct pusher *p, struct content_registry_client *c,
                       const struct content_ref *ref, struct strata_error **ret_err)
{
	const struct content_registry_hosts *hosts;
	int r;

	*p = (struct pusher){.domain = ref->domain, .repo = ref->path};
	r = registry_client_hosts(c, ref->domain, &hosts, ret_err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < hosts->n_hosts && !p->h; i++)
		if (hosts->hosts[i].capabilities & CONTENT_REGISTRY_CAP_PUSH)
			p->h = &hosts->hosts[i];
	if (!p->h)
		return strata_error_set(ret_err, -ENOENT,
		                        "registry %s: no configured host may be pushed to",
		                        ref->domain);
	return 0;
}

static void push_request(const struct pusher *p, struct registry_request *req, const char *method,
                         const char *path)
{
	*req = (struct registry_request){
	        .host = p->h,
	        .domain = p->domain,
	        .repo = p->repo,
	        .method = method,
	        .path = path,
	        .scope_actions = "pull,push",
	        .range_start = -1,
	        .range_end = -1,
	};
}

/* A 2xx answer that is not the one the spec prescribes. */
static int unexpected(const struct pusher *p, const struct registry_request *req, const char *what,
                      struct strata_error **ret_err)
{
	return strata_error_set(ret_err, -EIO,
	                        "registry %s: repository %s: %s: %s://%s answered HTTP %ld%s",
	                        p->domain, p->repo, what, p->h->scheme, p->h->host, req->status,
	                        req->status == 202 ? " without a Location" : "");
}

int content_registry_push_blob(struct content_registry_client *c, const struct content_ref *ref,
                               const struct strata_digest *digest, const void *buf, size_t len,
                               bool *ret_existed, struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_free_ char *path = NULL, *put = NULL, *what = NULL;
	const struct registry_body body = {.buf = buf, .fd = -1, .len = len};
	struct registry_request req;
	char ds[STRATA_DIGEST_STRING_MAX];
	struct pusher p;
	const char *loc;
	int r;

	if (via)
		return content_registry_push_blob(via, ref, digest, buf, len, ret_existed, ret_err);
	if (ret_existed)
		*ret_existed = false;
	strata_digest_format(digest, ds);
	r = pusher_init(&p, c, ref, ret_err);
	if (r < 0)
		return r;
	if (asprintf(&what, "push blob %s", ds) < 0 || asprintf(&path, "/blobs/%s", ds) < 0)
		return -ENOMEM;

	{
		_cleanup_error_ struct strata_error *err = NULL;
		push_request(&p, &req, "HEAD", path);
		r = registry_request_do(c, &req, what, &err);
		registry_request_done(&req);
		if (r == 0) {
			if (ret_existed)
				*ret_existed = true;
			return 0;
		}
		if (r != -ENOENT) {
			strata_error_propagate(ret_err, &err);
			return r;
		}
	}

	push_request(&p, &req, "POST", "/blobs/uploads/");
	r = registry_request_do(c, &req, what, ret_err);
	if (r < 0)
		goto out;
	loc = req.location;
	if (req.status != 202 || !loc || !*loc) {
		r = unexpected(&p, &req, what, ret_err);
		goto out;
	}
	/* Location: absolute, or a path on the same host */
	if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0)
		r = asprintf(&put, "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', ds);
	else
		r = asprintf(&put, "%s://%s%s%cdigest=%s", p.h->scheme, p.h->host, loc,
		             strchr(loc, '?') ? '&' : '?', ds);
	registry_request_done(&req);
	if (r < 0)
		return -ENOMEM;

	push_request(&p, &req, "PUT", NULL);
	req.url = put;
	req.body = &body;
	req.body_type = "application/octet-stream";
	r = registry_request_do(c, &req, what, ret_err);
	if (r == 0 && req.status != 201)
		r = unexpected(&p, &req, what, ret_err);
out:
	registry_request_done(&req);
	return r;
}

int content_registry_push_manifest(struct content_registry_client *c, const struct content_ref *ref,
                                   const char *reference, const char *media_type, const void *buf,
                                   size_t len, struct strata_error **ret_err)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *via =
	        registry_route_get(c, ref);
	_cleanup_free_ char *path = NULL, *what = NULL;
	const struct registry_body body = {.buf = buf, .fd = -1, .len = len};
	struct registry_request req;
	struct pusher p;
	int r;

	if (via)
		return content_registry_push_manifest(via, ref, reference, media_type, buf, len,
		                                      ret_err);
	r = pusher_init(&p, c, ref, ret_err);
	if (r < 0)
		return r;
	if (asprintf(&what, "push manifest %s", reference) < 0 ||
	    asprintf(&path, "/manifests/%s", reference) < 0)
		return -ENOMEM;
	push_request(&p, &req, "PUT", path);
	req.body = &body;
	req.body_type = media_type;
	r = registry_request_do(c, &req, what, ret_err);
	if (r == 0 && req.status != 201 && req.status != 200)
		r = unexpected(&p, &req, what, ret_err);
	registry_request_done(&req);
	return r;
}
