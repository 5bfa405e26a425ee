/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client against fake-registry.py (127.0.0.1): auth flows,
 * digest checks, Range quirks, retries, redirects, mirrors, threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "common.h"
#include "registry.h"
#include "helpers.h"

static struct th_proc fake = {.pid = 0, .out_fd = -1};
static int main_port, blob_port;
static json_t *info;
static char *tmpdir;

static int group_setup(void **state)
{
	char *argv[] = {(char *)"python3", (char *)REGISTRY_TEST_SRCDIR "/fake-registry.py", NULL};
	_cleanup_free_ char *ports = NULL, *js = NULL;

	if (th_spawn(argv, true, &fake) < 0)
		return -1;
	ports = th_read_line(&fake, 20000);
	js = th_read_line(&fake, 5000);
	if (!ports || !js || sscanf(ports, "%d %d", &main_port, &blob_port) != 2) {
		th_stop(&fake);
		return -1;
	}
	info = json_loads(js, 0, NULL);
	tmpdir = th_mkdtemp();
	return info && tmpdir ? 0 : -1;
}

static int group_teardown(void **state)
{
	th_stop(&fake);
	json_decref(info);
	th_rm_rf(tmpdir);
	free(tmpdir);
	return 0;
}

static const char *info_str(const char *k)
{
	return json_get_str(info, k);
}

static struct content_registry_client *client_with(const char *user, unsigned max_tries)
{
	struct content_registry_options o = {
	        .no_docker_config = true,
	        .user = user,
	        .retry_base_ms = 5,
	        .max_tries = max_tries,
	};
	struct content_registry_client *c = NULL;
	assert_int_equal(content_registry_client_new(&o, &c, NULL), 0);
	return c;
}

static struct content_ref *ref_for(const char *repo, const char *tag)
{
	char buf[256];
	struct content_ref *ref = NULL;
	snprintf(buf, sizeof(buf), "127.0.0.1:%d/%s%s", main_port, repo, tag);
	assert_int_equal(content_ref_parse(buf, &ref, NULL), 0);
	return ref;
}

static size_t stats_write(char *p, size_t s, size_t n, void *u)
{
	struct {
		char buf[1024];
		size_t len;
	} *m = u;
	size_t k = MIN(s * n, sizeof(m->buf) - 1 - m->len);
	memcpy(m->buf + m->len, p, k);
	m->len += k;
	m->buf[m->len] = '\0';
	return s * n;
}

static int64_t stat_get(const char *key)
{
	struct {
		char buf[1024];
		size_t len;
	} m = {.len = 0};
	char url[128];
	CURL *c = curl_easy_init();
	json_t *j;
	int64_t v;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/stats", main_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stats_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	j = json_loads(m.buf, 0, NULL);
	assert_non_null(j);
	v = json_get_int(j, key, -1);
	json_decref(j);
	return v;
}

struct buf {
	uint8_t *p;
	size_t len;
};

static int buf_write(const void *data, size_t len, void *u)
{
	struct buf *b = u;
	uint8_t *n = realloc(b->p, b->len + len);
	if (!n)
		return -ENOMEM;
	memcpy(n + b->len, data, len);
	b->p = n;
	b->len += len;
	return 0;
}

static void layer_desc(struct content_image_descriptor *d)
{
	*d = (struct content_image_descriptor){.size = json_get_int(info, "layer_size", 0)};
	assert_int_equal(strata_digest_parse(info_str("layer"), &d->digest, NULL), 0);
}

/* errp, not the error: arguments are evaluated in no fixed order */
static void expect_error(int r, int code, struct strata_error **errp, const char *part)
{
	struct strata_error *err = *errp;

	if (r != code || !err || !strstr(strata_error_message(err), part))
		print_error("got %d (%s), wanted %d with \"%s\"\n", r,
		            err ? strata_error_message(err) : "no message", code, part);
	assert_int_equal(r, code);
	assert_non_null(strstr(strata_error_message(err), part));
}

