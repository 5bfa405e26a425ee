/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client against Debian's real docker-registry on 127.0.0.1,
 * with an image built by tests/integration/lib/mkimage.sh and pushed by
 * skopeo: resolve, manifest, config, a layer in full, resumed and by range,
 * all checked against the OCI layout the image came from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "registry.h"
#include "helpers.h"

static struct th_proc registry = {.pid = 0, .out_fd = -1};
static char *tmp;
static int port;
static char manifest_digest[STRATA_DIGEST_STRING_MAX];

static int fail_setup(const char *why)
{
	fprintf(stderr, "# setup: %s\n", why);
	return -1;
}

static int group_setup(void **state)
{
	_cleanup_free_ char *cfg = NULL, *cfgpath = NULL, *rootfs = NULL, *layout = NULL,
	                    *dest = NULL, *index = NULL, *oci = NULL;
	_cleanup_json_ json_t *j = NULL;
	char big[256 * 1024];
	uint8_t h[32] = {0};
	size_t len;

	tmp = th_mkdtemp();
	port = th_free_port();
	if (!tmp || port <= 0)
		return fail_setup("temp dir or port");
	if (asprintf(&cfg,
	             "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
	             "storage:\n  filesystem:\n    rootdirectory: %s/registry-data\n"
	             "http:\n  addr: 127.0.0.1:%d\n",
	             tmp, port) < 0 ||
	    th_write_file(tmp, "config.yml", cfg) < 0)
		return fail_setup("write config.yml");
	cfgpath = path_join(tmp, "config.yml");
	char *reg_argv[] = {(char *)"docker-registry", (char *)"serve", cfgpath, NULL};
	if (th_spawn(reg_argv, false, &registry) < 0)
		return fail_setup("start docker-registry");
	if (!th_wait_port(port, 20000))
		return fail_setup("docker-registry did not listen");

	/* a rootfs with a small file and 256 KiB that does not compress */
	rootfs = path_join(tmp, "rootfs");
	if (th_write_file(rootfs, "etc/motd", "hello from strata\n") < 0)
		return fail_setup("write rootfs");
	for (size_t i = 0; i < sizeof(big); i += 32) {
		(void)strata_sha256(h, sizeof(h), (struct strata_digest *)h);
		memcpy(big + i, h, MIN((size_t)32, sizeof(big) - i));
	}
	for (size_t i = 0; i < sizeof(big); i++)
		if (big[i] == 0)
			big[i] = 1; /* th_write_file takes a C string */
	big[sizeof(big) - 1] = '\0';
	if (th_write_file(rootfs, "data/big", big) < 0)
		return fail_setup("write rootfs");

	layout = path_join(tmp, "oci");
	char *mk_argv[] = {
	        (char *)"bash", (char *)REGISTRY_TEST_MKIMAGE, layout, (char *)"v1", rootfs, NULL};
	if (th_run(mk_argv) != 0)
		return fail_setup("mkimage.sh failed");
	if (asprintf(&oci, "oci:%s:v1", layout) < 0 ||
	    asprintf(&dest, "docker://127.0.0.1:%d/x:y", port) < 0)
		return -1;
	char *sk_argv[] = {(char *)"skopeo",
	                   (char *)"copy",
	                   (char *)"--quiet",
	                   (char *)"--dest-tls-verify=false",
	                   oci,
	                   dest,
	                   NULL};
	if (th_run(sk_argv) != 0)
		return fail_setup("skopeo copy failed");

	_cleanup_free_ char *ipath = path_join(layout, "index.json");
	if (path_read_file_at(AT_FDCWD, ipath, 1 << 20, &index, &len) < 0)
		return fail_setup("read index.json");
	j = json_loadb(index, len, 0, NULL);
	const char *d = json_get_str(json_array_get(json_get_array(j, "manifests"), 0), "digest");
	if (!d)
		return fail_setup("index.json without a manifest");
	snprintf(manifest_digest, sizeof(manifest_digest), "%s", d);
	return 0;
}

