/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash consistency: a child process runs Prepare/View/Commit/Remove in a
 * loop and is SIGKILLed at a random moment; after reopening and Cleanup,
 * every snapshot in the metadata has its directories, every directory has
 * metadata, and every parent is a committed snapshot.
 */
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "snap-test.h"

static _noreturn_ void churn(const char *root, int round)
{
	_cleanup_free_ char *metadir = path_join(root, "meta");
	struct strata_meta *meta = NULL;
	struct snap_store *s = NULL;
	char parent[64] = "", key[64], name[64], view[64];

	if (strata_meta_open(metadir, NULL, &meta, NULL) < 0 ||
	    snap_store_open(root, meta, NULL, &s, NULL) < 0)
		_exit(1);
	for (unsigned i = 0;; i++) {
		struct snap_mount *m = NULL;
		size_t n = 0;
		char fs[300];
		uint64_t id;

		snprintf(key, sizeof(key), "r%d-a%u", round, i);
		snprintf(name, sizeof(name), "r%d-c%u", round, i);
		snprintf(view, sizeof(view), "r%d-v%u", round, i);
		if (snap_prepare(s, key, parent[0] ? parent : NULL, NULL, 0, &m, &n, NULL) < 0)
			_exit(2);
		snap_mounts_free(m, n);
		/* some content, so Commit's usage walk and Remove's rm take time */
		if (snap_get_id(s, key, &id, NULL) == 0) {
			snprintf(fs, sizeof(fs), "%s/%" PRIu64 "/fs", snap_store_snapshots_dir(s),
			         id);
			write_text(fs, "f", "data");
		}
		if (snap_commit(s, name, key, NULL, 0, NULL) < 0)
			_exit(3);
		if (snap_view(s, view, name, NULL, 0, &m, &n, NULL) < 0)
			_exit(4);
		snap_mounts_free(m, n);
		if (snap_remove(s, view, NULL) < 0)
			_exit(5);
		if (i % 3 == 2) {
			/* drop the layer just made; the chain continues below it */
			if (snap_remove(s, name, NULL) < 0)
				_exit(6);
		} else {
			snprintf(parent, sizeof(parent), "%s", name);
		}
	}
}

struct check_ctx {
	struct fixture *f;
	size_t n;
};

static int check_one(const struct snap_info *info, void *userdata)
{
	struct check_ctx *c = userdata;
	struct snap_store *s = c->f->store;
	struct snap_info pinfo = {0};
	char p[300];
	uint64_t id;

	c->n++;
	assert_int_equal(snap_get_id(s, info->name, &id, NULL), 0);
	snprintf(p, sizeof(p), "%s/%" PRIu64 "/fs", snap_store_snapshots_dir(s), id);
	if (access(p, F_OK) < 0)
		fail_msg("snapshot %s: %s missing", info->name, p);
	if (info->kind == SNAP_KIND_ACTIVE) {
		snprintf(p, sizeof(p), "%s/%" PRIu64 "/work", snap_store_snapshots_dir(s), id);
		if (access(p, F_OK) < 0)
			fail_msg("snapshot %s: %s missing", info->name, p);
	}
	if (info->parent[0]) {
		assert_int_equal(snap_stat(s, info->parent, &pinfo, NULL), 0);
		assert_int_equal(pinfo.kind, SNAP_KIND_COMMITTED);
		snap_info_done(&pinfo);
	}
	return 0;
}

static void check_consistent(struct fixture *f)
{
	struct check_ctx c = {.f = f};
	size_t dirs = 0;
	DIR *d;

	assert_int_equal(snap_cleanup(f->store, NULL), 0);
	assert_int_equal(snap_walk(f->store, NULL, 0, check_one, &c, NULL), 0);
	d = opendir(snap_store_snapshots_dir(f->store));
	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d));)
		if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
			dirs++;
	closedir(d);
	/* one directory per snapshot, nothing else */
	if (dirs != c.n)
		fail_msg("%zu directories for %zu snapshots", dirs, c.n);
	/* removed snapshots the kill left in the trash are gone too */
	{
		_cleanup_free_ char *trash = path_join(f->root, "snapshots-trash");
		d = opendir(trash);
		assert_non_null(d);
		for (struct dirent *de; (de = readdir(d));)
			if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
				fail_msg("trash entry %s left after Cleanup", de->d_name);
		closedir(d);
	}
}

static void test_sigkill_rounds(void **state)
{
	struct fixture *f = *state;
	unsigned seed = (unsigned)time(NULL);

	srand(seed);
	print_message("# seed %u\n", seed);
	/* the environment must not be open across fork() (LMDB's rule) */
	fixture_close_store(f);
	for (int round = 0; round < 12; round++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			churn(f->root, round);
		(void)usleep((useconds_t)(2000 + rand() % 60000));
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* killed, not exited: an exit means an operation failed */
		if (!WIFSIGNALED(status))
			fail_msg("round %d: child exited with %d", round, WEXITSTATUS(status));

		fixture_open_store(f);
		check_consistent(f);
		fixture_close_store(f);
	}
	fixture_open_store(f);
	{
		struct snap_mount *m = NULL;
		size_t n = 0;
		assert_int_equal(snap_prepare(f->store, "after", NULL, NULL, 0, &m, &n, NULL), 0);
		snap_mounts_free(m, n);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_sigkill_rounds, fixture_setup,
	                                        fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
