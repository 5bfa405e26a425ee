/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snap_create_committed(), the one metadata write of a remote layer's
 * Prepare: what it leaves visible (a committed snapshot under the name, with
 * the parent and labels given, the Prepare key never stored), its errors,
 * and a SIGKILL at a random moment of a loop of them: after reopening and
 * Cleanup every snapshot has its directories and the file written before
 * the write, every directory has a snapshot, no key is left.
 */
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "snap-internal.h"
#include "snap-test.h"

static struct snap_label labels[] = {
        {(char *)"containerd.io/snapshot.ref", (char *)"target"},
        {(char *)"test/kind", (char *)"remote-like"},
};

/* What lazy-remote.c's fill does for its record: written and synced before
 * the snapshot becomes visible. */
static int fill_record(struct snap_store *s, uint64_t id, void *userdata)
{
	char p[300], text[64];
	int n = snprintf(text, sizeof(text), "id=%" PRIu64 "\n", id);
	_cleanup_close_ int fd = -1;

	if (userdata)
		return -EIO; /* a failing fill */
	snprintf(p, sizeof(p), "%s/%" PRIu64 "/record", snap_store_snapshots_dir(s), id);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (loop_write(fd, text, (size_t)n) < 0 || fdatasync(fd) < 0)
		return -EIO;
	return 0;
}

static bool record_ok(struct snap_store *s, uint64_t id)
{
	_cleanup_free_ char *buf = NULL;
	char p[300], want[64];

	snprintf(p, sizeof(p), "%s/%" PRIu64 "/record", snap_store_snapshots_dir(s), id);
	snprintf(want, sizeof(want), "id=%" PRIu64 "\n", id);
	return path_read_file_at(AT_FDCWD, p, 4096, &buf, NULL) == 0 && streq(buf, want);
}

static int create(struct fixture *f, const char *name, const char *key, const char *parent,
                  bool fail, uint64_t *id, bool *name_exists)
{
	return snap_create_committed(f->store, name, key, parent, labels, ELEMENTSOF(labels),
	                             fill_record, fail ? (void *)1 : NULL, id, name_exists, NULL);
}

static void test_visible_result(void **state)
{
	struct fixture *f = *state;
	struct snap_mount *m = NULL;
	struct snap_info info = {0};
	struct snap_usage u;
	uint64_t id = 0, id2 = 0, got;
	bool exists = true;
	char p[300];

	assert_int_equal(create(f, "base", "prep-base", NULL, false, &id, &exists), 0);
	assert_false(exists);
	assert_int_equal(create(f, "top", "prep-top", "base", false, &id2, &exists), 0);
	assert_true(id2 != id);
	assert_true(record_ok(f->store, id2));

	assert_int_equal(snap_stat(f->store, "top", &info, NULL), 0);
	assert_int_equal(info.kind, SNAP_KIND_COMMITTED);
	assert_string_equal(info.parent, "base");
	assert_string_equal(snap_info_label(&info, "test/kind"), "remote-like");
	assert_string_equal(snap_info_label(&info, "containerd.io/snapshot.ref"), "target");
	snap_info_done(&info);
	assert_int_equal(snap_get_id(f->store, "top", &got, NULL), 0);
	assert_int_equal(got, id2);
	/* the Prepare key is never stored */
	assert_int_equal(snap_stat(f->store, "prep-top", &info, NULL), -ENOENT);
	assert_int_equal(snap_usage(f->store, "top", &u, NULL), 0);
	/* as a committed snapshot made by Prepare + Commit: fs and work */
	snprintf(p, sizeof(p), "%s/%" PRIu64 "/work", snap_store_snapshots_dir(f->store), id2);
	assert_int_equal(access(p, F_OK), 0);

	/* a parent of others, and in the children index: base cannot go */
	assert_int_equal(snap_remove(f->store, "base", NULL), -ENOTEMPTY);
	{
		size_t n = 0;
		assert_int_equal(snap_view(f->store, "v", "top", NULL, 0, &m, &n, NULL), 0);
		assert_int_equal(n, 1);
		snap_mounts_free(m, n);
		assert_int_equal(snap_remove(f->store, "v", NULL), 0);
	}
	assert_int_equal(snap_remove(f->store, "top", NULL), 0);
	assert_int_equal(snap_remove(f->store, "base", NULL), 0);
}

