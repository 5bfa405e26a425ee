/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to content/registry/: the client's shared state and the one
 * function that performs an HTTP exchange with a registry host (auth,
 * retries, redirects), used by fetch.c and push.c.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>

#include "registry.h"

bool registry_is_localhost(const char *domain);

/* --- auth.c --------------------------------------------------------------- */

enum registry_auth_scheme {
	REGISTRY_AUTH_NONE = 0,
	REGISTRY_AUTH_BASIC,
	REGISTRY_AUTH_BEARER,
};

struct registry_challenge {
	enum registry_auth_scheme scheme;
	char *realm;
	char *service;
	char *scope; /* what the registry asked for, if it said */
};

void registry_challenge_done(struct registry_challenge *ch);
/* Parse a WWW-Authenticate value; prefers Bearer over Basic when several
 * challenges are given. -EINVAL if none is understood. */
int registry_challenge_parse(const char *value, struct registry_challenge *ret);

/* base64 of "user:password" (malloc'd). */
char *registry_basic_b64(const char *user, const char *password);

/* --- client.c (state) and http.c (exchanges)
 * ------------------------------------------------------------- */

/* What a client learned about one host (scheme://host): its challenge and
 * quirks. Lives as long as the client. */
struct registry_host_state {
	char *key; /* "https://host:port" */
	struct registry_challenge challenge;
	unsigned quirks; /* REGISTRY_QUIRK_* */
};

enum {
	/* answered a Range request with 200 + the whole blob */
	REGISTRY_QUIRK_NO_RANGE = 1u << 0,
	/* answered a request for several ranges with one part or all of it */
	REGISTRY_QUIRK_NO_MULTIRANGE = 1u << 1,
};

struct registry_token {
	char *host_key;
	char *scope;
	char *token; /* secret */
	time_t expires;
};

#define REGISTRY_POOL_IDLE_MAX 16

struct registry_hosts_entry {
	char *domain;
	struct content_registry_hosts *hosts;
};

struct registry_route {
	char *name;                          /* "domain/path" */
	struct content_registry_client *via; /* a reference */
};

/*
 * Locking: `lock` protects host_states, tokens, hosts_cache (the arrays and
 * the entries' mutable fields), routes and the idle handle pool. It is never held across network
 * I/O. refs is atomic. Everything else is set at creation and read-only afterwards. Returned
 * content_registry_hosts stay valid for the client's lifetime (entries are
 * never removed).
 */
struct content_registry_client {
	char *hosts_dir;
	char *docker_config_dir;
	bool no_docker_config;
	char *user;     /* secret */
	char *password; /* secret */
	bool plain_http;
	char *user_agent;
	unsigned max_tries;
	unsigned retry_base_ms;
	unsigned connect_timeout_sec;
	unsigned low_speed_time_sec;

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	pthread_mutex_t lock;
	struct registry_host_state **host_states;
	size_t n_host_states;
	struct registry_token *tokens;
	size_t n_tokens;
	struct registry_hosts_entry *hosts_cache;
	size_t n_hosts_cache;
	CURL *idle[REGISTRY_POOL_IDLE_MAX];
	size_t n_idle;
	struct registry_route *routes;
	size_t n_routes;
	atomic_bool any_routes; /* n_routes > 0, read without the lock */
	atomic_uint refs;
};

/* The client requests for ref's repository go through (a reference), or
 * NULL when they are not routed. */
struct content_registry_client *registry_route_get(struct content_registry_client *c,
                                                   const struct content_ref *ref);

/* The hosts for ref's domain (cached); valid for the client's lifetime. */
int registry_client_hosts(struct content_registry_client *c, const char *domain,
                          const struct content_registry_hosts **ret, struct strata_error **ret_err);

/* Pooled easy handles: get one (reset, or new), give it back after use. */
CURL *registry_handle_get(struct content_registry_client *c);
void registry_handle_put(struct content_registry_client *c, CURL *h);

/* Free a secret string, wiping it first. */
void registry_secret_free(char *s);
void registry_secret_freep(char **s);

/* "scheme://host", the key of per-host state (malloc'd). */
char *registry_host_key(const struct content_registry_host *h);
/* A copy of the host's known challenge (scheme NONE if none yet). */
int registry_host_challenge_get(struct content_registry_client *c, const char *key,
                                struct registry_challenge *ret);
/* Remember a challenge; takes ownership of *ch. */
int registry_host_challenge_set(struct content_registry_client *c, const char *key,
                                struct registry_challenge *ch);
/* A copy of a cached, unexpired token for (host, scope), or NULL. */
char *registry_token_get(struct content_registry_client *c, const char *key, const char *scope);
/* Cache a token (NULL drops the cached one). */
int registry_token_put(struct content_registry_client *c, const char *key, const char *scope,
                       const char *token, time_t expires);
/* Credentials for host h of `domain`: the explicit --user, else docker's
 * config.json for h->host, then for domain. 1 found, 0 none, -errno.
 * *ret_source says where they came from, for messages (never the secret). */
