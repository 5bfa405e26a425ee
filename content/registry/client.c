/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client's shared state: options, the idle handle pool, the
 * per-host knowledge (challenges, Range quirks), cached tokens, host
 * configurations, and credentials. The exchange itself is in http.c.
 *
 * Connections: libcurl does not support sharing a connection cache between
 * concurrent threads, so the client keeps a pool of idle easy handles (each
 * keeps its live connections across curl_easy_reset()) and shares only the
 * DNS and TLS session caches through a CURLSH, whose locks make that safe.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "common.h"
#include "registry.h"
#include "registry-internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userp)
{
	struct content_registry_client *c = userp;
	pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userp)
{
	struct content_registry_client *c = userp;
	pthread_mutex_unlock(&c->share_locks[data]);
}

CURL *registry_handle_get(struct content_registry_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_idle > 0)
		h = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

void registry_handle_put(struct content_registry_client *c, CURL *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->n_idle < REGISTRY_POOL_IDLE_MAX) {
		c->idle[c->n_idle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_cleanup(h);
}

void registry_secret_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void registry_secret_freep(char **s)
{
	registry_secret_free(*s);
}

int content_registry_client_new(const struct content_registry_options *opts,
                                struct content_registry_client **ret, struct strata_error **ret_err)
{
	static const struct content_registry_options no_opts;
	struct content_registry_client *c;

	if (!opts)
		opts = &no_opts;
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return strata_error_set(ret_err, -EIO, "initialise libcurl: %s",
		                        curl_easy_strerror(curl_init_result));

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	for (size_t i = 0; i < ELEMENTSOF(c->share_locks); i++)
		pthread_mutex_init(&c->share_locks[i], NULL);

	atomic_init(&c->refs, 1);
	c->no_docker_config = opts->no_docker_config;
	c->plain_http = opts->plain_http;
	c->max_tries = opts->max_tries ? opts->max_tries : 4;
	c->retry_base_ms = opts->retry_base_ms ? opts->retry_base_ms : 250;
	c->connect_timeout_sec = opts->connect_timeout_sec ? opts->connect_timeout_sec : 10;
	c->low_speed_time_sec = opts->low_speed_time_sec ? opts->low_speed_time_sec : 30;
	if (opts->hosts_dir && !(c->hosts_dir = strdup(opts->hosts_dir)))
		goto oom;
	if (opts->docker_config_dir && !(c->docker_config_dir = strdup(opts->docker_config_dir)))
		goto oom;
	if (opts->user_agent)
		c->user_agent = strdup(opts->user_agent);
	else if (asprintf(&c->user_agent, "strata/%s", STRATA_VERSION) < 0)
		c->user_agent = NULL;
	if (!c->user_agent)
		goto oom;
	if (opts->user) {
		const char *colon = strchr(opts->user, ':');
		c->user = colon ? strndup(opts->user, colon - opts->user) : strdup(opts->user);
		c->password = strdup(colon ? colon + 1 : "");
		if (!c->user || !c->password)
			goto oom;
	}

	c->share = curl_share_init();
	if (!c->share)
		goto oom;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);

	*ret = c;
	return 0;
oom:
	content_registry_client_free(c);
	return -ENOMEM;
}