/* resolve, fetch + parse manifest, config, blob; by tag, digest, index */
static void test_plain_pull(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("plain/img", ":v1");
	_cleanup_(content_image_manifest_freep) struct content_image_manifest *m = NULL;
	_cleanup_(content_image_config_freep) struct content_image_config *cfg = NULL;
	_cleanup_free_ char *mbuf = NULL;
	struct content_image_descriptor d = {0};
	char ds[STRATA_DIGEST_STRING_MAX];
	size_t mlen;
	struct buf blob = {0};

	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	assert_string_equal(d.media_type, CONTENT_MEDIA_TYPE_OCI_MANIFEST);
	assert_string_equal(strata_digest_format(&d.digest, ds), info_str("manifest"));
	assert_int_equal(d.size, json_get_int(info, "manifest_size", 0));

	assert_int_equal(content_registry_fetch_manifest(c, ref, &d, &mbuf, &mlen, NULL), 0);
	assert_int_equal(mlen, d.size);
	assert_int_equal(content_image_manifest_parse(mbuf, mlen, d.media_type, &m, NULL), 0);
	assert_int_equal(m->n_layers, 1);
	assert_string_equal(content_image_descriptor_annotation(&m->layers[0], "org.example.note"),
	                    "hello");
	assert_int_equal(content_image_media_kind(m->layers[0].media_type), CONTENT_MEDIA_LAYER);

	/* config through the blob API, verified */
	assert_int_equal(content_registry_fetch_blob(c, ref, &m->config, 0,
	                                             CONTENT_REGISTRY_FETCH_VERIFY, buf_write,
	                                             &blob, NULL),
	                 0);
	assert_int_equal(content_image_config_parse(blob.p, blob.len, &cfg, NULL), 0);
	assert_string_equal(cfg->platform.os, "linux");
	assert_int_equal(cfg->n_diff_ids, 1);
	free(blob.p);
	blob = (struct buf){0};

	assert_int_equal(content_registry_fetch_blob(c, ref, &m->layers[0], 0,
	                                             CONTENT_REGISTRY_FETCH_VERIFY, buf_write,
	                                             &blob, NULL),
	                 0);
	assert_int_equal(blob.len, m->layers[0].size);

	/* resume from an offset: the tail, byte for byte */
	struct buf tail = {0};
	assert_int_equal(
	        content_registry_fetch_blob(c, ref, &m->layers[0], 1234, 0, buf_write, &tail, NULL),
	        0);
	assert_int_equal(tail.len, blob.len - 1234);
	assert_memory_equal(tail.p, blob.p + 1234, tail.len);
	free(tail.p);

	/* ranges */
	uint8_t rb[5000];
	assert_int_equal(
	        content_registry_read_range(c, ref, &m->layers[0].digest, 100, 5000, rb, NULL),
	        5000);
	assert_memory_equal(rb, blob.p + 100, 5000);
	assert_int_equal(content_registry_read_range(c, ref, &m->layers[0].digest, blob.len - 10,
	                                             5000, rb, NULL),
	                 10);
	assert_memory_equal(rb, blob.p + blob.len - 10, 10);
	free(blob.p);

	/* by digest */
	_cleanup_(content_ref_freep) struct content_ref *byd = NULL;
	_cleanup_free_ char *s = NULL;
	struct content_image_descriptor d2 = {0};
	assert_true(asprintf(&s, "127.0.0.1:%d/plain/img@%s", main_port, info_str("manifest")) > 0);
	assert_int_equal(content_ref_parse(s, &byd, NULL), 0);
	assert_int_equal(content_registry_resolve(c, byd, &d2, NULL), 0);
	assert_true(strata_digest_equal(&d.digest, &d2.digest));
	content_image_descriptor_done(&d2);
	content_image_descriptor_done(&d);
}

