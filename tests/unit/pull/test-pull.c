/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the pull support code: chain IDs, image records (codec and
 * store), progress coalescing, coexistence marks and pins, and following an
 * ingest's data while it is written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "content.h"
#include "meta.h"
#include "path.h"
#include "pull-internal.h"

struct fixture {
	char root[64];
	struct strata_meta *meta;
	struct content_store *store;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	_cleanup_free_ char *metadir = NULL;

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/strata-pull-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	metadir = path_join(f->root, "meta");
	assert_int_equal(path_mkdir_p(metadir, 0700), 0);
	assert_int_equal(strata_meta_open(metadir, NULL, &f->meta, NULL), 0);
	assert_int_equal(content_store_open(f->root, f->meta, NULL, &f->store, NULL), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	content_store_close(f->store);
	strata_meta_close(f->meta);
	(void)path_rm_rf_at(AT_FDCWD, f->root);
	free(f);
	return 0;
}

static struct strata_digest dg(const char *s)
{
	struct strata_digest d;

	assert_int_equal(strata_digest_parse(s, &d, NULL), 0);
	return d;
}

static void assert_digest(const struct strata_digest *d, const char *want)
{
	char buf[STRATA_DIGEST_STRING_MAX];

	assert_string_equal(strata_digest_format(d, buf), want);
}

/* Vectors computed independently (Python hashlib) from the OCI rule. */
static void test_chain_ids(void **state)
{
	struct strata_digest diff[3], chain[3];

	diff[0] = dg("sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
	diff[1] = dg("sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d");
	diff[2] = dg("sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6");
	assert_int_equal(content_image_chain_ids(diff, 3, chain), 0);
	assert_digest(&chain[0],
	              "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
	assert_digest(&chain[1],
	              "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676");
	assert_digest(&chain[2],
	              "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106");
	/* one layer: the chain ID is the diff ID */
	assert_int_equal(content_image_chain_ids(&diff[2], 1, chain), 0);
	assert_true(strata_digest_equal(&chain[0], &diff[2]));
}

static void record_fill(struct content_image_record *r, const char *name, const char *label)
{
	*r = (struct content_image_record){0};
	r->name = strdup(name);
	r->digest = dg("sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
	r->media_type = strdup(CONTENT_MEDIA_TYPE_OCI_MANIFEST);
	r->size = 12345;
	r->platform = strdup("linux/amd64");
	r->manifest_digest = r->digest;
	r->config_digest =
	        dg("sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d");
	r->n_layers = r->n_chain_ids = 2;
	r->layers = calloc(2, sizeof(*r->layers));
	r->chain_ids = calloc(2, sizeof(*r->chain_ids));
	r->layers[0] =
	        dg("sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6");
	r->layers[1] =
	        dg("sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676");
	r->chain_ids[0] = r->layers[1];
	r->chain_ids[1] = r->layers[0];
	r->created_at = (struct timespec){1700000000, 123456789};
	r->updated_at = (struct timespec){1700000001, 5};
	if (label) {
		r->n_labels = 1;
		r->labels = calloc(1, sizeof(*r->labels));
		r->labels[0].key = strdup("team");
		r->labels[0].value = strdup(label);
	}
}

static void test_record_codec(void **state)
{
	struct content_image_record r, back = {0};
	_cleanup_free_ char *buf = NULL;
	size_t len;

	record_fill(&r, "docker.io/library/busybox:latest", "a.b");
	assert_int_equal(content_image_record_encode(&r, &buf, &len), 0);
	assert_int_equal(content_image_record_decode(buf, len, &back), 0);
	assert_string_equal(back.name, r.name);
	assert_string_equal(back.media_type, r.media_type);
	assert_string_equal(back.platform, r.platform);
	assert_int_equal(back.size, r.size);
	assert_true(strata_digest_equal(&back.digest, &r.digest));
	assert_true(strata_digest_equal(&back.config_digest, &r.config_digest));
	assert_int_equal(back.n_layers, 2);
	assert_int_equal(back.n_chain_ids, 2);
	assert_true(strata_digest_equal(&back.layers[1], &r.layers[1]));
	assert_true(strata_digest_equal(&back.chain_ids[0], &r.chain_ids[0]));
	assert_int_equal(back.created_at.tv_sec, 1700000000);
	assert_int_equal(back.created_at.tv_nsec, 123456789);
	assert_int_equal(back.n_labels, 1);
	assert_string_equal(back.labels[0].value, "a.b");
	content_image_record_done(&back);

	/* malformed, wrong version, bad digest */
	assert_int_equal(content_image_record_decode("{", 1, &back), -EBADMSG);
	assert_int_equal(content_image_record_decode("[]", 2, &back), -EBADMSG);
	{
		const char *v2 = "{\"v\":2}";
		assert_int_equal(content_image_record_decode(v2, strlen(v2), &back), -EBADMSG);
	}
	{
		_cleanup_free_ char *bad = strdup(buf);
		char *p = strstr(bad, "sha256:ca97");
		assert_non_null(p);
		p[7] = 'X';
		assert_int_equal(content_image_record_decode(bad, strlen(bad), &back), -EBADMSG);
	}
	/* truncation at every length fails cleanly (no leak, no crash) */
	for (size_t i = 0; i < len; i++)
		assert_int_equal(content_image_record_decode(buf, i, &back), -EBADMSG);
	content_image_record_done(&r);
}

static void test_progress_due(void **state)
{
	const uint64_t iv = PROXY_PULL_PROGRESS_INTERVAL_US;

	/* state changes always go out, even right after a message */
	assert_true(proxy_pull_progress_due(1000, 999, true, false));
	/* byte counts at most once per interval */
	assert_false(proxy_pull_progress_due(1000 + iv - 1, 1000, false, true));
	assert_true(proxy_pull_progress_due(1000 + iv, 1000, false, true));
	/* nothing new: nothing to send, however long it has been */
	assert_false(proxy_pull_progress_due(1000 + 100 * iv, 1000, false, false));
	/* ten seconds of continuous bytes: <= 100 messages */
	{
		uint64_t last = 0;
		unsigned sent = 0;

		for (uint64_t t = 1; t <= 10000000; t += 1000)
			if (proxy_pull_progress_due(t, last, false, true)) {
				sent++;
				last = t;
			}
		assert_in_range(sent, 90, 100);
	}
}

static void test_snapshot_key(void **state)
{
	struct strata_digest d =
	        dg("sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
	char key[PROXY_STRATA_KEY_MAX];

	assert_string_equal(
	        proxy_strata_snapshot_key(&d, key),
	        "@strata/sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
}

struct collect {
	char names[8][128];
	size_t n;
};

static int collect_one(const struct content_image_record *r, void *userdata)
{
	struct collect *c = userdata;

	snprintf(c->names[c->n++], 128, "%s", r->name);
	return 0;
}

static size_t walk(struct content_store *s, const char *filter, struct collect *c)
{
	const char *f[] = {filter};

	memset(c, 0, sizeof(*c));
	assert_int_equal(content_image_walk(s, f, filter ? 1 : 0, collect_one, c, NULL), 0);
	return c->n;
}

static void test_image_store(void **state)
{
	struct fixture *f = *state;
	struct content_image_record a, b, got = {0};
	_cleanup_error_ struct strata_error *err = NULL;
	struct collect c;

	record_fill(&a, "docker.io/library/a:latest", "x");
	record_fill(&b, "docker.io/library/b:1", NULL);
	b.digest = dg("sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6");
	a.created_at = (struct timespec){0};
	assert_int_equal(content_image_put(f->store, &a, NULL), 0);
	assert_int_equal(content_image_put(f->store, &b, NULL), 0);

	assert_int_equal(content_image_get(f->store, a.name, &got, NULL), 0);
	assert_string_equal(got.name, a.name);
	assert_true(got.created_at.tv_sec > 1700000000); /* set now */
	{
		struct timespec created = got.created_at;

		content_image_record_done(&got);
		usleep(2000);
		assert_int_equal(content_image_put(f->store, &a, NULL), 0);
		assert_int_equal(content_image_get(f->store, a.name, &got, NULL), 0);
		/* a re-pull keeps created, moves updated */
		assert_int_equal(got.created_at.tv_sec, created.tv_sec);
		assert_int_equal(got.created_at.tv_nsec, created.tv_nsec);
		assert_true(got.updated_at.tv_sec > created.tv_sec ||
		            got.updated_at.tv_nsec > created.tv_nsec);
		content_image_record_done(&got);
	}

	assert_int_equal(walk(f->store, NULL, &c), 2);
	assert_string_equal(c.names[0], "docker.io/library/a:latest");
	assert_int_equal(walk(f->store, "name==docker.io/library/b:1", &c), 1);
	assert_string_equal(c.names[0], "docker.io/library/b:1");
	assert_int_equal(walk(f->store, "labels.team==x", &c), 1);
	assert_string_equal(c.names[0], "docker.io/library/a:latest");
	assert_int_equal(walk(f->store,
	                      "digest==sha256:"
	                      "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6",
	                      &c),
	                 1);
	assert_int_equal(walk(f->store, "name~=library/[ab]", &c), 2);
	assert_int_equal(walk(f->store, "platform==linux/arm64", &c), 0);

	assert_int_equal(content_image_delete(f->store, a.name, NULL), 0);
	assert_int_equal(content_image_delete(f->store, a.name, &err), -ENOENT);
	assert_non_null(strstr(strata_error_message(err), "not found"));
	assert_int_equal(content_image_get(f->store, a.name, &got, NULL), -ENOENT);
	assert_int_equal(walk(f->store, NULL, &c), 1);
	content_image_record_done(&a);
	content_image_record_done(&b);
}

static struct strata_digest put_blob(struct content_store *s, const char *data)
{
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	struct strata_digest d;

	assert_int_equal(content_writer_open(s, "t", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, -1, data, strlen(data), NULL), 0);
	assert_int_equal(content_writer_commit(w, 0, NULL, NULL, 0, &d, NULL), 0);
	return d;
}

static void test_coexistence(void **state)
{
	struct fixture *f = *state;
	struct strata_digest a = put_blob(f->store, "layer a"), b = put_blob(f->store, "layer b");
	struct content_image_record r;

	/* a blob nobody marked is containerd's */
	assert_int_equal(content_mark_is_private(f->store, &a), 0);
	assert_int_equal(content_mark_set_private(f->store, &a, true), 0);
	assert_int_equal(content_mark_is_private(f->store, &a), 1);
	assert_int_equal(content_containerd_claim(f->store, &a), 0);
	assert_int_equal(content_mark_is_private(f->store, &a), 0);

	/* containerd deleting a blob a Strata image names: only the claim goes */
	record_fill(&r, "docker.io/library/a:latest", NULL);
	r.layers[1] = a;
	assert_int_equal(content_image_put(f->store, &r, NULL), 0);
	assert_int_equal(content_image_referenced(f->store, &a), 1);
	assert_int_equal(content_containerd_delete(f->store, &a, NULL), 0);
	assert_int_equal(content_info(f->store, &a, NULL, NULL), 0);
	assert_int_equal(content_mark_is_private(f->store, &a), 1);

	/* pinned by a running pull: kept too */
	assert_int_equal(content_image_referenced(f->store, &b), 0);
	assert_int_equal(content_image_pin(f->store, &b), 0);
	assert_int_equal(content_image_pin(f->store, &b), 0);
	content_image_unpin(f->store, &b);
	assert_int_equal(content_image_referenced(f->store, &b), 1);
	assert_int_equal(content_containerd_delete(f->store, &b, NULL), 0);
	assert_int_equal(content_info(f->store, &b, NULL, NULL), 0);
	content_image_unpin(f->store, &b);
	assert_int_equal(content_image_referenced(f->store, &b), 0);

	/* unreferenced: really deleted, and the mark with it */
	assert_int_equal(content_containerd_delete(f->store, &b, NULL), 0);
	assert_int_equal(content_info(f->store, &b, NULL, NULL), -ENOENT);
	assert_int_equal(content_containerd_delete(f->store, &b, NULL), -ENOENT);
	assert_int_equal(content_image_delete(f->store, r.name, NULL), 0);
	assert_int_equal(content_containerd_delete(f->store, &a, NULL), 0);
	assert_int_equal(content_info(f->store, &a, NULL, NULL), -ENOENT);
	assert_int_equal(content_mark_is_private(f->store, &a), 0);
	content_image_record_done(&r);
}

static void test_ingest_follow(void **state)
{
	struct fixture *f = *state;
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	_cleanup_close_ int fd = -1;
	char buf[32];

	assert_int_equal(content_ingest_open_data(f->store, "@strata/pull/x"), -ENOENT);
	assert_int_equal(content_writer_open(f->store, "@strata/pull/x", 0, NULL, &w, NULL), 0);
	fd = content_ingest_open_data(f->store, "@strata/pull/x");
	assert_true(fd >= 0);
	assert_int_equal(content_writer_write(w, -1, "hello ", 6, NULL), 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 6);
	assert_int_equal(content_writer_write(w, -1, "world", 5, NULL), 0);
	assert_int_equal(content_writer_commit(w, 11, NULL, NULL, 0, NULL, NULL), 0);
	/* the committed blob is the same file */
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 11);
	assert_memory_equal(buf, "hello world", 11);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_chain_ids),
	        cmocka_unit_test(test_record_codec),
	        cmocka_unit_test(test_progress_due),
	        cmocka_unit_test(test_snapshot_key),
	        cmocka_unit_test_setup_teardown(test_image_store, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_coexistence, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_ingest_follow, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