int registry_credentials_get(struct content_registry_client *c,
                             const struct content_registry_host *h, const char *domain,
                             char **ret_user, char **ret_pass, const char **ret_source,
                             struct strata_error **ret_err);

bool registry_host_quirk(struct content_registry_client *c, const struct content_registry_host *h,
                         unsigned quirk);
void registry_host_set_quirk(struct content_registry_client *c,
                             const struct content_registry_host *h, unsigned quirk);

/* A request body: len bytes of buf, or when buf is NULL, of fd from offset
 * (read with pread, so the fd may be shared). Read again from the start on
 * each retry. */
struct registry_body {
	const void *buf;
	int fd;
	uint64_t offset;
	uint64_t len;
};

/* One exchange with a registry host. */
struct registry_request {
	/* in */
	const struct content_registry_host *host;
	const char *domain; /* the reference's domain, for messages */
	const char *repo;   /* for the token scope and messages */
	const char *method; /* "GET", "HEAD", "POST", "PUT" or "PATCH" */
	const char *path;   /* after <host path>/<repo>, e.g. "/manifests/latest" */
	/* NULL, or the absolute URL to use instead of host + repo + path (an
	 * upload's Location); credentials go only to host's own origin */
	const char *url;
	const char *scope_actions;        /* token scope actions; NULL = "pull" */
	const char *accept;               /* NULL = none */
	const struct registry_body *body; /* NULL = none */
	const char *body_type;            /* Content-Type of body; NULL = none */
	int64_t range_start;              /* < 0: no Range header */
	int64_t range_end;                /* inclusive; < 0: open ended */
	const char *range_list;           /* instead: "a-b,c-d" (several ranges) */
	/* on 200 to a Range request: true = abort with range_ignored set,
	 * false = drop the first range_start bytes and deliver the rest */
	bool range_strict;
	uint64_t max_body;            /* 0 = unlimited; more is -EMSGSIZE */
	content_registry_write_fn fn; /* body of a 2xx answer; NULL = drop */
	void *userdata;

	/* out (the last answer) */
	long status;
	char *content_type;
	char *docker_digest;
	char *location;
	int64_t content_length; /* -1 unknown */
	int64_t content_range;  /* first byte of a 206 answer's Content-Range, -1 none */
	uint64_t delivered;     /* bytes handed to fn */
	bool range_ignored;
};

void registry_request_done(struct registry_request *req);

/*
 * Perform req: authenticate (cached token, or answer a 401 challenge once),
 * retry 5xx/429 and connection errors with backoff while nothing has been
 * delivered (a body is sent again whole), follow redirects of GET and HEAD
 * only (an upload is answered with a Location, not redirected). Returns 0 for a 2xx answer;
 * otherwise -ENOENT (404), -EACCES (401/403), -EBADMSG (the sink saw more than max_body or a bad
 * Content-Range), -EMSGSIZE, -EOPNOTSUPP (range_ignored), the sink's error, -EAGAIN (still 5xx/429
 * after the tries), -EIO and friends for transport errors; with a message naming registry,
 * repository and what. `what` describes the operation ("manifest latest", "blob sha256:...").
 */
int registry_request_do(struct content_registry_client *c, struct registry_request *req,
                        const char *what, struct strata_error **ret_err);

/* --- multipart/byteranges (multipart.c) -------------------------------------- */

typedef int (*registry_part_fn)(uint64_t offset, const uint8_t *data, size_t len, void *userdata);

/*
 * A multipart/byteranges answer (RFC 9110 14.6) parsed as it arrives: each
 * part's bytes are collected and handed to fn whole, with the offset its
 * Content-Range names. The parser copes with any split of the input; it
 * refuses a part without Content-Range or larger than max_part, an
 * over-long line and more than 64 KiB of text outside the parts.
 */
struct registry_multipart {
	char *delim; /* "--" boundary */
	size_t delim_len;
	registry_part_fn fn;
	void *userdata;
	size_t max_part;
	enum { MP_LINE, MP_DATA, MP_DONE } state;
	bool in_headers; /* after a delimiter line, before the blank line */
	char line[1024];
	size_t line_len;
	size_t text; /* bytes outside parts */
	int64_t part_start;
	uint8_t *data;
	size_t data_len, data_want;
	unsigned parts;
};

/* -EBADMSG when content_type is not multipart/byteranges with a boundary. */
int registry_multipart_init(struct registry_multipart *mp, const char *content_type,
                            size_t max_part, registry_part_fn fn, void *userdata);
/* fn's negative return is passed on; -EBADMSG for malformed input. */
int registry_multipart_feed(struct registry_multipart *mp, const void *buf, size_t len);
/* -EBADMSG unless the closing delimiter was seen. */
int registry_multipart_finish(const struct registry_multipart *mp);
void registry_multipart_done(struct registry_multipart *mp);
