/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image conversion to eStargz (`strata convert`): SRC and DST are registry
 * references or OCI image layouts ("oci:DIR[:TAG]").
 *
 * Everything is read and converted first, in memory: documents, then every
 * distinct layer (a few at a time, each using the encoder's thread pool),
 * then new configs (rootfs.diff_ids replaced), manifests (layer annotations
 * toc.digest and uncompressed-size) and, for an index, a new index with
 * every platform. Only when all of that succeeded is anything written:
 * blobs first, child manifests next, the tagged manifest or index last, so
 * a failure never leaves a half-converted image under the tag.
 *
 * Layers: gzip'd or uncompressed tars (OCI and Docker media types). zstd,
 * foreign and other layer types are refused with a message naming them.
 * Attestation manifests of an index (platform unknown/unknown) are dropped:
 * they describe the source image's manifests, not the new ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libdeflate.h>

#include "common.h"
#include "content.h"
#include "estargz.h"

#define OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define REF_NAME_ANNOT "org.opencontainers.image.ref.name"
#define CONFIG_MAX     (64u << 20)
#define LAYER_JOBS     2

/* --- endpoints ---------------------------------------------------------------- */

struct endpoint {
	char *spec;              /* as given, for messages */
	char *dir;               /* OCI layout, or NULL */
	char *tag;               /* OCI layout tag, or NULL */
	struct content_ref *ref; /* registry */
	int dirfd;               /* OCI layout: the directory (source: opened) */
};

static void endpoint_done(struct endpoint *e)
{
	free(e->spec);
	free(e->dir);
	free(e->tag);
	content_ref_free(e->ref);
	if (e->dirfd >= 0)
		close(e->dirfd);
}

static int endpoint_parse(const char *s, struct endpoint *ret, struct strata_error **ret_err)
{
	*ret = (struct endpoint){.dirfd = -1};
	ret->spec = strdup(s);
	if (!ret->spec)
		return -ENOMEM;
	if (strncmp(s, "oci:", 4) == 0) {
		const char *p = s + 4, *colon = strrchr(p, ':');
		if (colon && strchr(colon, '/'))
			colon = NULL;
		ret->dir = colon ? strndup(p, (size_t)(colon - p)) : strdup(p);
		ret->tag = colon ? strdup(colon + 1) : NULL;
		if (!ret->dir || (colon && !ret->tag))
			return -ENOMEM;
		if (!ret->dir[0])
			return strata_error_set(ret_err, -EINVAL, "%s: no directory", s);
		if (ret->tag && !ret->tag[0])
			return strata_error_set(ret_err, -EINVAL, "%s: empty tag", s);
		return 0;
	}
	return content_ref_parse(s, &ret->ref, ret_err);
}

struct buf {
	uint8_t *data;
	size_t len;
	bool mapped;
};

static void buf_done(struct buf *b)
{
	if (b->mapped)
		munmap(b->data, b->len);
	else
		free(b->data);
	*b = (struct buf){0};
}

static int mb_write(const void *p, size_t n, void *userdata)
{
	struct buf *b = userdata;
	uint8_t *d = realloc(b->data, b->len + n + 1);
	if (!d)
		return -ENOMEM;
	memcpy(d + b->len, p, n);
	b->len += n;
	d[b->len] = 0;
	b->data = d;
	return 0;
}

/* --- the conversion state -------------------------------------------------------- */

/* One distinct source layer. */
struct layer {
	struct content_image_descriptor src;
	struct content_estargz_blob out;
	struct strata_error *err;
};

/* A blob or document to write, in order. */
struct output {
	struct strata_digest digest;
	const uint8_t *data; /* points into a layer's blob or `owned` */
	size_t len;
	uint8_t *owned;
	char *media_type;
	int kind; /* 0 blob, 1 manifest */
};

struct converter {
	const struct content_convert_options *o;
	struct content_registry_client *client;
	struct endpoint src, dst;
	struct layer *layers;
	size_t n_layers;
	atomic_size_t next_layer;
	struct output *outs;
	size_t n_outs;
	_Atomic uint64_t in_bytes;
};

static int src_read_oci(struct converter *cv, const struct strata_digest *d, bool map,
                        struct buf *ret, struct strata_error **ret_err)
{
	char hex[STRATA_SHA256_HEX_LEN + 1], ds[STRATA_DIGEST_STRING_MAX];
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct strata_digest got;
	struct stat st;
	int r;

	if (asprintf(&path, "blobs/sha256/%s", strata_digest_hex(d, hex)) < 0)
		return -ENOMEM;
	fd = path_openat(cv->src.dirfd, path, O_RDONLY | O_CLOEXEC, 0, PATH_RESOLVE_IN_ROOT);
	if (fd < 0)
		return strata_error_set_errno(ret_err, fd, "%s: blob %s", cv->src.spec,
		                              strata_digest_format(d, ds));
	if (fstat(fd, &st) < 0)
		return -errno;
	*ret = (struct buf){0};
	if (st.st_size == 0) {
		ret->data = calloc(1, 1);
		if (!ret->data)
			return -ENOMEM;
	} else if (map) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED)
			return -errno;
		*ret = (struct buf){.data = p, .len = (size_t)st.st_size, .mapped = true};
	} else {
		ssize_t n;
		if (st.st_size > CONFIG_MAX)
			return strata_error_set(ret_err, -EFBIG, "%s: %s is too large",
			                        cv->src.spec, path);
		ret->data = malloc((size_t)st.st_size + 1);
		if (!ret->data)
			return -ENOMEM;
		n = loop_read(fd, ret->data, (size_t)st.st_size);
		if (n != st.st_size) {
			buf_done(ret);
			return strata_error_set(ret_err, -EIO, "%s: short read of %s", cv->src.spec,
			                        path);
		}
		ret->data[st.st_size] = 0;
		ret->len = (size_t)st.st_size;
	}
	r = strata_sha256(ret->data, ret->len, &got);
	if (r < 0 || !strata_digest_equal(&got, d)) {
		buf_done(ret);
		return strata_error_set(ret_err, -EBADMSG, "%s: blob %s does not match its digest",
		                        cv->src.spec, strata_digest_format(d, ds));
	}
	return 0;
}

