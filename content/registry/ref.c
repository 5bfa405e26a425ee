/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image references, normalised as containerd's reference/docker package does
 * (ParseNormalizedNamed + TagNameOnly), with the grammar of the distribution
 * spec:
 *   path component  [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   domain          label ( "." label )* [ ":" port ]   or  "[" ipv6 "]" [ ":" port ]
 *   tag             [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest          sha256:<64 lowercase hex> (the only algorithm Strata stores)
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "registry.h"

#define NAME_TOTAL_MAX 255
#define TAG_MAX        128

struct content_ref *content_ref_free(struct content_ref *ref)
{
	if (!ref)
		return NULL;
	free(ref->domain);
	free(ref->path);
	free(ref->tag);
	free(ref->digest);
	free(ref);
	return NULL;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component of a repository name. */
static bool path_component_ok(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	while (i < n) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		/* a separator: ".", "_", "__" or "-"+, always between alnums */
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i >= n || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool domain_label_ok(const char *s, size_t n)
{
	if (n == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool domain_ok(const char *d)
{
	const char *host_end;
	size_t n = strlen(d);

	if (d[0] == '[') {
		const char *close = strchr(d, ']');
		if (!close || close == d + 1)
			return false;
		for (const char *p = d + 1; p < close; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return false;
		host_end = close + 1;
		if (*host_end && *host_end != ':')
			return false;
	} else {
		host_end = strchr(d, ':');
		if (!host_end)
			host_end = d + n;
		const char *p = d;
		while (p < host_end) {
			const char *dot = memchr(p, '.', host_end - p);
			const char *end = dot ? dot : host_end;
			if (!domain_label_ok(p, end - p))
				return false;
			p = dot ? dot + 1 : host_end;
			if (dot && p == host_end)
				return false;
		}
	}
	if (*host_end == ':') {
		const char *port = host_end + 1;
		if (!*port || strlen(port) > 5)
			return false;
		for (const char *p = port; *p; p++)
			if (!isdigit((unsigned char)*p))
				return false;
	}
	return true;
}

static bool tag_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > TAG_MAX)
		return false;
	if (!isalnum((unsigned char)t[0]) && t[0] != '_')
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)t[i]) && t[i] != '_' && t[i] != '.' && t[i] != '-')
			return false;
	return true;
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!isxdigit((unsigned char)*p))
			return false;
	return true;
}

int content_ref_parse(const char *s, struct content_ref **ret, struct strata_error **ret_err)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_free_ char *copy = NULL;
	char *name, *at, *colon, *slash, *remainder;

	if (!s || !*s)
		return strata_error_set(ret_err, -EINVAL, "invalid reference: empty");
	if (is_hex64(s))
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid reference \"%s\": cannot be a 64-character hex "
		                        "string (an image ID, not a name)",
		                        s);
	copy = strdup(s);
	ref = calloc(1, sizeof(*ref));
	if (!copy || !ref)
		return -ENOMEM;
	name = copy;

	at = strchr(name, '@');
	if (at) {
		_cleanup_error_ struct strata_error *derr = NULL;
		struct strata_digest d;
		int r;

		*at = '\0';
		r = strata_digest_parse(at + 1, &d, &derr);
		if (r < 0)
			return strata_error_set(ret_err, r == -EOPNOTSUPP ? r : -EINVAL,
			                        "invalid reference \"%s\": bad digest: %s", s,
			                        strata_error_message(derr));
		ref->digest = strdup(at + 1);
		if (!ref->digest)
			return -ENOMEM;
	}

	/* the tag is after the last ':' that follows the last '/' */
	slash = strrchr(name, '/');
	colon = strrchr(slash ? slash : name, ':');
	/* "[::1]:5000" alone: a ':' inside brackets is not a tag separator */
	if (colon && !slash && strchr(name, ']') && colon < strchr(name, ']'))
		colon = NULL;
	if (colon) {
		*colon = '\0';
		if (!tag_ok(colon + 1))
			return strata_error_set(
			        ret_err, -EINVAL,
			        "invalid reference \"%s\": bad tag \"%s\": a tag is 1-128 "
			        "characters of [A-Za-z0-9_.-] not starting with '.' or '-'",
			        s, colon + 1);
		ref->tag = strdup(colon + 1);
		if (!ref->tag)
			return -ENOMEM;
	}

	if (!*name)
		return strata_error_set(ret_err, -EINVAL, "invalid reference \"%s\": empty name",
		                        s);

	/* splitDockerDomain: the first component is a domain when it has a '.' or
	 * ':', is "localhost", or has an uppercase letter. */
	slash = strchr(name, '/');
	if (slash) {
		bool is_domain = false;
		*slash = '\0';
		if (strpbrk(name, ".:[") || streq(name, "localhost"))
			is_domain = true;
		for (const char *p = name; *p && !is_domain; p++)
			if (isupper((unsigned char)*p))
				is_domain = true;
		if (is_domain) {
			ref->domain = strdup(streq(name, "index.docker.io") ? "docker.io" : name);
			remainder = slash + 1;
		} else {
			*slash = '/';
			ref->domain = strdup("docker.io");
			remainder = name;
		}
	} else {
		ref->domain = strdup("docker.io");
		remainder = name;
	}
	if (!ref->domain)
		return -ENOMEM;

	if (!domain_ok(ref->domain))
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid reference \"%s\": bad registry domain \"%s\"", s,
		                        ref->domain);

	if (streq(ref->domain, "docker.io") && !strchr(remainder, '/')) {
		if (asprintf(&ref->path, "library/%s", remainder) < 0)
			return -ENOMEM;
	} else {
		ref->path = strdup(remainder);
		if (!ref->path)
			return -ENOMEM;
	}

	for (const char *p = ref->path; *p; p++)
		if (isupper((unsigned char)*p))
			return strata_error_set(
			        ret_err, -EINVAL,
			        "invalid reference \"%s\": repository name \"%s\" must "
			        "be lowercase",
			        s, ref->path);

	for (const char *p = ref->path;;) {
		const char *end = strchrnul(p, '/');
		if (!path_component_ok(p, end - p))
			return strata_error_set(
			        ret_err, -EINVAL,
			        "invalid reference \"%s\": bad repository path component \"%.*s\": "
			        "components are lowercase letters and digits joined by '.', '_', "
			        "'__' or '-'",
			        s, (int)(end - p), p);
		if (!*end)
			break;
		p = end + 1;
	}

	if (strlen(ref->domain) + 1 + strlen(ref->path) > NAME_TOTAL_MAX)
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid reference \"%s\": name longer than %d characters",
		                        s, NAME_TOTAL_MAX);

	if (!ref->tag && !ref->digest) {
		ref->tag = strdup("latest");
		if (!ref->tag)
			return -ENOMEM;
	}

	*ret = TAKE_PTR(ref);
	return 0;
}

char *content_ref_name(const struct content_ref *ref)
{
	char *s;
	if (asprintf(&s, "%s/%s", ref->domain, ref->path) < 0)
		return NULL;
	return s;
}

char *content_ref_format(const struct content_ref *ref)
{
	char *s;
	if (asprintf(&s, "%s/%s%s%s%s%s", ref->domain, ref->path, ref->tag ? ":" : "",
	             strempty(ref->tag), ref->digest ? "@" : "", strempty(ref->digest)) < 0)
		return NULL;
	return s;
}

const char *content_ref_registry_host(const struct content_ref *ref)
{
	if (streq(ref->domain, "docker.io"))
		return "registry-1.docker.io";
	return ref->domain;
}
