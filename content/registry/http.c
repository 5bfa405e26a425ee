/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One HTTP exchange with a registry host: registry_request_do() answers
 * WWW-Authenticate challenges (token exchange included) and retries what is
 * worth retrying. The client's shared state it uses lives in client.c.
 *
 * Redirects are followed by libcurl, which (since 7.58/7.83) drops custom
 * Authorization headers when the target's host, port or scheme differs, so
 * a registry token never reaches an object store. The tests check it.
 *
 * Retries: connection errors, 429 and 5xx (but 501) are retried up to
 * max_tries with exponential backoff from retry_base_ms (capped at 10 s,
 * with jitter), or after Retry-After seconds (capped at 60 s), as long as no
 * body byte reached the caller: resuming a stream is the caller's business
 * (fetch.c does it with Range). A request body (push.c's uploads) is sent
 * again from its start; every push request can be repeated.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"

#define ERRBODY_MAX     2048
#define TOKEN_BODY_MAX  (1u << 20)
#define BACKOFF_CAP_MS  10000u
#define RETRY_AFTER_CAP 60

/* --- one transfer ----------------------------------------------------------- */

struct xfer {
	struct registry_request *req;
	CURL *curl;
	char *www_auth;   /* best WWW-Authenticate of the last answer */
	long retry_after; /* seconds, -1 if none */
	int64_t cr_start; /* Content-Range start, -1 if none */
	char errbody[ERRBODY_MAX + 1];
	size_t errbody_len;
	uint64_t skip;
	uint64_t body_pos; /* bytes of req->body handed to curl */
	bool started;
	bool is_body;
	bool stopped; /* the sink said "enough" */
	bool too_big;
	bool bad_range;
	int sink_err;
	int read_err; /* reading req->body failed */
};

static void xfer_reset_headers(struct xfer *x)
{
	struct registry_request *req = x->req;
	free(x->www_auth);
	x->www_auth = NULL;
	x->retry_after = -1;
	x->cr_start = -1;
	req->content_range = -1;
	free(req->content_type);
	req->content_type = NULL;
	free(req->docker_digest);
	req->docker_digest = NULL;
	free(req->location);
	req->location = NULL;
	req->content_length = -1;
}

static char *header_value(const char *line, size_t n, const char *name)
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
	return strndup(v, end - v);
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	struct registry_request *req = x->req;
	size_t n = size * nmemb;
	char *v;

	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		xfer_reset_headers(x);
		return n;
	}
	if ((v = header_value(buf, n, "content-type"))) {
		free(req->content_type);
		req->content_type = v;
	} else if ((v = header_value(buf, n, "docker-content-digest"))) {
		free(req->docker_digest);
		req->docker_digest = v;
	} else if ((v = header_value(buf, n, "location"))) {
		free(req->location);
		req->location = v;
	} else if ((v = header_value(buf, n, "content-length"))) {
		req->content_length = strtoll(v, NULL, 10);
		free(v);
	} else if ((v = header_value(buf, n, "www-authenticate"))) {
		/* keep a Bearer challenge over a Basic one */
		if (!x->www_auth || strncasecmp(v, "bearer", 6) == 0) {
			free(x->www_auth);
			x->www_auth = v;
		} else {
			free(v);
		}
	} else if ((v = header_value(buf, n, "retry-after"))) {
		char *end;
		long s = strtol(v, &end, 10);
		if (end != v && *end == '\0' && s >= 0)
			x->retry_after = MIN(s, (long)RETRY_AFTER_CAP);
		free(v);
	} else if ((v = header_value(buf, n, "content-range"))) {
		unsigned long long a;
		if (sscanf(v, "bytes %llu-", &a) == 1)
			x->cr_start = (int64_t)a;
		free(v);
	}
	return n;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	struct registry_request *req = x->req;
	size_t n = size * nmemb;

	if (!x->started) {
		long status = 0;
		x->started = true;
		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
		req->status = status;
		x->is_body = status >= 200 && status < 300;
		if (status == 206)
			req->content_range = x->cr_start;
		/* several ranges are only ever asked for strictly */
		if (x->is_body && req->range_list && status == 200) {
			req->range_ignored = true;
			return 0;
		}
		if (x->is_body && req->range_start > 0 && status == 200) {
			if (req->range_strict) {
				req->range_ignored = true;
				return 0;
			}
			x->skip = (uint64_t)req->range_start;
		}
		if (x->is_body && status == 206 && req->range_start >= 0 &&
		    x->cr_start != req->range_start) {
			x->bad_range = true;
			return 0;
		}
	}
	if (!x->is_body) {
		size_t k = MIN(n, ERRBODY_MAX - x->errbody_len);
		memcpy(x->errbody + x->errbody_len, buf, k);
		x->errbody_len += k;
		return n;
	}
	if (x->skip > 0) {
		size_t k = (size_t)MIN((uint64_t)n, x->skip);
		x->skip -= k;
		if (k == n)
			return size * nmemb;
		buf += k;
		n -= k;
	}
	if (req->max_body && req->delivered + n > req->max_body) {
		x->too_big = true;
		return 0;
	}
	if (req->fn) {
		int r = req->fn(buf, n, req->userdata);
		if (r < 0) {
			x->sink_err = r;
			return 0;
		}
		if (r > 0) {
			req->delivered += n;
			x->stopped = true;
			return 0;
		}
	}
	req->delivered += n;
	return size * nmemb;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	const struct registry_body *b = x->req->body;
	size_t n = (size_t)MIN((uint64_t)(size * nmemb), b->len - x->body_pos);
	ssize_t k;

	if (n == 0)
		return 0;
	if (b->buf) {
		memcpy(buf, (const uint8_t *)b->buf + x->body_pos, n);
		k = (ssize_t)n;
	} else {
		do
			k = pread(b->fd, buf, n, (off_t)(b->offset + x->body_pos));
		while (k < 0 && errno == EINTR);
		if (k <= 0) {
			/* a file that shrank under us is as bad as a read error */
			x->read_err = k < 0 ? -errno : -EIO;
			return CURL_READFUNC_ABORT;
		}
	}
	x->body_pos += (uint64_t)k;
	return (size_t)k;
}