/* A document or blob of the source, digest-verified. */
static int src_read(struct converter *cv, const struct content_image_descriptor *desc, bool doc,
                    struct buf *ret, struct strata_error **ret_err)
{
	int r;

	*ret = (struct buf){0};
	if (cv->src.dir)
		return src_read_oci(cv, &desc->digest, !doc, ret, ret_err);
	if (doc && content_image_media_kind(desc->media_type) != CONTENT_MEDIA_CONFIG) {
		char *b = NULL;
		size_t n = 0;
		r = content_registry_fetch_manifest(cv->client, cv->src.ref, desc, &b, &n, ret_err);
		if (r < 0)
			return r;
		*ret = (struct buf){.data = (uint8_t *)b, .len = n};
		return 0;
	}
	r = content_registry_fetch_blob(cv->client, cv->src.ref, desc, 0,
	                                CONTENT_REGISTRY_FETCH_VERIFY, mb_write, ret, ret_err);
	if (r < 0)
		buf_done(ret);
	return r;
}

static int src_resolve(struct converter *cv, struct content_image_descriptor *ret,
                       struct strata_error **ret_err)
{
	_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;
	_cleanup_free_ char *data = NULL;
	const struct content_image_descriptor *pick = NULL;
	size_t len;
	int r;

	if (!cv->src.dir)
		return content_registry_resolve(cv->client, cv->src.ref, ret, ret_err);
	cv->src.dirfd = open(cv->src.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cv->src.dirfd < 0)
		return strata_error_set_errno(ret_err, -errno, "%s", cv->src.spec);
	r = path_read_file_at(cv->src.dirfd, "index.json", CONTENT_MANIFEST_SIZE_MAX, &data, &len);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "%s: index.json", cv->src.spec);
	r = content_image_index_parse(data, len, NULL, &idx, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "%s: index.json", cv->src.spec);
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const char *n =
		        content_image_descriptor_annotation(&idx->manifests[i], REF_NAME_ANNOT);
		if (cv->src.tag ? (n && streq(n, cv->src.tag)) : idx->n_manifests == 1) {
			pick = &idx->manifests[i];
			break;
		}
	}
	if (!pick && !cv->src.tag && idx->n_manifests > 1)
		return strata_error_set(ret_err, -EINVAL,
		                        "%s holds %zu images: name one with oci:DIR:TAG",
		                        cv->src.spec, idx->n_manifests);
	if (!pick)
		return strata_error_set(ret_err, -ENOENT, "%s: no image tagged \"%s\"",
		                        cv->src.spec, cv->src.tag ? cv->src.tag : "");
	return content_image_descriptor_copy(pick, ret);
}

