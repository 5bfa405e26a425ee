/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd's certs.d host configuration (remotes/docker/config/hosts.go):
 * which hosts serve a registry domain, in which order, for which
 * operations, with which TLS settings. Same directory lookup, same ordering
 * ([host."..."] tables in file order, then `server`), same defaults.
 *
 * Two deliberate differences: a hosts.toml that does not parse is an error
 * naming the file (containerd logs it and silently falls back to defaults),
 * and `plain_http = true` is accepted on the root or a host table to make a
 * scheme-less URL plain HTTP.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

static void host_done(struct content_registry_host *h)
{
	free(h->scheme);
	free(h->host);
	free(h->path);
	for (size_t i = 0; i < h->n_ca_files; i++)
		free(h->ca_files[i]);
	free(h->ca_files);
	free(h->client_cert);
	free(h->client_key);
	for (size_t i = 0; i < h->n_headers; i++) {
		free(h->headers[i].name);
		free(h->headers[i].value);
	}
	free(h->headers);
	*h = (struct content_registry_host){0};
}

struct content_registry_hosts *content_registry_hosts_free(struct content_registry_hosts *h)
{
	if (!h)
		return NULL;
	for (size_t i = 0; i < h->n_hosts; i++)
		host_done(&h->hosts[i]);
	free(h->hosts);
	free(h->dir);
	free(h);
	return NULL;
}