/* curl rewinds the body when it must send it again on a new connection. */
static int on_seek(void *userp, curl_off_t offset, int origin)
{
	struct xfer *x = userp;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->req->body->len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->body_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static void set_method(CURL *curl, const char *method, const struct registry_body *body,
                       struct xfer *x)
{
	if (streq(method, "HEAD")) {
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
		return;
	}
	if (streq(method, "GET"))
		return;
	/* a redirected upload would carry the body to an origin we know
	 * nothing about; registries answer uploads with a Location instead */
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	if (body) {
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, x);
		curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(curl, CURLOPT_SEEKDATA, x);
	}
	if (streq(method, "POST")) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		if (body) {
			curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
		} else {
			curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
			curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, 0L);
		}
		return;
	}
	curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(body ? body->len : 0));
}

/* Add the host's CAs to the system roots OpenSSL already loaded. */
static CURLcode on_ssl_ctx(CURL *curl, void *sslctx, void *userp)
{
	const struct content_registry_host *h = userp;
	X509_STORE *store = SSL_CTX_get_cert_store(sslctx);

	for (size_t i = 0; i < h->n_ca_files; i++) {
		_cleanup_fclose_ FILE *f = fopen(h->ca_files[i], "re");
		X509 *cert;
		int n = 0;

		if (!f)
			return CURLE_SSL_CACERT_BADFILE;
		while ((cert = PEM_read_X509(f, NULL, NULL, NULL))) {
			(void)X509_STORE_add_cert(store, cert); /* duplicates are fine */
			X509_free(cert);
			n++;
		}
		if (n == 0)
			return CURLE_SSL_CACERT_BADFILE;
	}
	return CURLE_OK;
}