/* --- layers ------------------------------------------------------------------------ */

enum layer_format { LF_REFUSED, LF_GZIP, LF_TAR };

static enum layer_format layer_format(const char *mt)
{
	static const char *const gz[] = {
	        OCI_LAYER_GZIP,
	        "application/vnd.docker.image.rootfs.diff.tar.gzip",
	};
	static const char *const tar[] = {
	        "application/vnd.oci.image.layer.v1.tar",
	        "application/vnd.docker.image.rootfs.diff.tar",
	};
	for (size_t i = 0; i < ELEMENTSOF(gz); i++)
		if (streq(mt, gz[i]))
			return LF_GZIP;
	for (size_t i = 0; i < ELEMENTSOF(tar); i++)
		if (streq(mt, tar[i]))
			return LF_TAR;
	return LF_REFUSED;
}

/* gunzip every member of in (libdeflate; one pass per member). */
static int gunzip(const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len)
{
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t cap, n = 0, off = 0;
	uint8_t *out = NULL;
	int r = 0;

	if (!d)
		return -ENOMEM;
	/* ISIZE of the last member: the size mod 2^32 of a one-member file */
	cap = len >= 4 ? (size_t)(in[len - 4] | in[len - 3] << 8 | in[len - 2] << 16 |
	                          (uint32_t)in[len - 1] << 24)
	               : 0;
	cap = MAX(cap + 4096, len * 3 + 65536);
	out = malloc(cap);
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	while (off < len) {
		size_t used_in = 0, used_out = 0;
		enum libdeflate_result res = libdeflate_gzip_decompress_ex(
		        d, in + off, len - off, out + n, cap - n, &used_in, &used_out);
		if (res == LIBDEFLATE_INSUFFICIENT_SPACE) {
			uint8_t *o = realloc(out, cap * 2);
			if (!o) {
				r = -ENOMEM;
				goto out;
			}
			out = o;
			cap *= 2;
			continue;
		}
		if (res != LIBDEFLATE_SUCCESS) {
			/* trailing zero padding after the last member is tolerated */
			bool zeros = true;
			for (size_t k = off; k < len && zeros; k++)
				zeros = in[k] == 0;
			if (off > 0 && zeros)
				break;
			r = -EBADMSG;
			goto out;
		}
		off += used_in;
		n += used_out;
	}
	*ret = out;
	*ret_len = n;
	out = NULL;
out:
	free(out);
	libdeflate_free_decompressor(d);
	return r;
}

static int convert_layer(struct converter *cv, struct layer *l)
{
	_cleanup_(buf_done) struct buf raw = {0};
	_cleanup_free_ uint8_t *tar = NULL;
	char ds[STRATA_DIGEST_STRING_MAX];
	enum layer_format f = layer_format(l->src.media_type);
	const uint8_t *t;
	size_t tlen;
	int r;

	strata_digest_format(&l->src.digest, ds);
	r = src_read(cv, &l->src, false, &raw, &l->err);
	if (r < 0)
		return strata_error_prefix(&l->err, r, "layer %s", ds);
	atomic_fetch_add(&cv->in_bytes, (uint64_t)raw.len);
	if (f == LF_GZIP) {
		if (raw.len < 2 || raw.data[0] != 0x1f || raw.data[1] != 0x8b)
			return strata_error_set(&l->err, -EBADMSG,
			                        "layer %s: media type %s but not gzip data", ds,
			                        l->src.media_type);
		r = gunzip(raw.data, raw.len, &tar, &tlen);
		if (r == -EBADMSG)
			return strata_error_set(&l->err, r, "layer %s: corrupt gzip data", ds);
		if (r < 0)
			return strata_error_set_errno(&l->err, r, "layer %s: gunzip", ds);
		buf_done(&raw);
		t = tar;
	} else {
		t = raw.data;
		tlen = raw.len;
	}
	r = content_estargz_build(t, tlen, &cv->o->estargz, &l->out, &l->err);
	if (r < 0)
		return strata_error_prefix(&l->err, r, "layer %s", ds);
	return 0;
}

