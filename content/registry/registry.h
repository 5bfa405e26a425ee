/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client (OCI distribution spec over libcurl + OpenSSL), image
 * references and image formats. Re-exported through content/content.h.
 *
 * What it owns:
 *   - content_ref_*: image references normalised like containerd/docker
 *     ("busybox" -> "docker.io/library/busybox:latest").
 *   - content_registry_hosts_*: containerd's certs.d host configuration
 *     (<hosts_dir>/<host>/hosts.toml, "<host>_<port>_", "_default"): the
 *     mirrors to try, in order, and their TLS settings.
 *   - content_registry_*: a thread-safe client. Resolve a tag to a
 *     descriptor, fetch manifests (bounded, digest verified), stream blobs
 *     (with resume), read byte ranges for lazy pulling. It answers
 *     WWW-Authenticate challenges (anonymous or credentialed bearer tokens,
 *     cached per host and scope until they expire; Basic), retries 5xx/429
 *     and connection errors with exponential backoff (honouring Retry-After),
 *     and follows redirects without sending the registry's Authorization to
 *     another host.
 *   - content_image_*: OCI/Docker manifests, indexes, configs, descriptors,
 *     platforms and platform selection (containerd's normalisation).
 *
 * Credentials (explicit user:password, ~/.docker/config.json) never appear
 * in a log line or an error message.
 *
 * Errors: -ENOENT not found (manifest, tag, blob), -EACCES authentication
 * refused, -EBADMSG content that does not match its digest or size,
 * -EMSGSIZE manifest over the size bound, -EOPNOTSUPP unsupported media
 * type or a registry without Range support (see read_range), -EIO/-EAGAIN
 * transport failures after retries, -EINVAL bad input.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "digest.h"
#include "error.h"

/* --- references ---------------------------------------------------------- */

struct content_ref {
	char *domain; /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
	char *path;   /* "library/busybox" */
	char *tag;    /* "latest"; NULL for a digest-only reference */
	char *digest; /* "sha256:<hex>" or NULL */
};

/*
 * Parse and normalise a reference: [domain/]path[:tag][@digest]. A missing
 * domain is docker.io ("index.docker.io" too), a one-component docker.io
 * path gets "library/", a reference without tag and digest gets ":latest".
 * -EINVAL with a message naming the problem (uppercase repository, bad tag,
 * bad digest, empty component, name too long).
 */
int content_ref_parse(const char *s, struct content_ref **ret, struct strata_error **ret_err);
struct content_ref *content_ref_free(struct content_ref *ref);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_ref *, content_ref_free)
/* "domain/path[:tag][@digest]" (malloc'd; NULL on OOM). */
char *content_ref_format(const struct content_ref *ref);
/* "domain/path" (malloc'd; NULL on OOM). */
char *content_ref_name(const struct content_ref *ref);
/* The host to contact when no hosts.toml says otherwise: docker.io is
 * served by registry-1.docker.io. Points into ref or a constant. */
const char *content_ref_registry_host(const struct content_ref *ref);

/* --- host configuration (containerd certs.d) ----------------------------- */

enum {
	CONTENT_REGISTRY_CAP_PULL = 1 << 0,
	CONTENT_REGISTRY_CAP_RESOLVE = 1 << 1,
	CONTENT_REGISTRY_CAP_PUSH = 1 << 2,
};

struct content_registry_header {
	char *name;
	char *value;
};

struct content_registry_host {
	char *scheme; /* "https" or "http" */
	char *host;   /* "mirror.example:5000" */
	char *path;   /* "/v2" unless override_path */
	unsigned capabilities;
	bool skip_verify;
	char **ca_files; /* absolute paths; added to the system roots */
	size_t n_ca_files;
	char *client_cert; /* first `client` pair only; NULL if none */
	char *client_key;
	struct content_registry_header *headers; /* one entry per value */
	size_t n_headers;
};

struct content_registry_hosts {
	struct content_registry_host *hosts; /* [host] tables in file order, server last */
	size_t n_hosts;
	char *dir; /* the directory the configuration came from, or NULL */
};

