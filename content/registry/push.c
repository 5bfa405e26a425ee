/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pushing to a registry (distribution spec): blobs (HEAD to skip what is
 * there, then POST /blobs/uploads/ and one monolithic PUT ?digest=) and
 * manifests (PUT /manifests/<tag or digest>), on the first configured host
 * with the push capability.
 *
 * registry_request_do() (http.c) only speaks GET/HEAD with a pull scope, so
 * the exchanges here are their own: same pooled handles, same challenge and
 * token caches (keyed by the "pull,push" scope), same credential lookup.
 * Retries: connection errors, 429 and 5xx, with backoff, at most max_tries;
 * every request here can be repeated (a failed upload is started again).
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"

#define ERRBODY_MAX 1024
#define TOKEN_MAX   (1u << 20)

struct push_xfer {
	/* in */
	const char *method;
	const char *url;
	const char *content_type;
	const uint8_t *body;
	size_t body_len;
	size_t body_off;
	/* out */
	long status;
	char *location;
	char *www_auth;
	char *resp; /* error body or token answer */
	size_t resp_len;
	size_t resp_max;
};

static void push_xfer_reset(struct push_xfer *x)
{
	free(x->location);
	free(x->www_auth);
	if (x->resp)
		explicit_bzero(x->resp, x->resp_len);
	free(x->resp);
	x->location = x->www_auth = x->resp = NULL;
	x->resp_len = 0;
	x->body_off = 0;
	x->status = 0;
}

static char *hdr_value(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);
	const char *v, *end = line + n;

	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return NULL;
	v = line + k + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	return strndup(v, (size_t)(end - v));
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct push_xfer *x = userp;
	size_t n = size * nmemb;
	char *v;

	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		free(x->location);
		free(x->www_auth);
		x->location = x->www_auth = NULL;
	} else if ((v = hdr_value(buf, n, "location"))) {
		free(x->location);
		x->location = v;
	} else if ((v = hdr_value(buf, n, "www-authenticate"))) {
		if (!x->www_auth || strncasecmp(v, "bearer", 6) == 0) {
			free(x->www_auth);
			x->www_auth = v;
		} else {
			free(v);
		}
	}
	return n;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct push_xfer *x = userp;
	size_t n = size * nmemb, k = MIN(n, x->resp_max - x->resp_len);
	char *r;

	if (k == 0)
		return n;
	r = realloc(x->resp, x->resp_len + k + 1);
	if (!r)
		return 0;
	memcpy(r + x->resp_len, buf, k);
	x->resp_len += k;
	r[x->resp_len] = '\0';
	x->resp = r;
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct push_xfer *x = userp;
	size_t n = MIN(size * nmemb, x->body_len - x->body_off);

	memcpy(buf, x->body + x->body_off, n);
	x->body_off += n;
	return n;
}