static void *layer_worker(void *userdata)
{
	struct converter *cv = userdata;

	for (;;) {
		size_t i = atomic_fetch_add(&cv->next_layer, 1);
		if (i >= cv->n_layers)
			break;
		if (convert_layer(cv, &cv->layers[i]) < 0) {
			if (!cv->layers[i].err)
				(void)strata_error_set(&cv->layers[i].err, -ENOMEM,
				                       "out of memory");
			/* the others stop early */
			atomic_store(&cv->next_layer, cv->n_layers);
		}
	}
	return NULL;
}

static int convert_layers(struct converter *cv, struct strata_error **ret_err)
{
	unsigned jobs = cv->o->layer_jobs ? cv->o->layer_jobs : LAYER_JOBS;
	pthread_t tids[16];
	unsigned n = 0;

	jobs = (unsigned)MIN((size_t)jobs, cv->n_layers);
	if (jobs > ELEMENTSOF(tids))
		jobs = ELEMENTSOF(tids);
	for (unsigned i = 1; i < jobs; i++)
		if (pthread_create(&tids[n], NULL, layer_worker, cv) == 0)
			n++;
	layer_worker(cv);
	for (unsigned i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	for (size_t i = 0; i < cv->n_layers; i++)
		if (cv->layers[i].err) {
			int r = cv->layers[i].err->code;
			strata_error_propagate(ret_err, &cv->layers[i].err);
			return r;
		}
	return 0;
}

static struct layer *find_layer(struct converter *cv, const struct strata_digest *d)
{
	for (size_t i = 0; i < cv->n_layers; i++)
		if (strata_digest_equal(&cv->layers[i].src.digest, d))
			return &cv->layers[i];
	return NULL;
}

/* --- documents ----------------------------------------------------------------------- */

static int add_output(struct converter *cv, int kind, const char *media_type, const uint8_t *data,
                      size_t len, uint8_t *owned, struct strata_digest *ret_digest)
{
	struct output *o;
	struct strata_digest d;
	int r;

	r = strata_sha256(data, len, &d);
	if (r < 0) {
		free(owned);
		return r;
	}
	if (ret_digest)
		*ret_digest = d;
	for (size_t i = 0; i < cv->n_outs; i++)
		if (strata_digest_equal(&cv->outs[i].digest, &d)) {
			free(owned);
			return 0;
		}
	o = realloc(cv->outs, (cv->n_outs + 1) * sizeof(*o));
	if (!o) {
		free(owned);
		return -ENOMEM;
	}
	cv->outs = o;
	o = &o[cv->n_outs];
	*o = (struct output){.digest = d, .data = data, .len = len, .owned = owned, .kind = kind};
	o->media_type = strdup(media_type);
	if (!o->media_type) {
		free(owned);
		return -ENOMEM;
	}
	cv->n_outs++;
	return 0;
}

static json_t *desc_json(const char *mt, const struct strata_digest *d, size_t size)
{
	char ds[STRATA_DIGEST_STRING_MAX];
	return json_pack("{s:s,s:s,s:I}", "mediaType", mt, "digest", strata_digest_format(d, ds),
	                 "size", (json_int_t)size);
}

static int add_json_output(struct converter *cv, int kind, const char *mt, json_t *j,
                           struct strata_digest *ret_digest, size_t *ret_len)
{
	char *s = json_dumps(j, JSON_COMPACT);
	size_t len;

	if (!s)
		return -ENOMEM;
	len = strlen(s);
	*ret_len = len;
	return add_output(cv, kind, mt, (uint8_t *)s, len, (uint8_t *)s, ret_digest);
}

/* Pass 1 over a manifest: register its layers. */
static int scan_manifest(struct converter *cv, const struct content_image_manifest *m,
                         struct strata_error **ret_err)
{
	for (size_t i = 0; i < m->n_layers; i++) {
		const struct content_image_descriptor *l = &m->layers[i];
		struct layer *a;
		char ds[STRATA_DIGEST_STRING_MAX];
		int r;

		if (layer_format(l->media_type) == LF_REFUSED)
			return strata_error_set(
			        ret_err, -EOPNOTSUPP,
			        "layer %s: media type %s is not supported (gzip'd or uncompressed "
			        "tar layers only)",
			        strata_digest_format(&l->digest, ds), l->media_type);
		if (find_layer(cv, &l->digest))
			continue;
		a = realloc(cv->layers, (cv->n_layers + 1) * sizeof(*a));
		if (!a)
			return -ENOMEM;
		cv->layers = a;
		a = &a[cv->n_layers];
		*a = (struct layer){0};
		r = content_image_descriptor_copy(l, &a->src);
		if (r < 0)
			return r;
		cv->n_layers++;
	}
	return 0;
}

static void copy_annotations(json_t *obj, const struct content_image_annotation *a, size_t n,
                             const char *skip1, const char *skip2)
{
	json_t *ann;

	if (n == 0)
		return;
	ann = json_object();
	for (size_t i = 0; i < n; i++)
		if (!(skip1 && streq(a[i].key, skip1)) && !(skip2 && streq(a[i].key, skip2)))
			json_object_set_new(ann, a[i].key, json_string(a[i].value));
	if (json_object_size(ann))
		json_object_set_new(obj, "annotations", ann);
	else
		json_decref(ann);
}

struct src_image {
	struct content_image_descriptor desc;
	struct content_image_manifest *m;
	struct buf config;
};

static void src_image_done(struct src_image *s)
{
	content_image_descriptor_done(&s->desc);
	content_image_manifest_free(s->m);
	buf_done(&s->config);
}

static int load_manifest(struct converter *cv, const struct content_image_descriptor *desc,
                         struct src_image *ret, struct strata_error **ret_err)
{
	_cleanup_(buf_done) struct buf b = {0};
	int r;

	r = content_image_descriptor_copy(desc, &ret->desc);
	if (r < 0)
		return r;
	r = src_read(cv, desc, true, &b, ret_err);
	if (r < 0)
		return r;
	r = content_image_manifest_parse(b.data, b.len, desc->media_type, &ret->m, ret_err);
	if (r < 0)
		return r;
	r = src_read(cv, &ret->m->config, true, &ret->config, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "config");
	return scan_manifest(cv, ret->m, ret_err);
}

/* Pass 2: the new config and manifest of one image. */
static int emit_manifest(struct converter *cv, struct src_image *s, struct strata_digest *ret,
                         size_t *ret_len, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *cfg = NULL, *man = NULL;
	json_t *diff_ids, *rootfs, *layers;
	struct strata_digest cd;
	char ds[STRATA_DIGEST_STRING_MAX];
	size_t clen;
	int r;

	cfg = json_loadb((const char *)s->config.data, s->config.len, 0, NULL);
	rootfs = json_get_obj(cfg, "rootfs");
	if (!rootfs)
		return strata_error_set(ret_err, -EBADMSG, "config %s: no rootfs",
		                        strata_digest_format(&s->m->config.digest, ds));
	if (json_array_size(json_get_array(rootfs, "diff_ids")) != s->m->n_layers)
		return strata_error_set(ret_err, -EBADMSG, "config %s: %zu diff_ids for %zu layers",
		                        strata_digest_format(&s->m->config.digest, ds),
		                        json_array_size(json_get_array(rootfs, "diff_ids")),
		                        s->m->n_layers);
	diff_ids = json_array();
	layers = json_array();
	man = json_pack("{s:i,s:s}", "schemaVersion", 2, "mediaType",
	                CONTENT_MEDIA_TYPE_OCI_MANIFEST);
	if (!diff_ids || !layers || !man)
		return -ENOMEM;
	for (size_t i = 0; i < s->m->n_layers; i++) {
		const struct layer *l = find_layer(cv, &s->m->layers[i].digest);
		json_t *d, *ann;
		char us[32];

		if (!l)
			return -ENOENT; /* scan_manifest registered every layer */
		d = desc_json(OCI_LAYER_GZIP, &l->out.digest, l->out.len);
		if (!d)
			return -ENOMEM;

		json_array_append_new(diff_ids,
		                      json_string(strata_digest_format(&l->out.diff_id, ds)));
		copy_annotations(d, s->m->layers[i].annotations, s->m->layers[i].n_annotations,
		                 CONTENT_ESTARGZ_TOC_DIGEST_LABEL,
		                 CONTENT_ESTARGZ_UNCOMPRESSED_SIZE_LABEL);
		ann = json_object_get(d, "annotations");
		if (!ann) {
			ann = json_object();
			json_object_set_new(d, "annotations", ann);
		}
		json_object_set_new(ann, CONTENT_ESTARGZ_TOC_DIGEST_LABEL,
		                    json_string(strata_digest_format(&l->out.toc_digest, ds)));
		snprintf(us, sizeof(us), "%" PRIu64, l->out.uncompressed_size);
		json_object_set_new(ann, CONTENT_ESTARGZ_UNCOMPRESSED_SIZE_LABEL, json_string(us));
		json_array_append_new(layers, d);
	}
	json_object_set_new(rootfs, "diff_ids", diff_ids);
	r = add_json_output(cv, 0, CONTENT_MEDIA_TYPE_OCI_CONFIG, cfg, &cd, &clen);
	if (r < 0)
		return r;
	json_object_set_new(man, "config", desc_json(CONTENT_MEDIA_TYPE_OCI_CONFIG, &cd, clen));
	json_object_set_new(man, "layers", layers);
	copy_annotations(man, s->m->annotations, s->m->n_annotations, NULL, NULL);
	return add_json_output(cv, 1, CONTENT_MEDIA_TYPE_OCI_MANIFEST, man, ret, ret_len);
}

static json_t *platform_json(const struct content_image_platform *p)
{
	json_t *j = json_pack("{s:s,s:s}", "architecture", p->architecture ? p->architecture : "",
	                      "os", p->os ? p->os : "");
	if (j && p->variant)
		json_object_set_new(j, "variant", json_string(p->variant));
	if (j && p->os_version)
		json_object_set_new(j, "os.version", json_string(p->os_version));
	return j;
}

/* --- writing ----------------------------------------------------------------------- */

static int write_oci(struct converter *cv, const char *top_mt, const struct strata_digest *top,
                     size_t top_len, struct strata_error **ret_err)
{
	_cleanup_close_ int dfd = -1, bfd = -1;
	_cleanup_json_ json_t *index = NULL;
	_cleanup_free_ char *old = NULL, *s = NULL;
	const char *tag = cv->dst.tag ? cv->dst.tag : "latest";
	json_t *manifests, *d;
	size_t old_len, i;
	int r;

	r = path_mkdir_p(cv->dst.dir, 0755);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "%s", cv->dst.spec);
	dfd = open(cv->dst.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return strata_error_set_errno(ret_err, -errno, "%s", cv->dst.spec);
	r = path_mkdir_p_at(dfd, "blobs/sha256", 0755);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "%s: blobs/sha256", cv->dst.spec);
	bfd = path_openat(dfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
	                  PATH_RESOLVE_IN_ROOT);
	if (bfd < 0)
		return strata_error_set_errno(ret_err, bfd, "%s: blobs/sha256", cv->dst.spec);
	for (i = 0; i < cv->n_outs; i++) {
		char hex[STRATA_SHA256_HEX_LEN + 1];
		struct stat st;
		strata_digest_hex(&cv->outs[i].digest, hex);
		if (fstatat(bfd, hex, &st, 0) == 0 && (size_t)st.st_size == cv->outs[i].len)
			continue;
		r = path_write_file_atomic_at(bfd, hex, cv->outs[i].data, cv->outs[i].len, 0644);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "%s: write blob %s", cv->dst.spec,
			                              hex);
	}
	r = path_write_file_atomic_at(dfd, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30,
	                              0644);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "%s: oci-layout", cv->dst.spec);

	/* index.json: replace the entry with our tag, keep the others */
	if (path_read_file_at(dfd, "index.json", CONTENT_MANIFEST_SIZE_MAX, &old, &old_len) >= 0)
		index = json_loadb(old, old_len, 0, NULL);
	if (!index || !json_is_array(json_object_get(index, "manifests"))) {
		json_decref(index);
		index = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType",
		                  CONTENT_MEDIA_TYPE_OCI_INDEX, "manifests");
		if (!index)
			return -ENOMEM;
	}
	manifests = json_object_get(index, "manifests");
	for (i = json_array_size(manifests); i-- > 0;) {
		const char *n = json_get_str(
		        json_get_obj(json_array_get(manifests, i), "annotations"), REF_NAME_ANNOT);
		if (n && streq(n, tag))
			json_array_remove(manifests, i);
	}
	d = desc_json(top_mt, top, top_len);
	if (!d)
		return -ENOMEM;
	json_object_set_new(d, "annotations", json_pack("{s:s}", REF_NAME_ANNOT, tag));
	json_array_append_new(manifests, d);
	s = json_dumps(index, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	r = path_write_file_atomic_at(dfd, "index.json", s, strlen(s), 0644);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "%s: index.json", cv->dst.spec);
	return 0;
}

