/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry authentication pieces that need no network: WWW-Authenticate
 * parsing, Basic encoding, and docker's config.json credentials. The token
 * exchange itself is in client.c, beside the HTTP code.
 *
 * Secrets handled here (passwords, "auth" strings) are never logged, and
 * errors name the file and the entry, never the value.
 */
#include <ctype.h>
#include <fcntl.h>
#include <string.h>

#include <openssl/evp.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"

void registry_challenge_done(struct registry_challenge *ch)
{
	free(ch->realm);
	free(ch->service);
	free(ch->scope);
	*ch = (struct registry_challenge){0};
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == ',')
		p++;
	return p;
}

static bool is_token_char(char c)
{
	return c && (isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c));
}

/* Parse `scheme param=value, param="value", ...` challenges. */
int registry_challenge_parse(const char *value, struct registry_challenge *ret)
{
	struct registry_challenge best = {0};
	const char *p = value;

	while (*(p = skip_ws(p))) {
		struct registry_challenge cur = {0};
		const char *s = p;

		while (is_token_char(*p))
			p++;
		if (p == s)
			break;
		if (p - s == 6 && strncasecmp(s, "bearer", 6) == 0)
			cur.scheme = REGISTRY_AUTH_BEARER;
		else if (p - s == 5 && strncasecmp(s, "basic", 5) == 0)
			cur.scheme = REGISTRY_AUTH_BASIC;

		/* parameters until the next token that is not followed by '=' */
		for (;;) {
			const char *q = skip_ws(p), *k = q, *ke;
			_cleanup_free_ char *val = NULL;
			while (is_token_char(*q))
				q++;
			ke = q;
			while (*q == ' ' || *q == '\t')
				q++;
			if (ke == k || *q != '=')
				break; /* end, or the next challenge's scheme */
			q++;
			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == '"') {
				size_t n = 0;
				val = malloc(strlen(q) + 1);
				if (!val) {
					registry_challenge_done(&cur);
					registry_challenge_done(&best);
					return -ENOMEM;
				}
				for (q++; *q && *q != '"'; q++) {
					if (*q == '\\' && q[1])
						q++;
					val[n++] = *q;
				}
				val[n] = '\0';
				if (*q == '"')
					q++;
			} else {
				const char *vs = q;
				while (*q && *q != ',' && *q != ' ' && *q != '\t')
					q++;
				val = strndup(vs, q - vs);
				if (!val) {
					registry_challenge_done(&cur);
					registry_challenge_done(&best);
					return -ENOMEM;
				}
			}
			if (ke - k == 5 && strncasecmp(k, "realm", 5) == 0) {
				free(cur.realm);
				cur.realm = TAKE_PTR(val);
			} else if (ke - k == 7 && strncasecmp(k, "service", 7) == 0) {
				free(cur.service);
				cur.service = TAKE_PTR(val);
			} else if (ke - k == 5 && strncasecmp(k, "scope", 5) == 0) {
				free(cur.scope);
				cur.scope = TAKE_PTR(val);
			}
			p = q;
		}

		if (cur.scheme == REGISTRY_AUTH_BEARER && !cur.realm)
			cur.scheme = REGISTRY_AUTH_NONE; /* unusable */
		if (cur.scheme != REGISTRY_AUTH_NONE &&
		    (best.scheme == REGISTRY_AUTH_NONE ||
		     (best.scheme == REGISTRY_AUTH_BASIC && cur.scheme == REGISTRY_AUTH_BEARER))) {
			registry_challenge_done(&best);
			best = cur;
		} else {
			registry_challenge_done(&cur);
		}
	}

	if (best.scheme == REGISTRY_AUTH_NONE)
		return -EINVAL;
	*ret = best;
	return 0;
}

char *registry_basic_b64(const char *user, const char *password)
{
	_cleanup_free_ char *plain = NULL;
	char *out;
	int n;

	n = asprintf(&plain, "%s:%s", strempty(user), strempty(password));
	if (n < 0)
		return NULL;
	out = malloc(4 * ((size_t)n / 3 + 1) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, (unsigned char *)plain, n);
	explicit_bzero(plain, n);
	return out;
}