bool registry_is_localhost(const char *domain)
{
	char buf[256];
	const char *h = domain;
	size_t n;

	/* strip a port: "[::1]:5000" -> "::1", "localhost:5000" -> "localhost" */
	if (h[0] == '[') {
		const char *close = strchr(h, ']');
		if (!close || (size_t)(close - h - 1) >= sizeof(buf))
			return false;
		n = close - h - 1;
		memcpy(buf, h + 1, n);
	} else {
		const char *colon = strchr(h, ':');
		/* more than one ':' is a bare IPv6 address */
		if (colon && strchr(colon + 1, ':'))
			colon = NULL;
		n = colon ? (size_t)(colon - h) : strlen(h);
		if (n >= sizeof(buf))
			return false;
		memcpy(buf, h, n);
	}
	buf[n] = '\0';

	if (streq(buf, "localhost"))
		return true;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, buf, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

static int strv_push(char ***v, size_t *n, char *s)
{
	char **nv;
	if (!s)
		return -ENOMEM;
	nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

static char *abs_path(const char *dir, const char *p)
{
	return p[0] == '/' ? strdup(p) : path_join(dir, p);
}

/* `what` is "server" or "host.\"URL\"" for messages. */
static int parse_host_table(const char *file, const char *dir, const char *server,
                            const struct toml_value *t, struct content_registry_host *ret,
                            struct strata_error **ret_err)
{
	struct content_registry_host h = {0};
	bool override_path = false, plain_http = false;
	struct toml_value *v;
	int r;

	if ((v = toml_get(t, "override_path")) && toml_as_bool(v, &override_path) < 0)
		goto bad_type_override;
	if ((v = toml_get(t, "plain_http")) && toml_as_bool(v, &plain_http) < 0) {
		r = strata_error_set(ret_err, -EINVAL, "%s: %s: \"plain_http\" must be a boolean",
		                     file, strempty(server));
		goto fail;
	}
	if ((v = toml_get(t, "skip_verify")) && toml_as_bool(v, &h.skip_verify) < 0) {
		r = strata_error_set(ret_err, -EINVAL, "%s: %s: \"skip_verify\" must be a boolean",
		                     file, strempty(server));
		goto fail;
	}

	if (server && *server) {
		const char *rest = server, *slash;
		if (strncmp(server, "http://", 7) == 0) {
			h.scheme = strdup("http");
			rest = server + 7;
		} else if (strncmp(server, "https://", 8) == 0) {
			h.scheme = strdup("https");
			rest = server + 8;
		} else {
			h.scheme = strdup(plain_http ? "http" : "https");
		}
		slash = strchrnul(rest, '/');
		if (slash == rest) {
			r = strata_error_set(ret_err, -EINVAL, "%s: server \"%s\": no host", file,
			                     server);
			goto fail;
		}
		h.host = strndup(rest, slash - rest);
		if (*slash) {
			_cleanup_free_ char *clean = NULL;
			/* path.Clean: collapse "//" and drop a trailing "/" */
			clean = strdup(slash);
			if (!clean) {
				r = -ENOMEM;
				goto fail;
			}
			char *w = clean;
			for (const char *p = clean; *p; p++)
				if (!(*p == '/' && (w > clean && w[-1] == '/')))
					*w++ = *p;
			*w = '\0';
			if (w - clean > 1 && w[-1] == '/')
				w[-1] = '\0';
			size_t len = strlen(clean);
			if (!override_path && (len < 3 || !streq(clean + len - 3, "/v2"))) {
				if (asprintf(&h.path, "%s/v2", streq(clean, "/") ? "" : clean) < 0)
					h.path = NULL;
			} else {
				h.path = strdup(clean);
			}
		} else {
			h.path = strdup(override_path ? "" : "/v2");
		}
		if (!h.scheme || !h.host || !h.path) {
			r = -ENOMEM;
			goto fail;
		}
	} else if (plain_http) {
		/* remembered for the default host filled in by the caller */
		h.scheme = strdup("http");
		if (!h.scheme) {
			r = -ENOMEM;
			goto fail;
		}
	}

	v = toml_get(t, "capabilities");
	if (v) {
		if (toml_type(v) != TOML_ARRAY) {
			r = strata_error_set(ret_err, -EINVAL,
			                     "%s: %s: \"capabilities\" must be an array", file,
			                     strempty(server));
			goto fail;
		}
		for (size_t i = 0; i < toml_count(v); i++) {
			const char *c;
			if (toml_as_string(toml_at(v, i), &c) < 0) {
				r = strata_error_set(ret_err, -EINVAL,
				                     "%s: %s: capabilities must be strings", file,
				                     strempty(server));
				goto fail;
			}
			if (strcasecmp(c, "pull") == 0)
				h.capabilities |= CONTENT_REGISTRY_CAP_PULL;
			else if (strcasecmp(c, "resolve") == 0)
				h.capabilities |= CONTENT_REGISTRY_CAP_RESOLVE;
			else if (strcasecmp(c, "push") == 0)
				h.capabilities |= CONTENT_REGISTRY_CAP_PUSH;
			else {
				r = strata_error_set(ret_err, -EINVAL,
				                     "%s: %s: unknown capability \"%s\"", file,
				                     strempty(server), c);
				goto fail;
			}
		}
	}
	if (!v || toml_count(v) == 0)
		h.capabilities = CONTENT_REGISTRY_CAP_PULL | CONTENT_REGISTRY_CAP_RESOLVE |
		                 CONTENT_REGISTRY_CAP_PUSH;

	v = toml_get(t, "ca");
	if (v) {
		const char *s;
		if (toml_type(v) == TOML_STRING) {
			(void)toml_as_string(v, &s);
			r = strv_push(&h.ca_files, &h.n_ca_files, abs_path(dir, s));
			if (r < 0)
				goto fail;
		} else if (toml_type(v) == TOML_ARRAY) {
			for (size_t i = 0; i < toml_count(v); i++) {
				if (toml_as_string(toml_at(v, i), &s) < 0) {
					r = strata_error_set(
					        ret_err, -EINVAL,
					        "%s: %s: \"ca\" entries must be strings", file,
					        strempty(server));
					goto fail;
				}
				r = strv_push(&h.ca_files, &h.n_ca_files, abs_path(dir, s));
				if (r < 0)
					goto fail;
			}
		} else {
			r = strata_error_set(ret_err, -EINVAL,
			                     "%s: %s: \"ca\" must be a string or an array", file,
			                     strempty(server));
			goto fail;
		}
	}

	v = toml_get(t, "client");
	if (v) {
		const struct toml_value *first = v;
		const char *cert = NULL, *key = NULL;
		if (toml_type(v) == TOML_ARRAY && toml_count(v) > 0)
			first = toml_at(v, 0);
		if (toml_type(first) == TOML_STRING) {
			(void)toml_as_string(first, &cert);
		} else if (toml_type(first) == TOML_ARRAY && toml_count(first) == 2 &&
		           toml_as_string(toml_at(first, 0), &cert) == 0 &&
		           toml_as_string(toml_at(first, 1), &key) == 0) {
		} else if (!(toml_type(v) == TOML_ARRAY && toml_count(v) == 0)) {
			r = strata_error_set(
			        ret_err, -EINVAL,
			        "%s: %s: \"client\" must be a path or [cert, key] pairs", file,
			        strempty(server));
			goto fail;
		}
		if (cert) {
			h.client_cert = abs_path(dir, cert);
			h.client_key = key && *key ? abs_path(dir, key) : NULL;
			if (!h.client_cert) {
				r = -ENOMEM;
				goto fail;
			}
		}
	}

	v = toml_get(t, "header");
	if (v) {
		if (toml_type(v) != TOML_TABLE) {
			r = strata_error_set(ret_err, -EINVAL, "%s: %s: \"header\" must be a table",
			                     file, strempty(server));
			goto fail;
		}
		for (size_t i = 0; i < toml_count(v); i++) {
			const char *name = toml_key_at(v, i);
			struct toml_value *hv = toml_at(v, i);
			size_t nvals = toml_type(hv) == TOML_ARRAY ? toml_count(hv) : 1;
			for (size_t j = 0; j < nvals; j++) {
				const struct toml_value *one =
				        toml_type(hv) == TOML_ARRAY ? toml_at(hv, j) : hv;
				const char *s;
				struct content_registry_header *nh;
				if (toml_as_string(one, &s) < 0 || strpbrk(name, ":\r\n") ||
				    strpbrk(s, "\r\n")) {
					r = strata_error_set(ret_err, -EINVAL,
					                     "%s: %s: invalid header \"%s\"", file,
					                     strempty(server), name);
					goto fail;
				}
				nh = realloc(h.headers, (h.n_headers + 1) * sizeof(*nh));
				if (!nh) {
					r = -ENOMEM;
					goto fail;
				}
				h.headers = nh;
				nh[h.n_headers].name = strdup(name);
				nh[h.n_headers].value = strdup(s);
				h.n_headers++;
				if (!nh[h.n_headers - 1].name || !nh[h.n_headers - 1].value) {
					r = -ENOMEM;
					goto fail;
				}
			}
		}
	}

	*ret = h;
	return 0;

bad_type_override:
	r = strata_error_set(ret_err, -EINVAL, "%s: %s: \"override_path\" must be a boolean", file,
	                     strempty(server));
fail:
	host_done(&h);
	return r;
}

static int hosts_append(struct content_registry_hosts *hs, struct content_registry_host *h)
{
	struct content_registry_host *n = realloc(hs->hosts, (hs->n_hosts + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	n[hs->n_hosts++] = *h;
	hs->hosts = n;
	*h = (struct content_registry_host){0};
	return 0;
}

static int parse_hosts_file(const char *dir, const char *file, struct content_registry_hosts *hs,
                            struct strata_error **ret_err)
{
	_cleanup_toml_ struct toml_value *root = NULL;
	struct content_registry_host h;
	struct toml_value *hosts, *v;
	const char *server = NULL;
	int r;

	r = toml_parse_file(file, &root, ret_err);
	if (r < 0)
		return r;

	hosts = toml_get(root, "host");
	if (hosts && toml_type(hosts) != TOML_TABLE)
		return strata_error_set(ret_err, -EINVAL, "%s: \"host\" must be a table", file);
	for (size_t i = 0; hosts && i < toml_count(hosts); i++) {
		const char *url = toml_key_at(hosts, i);
		struct toml_value *t = toml_at(hosts, i);
		if (toml_type(t) != TOML_TABLE)
			return strata_error_set(ret_err, -EINVAL, "%s: host.\"%s\" must be a table",
			                        file, url);
		if (!*url)
			return strata_error_set(ret_err, -EINVAL, "%s: host with an empty URL",
			                        file);
		r = parse_host_table(file, dir, url, t, &h, ret_err);
		if (r < 0)
			return r;
		r = hosts_append(hs, &h);
		if (r < 0) {
			host_done(&h);
			return r;
		}
	}

	v = toml_get(root, "server");
	if (v && toml_as_string(v, &server) < 0)
		return strata_error_set(ret_err, -EINVAL, "%s: \"server\" must be a string", file);
	r = parse_host_table(file, dir, server, root, &h, ret_err);
	if (r < 0)
		return r;
	r = hosts_append(hs, &h);
	if (r < 0)
		host_done(&h);
	return r;
}

/* No hosts.toml: *.crt are CAs, *.cert (+ *.key) a client pair. */
static int load_cert_files(const char *dir, struct content_registry_hosts *hs)
{
	struct content_registry_host h = {0};
	_cleanup_(closedirp) DIR *d = opendir(dir);
	struct dirent *de;
	int r;

	if (!d && errno != ENOENT)
		return negative_errno();
	while (d && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (de->d_type == DT_DIR)
			continue;
		if (n > 4 && streq(de->d_name + n - 4, ".crt")) {
			r = strv_push(&h.ca_files, &h.n_ca_files, path_join(dir, de->d_name));
			if (r < 0)
				goto fail;
		} else if (n > 5 && streq(de->d_name + n - 5, ".cert") && !h.client_cert) {
			_cleanup_free_ char *key = NULL;
			struct stat st;
			h.client_cert = path_join(dir, de->d_name);
			if (asprintf(&key, "%.*s.key", (int)(n - 5), de->d_name) < 0) {
				r = -ENOMEM;
				goto fail;
			}
			h.client_key = path_join(dir, key);
			if (!h.client_cert || !h.client_key) {
				r = -ENOMEM;
				goto fail;
			}
			if (stat(h.client_key, &st) < 0) {
				free(h.client_key);
				h.client_key = NULL;
			}
		}
	}
	r = hosts_append(hs, &h);
	if (r < 0)
		goto fail;
	return 0;
fail:
	host_done(&h);
	return r;
}

/* hostDirectory(): "host:port" -> "host_port_". */
static int find_host_dir(const char *hosts_dir, const char *domain, char **ret)
{
	_cleanup_free_ char *alt = NULL;
	const char *colon = strrchr(domain, ':');
	const char *candidates[3];
	size_t n = 0;
	struct stat st;

	if (colon && colon > domain) {
		if (asprintf(&alt, "%.*s_%s_", (int)(colon - domain), domain, colon + 1) < 0)
			return -ENOMEM;
		candidates[n++] = alt;
	}
	candidates[n++] = domain;
	candidates[n++] = "_default";

	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *p = NULL;
		/* a domain never contains '/', but refuse one to stay inside hosts_dir */
		if (strchr(candidates[i], '/') || streq(candidates[i], "..") ||
		    streq(candidates[i], "."))
			continue;
		p = path_join(hosts_dir, candidates[i]);
		if (!p)
			return -ENOMEM;
		if (stat(p, &st) == 0) {
			*ret = TAKE_PTR(p);
			return 1;
		}
		if (errno != ENOENT && errno != ENOTDIR)
			return negative_errno();
	}
	*ret = NULL;
	return 0;
}

int content_registry_hosts_load(const char *hosts_dir, const char *domain, bool plain_http,
                                struct content_registry_hosts **ret, struct strata_error **ret_err)
{
	_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
	struct content_registry_host *last;
	int r;

	hs = calloc(1, sizeof(*hs));
	if (!hs)
		return -ENOMEM;

	if (hosts_dir) {
		r = find_host_dir(hosts_dir, domain, &hs->dir);
		if (r < 0)
			return strata_error_set_errno(ret_err, r,
			                              "registry %s: look up host "
			                              "configuration in \"%s\"",
			                              domain, hosts_dir);
	}
	if (hs->dir) {
		_cleanup_free_ char *file = path_join(hs->dir, "hosts.toml");
		struct stat st;
		if (!file)
			return -ENOMEM;
		if (stat(file, &st) == 0 && st.st_size > 0)
			r = parse_hosts_file(hs->dir, file, hs, ret_err);
		else
			r = load_cert_files(hs->dir, hs);
		if (r < 0)
			return strata_error_prefix(ret_err, r, "registry %s: host configuration",
			                           domain);
	}
	if (hs->n_hosts == 0) {
		struct content_registry_host h = {0};
		r = hosts_append(hs, &h);
		if (r < 0)
			return r;
	}

	last = &hs->hosts[hs->n_hosts - 1];
	if (!last->host) {
		/* The configuration has no `server`: the domain itself serves
		 * (docker.io always over https, as containerd does). */
		bool want_http = registry_is_localhost(domain) || plain_http ||
		                 (last->scheme && streq(last->scheme, "http"));
		free(last->scheme);
		free(last->path);
		if (streq(domain, "docker.io")) {
			last->scheme = strdup("https");
			last->host = strdup("registry-1.docker.io");
		} else if (want_http) {
			last->scheme = strdup("http");
			last->host = strdup(domain);
			last->skip_verify = true;
		} else {
			last->scheme = strdup("https");
			last->host = strdup(domain);
		}
		last->path = strdup("/v2");
		last->capabilities = CONTENT_REGISTRY_CAP_PULL | CONTENT_REGISTRY_CAP_RESOLVE |
		                     CONTENT_REGISTRY_CAP_PUSH;
		if (!last->scheme || !last->host || !last->path)
			return -ENOMEM;
	}

	*ret = TAKE_PTR(hs);
	return 0;
}