static void test_index_platforms(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("plain/img", ":multi");
	_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *buf = NULL;
	struct content_image_descriptor d = {0};
	const struct content_image_descriptor *sel;
	struct content_image_platform p = {0};
	size_t len;

	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	assert_int_equal(content_image_media_kind(d.media_type), CONTENT_MEDIA_INDEX);
	assert_int_equal(content_registry_fetch_manifest(c, ref, &d, &buf, &len, NULL), 0);
	assert_int_equal(content_image_index_parse(buf, len, d.media_type, &idx, NULL), 0);
	assert_int_equal(idx->n_manifests, 2);

	assert_int_equal(content_image_platform_parse("linux/aarch64", &p, NULL), 0);
	assert_int_equal(content_image_index_select(idx, &p, &sel, NULL), 0);
	assert_ptr_equal(sel, &idx->manifests[1]);
	content_image_platform_done(&p);

	assert_int_equal(content_image_platform_parse("linux/s390x", &p, NULL), 0);
	expect_error(content_image_index_select(idx, &p, &sel, &err), -ENOENT, &err,
	             "available: linux/amd64, linux/arm64/v8");
	content_image_platform_done(&p);
	content_image_descriptor_done(&d);
}

static void test_not_found(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("plain/img", ":nope");
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_image_descriptor d = {0};

	expect_error(content_registry_resolve(c, ref, &d, &err), -ENOENT, &err, "not found");
	assert_non_null(strstr(strata_error_message(err), "plain/img"));
}

static void test_bearer_anonymous(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("bearer/img", ":v1");
	struct content_image_descriptor d = {0}, l;
	_cleanup_free_ char *buf = NULL;
	size_t len;
	struct buf blob = {0};
	int64_t before = stat_get("token_requests");

	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	assert_int_equal(content_registry_fetch_manifest(c, ref, &d, &buf, &len, NULL), 0);
	layer_desc(&l);
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &blob, NULL),
	                 0);
	free(blob.p);
	/* one token for the whole pull: cached per host and scope */
	assert_int_equal(stat_get("token_requests") - before, 1);
	content_image_descriptor_done(&d);
}

static void test_bearer_credentials(void **state)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("bearerauth/img", ":v1");
	struct content_image_descriptor d = {0};

	{
		_cleanup_(content_registry_client_freep) struct content_registry_client *c =
		        client_with(NULL, 0);
		_cleanup_error_ struct strata_error *err = NULL;
		expect_error(content_registry_resolve(c, ref, &d, &err), -EACCES, &err,
		             "refused access");
		assert_non_null(strstr(strata_error_message(err), "bearerauth/img"));
		assert_non_null(strstr(strata_error_message(err), "no credentials"));
	}
	{
		_cleanup_(content_registry_client_freep) struct content_registry_client *c =
		        client_with("alice:wrongpass", 0);
		_cleanup_error_ struct strata_error *err = NULL;
		expect_error(content_registry_resolve(c, ref, &d, &err), -EACCES, &err, "--user");
		assert_null(strstr(strata_error_message(err), "wrongpass"));
	}
	{
		_cleanup_(content_registry_client_freep) struct content_registry_client *c =
		        client_with("alice:secret", 0);
		assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
		content_image_descriptor_done(&d);
	}
}

static void test_basic_docker_config(void **state)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("basic/img", ":v1");
	struct content_image_descriptor d = {0};
	char key[64], json[256];

	{
		_cleanup_(content_registry_client_freep) struct content_registry_client *c =
		        client_with(NULL, 0);
		_cleanup_error_ struct strata_error *err = NULL;
		expect_error(content_registry_resolve(c, ref, &d, &err), -EACCES, &err,
		             "refused access");
	}
	snprintf(key, sizeof(key), "127.0.0.1:%d", main_port);
	/* alice:secret */
	snprintf(json, sizeof(json), "{\"auths\":{\"http://%s\":{\"auth\":\"YWxpY2U6c2VjcmV0\"}}}",
	         key);
	assert_int_equal(th_write_file(tmpdir, "docker/config.json", json), 0);
	{
		_cleanup_free_ char *dir = path_join(tmpdir, "docker");
		struct content_registry_options o = {.docker_config_dir = dir, .retry_base_ms = 5};
		_cleanup_(content_registry_client_freep) struct content_registry_client *c = NULL;
		_cleanup_free_ char *buf = NULL;
		size_t len;
		assert_int_equal(content_registry_client_new(&o, &c, NULL), 0);
		assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
		assert_int_equal(content_registry_fetch_manifest(c, ref, &d, &buf, &len, NULL), 0);
		content_image_descriptor_done(&d);
	}
}

