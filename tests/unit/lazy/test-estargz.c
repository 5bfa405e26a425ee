/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The eStargz reader (content/estargz.c) against layers written by an
 * independent producer (estargz-registry.py gen): footers, TOC unwrap and
 * verification, the compiled form, hostile and truncated input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cmocka.h>
#include <jansson.h>

#include "common.h"
#include "estargz.h"

static char tmpdir[] = "/tmp/strata-estargz-XXXXXX";
static json_t *summary;

static int setup(void **state)
{
	_cleanup_free_ char *cmd = NULL;
	char buf[8192];
	size_t n;
	FILE *f;

	if (!mkdtemp(tmpdir))
		return -1;
	if (asprintf(&cmd, "python3 %s/estargz-registry.py gen %s", SRCDIR, tmpdir) < 0)
		return -1;
	f = popen(cmd, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	if (pclose(f) != 0)
		return -1;
	summary = json_loads(buf, 0, NULL);
	return summary ? 0 : -1;
}

static int teardown(void **state)
{
	json_decref(summary);
	(void)path_rm_rf_at(AT_FDCWD, tmpdir);
	return 0;
}

static uint8_t *load(const char *name, const char *ext, size_t *ret_len)
{
	_cleanup_free_ char *p = NULL;
	char *buf = NULL;

	assert_true(asprintf(&p, "%s/%s.%s", tmpdir, name, ext) > 0);
	assert_int_equal(path_read_file_at(AT_FDCWD, p, 64 << 20, &buf, ret_len), 0);
	return (uint8_t *)buf;
}

static void toc_digest(const char *name, struct strata_digest *d)
{
	const char *s =
	        json_string_value(json_object_get(json_object_get(summary, name), "toc_digest"));
	assert_non_null(s);
	assert_int_equal(strata_digest_parse(s, d, NULL), 0);
}

/* Footer -> member -> JSON -> compiled TOC, as the remote path does. */
static int open_blob(const char *name, bool verify, struct content_estargz_toc **ret,
                     size_t *ret_footer, struct strata_error **err)
{
	_cleanup_free_ uint8_t *blob = NULL;
	_cleanup_free_ char *json = NULL;
	size_t len, fs, jl;
	uint64_t off;
	struct strata_digest d;
	int r;

	blob = load(name, "blob", &len);
	r = content_estargz_parse_footer(blob, len, &off, &fs);
	if (r < 0)
		return r;
	if (ret_footer)
		*ret_footer = fs;
	r = content_estargz_toc_unwrap(blob + off, len - fs - off, &json, &jl, err);
	if (r < 0)
		return r;
	if (verify)
		toc_digest(name, &d);
	return content_estargz_toc_parse(json, jl, verify ? &d : NULL, off, ret, err);
}

static uint32_t find(const struct content_estargz_toc *toc, const char *path)
{
	uint32_t cur = 0;
	const char *p = path;

	while (*p) {
		const char *e = strchrnul(p, '/');
		int64_t c = content_estargz_lookup(toc, cur, p, (size_t)(e - p));
		if (c < 0)
			return CONTENT_ESTARGZ_NONE;
		cur = (uint32_t)c;
		p = *e ? e + 1 : e;
	}
	return cur;
}

static void test_valid(void **state)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_free_ uint8_t *blob = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	const struct content_estargz_entry *e;
	size_t len, fs = 0;
	uint32_t i, h, big;

	assert_int_equal(open_blob("valid", true, &toc, &fs, &err), 0);
	assert_int_equal(fs, CONTENT_ESTARGZ_FOOTER_SIZE);
	assert_true(S_ISDIR(toc->entries[0].mode));

	h = find(toc, "bin/hello");
	assert_int_not_equal(h, CONTENT_ESTARGZ_NONE);
	e = &toc->entries[h];
	assert_int_equal(e->mode, S_IFREG | 0755);
	assert_int_equal(e->size, 18);
	assert_int_equal(e->nlink, 2); /* bin/link */
	assert_int_equal(e->mtime_sec, 1704164645);
	i = find(toc, "bin/link");
	assert_int_equal(content_estargz_resolve(toc, i), h);

	i = find(toc, "bin/sym");
	assert_true(S_ISLNK(toc->entries[i].mode));
	assert_string_equal(content_estargz_str(toc, toc->entries[i].link), "hello");

	i = find(toc, "etc");
	assert_int_equal(toc->entries[i].mode, S_IFDIR | 0700);
	assert_int_equal(toc->entries[i].uid, 1000);
	assert_int_equal(toc->entries[i].gid, 1001);
	i = find(toc, "etc/conf");
	assert_int_equal(toc->entries[i].n_xattrs, 1);
	assert_string_equal(content_estargz_str(toc, toc->xattrs[toc->entries[i].first_xattr].name),
	                    "user.note");
	assert_memory_equal(
	        content_estargz_str(toc, toc->xattrs[toc->entries[i].first_xattr].value), "lazy",
	        4);

	/* whiteouts become what overlayfs expects */
	i = find(toc, "etc/gone");
	assert_int_not_equal(i, CONTENT_ESTARGZ_NONE);
	assert_true(S_ISCHR(toc->entries[i].mode));
	assert_int_equal(toc->entries[i].dev_major, 0);
	assert_int_equal(find(toc, "etc/.wh.gone"), CONTENT_ESTARGZ_NONE);
	i = find(toc, "opq");
	assert_true(toc->entries[i].flags & CONTENT_ESTARGZ_OPAQUE);
	assert_int_equal(find(toc, "opq/.wh..wh..opq"), CONTENT_ESTARGZ_NONE);
	assert_int_not_equal(find(toc, "opq/kept"), CONTENT_ESTARGZ_NONE);

	/* implicit parents, hidden landmark */
	assert_int_not_equal(find(toc, "deep/a/b/c/file"), CONTENT_ESTARGZ_NONE);
	assert_true(S_ISDIR(toc->entries[find(toc, "deep/a")].mode));
	assert_int_equal(find(toc, ".prefetch.landmark"), CONTENT_ESTARGZ_NONE);
	assert_true(toc->prefetch_end > 0);
	assert_true(S_ISFIFO(toc->entries[find(toc, "fifo")].mode));

	/* breadth-first: children contiguous, sorted, parents first */
	for (uint32_t k = 1; k < toc->n_entries; k++)
		assert_true(toc->entries[k].parent < k);

	/* chunks tile the big file; every chunk decodes to its digest */
	big = find(toc, "bin/big");
	assert_int_equal(toc->entries[big].n_chunks, 5);
	assert_int_equal(content_estargz_chunk_at(toc, big, 65536),
	                 toc->entries[big].first_chunk + 1);
	blob = load("valid", "blob", &len);
	for (uint32_t k = 0; k < toc->n_chunks; k++) {
		const struct content_estargz_chunk *c = &toc->chunks[k];
		_cleanup_free_ uint8_t *out = malloc(c->inner_offset + c->size);
		struct strata_digest got;

		assert_true(c->end <= toc->toc_offset && c->offset < c->end);
		assert_int_equal(content_estargz_inflate(blob + c->offset, c->end - c->offset, out,
		                                         c->inner_offset + c->size),
		                 0);
		assert_int_equal(strata_sha256(out + c->inner_offset, c->size, &got), 0);
		assert_true(strata_digest_equal(&got, &c->digest));
		if (k > 0)
			assert_true(toc->chunks[toc->by_offset[k - 1]].offset <=
			            toc->chunks[toc->by_offset[k]].offset);
	}
	/* compact: well under the JSON size */
	size_t jl;
	_cleanup_free_ uint8_t *json = load("valid", "toc.json", &jl);
	assert_true(content_estargz_toc_memory(toc) < jl);
	_cleanup_free_ char *path = content_estargz_path(toc, find(toc, "deep/a/b/c/file"));
	assert_string_equal(path, "deep/a/b/c/file");
}