static size_t count_dirs(struct fixture *f)
{
	DIR *d = opendir(snap_store_snapshots_dir(f->store));
	size_t n = 0;

	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d));)
		if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	struct snap_mount *m = NULL;
	uint64_t id = 0;
	size_t n = 0;
	bool exists = false;

	assert_int_equal(create(f, "a", "k", NULL, false, &id, &exists), 0);
	/* the name is taken: told apart, for the caller's fallback */
	assert_int_equal(create(f, "a", "k2", NULL, false, &id, &exists), -EEXIST);
	assert_true(exists);
	/* the key is taken (an active snapshot) */
	assert_int_equal(snap_prepare(f->store, "busy", NULL, NULL, 0, &m, &n, NULL), 0);
	snap_mounts_free(m, n);
	assert_int_equal(create(f, "b", "busy", NULL, false, &id, &exists), -EEXIST);
	assert_false(exists);
	assert_int_equal(snap_stat(f->store, "b", &(struct snap_info){0}, NULL), -ENOENT);
	/* missing or active parent */
	assert_int_equal(create(f, "c", "kc", "nosuch", false, &id, &exists), -ENOENT);
	assert_int_equal(create(f, "c", "kc", "busy", false, &id, &exists), -EINVAL);
	/* a failing fill: nothing is left, no directory either */
	assert_int_equal(create(f, "d", "kd", "a", true, &id, &exists), -EIO);
	assert_false(exists);
	assert_int_equal(snap_stat(f->store, "d", &(struct snap_info){0}, NULL), -ENOENT);
	/* a, busy */
	assert_int_equal(count_dirs(f), 2);
}

/* --- SIGKILL ------------------------------------------------------------- */

static _noreturn_ void churn(const char *root, int round)
{
	_cleanup_free_ char *metadir = path_join(root, "meta");
	struct fixture f = {0};
	char parent[64] = "", key[64], name[64];

	if (strata_meta_open(metadir, NULL, &f.meta, NULL) < 0 ||
	    snap_store_open(root, f.meta, NULL, &f.store, NULL) < 0)
		_exit(1);
	for (unsigned i = 0;; i++) {
		uint64_t id;
		bool exists;

		snprintf(key, sizeof(key), "r%d-k%u", round, i);
		snprintf(name, sizeof(name), "r%d-c%u", round, i);
		if (create(&f, name, key, parent[0] ? parent : NULL, false, &id, &exists) < 0)
			_exit(2);
		if (i % 3 == 2) {
			if (snap_remove(f.store, name, NULL) < 0)
				_exit(3);
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
	uint64_t id;

	c->n++;
	if (strstr(info->name, "-k"))
		fail_msg("key %s left behind", info->name);
	assert_int_equal(info->kind, SNAP_KIND_COMMITTED);
	assert_int_equal(snap_get_id(s, info->name, &id, NULL), 0);
	if (!record_ok(s, id))
		fail_msg("snapshot %s: visible without its record", info->name);
	if (info->parent[0]) {
		struct snap_info pinfo = {0};
		assert_int_equal(snap_stat(s, info->parent, &pinfo, NULL), 0);
		assert_int_equal(pinfo.kind, SNAP_KIND_COMMITTED);
		snap_info_done(&pinfo);
	}
	return 0;
}

static void test_sigkill_rounds(void **state)
{
	struct fixture *f = *state;
	unsigned seed = (unsigned)time(NULL);
	size_t total = 0;

	srand(seed);
	print_message("# seed %u\n", seed);
	/* the environment must not be open across fork() (LMDB's rule) */
	fixture_close_store(f);
	for (int round = 0; round < 8; round++) {
		struct check_ctx c = {.f = f};
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			churn(f->root, round);
		(void)usleep((useconds_t)(2000 + rand() % 60000));
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFSIGNALED(status))
			fail_msg("round %d: child exited with %d", round, WEXITSTATUS(status));

		fixture_open_store(f);
		assert_int_equal(snap_cleanup(f->store, NULL), 0);
		assert_int_equal(snap_walk(f->store, NULL, 0, check_one, &c, NULL), 0);
		/* one directory per snapshot, nothing else */
		if (count_dirs(f) != c.n)
			fail_msg("%zu directories for %zu snapshots", count_dirs(f), c.n);
		total += c.n;
		fixture_close_store(f);
	}
	fixture_open_store(f);
	/* the kills landed inside the loop, not before it */
	assert_true(total > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_visible_result, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_errors, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_sigkill_rounds, fixture_setup,
	                                        fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