static void test_lying_registry(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("liar/img", ":v1");
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_image_descriptor d = {0};
	char *buf = NULL;
	size_t len;

	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	d.size = 0; /* let the digest, not the size, catch it */
	expect_error(content_registry_fetch_manifest(c, ref, &d, &buf, &len, &err), -EBADMSG, &err,
	             "returned content with digest sha256:");
	assert_non_null(strstr(strata_error_message(err), info_str("manifest")));
	assert_null(buf);
	content_image_descriptor_done(&d);
}

static void test_no_range_support(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("norange/img", ":v1");
	struct content_image_descriptor l;
	uint8_t rb[100];
	struct buf full = {0}, tail = {0};
	int64_t before;

	layer_desc(&l);
	{
		_cleanup_error_ struct strata_error *err = NULL;
		expect_error(
		        content_registry_read_range(c, ref, &l.digest, 1000, sizeof(rb), rb, &err),
		        -EOPNOTSUPP, &err, "does not support Range");
	}
	/* remembered: no second request */
	before = stat_get("blob_requests");
	{
		_cleanup_error_ struct strata_error *err = NULL;
		expect_error(
		        content_registry_read_range(c, ref, &l.digest, 1000, sizeof(rb), rb, &err),
		        -EOPNOTSUPP, &err, "does not support Range");
	}
	assert_int_equal(stat_get("blob_requests"), before);

	/* a resumed full fetch still works: the head of the answer is skipped */
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &full, NULL),
	                 0);
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 1000, 0, buf_write, &tail, NULL),
	                 0);
	assert_int_equal(tail.len, full.len - 1000);
	assert_memory_equal(tail.p, full.p + 1000, tail.len);
	free(full.p);
	free(tail.p);
}

static void test_retry(void **state)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("flaky/img", ":v1");
	struct content_image_descriptor d = {0}, l;
	struct buf blob = {0};

	{
		/* two tries are not enough for two 503s */
		_cleanup_(content_registry_client_freep) struct content_registry_client *c =
		        client_with(NULL, 2);
		_cleanup_error_ struct strata_error *err = NULL;
		_cleanup_(content_ref_freep) struct content_ref *r2 =
		        ref_for("flaky/img", ":multi");
		expect_error(content_registry_resolve(c, r2, &d, &err), -EAGAIN, &err, "HTTP 503");
	}
	{
		_cleanup_(content_registry_client_freep) struct content_registry_client *c =
		        client_with(NULL, 0);
		assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
		layer_desc(&l);
		assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0,
		                                             CONTENT_REGISTRY_FETCH_VERIFY,
		                                             buf_write, &blob, NULL),
		                 0);
		free(blob.p);
		content_image_descriptor_done(&d);
	}
}

/* Routes: a client without credentials sends one repository's requests
 * through another client that has them (strata pull --user for the lazy
 * layers of its image); other repositories are untouched; the route holds
 * its own reference; removing it restores the refusal. */
