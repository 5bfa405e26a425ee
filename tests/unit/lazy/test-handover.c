/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy layers across a daemon restart (snapshotter/lazy-handover.c), with
 * real FUSE mounts and the real fd holder: this binary is what the library
 * execs as the holder (/proc/self/exe serve --fuse-fd-holder), so main()
 * runs snap_lazy_holder_main() when called that way.
 *
 * The layers are metadata-only (empty files, directories, a symlink): the
 * FUSE side is what is under test, and no request needs the registry. The
 * "daemon" is a lazy manager; a crash is a forked child that exits without
 * cleaning up.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "lazy-internal.h"
#include "snapshotter.h"

#define LAYER_ID 7

static const char toc_json[] = "{\"version\":1,\"entries\":["
                               "{\"name\":\"d\",\"type\":\"dir\",\"mode\":493},"
                               "{\"name\":\"d/hello\",\"type\":\"reg\",\"size\":0,\"mode\":420},"
                               "{\"name\":\"d/later\",\"type\":\"reg\",\"size\":0,\"mode\":384},"
                               "{\"name\":\"link\",\"type\":\"symlink\",\"linkName\":\"d/hello\"},"
                               "{\"name\":\"e\",\"type\":\"reg\",\"size\":0,\"mode\":420}]}";

/* A layer left mounted for the next daemon keeps libfuse's copy of its
 * mountpoint (only fuse_session_unmount() frees it, and it would unmount):
 * one string per kept layer, at exit. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:fuse_session_mount\n";
}

static char tmpdir[] = "/tmp/strata-handover-XXXXXX";
static char root[256], mnt[300], sock[300], pidfile[300];

static bool mounted(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], mp[2048];
	bool found = false;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %*s %*s %*s %2047s", mp) == 1 && streq(mp, path))
			found = true;
	return found;
}

static struct lazy_manager *manager(bool keep)
{
	struct lazy_options o = {.no_prefetch = true, .no_background = true, .handover = keep};
	struct lazy_manager *m = NULL;

	assert_int_equal(lazy_manager_new(root, &o, NULL, &m, NULL), 0);
	return m;
}

/* Mount (or resume) the test layer in m. */
static void start_layer(struct lazy_manager *m)
{
	struct content_estargz_toc *toc = NULL;
	struct lazy_layer *l = NULL;
	struct strata_digest d = {0};
	_cleanup_error_ struct strata_error *err = NULL;

	assert_int_equal(
	        content_estargz_toc_parse(toc_json, strlen(toc_json), NULL, 1 << 20, &toc, NULL),
	        0);
	assert_int_equal(strata_digest_parse("sha256:0000000000000000000000000000000000000000000000"
	                                     "000000000000000000",
	                                     &d, NULL),
	                 0);
	assert_int_equal(lazy_layer_new(m, LAYER_ID, "127.0.0.1:1/test/handover:latest", &d,
	                                1 << 21, toc, mnt, &l),
	                 0);
	if (lazy_layer_start(l, &err) < 0) {
		lazy_layer_free(l);
		fail_msg("start: %s", strata_error_message(err));
	}
}

/* The holder writes its pid file once it runs: wait for it a little. */
static pid_t holder_pid_wait(int tries)
{
	for (int i = 0; i < tries; i++) {
		_cleanup_free_ char *s = NULL;
		if (path_read_file_at(AT_FDCWD, pidfile, 64, &s, NULL) == 0)
			return (pid_t)atoi(s);
		usleep(20000);
	}
	return 0;
}

static pid_t holder_pid(void)
{
	return holder_pid_wait(250);
}

/* The holder exits once it keeps nothing and no daemon is connected. */
static void assert_holder_gone(pid_t pid)
{
	for (int i = 0; i < 100 && pid > 0 && kill(pid, 0) == 0; i++)
		usleep(50000);
	assert_true(pid <= 0 || kill(pid, 0) < 0);
	assert_int_equal(access(sock, F_OK), -1);
	assert_int_equal(access(pidfile, F_OK), -1);
}

/* Graceful: a layer in use (a directory open on it) stays mounted when its
 * manager is freed; the next manager resumes it and answers lookups the
 * old one never saw, on the same open directory. */