static int push_all(struct converter *cv, const char *top_mt, const struct strata_digest *top,
                    struct strata_error **ret_err)
{
	const struct content_ref *ref = cv->dst.ref;
	char ds[STRATA_DIGEST_STRING_MAX];
	const char *tag = ref->tag ? ref->tag : NULL;
	int r;

	/* blobs, then child manifests, then the top one under the tag */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < cv->n_outs; i++) {
			struct output *o = &cv->outs[i];
			if (o->kind != pass)
				continue;
			if (pass == 0) {
				r = content_registry_push_blob(cv->client, ref, &o->digest, o->data,
				                               o->len, NULL, ret_err);
			} else {
				if (strata_digest_equal(&o->digest, top) && tag)
					continue;
				r = content_registry_push_manifest(
				        cv->client, ref, strata_digest_format(&o->digest, ds),
				        o->media_type, o->data, o->len, ret_err);
			}
			if (r < 0)
				return r;
		}
	if (tag)
		for (size_t i = 0; i < cv->n_outs; i++)
			if (strata_digest_equal(&cv->outs[i].digest, top))
				return content_registry_push_manifest(cv->client, ref, tag, top_mt,
				                                      cv->outs[i].data,
				                                      cv->outs[i].len, ret_err);
	return 0;
}

/* --- entry point --------------------------------------------------------------------- */

