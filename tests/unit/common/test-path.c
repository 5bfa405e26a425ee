/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common.h"

struct fixture {
	char dir[64];
	int root; /* fd of dir/root: the confinement root */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/strata-path-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	/* dir/root is the confinement root; dir/outside is a sentinel */
	assert_int_equal(path_mkdir_p_at(AT_FDCWD, f->dir, 0755), 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/root/sub", f->dir);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/outside", f->dir);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/root", f->dir);
	f->root = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->root >= 0);
	/* escape attempts: absolute and relative symlinks pointing out */
	assert_int_equal(symlinkat("/", f->root, "abs"), 0);
	assert_int_equal(symlinkat("../outside", f->root, "rel"), 0);
	assert_int_equal(symlinkat("sub", f->root, "inside"), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->root);
	assert_int_equal(path_rm_rf_at(AT_FDCWD, f->dir), 0);
	free(f);
	path_force_fallback(false);
	return 0;
}

static int outside_is_empty(struct fixture *f)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/outside/x", f->dir);
	return access(p, F_OK) < 0 && errno == ENOENT;
}

static void check_confinement(struct fixture *f)
{
	int fd;

	/* plain create inside works */
	fd = path_openat(f->root, "sub/file", O_WRONLY | O_CREAT, 0644, PATH_RESOLVE_BENEATH);
	assert_true(fd >= 0);
	close(fd);
	/* "..", absolute paths and symlinks out are refused */
	assert_true(path_openat(f->root, "../outside/x", O_WRONLY | O_CREAT, 0644,
	                        PATH_RESOLVE_BENEATH) < 0);
	assert_true(path_openat(f->root, "/etc/passwd", O_RDONLY, 0, PATH_RESOLVE_BENEATH) < 0);
	assert_true(path_openat(f->root, "rel/x", O_WRONLY | O_CREAT, 0644, PATH_RESOLVE_BENEATH) <
	            0);
	assert_true(path_openat(f->root, "abs/tmp/x", O_WRONLY | O_CREAT, 0644,
	                        PATH_RESOLVE_BENEATH) < 0);
	assert_true(outside_is_empty(f));
	/* NO_SYMLINKS refuses even a symlink that stays inside */
	assert_true(path_openat(f->root, "inside/file", O_RDONLY, 0,
	                        PATH_RESOLVE_BENEATH | PATH_RESOLVE_NO_SYMLINKS) < 0);
	assert_int_equal(path_openat(f->root, "", O_RDONLY, 0, PATH_RESOLVE_BENEATH), -EINVAL);
}

static void test_confinement_openat2(void **state)
{
	struct fixture *f = *state;
	if (!path_have_openat2())
		skip();
	check_confinement(f);
	/* with the kernel, a symlink that stays inside resolves */
	int fd = path_openat(f->root, "inside/file", O_RDONLY, 0, PATH_RESOLVE_BENEATH);
	assert_true(fd >= 0);
	close(fd);
	/* IN_ROOT clamps an absolute symlink to the root: abs/sub/file is root/sub/file */
	fd = path_openat(f->root, "abs/sub/file", O_RDONLY, 0, PATH_RESOLVE_IN_ROOT);
	assert_true(fd >= 0);
	close(fd);
}

static void test_confinement_fallback(void **state)
{
	struct fixture *f = *state;
	path_force_fallback(true);
	assert_false(path_have_openat2());
	check_confinement(f);
	/* the fallback is stricter: any intermediate symlink is refused */
	assert_int_equal(path_openat(f->root, "inside/file", O_RDONLY, 0, PATH_RESOLVE_BENEATH),
	                 -ELOOP);
	/* a final symlink is not followed either */
	assert_true(path_openat(f->root, "abs", O_RDONLY, 0, PATH_RESOLVE_BENEATH) < 0);
	int fd = path_openat(f->root, "./sub//file", O_RDONLY, 0, PATH_RESOLVE_BENEATH);
	assert_true(fd >= 0);
	close(fd);
	path_force_fallback(false);
}

static void expect_norm(const char *in, const char *out)
{
	_cleanup_free_ char *r = NULL;
	assert_int_equal(path_normalize_relative(in, &r), 0);
	assert_string_equal(r, out);
}

