/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image formats: OCI and Docker schema 2 manifests, indexes (manifest
 * lists), configs and descriptors, and platforms with containerd's
 * normalisation and matching (platforms/database.go, compare.go).
 *
 * Parsing is strict where a mistake would be silent later (digests, sizes,
 * media types that contradict what the registry announced) and lenient where
 * images in the wild differ harmlessly (unknown fields, missing annotations).
 */
#include <ctype.h>
#include <inttypes.h>
#include <string.h>
#include <sys/utsname.h>

#include "common.h"
#include "registry.h"

/* --- media types ----------------------------------------------------------- */

static bool media_is(const char *mt, size_t n, const char *what)
{
	return strlen(what) == n && strncmp(mt, what, n) == 0;
}

static bool has_prefix(const char *mt, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);
	return n > k && strncmp(mt, prefix, k) == 0;
}

enum content_media_kind content_image_media_kind(const char *media_type)
{
	size_t n;

	if (!media_type)
		return CONTENT_MEDIA_UNKNOWN;
	n = strcspn(media_type, "; \t");
	if (media_is(media_type, n, CONTENT_MEDIA_TYPE_OCI_MANIFEST) ||
	    media_is(media_type, n, CONTENT_MEDIA_TYPE_DOCKER_MANIFEST))
		return CONTENT_MEDIA_MANIFEST;
	if (media_is(media_type, n, CONTENT_MEDIA_TYPE_OCI_INDEX) ||
	    media_is(media_type, n, CONTENT_MEDIA_TYPE_DOCKER_LIST))
		return CONTENT_MEDIA_INDEX;
	if (media_is(media_type, n, CONTENT_MEDIA_TYPE_OCI_CONFIG) ||
	    media_is(media_type, n, CONTENT_MEDIA_TYPE_DOCKER_CONFIG))
		return CONTENT_MEDIA_CONFIG;
	if (has_prefix(media_type, n, "application/vnd.oci.image.layer.") ||
	    has_prefix(media_type, n, "application/vnd.docker.image.rootfs."))
		return CONTENT_MEDIA_LAYER;
	return CONTENT_MEDIA_UNKNOWN;
}

/* --- descriptors -------------------------------------------------------------- */

void content_image_platform_done(struct content_image_platform *p)
{
	if (!p)
		return;
	free(p->os);
	free(p->architecture);
	free(p->variant);
	free(p->os_version);
	*p = (struct content_image_platform){0};
}

static void annotations_free(struct content_image_annotation *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].key);
		free(a[i].value);
	}
	free(a);
}

void content_image_descriptor_done(struct content_image_descriptor *d)
{
	if (!d)
		return;
	free(d->media_type);
	annotations_free(d->annotations, d->n_annotations);
	for (size_t i = 0; i < d->n_urls; i++)
		free(d->urls[i]);
	free(d->urls);
	if (d->platform) {
		content_image_platform_done(d->platform);
		free(d->platform);
	}
	*d = (struct content_image_descriptor){0};
}

static char *strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int platform_copy(const struct content_image_platform *s, struct content_image_platform *d)
{
	*d = (struct content_image_platform){
	        .os = strdup_or_null(s->os),
	        .architecture = strdup_or_null(s->architecture),
	        .variant = strdup_or_null(s->variant),
	        .os_version = strdup_or_null(s->os_version),
	};
	if ((s->os && !d->os) || (s->architecture && !d->architecture) ||
	    (s->variant && !d->variant) || (s->os_version && !d->os_version)) {
		content_image_platform_done(d);
		return -ENOMEM;
	}
	return 0;
}

int content_image_descriptor_copy(const struct content_image_descriptor *src,
                                  struct content_image_descriptor *ret)
{
	struct content_image_descriptor d = {
	        .digest = src->digest,
	        .size = src->size,
	};