static void test_legacy_footer(void **state)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	size_t fs = 0;

	assert_int_equal(open_blob("legacy", true, &toc, &fs, NULL), 0);
	assert_int_equal(fs, CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE);
	assert_int_not_equal(find(toc, "bin/hello"), CONTENT_ESTARGZ_NONE);
	assert_int_equal(toc->prefetch_end, 0);
}

static void test_deterministic(void **state)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *a = NULL, *b = NULL;

	assert_int_equal(open_blob("valid", true, &a, NULL, NULL), 0);
	assert_int_equal(open_blob("valid", true, &b, NULL, NULL), 0);
	assert_int_equal(a->n_entries, b->n_entries);
	assert_memory_equal(a->entries, b->entries, a->n_entries * sizeof(*a->entries));
	assert_memory_equal(a->chunks, b->chunks, a->n_chunks * sizeof(*a->chunks));
}

static void test_wrong_digest(void **state)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_free_ uint8_t *json = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	struct strata_digest d;
	size_t jl;

	json = load("valid", "toc.json", &jl);
	toc_digest("legacy", &d);
	assert_int_equal(content_estargz_toc_parse(json, jl, &d, 1 << 30, &toc, &err), -EBADMSG);
	assert_null(toc);
	assert_non_null(strstr(strata_error_message(err), "does not match"));
}