static void test_route(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("basic/img", ":v1");
	_cleanup_(content_ref_freep) struct content_ref *plain = ref_for("plain/img", ":v1");
	_cleanup_free_ char *name = content_ref_name(ref);
	struct content_registry_client *via = client_with("alice:secret", 0);
	struct content_image_descriptor d = {0}, l;
	uint8_t rb[64];

	layer_desc(&l);
	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), -EACCES);
	assert_false(content_registry_client_routed(c, ref));
	assert_int_equal(content_registry_client_set_route(c, name, c), -EINVAL);
	assert_int_equal(content_registry_client_set_route(c, name, via), 0);
	/* the route keeps via alive */
	content_registry_client_free(via);
	assert_true(content_registry_client_routed(c, ref));
	assert_false(content_registry_client_routed(c, plain));
	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	content_image_descriptor_done(&d);
	assert_int_equal(content_registry_read_range(c, ref, &l.digest, 10, sizeof(rb), rb, NULL),
	                 sizeof(rb));
	assert_int_equal(content_registry_resolve(c, plain, &d, NULL), 0);
	content_image_descriptor_done(&d);
	/* replaced by a client with wrong credentials, then removed */
	via = client_with("alice:wrong", 0);
	assert_int_equal(content_registry_client_set_route(c, name, via), 0);
	content_registry_client_free(via);
	assert_int_equal(content_registry_read_range(c, ref, &l.digest, 10, sizeof(rb), rb, NULL),
	                 -EACCES);
	assert_int_equal(content_registry_client_set_route(c, name, NULL), 0);
	assert_false(content_registry_client_routed(c, ref));
	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), -EACCES);
}

/* Several ranges, one request: each range handed over once with its
 * bytes, whatever the registry does with the request. */
struct ranges_got {
	const uint8_t *blob;
	const struct content_registry_range *ranges;
	unsigned calls[8];
	int fail_at; /* range index whose callback fails, -1 none */
};

static int ranges_check(size_t i, const uint8_t *data, size_t len, void *userdata)
{
	struct ranges_got *g = userdata;

	assert_true(i < 8);
	assert_int_equal(len, g->ranges[i].len);
	assert_memory_equal(data, g->blob + g->ranges[i].offset, len);
	g->calls[i]++;
	return (int)i == g->fail_at ? -ENOSPC : 0;
}

static void read_ranges_from(const char *repo, unsigned want_requests, uint64_t want_bytes)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for(repo, ":v1");
	static const struct content_registry_range r[] = {
	        {0, 1}, {10, 100}, {5000, 4096}, {150000, 70000}, {299990, 10},
	};
	struct content_image_descriptor l;
	struct buf blob = {0};
	struct ranges_got g = {.ranges = r, .fail_at = -1};
	uint64_t bytes;
	unsigned requests;
	int64_t before;

	layer_desc(&l);
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &blob, NULL),
	                 0);
	g.blob = (const uint8_t *)blob.p;
	before = stat_get("blob_requests");
	assert_int_equal(content_registry_read_ranges(c, ref, &l.digest, r, ELEMENTSOF(r),
	                                              ranges_check, &g, &bytes, &requests, NULL),
	                 0);
	for (size_t i = 0; i < ELEMENTSOF(r); i++)
		assert_int_equal(g.calls[i], 1);
	assert_int_equal(requests, want_requests);
	assert_int_equal(stat_get("blob_requests") - before, want_requests);
	assert_int_equal(bytes, want_bytes);
	/* a host that answered with one part is remembered: one per range */
	if (want_requests > 1) {
		memset(g.calls, 0, sizeof(g.calls));
		before = stat_get("multirange_requests");
		assert_int_equal(content_registry_read_ranges(c, ref, &l.digest, r, ELEMENTSOF(r),
		                                              ranges_check, &g, NULL, &requests,
		                                              NULL),
		                 0);
		assert_int_equal(requests, ELEMENTSOF(r));
		assert_int_equal(stat_get("multirange_requests"), before);
	}
	/* the callback's error stops it, and comes back */
	memset(g.calls, 0, sizeof(g.calls));
	g.fail_at = 2;
	assert_int_equal(content_registry_read_ranges(c, ref, &l.digest, r, ELEMENTSOF(r),
	                                              ranges_check, &g, NULL, NULL, NULL),
	                 -ENOSPC);
	assert_int_equal(g.calls[2], 1);
	free(blob.p);
}

static void test_read_ranges(void **state)
{
	const uint64_t sum = 1 + 100 + 4096 + 70000 + 10;

	read_ranges_from("plain/img", 1, sum);
	read_ranges_from("shuffle/img", 1, sum);
	/* one part from the first byte of the first range to the last of the
	 * last: the gaps are counted, not handed over */
	read_ranges_from("merge/img", 1, 300000);
	/* the first range only, then one request per range left */
	read_ranges_from("onepart/img", 5, sum);
}

