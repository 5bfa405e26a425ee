/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash consistency: a child process writes, commits, resumes, deletes and
 * aborts blobs in a loop and is SIGKILLed after a random delay, 100 times on
 * the same root. After each kill the store is reopened (running the startup
 * check) and must hold: every indexed blob verifies, every blob file is
 * indexed, and no ingest is left half-committed (its data linked into
 * blobs/) or half-created.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "content-test.h"
#include "log.h"

#define ITERATIONS 100

struct first {
	struct strata_digest d;
	bool have;
};

static int first_fn(const struct content_info *info, void *userdata)
{
	struct first *first = userdata;
	first->d = info->digest;
	first->have = true;
	return 1;
}

static void child_main(struct fixture *f, unsigned seed)
{
	static uint8_t buf[64 << 10];
	struct content_writer *w;

	if (fixture_open_store(f, NULL) < 0)
		_exit(3);
	for (;;) {
		unsigned op = (unsigned)rand_r(&seed) % 10;
		char ref[32];
		size_t len = (size_t)rand_r(&seed) % sizeof(buf);
		struct strata_digest d;

		snprintf(ref, sizeof(ref), "crash-%u", (unsigned)rand_r(&seed) % 40);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand_r(&seed);
		if (op < 7) {
			/* write in chunks (resuming whatever is there) and commit */
			if (content_writer_open(f->store, ref, 0, NULL, &w, NULL) < 0)
				continue;
			(void)strata_sha256(buf, len, &d);
			int r = 0;
			for (size_t o = 0; o < len && r >= 0; o += 8192)
				r = content_writer_write(w, (int64_t)o, buf + o,
				                         MIN((size_t)8192, len - o), NULL);
			if (r >= 0)
				r = content_writer_commit(w, (int64_t)len, &d, NULL, 0, NULL, NULL);
			if (r < 0 && r != -EEXIST)
				_exit(4);
			w = content_writer_close(w);
		} else if (op == 7) {
			/* leave a partial ingest behind */
			if (content_writer_open(f->store, ref, 0, NULL, &w, NULL) < 0)
				continue;
			(void)content_writer_write(w, -1, buf, len / 2, NULL);
			w = content_writer_close(w);
		} else if (op == 8) {
			(void)content_abort(f->store, ref, NULL);
		} else {
			/* delete the first blob */
			struct first first = {0};
			(void)content_walk(f->store, NULL, 0, first_fn, &first, NULL);
			if (first.have)
				(void)content_delete(f->store, &first.d, NULL);
		}
	}
}

static int n_bad;

static void on_bad(const struct strata_digest *d, int error, void *userdata)
{
	char buf[STRATA_DIGEST_STRING_MAX];
	fprintf(stderr, "bad blob %s: %d\n", strata_digest_format(d, buf), error);
	n_bad++;
}

static void check_store(struct fixture *f)
{
	char path[256];
	DIR *dir;
	struct dirent *de;

	assert_int_equal(fixture_open_store(f, NULL), 0);

	n_bad = 0;
	assert_int_equal(content_verify_all(f->store, on_bad, NULL, NULL), 0);

	snprintf(path, sizeof(path), "%s/content/blobs/sha256", f->root);
	dir = opendir(path);
	assert_non_null(dir);
	while ((de = readdir(dir))) {
		char s[300];
		struct strata_digest d;

		if (de->d_name[0] == '.')
			continue;
		snprintf(s, sizeof(s), "sha256:%s", de->d_name);
		assert_int_equal(strata_digest_parse(s, &d, NULL), 0);
		if (content_info(f->store, &d, NULL, NULL) != 0)
			fail_msg("blob file %s is not indexed", de->d_name);
	}
	closedir(dir);

	snprintf(path, sizeof(path), "%s/content/ingest", f->root);
	dir = opendir(path);
	assert_non_null(dir);
	while ((de = readdir(dir))) {
		char data[600];
		struct stat st;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (de->d_name[0] == '.')
			fail_msg("leftover ingest %s", de->d_name);
		snprintf(data, sizeof(data), "%s/%s/data", path, de->d_name);
		assert_int_equal(stat(data, &st), 0);
		if (st.st_nlink != 1)
			fail_msg("ingest %s is half-committed", de->d_name);
	}
	closedir(dir);

	fixture_close_store(f);
}

static void test_crash(void **state)
{
	struct fixture *f = fixture_new();
	struct timespec t0, t1;
	unsigned seed = (unsigned)time(NULL);

	fprintf(stderr, "# seed %u\n", seed);
	log_set_level(LOG_LEVEL_WARN);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < ITERATIONS; i++) {
		/* delays from 0 to 60 ms: some kills land in the startup check,
		 * most in the write/commit loop */
		useconds_t delay = (useconds_t)(rand_r(&seed) % 60000);
		unsigned child_seed = (unsigned)rand_r(&seed);
		int status;
		pid_t pid;

		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			child_main(f, child_seed);
		usleep(delay);
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFSIGNALED(status))
			fail_msg("child exited early with %d", WEXITSTATUS(status));
		check_store(f);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "# %d kills in %.1f s\n", ITERATIONS,
	        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