static void set_common_opts(struct content_registry_client *c, CURL *curl,
                            const struct content_registry_host *h)
{
	curl_easy_setopt(curl, CURLOPT_SHARE, c->share);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)c->connect_timeout_sec);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)c->low_speed_time_sec);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	if (h->skip_verify) {
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (h->n_ca_files > 0) {
		curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
		curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, (void *)h);
	}
	if (h->client_cert) {
		curl_easy_setopt(curl, CURLOPT_SSLCERT, h->client_cert);
		curl_easy_setopt(curl, CURLOPT_SSLKEY,
		                 h->client_key ? h->client_key : h->client_cert);
	}
}

static bool curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return -EPERM;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static unsigned backoff_ms(struct content_registry_client *c, unsigned attempt, long retry_after)
{
	uint64_t ms;

	if (retry_after >= 0)
		return (unsigned)retry_after * 1000u;
	ms = (uint64_t)c->retry_base_ms << MIN(attempt - 1, 16u);
	ms = MIN(ms, (uint64_t)BACKOFF_CAP_MS);
	/* +-25% jitter so parallel layer fetches do not retry in lockstep */
	ms = ms * 3 / 4 + (uint64_t)(random() % (long)(ms / 2 + 1));
	return (unsigned)ms;
}

/* "CODE: message" from a registry error body, or the raw start of it. */
static void describe_errbody(const struct xfer *x, char *out, size_t outlen)
{
	_cleanup_json_ json_t *j = NULL;
	json_t *errors, *e;

	out[0] = '\0';
	if (x->errbody_len == 0)
		return;
	j = json_loadb(x->errbody, x->errbody_len, 0, NULL);
	errors = json_get_array(j, "errors");
	e = errors ? json_array_get(errors, 0) : NULL;
	if (e) {
		snprintf(out, outlen, " (%s: %s)", strempty(json_get_str(e, "code")),
		         strempty(json_get_str(e, "message")));
		return;
	}
	/* plain text: first line, printable only */
	size_t k = 0;
	out[k++] = ' ';
	out[k++] = '(';
	for (size_t i = 0; i < x->errbody_len && k + 2 < outlen && i < 160; i++) {
		char ch = x->errbody[i];
		if (ch == '\n' || ch == '\r')
			break;
		out[k++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
	}
	out[k++] = ')';
	out[k] = '\0';
}

/* Perform one HTTP exchange: CURLE_OK when an answer arrived (whatever its
 * status) or the sink stopped it; x and x->req describe the answer. */
static CURLcode perform_once(struct content_registry_client *c,
                             const struct content_registry_host *h, const char *url,
                             const char *method, struct curl_slist *headers, const char *basic_user,
                             const char *basic_pass, struct xfer *x)
{
	CURL *curl = registry_handle_get(c);
	CURLcode rc;

	if (!curl)
		return CURLE_OUT_OF_MEMORY;
	x->curl = curl;
	xfer_reset_headers(x);
	x->started = x->is_body = x->stopped = x->too_big = x->bad_range = false;
	x->sink_err = x->read_err = 0;
	x->errbody_len = 0;
	x->skip = 0;
	x->body_pos = 0;
	x->req->status = 0;

	set_common_opts(c, curl, h);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	set_method(curl, method, x->req->body, x);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
	if (basic_user) {
		curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(curl, CURLOPT_USERNAME, basic_user);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, basic_pass);
	}

	rc = curl_easy_perform(curl);
	if (!x->started) {
		long status = 0;
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		x->req->status = status;
	}
	if (basic_user) {
		/* do not leave the secret in a pooled handle */
		curl_easy_setopt(curl, CURLOPT_USERNAME, NULL);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, NULL);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	if (rc == CURLE_WRITE_ERROR && x->stopped)
		rc = CURLE_OK;
	/* a broken connection is not worth keeping */
	if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR) {
		curl_easy_cleanup(curl);
		curl = NULL;
	}
	x->curl = NULL;
	registry_handle_put(c, curl);
	return rc;
}