	if (src->media_type && !(d.media_type = strdup(src->media_type)))
		goto oom;
	if (src->n_annotations) {
		d.annotations = calloc(src->n_annotations, sizeof(*d.annotations));
		if (!d.annotations)
			goto oom;
		for (size_t i = 0; i < src->n_annotations; i++) {
			d.annotations[i].key = strdup(src->annotations[i].key);
			d.annotations[i].value = strdup(src->annotations[i].value);
			d.n_annotations++;
			if (!d.annotations[i].key || !d.annotations[i].value)
				goto oom;
		}
	}
	if (src->n_urls) {
		d.urls = calloc(src->n_urls, sizeof(char *));
		if (!d.urls)
			goto oom;
		for (size_t i = 0; i < src->n_urls; i++) {
			d.urls[i] = strdup(src->urls[i]);
			d.n_urls++;
			if (!d.urls[i])
				goto oom;
		}
	}
	if (src->platform) {
		d.platform = malloc(sizeof(*d.platform));
		if (!d.platform || platform_copy(src->platform, d.platform) < 0) {
			free(d.platform);
			d.platform = NULL;
			goto oom;
		}
	}
	*ret = d;
	return 0;
oom:
	content_image_descriptor_done(&d);
	return -ENOMEM;
}

const char *content_image_descriptor_annotation(const struct content_image_descriptor *d,
                                                const char *key)
{
	for (size_t i = 0; i < d->n_annotations; i++)
		if (streq(d->annotations[i].key, key))
			return d->annotations[i].value;
	return NULL;
}

static int parse_annotations(const json_t *obj, const char *what,
                             struct content_image_annotation **ret, size_t *ret_n,
                             struct strata_error **ret_err)
{
	json_t *a = json_object_get(obj, "annotations");
	struct content_image_annotation *v;
	const char *key;
	json_t *val;
	size_t n = 0;