/*
 * The hosts to try for registry domain `domain`, like containerd's
 * ConfigureHosts(HostDirFromRoot(hosts_dir)): the first existing directory
 * of <hosts_dir>/<host>_<port>_, <hosts_dir>/<domain>, <hosts_dir>/_default
 * provides hosts.toml (or, without one, *.crt / *.cert+*.key files). A
 * configuration without `server` ends with the domain itself (docker.io ->
 * https://registry-1.docker.io) with every capability. Plain HTTP is used
 * for localhost/loopback domains, when plain_http is set (the --plain-http
 * flag), or when hosts.toml says so (an http:// URL or plain_http = true).
 * hosts_dir may be NULL (defaults only).
 */
int content_registry_hosts_load(const char *hosts_dir, const char *domain, bool plain_http,
                                struct content_registry_hosts **ret, struct strata_error **ret_err);
struct content_registry_hosts *content_registry_hosts_free(struct content_registry_hosts *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_registry_hosts *, content_registry_hosts_free)

/* --- credentials ---------------------------------------------------------- */

/*
 * Look up credentials for `host` in a docker config.json (`auths` keyed by
 * host, https://host, http://host or a URL with a path; `auth` = base64
 * "user:pass", or `username`/`password`; docker.io also under
 * https://index.docker.io/v1/). config_dir NULL = $DOCKER_CONFIG, else
 * ~/.docker. Returns 1 with malloc'd strings when found, 0 when not (or no
 * file), -errno on a malformed file. credHelpers/credsStore are not used.
 */
int content_registry_docker_credentials(const char *config_dir, const char *host, char **ret_user,
                                        char **ret_password, struct strata_error **ret_err);

/* --- image formats -------------------------------------------------------- */

#define CONTENT_MEDIA_TYPE_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define CONTENT_MEDIA_TYPE_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define CONTENT_MEDIA_TYPE_OCI_CONFIG      "application/vnd.oci.image.config.v1+json"
#define CONTENT_MEDIA_TYPE_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define CONTENT_MEDIA_TYPE_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define CONTENT_MEDIA_TYPE_DOCKER_CONFIG   "application/vnd.docker.container.image.v1+json"

/* Manifests larger than this are refused (-EMSGSIZE). */
#define CONTENT_MANIFEST_SIZE_MAX (4u << 20)

enum content_media_kind {
	CONTENT_MEDIA_UNKNOWN = 0,
	CONTENT_MEDIA_MANIFEST,
	CONTENT_MEDIA_INDEX,
	CONTENT_MEDIA_CONFIG,
	CONTENT_MEDIA_LAYER,
};

/* Classify a media type (parameters after ';' ignored). */
enum content_media_kind content_image_media_kind(const char *media_type);

struct content_image_platform {
	char *os;
	char *architecture;
	char *variant;    /* NULL or "v8", ... */
	char *os_version; /* NULL unless given */
};

struct content_image_annotation {
	char *key;
	char *value;
};

struct content_image_descriptor {
	char *media_type;
	struct strata_digest digest;
	int64_t size;
	struct content_image_annotation *annotations;
	size_t n_annotations;
	char **urls;
	size_t n_urls;
	struct content_image_platform *platform; /* index entries only; may be NULL */
};

struct content_image_manifest {
	char *media_type; /* from the document, or the hint it was parsed with */
	struct content_image_descriptor config;
	struct content_image_descriptor *layers;
	size_t n_layers;
	struct content_image_annotation *annotations;
	size_t n_annotations;
};

struct content_image_index {
	char *media_type;
	struct content_image_descriptor *manifests;
	size_t n_manifests;
	struct content_image_annotation *annotations;
	size_t n_annotations;
};

struct content_image_config {
	struct content_image_platform platform;
	struct strata_digest *diff_ids;
	size_t n_diff_ids;
	json_t *json; /* the whole document (owned), for "config", "history", ... */
};

void content_image_platform_done(struct content_image_platform *p);
void content_image_descriptor_done(struct content_image_descriptor *d);
int content_image_descriptor_copy(const struct content_image_descriptor *src,
                                  struct content_image_descriptor *ret);
/* The value of an annotation, or NULL. */
const char *content_image_descriptor_annotation(const struct content_image_descriptor *d,
                                                const char *key);

/* Parse documents. media_type is the type the registry or parent descriptor
 * announced (may be NULL); a document's own mediaType must agree with it.
 * Docker schema 1 and unknown types are -EOPNOTSUPP. */
int content_image_manifest_parse(const void *buf, size_t len, const char *media_type,
                                 struct content_image_manifest **ret,
                                 struct strata_error **ret_err);
struct content_image_manifest *content_image_manifest_free(struct content_image_manifest *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_image_manifest *, content_image_manifest_free)