static void test_read_ranges_refused(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("norange/img", ":v1");
	_cleanup_error_ struct strata_error *err = NULL;
	static const struct content_registry_range r[] = {{10, 10}, {100, 10}};
	static const struct content_registry_range bad[] = {{100, 10}, {10, 10}};
	struct content_image_descriptor l;
	struct ranges_got g = {.ranges = r, .fail_at = -1};

	layer_desc(&l);
	/* the whole blob for several ranges, then for one: no lazy reads */
	assert_int_equal(content_registry_read_ranges(c, ref, &l.digest, r, ELEMENTSOF(r),
	                                              ranges_check, &g, NULL, NULL, &err),
	                 -EOPNOTSUPP);
	assert_int_equal(g.calls[0] + g.calls[1], 0);
	assert_int_equal(content_registry_read_ranges(c, ref, &l.digest, bad, ELEMENTSOF(bad),
	                                              ranges_check, &g, NULL, NULL, NULL),
	                 -EINVAL);
}

static void test_redirect(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("redirect/img", ":v1");
	struct content_image_descriptor l;
	struct buf blob = {0};
	uint8_t rb[64];
	int64_t before = stat_get("redirect_requests");

	layer_desc(&l);
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &blob, NULL),
	                 0);
	assert_int_equal(content_registry_read_range(c, ref, &l.digest, 10, sizeof(rb), rb, NULL),
	                 sizeof(rb));
	assert_memory_equal(rb, blob.p + 10, sizeof(rb));
	free(blob.p);
	assert_int_equal(stat_get("redirect_requests") - before, 2);
	assert_int_equal(stat_get("redirect_with_auth"), 0);
}

static void test_truncated_resume(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("truncate/img", ":v1");
	struct content_image_descriptor l;
	struct buf blob = {0};

	layer_desc(&l);
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &blob, NULL),
	                 0);
	assert_int_equal(blob.len, l.size);
	free(blob.p);
}

static void test_head_refused(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("nohead/img", ":v1");
	struct content_image_descriptor d = {0};
	char ds[STRATA_DIGEST_STRING_MAX];

	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	assert_string_equal(strata_digest_format(&d.digest, ds), info_str("manifest"));
	assert_string_equal(d.media_type, CONTENT_MEDIA_TYPE_OCI_MANIFEST);
	content_image_descriptor_done(&d);
}

static void test_big_manifest(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("big/img", ":v1");
	struct content_image_descriptor d = {0};
	char *buf = NULL;
	size_t len;

	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	assert_true(d.size > (int64_t)CONTENT_MANIFEST_SIZE_MAX);
	{
		_cleanup_error_ struct strata_error *err = NULL;
		expect_error(content_registry_fetch_manifest(c, ref, &d, &buf, &len, &err),
		             -EMSGSIZE, &err, "MiB");
	}
	{
		/* a descriptor that understates the size is cut off while streaming */
		_cleanup_error_ struct strata_error *err = NULL;
		d.size = 0;
		expect_error(content_registry_fetch_manifest(c, ref, &d, &buf, &len, &err),
		             -EMSGSIZE, &err, "larger than");
	}
	content_image_descriptor_done(&d);
}