static void converter_done(struct converter *cv)
{
	for (size_t i = 0; i < cv->n_layers; i++) {
		content_image_descriptor_done(&cv->layers[i].src);
		content_estargz_blob_done(&cv->layers[i].out);
		strata_error_free(cv->layers[i].err);
	}
	free(cv->layers);
	for (size_t i = 0; i < cv->n_outs; i++) {
		free(cv->outs[i].owned);
		free(cv->outs[i].media_type);
	}
	free(cv->outs);
	content_registry_client_free(cv->client);
	endpoint_done(&cv->src);
	endpoint_done(&cv->dst);
}

int content_convert_estargz(const char *src, const char *dst,
                            const struct content_convert_options *o,
                            struct content_convert_result *ret, struct strata_error **ret_err)
{
	struct converter cv = {.o = o, .src = {.dirfd = -1}, .dst = {.dirfd = -1}};
	_cleanup_(content_image_descriptor_done) struct content_image_descriptor top = {0};
	_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;
	_cleanup_(buf_done) struct buf topbuf = {0};
	struct src_image *imgs = NULL;
	size_t n_imgs = 0, top_len = 0;
	struct strata_digest top_digest;
	const char *top_mt;
	int r;

	*ret = (struct content_convert_result){0};
	r = endpoint_parse(src, &cv.src, ret_err);
	if (r >= 0)
		r = endpoint_parse(dst, &cv.dst, ret_err);
	if (r < 0)
		goto out;
	if (!cv.src.dir || !cv.dst.dir) {
		struct content_registry_options ro = {
		        .plain_http = o->plain_http,
		        .user = o->user,
		        .hosts_dir = o->hosts_dir,
		};
		r = content_registry_client_new(&ro, &cv.client, ret_err);
		if (r < 0)
			goto out;
	}