	*ret = NULL;
	*ret_n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_object(a))
		return strata_error_set(ret_err, -EINVAL, "%s: \"annotations\" is not an object",
		                        what);
	v = calloc(json_object_size(a) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_object_foreach (a, key, val) {
		if (!json_is_string(val)) {
			annotations_free(v, n);
			return strata_error_set(ret_err, -EINVAL,
			                        "%s: annotation \"%s\" is not a string", what, key);
		}
		v[n].key = strdup(key);
		v[n].value = strdup(json_string_value(val));
		n++;
		if (!v[n - 1].key || !v[n - 1].value) {
			annotations_free(v, n);
			return -ENOMEM;
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int parse_platform(const json_t *p, const char *what, struct content_image_platform *ret,
                          struct strata_error **ret_err)
{
	const char *os = json_get_str(p, "os"), *arch = json_get_str(p, "architecture");

	if (!os || !arch)
		return strata_error_set(ret_err, -EINVAL,
		                        "%s: platform without \"os\" or \"architecture\"", what);
	*ret = (struct content_image_platform){
	        .os = strdup(os),
	        .architecture = strdup(arch),
	        .variant = strdup_or_null(json_get_str(p, "variant")),
	        .os_version = strdup_or_null(json_get_str(p, "os.version")),
	};
	if (!ret->os || !ret->architecture || (json_get_str(p, "variant") && !ret->variant) ||
	    (json_get_str(p, "os.version") && !ret->os_version)) {
		content_image_platform_done(ret);
		return -ENOMEM;
	}
	return 0;
}

static int parse_descriptor(const json_t *o, const char *what, struct content_image_descriptor *ret,
                            struct strata_error **ret_err)
{
	struct content_image_descriptor d = {0};
	_cleanup_error_ struct strata_error *derr = NULL;
	const char *mt, *digest;
	json_t *size, *urls, *platform;
	int r;

	if (!json_is_object(o))
		return strata_error_set(ret_err, -EINVAL, "%s: not an object", what);
	mt = json_get_str(o, "mediaType");
	digest = json_get_str(o, "digest");
	size = json_object_get(o, "size");
	if (!mt)
		return strata_error_set(ret_err, -EINVAL, "%s: no \"mediaType\"", what);
	if (!digest)
		return strata_error_set(ret_err, -EINVAL, "%s: no \"digest\"", what);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return strata_error_set(ret_err, -EINVAL, "%s: \"size\" missing or negative", what);
	r = strata_digest_parse(digest, &d.digest, &derr);
	if (r < 0)
		return strata_error_set(ret_err, r, "%s: %s", what, strata_error_message(derr));
	d.size = json_integer_value(size);
	d.media_type = strdup(mt);
	if (!d.media_type)
		return -ENOMEM;
	r = parse_annotations(o, what, &d.annotations, &d.n_annotations, ret_err);
	if (r < 0)
		goto fail;
	urls = json_object_get(o, "urls");
	if (json_is_array(urls) && json_array_size(urls) > 0) {
		d.urls = calloc(json_array_size(urls), sizeof(char *));
		if (!d.urls) {
			r = -ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < json_array_size(urls); i++) {
			const char *u = json_string_value(json_array_get(urls, i));
			if (!u) {
				r = strata_error_set(ret_err, -EINVAL, "%s: a url is not a string",
				                     what);
				goto fail;
			}
			d.urls[d.n_urls] = strdup(u);
			if (!d.urls[d.n_urls]) {
				r = -ENOMEM;
				goto fail;
			}
			d.n_urls++;
		}
	}
	platform = json_object_get(o, "platform");
	if (json_is_object(platform)) {
		d.platform = calloc(1, sizeof(*d.platform));
		if (!d.platform) {
			r = -ENOMEM;
			goto fail;
		}
		r = parse_platform(platform, what, d.platform, ret_err);
		if (r < 0)
			goto fail;
	}
	*ret = d;
	return 0;
fail:
	content_image_descriptor_done(&d);
	return r;
}

/* The document's own mediaType must agree with what was announced. */
static int check_media_type(const json_t *j, const char *announced, enum content_media_kind want,
                            const char *what, char **ret, struct strata_error **ret_err)
{
	const char *own = json_get_str(j, "mediaType");
	enum content_media_kind k;
	size_t n;

	if (announced && *announced) {
		k = content_image_media_kind(announced);
		if (k != want)
			return strata_error_set(
			        ret_err, k == CONTENT_MEDIA_UNKNOWN ? -EOPNOTSUPP : -EINVAL,
			        "%s: media type \"%s\" is not %s", what, announced,
			        want == CONTENT_MEDIA_INDEX ? "an index" : "a manifest");
		n = strcspn(announced, "; \t");
		if (own && (strlen(own) != n || strncmp(own, announced, n) != 0))
			return strata_error_set(ret_err, -EINVAL,
			                        "%s: document says mediaType \"%s\" but was "
			                        "announced as \"%.*s\"",
			                        what, own, (int)n, announced);
		*ret = strndup(announced, n);
	} else {
		if (own && content_image_media_kind(own) != want)
			return strata_error_set(ret_err, -EOPNOTSUPP,
			                        "%s: unsupported media type \"%s\"", what, own);
		*ret = strdup(own ? own
		                  : (want == CONTENT_MEDIA_INDEX
		                             ? CONTENT_MEDIA_TYPE_OCI_INDEX
		                             : CONTENT_MEDIA_TYPE_OCI_MANIFEST));
	}
	return *ret ? 0 : -ENOMEM;
}

struct content_image_manifest *content_image_manifest_free(struct content_image_manifest *m)
{
	if (!m)
		return NULL;
	free(m->media_type);
	content_image_descriptor_done(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		content_image_descriptor_done(&m->layers[i]);
	free(m->layers);
	annotations_free(m->annotations, m->n_annotations);
	free(m);
	return NULL;
}

int content_image_manifest_parse(const void *buf, size_t len, const char *media_type,
                                 struct content_image_manifest **ret, struct strata_error **ret_err)
{
	_cleanup_(content_image_manifest_freep) struct content_image_manifest *m = NULL;
	_cleanup_json_ json_t *j = NULL;
	json_t *layers;
	int r;

	r = json_parse(buf, len, "manifest", &j, ret_err);
	if (r < 0)
		return r;
	if (!json_is_object(j))
		return strata_error_set(ret_err, -EINVAL, "manifest: not a JSON object");
	if (json_get_int(j, "schemaVersion", 0) != 2)
		return strata_error_set(ret_err, -EOPNOTSUPP,
		                        "manifest: schemaVersion %" PRId64
		                        " is not supported (only 2)",
		                        json_get_int(j, "schemaVersion", 0));
	if (json_object_get(j, "manifests"))
		return strata_error_set(ret_err, -EINVAL,
		                        "manifest: has \"manifests\": it is an index");
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	r = check_media_type(j, media_type, CONTENT_MEDIA_MANIFEST, "manifest", &m->media_type,
	                     ret_err);
	if (r < 0)
		return r;
	r = parse_descriptor(json_object_get(j, "config"), "manifest: config", &m->config, ret_err);
	if (r < 0)
		return r;
	layers = json_object_get(j, "layers");
	if (!json_is_array(layers))
		return strata_error_set(ret_err, -EINVAL, "manifest: \"layers\" is not an array");
	m->layers = calloc(json_array_size(layers) + 1, sizeof(*m->layers));
	if (!m->layers)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(layers); i++) {
		char what[64];
		snprintf(what, sizeof(what), "manifest: layer %zu", i);
		r = parse_descriptor(json_array_get(layers, i), what, &m->layers[i], ret_err);
		if (r < 0)
			return r;
		m->n_layers++;
	}
	r = parse_annotations(j, "manifest", &m->annotations, &m->n_annotations, ret_err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}

struct content_image_index *content_image_index_free(struct content_image_index *idx)
{
	if (!idx)
		return NULL;
	free(idx->media_type);
	for (size_t i = 0; i < idx->n_manifests; i++)
		content_image_descriptor_done(&idx->manifests[i]);
	free(idx->manifests);
	annotations_free(idx->annotations, idx->n_annotations);
	free(idx);
	return NULL;
}

int content_image_index_parse(const void *buf, size_t len, const char *media_type,
                              struct content_image_index **ret, struct strata_error **ret_err)
{
	_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;
	_cleanup_json_ json_t *j = NULL;
	json_t *ms;
	int r;

	r = json_parse(buf, len, "index", &j, ret_err);
	if (r < 0)
		return r;
	if (!json_is_object(j))
		return strata_error_set(ret_err, -EINVAL, "index: not a JSON object");
	if (json_get_int(j, "schemaVersion", 0) != 2)
		return strata_error_set(ret_err, -EOPNOTSUPP,
		                        "index: schemaVersion %" PRId64
		                        " is not supported (only 2)",
		                        json_get_int(j, "schemaVersion", 0));
	ms = json_object_get(j, "manifests");
	if (!json_is_array(ms))
		return strata_error_set(ret_err, -EINVAL,
		                        "index: \"manifests\" is missing or not an array");
	idx = calloc(1, sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	r = check_media_type(j, media_type, CONTENT_MEDIA_INDEX, "index", &idx->media_type,
	                     ret_err);
	if (r < 0)
		return r;
	idx->manifests = calloc(json_array_size(ms) + 1, sizeof(*idx->manifests));
	if (!idx->manifests)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(ms); i++) {
		char what[64];
		snprintf(what, sizeof(what), "index: manifest %zu", i);
		r = parse_descriptor(json_array_get(ms, i), what, &idx->manifests[i], ret_err);
		if (r < 0)
			return r;
		idx->n_manifests++;
	}
	r = parse_annotations(j, "index", &idx->annotations, &idx->n_annotations, ret_err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(idx);
	return 0;
}

struct content_image_config *content_image_config_free(struct content_image_config *c)
{
	if (!c)
		return NULL;
	content_image_platform_done(&c->platform);
	free(c->diff_ids);
	json_decref(c->json);
	free(c);
	return NULL;
}

int content_image_config_parse(const void *buf, size_t len, struct content_image_config **ret,
                               struct strata_error **ret_err)
{
	_cleanup_(content_image_config_freep) struct content_image_config *c = NULL;
	json_t *j = NULL, *rootfs, *ids;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	r = json_parse(buf, len, "image config", &j, ret_err);
	if (r < 0)
		return r;
	c->json = j;
	if (!json_is_object(j))
		return strata_error_set(ret_err, -EINVAL, "image config: not a JSON object");
	r = parse_platform(j, "image config", &c->platform, ret_err);
	if (r < 0)
		return r;
	rootfs = json_get_obj(j, "rootfs");
	ids = json_get_array(rootfs, "diff_ids");
	if (!ids)
		return strata_error_set(ret_err, -EINVAL, "image config: no rootfs.diff_ids");
	c->diff_ids = calloc(json_array_size(ids) + 1, sizeof(*c->diff_ids));
	if (!c->diff_ids)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(ids); i++) {
		_cleanup_error_ struct strata_error *derr = NULL;
		const char *s = json_string_value(json_array_get(ids, i));
		if (!s)
			return strata_error_set(ret_err, -EINVAL,
			                        "image config: diff_id %zu is not a string", i);
		r = strata_digest_parse(s, &c->diff_ids[i], &derr);
		if (r < 0)
			return strata_error_set(ret_err, r, "image config: diff_id %zu: %s", i,
			                        strata_error_message(derr));
		c->n_diff_ids++;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

/* --- platforms ----------------------------------------------------------------- */

static const char *const known_os[] = {
        "aix",   "android", "darwin", "dragonfly", "freebsd", "hurd",    "illumos", "ios", "js",
        "linux", "nacl",    "netbsd", "openbsd",   "plan9",   "solaris", "windows", "zos",
};

static const char *const known_arch[] = {
        "386",     "amd64",    "amd64p32",  "arm",         "armbe",   "arm64",
        "arm64be", "ppc64",    "ppc64le",   "loong64",     "mips",    "mipsle",
        "mips64",  "mips64le", "mips64p32", "mips64p32le", "ppc",     "riscv",
        "riscv64", "s390",     "s390x",     "sparc",       "sparc64", "wasm",
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (streq(s, list[i]))
			return true;
	return false;
}

static void lower(char *s)
{
	for (; s && *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* normalizeArch(): rewrite *arch / *variant (malloc'd, may become NULL). */
static int normalize_arch(char **arch, char **variant)
{
	const char *a, *v;
	const char *na = NULL, *nv = NULL;
	bool set_v = false;

	lower(*arch);
	lower(*variant);
	a = *arch;
	v = *variant ? *variant : "";
	if (streq(a, "i386")) {
		na = "386";
		set_v = true;
	} else if (streq(a, "x86_64") || streq(a, "x86-64") || streq(a, "amd64")) {
		na = "amd64";
		if (streq(v, "v1"))
			set_v = true;
	} else if (streq(a, "aarch64") || streq(a, "arm64")) {
		na = "arm64";
		if (streq(v, "8") || streq(v, "v8"))
			set_v = true;
	} else if (streq(a, "armhf")) {
		na = "arm";
		nv = "v7";
		set_v = true;
	} else if (streq(a, "armel")) {
		na = "arm";
		nv = "v6";
		set_v = true;
	} else if (streq(a, "arm")) {
		if (streq(v, "") || streq(v, "7")) {
			nv = "v7";
			set_v = true;
		} else if (streq(v, "5") || streq(v, "6") || streq(v, "8")) {
			nv = streq(v, "5") ? "v5" : streq(v, "6") ? "v6" : "v8";
			set_v = true;
		}
	}
	if (na && !streq(na, a)) {
		char *n = strdup(na);
		if (!n)
			return -ENOMEM;
		free(*arch);
		*arch = n;
	}
	if (set_v) {
		char *n = nv ? strdup(nv) : NULL;
		if (nv && !n)
			return -ENOMEM;
		free(*variant);
		*variant = n;
	}
	return 0;
}

static int normalize(const struct content_image_platform *in, struct content_image_platform *out)
{
	int r = platform_copy(in, out);
	if (r < 0)
		return r;
	lower(out->os);
	if (out->os && streq(out->os, "macos")) {
		free(out->os);
		out->os = strdup("darwin");
	}
	if (!out->os || !out->architecture) {
		content_image_platform_done(out);
		return -ENOMEM;
	}
	r = normalize_arch(&out->architecture, &out->variant);
	if (r < 0)
		content_image_platform_done(out);
	return r;
}

static const char *host_arch(const char **ret_variant)
{
	/* per thread: the machine name is returned from it */
	static __thread struct utsname u;
	const char *m;

	*ret_variant = NULL;
	if (uname(&u) < 0)
		return "amd64";
	m = u.machine;
	if (streq(m, "x86_64"))
		return "amd64";
	if (streq(m, "aarch64") || streq(m, "arm64"))
		return "arm64";
	if (strncmp(m, "armv7", 5) == 0) {
		*ret_variant = "v7";
		return "arm";
	}
	if (strncmp(m, "armv6", 5) == 0) {
		*ret_variant = "v6";
		return "arm";
	}
	if (strncmp(m, "armv5", 5) == 0) {
		*ret_variant = "v5";
		return "arm";
	}
	if (m[0] == 'i' && streq(m + 2, "86"))
		return "386";
	return m; /* ppc64le, s390x, riscv64 share Go's names */
}

int content_image_platform_default(struct content_image_platform *ret)
{
	const char *variant, *arch = host_arch(&variant);

	*ret = (struct content_image_platform){
	        .os = strdup("linux"),
	        .architecture = strdup(arch),
	        .variant = variant ? strdup(variant) : NULL,
	};
	if (!ret->os || !ret->architecture || (variant && !ret->variant)) {
		content_image_platform_done(ret);
		return -ENOMEM;
	}
	return 0;
}

int content_image_platform_parse(const char *s, struct content_image_platform *ret,
                                 struct strata_error **ret_err)
{
	struct content_image_platform p = {0};
	char *parts[3] = {NULL, NULL, NULL};
	_cleanup_free_ char *copy = NULL;
	size_t n = 0;
	char *save = NULL, *tok;
	int r;

	if (!s || !*s)
		return strata_error_set(ret_err, -EINVAL, "invalid platform: empty");
	if (strchr(s, '*'))
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid platform \"%s\": wildcards are not supported", s);
	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	for (const char *q = s; *q; q++)
		if (!isalnum((unsigned char)*q) && !strchr("_-./", *q))
			return strata_error_set(ret_err, -EINVAL,
			                        "invalid platform \"%s\": unexpected '%c'", s, *q);
	for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (n == 3)
			return strata_error_set(
			        ret_err, -EINVAL,
			        "invalid platform \"%s\": expected os/arch[/variant]", s);
		parts[n++] = tok;
	}
	if (n == 0 || strstr(s, "//") || s[0] == '/' || s[strlen(s) - 1] == '/')
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid platform \"%s\": empty component", s);

	if (n == 1) {
		const char *variant, *arch;
		lower(parts[0]);
		if (in_list(parts[0], known_os, ELEMENTSOF(known_os)) || streq(parts[0], "macos")) {
			arch = host_arch(&variant);
			p.os = strdup(parts[0]);
			p.architecture = strdup(arch);
			p.variant = variant && !streq(variant, "v7") ? strdup(variant) : NULL;
			if (!p.os || !p.architecture)
				goto oom;
		} else {
			p.architecture = strdup(parts[0]);
			p.os = strdup("linux");
			if (!p.architecture || !p.os)
				goto oom;
			if (normalize_arch(&p.architecture, &p.variant) < 0)
				goto oom;
			if (!in_list(p.architecture, known_arch, ELEMENTSOF(known_arch))) {
				content_image_platform_done(&p);
				return strata_error_set(
				        ret_err, -EINVAL,
				        "invalid platform \"%s\": unknown operating "
				        "system or architecture",
				        s);
			}
		}
	} else {
		p.os = strdup(parts[0]);
		p.architecture = strdup(parts[1]);
		p.variant = n == 3 ? strdup(parts[2]) : NULL;
		if (!p.os || !p.architecture || (n == 3 && !p.variant))
			goto oom;
		lower(p.os);
		if (streq(p.os, "macos")) {
			free(p.os);
			if (!(p.os = strdup("darwin")))
				goto oom;
		}
		r = normalize_arch(&p.architecture, &p.variant);
		if (r < 0)
			goto oom;
		if (n == 3 && streq(p.architecture, "arm64") && !p.variant &&
		    !(p.variant = strdup("v8")))
			goto oom;
	}
	/* containerd leaves arm/v7 implicit when the variant was not given */
	if (n < 3 && p.variant && streq(p.architecture, "arm") && streq(p.variant, "v7")) {
		free(p.variant);
		p.variant = NULL;
	}
	*ret = p;
	return 0;
oom:
	content_image_platform_done(&p);
	return -ENOMEM;
}

char *content_image_platform_format(const struct content_image_platform *p)
{
	char *s;
	if (asprintf(&s, "%s/%s%s%s", strempty(p->os), strempty(p->architecture),
	             p->variant && *p->variant ? "/" : "", p->variant ? p->variant : "") < 0)
		return NULL;
	return s;
}

static bool same(const char *a, const char *b)
{
	return streq(a ? a : "", b ? b : "");
}

static bool vector_entry_matches(const struct content_image_platform *w, const char *arch,
                                 const char *variant, const struct content_image_platform *h)
{
	return same(w->os, h->os) && same(arch, h->architecture) && same(variant, h->variant);
}

int content_image_platform_match(const struct content_image_platform *want,
                                 const struct content_image_platform *have)
{
	struct content_image_platform w = {0}, h = {0};
	int score = -1, k = 0;
	char v[16];

	if (!want || !have || normalize(want, &w) < 0)
		return -1;
	if (normalize(have, &h) < 0) {
		content_image_platform_done(&w);
		return -1;
	}
	/* containerd's platformVector(): the platform, then what it can also run */
	if (vector_entry_matches(&w, w.architecture, w.variant, &h)) {
		score = 0;
		goto out;
	}
	if (streq(w.architecture, "amd64")) {
		int ver = w.variant && w.variant[0] == 'v' ? atoi(w.variant + 1) : 0;
		for (ver--; ver >= 1; ver--) {
			k++;
			if (ver == 1)
				v[0] = '\0'; /* amd64/v1 is normalised to amd64 */
			else
				snprintf(v, sizeof(v), "v%d", ver);
			if (vector_entry_matches(&w, "amd64", v, &h)) {
				score = k;
				goto out;
			}
		}
		if (vector_entry_matches(&w, "386", NULL, &h))
			score = k + 1;
	} else if (streq(w.architecture, "arm") || streq(w.architecture, "arm64")) {
		const char *base = w.variant ? w.variant : "v8";
		int ver = base[0] == 'v' ? atoi(base + 1) : 0;
		if (streq(w.architecture, "arm64")) {
			k++;
			snprintf(v, sizeof(v), "v%d", ver);
			if (vector_entry_matches(&w, "arm", v, &h)) {
				score = k;
				goto out;
			}
		}
		for (ver--; ver >= 5; ver--) {
			k++;
			snprintf(v, sizeof(v), "v%d", ver);
			if (vector_entry_matches(&w, "arm", v, &h)) {
				score = k;
				goto out;
			}
		}
	}
out:
	content_image_platform_done(&w);
	content_image_platform_done(&h);
	return score;
}

int content_image_index_select(const struct content_image_index *idx,
                               const struct content_image_platform *want,
                               const struct content_image_descriptor **ret,
                               struct strata_error **ret_err)
{
	const struct content_image_descriptor *best = NULL;
	int best_score = -1;

	for (size_t i = 0; i < idx->n_manifests; i++) {
		const struct content_image_descriptor *d = &idx->manifests[i];
		int score;
		/* entries without a platform match anything, as in containerd,
		 * but only when nothing names the platform */
		score = d->platform ? content_image_platform_match(want, d->platform) : 1000;
		if (score < 0)
			continue;
		if (!best || score < best_score) {
			best = d;
			best_score = score;
		}
	}
	if (best) {
		*ret = best;
		return 0;
	}

	_cleanup_free_ char *w = content_image_platform_format(want);
	char avail[1024];
	size_t k = 0;
	avail[0] = '\0';
	for (size_t i = 0; i < idx->n_manifests && k < sizeof(avail) - 1; i++) {
		_cleanup_free_ char *p = NULL;
		if (!idx->manifests[i].platform)
			continue;
		p = content_image_platform_format(idx->manifests[i].platform);
		if (!p)
			return -ENOMEM;
		int m = snprintf(avail + k, sizeof(avail) - k, "%s%s", k ? ", " : "", p);
		if (m < 0)
			break;
		k += (size_t)m;
		if (k >= sizeof(avail))
			k = sizeof(avail) - 1;
	}
	return strata_error_set(ret_err, -ENOENT,
	                        "no manifest for platform %s in the index (available: %s)",
	                        w ? w : "?", k ? avail : "none");
}