static void test_mirror_fallback(void **state)
{
	_cleanup_free_ char *hosts_dir = path_join(tmpdir, "certs.d");
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_(content_registry_client_freep) struct content_registry_client *c = NULL;
	struct content_registry_options o = {.hosts_dir = hosts_dir,
	                                     .no_docker_config = true,
	                                     .retry_base_ms = 5,
	                                     .max_tries = 2};
	struct content_image_descriptor d = {0}, l;
	struct buf blob = {0};
	char toml[512];
	int dead = th_free_port();

	/* a dead mirror first, then the fake; the origin does not exist */
	snprintf(toml, sizeof(toml),
	         "server = \"http://127.0.0.1:%d\"\n"
	         "[host.\"http://127.0.0.1:%d\"]\n"
	         "  capabilities = [\"pull\", \"resolve\"]\n"
	         "[host.\"http://127.0.0.1:%d\"]\n"
	         "  capabilities = [\"pull\", \"resolve\"]\n",
	         dead, dead, main_port);
	assert_int_equal(th_write_file(hosts_dir, "origin.example/hosts.toml", toml), 0);
	assert_int_equal(content_ref_parse("origin.example/plain/img:v1", &ref, NULL), 0);
	assert_int_equal(content_registry_client_new(&o, &c, NULL), 0);
	assert_int_equal(content_registry_resolve(c, ref, &d, NULL), 0);
	layer_desc(&l);
	assert_int_equal(content_registry_fetch_blob(c, ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &blob, NULL),
	                 0);
	free(blob.p);
	content_image_descriptor_done(&d);

	/* pull-only mirrors are not asked to resolve */
	snprintf(toml, sizeof(toml),
	         "server = \"http://127.0.0.1:%d\"\n"
	         "[host.\"http://127.0.0.1:%d\"]\n"
	         "  capabilities = [\"pull\"]\n",
	         dead, main_port);
	assert_int_equal(th_write_file(hosts_dir, "pullonly.example/hosts.toml", toml), 0);
	_cleanup_(content_ref_freep) struct content_ref *r2 = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	assert_int_equal(content_ref_parse("pullonly.example/plain/img:v1", &r2, NULL), 0);
	assert_true(content_registry_resolve(c, r2, &d, &err) < 0);
	assert_non_null(strstr(strata_error_message(err), "pullonly.example"));
	/* ...but serve blobs */
	blob = (struct buf){0};
	assert_int_equal(content_registry_fetch_blob(c, r2, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY,
	                                             buf_write, &blob, NULL),
	                 0);
	free(blob.p);
}

struct thread_arg {
	struct content_registry_client *c;
	struct content_ref *ref;
	int result;
};

static int discard(const void *b, size_t n, void *u)
{
	return 0;
}

static void *fetch_thread(void *p)
{
	struct thread_arg *a = p;
	struct content_image_descriptor l;
	uint8_t rb[4096];

	a->result = 0;
	for (int i = 0; i < 5 && a->result == 0; i++) {
		layer_desc(&l);
		a->result = content_registry_fetch_blob(
		        a->c, a->ref, &l, 0, CONTENT_REGISTRY_FETCH_VERIFY, discard, NULL, NULL);
		if (a->result == 0 &&
		    content_registry_read_range(a->c, a->ref, &l.digest, (uint64_t)i * 1000,
		                                sizeof(rb), rb, NULL) != sizeof(rb))
			a->result = -EIO;
	}
	return NULL;
}

static void test_threads(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c =
	        client_with(NULL, 0);
	_cleanup_(content_ref_freep) struct content_ref *ref = ref_for("bearer/img", ":v1");
	pthread_t t[8];
	struct thread_arg a[8];

	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		a[i] = (struct thread_arg){.c = c, .ref = ref, .result = -1};
		assert_int_equal(pthread_create(&t[i], NULL, fetch_thread, &a[i]), 0);
	}
	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].result, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_plain_pull),
	        cmocka_unit_test(test_index_platforms),
	        cmocka_unit_test(test_not_found),
	        cmocka_unit_test(test_bearer_anonymous),
	        cmocka_unit_test(test_bearer_credentials),
	        cmocka_unit_test(test_basic_docker_config),
	        cmocka_unit_test(test_route),
	        cmocka_unit_test(test_lying_registry),
	        cmocka_unit_test(test_no_range_support),
	        cmocka_unit_test(test_retry),
	        cmocka_unit_test(test_redirect),
	        cmocka_unit_test(test_truncated_resume),
	        cmocka_unit_test(test_head_refused),
	        cmocka_unit_test(test_big_manifest),
	        cmocka_unit_test(test_mirror_fallback),
	        cmocka_unit_test(test_threads),
	        cmocka_unit_test(test_read_ranges),
	        cmocka_unit_test(test_read_ranges_refused),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