	/* read */
	r = src_resolve(&cv, &top, ret_err);
	if (r < 0)
		goto out;
	switch (content_image_media_kind(top.media_type)) {
	case CONTENT_MEDIA_MANIFEST:
		imgs = calloc(1, sizeof(*imgs));
		if (!imgs) {
			r = -ENOMEM;
			goto out;
		}
		n_imgs = 1;
		r = load_manifest(&cv, &top, &imgs[0], ret_err);
		break;
	case CONTENT_MEDIA_INDEX:
		r = src_read(&cv, &top, true, &topbuf, ret_err);
		if (r < 0)
			break;
		r = content_image_index_parse(topbuf.data, topbuf.len, top.media_type, &idx,
		                              ret_err);
		if (r < 0)
			break;
		imgs = calloc(MAX(idx->n_manifests, (size_t)1), sizeof(*imgs));
		if (!imgs) {
			r = -ENOMEM;
			break;
		}
		for (size_t i = 0; i < idx->n_manifests && r >= 0; i++) {
			const struct content_image_descriptor *d = &idx->manifests[i];
			if (d->platform && d->platform->os && streq(d->platform->os, "unknown")) {
				log_debug("convert: dropping attestation manifest");
				continue;
			}
			if (content_image_media_kind(d->media_type) != CONTENT_MEDIA_MANIFEST) {
				r = strata_error_set(ret_err, -EOPNOTSUPP,
				                     "%s: nested index or unknown entry %s",
				                     cv.src.spec, d->media_type);
				break;
			}
			r = load_manifest(&cv, d, &imgs[n_imgs++], ret_err);
		}
		break;
	default:
		r = strata_error_set(ret_err, -EOPNOTSUPP, "%s: unsupported media type %s",
		                     cv.src.spec, top.media_type);
	}
	if (r < 0) {
		(void)strata_error_prefix(ret_err, r, "%s", cv.src.spec);
		goto out;
	}