static int perform(struct content_registry_client *c, const struct content_registry_host *h,
                   struct push_xfer *x, const char *authz, const char *basic_user,
                   const char *basic_pass, CURLcode *ret_rc)
{
	_cleanup_free_ char *ct = NULL;
	struct curl_slist *hl = NULL, *n;
	CURL *curl = registry_handle_get(c);
	CURLcode rc;

	if (!curl)
		return -ENOMEM;
	push_xfer_reset(x);
	for (size_t i = 0; i < h->n_headers; i++) {
		_cleanup_free_ char *line = NULL;
		if (asprintf(&line, "%s: %s", h->headers[i].name, h->headers[i].value) < 0 ||
		    !(n = curl_slist_append(hl, line)))
			goto oom;
		hl = n;
	}
	if (x->content_type) {
		if (asprintf(&ct, "Content-Type: %s", x->content_type) < 0 ||
		    !(n = curl_slist_append(hl, ct)))
			goto oom;
		hl = n;
	}
	if (!(n = curl_slist_append(hl, "Expect:")))
		goto oom;
	hl = n;
	if (authz) {
		if (!(n = curl_slist_append(hl, authz)))
			goto oom;
		hl = n;
	}

	curl_easy_setopt(curl, CURLOPT_SHARE, c->share);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)c->connect_timeout_sec);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)c->low_speed_time_sec);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (h->skip_verify) {
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (h->client_cert) {
		curl_easy_setopt(curl, CURLOPT_SSLCERT, h->client_cert);
		curl_easy_setopt(curl, CURLOPT_SSLKEY,
		                 h->client_key ? h->client_key : h->client_cert);
	}
	if (h->n_ca_files > 0)
		curl_easy_setopt(curl, CURLOPT_CAINFO, h->ca_files[0]);
	curl_easy_setopt(curl, CURLOPT_URL, x->url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
	if (streq(x->method, "HEAD")) {
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else if (streq(x->method, "GET")) {
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	} else if (streq(x->method, "POST")) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, 0L);
	} else {
		curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, x->method);
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, x);
		curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->body_len);
	}
	if (basic_user) {
		curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(curl, CURLOPT_USERNAME, basic_user);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, basic_pass);
	}
	rc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &x->status);
	if (basic_user) {
		curl_easy_setopt(curl, CURLOPT_USERNAME, NULL);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, NULL);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	for (struct curl_slist *i = hl; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(hl);
	if (rc != CURLE_OK) {
		curl_easy_cleanup(curl);
		curl = NULL;
	}
	registry_handle_put(c, curl);
	*ret_rc = rc;
	return 0;
oom:
	curl_slist_free_all(hl);
	registry_handle_put(c, curl);
	return -ENOMEM;
}

