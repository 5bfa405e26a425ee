/* SPDX-License-Identifier: Apache-2.0 */
/* Confined path resolution and small file helpers (see path.h). */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "path.h"

static atomic_int openat2_state; /* 0 unknown, 1 available, -1 missing */
static bool force_fallback;

void path_force_fallback(bool on)
{
	force_fallback = on;
}

static int sys_openat2(int dirfd, const char *path, struct open_how *how)
{
	long r = syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
	return r < 0 ? -errno : (int)r;
}

bool path_have_openat2(void)
{
	int s = atomic_load(&openat2_state);

	if (force_fallback)
		return false;
	if (s == 0) {
		struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
		int fd = sys_openat2(AT_FDCWD, ".", &how);
		/* ENOSYS: old kernel; EPERM: seccomp policies that block it. */
		s = (fd == -ENOSYS || fd == -EPERM) ? -1 : 1;
		if (fd >= 0)
			(void)close(fd);
		atomic_store(&openat2_state, s);
	}
	return s > 0;
}

/*
 * Fallback: walk each component with O_NOFOLLOW. Intermediate symlinks,
 * ".." and absolute paths are refused; a final symlink is refused unless the
 * caller passed O_NOFOLLOW|O_PATH-like flags that do not follow it anyway.
 */
static int openat_walk(int dirfd, const char *path, int flags, mode_t mode, unsigned resolve)
{
	_cleanup_free_ char *copy = NULL;
	_cleanup_close_ int cur = -1;
	char *save = NULL, *comp, *next;
	int r;

	if (path[0] == '/' && !(resolve & PATH_RESOLVE_IN_ROOT))
		return -EXDEV;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	cur = openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return negative_errno();

	comp = strtok_r(copy, "/", &save);
	if (!comp) {
		r = openat(dirfd, ".", flags | O_CLOEXEC, mode);
		return r < 0 ? negative_errno() : r;
	}
	for (; comp; comp = next) {
		next = strtok_r(NULL, "/", &save);
		if (streq(comp, "."))
			continue;
		if (streq(comp, ".."))
			return (resolve & PATH_RESOLVE_IN_ROOT) ? -EINVAL : -EXDEV;
		if (!next) {
			/* Last component: never follow a symlink here either. */
			r = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
			if (r < 0)
				return negative_errno();
			return r;
		}
		r = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (r < 0)
			return errno == ENOTDIR ? -ELOOP : negative_errno();
		(void)safe_close(cur);
		cur = r;
	}
	/* Path was only "." components. */
	r = openat(cur, ".", flags | O_CLOEXEC, mode);
	return r < 0 ? negative_errno() : r;
}

int path_openat(int dirfd, const char *path, int flags, mode_t mode, unsigned resolve)
{
	struct open_how how = {0};
	int r;

	if (!path || !*path)
		return -EINVAL;
	if (!path_have_openat2())
		return openat_walk(dirfd, path, flags, mode, resolve);

	how.flags = (uint64_t)(flags | O_CLOEXEC);
	if (flags & (O_CREAT | O_TMPFILE))
		how.mode = mode;
	if (resolve & PATH_RESOLVE_BENEATH)
		how.resolve |= RESOLVE_BENEATH;
	if (resolve & PATH_RESOLVE_IN_ROOT)
		how.resolve |= RESOLVE_IN_ROOT;
	if (resolve & PATH_RESOLVE_NO_SYMLINKS)
		how.resolve |= RESOLVE_NO_SYMLINKS;
	if (resolve & PATH_RESOLVE_NO_XDEV)
		how.resolve |= RESOLVE_NO_XDEV;
	/* The kernel answers EAGAIN when a concurrent rename raced the lookup. */
	for (int tries = 0; tries < 16; tries++) {
		r = sys_openat2(dirfd, path, &how);
		if (r != -EAGAIN)
			return r;
	}
	return r;
}