	/* convert */
	r = convert_layers(&cv, ret_err);
	if (r < 0) {
		(void)strata_error_prefix(ret_err, r, "%s", cv.src.spec);
		goto out;
	}
	for (size_t i = 0; i < cv.n_layers; i++) {
		r = add_output(&cv, 0, OCI_LAYER_GZIP, cv.layers[i].out.data, cv.layers[i].out.len,
		               NULL, NULL);
		if (r < 0)
			goto out;
		ret->out_bytes += cv.layers[i].out.len;
	}
	if (!idx) {
		r = emit_manifest(&cv, &imgs[0], &top_digest, &top_len, ret_err);
		top_mt = CONTENT_MEDIA_TYPE_OCI_MANIFEST;
	} else {
		_cleanup_json_ json_t *ni =
		        json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType",
		                  CONTENT_MEDIA_TYPE_OCI_INDEX, "manifests");
		json_t *ms = json_object_get(ni, "manifests");
		for (size_t i = 0; i < n_imgs && r >= 0; i++) {
			struct strata_digest md;
			size_t ml;
			json_t *d;
			r = emit_manifest(&cv, &imgs[i], &md, &ml, ret_err);
			if (r < 0)
				break;
			d = desc_json(CONTENT_MEDIA_TYPE_OCI_MANIFEST, &md, ml);
			if (imgs[i].desc.platform)
				json_object_set_new(d, "platform",
				                    platform_json(imgs[i].desc.platform));
			copy_annotations(d, imgs[i].desc.annotations, imgs[i].desc.n_annotations,
			                 NULL, NULL);
			json_array_append_new(ms, d);
		}
		if (r >= 0) {
			copy_annotations(ni, idx->annotations, idx->n_annotations, NULL, NULL);
			r = add_json_output(&cv, 1, CONTENT_MEDIA_TYPE_OCI_INDEX, ni, &top_digest,
			                    &top_len);
		}
		top_mt = CONTENT_MEDIA_TYPE_OCI_INDEX;
	}
	if (r < 0)
		goto out;

	/* write: only now */
	if (cv.dst.dir)
		r = write_oci(&cv, top_mt, &top_digest, top_len, ret_err);
	else
		r = push_all(&cv, top_mt, &top_digest, ret_err);
	if (r < 0) {
		(void)strata_error_prefix(ret_err, r, "%s", cv.dst.spec);
		goto out;
	}
	ret->digest = top_digest;
	ret->size = top_len;
	ret->media_type = top_mt;
	ret->n_layers = cv.n_layers;
	ret->n_images = n_imgs;
	ret->in_bytes = atomic_load(&cv.in_bytes);
out:
	for (size_t i = 0; i < n_imgs; i++)
		src_image_done(&imgs[i]);
	free(imgs);
	converter_done(&cv);
	return r;
}
