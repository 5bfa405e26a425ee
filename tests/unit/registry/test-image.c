/* SPDX-License-Identifier: Apache-2.0 */
/* Image formats and platforms: parsing, media types, matching, selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "registry.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static const char manifest[] =
        "{\"schemaVersion\":2,"
        "\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
        "\"digest\":\"" D1 "\",\"size\":100},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"digest\":\"" D2 "\",\"size\":2000,\"urls\":[\"https://x/y\"],"
        "\"annotations\":{\"containerd.io/snapshot/stargz/toc.digest\":\"" D1 "\"}}],"
        "\"annotations\":{\"a\":\"b\"}}";

static void test_manifest(void **state)
{
	_cleanup_(content_image_manifest_freep) struct content_image_manifest *m = NULL;
	struct content_image_descriptor copy;

	assert_int_equal(content_image_manifest_parse(manifest, strlen(manifest),
	                                              CONTENT_MEDIA_TYPE_DOCKER_MANIFEST, &m, NULL),
	                 0);
	assert_string_equal(m->media_type, CONTENT_MEDIA_TYPE_DOCKER_MANIFEST);
	assert_int_equal(m->config.size, 100);
	assert_int_equal(content_image_media_kind(m->config.media_type), CONTENT_MEDIA_CONFIG);
	assert_int_equal(m->n_layers, 1);
	assert_int_equal(m->layers[0].size, 2000);
	assert_int_equal(m->layers[0].n_urls, 1);
	assert_string_equal(content_image_descriptor_annotation(
	                            &m->layers[0], "containerd.io/snapshot/stargz/toc.digest"),
	                    D1);
	assert_null(content_image_descriptor_annotation(&m->layers[0], "nope"));
	assert_int_equal(m->n_annotations, 1);

	assert_int_equal(content_image_descriptor_copy(&m->layers[0], &copy), 0);
	assert_true(strata_digest_equal(&copy.digest, &m->layers[0].digest));
	assert_string_equal(copy.annotations[0].value, D1);
	content_image_descriptor_done(&copy);
}

static void test_bad_documents(void **state)
{
	struct {
		const char *doc, *mt;
		int code;
		const char *msg;
	} cases[] = {
	        {"{", NULL, -EINVAL, "line"},
	        {"[]", NULL, -EINVAL, "not a JSON object"},
	        {"{\"schemaVersion\":1}", NULL, -EOPNOTSUPP, "schemaVersion 1"},
	        {"{\"schemaVersion\":2,\"manifests\":[]}", NULL, -EINVAL, "it is an index"},
	        {"{\"schemaVersion\":2,\"layers\":[]}", NULL, -EINVAL, "config: not an object"},
	        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:12\","
	         "\"size\":1},\"layers\":[]}",
	         NULL, -EINVAL, "config"},
	        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\","
	         "\"size\":-1},\"layers\":[]}",
	         NULL, -EINVAL, "size"},
	        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\","
	         "\"size\":1}}",
	         NULL, -EINVAL, "\"layers\""},
	        {"{\"schemaVersion\":2,\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\"}",
	         CONTENT_MEDIA_TYPE_DOCKER_MANIFEST, -EINVAL, "announced"},
	        {"{\"schemaVersion\":2}",
	         "application/vnd.docker.distribution.manifest.v1+prettyjws", -EOPNOTSUPP,
	         "is not a manifest"},
	        {"{\"schemaVersion\":2}", CONTENT_MEDIA_TYPE_OCI_INDEX, -EINVAL,
	         "is not a manifest"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_(content_image_manifest_freep) struct content_image_manifest *m = NULL;
		_cleanup_error_ struct strata_error *err = NULL;
		int r = content_image_manifest_parse(cases[i].doc, strlen(cases[i].doc),
		                                     cases[i].mt, &m, &err);
		if (r != cases[i].code || !strstr(strata_error_message(err), cases[i].msg))
			print_error("case %zu: %d %s\n", i, r, strata_error_message(err));
		assert_int_equal(r, cases[i].code);
		assert_non_null(strstr(strata_error_message(err), cases[i].msg));
		assert_null(m);
	}
}

static const char index_doc[] =
        "{\"schemaVersion\":2,\"manifests\":["
        "{\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"386\"}},"
        "{\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":2,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":3,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}},"
        "{\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":4,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
        "{\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":5,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"" CONTENT_MEDIA_TYPE_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":6,"
        "\"platform\":{\"os\":\"windows\",\"architecture\":\"amd64\","
        "\"os.version\":\"10.0.17763.1\"}}]}";

static int64_t pick(const struct content_image_index *idx, const char *platform)
{
	struct content_image_platform p = {0};
	const struct content_image_descriptor *d;
	int r;

	assert_int_equal(content_image_platform_parse(platform, &p, NULL), 0);
	r = content_image_index_select(idx, &p, &d, NULL);
	content_image_platform_done(&p);
	return r < 0 ? r : d->size;
}

static void test_index_select(void **state)
{
	_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;

	assert_int_equal(content_image_index_parse(index_doc, strlen(index_doc), NULL, &idx, NULL),
	                 0);
	assert_string_equal(idx->media_type, CONTENT_MEDIA_TYPE_OCI_INDEX);
	assert_int_equal(idx->n_manifests, 6);
	assert_string_equal(idx->manifests[5].platform->os_version, "10.0.17763.1");

	assert_int_equal(pick(idx, "linux/amd64"), 2);
	assert_int_equal(pick(idx, "linux/x86_64"), 2);
	assert_int_equal(pick(idx, "linux/386"), 1);
	assert_int_equal(pick(idx, "linux/arm64"), 5);
	assert_int_equal(pick(idx, "linux/aarch64/v8"), 5);
	assert_int_equal(pick(idx, "linux/arm/v7"), 4);
	assert_int_equal(pick(idx, "linux/armhf"), 4);
	assert_int_equal(pick(idx, "linux/arm"), 4);
	assert_int_equal(pick(idx, "linux/arm/v6"), 3);
	assert_int_equal(pick(idx, "linux/armel"), 3);
	assert_int_equal(pick(idx, "windows/amd64"), 6);
	assert_int_equal(pick(idx, "linux/s390x"), -ENOENT);
	assert_int_equal(pick(idx, "linux/arm/v5"), -ENOENT);
}

static void test_platform_match(void **state)
{
	struct {
		const char *want, *have;
		int score;
	} cases[] = {
	        {"linux/amd64", "linux/amd64", 0},       {"linux/amd64", "linux/386", 1},
	        {"linux/amd64/v3", "linux/amd64/v2", 1}, {"linux/amd64/v3", "linux/amd64", 2},
	        {"linux/amd64/v3", "linux/386", 3},      {"linux/arm64", "linux/arm64/v8", 0},
	        {"linux/arm64/v8", "linux/arm64", 0},    {"linux/arm64", "linux/arm/v8", 1},
	        {"linux/arm64", "linux/arm/v7", 2},      {"linux/arm64", "linux/arm/v5", 4},
	        {"linux/arm/v7", "linux/arm/v6", 1},     {"linux/arm/v6", "linux/arm/v7", -1},
	        {"linux/amd64", "linux/arm64", -1},      {"linux/amd64", "windows/amd64", -1},
	        {"linux/386", "linux/amd64", -1},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct content_image_platform w = {0}, h = {0};
		assert_int_equal(content_image_platform_parse(cases[i].want, &w, NULL), 0);
		assert_int_equal(content_image_platform_parse(cases[i].have, &h, NULL), 0);
		int s = content_image_platform_match(&w, &h);
		if (s != cases[i].score)
			print_error("%s vs %s: %d\n", cases[i].want, cases[i].have, s);
		assert_int_equal(s, cases[i].score);
		content_image_platform_done(&w);
		content_image_platform_done(&h);
	}
}

static void test_platform_parse(void **state)
{
	struct {
		const char *in, *out;
	} ok[] = {
	        {"linux/amd64", "linux/amd64"},
	        {"Linux/X86_64", "linux/amd64"},
	        {"linux/aarch64", "linux/arm64"},
	        {"linux/arm64/v8", "linux/arm64/v8"},
	        {"linux/arm64/8", "linux/arm64/v8"},
	        {"linux/armhf", "linux/arm"},
	        {"linux/arm/7", "linux/arm/v7"},
	        {"linux/i386", "linux/386"},
	        {"arm64", "linux/arm64"},
	        {"macos/arm64", "darwin/arm64"},
	};
	const char *bad[] = {"", "linux/", "/amd64", "a/b/c/d", "linux/*", "foo", "linux amd64"};

	for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
		struct content_image_platform p = {0};
		_cleanup_free_ char *s = NULL;
		assert_int_equal(content_image_platform_parse(ok[i].in, &p, NULL), 0);
		s = content_image_platform_format(&p);
		if (!streq(s, ok[i].out))
			print_error("%s -> %s\n", ok[i].in, s);
		assert_string_equal(s, ok[i].out);
		content_image_platform_done(&p);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct content_image_platform p = {0};
		_cleanup_error_ struct strata_error *err = NULL;
		assert_int_equal(content_image_platform_parse(bad[i], &p, &err), -EINVAL);
		assert_non_null(err);
	}

	/* the host's platform is one we can parse and it matches itself */
	struct content_image_platform d = {0};
	assert_int_equal(content_image_platform_default(&d), 0);
	assert_string_equal(d.os, "linux");
	assert_int_equal(content_image_platform_match(&d, &d), 0);
	content_image_platform_done(&d);
}

