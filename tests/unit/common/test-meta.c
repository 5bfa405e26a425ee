/* SPDX-License-Identifier: Apache-2.0 */
/* The LMDB environment: group commit, nested-txn isolation, map growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <lmdb.h>

#include "common.h"

struct fixture {
	char dir[64];
	struct strata_meta *m;
	unsigned dbi;
};

static int open_fixture(struct fixture *f, uint64_t map)
{
	struct strata_meta_options o = {.initial_map_size = map};
	const char *names[] = {"test"};
	assert_int_equal(strata_meta_open(f->dir, &o, &f->m, NULL), 0);
	assert_int_equal(strata_meta_open_dbs(f->m, 1, names, NULL, &f->dbi), 0);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/strata-meta-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	open_fixture(f, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	(void)strata_meta_close(f->m);
	assert_int_equal(path_rm_rf_at(AT_FDCWD, f->dir), 0);
	free(f);
	return 0;
}

struct put {
	unsigned dbi;
	const char *key;
	const char *val;
	int fail_after_put; /* return this error after writing */
};

static int put_fn(void *txn, void *ud)
{
	struct put *p = ud;
	MDB_val k = {strlen(p->key), (void *)p->key}, v = {strlen(p->val), (void *)p->val};
	int rc = mdb_put(txn, p->dbi, &k, &v, 0);
	if (rc)
		return strata_meta_errno(rc);
	return p->fail_after_put;
}

struct get {
	unsigned dbi;
	const char *key;
	char out[256];
};

static int get_fn(void *txn, void *ud)
{
	struct get *g = ud;
	MDB_val k = {strlen(g->key), (void *)g->key}, v;
	int rc = mdb_get(txn, g->dbi, &k, &v);
	if (rc)
		return strata_meta_errno(rc);
	/* copy out: v dies with the transaction */
	snprintf(g->out, sizeof(g->out), "%.*s", (int)v.mv_size, (char *)v.mv_data);
	return 0;
}

static void test_write_read(void **state)
{
	struct fixture *f = *state;
	struct put p = {f->dbi, "k", "v1", 0};
	struct get g = {.dbi = f->dbi, .key = "k"};
	assert_int_equal(strata_meta_write(f->m, put_fn, &p), 0);
	assert_int_equal(strata_meta_read(f->m, get_fn, &g), 0);
	assert_string_equal(g.out, "v1");
	g.key = "missing";
	assert_int_equal(strata_meta_read(f->m, get_fn, &g), -ENOENT);
}

static void test_failed_closure_rolls_back(void **state)
{
	struct fixture *f = *state;
	struct put p = {f->dbi, "k2", "v", -EINVAL};
	struct get g = {.dbi = f->dbi, .key = "k2"};
	assert_int_equal(strata_meta_write(f->m, put_fn, &p), -EINVAL);
	assert_int_equal(strata_meta_read(f->m, get_fn, &g), -ENOENT);
}

static void test_durable_across_reopen(void **state)
{
	struct fixture *f = *state;
	struct put p = {f->dbi, "persist", "yes", 0};
	struct get g = {.dbi = f->dbi, .key = "persist"};
	assert_int_equal(strata_meta_write(f->m, put_fn, &p), 0);
	f->m = strata_meta_close(f->m);
	open_fixture(f, 0);
	g.dbi = f->dbi;
	assert_int_equal(strata_meta_read(f->m, get_fn, &g), 0);
	assert_string_equal(g.out, "yes");
}

struct worker {
	struct fixture *f;
	int id;
	int errors;
};

#define WRITES_PER_THREAD 200
#define THREADS           16

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < WRITES_PER_THREAD; i++) {
		char key[32], val[32];
		snprintf(key, sizeof(key), "t%d-%d", w->id, i);
		snprintf(val, sizeof(val), "v%d", i);
		/* every 10th write fails: its change must vanish, the batch must not */
		struct put p = {w->f->dbi, key, val, i % 10 == 9 ? -EBADMSG : 0};
		int r = strata_meta_write(w->f->m, put_fn, &p);
		if (r != p.fail_after_put)
			w->errors++;
	}
	return NULL;
}

static void test_group_commit_concurrent(void **state)
{
	struct fixture *f = *state;
	pthread_t th[THREADS];
	struct worker w[THREADS];
	struct strata_meta_stats st;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){f, i, 0};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].errors, 0);
	}
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < WRITES_PER_THREAD; i++) {
			struct get g = {.dbi = f->dbi};
			char key[32];
			snprintf(key, sizeof(key), "t%d-%d", t, i);
			g.key = key;
			int r = strata_meta_read(f->m, get_fn, &g);
			assert_int_equal(r, i % 10 == 9 ? -ENOENT : 0);
		}
	strata_meta_get_stats(f->m, &st);
	assert_int_equal(st.write_calls, THREADS * WRITES_PER_THREAD);
	/* batching happened: fewer commits (fsyncs) than writes */
	print_message("# %llu writes in %llu commits\n", (unsigned long long)st.write_calls,
	              (unsigned long long)st.commits);
	assert_true(st.commits < st.write_calls);
}

static void test_map_grows(void **state)
{
	struct fixture *f = *state;
	struct strata_meta_stats st;
	char val[4000];

	f->m = strata_meta_close(f->m);
	assert_int_equal(path_rm_rf_at(AT_FDCWD, f->dir), 0);
	assert_int_equal(mkdir(f->dir, 0700), 0);
	open_fixture(f, 256 * 1024); /* tiny map: must grow */
	memset(val, 'x', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	for (int i = 0; i < 1000; i++) {
		char key[32];
		snprintf(key, sizeof(key), "big-%d", i);
		struct put p = {f->dbi, key, val, 0};
		assert_int_equal(strata_meta_write(f->m, put_fn, &p), 0);
	}
	strata_meta_get_stats(f->m, &st);
	assert_true(st.map_resizes > 0);
	assert_true(st.map_size > 256 * 1024);
	struct get g = {.dbi = f->dbi, .key = "big-999"};
	assert_int_equal(strata_meta_read(f->m, get_fn, &g), 0);
	assert_int_equal(strlen(g.out), 255); /* truncated copy of 3999 x */
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	struct strata_meta *ro = NULL;
	struct strata_meta_options o = {.read_only = 1};
	struct put p = {f->dbi, "k", "v", 0};
	assert_int_equal(strata_meta_write(f->m, put_fn, &p), 0);
	assert_int_equal(strata_meta_open(f->dir, &o, &ro, NULL), 0);
	assert_int_equal(strata_meta_write(ro, put_fn, &p), -EROFS);
	(void)strata_meta_close(ro);
}

static void test_open_error(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct strata_meta *m = NULL;
	struct strata_meta_options o = {.read_only = 1};
	assert_true(strata_meta_open("/nonexistent/strata/meta", &o, &m, &err) < 0);
	assert_null(m);
	assert_non_null(strstr(err->msg, "open metadata store \"/nonexistent/strata/meta\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_failed_closure_rolls_back, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_durable_across_reopen, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_group_commit_concurrent, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_map_grows, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
	        cmocka_unit_test(test_open_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