/* --- token exchange -------------------------------------------------------- */

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

static int fetch_token(struct content_registry_client *c, const struct content_registry_host *h,
                       const struct registry_challenge *ch, const char *domain, const char *repo,
                       const char *scope, struct strata_error **ret_err)
{
	_cleanup_free_ char *user = NULL, *url = NULL, *key = NULL;
	_cleanup_(registry_secret_freep) char *pass = NULL;
	_cleanup_free_ char *scope_esc = NULL, *service_esc = NULL;
	_cleanup_json_ json_t *j = NULL;
	struct membuf body = {0};
	struct registry_request treq = {.range_start = -1, .range_end = -1};
	struct xfer x = {.req = &treq};
	const char *source, *token;
	CURL *esc;
	CURLcode rc;
	int64_t expires_in;
	int r;

	r = registry_credentials_get(c, h, domain, &user, &pass, &source, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "registry %s: credentials", domain);

	esc = curl_easy_init();
	if (!esc)
		return -ENOMEM;
	scope_esc = curl_easy_escape(esc, scope, 0);
	service_esc = ch->service ? curl_easy_escape(esc, ch->service, 0) : NULL;
	curl_easy_cleanup(esc);
	if (!scope_esc || (ch->service && !service_esc))
		return -ENOMEM;
	if (asprintf(&url, "%s%cscope=%s%s%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?',
	             scope_esc, service_esc ? "&service=" : "", strempty(service_esc)) < 0)
		return -ENOMEM;

	treq.max_body = TOKEN_BODY_MAX;
	treq.fn = membuf_write;
	treq.userdata = &body;
	for (unsigned attempt = 1;; attempt++) {
		free(body.buf);
		body = (struct membuf){0};
		treq.delivered = 0;
		rc = perform_once(c, h, url, "GET", NULL, user, pass, &x);
		if (rc != CURLE_OK) {
			if (curl_retryable(rc) && attempt < c->max_tries) {
				sleep_ms(backoff_ms(c, attempt, -1));
				continue;
			}
			r = strata_error_set(ret_err, x.sink_err ? x.sink_err : curl_errno(rc),
			                     "registry %s: get token from %s: %s", domain,
			                     ch->realm, curl_easy_strerror(rc));
			goto out;
		}
		if ((treq.status == 429 || (treq.status >= 500 && treq.status != 501)) &&
		    attempt < c->max_tries) {
			sleep_ms(backoff_ms(c, attempt, x.retry_after));
			continue;
		}
		break;
	}
	if (treq.status == 401 || treq.status == 403) {
		r = strata_error_set(ret_err, -EACCES,
		                     "registry %s: repository %s: token server %s refused access "
		                     "(HTTP %ld; %s)",
		                     domain, repo, ch->realm, treq.status, source);
		goto out;
	}
	if (treq.status != 200) {
		char detail[256];
		describe_errbody(&x, detail, sizeof(detail));
		r = strata_error_set(ret_err, treq.status == 404 ? -ENOENT : -EIO,
		                     "registry %s: token server %s answered HTTP %ld%s", domain,
		                     ch->realm, treq.status, detail);
		goto out;
	}
	r = json_parse(body.buf ? body.buf : "", body.len, "token response", &j, ret_err);
	if (r < 0) {
		strata_error_prefix(ret_err, r, "registry %s: token server %s", domain, ch->realm);
		goto out;
	}
	token = json_get_str(j, "token");
	if (!token || !*token)
		token = json_get_str(j, "access_token");
	if (!token || !*token) {
		r = strata_error_set(ret_err, -EIO, "registry %s: token server %s sent no token",
		                     domain, ch->realm);
		goto out;
	}
	/* distribution's default lifetime is 60 s; refresh a little early */
	expires_in = json_get_int(j, "expires_in", 60);
	if (expires_in < 60)
		expires_in = 60;
	key = registry_host_key(h);
	if (!key) {
		r = -ENOMEM;
		goto out;
	}
	r = registry_token_put(c, key, scope, token, time(NULL) + expires_in - 5);
	log_debug("registry %s: got a bearer token for %s from %s (%s), valid %" PRId64 " s",
	          domain, scope, ch->realm, source, expires_in);
out:
	if (body.buf) {
		explicit_bzero(body.buf, body.len);
		free(body.buf);
	}
	xfer_reset_headers(&x);
	registry_request_done(&treq);
	return r;
}