struct content_registry_client *content_registry_client_free(struct content_registry_client *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) > 1)
		return NULL;
	for (size_t i = 0; i < c->n_routes; i++) {
		free(c->routes[i].name);
		content_registry_client_free(c->routes[i].via);
	}
	free(c->routes);
	/* handles first: they reference the share */
	for (size_t i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	if (c->share)
		curl_share_cleanup(c->share);
	for (size_t i = 0; i < c->n_host_states; i++) {
		free(c->host_states[i]->key);
		registry_challenge_done(&c->host_states[i]->challenge);
		free(c->host_states[i]);
	}
	free(c->host_states);
	for (size_t i = 0; i < c->n_tokens; i++) {
		free(c->tokens[i].host_key);
		free(c->tokens[i].scope);
		registry_secret_free(c->tokens[i].token);
	}
	free(c->tokens);
	for (size_t i = 0; i < c->n_hosts_cache; i++) {
		free(c->hosts_cache[i].domain);
		content_registry_hosts_free(c->hosts_cache[i].hosts);
	}
	free(c->hosts_cache);
	free(c->hosts_dir);
	free(c->docker_config_dir);
	registry_secret_free(c->user);
	registry_secret_free(c->password);
	free(c->user_agent);
	pthread_mutex_destroy(&c->lock);
	for (size_t i = 0; i < ELEMENTSOF(c->share_locks); i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	free(c);
	return NULL;
}

struct content_registry_client *content_registry_client_ref(struct content_registry_client *c)
{
	if (c)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

/* --- routes ------------------------------------------------------------------ */

int content_registry_client_set_route(struct content_registry_client *c, const char *name,
                                      struct content_registry_client *via)
{
	struct content_registry_client *old = NULL;
	size_t i;
	int r = 0;

	if (!name || !*name || via == c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < c->n_routes; i++)
		if (streq(c->routes[i].name, name))
			break;
	if (i < c->n_routes) {
		old = c->routes[i].via;
		if (via)
			c->routes[i].via = content_registry_client_ref(via);
		else {
			free(c->routes[i].name);
			c->routes[i] = c->routes[--c->n_routes];
		}
	} else if (via) {
		struct registry_route *a = realloc(c->routes, (c->n_routes + 1) * sizeof(*a));
		char *n = strdup(name);

		if (a)
			c->routes = a;
		if (a && n) {
			c->routes[c->n_routes++] =
			        (struct registry_route){n, content_registry_client_ref(via)};
		} else {
			free(n);
			r = -ENOMEM;
		}
	}
	atomic_store(&c->any_routes, c->n_routes > 0);
	pthread_mutex_unlock(&c->lock);
	/* outside the lock: the last reference frees a whole client */
	content_registry_client_free(old);
	return r;
}

struct content_registry_client *registry_route_get(struct content_registry_client *c,
                                                   const struct content_ref *ref)
{
	struct content_registry_client *via = NULL;
	size_t dl = strlen(ref->domain);

	/* the lazy read path asks on every request: no lock without routes */
	if (!atomic_load(&c->any_routes))
		return NULL;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_routes && !via; i++) {
		const char *n = c->routes[i].name;
		if (strncmp(n, ref->domain, dl) == 0 && n[dl] == '/' &&
		    streq(n + dl + 1, ref->path))
			via = content_registry_client_ref(c->routes[i].via);
	}
	pthread_mutex_unlock(&c->lock);
	return via;
}

bool content_registry_client_routed(struct content_registry_client *c,
                                    const struct content_ref *ref)
{
	struct content_registry_client *via = registry_route_get(c, ref);

	content_registry_client_free(via);
	return via != NULL;
}

int registry_client_hosts(struct content_registry_client *c, const char *domain,
                          const struct content_registry_hosts **ret, struct strata_error **ret_err)
{
	_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
	struct registry_hosts_entry *n;
	int r;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_hosts_cache; i++)
		if (streq(c->hosts_cache[i].domain, domain)) {
			*ret = c->hosts_cache[i].hosts;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	pthread_mutex_unlock(&c->lock);

	/* read without the lock; a racing thread may load it too, first wins */
	r = content_registry_hosts_load(c->hosts_dir, domain, c->plain_http, &hs, ret_err);
	if (r < 0)
		return r;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_hosts_cache; i++)
		if (streq(c->hosts_cache[i].domain, domain)) {
			*ret = c->hosts_cache[i].hosts;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	n = realloc(c->hosts_cache, (c->n_hosts_cache + 1) * sizeof(*n));
	if (!n) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	c->hosts_cache = n;
	n[c->n_hosts_cache].domain = strdup(domain);
	if (!n[c->n_hosts_cache].domain) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	n[c->n_hosts_cache].hosts = TAKE_PTR(hs);
	*ret = n[c->n_hosts_cache++].hosts;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- per-host state (call with c->lock held) ------------------------------ */

char *registry_host_key(const struct content_registry_host *h)
{
	char *k;
	if (asprintf(&k, "%s://%s", h->scheme, h->host) < 0)
		return NULL;
	return k;
}

static struct registry_host_state *host_state_locked(struct content_registry_client *c,
                                                     const char *key, bool create)
{
	struct registry_host_state *s, **n;

	for (size_t i = 0; i < c->n_host_states; i++)
		if (streq(c->host_states[i]->key, key))
			return c->host_states[i];
	if (!create)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->key = strdup(key))) {
		free(s);
		return NULL;
	}
	n = realloc(c->host_states, (c->n_host_states + 1) * sizeof(*n));
	if (!n) {
		free(s->key);
		free(s);
		return NULL;
	}
	n[c->n_host_states++] = s;
	c->host_states = n;
	return s;
}

bool registry_host_quirk(struct content_registry_client *c, const struct content_registry_host *h,
                         unsigned quirk)
{
	_cleanup_free_ char *key = registry_host_key(h);
	struct registry_host_state *s;
	bool r = false;

	if (!key)
		return false;
	pthread_mutex_lock(&c->lock);
	s = host_state_locked(c, key, false);
	if (s)
		r = (s->quirks & quirk) != 0;
	pthread_mutex_unlock(&c->lock);
	return r;
}