static void test_config(void **state)
{
	static const char cfg[] =
	        "{\"architecture\":\"arm64\",\"variant\":\"v8\",\"os\":\"linux\","
	        "\"config\":{\"Env\":[\"A=1\"]},"
	        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]}}";
	_cleanup_(content_image_config_freep) struct content_image_config *c = NULL;
	_cleanup_error_ struct strata_error *err = NULL;

	assert_int_equal(content_image_config_parse(cfg, strlen(cfg), &c, NULL), 0);
	assert_string_equal(c->platform.architecture, "arm64");
	assert_string_equal(c->platform.variant, "v8");
	assert_int_equal(c->n_diff_ids, 2);
	assert_non_null(json_get_obj(c->json, "config"));
	content_image_config_free(TAKE_PTR(c));

	static const char no_rootfs[] = "{\"os\":\"linux\",\"architecture\":\"amd64\"}";
	assert_int_equal(content_image_config_parse(no_rootfs, strlen(no_rootfs), &c, &err),
	                 -EINVAL);
	assert_non_null(strstr(strata_error_message(err), "diff_ids"));
}

static void test_media_kinds(void **state)
{
	assert_int_equal(content_image_media_kind(CONTENT_MEDIA_TYPE_OCI_INDEX "; charset=utf-8"),
	                 CONTENT_MEDIA_INDEX);
	assert_int_equal(content_image_media_kind(CONTENT_MEDIA_TYPE_DOCKER_LIST),
	                 CONTENT_MEDIA_INDEX);
	assert_int_equal(content_image_media_kind("application/vnd.oci.image.layer.v1.tar+zstd"),
	                 CONTENT_MEDIA_LAYER);
	assert_int_equal(content_image_media_kind("application/vnd.oci.image.layer."),
	                 CONTENT_MEDIA_UNKNOWN);
	assert_int_equal(content_image_media_kind("application/json"), CONTENT_MEDIA_UNKNOWN);
	assert_int_equal(content_image_media_kind(NULL), CONTENT_MEDIA_UNKNOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_manifest),       cmocka_unit_test(test_bad_documents),
	        cmocka_unit_test(test_index_select),   cmocka_unit_test(test_platform_match),
	        cmocka_unit_test(test_platform_parse), cmocka_unit_test(test_config),
	        cmocka_unit_test(test_media_kinds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
