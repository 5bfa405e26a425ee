/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer apply: an OCI tar diff streamed into an overlay upper directory,
 * with the diff ID computed in the same pass.
 *
 * Two libarchive readers in a chain: the first ("raw" format, compression
 * filters) turns the caller's bytes into the uncompressed tar stream, which
 * is hashed as it passes into the second (tar format) through its read
 * callback. So the diff ID covers exactly the bytes the tar reader sees, plus
 * any trailing padding drained at the end.
 *
 * Entries are written with *at() calls relative to a parent directory fd
 * opened with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, so nothing can be written
 * outside the root: "..", absolute names, parents that are symlinks (even
 * ones pointing inside) and hard links out of the layer are refused with
 * -EINVAL naming the entry. containerd resolves symlinked parents inside the
 * root instead; refusing them is stricter and no image builder emits them.
 *
 * Semantics follow containerd's applyNaive with OverlayConvertWhiteout: an
 * entry replacing something of another type removes it first, a directory
 * over a directory keeps its contents and takes the new metadata, directory
 * times are set after everything else so later entries do not disturb them.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "snap-internal.h"

#define IN_BUF_SIZE (256 * 1024)

struct source {
	snap_read_fn read;
	void *userdata;
	char *buf;
	int err; /* the caller's read error, to report it as such */
};

struct stream {
	struct archive *raw;
	struct strata_hasher *hasher;
	int64_t total;
	bool eof;
};

struct dir_time {
	char *path;
	struct timespec ts[2];
};

struct applier {
	int root_fd;
	const char *entry; /* current entry's name, for messages */
	struct strata_error **ret_err;

	/* the last parent directory opened; entries come grouped by directory */
	char *parent_path;
	int parent_fd;

	struct dir_time *dirs;
	size_t n_dirs, cap_dirs;
};

static ssize_t source_read_cb(struct archive *a, void *userdata, const void **ret_buf)
{
	struct source *src = userdata;
	ssize_t n = src->read(src->userdata, src->buf, IN_BUF_SIZE);

	if (n < 0) {
		src->err = (int)n;
		archive_set_error(a, (int)-n, "read layer: %s", strerror((int)-n));
		return -1;
	}
	*ret_buf = src->buf;
	return n;
}

/* Uncompressed bytes for the tar reader, hashed on the way through. */
static ssize_t stream_read_cb(struct archive *a, void *userdata, const void **ret_buf)
{
	struct stream *st = userdata;
	const void *buf;
	size_t size;
	la_int64_t off;
	int r;

	if (st->eof)
		return 0;
	r = archive_read_data_block(st->raw, &buf, &size, &off);
	if (r == ARCHIVE_EOF) {
		st->eof = true;
		return 0;
	}
	if (r < ARCHIVE_WARN) {
		archive_set_error(a, archive_errno(st->raw) ? archive_errno(st->raw) : EIO, "%s",
		                  archive_error_string(st->raw) ? archive_error_string(st->raw)
		                                                : "decompress");
		return -1;
	}
	if (strata_hasher_update(st->hasher, buf, size) < 0) {
		archive_set_error(a, ENOMEM, "hash");
		return -1;
	}
	st->total += (int64_t)size;
	*ret_buf = buf;
	return (ssize_t)size;
}

static void applier_drop_parent(struct applier *ap)
{
	free(ap->parent_path);
	ap->parent_path = NULL;
	ap->parent_fd = safe_close(ap->parent_fd);
}

static int entry_error(struct applier *ap, int code, const char *fmt, const char *detail)
{
	return strata_error_set(ap->ret_err, code, "layer entry \"%s\": %s%s", ap->entry, fmt,
	                        strempty(detail));
}

static int entry_errno(struct applier *ap, int code, const char *what)
{
	return strata_error_set_errno(ap->ret_err, code, "layer entry \"%s\": %s", ap->entry, what);
}

/* Normalise an untrusted name; absolute names and ".." are refused. what
 * names the field in messages ("path", "hard link target"). */
static int clean_name(struct applier *ap, const char *name, const char *what, char **ret)
{
	const char *why;
	int r;

	if (!name || !name[0]) {
		why = "is empty";
		goto refuse;
	}
	if (name[0] == '/') {
		why = "is an absolute path";
		goto refuse;
	}
	r = path_normalize_relative(name, ret);
	if (r != -EINVAL)
		return r;
	why = "escapes the layer (\"..\")";
refuse:
	if (streq(what, "path"))
		return strata_error_set(ap->ret_err, -EINVAL, "layer entry \"%s\": path %s",
		                        strempty(ap->entry), why);
	return strata_error_set(ap->ret_err, -EINVAL, "layer entry \"%s\": %s \"%s\" %s",
	                        strempty(ap->entry), what, strempty(name), why);
}

