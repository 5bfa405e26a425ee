/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Path and fd helpers that keep every write beneath a chosen directory.
 *
 * path_openat() uses openat2(2) with RESOLVE_BENEATH or RESOLVE_IN_ROOT when
 * the kernel has it (5.6+). Where it does not (ENOSYS, or seccomp returning
 * EPERM), it falls back to a component-by-component walk with O_NOFOLLOW that
 * refuses "..", absolute paths and any symlink in an intermediate component:
 * stricter than the kernel, never looser.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

enum path_resolve {
	/* Fail with -EXDEV when resolution would leave dirfd ("..", absolute
	 * paths or symlinks pointing outside). */
	PATH_RESOLVE_BENEATH = 1 << 0,
	/* Treat dirfd as "/": absolute symlinks and ".." are clamped inside it
	 * (what a container sees). */
	PATH_RESOLVE_IN_ROOT = 1 << 1,
	/* Refuse every symlink (-ELOOP), including the last component. */
	PATH_RESOLVE_NO_SYMLINKS = 1 << 2,
	/* Refuse crossing into another mount (-EXDEV). */
	PATH_RESOLVE_NO_XDEV = 1 << 3,
};

/* openat() confined to dirfd. Returns an fd or -errno. */
int path_openat(int dirfd, const char *path, int flags, mode_t mode, unsigned resolve);

/* Whether the running kernel supports openat2 (cached after the first call). */
bool path_have_openat2(void);
/* Tests only: pretend openat2 is missing, to exercise the fallback. */
void path_force_fallback(bool on);

/*
 * Normalise a relative path from untrusted input (a tar entry, a TOC entry):
 * strips leading "/" and "./", collapses "//" and "." components, and
 * rejects any ".." component with -EINVAL. "" or "." become ".".
 * The result is malloc'd in *ret.
 */
int path_normalize_relative(const char *path, char **ret);

/* Split "a/b/c" into a malloc'd parent ("a/b", or "." ) and a pointer to the
 * last component inside `path`. */
int path_split(const char *path, char **ret_parent, const char **ret_base);

/* mkdir -p beneath dirfd (RESOLVE_BENEATH semantics). Existing dirs are fine. */
int path_mkdir_p_at(int dirfd, const char *path, mode_t mode);
/* mkdir -p of an absolute or relative path (trusted: our own root). */
int path_mkdir_p(const char *path, mode_t mode);

/* rm -rf of name inside dirfd; never crosses into another mount (a mounted
 * directory is reported with -EBUSY rather than emptied). Missing is fine. */
int path_rm_rf_at(int dirfd, const char *name);

/* Write a whole file atomically: temp file in the same dir, fsync, rename,
 * fsync of the directory. */
int path_write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len,
                              mode_t mode);
/* Read a whole file (at most max bytes, else -EFBIG) into a NUL-terminated
 * malloc'd buffer. */
int path_read_file_at(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len);

int path_fsync_dir_at(int dirfd, const char *name);

/* write()/read()/pwrite() until done, retrying EINTR; -errno on failure.
 * loop_read returns the bytes read (short only at EOF). */
int loop_write(int fd, const void *buf, size_t len);
ssize_t loop_read(int fd, void *buf, size_t len);
int loop_pwrite(int fd, const void *buf, size_t len, uint64_t off);
ssize_t loop_pread(int fd, void *buf, size_t len, uint64_t off);

/* Join two path pieces with exactly one "/" between them (malloc'd). */
char *path_join(const char *a, const char *b);
