/* SPDX-License-Identifier: Apache-2.0 */
/* Shared fixture for the snapshotter tests: a temp root with its own LMDB
 * environment and store, torn down (mounts included) even on failure. */
#pragma once

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "snapshotter.h"

#include <alloca.h>

/* a + b on the stack (test helper). */
#define strjoina_(a, b)                                    \
	({                                                 \
		const char *_a = (a), *_b = (b);           \
		size_t _la = strlen(_a), _lb = strlen(_b); \
		char *_p = alloca(_la + _lb + 1);          \
		memcpy(_p, _a, _la);                       \
		memcpy(_p + _la, _b, _lb + 1);             \
		_p;                                        \
	})

struct fixture {
	char root[64];
	struct strata_meta *meta;
	struct snap_store *store;
};

static inline void fixture_open_store(struct fixture *f)
{
	_cleanup_free_ char *metadir = path_join(f->root, "meta");
	struct strata_error *err = NULL;

	assert_int_equal(strata_meta_open(metadir, NULL, &f->meta, &err), 0);
	assert_int_equal(snap_store_open(f->root, f->meta, NULL, &f->store, &err), 0);
}

static inline void fixture_close_store(struct fixture *f)
{
	f->store = snap_store_close(f->store);
	f->meta = strata_meta_close(f->meta);
}

static inline int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->root, sizeof(f->root), "/tmp/strata-snap-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	fixture_open_store(f);
	*state = f;
	return 0;
}

/* Unmount everything under the root, deepest first (mountinfo lists
 * parents before children). */
static inline void unmount_under(const char *root)
{
	char *lines[4096];
	size_t n = 0, rl = strlen(root);
	char buf[8192];
	FILE *mi = fopen("/proc/self/mountinfo", "re");

	if (!mi)
		return;
	while (n < 4096 && fgets(buf, sizeof(buf), mi)) {
		char mp[4096];
		if (sscanf(buf, "%*s %*s %*s %*s %4095s", mp) == 1 && strncmp(mp, root, rl) == 0)
			lines[n++] = strdup(mp);
	}
	fclose(mi);
	while (n > 0) {
		(void)umount2(lines[n - 1], MNT_DETACH);
		free(lines[--n]);
	}
}

static inline int fixture_teardown(void **state)
{
	struct fixture *f = *state;
	_cleanup_close_ int fd = -1;
	char *slash;

	unmount_under(f->root);
	fixture_close_store(f);
	slash = strrchr(f->root, '/');
	*slash = '\0';
	fd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	(void)path_rm_rf_at(fd, slash + 1);
	free(f);
	return 0;
}

/* ROOT/<name>, created as a directory (mount target). */
static inline char *fixture_dir(struct fixture *f, const char *name)
{
	char *p = path_join(f->root, name);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	return p;
}

static inline void write_text(const char *dir, const char *name, const char *text)
{
	_cleanup_free_ char *p = path_join(dir, name);
	FILE *fp = fopen(p, "we");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

/* Contents of dir/name, or NULL when it cannot be read. */
static inline char *read_text(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_join(dir, name);
	char *buf = NULL;
	size_t len;

	if (path_read_file_at(AT_FDCWD, p, 1 << 20, &buf, &len) < 0)
		return NULL;
	return buf;
}

static inline void assert_text(const char *dir, const char *name, const char *want)
{
	_cleanup_free_ char *got = read_text(dir, name);
	if (!got)
		fail_msg("%s/%s: cannot read", dir, name);
	assert_string_equal(got, want);
}

static inline bool exists_at(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_join(dir, name);
	struct stat st;
	return lstat(p, &st) == 0;
}

/* Mount the snapshot's mounts on target, failing the test on error. */
static inline void mount_or_fail(struct snap_mount *m, size_t n, const char *target)
{
	struct strata_error *err = NULL;
	int r = snap_mount_apply(m, n, target, &err);
	if (r < 0)
		fail_msg("mount on %s: %s", target, strata_error_message(err));
}