/* The Authorization header for a request, from what we know of the host;
 * NULL when none is needed (yet). */
static int auth_header(struct content_registry_client *c, const struct content_registry_host *h,
                       const char *domain, const char *repo, const char *scope, bool refresh,
                       char **ret, struct strata_error **ret_err)
{
	_cleanup_(registry_challenge_done) struct registry_challenge ch = {0};
	_cleanup_free_ char *key = registry_host_key(h);
	_cleanup_(registry_secret_freep) char *token = NULL;
	char *hdr = NULL;
	int r;

	*ret = NULL;
	if (!key)
		return -ENOMEM;
	r = registry_host_challenge_get(c, key, &ch);
	if (r < 0)
		return r;

	if (ch.scheme == REGISTRY_AUTH_BEARER) {
		if (!refresh)
			token = registry_token_get(c, key, scope);
		if (!token) {
			r = fetch_token(c, h, &ch, domain, repo, scope, ret_err);
			if (r < 0)
				return r;
			token = registry_token_get(c, key, scope);
			if (!token)
				return -ENOMEM;
		}
		if (asprintf(&hdr, "Authorization: Bearer %s", token) < 0)
			return -ENOMEM;
	} else if (ch.scheme == REGISTRY_AUTH_BASIC) {
		_cleanup_free_ char *user = NULL;
		_cleanup_(registry_secret_freep) char *pass = NULL, *b64 = NULL;
		const char *source;
		r = registry_credentials_get(c, h, domain, &user, &pass, &source, ret_err);
		if (r < 0)
			return strata_error_prefix(ret_err, r, "registry %s: credentials", domain);
		if (r == 0)
			return 0;
		b64 = registry_basic_b64(user, pass);
		if (!b64 || asprintf(&hdr, "Authorization: Basic %s", b64) < 0)
			return -ENOMEM;
	}
	*ret = hdr;
	return 0;
}

/* --- the exchange ---------------------------------------------------------- */

void registry_request_done(struct registry_request *req)
{
	free(req->content_type);
	req->content_type = NULL;
	free(req->docker_digest);
	req->docker_digest = NULL;
	free(req->location);
	req->location = NULL;
}