static int group_teardown(void **state)
{
	th_stop(&registry);
	th_rm_rf(tmp);
	free(tmp);
	return 0;
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

static void read_local_blob(const struct strata_digest *d, char **ret, size_t *ret_len)
{
	char hex[STRATA_SHA256_HEX_LEN + 1];
	_cleanup_free_ char *p = NULL;

	assert_true(asprintf(&p, "%s/oci/blobs/sha256/%s", tmp, strata_digest_hex(d, hex)) > 0);
	assert_int_equal(path_read_file_at(AT_FDCWD, p, 64u << 20, ret, ret_len), 0);
}

struct real_ranges {
	const uint8_t *blob;
	const struct content_registry_range *ranges;
	size_t calls;
};

static int real_range_check(size_t i, const uint8_t *data, size_t len, void *userdata)
{
	struct real_ranges *g = userdata;

	assert_int_equal(len, g->ranges[i].len);
	assert_memory_equal(data, g->blob + g->ranges[i].offset, len);
	g->calls++;
	return 0;
}

static void test_pull(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c = NULL;
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_(content_image_manifest_freep) struct content_image_manifest *m = NULL;
	_cleanup_(content_image_config_freep) struct content_image_config *cfg = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *mbuf = NULL, *local = NULL, *refs = NULL;
	struct content_registry_options o = {.no_docker_config = true};
	struct content_image_descriptor d = {0};
	char ds[STRATA_DIGEST_STRING_MAX];
	struct buf cb = {0}, lb = {0}, tail = {0};
	size_t mlen, llen;
	uint8_t rb[4096];
	int r;

	assert_int_equal(content_registry_client_new(&o, &c, NULL), 0);
	assert_true(asprintf(&refs, "127.0.0.1:%d/x:y", port) > 0);
	assert_int_equal(content_ref_parse(refs, &ref, NULL), 0);

	r = content_registry_resolve(c, ref, &d, &err);
	if (r < 0)
		print_error("%s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	assert_string_equal(d.media_type, CONTENT_MEDIA_TYPE_OCI_MANIFEST);
	assert_string_equal(strata_digest_format(&d.digest, ds), manifest_digest);

	assert_int_equal(content_registry_fetch_manifest(c, ref, &d, &mbuf, &mlen, NULL), 0);
	assert_int_equal(content_image_manifest_parse(mbuf, mlen, d.media_type, &m, NULL), 0);
	assert_int_equal(m->n_layers, 1);

	assert_int_equal(content_registry_fetch_blob(c, ref, &m->config, 0,
	                                             CONTENT_REGISTRY_FETCH_VERIFY, buf_write, &cb,
	                                             NULL),
	                 0);
	assert_int_equal(content_image_config_parse(cb.p, cb.len, &cfg, NULL), 0);
	assert_string_equal(cfg->platform.os, "linux");
	assert_int_equal(cfg->n_diff_ids, 1);
	free(cb.p);

	read_local_blob(&m->layers[0].digest, &local, &llen);
	assert_int_equal(llen, m->layers[0].size);
	assert_true(llen > 200000);
	assert_int_equal(content_registry_fetch_blob(c, ref, &m->layers[0], 0,
	                                             CONTENT_REGISTRY_FETCH_VERIFY, buf_write, &lb,
	                                             NULL),
	                 0);
	assert_int_equal(lb.len, llen);
	assert_memory_equal(lb.p, local, llen);
	free(lb.p);

	assert_int_equal(content_registry_fetch_blob(c, ref, &m->layers[0], 100000, 0, buf_write,
	                                             &tail, NULL),
	                 0);
	assert_int_equal(tail.len, llen - 100000);
	assert_memory_equal(tail.p, local + 100000, tail.len);
	free(tail.p);

	assert_int_equal(content_registry_read_range(c, ref, &m->layers[0].digest, 12345,
	                                             sizeof(rb), rb, NULL),
	                 sizeof(rb));
	assert_memory_equal(rb, local + 12345, sizeof(rb));
	/* the last bytes: a short read */
	assert_int_equal(content_registry_read_range(c, ref, &m->layers[0].digest, llen - 51,
	                                             sizeof(rb), rb, NULL),
	                 51);
	assert_memory_equal(rb, local + llen - 51, 51);

	/* several ranges in one request: docker-registry answers multipart */
	{
		const struct content_registry_range rs[] = {
		        {0, 10}, {1000, 2000}, {50000, 1}, {llen - 100, 100}};
		struct real_ranges g = {.blob = (const uint8_t *)local, .ranges = rs};
		uint64_t bytes;
		unsigned requests;

		assert_int_equal(content_registry_read_ranges(c, ref, &m->layers[0].digest, rs,
		                                              ELEMENTSOF(rs), real_range_check, &g,
		                                              &bytes, &requests, NULL),
		                 0);
		assert_int_equal(g.calls, ELEMENTSOF(rs));
		assert_int_equal(requests, 1);
		assert_int_equal(bytes, 10 + 2000 + 1 + 100);
	}

	content_image_descriptor_done(&d);
}

static void test_unknown(void **state)
{
	_cleanup_(content_registry_client_freep) struct content_registry_client *c = NULL;
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *refs = NULL;
	struct content_registry_options o = {.no_docker_config = true};
	struct content_image_descriptor d = {0};

	assert_int_equal(content_registry_client_new(&o, &c, NULL), 0);
	assert_true(asprintf(&refs, "127.0.0.1:%d/x:nope", port) > 0);
	assert_int_equal(content_ref_parse(refs, &ref, NULL), 0);
	assert_int_equal(content_registry_resolve(c, ref, &d, &err), -ENOENT);
	assert_non_null(strstr(strata_error_message(err), "not found"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pull),
	        cmocka_unit_test(test_unknown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