static void test_hostile(void **state)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	static const char *const bad[] = {
	        "{\"version\":1,\"entries\":[{\"name\":\"a/../../x\",\"type\":\"reg\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"f\",\"type\":\"reg\"},{\"name\":\"f/x\","
	        "\"type\":\"reg\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":"
	        "\"../etc/shadow\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":"
	        "\"missing\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"x\",\"type\":\"chunk\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,"
	        "\"offset\":0}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"f\",\"type\":\"reg\",\"size\":10,"
	        "\"offset\":999999,\"chunkDigest\":\"sha256:"
	        "0000000000000000000000000000000000000000000000000000000000000000\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"/\",\"type\":\"reg\"}]}",
	        "{\"version\":2,\"entries\":[]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"bin/.wh..\",\"type\":\"reg\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"bin/.wh...\",\"type\":\"reg\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"socket\"}]}",
	        /* repeated keys: which one would a reader believe? */
	        "{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\",\"name\":\"b\"}]}",
	        "{\"version\":1,\"entries\":[],\"entries\":[{\"name\":\"a\",\"type\":\"dir\"}]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":"
	        "{\"user.k\":\"YQ==\",\"user.k\":\"Yg==\"}}]}",
	        /* a NUL would cut the name short */
	        "{\"version\":1,\"entries\":[{\"name\":\"a\\u0000/../x\",\"type\":\"dir\"}]}",
	        "{\"version\":1,\"entries\":[\"a\"]}",
	        "{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":"
	        "{\"user.k\":1}}]}",
	        "{\"version\":1,\"entries\":{}}",
	        "[{\"version\":1,\"entries\":[]}]",
	        "{\"version\":1,\"entries\":[]} {}",
	        "{\"version\":1,\"entries\":[{\"name\":\"a\",\"type\":\"dir\",\"uid\":"
	        "123456789012345678901234567890}]}",
	};

	assert_int_equal(open_blob("hostile", true, &toc, NULL, &err), -EINVAL);
	assert_non_null(strstr(strata_error_message(err), "../escape"));
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		_cleanup_error_ struct strata_error *e = NULL;
		int r = content_estargz_toc_parse(bad[i], strlen(bad[i]), NULL, 1000, &toc, &e);
		if (r >= 0)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(e);
	}
}

/* What the reader skips or decodes: unknown keys whatever their value,
 * escapes, reals and nulls where integers are expected. */