int path_normalize_relative(const char *path, char **ret)
{
	_cleanup_free_ char *out = NULL;
	size_t len = 0;
	const char *p = path;

	if (!path)
		return -EINVAL;
	out = malloc(strlen(path) + 2);
	if (!out)
		return -ENOMEM;

	while (*p) {
		const char *start;
		size_t n;

		while (*p == '/')
			p++;
		start = p;
		while (*p && *p != '/')
			p++;
		n = (size_t)(p - start);
		if (n == 0 || (n == 1 && start[0] == '.'))
			continue;
		if (n == 2 && start[0] == '.' && start[1] == '.')
			return -EINVAL;
		if (len > 0)
			out[len++] = '/';
		memcpy(out + len, start, n);
		len += n;
	}
	if (len == 0)
		out[len++] = '.';
	out[len] = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

int path_split(const char *path, char **ret_parent, const char **ret_base)
{
	const char *slash = strrchr(path, '/');
	char *parent;

	if (!slash) {
		parent = strdup(".");
		*ret_base = path;
	} else {
		parent = strndup(path, slash == path ? 1 : (size_t)(slash - path));
		*ret_base = slash + 1;
	}
	if (!parent)
		return -ENOMEM;
	*ret_parent = parent;
	return 0;
}

int path_mkdir_p_at(int dirfd, const char *path, mode_t mode)
{
	_cleanup_free_ char *norm = NULL;
	_cleanup_close_ int cur = -1;
	char *save = NULL;
	int r;

	r = path_normalize_relative(path, &norm);
	if (r < 0)
		return r;
	cur = openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return negative_errno();
	if (streq(norm, "."))
		return 0;
	for (char *comp = strtok_r(norm, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		int fd;
		if (mkdirat(cur, comp, mode) < 0 && errno != EEXIST)
			return negative_errno();
		fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOTDIR ? -ENOTDIR : negative_errno();
		(void)safe_close(cur);
		cur = fd;
	}
	return 0;
}

int path_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *copy = strdup(path);
	char *p;

	if (!copy)
		return -ENOMEM;
	for (p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, mode) < 0 && errno != EEXIST)
			return negative_errno();
		*p = '/';
	}
	if (mkdir(copy, mode) < 0 && errno != EEXIST)
		return negative_errno();
	return 0;
}

static int rm_rf_children(int dfd, dev_t dev)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int ret = 0;

	if (!d) {
		(void)close(dfd);
		return negative_errno();
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT && ret == 0)
				ret = negative_errno();
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int cfd;
			if (st.st_dev != dev) {
				if (ret == 0)
					ret = -EBUSY;
				continue;
			}
			cfd = openat(dirfd(d), de->d_name,
			             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				if (ret == 0)
					ret = negative_errno();
				continue;
			}
			int r = rm_rf_children(cfd, dev);
			if (r < 0 && ret == 0)
				ret = r;
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT &&
			    ret == 0)
				ret = negative_errno();
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && ret == 0) {
			ret = negative_errno();
		}
	}
	(void)closedir(d);
	return ret;
}

int path_rm_rf_at(int dirfd, const char *name)
{
	struct stat st, parent;
	int fd, r;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : negative_errno();
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
	if (fstat(dirfd, &parent) == 0 && parent.st_dev != st.st_dev)
		return -EBUSY; /* a mount point: unmount first */
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	r = rm_rf_children(fd, st.st_dev);
	if (r < 0)
		return r;
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return negative_errno();
	return 0;
}

int loop_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t loop_read(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t done = 0;
	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int loop_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t loop_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int path_fsync_dir_at(int dirfd, const char *name)
{
	_cleanup_close_ int fd =
	        openat(dirfd, name ? name : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	return fsync(fd) < 0 ? negative_errno() : 0;
}

int path_write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len,
                              mode_t mode)
{
	_cleanup_free_ char *parent = NULL, *tmp = NULL;
	_cleanup_close_ int fd = -1;
	const char *base;
	int r;

	r = path_split(name, &parent, &base);
	if (r < 0)
		return r;
	if (asprintf(&tmp, "%s/.%s.tmp.%d", parent, base, (int)getpid()) < 0)
		return -ENOMEM;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return negative_errno();
	r = loop_write(fd, data, len);
	if (r >= 0 && fchmod(fd, mode) < 0)
		r = negative_errno();
	if (r >= 0 && fsync(fd) < 0)
		r = negative_errno();
	if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = negative_errno();
	if (r < 0) {
		(void)unlinkat(dirfd, tmp, 0);
		return r;
	}
	return path_fsync_dir_at(dirfd, parent);
}

int path_read_file_at(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	n = loop_read(fd, buf, (size_t)st.st_size);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	if (ret_len)
		*ret_len = (size_t)n;
	*ret = TAKE_PTR(buf);
	return 0;
}

char *path_join(const char *a, const char *b)
{
	char *out = NULL;
	size_t la = strlen(a);

	while (la > 0 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	if (asprintf(&out, "%.*s/%s", (int)la, a, b) < 0)
		return NULL;
	return out;
}
