/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The eStargz encoder (content/estargz-write.c): footer bytes, the TOC and
 * its digest, chunking, landmarks and prefetch order, that the blob is still
 * a gzip'd tar with the source's entries, that Strata's own reader parses
 * it, and bad input. Tars are made and read back with libarchive (an
 * independent tar implementation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <zlib.h>

#include "common.h"
#include "estargz.h"

#define BIG_SIZE   ((size_t)(5u << 20) + 12345)
#define CHUNK_SIZE ((uint64_t)(1u << 20))

static uint8_t *big;

struct membuf {
	uint8_t *buf;
	size_t len, cap;
};

static la_ssize_t mb_write(struct archive *a, void *ud, const void *buf, size_t n)
{
	struct membuf *m = ud;
	(void)a;
	if (m->len + n > m->cap) {
		m->cap = MAX(m->cap * 2, m->len + n + 65536);
		m->buf = realloc(m->buf, m->cap);
		assert_non_null(m->buf);
	}
	memcpy(m->buf + m->len, buf, n);
	m->len += n;
	return (la_ssize_t)n;
}

static void add(struct archive *a, const char *name, mode_t type, mode_t perm, const void *data,
                size_t len, const char *link, bool hardlink)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, 1000);
	archive_entry_set_gid(e, 100);
	archive_entry_set_uname(e, "user");
	archive_entry_set_gname(e, "users");
	archive_entry_set_mtime(e, 1700000000, 0);
	if (type == AE_IFREG)
		archive_entry_set_size(e, (la_int64_t)len);
	if (link && hardlink)
		archive_entry_set_hardlink(e, link);
	else if (link)
		archive_entry_set_symlink(e, link);
	if (type == AE_IFCHR)
		archive_entry_set_rdev(e, makedev(1, 3));
	if (streq(name, "./etc/xattr"))
		archive_entry_xattr_add_entry(e, "user.comment", "hi\0there", 8);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (data && len)
		assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
	archive_entry_free(e);
}