static void test_json_shapes(void **state)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	static const char json[] =
	        "{\"x\":{\"entries\":[1]},\"version\":1,\"y\":[[{}],null],\"entries\":["
	        "{\"name\":\"d\\u00e9j\\u00e0\",\"type\":\"dir\",\"mode\":493,"
	        "\"more\":{\"a\":[1,{\"name\":\"evil\"}]},\"uid\":1.5,\"gid\":null,"
	        "\"xattrs\":{\"user.k\":\"dmFs\"}},"
	        "{\"name\":\"d\\u00e9j\\u00e0/l\",\"type\":\"symlink\",\"linkName\":"
	        "\"\\/t\\\"q\",\"unknown\":true}]}";
	uint32_t d, l;

	assert_int_equal(content_estargz_toc_parse(json, strlen(json), NULL, 1000, &toc, &err), 0);
	assert_int_equal(toc->n_entries, 3);
	d = find(toc, "d\xc3\xa9j\xc3\xa0");
	assert_int_not_equal(d, CONTENT_ESTARGZ_NONE);
	assert_int_equal(toc->entries[d].mode, S_IFDIR | 0755);
	assert_int_equal(toc->entries[d].uid, 0);
	assert_int_equal(toc->entries[d].n_xattrs, 1);
	assert_string_equal(content_estargz_str(toc, toc->xattrs[toc->entries[d].first_xattr].name),
	                    "user.k");
	assert_memory_equal(toc->strings + toc->xattrs[toc->entries[d].first_xattr].value, "val",
	                    3);
	l = find(toc, "d\xc3\xa9j\xc3\xa0/l");
	assert_int_not_equal(l, CONTENT_ESTARGZ_NONE);
	assert_string_equal(content_estargz_str(toc, toc->entries[l].link), "/t\"q");
	assert_int_equal(find(toc, "evil"), CONTENT_ESTARGZ_NONE);
}

static void test_truncated(void **state)
{
	_cleanup_free_ uint8_t *blob = NULL, *json = NULL;
	_cleanup_free_ char *out = NULL;
	size_t len, fs, jl, ol;
	uint64_t off;

	blob = load("valid", "blob", &len);
	assert_int_equal(content_estargz_parse_footer(blob, len, &off, &fs), 0);
	/* a footer missing its last byte, or not at the end */
	assert_int_equal(content_estargz_parse_footer(blob, len - 1, &off, &fs), -EMEDIUMTYPE);
	assert_int_equal(content_estargz_parse_footer(blob, 20, &off, &fs), -EMEDIUMTYPE);
	/* the TOC member cut anywhere */
	for (size_t cut = 1; cut < len - fs - off; cut += 97) {
		int r = content_estargz_toc_unwrap(blob + off, cut, &out, &ol, NULL);
		assert_int_equal(r, -EBADMSG);
	}
	/* the JSON cut anywhere */
	json = load("valid", "toc.json", &jl);
	for (size_t cut = 0; cut < jl; cut += 13) {
		struct content_estargz_toc *toc = NULL;
		assert_true(content_estargz_toc_parse(json, cut, NULL, off, &toc, NULL) < 0);
		assert_null(toc);
	}
	/* not eStargz at all */
	_cleanup_free_ uint8_t *plain = load("plain", "blob", &len);
	assert_int_equal(content_estargz_parse_footer(plain, len, &off, &fs), -EMEDIUMTYPE);
	/* a chunk that does not inflate */
	uint8_t junk[64] = {0x1f, 0x8b, 8, 0}, o[100];
	assert_int_equal(content_estargz_inflate(junk, sizeof(junk), o, sizeof(o)), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_valid),         cmocka_unit_test(test_legacy_footer),
	        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_wrong_digest),
	        cmocka_unit_test(test_hostile),       cmocka_unit_test(test_json_shapes),
	        cmocka_unit_test(test_truncated),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