int content_image_index_parse(const void *buf, size_t len, const char *media_type,
                              struct content_image_index **ret, struct strata_error **ret_err);
struct content_image_index *content_image_index_free(struct content_image_index *idx);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_image_index *, content_image_index_free)

int content_image_config_parse(const void *buf, size_t len, struct content_image_config **ret,
                               struct strata_error **ret_err);
struct content_image_config *content_image_config_free(struct content_image_config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_image_config *, content_image_config_free)

/* "os/arch[/variant]", "os" or "arch" (the rest from the host), normalised
 * like containerd (x86_64 -> amd64, aarch64 -> arm64, arm64/v8 == arm64,
 * armhf -> arm/v7, ...). */
int content_image_platform_parse(const char *s, struct content_image_platform *ret,
                                 struct strata_error **ret_err);
/* The host's platform (linux/<uname arch>[/variant]). */
int content_image_platform_default(struct content_image_platform *ret);
/* "os/arch[/variant]" (malloc'd). */
char *content_image_platform_format(const struct content_image_platform *p);
/*
 * How well `have` serves `want`: 0 = exact, n > 0 = the n-th fallback of
 * containerd's platforms.Only() (amd64 runs 386, arm64 runs arm/v8..v5,
 * arm/v7 runs v6, v5), -1 = no match.
 */
int content_image_platform_match(const struct content_image_platform *want,
                                 const struct content_image_platform *have);
/* Pick the best manifest of an index for `want`; -ENOENT with the list of
 * available platforms when none matches. *ret points into idx. */
int content_image_index_select(const struct content_image_index *idx,
                               const struct content_image_platform *want,
                               const struct content_image_descriptor **ret,
                               struct strata_error **ret_err);

/* --- client --------------------------------------------------------------- */

struct content_registry_client;

struct content_registry_options {
	const char *hosts_dir;         /* certs.d directory; NULL = none */
	const char *docker_config_dir; /* NULL = $DOCKER_CONFIG or ~/.docker */
	bool no_docker_config;         /* do not read docker's config.json */
	const char *user;              /* explicit "user:password" for every host, or NULL */
	bool plain_http;               /* --plain-http: http for hosts without a scheme */
	const char *user_agent;        /* NULL = "strata/<version>" */
	unsigned max_tries;            /* per request incl. the first; 0 = 4 */
	unsigned retry_base_ms;        /* first backoff; doubles each retry; 0 = 250 */
	unsigned connect_timeout_sec;  /* 0 = 10 */
	unsigned low_speed_time_sec;   /* abort below 1 KiB/s for this long; 0 = 30 */
};

int content_registry_client_new(const struct content_registry_options *opts,
                                struct content_registry_client **ret,
                                struct strata_error **ret_err);
/* Drops one reference: the client is freed with its last one. */
struct content_registry_client *content_registry_client_free(struct content_registry_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_registry_client *, content_registry_client_free)
/* One more reference (thread-safe), dropped with content_registry_client_free. */
struct content_registry_client *content_registry_client_ref(struct content_registry_client *c);

/*
 * Routes: every request of c for repository `name` ("domain/path", as
 * content_ref_name() prints it) goes through `via` instead, a client made
 * with other credentials or transport (those given to one `strata pull`,
 * for the lazy layers of its image). c holds a reference on via until the
 * route is replaced (a later call for the same name), removed (via NULL)
 * or c is freed. Kept in memory only. via must have no routes of its own.
 * Thread-safe; a request already running keeps the client it started with.
 */
int content_registry_client_set_route(struct content_registry_client *c, const char *name,
                                      struct content_registry_client *via);
/* Whether requests for ref's repository are routed through another client. */
bool content_registry_client_routed(struct content_registry_client *c,
                                    const struct content_ref *ref);

/*
 * Resolve ref (its digest if it has one, else its tag) to the descriptor of
 * a manifest or index: HEAD, falling back to GET when HEAD is refused or
 * lacks Docker-Content-Digest; hosts with the resolve capability in order.
 */
int content_registry_resolve(struct content_registry_client *c, const struct content_ref *ref,
                             struct content_image_descriptor *ret, struct strata_error **ret_err);

/*
 * Fetch a manifest or index by descriptor from ref's repository, at most
 * CONTENT_MANIFEST_SIZE_MAX bytes, verified against desc->digest (and
 * desc->size when > 0). *ret_buf is malloc'd and NUL-terminated.
 */