static void test_normalize(void **state)
{
	_cleanup_free_ char *r = NULL;
	expect_norm("a/b", "a/b");
	expect_norm("/a//b/./c/", "a/b/c");
	expect_norm("./", ".");
	expect_norm("", ".");
	expect_norm("...", "...");
	expect_norm("a/..b", "a/..b");
	assert_int_equal(path_normalize_relative("a/../b", &r), -EINVAL);
	assert_int_equal(path_normalize_relative("../x", &r), -EINVAL);
	assert_int_equal(path_normalize_relative("/..", &r), -EINVAL);
	assert_int_equal(path_normalize_relative(NULL, &r), -EINVAL);
	assert_null(r);
}

static void test_split_join(void **state)
{
	_cleanup_free_ char *p1 = NULL, *p2 = NULL, *p3 = NULL, *j1 = NULL, *j2 = NULL;
	const char *base;
	assert_int_equal(path_split("a/b/c", &p1, &base), 0);
	assert_string_equal(p1, "a/b");
	assert_string_equal(base, "c");
	assert_int_equal(path_split("c", &p2, &base), 0);
	assert_string_equal(p2, ".");
	assert_int_equal(path_split("/c", &p3, &base), 0);
	assert_string_equal(p3, "/");
	j1 = path_join("/var/lib/", "/x");
	j2 = path_join("/", "y");
	assert_string_equal(j1, "/var/lib/x");
	assert_string_equal(j2, "/y");
}

static void test_mkdir_p_at(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	assert_int_equal(path_mkdir_p_at(f->root, "a/b/c", 0700), 0);
	assert_int_equal(path_mkdir_p_at(f->root, "a/b/c", 0700), 0); /* idempotent */
	assert_int_equal(fstatat(f->root, "a/b/c", &st, 0), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(path_mkdir_p_at(f->root, "a/../../x", 0700), -EINVAL);
	/* a symlink on the way is not followed */
	assert_int_equal(path_mkdir_p_at(f->root, "rel/x", 0700), -ENOTDIR);
	assert_true(outside_is_empty(f));
}

static void test_atomic_write_and_read(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	struct stat st;
	assert_int_equal(path_write_file_atomic_at(f->root, "sub/cfg", "hello", 5, 0640), 0);
	assert_int_equal(path_read_file_at(f->root, "sub/cfg", 1024, &buf, &len), 0);
	assert_int_equal(len, 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(fstatat(f->root, "sub/cfg", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	free(TAKE_PTR(buf));
	assert_int_equal(path_read_file_at(f->root, "sub/cfg", 4, &buf, &len), -EFBIG);
	assert_int_equal(path_read_file_at(f->root, "sub/none", 4, &buf, &len), -ENOENT);
	/* no temp file left behind */
	assert_int_equal(faccessat(f->root, "sub/.cfg.tmp", F_OK, 0), -1);
	assert_int_equal(path_write_file_atomic_at(f->root, "nodir/cfg", "x", 1, 0600), -ENOENT);
}

static void test_rm_rf(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(path_mkdir_p_at(f->root, "t/a/b", 0755), 0);
	int fd = openat(f->root, "t/a/b/file", O_CREAT | O_WRONLY, 0644);
	close(fd);
	assert_int_equal(symlinkat("/", f->root, "t/a/escape"), 0);
	assert_int_equal(path_rm_rf_at(f->root, "t"), 0);
	assert_int_equal(faccessat(f->root, "t", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(path_rm_rf_at(f->root, "t"), 0); /* missing is fine */
	/* the symlink to / was removed, not followed: / is intact */
	assert_int_equal(access("/etc", F_OK), 0);
}

static void test_loop_io(void **state)
{
	int p[2];
	char buf[8];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(loop_write(p[1], "abcdef", 6), 0);
	close(p[1]);
	assert_int_equal(loop_read(p[0], buf, sizeof(buf)), 6);
	assert_int_equal(loop_read(p[0], buf, sizeof(buf)), 0);
	close(p[0]);
	assert_int_equal(loop_write(p[1], "x", 1), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_confinement_openat2, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_confinement_fallback, setup, teardown),
	        cmocka_unit_test(test_normalize),
	        cmocka_unit_test(test_split_join),
	        cmocka_unit_test_setup_teardown(test_mkdir_p_at, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_atomic_write_and_read, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rm_rf, setup, teardown),
	        cmocka_unit_test(test_loop_io),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