void registry_host_set_quirk(struct content_registry_client *c,
                             const struct content_registry_host *h, unsigned quirk)
{
	_cleanup_free_ char *key = registry_host_key(h);
	struct registry_host_state *s;

	if (!key)
		return;
	pthread_mutex_lock(&c->lock);
	s = host_state_locked(c, key, true);
	if (s)
		s->quirks |= quirk;
	pthread_mutex_unlock(&c->lock);
}

int registry_host_challenge_get(struct content_registry_client *c, const char *key,
                                struct registry_challenge *ret)
{
	struct registry_host_state *s;
	int r = 0;

	*ret = (struct registry_challenge){0};
	pthread_mutex_lock(&c->lock);
	s = host_state_locked(c, key, false);
	if (s && s->challenge.scheme != REGISTRY_AUTH_NONE) {
		ret->scheme = s->challenge.scheme;
		ret->realm = s->challenge.realm ? strdup(s->challenge.realm) : NULL;
		ret->service = s->challenge.service ? strdup(s->challenge.service) : NULL;
		if ((s->challenge.realm && !ret->realm) || (s->challenge.service && !ret->service))
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		registry_challenge_done(ret);
	return r;
}

int registry_host_challenge_set(struct content_registry_client *c, const char *key,
                                struct registry_challenge *ch)
{
	struct registry_host_state *s;

	pthread_mutex_lock(&c->lock);
	s = host_state_locked(c, key, true);
	if (s) {
		registry_challenge_done(&s->challenge);
		s->challenge = *ch;
		*ch = (struct registry_challenge){0};
	}
	pthread_mutex_unlock(&c->lock);
	return s ? 0 : -ENOMEM;
}

char *registry_token_get(struct content_registry_client *c, const char *key, const char *scope)
{
	time_t now = time(NULL);
	char *t = NULL;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_tokens; i++)
		if (streq(c->tokens[i].host_key, key) && streq(c->tokens[i].scope, scope) &&
		    c->tokens[i].expires > now) {
			t = strdup(c->tokens[i].token);
			break;
		}
	pthread_mutex_unlock(&c->lock);
	return t;
}

int registry_token_put(struct content_registry_client *c, const char *key, const char *scope,
                       const char *token, time_t expires)
{
	struct registry_token *n;
	int r = 0;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_tokens; i++)
		if (streq(c->tokens[i].host_key, key) && streq(c->tokens[i].scope, scope)) {
			registry_secret_free(c->tokens[i].token);
			free(c->tokens[i].host_key);
			free(c->tokens[i].scope);
			c->tokens[i] = c->tokens[--c->n_tokens];
			break;
		}
	if (token) {
		n = realloc(c->tokens, (c->n_tokens + 1) * sizeof(*n));
		if (n) {
			c->tokens = n;
			n[c->n_tokens] = (struct registry_token){
			        .host_key = strdup(key),
			        .scope = strdup(scope),
			        .token = strdup(token),
			        .expires = expires,
			};
			if (n[c->n_tokens].host_key && n[c->n_tokens].scope &&
			    n[c->n_tokens].token) {
				c->n_tokens++;
			} else {
				free(n[c->n_tokens].host_key);
				free(n[c->n_tokens].scope);
				free(n[c->n_tokens].token);
				r = -ENOMEM;
			}
		} else {
			r = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* --- credentials ------------------------------------------------------------ */

int registry_credentials_get(struct content_registry_client *c,
                             const struct content_registry_host *h, const char *domain,
                             char **ret_user, char **ret_pass, const char **ret_source,
                             struct strata_error **ret_err)
{
	int r;

	*ret_user = *ret_pass = NULL;
	*ret_source = "no credentials";
	if (c->user) {
		*ret_user = strdup(c->user);
		*ret_pass = strdup(c->password);
		*ret_source = "credentials given with --user";
		if (!*ret_user || !*ret_pass) {
			free(*ret_user);
			registry_secret_free(*ret_pass);
			return -ENOMEM;
		}
		return 1;
	}
	if (c->no_docker_config)
		return 0;
	r = content_registry_docker_credentials(c->docker_config_dir, h->host, ret_user, ret_pass,
	                                        ret_err);
	if (r == 0 && !streq(h->host, domain))
		r = content_registry_docker_credentials(c->docker_config_dir, domain, ret_user,
		                                        ret_pass, ret_err);
	if (r > 0)
		*ret_source = "credentials from docker config.json";
	return r;
}