static int b64_decode(const char *in, char **ret)
{
	size_t n = strlen(in), pad = 0;
	_cleanup_free_ char *out = NULL;
	int m;

	if (n == 0 || n % 4 != 0)
		return -EINVAL;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	m = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	if (m < 0)
		return -EINVAL;
	if (in[n - 1] == '=')
		pad++;
	if (in[n - 2] == '=')
		pad++;
	out[m - pad] = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

static bool is_docker_hub(const char *h)
{
	return streq(h, "docker.io") || streq(h, "index.docker.io") ||
	       streq(h, "registry-1.docker.io") || streq(h, "registry.hub.docker.com");
}

/* Does an `auths` key ("host", "https://host", "https://host/v1/") name host? */
static bool auth_key_matches(const char *key, const char *host)
{
	_cleanup_free_ char *k = NULL;

	if (strncmp(key, "https://", 8) == 0)
		key += 8;
	else if (strncmp(key, "http://", 7) == 0)
		key += 7;
	k = strndup(key, strcspn(key, "/"));
	if (!k)
		return false;
	if (streq(k, host))
		return true;
	return is_docker_hub(k) && is_docker_hub(host);
}

int content_registry_docker_credentials(const char *config_dir, const char *host, char **ret_user,
                                        char **ret_password, struct strata_error **ret_err)
{
	_cleanup_free_ char *dir = NULL, *file = NULL, *buf = NULL;
	_cleanup_json_ json_t *root = NULL;
	const char *key;
	json_t *auths, *entry, *best = NULL;
	size_t len;
	int r;

	if (config_dir)
		dir = strdup(config_dir);
	else if (getenv("DOCKER_CONFIG") && *getenv("DOCKER_CONFIG"))
		dir = strdup(getenv("DOCKER_CONFIG"));
	else if (getenv("HOME") && *getenv("HOME"))
		dir = path_join(getenv("HOME"), ".docker");
	else
		return 0;
	if (!dir)
		return -ENOMEM;
	file = path_join(dir, "config.json");
	if (!file)
		return -ENOMEM;

	r = path_read_file_at(AT_FDCWD, file, 1u << 20, &buf, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read \"%s\"", file);
	r = json_parse(buf, len, file, &root, ret_err);
	explicit_bzero(buf, len);
	if (r < 0)
		return r;

	auths = json_get_obj(root, "auths");
	json_object_foreach (auths, key, entry) {
		if (!json_is_object(entry) || !auth_key_matches(key, host))
			continue;
		/* an exact key wins over an alias (https://index.docker.io/v1/) */
		if (!best || streq(key, host))
			best = entry;
	}
	if (!best)
		return 0;

	const char *auth = json_get_str(best, "auth");
	const char *user = json_get_str(best, "username");
	const char *pass = json_get_str(best, "password");
	_cleanup_free_ char *u = NULL, *p = NULL;

	if (auth && *auth) {
		_cleanup_free_ char *dec = NULL;
		char *colon;
		r = b64_decode(auth, &dec);
		if (r == -ENOMEM)
			return r;
		if (r < 0 || !(colon = strchr(dec, ':'))) {
			if (dec)
				explicit_bzero(dec, strlen(dec));
			return strata_error_set(ret_err, -EINVAL,
			                        "%s: auths entry for \"%s\": \"auth\" is not "
			                        "base64 of user:password",
			                        file, host);
		}
		*colon = '\0';
		u = strdup(dec);
		p = strdup(colon + 1);
		explicit_bzero(colon + 1, strlen(colon + 1));
	} else if (user && pass) {
		u = strdup(user);
		p = strdup(pass);
	} else {
		return 0; /* e.g. only an identitytoken: not supported */
	}
	if (!u || !p)
		return -ENOMEM;
	*ret_user = TAKE_PTR(u);
	*ret_password = TAKE_PTR(p);
	return 1;
}