static void secret_slist_free(struct curl_slist *l)
{
	for (struct curl_slist *i = l; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

static int build_headers(const struct content_registry_host *h, const struct registry_request *req,
                         const char *authz, struct curl_slist **ret)
{
	struct curl_slist *l = NULL, *n;
	char buf[128];

#define ADD(s)                                 \
	do {                                   \
		n = curl_slist_append(l, (s)); \
		if (!n)                        \
			goto oom;              \
		l = n;                         \
	} while (0)

	for (size_t i = 0; i < h->n_headers; i++) {
		_cleanup_free_ char *line = NULL;
		if (asprintf(&line, "%s: %s", h->headers[i].name, h->headers[i].value) < 0)
			goto oom;
		ADD(line);
	}
	if (req->accept) {
		_cleanup_free_ char *line = NULL;
		if (asprintf(&line, "Accept: %s", req->accept) < 0)
			goto oom;
		ADD(line);
	}
	if (req->body_type) {
		_cleanup_free_ char *line = NULL;
		if (asprintf(&line, "Content-Type: %s", req->body_type) < 0)
			goto oom;
		ADD(line);
	}
	/* no 100-continue round trip: bodies are small or wanted anyway */
	if (!streq(req->method, "GET") && !streq(req->method, "HEAD"))
		ADD("Expect:");
	if (req->range_list) {
		_cleanup_free_ char *line = NULL;
		if (asprintf(&line, "Range: bytes=%s", req->range_list) < 0)
			goto oom;
		ADD(line);
	} else if (req->range_start >= 0) {
		if (req->range_end >= 0)
			snprintf(buf, sizeof(buf), "Range: bytes=%" PRId64 "-%" PRId64,
			         req->range_start, req->range_end);
		else
			snprintf(buf, sizeof(buf), "Range: bytes=%" PRId64 "-", req->range_start);
		ADD(buf);
	}
	if (authz)
		ADD(authz);
#undef ADD
	*ret = l;
	return 0;
oom:
	secret_slist_free(l);
	return -ENOMEM;
}

int registry_request_do(struct content_registry_client *c, struct registry_request *req,
                        const char *what, struct strata_error **ret_err)
{
	const struct content_registry_host *h = req->host;
	_cleanup_free_ char *built = NULL, *scope = NULL;
	const char *url = req->url;
	struct xfer x = {.req = req};
	bool auth_answered = false, refresh = false, own_origin = true;
	unsigned attempt = 1;
	char detail[512];
	int r;

	if (asprintf(&scope, "repository:%s:%s", req->repo,
	             req->scope_actions ? req->scope_actions : "pull") < 0)
		return -ENOMEM;
	if (!url) {
		if (asprintf(&built, "%s://%s%s/%s%s", h->scheme, h->host, h->path, req->repo,
		             req->path) < 0)
			return -ENOMEM;
		url = built;
	} else {
		/* libcurl's rule for redirects, kept for a Location we follow
		 * ourselves: the registry's token is for its own origin only */
		size_t ls = strlen(h->scheme), lh = strlen(h->host);
		own_origin = strncmp(url, h->scheme, ls) == 0 && strncmp(url + ls, "://", 3) == 0 &&
		             strncmp(url + ls + 3, h->host, lh) == 0 &&
		             strchr("/?", url[ls + 3 + lh]);
	}

	for (;;) {
		_cleanup_(registry_secret_freep) char *authz = NULL;
		struct curl_slist *headers = NULL;
		CURLcode rc;

		if (own_origin) {
			r = auth_header(c, h, req->domain, req->repo, scope, refresh, &authz,
			                ret_err);
			if (r < 0)
				goto out;
		}
		r = build_headers(h, req, authz, &headers);
		if (r < 0)
			goto out;
		rc = perform_once(c, h, url, req->method, headers, NULL, NULL, &x);
		secret_slist_free(headers);

		if (x.sink_err) {
			r = x.sink_err;
			goto out;
		}
		if (x.read_err) {
			r = strata_error_set(ret_err, x.read_err,
			                     "registry %s: repository %s: %s: reading the body: %s",
			                     req->domain, req->repo, what, strerror(-x.read_err));
			goto out;
		}
		if (x.too_big) {
			r = strata_error_set(ret_err, -EMSGSIZE,
			                     "registry %s: repository %s: %s: larger than %" PRIu64
			                     " bytes (from %s://%s)",
			                     req->domain, req->repo, what, req->max_body, h->scheme,
			                     h->host);
			goto out;
		}
		if (req->range_ignored) {
			r = strata_error_set(
			        ret_err, -EOPNOTSUPP,
			        "registry %s: repository %s: %s: %s://%s answered a Range "
			        "request with the whole blob (HTTP 200), it does not "
			        "support Range",
			        req->domain, req->repo, what, h->scheme, h->host);
			goto out;
		}
		if (x.bad_range) {
			r = strata_error_set(
			        ret_err, -EBADMSG,
			        "registry %s: repository %s: %s: %s://%s answered a Range "
			        "request for offset %" PRId64 " with a different range",
			        req->domain, req->repo, what, h->scheme, h->host, req->range_start);
			goto out;
		}
		if (rc != CURLE_OK) {
			if (curl_retryable(rc) && req->delivered == 0 && attempt < c->max_tries) {
				unsigned ms = backoff_ms(c, attempt, -1);
				log_debug("registry %s: %s: %s://%s: %s; retry %u/%u in %u ms",
				          req->domain, what, h->scheme, h->host,
				          curl_easy_strerror(rc), attempt, c->max_tries - 1, ms);
				sleep_ms(ms);
				attempt++;
				continue;
			}
			r = strata_error_set(
			        ret_err, curl_errno(rc),
			        "registry %s: repository %s: %s: %s://%s: %s%s", req->domain,
			        req->repo, what, h->scheme, h->host, curl_easy_strerror(rc),
			        rc == CURLE_PEER_FAILED_VERIFICATION
			                ? " (add the CA with `ca` in hosts.toml, or skip_verify)"
			        : attempt > 1 ? " (gave up after retries)"
			                      : "");
			goto out;
		}

		if (req->status == 401 && !auth_answered && own_origin) {
			_cleanup_(registry_challenge_done) struct registry_challenge ch = {0};
			_cleanup_free_ char *key = registry_host_key(h);
			auth_answered = true;
			if (!key) {
				r = -ENOMEM;
				goto out;
			}
			if (!x.www_auth || registry_challenge_parse(x.www_auth, &ch) < 0) {
				r = strata_error_set(
				        ret_err, -EACCES,
				        "registry %s: repository %s: %s: %s://%s "
				        "answered 401 without a usable WWW-Authenticate "
				        "challenge",
				        req->domain, req->repo, what, h->scheme, h->host);
				goto out;
			}
			/* a 401 despite a cached token means it went stale */
			refresh = authz != NULL;
			r = registry_host_challenge_set(c, key, &ch);
			if (r < 0)
				goto out;
			continue;
		}
		if (req->status == 401 || req->status == 403) {
			_cleanup_free_ char *u = NULL;
			_cleanup_(registry_secret_freep) char *p = NULL;
			const char *source = "no credentials";
			(void)registry_credentials_get(c, h, req->domain, &u, &p, &source, NULL);
			describe_errbody(&x, detail, sizeof(detail));
			r = strata_error_set(
			        ret_err, -EACCES,
			        "registry %s: repository %s: %s: %s://%s refused access "
			        "(HTTP %ld%s; %s)",
			        req->domain, req->repo, what, h->scheme, h->host, req->status,
			        detail, source);
			goto out;
		}
		if ((req->status == 429 || (req->status >= 500 && req->status != 501)) &&
		    attempt < c->max_tries) {
			unsigned ms = backoff_ms(c, attempt, x.retry_after);
			log_debug("registry %s: %s: %s://%s: HTTP %ld; retry %u/%u in %u ms",
			          req->domain, what, h->scheme, h->host, req->status, attempt,
			          c->max_tries - 1, ms);
			sleep_ms(ms);
			attempt++;
			continue;
		}
		break;
	}

	if (req->status >= 200 && req->status < 300) {
		r = 0;
		goto out;
	}
	describe_errbody(&x, detail, sizeof(detail));
	if (req->status == 404)
		r = -ENOENT;
	else if (req->status == 429 || req->status >= 500)
		r = -EAGAIN;
	else if (req->status == 416)
		r = -ERANGE;
	else
		r = -EIO;
	r = strata_error_set(ret_err, r,
	                     "registry %s: repository %s: %s: %s://%s: %s (HTTP %ld%s)%s",
	                     req->domain, req->repo, what, h->scheme, h->host,
	                     r == -ENOENT ? "not found" : "request failed", req->status, detail,
	                     attempt > 1 ? ", gave up after retries" : "");
out:
	free(x.www_auth);
	return r;
}