static void sleep_backoff(struct content_registry_client *c, unsigned attempt)
{
	unsigned shift = attempt - 1 < 10u ? attempt - 1 : 10u;
	uint64_t ms = MIN((uint64_t)c->retry_base_ms << shift, (uint64_t)10000);
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
	                      .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

struct pusher {
	struct content_registry_client *c;
	const struct content_registry_host *h;
	const char *domain;
	const char *repo;
	char *key;   /* host key */
	char *scope; /* "repository:<repo>:pull,push" */
	char *base;  /* "scheme://host/v2/<repo>" */
};

static void pusher_done(struct pusher *p)
{
	free(p->key);
	free(p->scope);
	free(p->base);
}

static int pusher_init(struct pusher *p, struct content_registry_client *c,
                       const struct content_ref *ref, struct strata_error **ret_err)
{
	const struct content_registry_hosts *hosts;
	int r;

	*p = (struct pusher){.c = c, .domain = ref->domain, .repo = ref->path};
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
	p->key = registry_host_key(p->h);
	if (!p->key || asprintf(&p->scope, "repository:%s:pull,push", ref->path) < 0 ||
	    asprintf(&p->base, "%s://%s%s/%s", p->h->scheme, p->h->host, p->h->path, ref->path) < 0)
		return -ENOMEM;
	return 0;
}

static int fetch_token(struct pusher *p, const struct registry_challenge *ch,
                       struct strata_error **ret_err)
{
	_cleanup_free_ char *user = NULL, *url = NULL, *se = NULL, *sv = NULL;
	_cleanup_(registry_secret_freep) char *pass = NULL;
	_cleanup_json_ json_t *j = NULL;
	struct push_xfer x = {.method = "GET", .resp_max = TOKEN_MAX};
	const char *source, *token;
	CURLcode rc;
	CURL *esc;
	int r;

	r = registry_credentials_get(p->c, p->h, p->domain, &user, &pass, &source, ret_err);
	if (r < 0)
		return r;
	esc = curl_easy_init();
	if (!esc)
		return -ENOMEM;
	se = curl_easy_escape(esc, p->scope, 0);
	sv = ch->service ? curl_easy_escape(esc, ch->service, 0) : NULL;
	curl_easy_cleanup(esc);
	if (!se || asprintf(&url, "%s%cscope=%s%s%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?',
	                    se, sv ? "&service=" : "", sv ? sv : "") < 0)
		return -ENOMEM;
	x.url = url;
	r = perform(p->c, p->h, &x, NULL, user, pass, &rc);
	if (r < 0)
		goto out;
	if (rc != CURLE_OK || x.status != 200) {
		r = strata_error_set(
		        ret_err, x.status == 401 || x.status == 403 ? -EACCES : -EIO,
		        "registry %s: token server %s refused push access to %s (%s; %s)",
		        p->domain, ch->realm, p->repo,
		        rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP error", source);
		goto out;
	}
	j = json_loadb(x.resp ? x.resp : "", x.resp_len, 0, NULL);
	token = json_get_str(j, "token");
	if (!token || !*token)
		token = json_get_str(j, "access_token");
	if (!token || !*token) {
		r = strata_error_set(ret_err, -EIO, "registry %s: token server %s sent no token",
		                     p->domain, ch->realm);
		goto out;
	}
	r = registry_token_put(p->c, p->key, p->scope, token,
	                       time(NULL) + MAX(json_get_int(j, "expires_in", 60), (int64_t)60) -
	                               5);
out:
	push_xfer_reset(&x);
	return r;
}

/*
 * One request with auth and retries. 0 with x->status set for any HTTP
 * answer but 401 (after one challenge round) and retryable failures.
 */
static int do_request(struct pusher *p, struct push_xfer *x, const char *what,
                      struct strata_error **ret_err)
{
	bool answered = false;
	unsigned attempt = 1;
	int r;

	for (;;) {
		_cleanup_(registry_challenge_done) struct registry_challenge ch = {0};
		_cleanup_(registry_secret_freep) char *authz = NULL, *token = NULL;
		_cleanup_free_ char *user = NULL;
		_cleanup_(registry_secret_freep) char *pass = NULL;
		const char *source;
		CURLcode rc;

		r = registry_host_challenge_get(p->c, p->key, &ch);
		if (r < 0)
			return r;
		if (ch.scheme == REGISTRY_AUTH_BEARER) {
			token = registry_token_get(p->c, p->key, p->scope);
			if (!token) {
				r = fetch_token(p, &ch, ret_err);
				if (r < 0)
					return r;
				token = registry_token_get(p->c, p->key, p->scope);
			}
			if (token && asprintf(&authz, "Authorization: Bearer %s", token) < 0)
				return -ENOMEM;
		} else if (ch.scheme == REGISTRY_AUTH_BASIC) {
			r = registry_credentials_get(p->c, p->h, p->domain, &user, &pass, &source,
			                             ret_err);
			if (r < 0)
				return r;
			if (r > 0) {
				_cleanup_(registry_secret_freep) char *b64 =
				        registry_basic_b64(user, pass);
				if (!b64 || asprintf(&authz, "Authorization: Basic %s", b64) < 0)
					return -ENOMEM;
			}
		}
		r = perform(p->c, p->h, x, authz, NULL, NULL, &rc);
		if (r < 0)
			return r;
		if (rc != CURLE_OK || x->status == 429 || (x->status >= 500 && x->status != 501)) {
			if (attempt < p->c->max_tries) {
				sleep_backoff(p->c, attempt++);
				continue;
			}
			if (rc != CURLE_OK)
				return strata_error_set(
				        ret_err, -EIO, "registry %s: repository %s: %s: %s",
				        p->domain, p->repo, what, curl_easy_strerror(rc));
			return strata_error_set(ret_err, -EAGAIN,
			                        "registry %s: repository %s: %s: HTTP %ld (gave up "
			                        "after retries)",
			                        p->domain, p->repo, what, x->status);
		}
		if (x->status == 401 && !answered && x->www_auth) {
			struct registry_challenge nc = {0};
			answered = true;
			if (registry_challenge_parse(x->www_auth, &nc) == 0) {
				r = registry_host_challenge_set(p->c, p->key, &nc);
				if (r < 0)
					return r;
				/* a token from a pull-only request would not do */
				(void)registry_token_put(p->c, p->key, p->scope, NULL, 0);
				continue;
			}
		}
		if (x->status == 401 || x->status == 403)
			return strata_error_set(
			        ret_err, -EACCES,
			        "registry %s: repository %s: %s: push access refused "
			        "(HTTP %ld)",
			        p->domain, p->repo, what, x->status);
		return 0;
	}
}

static int fail_status(struct pusher *p, const struct push_xfer *x, const char *what,
                       struct strata_error **ret_err)
{
	char detail[200] = "";

	if (x->resp_len) {
		size_t k = 0;
		detail[k++] = ':';
		detail[k++] = ' ';
		for (size_t i = 0; i < x->resp_len && k + 1 < sizeof(detail); i++)
			detail[k++] = (x->resp[i] >= 0x20 && x->resp[i] < 0x7f) ? x->resp[i] : ' ';
		detail[k] = '\0';
	}
	return strata_error_set(ret_err, x->status == 404 ? -ENOENT : -EIO,
	                        "registry %s: repository %s: %s: HTTP %ld%s", p->domain, p->repo,
	                        what, x->status, detail);
}

int content_registry_push_blob(struct content_registry_client *c, const struct content_ref *ref,
                               const struct strata_digest *digest, const void *buf, size_t len,
                               bool *ret_existed, struct strata_error **ret_err)
{
	_cleanup_(pusher_done) struct pusher p = {0};
	_cleanup_free_ char *url = NULL, *put = NULL, *what = NULL;
	struct push_xfer x = {.resp_max = ERRBODY_MAX};
	char ds[STRATA_DIGEST_STRING_MAX];
	int r;

	if (ret_existed)
		*ret_existed = false;
	strata_digest_format(digest, ds);
	r = pusher_init(&p, c, ref, ret_err);
	if (r < 0)
		return r;
	if (asprintf(&what, "push blob %s", ds) < 0 ||
	    asprintf(&url, "%s/blobs/%s", p.base, ds) < 0)
		return -ENOMEM;
	x.method = "HEAD";
	x.url = url;
	r = do_request(&p, &x, what, ret_err);
	if (r < 0)
		goto out;
	if (x.status == 200) {
		if (ret_existed)
			*ret_existed = true;
		goto out;
	}

	free(url);
	url = NULL;
	if (asprintf(&url, "%s/blobs/uploads/", p.base) < 0) {
		r = -ENOMEM;
		goto out;
	}
	x.method = "POST";
	x.url = url;
	r = do_request(&p, &x, what, ret_err);
	if (r < 0)
		goto out;
	if (x.status != 202 || !x.location) {
		r = fail_status(&p, &x, what, ret_err);
		goto out;
	}
	/* Location: absolute, or a path on the same host */
	if (strncmp(x.location, "http://", 7) == 0 || strncmp(x.location, "https://", 8) == 0)
		r = asprintf(&put, "%s%cdigest=%s", x.location, strchr(x.location, '?') ? '&' : '?',
		             ds);
	else
		r = asprintf(&put, "%s://%s%s%cdigest=%s", p.h->scheme, p.h->host, x.location,
		             strchr(x.location, '?') ? '&' : '?', ds);
	if (r < 0) {
		r = -ENOMEM;
		goto out;
	}
	x.method = "PUT";
	x.url = put;
	x.content_type = "application/octet-stream";
	x.body = buf;
	x.body_len = len;
	r = do_request(&p, &x, what, ret_err);
	if (r < 0)
		goto out;
	if (x.status != 201) {
		r = fail_status(&p, &x, what, ret_err);
		goto out;
	}
	r = 0;
out:
	push_xfer_reset(&x);
	return r;
}

int content_registry_push_manifest(struct content_registry_client *c, const struct content_ref *ref,
                                   const char *reference, const char *media_type, const void *buf,
                                   size_t len, struct strata_error **ret_err)
{
	_cleanup_(pusher_done) struct pusher p = {0};
	_cleanup_free_ char *url = NULL, *what = NULL;
	struct push_xfer x = {.resp_max = ERRBODY_MAX};
	int r;

	r = pusher_init(&p, c, ref, ret_err);
	if (r < 0)
		return r;
	if (asprintf(&what, "push manifest %s", reference) < 0 ||
	    asprintf(&url, "%s/manifests/%s", p.base, reference) < 0)
		return -ENOMEM;
	x.method = "PUT";
	x.url = url;
	x.content_type = media_type;
	x.body = buf;
	x.body_len = len;
	r = do_request(&p, &x, what, ret_err);
	if (r >= 0 && x.status != 201 && x.status != 200)
		r = fail_status(&p, &x, what, ret_err);
	push_xfer_reset(&x);
	return r < 0 ? r : 0;
}