int content_registry_fetch_manifest(struct content_registry_client *c,
                                    const struct content_ref *ref,
                                    const struct content_image_descriptor *desc, char **ret_buf,
                                    size_t *ret_len, struct strata_error **ret_err);

/* Called with each piece of a blob in order. Return < 0 to abort the fetch
 * with that error. */
typedef int (*content_registry_write_fn)(const void *buf, size_t len, void *userdata);

enum {
	/* Hash what is delivered and fail with -EBADMSG when it does not match
	 * desc->digest (offset 0 only; a resumed fetch is the caller's to
	 * verify, since only it has the first bytes). */
	CONTENT_REGISTRY_FETCH_VERIFY = 1 << 0,
};

/*
 * Stream blob desc->digest from `offset` (resume: Range: bytes=offset-) to
 * the end into fn. A transfer that breaks is resumed where it stopped (up to
 * max_tries). A registry that ignores the Range header is handled by
 * skipping the first `offset` bytes of its answer. More bytes than
 * desc->size (when > 0) is -EBADMSG. Returns 0 after the last byte.
 */
int content_registry_fetch_blob(struct content_registry_client *c, const struct content_ref *ref,
                                const struct content_image_descriptor *desc, uint64_t offset,
                                unsigned flags, content_registry_write_fn fn, void *userdata,
                                struct strata_error **ret_err);

/*
 * Read blob bytes [offset, offset + len) into buf (one Range request; for
 * lazy pulling). Returns the number of bytes read (< len only at the end of
 * the blob). A registry that answers a Range request with 200 and the whole
 * blob gets -EOPNOTSUPP (and is remembered, so later calls fail without a
 * request): lazily reading the tail of a blob would mean downloading all of
 * it on every read, so the caller should fall back to a full pull instead.
 */
int64_t content_registry_read_range(struct content_registry_client *c,
                                    const struct content_ref *ref,
                                    const struct strata_digest *digest, uint64_t offset, size_t len,
                                    void *buf, struct strata_error **ret_err);

/* One byte range of a blob: [offset, offset + len). */
struct content_registry_range {
	uint64_t offset;
	uint64_t len;
};

/* Range i's bytes, exactly ranges[i].len of them; < 0 stops the transfer. */
typedef int (*content_registry_range_fn)(size_t i, const uint8_t *data, size_t len, void *userdata);

/*
 * Read n ranges of a blob (sorted, disjoint) in one request: "Range:
 * bytes=a-b,c-d,..." answered with multipart/byteranges. fn gets each range
 * as soon as the part holding it has arrived, in the order the registry
 * sends them (a registry may merge neighbours into one part; the gap is
 * dropped). A host that answers with a single part or the whole blob is
 * remembered, and what it did not send is read one range per request, then
 * and in later calls. Returns 0 once fn had every range, else the error
 * (fn may have had some ranges). *ret_bytes (may be NULL): the bytes of
 * every part received, gaps included; *ret_requests: requests made. Like
 * read_range, a registry that ignores Range altogether is -EOPNOTSUPP.
 */
int content_registry_read_ranges(struct content_registry_client *c, const struct content_ref *ref,
                                 const struct strata_digest *digest,
                                 const struct content_registry_range *ranges, size_t n,
                                 content_registry_range_fn fn, void *userdata, uint64_t *ret_bytes,
                                 unsigned *ret_requests, struct strata_error **ret_err);

/* --- push (push.c; `strata convert`) ------------------------------------------ */

/*
 * Upload blob `digest` (buf, len bytes) to ref's repository on the first
 * host with the push capability: HEAD first (*ret_existed = true and nothing
 * sent when the registry has it), else POST /blobs/uploads/ and one
 * monolithic PUT ?digest=. Bearer tokens are asked for "pull,push".
 */
int content_registry_push_blob(struct content_registry_client *c, const struct content_ref *ref,
                               const struct strata_digest *digest, const void *buf, size_t len,
                               bool *ret_existed, struct strata_error **ret_err);
/* PUT a manifest or index under `reference` (a tag or "sha256:..."). Push
 * the blobs and child manifests it names first. */
int content_registry_push_manifest(struct content_registry_client *c, const struct content_ref *ref,
                                   const char *reference, const char *media_type, const void *buf,
                                   size_t len, struct strata_error **ret_err);