static void test_graceful(void **state)
{
	struct lazy_manager *m = manager(true);
	_cleanup_close_ int dfd = -1;
	char target[64];
	struct stat st;
	ino_t hello;
	pid_t holder;
	ssize_t n;

	start_layer(m);
	holder = holder_pid();
	assert_true(holder > 0);
	dfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(fstatat(dfd, "d/hello", &st, 0), 0);
	hello = st.st_ino;

	lazy_manager_free(m); /* the "daemon" stops */
	assert_true(mounted(mnt));
	assert_int_equal(kill(holder, 0), 0);

	m = manager(true);
	start_layer(m);
	assert_int_equal(holder_pid(), holder); /* the same holder */
	/* never looked up before: served by the new manager */
	assert_int_equal(fstatat(dfd, "d/later", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	n = readlinkat(dfd, "link", target, sizeof(target));
	assert_int_equal(n, 7);
	assert_memory_equal(target, "d/hello", 7);
	/* inode numbers are the TOC's: the same in the new daemon */
	assert_int_equal(fstatat(dfd, "d/hello", &st, 0), 0);
	assert_int_equal(st.st_ino, hello);
	assert_int_equal(fstatat(dfd, "nothere", &st, 0), -1);
	assert_int_equal(errno, ENOENT);

	/* removing the snapshot unmounts for good */
	lazy_manager_drop(m, LAYER_ID);
	dfd = safe_close(dfd);
	assert_false(mounted(mnt));
	lazy_manager_free(m);
	assert_holder_gone(holder);
}

/* Crash: the serving process dies without any cleanup; the holder keeps
 * the connection and the next manager resumes it. */
static void test_crash(void **state)
{
	_cleanup_close_ int dfd = -1;
	struct lazy_manager *m;
	int ready[2], go[2], status;
	struct stat st;
	pid_t child, holder;
	char c = 0;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		m = manager(true);
		start_layer(m);
		(void)write(ready[1], "r", 1);
		(void)read(go[0], &c, 1);
		_exit(0); /* no lazy_manager_free: a crash */
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	dfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(fstatat(dfd, "e", &st, 0), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	holder = holder_pid();
	assert_true(holder > 0);
	assert_int_equal(kill(holder, 0), 0);
	assert_true(mounted(mnt));

	m = manager(true);
	start_layer(m);
	assert_int_equal(fstatat(dfd, "d/later", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	lazy_manager_drop(m, LAYER_ID);
	dfd = safe_close(dfd);
	assert_false(mounted(mnt));
	lazy_manager_free(m);
	assert_holder_gone(holder);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
}

/* Idle layers are unmounted on a clean stop, and the holder goes. */
static void test_idle_unmounted(void **state)
{
	struct lazy_manager *m = manager(true);
	pid_t holder;

	start_layer(m);
	holder = holder_pid();
	assert_true(holder > 0);
	assert_true(mounted(mnt));
	lazy_manager_free(m);
	assert_false(mounted(mnt));
	assert_holder_gone(holder);
}

/* Without handover (unit users, --unmount-on-exit) nothing is kept, and
 * no holder is started; a holder's connection is still taken over. */
static void test_no_handover(void **state)
{
	_cleanup_close_ int dfd = -1;
	struct lazy_manager *m = manager(true);
	struct stat st;
	pid_t holder;

	start_layer(m);
	holder = holder_pid();
	dfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	lazy_manager_free(m);
	assert_true(mounted(mnt));

	/* a daemon with --unmount-on-exit after one without */
	m = manager(false);
	start_layer(m);
	assert_int_equal(fstatat(dfd, "d/later", &st, 0), 0);
	lazy_manager_free(m);
	assert_false(mounted(mnt));
	dfd = safe_close(dfd);
	assert_holder_gone(holder);

	m = manager(false);
	start_layer(m);
	assert_int_equal(holder_pid_wait(5), 0);
	assert_int_equal(access(sock, F_OK), -1);
	lazy_manager_free(m);
	assert_false(mounted(mnt));
}

/* "In use" sees an overlay stacking the mountpoint, absolutely or by a
 * relative lowerdir. */
static void test_in_use_overlay(void **state)
{
	char lower2[320], upper[320], work[320], ovl[320], opts[1400];

	snprintf(lower2, sizeof(lower2), "%s/lower2", tmpdir);
	snprintf(upper, sizeof(upper), "%s/upper", tmpdir);
	snprintf(work, sizeof(work), "%s/work", tmpdir);
	snprintf(ovl, sizeof(ovl), "%s/ovl", tmpdir);
	assert_int_equal(path_mkdir_p(lower2, 0755), 0);
	assert_int_equal(path_mkdir_p(upper, 0755), 0);
	assert_int_equal(path_mkdir_p(work, 0755), 0);
	assert_int_equal(path_mkdir_p(ovl, 0755), 0);
	assert_int_equal(mount("tmpfs", mnt, "tmpfs", 0, NULL), 0);
	snprintf(opts, sizeof(opts), "lowerdir=%s:%s,upperdir=%s,workdir=%s", mnt, lower2, upper,
	         work);
	assert_int_equal(mount("overlay", ovl, "overlay", 0, opts), 0);
	assert_true(lazy_handover_in_use(mnt, 0));
	assert_true(mounted(mnt));
	assert_int_equal(umount2(ovl, 0), 0);
	/* idle: in_use unmounts it */
	assert_false(lazy_handover_in_use(mnt, 0));
	assert_false(mounted(mnt));
}

static int setup(void **state)
{
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(root, sizeof(root), "%s/root", tmpdir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", tmpdir);
	snprintf(sock, sizeof(sock), "%s/run/fuse-fds.sock", root);
	snprintf(pidfile, sizeof(pidfile), "%s/run/fuse-fds.pid", root);
	return path_mkdir_p(mnt, 0755) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	pid_t holder = holder_pid_wait(1);

	for (int i = 0; i < 8; i++)
		(void)umount2(mnt, MNT_DETACH);
	if (holder > 0)
		kill(holder, SIGKILL);
	(void)path_rm_rf_at(AT_FDCWD, tmpdir);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_graceful),       cmocka_unit_test(test_crash),
	        cmocka_unit_test(test_idle_unmounted), cmocka_unit_test(test_no_handover),
	        cmocka_unit_test(test_in_use_overlay),
	};

	/* the library execs us as its fd holder */
	if (argc == 3 && streq(argv[1], "serve") && streq(argv[2], "--fuse-fd-holder"))
		return snap_lazy_holder_main() < 0 ? 1 : 0;
	if (geteuid() != 0)
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