static bool escape_errno(int r)
{
	return r == -EXDEV || r == -ELOOP || r == -ENOTDIR;
}

/* An fd for parent (relative to the root), creating missing directories
 * like containerd's mkparent (0755). Cached: do not close it. */
static int open_parent(struct applier *ap, const char *parent, bool create, int *ret_fd)
{
	int fd, r;

	if (ap->parent_path && streq(ap->parent_path, parent)) {
		*ret_fd = ap->parent_fd;
		return 0;
	}
	applier_drop_parent(ap);
	fd = path_openat(ap->root_fd, parent, O_RDONLY | O_DIRECTORY, 0,
	                 PATH_RESOLVE_BENEATH | PATH_RESOLVE_NO_SYMLINKS);
	if (fd == -ENOENT && create) {
		r = path_mkdir_p_at(ap->root_fd, parent, 0755);
		if (r < 0 && !escape_errno(r))
			return entry_errno(ap, r, "create parent directories");
		fd = path_openat(ap->root_fd, parent, O_RDONLY | O_DIRECTORY, 0,
		                 PATH_RESOLVE_BENEATH | PATH_RESOLVE_NO_SYMLINKS);
	}
	if (escape_errno(fd))
		return strata_error_set(ap->ret_err, -EINVAL,
		                        "layer entry \"%s\": parent \"%s\" is a symlink or not a "
		                        "directory inside the layer",
		                        ap->entry, parent);
	if (fd < 0)
		return entry_errno(ap, fd, "open parent directory");
	ap->parent_path = strdup(parent);
	if (!ap->parent_path) {
		(void)close(fd);
		return -ENOMEM;
	}
	ap->parent_fd = fd;
	*ret_fd = fd;
	return 0;
}