/* A layer with every entry type, a whiteout and a big file. */
static void make_tar(struct membuf *m, bool dup)
{
	struct archive *a = archive_write_new();

	*m = (struct membuf){0};
	archive_write_set_format_pax_restricted(a);
	archive_write_set_bytes_in_last_block(a, 1);
	assert_int_equal(archive_write_open(a, m, NULL, mb_write, NULL), ARCHIVE_OK);
	add(a, "./", AE_IFDIR, 0755, NULL, 0, NULL, false);
	add(a, "./etc/", AE_IFDIR, 0755, NULL, 0, NULL, false);
	add(a, "./etc/a", AE_IFREG, 0644, "alpha\n", 6, NULL, false);
	add(a, "./etc/b", AE_IFREG, 0600, "bravo bravo\n", 12, NULL, false);
	add(a, "./etc/empty", AE_IFREG, 0644, NULL, 0, NULL, false);
	add(a, "./etc/xattr", AE_IFREG, 0644, "x", 1, NULL, false);
	add(a, "./etc/link", AE_IFLNK, 0777, NULL, 0, "a", false);
	add(a, "./etc/hard", AE_IFREG, 0644, NULL, 0, "./etc/a", true);
	add(a, "./etc/.wh.gone", AE_IFREG, 0644, NULL, 0, NULL, false);
	add(a, "./dev/", AE_IFDIR, 0755, NULL, 0, NULL, false);
	add(a, "./dev/null", AE_IFCHR, 0666, NULL, 0, NULL, false);
	add(a, "./dev/fifo", AE_IFIFO, 0644, NULL, 0, NULL, false);
	add(a, "./data/", AE_IFDIR, 0755, NULL, 0, NULL, false);
	add(a, "./data/big", AE_IFREG, 0644, big, BIG_SIZE, NULL, false);
	add(a,
	    "./data/"
	    "a-very-long-name-that-does-not-fit-in-one-hundred-bytes-of-ustar-name-"
	    "field-so-pax-path-is-used",
	    AE_IFREG, 0644, "long\n", 5, NULL, false);
	if (dup)
		add(a, "etc/a", AE_IFREG, 0644, "again\n", 6, NULL, false);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* gunzip all members */
static uint8_t *gunzip(const uint8_t *in, size_t len, size_t *ret_len)
{
	z_stream z = {0};
	size_t cap = len * 4 + 65536, n = 0;
	uint8_t *out = malloc(cap);
	int rc;

	assert_int_equal(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	for (;;) {
		if (n == cap) {
			cap *= 2;
			out = realloc(out, cap);
		}
		z.next_out = out + n;
		z.avail_out = (uInt)(cap - n);
		rc = inflate(&z, Z_NO_FLUSH);
		n = cap - z.avail_out;
		if (rc == Z_STREAM_END) {
			if (z.avail_in == 0)
				break;
			assert_int_equal(inflateReset(&z), Z_OK);
			continue;
		}
		assert_true(rc == Z_OK || (rc == Z_BUF_ERROR && z.avail_out == 0));
	}
	inflateEnd(&z);
	*ret_len = n;
	return out;
}

static void build(const struct membuf *tar, const char *const *prefetch, size_t n_prefetch,
                  struct content_estargz_blob *b)
{
	struct content_estargz_build_options o = {.chunk_size = CHUNK_SIZE,
	                                          .prefetch = prefetch,
	                                          .n_prefetch = n_prefetch,
	                                          .threads = 3};
	_cleanup_error_ struct strata_error *err = NULL;
	int r = content_estargz_build(tar->buf, tar->len, &o, b, &err);
	if (r < 0)
		fail_msg("build: %s", err ? err->msg : "?");
}

static char *toc_json(const struct content_estargz_blob *b, size_t *ret_len)
{
	_cleanup_error_ struct strata_error *err = NULL;
	uint64_t toc_off;
	size_t fs;
	char *json;

	assert_int_equal(content_estargz_parse_footer(b->data, b->len, &toc_off, &fs), 0);
	assert_int_equal(fs, CONTENT_ESTARGZ_FOOTER_SIZE);
	assert_int_equal(toc_off, b->toc_offset);
	assert_int_equal(content_estargz_toc_unwrap(b->data + toc_off, b->len - fs - toc_off, &json,
	                                            ret_len, &err),
	                 0);
	return json;
}

static void test_footer_bytes(void **state)
{
	static const uint8_t want[51] = {
	        0x1f, 0x8b, 0x08, 0x04, 0,   0,   0,   0,   0,   0xff, 26,  0,   'S',
	        'G',  22,   0,    '0',  '0', '0', '0', '0', '0', '0',  '0', '0', '0',
	        '0',  '0',  '1',  '2',  'a', 'b', 'S', 'T', 'A', 'R',  'G', 'Z', 0x01,
	        0x00, 0x00, 0xff, 0xff, 0,   0,   0,   0,   0,   0,    0,   0};
	uint8_t got[51];
	uint64_t off;
	size_t fs;
	(void)state;

	content_estargz_footer(0x12ab, got);
	assert_memory_equal(got, want, 51);
	assert_int_equal(content_estargz_parse_footer(got, 51, &off, &fs), 0);
	assert_int_equal(off, 0x12ab);
	/* and it is an empty gzip member */
	size_t n;
	free(gunzip(got, 51, &n));
	assert_int_equal(n, 0);
}

static void test_roundtrip(void **state)
{
	struct membuf tar;
	struct content_estargz_blob b;
	_cleanup_free_ uint8_t *raw = NULL;
	_cleanup_free_ char *json = NULL;
	struct strata_digest d;
	size_t raw_len, json_len;
	(void)state;

	make_tar(&tar, false);
	build(&tar, NULL, 0, &b);

	/* the whole blob is a gzip'd tar: its bytes are the diff ID */
	raw = gunzip(b.data, b.len, &raw_len);
	assert_int_equal(raw_len, b.uncompressed_size);
	assert_int_equal(strata_sha256(raw, raw_len, &d), 0);
	assert_true(strata_digest_equal(&d, &b.diff_id));
	assert_int_equal(strata_sha256(b.data, b.len, &d), 0);
	assert_true(strata_digest_equal(&d, &b.digest));

	/* the TOC digest is the sha256 of the JSON in the blob */
	json = toc_json(&b, &json_len);
	assert_int_equal(strata_sha256(json, json_len, &d), 0);
	assert_true(strata_digest_equal(&d, &b.toc_digest));
	assert_non_null(strstr(json, "\"name\":\".no.prefetch.landmark\""));

	/* libarchive reads the same entries and bytes back */
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	int seen = 0;
	archive_read_support_format_tar(a);
	archive_read_support_filter_gzip(a);
	assert_int_equal(archive_read_open_memory(a, b.data, b.len), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *n = archive_entry_pathname(e);
		if (streq(n, "./data/big")) {
			uint8_t *got = malloc(BIG_SIZE);
			assert_int_equal(archive_read_data(a, got, BIG_SIZE), (la_ssize_t)BIG_SIZE);
			assert_memory_equal(got, big, BIG_SIZE);
			free(got);
			seen |= 1;
		} else if (streq(n, "./etc/xattr")) {
			const char *xn;
			const void *xv;
			size_t xl;
			assert_true(archive_entry_xattr_reset(e) >= 1);
			assert_int_equal(archive_entry_xattr_next(e, &xn, &xv, &xl), ARCHIVE_OK);
			assert_string_equal(xn, "user.comment");
			assert_int_equal(xl, 8);
			seen |= 2;
		} else if (streq(n, "./etc/hard")) {
			assert_string_equal(archive_entry_hardlink(e), "./etc/a");
			seen |= 4;
		} else if (streq(n, "./dev/null")) {
			assert_int_equal(archive_entry_rdevmajor(e), 1);
			assert_int_equal(archive_entry_uid(e), 1000);
			assert_string_equal(archive_entry_uname(e), "user");
			seen |= 8;
		} else if (strstr(n, "a-very-long-name")) {
			seen |= 16;
		} else if (streq(n, "stargz.index.json")) {
			seen |= 32;
		}
	}
	archive_read_free(a);
	assert_int_equal(seen, 63);

	/* Strata's reader compiles it; chunks decode to the file's bytes */
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	assert_int_equal(
	        content_estargz_toc_parse(json, json_len, &b.toc_digest, b.toc_offset, &toc, &err),
	        0);
	int64_t dir = content_estargz_lookup(toc, 0, "data", 4);
	assert_true(dir > 0);
	int64_t f = content_estargz_lookup(toc, (uint32_t)dir, "big", 3);
	assert_true(f > 0);
	const struct content_estargz_entry *fe = &toc->entries[f];
	assert_int_equal(fe->size, BIG_SIZE);
	assert_int_equal(fe->n_chunks, (BIG_SIZE + CHUNK_SIZE - 1) / CHUNK_SIZE);
	for (uint32_t k = 0; k < fe->n_chunks; k++) {
		const struct content_estargz_chunk *ch = &toc->chunks[fe->first_chunk + k];
		uint8_t *out = malloc(ch->size);
		assert_int_equal(ch->file_offset, k * CHUNK_SIZE);
		assert_int_equal(content_estargz_inflate(b.data + ch->offset, ch->end - ch->offset,
		                                         out, ch->size),
		                 0);
		assert_memory_equal(out, big + ch->file_offset, ch->size);
		assert_int_equal(strata_sha256(out, ch->size, &d), 0);
		assert_true(strata_digest_equal(&d, &ch->digest));
		free(out);
	}
	int64_t etc = content_estargz_lookup(toc, 0, "etc", 3);
	int64_t hard = content_estargz_lookup(toc, (uint32_t)etc, "hard", 4);
	int64_t link = content_estargz_lookup(toc, (uint32_t)etc, "link", 4);
	int64_t wh = content_estargz_lookup(toc, (uint32_t)etc, "gone", 4);
	int64_t x = content_estargz_lookup(toc, (uint32_t)etc, "xattr", 5);
	assert_true(hard > 0 && link > 0 && wh > 0 && x > 0);
	assert_true(toc->entries[hard].flags & CONTENT_ESTARGZ_HARDLINK);
	assert_string_equal(content_estargz_str(toc, toc->entries[link].link), "a");
	assert_true(toc->entries[wh].flags & CONTENT_ESTARGZ_WHITEOUT);
	assert_int_equal(toc->entries[x].n_xattrs, 1);
	assert_int_equal(toc->xattrs[toc->entries[x].first_xattr].value_len, 8);
	assert_memory_equal(
	        content_estargz_str(toc, toc->xattrs[toc->entries[x].first_xattr].value),
	        "hi\0there", 8);
	assert_int_equal(toc->entries[x].uid, 1000);
	assert_int_equal(toc->entries[x].mtime_sec, 1700000000);
	assert_int_equal(toc->entries[x].mode & 07777, 0644);
	assert_int_equal(toc->prefetch_end, 0);

	content_estargz_blob_done(&b);
	free(tar.buf);
}

static void test_prefetch(void **state)
{
	struct membuf tar;
	struct content_estargz_blob b;
	_cleanup_free_ char *json = NULL;
	const char *pf[] = {"/etc/b", "missing/file", "etc/hard"};
	size_t json_len;
	(void)state;

	make_tar(&tar, false);
	build(&tar, pf, ELEMENTSOF(pf), &b);
	json = toc_json(&b, &json_len);
	/* "./", etc, etc/b, etc/a (hardlink target), etc/hard, landmark */
	const char *root = strstr(json, "\"name\":\"./\"");
	const char *etc = strstr(json, "\"name\":\"etc\"");
	const char *eb = strstr(json, "\"name\":\"etc/b\"");
	const char *ea = strstr(json, "\"name\":\"etc/a\"");
	const char *eh = strstr(json, "\"name\":\"etc/hard\"");
	const char *lm = strstr(json, "\"name\":\".prefetch.landmark\"");
	const char *big_ = strstr(json, "\"name\":\"data/big\"");
	assert_true(root && etc && eb && ea && eh && lm && big_);
	assert_true(root < etc && etc < eb && eb < ea && ea < eh && eh < lm && lm < big_);
	assert_null(strstr(json, "no.prefetch"));

	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	assert_int_equal(
	        content_estargz_toc_parse(json, json_len, &b.toc_digest, b.toc_offset, &toc, &err),
	        0);
	assert_true(toc->prefetch_end > 0);
	/* etc/b is before the landmark */
	int64_t etcd = content_estargz_lookup(toc, 0, "etc", 3);
	int64_t f = content_estargz_lookup(toc, (uint32_t)etcd, "b", 1);
	assert_true(toc->chunks[toc->entries[f].first_chunk].offset < toc->prefetch_end);

	/* still a tar that unpacks (hardlink after its target) */
	size_t raw_len;
	_cleanup_free_ uint8_t *raw = gunzip(b.data, b.len, &raw_len);
	struct strata_digest d;
	assert_int_equal(strata_sha256(raw, raw_len, &d), 0);
	assert_true(strata_digest_equal(&d, &b.diff_id));
	content_estargz_blob_done(&b);
	free(tar.buf);
}

static void test_bad_input(void **state)
{
	struct membuf tar;
	struct content_estargz_blob b;
	uint8_t junk[4096];
	(void)state;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 7 + 3);
	{
		_cleanup_error_ struct strata_error *err = NULL;
		assert_int_equal(content_estargz_build(junk, sizeof(junk), NULL, &b, &err),
		                 -EBADMSG);
		assert_non_null(strstr(err->msg, "not a tar"));
		assert_null(b.data);
	}
	make_tar(&tar, true);
	{
		_cleanup_error_ struct strata_error *err = NULL;
		assert_int_equal(content_estargz_build(tar.buf, tar.len, NULL, &b, &err), -EINVAL);
		assert_non_null(strstr(err->msg, "duplicate tar entry \"etc/a\""));
	}
	free(tar.buf);
	make_tar(&tar, false);
	{
		/* cut inside the big file */
		_cleanup_error_ struct strata_error *err = NULL;
		assert_int_equal(content_estargz_build(tar.buf, tar.len / 2, NULL, &b, &err),
		                 -EBADMSG);
		assert_non_null(strstr(err->msg, "truncated"));
	}
	{
		_cleanup_error_ struct strata_error *err = NULL;
		struct content_estargz_build_options o = {.level = 13};
		assert_int_equal(content_estargz_build(tar.buf, tar.len, &o, &b, &err), -EINVAL);
	}
	free(tar.buf);
}

/* The same input gives the same blob (whatever the thread count). */
static void test_deterministic(void **state)
{
	struct membuf tar;
	struct content_estargz_blob b1, b2;
	struct content_estargz_build_options o = {.chunk_size = CHUNK_SIZE, .threads = 1};
	_cleanup_error_ struct strata_error *err = NULL;
	(void)state;

	make_tar(&tar, false);
	assert_int_equal(content_estargz_build(tar.buf, tar.len, &o, &b1, &err), 0);
	o.threads = 4;
	assert_int_equal(content_estargz_build(tar.buf, tar.len, &o, &b2, &err), 0);
	assert_int_equal(b1.len, b2.len);
	assert_memory_equal(b1.data, b2.data, b1.len);
	content_estargz_blob_done(&b1);
	content_estargz_blob_done(&b2);
	free(tar.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_footer_bytes),  cmocka_unit_test(test_roundtrip),
	        cmocka_unit_test(test_prefetch),      cmocka_unit_test(test_bad_input),
	        cmocka_unit_test(test_deterministic),
	};
	int r;

	big = malloc(BIG_SIZE);
	for (size_t i = 0; i < BIG_SIZE; i++)
		big[i] = (uint8_t)((i * 2654435761u) >> 13);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	free(big);
	return r;
}