/* Remove whatever is at pfd/base (a directory recursively). */
static int remove_existing(struct applier *ap, int pfd, const char *base, const struct stat *st)
{
	int r;

	/* pfd is the cached parent; removing its child never invalidates it. */
	if (S_ISDIR(st->st_mode)) {
		r = path_rm_rf_at(pfd, base);
	} else {
		r = unlinkat(pfd, base, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
	}
	if (r < 0)
		return entry_errno(ap, r, "remove existing file");
	return 0;
}

static int whiteout(struct applier *ap, struct archive_entry *e, int pfd, const char *base)
{
	const char *victim = base + 4;
	struct stat st;
	int r;

	if (streq(base, ".wh..wh..opq")) {
		if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
			return entry_errno(ap, negative_errno(), "set opaque xattr");
		return 0;
	}
	/* Other ".wh..wh." names are aufs bookkeeping with no overlay meaning. */
	if (strncmp(base, ".wh..wh.", 8) == 0)
		return 0;
	if (!victim[0] || streq(victim, ".") || streq(victim, ".."))
		return entry_error(ap, -EINVAL, "invalid whiteout name", NULL);
	if (fstatat(pfd, victim, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		r = remove_existing(ap, pfd, victim, &st);
		if (r < 0)
			return r;
	}
	if (mknodat(pfd, victim, S_IFCHR, makedev(0, 0)) < 0)
		return entry_errno(ap, negative_errno(), "create whiteout");
	if (fchownat(pfd, victim, archive_entry_uid(e), archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) <
	    0)
		return entry_errno(ap, negative_errno(), "chown whiteout");
	return 0;
}

static int write_data(struct applier *ap, struct archive *in, int fd, int64_t size)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;

	for (;;) {
		r = archive_read_data_block(in, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return strata_error_set(ap->ret_err, -EIO,
			                        "layer entry \"%s\": read data: %s", ap->entry,
			                        archive_error_string(in));
		r = loop_pwrite(fd, buf, len, (uint64_t)off);
		if (r < 0)
			return entry_errno(ap, r, "write");
	}
	/* sparse files end in a hole that no block covers */
	if (ftruncate(fd, size) < 0)
		return entry_errno(ap, negative_errno(), "truncate");
	return 0;
}

static int set_xattrs(struct applier *ap, struct archive_entry *e, int fd, int pfd,
                      const char *base, mode_t type)
{
	const char *name;
	const void *value;
	size_t size;
	char path[64];

	if (archive_entry_xattr_reset(e) == 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d/", pfd);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		int rc;

		if (fd >= 0) {
			rc = fsetxattr(fd, name, value, size, 0);
		} else {
			/* lsetxattr never follows base; the /proc link is the
			 * already-confined parent. */
			_cleanup_free_ char *p = path_join(path, base);
			if (!p)
				return -ENOMEM;
			rc = lsetxattr(p, name, value, size, 0);
		}
		if (rc == 0)
			continue;
		/* containerd ignores these two cases */
		if (errno == ENOTSUP || (errno == EPERM && strncmp(name, "user.", 5) == 0 &&
		                         type != AE_IFREG && type != AE_IFDIR)) {
			log_debug("layer entry \"%s\": xattr %s ignored: %m", ap->entry, name);
			continue;
		}
		return strata_error_set_errno(ap->ret_err, negative_errno(),
		                              "layer entry \"%s\": set xattr %s", ap->entry, name);
	}
	return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
	ts[1] = (struct timespec){archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	ts[0] = ts[1];
	/* containerd sets atime to the later of atime and mtime */
	if (archive_entry_atime_is_set(e)) {
		struct timespec a = {archive_entry_atime(e), archive_entry_atime_nsec(e)};
		if (a.tv_sec > ts[1].tv_sec ||
		    (a.tv_sec == ts[1].tv_sec && a.tv_nsec > ts[1].tv_nsec))
			ts[0] = a;
	}
}

static int defer_dir_time(struct applier *ap, const char *path, struct archive_entry *e)
{
	if (ap->n_dirs == ap->cap_dirs) {
		size_t cap = ap->cap_dirs ? ap->cap_dirs * 2 : 64;
		struct dir_time *a = realloc(ap->dirs, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		ap->dirs = a;
		ap->cap_dirs = cap;
	}
	ap->dirs[ap->n_dirs].path = strdup(path);
	if (!ap->dirs[ap->n_dirs].path)
		return -ENOMEM;
	entry_times(e, ap->dirs[ap->n_dirs].ts);
	ap->n_dirs++;
	return 0;
}

/* Owner, xattrs, mode, times: in that order, because chown clears setuid
 * and later writes would move the times. */
static int set_metadata(struct applier *ap, struct archive_entry *e, int fd, int pfd,
                        const char *base, mode_t type)
{
	struct timespec ts[2];
	mode_t perm = archive_entry_perm(e);
	int r;

	if (fd >= 0 ? fchown(fd, archive_entry_uid(e), archive_entry_gid(e))
	            : fchownat(pfd, base, archive_entry_uid(e), archive_entry_gid(e),
	                       AT_SYMLINK_NOFOLLOW))
		return entry_errno(ap, negative_errno(), "chown");
	r = set_xattrs(ap, e, fd, pfd, base, type);
	if (r < 0)
		return r;
	if (type != AE_IFLNK && (fd >= 0 ? fchmod(fd, perm) : fchmodat(pfd, base, perm, 0)) < 0)
		return entry_errno(ap, negative_errno(), "chmod");
	if (type == AE_IFDIR)
		return 0; /* deferred */
	entry_times(e, ts);
	if ((fd >= 0 ? futimens(fd, ts) : utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW)) < 0)
		return entry_errno(ap, negative_errno(), "set times");
	return 0;
}

static int hardlink(struct applier *ap, const char *target, int pfd, const char *base)
{
	_cleanup_free_ char *norm = NULL, *tparent = NULL;
	_cleanup_close_ int tfd = -1;
	const char *tbase;
	int r;

	r = clean_name(ap, target, "hard link target", &norm);
	if (r < 0)
		return r;
	if (streq(norm, "."))
		return entry_error(ap, -EINVAL, "hard link to the layer root", NULL);
	r = path_split(norm, &tparent, &tbase);
	if (r < 0)
		return r;
	tfd = path_openat(ap->root_fd, tparent, O_PATH | O_DIRECTORY, 0,
	                  PATH_RESOLVE_BENEATH | PATH_RESOLVE_NO_SYMLINKS);
	if (escape_errno(tfd))
		return strata_error_set(ap->ret_err, -EINVAL,
		                        "layer entry \"%s\": hard link target \"%s\" is not inside "
		                        "the layer",
		                        ap->entry, target);
	if (tfd < 0)
		return strata_error_set_errno(ap->ret_err, tfd,
		                              "layer entry \"%s\": hard link target \"%s\"",
		                              ap->entry, target);
	/* flags 0: link a symlink itself, never what it points to */
	if (linkat(tfd, tbase, pfd, base, 0) < 0)
		return strata_error_set_errno(ap->ret_err, negative_errno(),
		                              "layer entry \"%s\": hard link to \"%s\"", ap->entry,
		                              target);
	return 0;
}

static int apply_entry(struct applier *ap, struct archive *in, struct archive_entry *e)
{
	_cleanup_free_ char *norm = NULL, *parent = NULL;
	const char *base, *link = archive_entry_hardlink(e);
	mode_t type = archive_entry_filetype(e);
	struct stat st;
	bool exists;
	int pfd = -1, r;

	r = clean_name(ap, ap->entry, "path", &norm);
	if (r < 0)
		return r;
	if (streq(norm, "."))
		return 0; /* the root itself: containerd ignores it too */
	r = path_split(norm, &parent, &base);
	if (r < 0)
		return r;
	r = open_parent(ap, parent, true, &pfd);
	if (r < 0)
		return r;

	if (strncmp(base, ".wh.", 4) == 0)
		return whiteout(ap, e, pfd, base);

	exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists && !(S_ISDIR(st.st_mode) && type == AE_IFDIR && !link)) {
		r = remove_existing(ap, pfd, base, &st);
		if (r < 0)
			return r;
		exists = false;
	}

	if (link) {
		r = hardlink(ap, link, pfd, base);
		if (r < 0)
			return r;
		/* The real type decides: chmod must never follow a linked symlink. */
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return entry_errno(ap, negative_errno(), "stat hard link");
		return set_metadata(ap, e, -1, pfd, base, st.st_mode & S_IFMT);
	}

	switch (type) {
	case AE_IFREG: {
		_cleanup_close_ int fd = -1;

		fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return entry_errno(ap, negative_errno(), "create file");
		r = write_data(ap, in, fd, archive_entry_size(e));
		if (r < 0)
			return r;
		return set_metadata(ap, e, fd, pfd, base, type);
	}
	case AE_IFDIR:
		if (!exists && mkdirat(pfd, base, 0700) < 0)
			return entry_errno(ap, negative_errno(), "create directory");
		r = set_metadata(ap, e, -1, pfd, base, type);
		if (r < 0)
			return r;
		return defer_dir_time(ap, norm, e);
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		/* stored as-is: it is only ever resolved inside the container */
		if (!target || symlinkat(target, pfd, base) < 0)
			return entry_errno(ap, target ? negative_errno() : -EINVAL,
			                   "create symlink");
		return set_metadata(ap, e, -1, pfd, base, type);
	}
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
		if (mknodat(pfd, base, type | 0600,
		            type == AE_IFIFO ? 0
		                             : makedev(archive_entry_rdevmajor(e),
		                                       archive_entry_rdevminor(e))) < 0)
			return entry_errno(ap, negative_errno(), "create node");
		return set_metadata(ap, e, -1, pfd, base, type);
	case AE_IFSOCK:
		log_debug("layer entry \"%s\": socket ignored", ap->entry);
		return 0;
	default:
		return strata_error_set(ap->ret_err, -EINVAL,
		                        "layer entry \"%s\": unsupported type 0%o", ap->entry,
		                        (unsigned)type);
	}
}

static int finish_dirs(struct applier *ap)
{
	for (size_t i = 0; i < ap->n_dirs; i++) {
		_cleanup_close_ int fd = -1;

		fd = path_openat(ap->root_fd, ap->dirs[i].path, O_RDONLY | O_DIRECTORY, 0,
		                 PATH_RESOLVE_BENEATH | PATH_RESOLVE_NO_SYMLINKS);
		if (fd == -ENOENT || escape_errno(fd))
			continue; /* replaced or whited out later in the layer */
		if (fd < 0 || futimens(fd, ap->dirs[i].ts) < 0)
			return strata_error_set_errno(ap->ret_err, fd < 0 ? fd : negative_errno(),
			                              "layer entry \"%s\": set times",
			                              ap->dirs[i].path);
	}
	return 0;
}

static void applier_done(struct applier *ap)
{
	applier_drop_parent(ap);
	for (size_t i = 0; i < ap->n_dirs; i++)
		free(ap->dirs[i].path);
	free(ap->dirs);
}

static void archive_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

static int archive_fail(struct archive *a, struct source *src, const char *what,
                        struct strata_error **ret_err)
{
	int e = archive_errno(a);

	if (src->err)
		return strata_error_set_errno(ret_err, src->err, "%s", what);
	return strata_error_set(ret_err, e > 0 ? -e : -EINVAL, "%s: %s", what,
	                        archive_error_string(a) ? archive_error_string(a) : "invalid data");
}

int snap_apply_tar_at(int dirfd, snap_read_fn read, void *userdata,
                      struct strata_digest *ret_diff_id, int64_t *ret_size,
                      struct strata_error **ret_err)
{
	_cleanup_(archive_freep) struct archive *raw = NULL, *in = NULL;
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL;
	_cleanup_free_ char *buf = NULL;
	struct source src = {.read = read, .userdata = userdata};
	struct stream st = {0};
	struct applier ap = {.root_fd = dirfd, .parent_fd = -1, .ret_err = ret_err};
	struct archive_entry *e;
	struct strata_digest d;
	int r;

	buf = malloc(IN_BUF_SIZE);
	if (!buf || strata_hasher_new(&h) < 0)
		return -ENOMEM;
	src.buf = buf;

	raw = archive_read_new();
	in = archive_read_new();
	if (!raw || !in)
		return -ENOMEM;
	/* The compressions OCI layers use; not "all", so no exotic filter (uu,
	 * external programs) can bid on a plain tar. */
	(void)archive_read_support_filter_gzip(raw);
	(void)archive_read_support_filter_zstd(raw);
	(void)archive_read_support_filter_xz(raw);
	(void)archive_read_support_filter_bzip2(raw);
	(void)archive_read_support_format_raw(raw);
	if (archive_read_open(raw, &src, NULL, source_read_cb, NULL) != ARCHIVE_OK)
		return archive_fail(raw, &src, "open layer", ret_err);
	if (archive_read_next_header(raw, &e) != ARCHIVE_OK)
		return archive_fail(raw, &src, "read layer", ret_err);

	st.raw = raw;
	st.hasher = h;
	(void)archive_read_support_format_tar(in);
	if (archive_read_open(in, &st, NULL, stream_read_cb, NULL) != ARCHIVE_OK)
		return archive_fail(in, &src, "read layer tar", ret_err);

	for (;;) {
		r = archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			break;
		/* WARN: e.g. a name not convertible to the locale; keep bytes */
		if (r < ARCHIVE_WARN) {
			r = archive_fail(in, &src, "read layer tar", ret_err);
			goto out;
		}
		ap.entry = archive_entry_pathname(e);
		r = apply_entry(&ap, in, e);
		if (r < 0)
			goto out;
	}
	r = finish_dirs(&ap);
	if (r < 0)
		goto out;

	/* The tar reader stops at the end-of-archive blocks; the diff ID covers
	 * the whole stream. */
	for (;;) {
		const void *b;
		ssize_t n = stream_read_cb(in, &st, &b);
		if (n == 0)
			break;
		if (n < 0) {
			r = archive_fail(in, &src, "read layer", ret_err);
			goto out;
		}
	}
	r = strata_hasher_final(h, &d);
	if (r < 0)
		goto out;
	if (ret_diff_id)
		*ret_diff_id = d;
	if (ret_size)
		*ret_size = st.total;
	r = 0;
out:
	applier_done(&ap);
	return r;
}

int snap_apply_layer(struct snap_store *s, const char *key, snap_read_fn read, void *userdata,
                     struct strata_digest *ret_diff_id, int64_t *ret_size,
                     struct strata_error **ret_err)
{
	struct snap_record rec = {0};
	_cleanup_close_ int fd = -1;
	char path[40];
	int r;

	r = snap_meta_get(s, key, &rec);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "apply layer: snapshot \"%s\" does not exist",
		                        key);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "apply layer: read snapshot \"%s\"", key);
	if (rec.info.kind != SNAP_KIND_ACTIVE) {
		snap_record_done(&rec);
		return strata_error_set(ret_err, -EBADFD,
		                        "apply layer: snapshot \"%s\" is not active", key);
	}
	snprintf(path, sizeof(path), "%" PRIu64 "/fs", rec.id);
	snap_record_done(&rec);
	fd = openat(s->snapshots_fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(),
		                              "apply layer: open \"%s/%s\"", s->snapshots_dir,
		                              path);
	r = snap_apply_tar_at(fd, read, userdata, ret_diff_id, ret_size, ret_err);
	if (r < 0)
		(void)strata_error_prefix(ret_err, r, "apply layer to \"%s\"", key);
	return r;
	return 0;
}

static ssize_t fd_read(void *userdata, void *buf, size_t len)
{
	int fd = *(int *)userdata;
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0 || errno != EINTR)
			return n < 0 ? negative_errno() : n;
	}
}

int snap_apply_layer_fd(struct snap_store *s, const char *key, int fd,
                        struct strata_digest *ret_diff_id, int64_t *ret_size,
                        struct strata_error **ret_err)
{
	return snap_apply_layer(s, key, fd_read, &fd, ret_diff_id, ret_size, ret_err);
}
