/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Layer apply: tars built here with libarchive's writer (plain, gzip, zstd),
 * every entry type and its metadata, whiteouts and opaque directories seen
 * through a real overlay mount, replacement rules, and hostile entries that
 * must be refused without anything being written outside the root.
 */
#include <archive.h>
#include <archive_entry.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "snap-test.h"

enum ent_type { E_DIR, E_FILE, E_SYMLINK, E_HARDLINK, E_CHR, E_BLK, E_FIFO };

struct ent {
	enum ent_type type;
	const char *path;
	const char *data;   /* file contents */
	const char *target; /* symlink / hardlink target */
	unsigned mode;
	unsigned uid, gid;
	time_t mtime;
	unsigned major, minor;
	const char *xattr, *xattr_value;
	size_t xattr_len;
};

struct buf {
	char *data;
	size_t len, cap;
};

static la_ssize_t buf_write(struct archive *a, void *ud, const void *p, size_t n)
{
	struct buf *b = ud;
	(void)a;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->data = realloc(b->data, b->cap);
		assert_non_null(b->data);
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return (la_ssize_t)n;
}

/* A pax tar of the entries, uncompressed. */
static struct buf make_tar(const struct ent *ents, size_t n)
{
	struct buf b = {0};
	struct archive *a = archive_write_new();

	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	assert_int_equal(archive_write_add_filter_none(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open(a, &b, NULL, buf_write, NULL), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *x = &ents[i];
		struct archive_entry *e = archive_entry_new();
		size_t len = x->data ? strlen(x->data) : 0;

		archive_entry_set_pathname(e, x->path);
		archive_entry_set_uid(e, x->uid);
		archive_entry_set_gid(e, x->gid);
		archive_entry_set_mtime(e, x->mtime ? x->mtime : 1000000000, 0);
		switch (x->type) {
		case E_DIR:
			archive_entry_set_filetype(e, AE_IFDIR);
			break;
		case E_FILE:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_size(e, (la_int64_t)len);
			break;
		case E_SYMLINK:
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, x->target);
			break;
		case E_HARDLINK:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, x->target);
			break;
		case E_CHR:
		case E_BLK:
			archive_entry_set_filetype(e, x->type == E_CHR ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_rdevmajor(e, x->major);
			archive_entry_set_rdevminor(e, x->minor);
			break;
		case E_FIFO:
			archive_entry_set_filetype(e, AE_IFIFO);
			break;
		}
		archive_entry_set_perm(e, x->mode ? x->mode : (x->type == E_DIR ? 0755 : 0644));
		if (x->xattr)
			archive_entry_xattr_add_entry(e, x->xattr, x->xattr_value,
			                              x->xattr_len ? x->xattr_len
			                                           : strlen(x->xattr_value));
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (x->type == E_FILE && len)
			assert_int_equal(archive_write_data(a, x->data, len), (la_ssize_t)len);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	return b;
}

/* The same bytes through a compression filter (raw format: no framing). */
static struct buf compress(const struct buf *in, int filter)
{
	struct buf b = {0};
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();

	assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
	assert_int_equal(archive_write_add_filter(a, filter), ARCHIVE_OK);
	assert_int_equal(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
	assert_int_equal(archive_write_open(a, &b, NULL, buf_write, NULL), ARCHIVE_OK);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_pathname(e, "data");
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	assert_int_equal(archive_write_data(a, in->data, in->len), (la_ssize_t)in->len);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	archive_entry_free(e);
	return b;
}

struct reader {
	const struct buf *b;
	size_t off;
};

/* Small reads on purpose: the stream must not depend on chunk sizes. */
static ssize_t mem_read(void *ud, void *out, size_t len)
{
	struct reader *r = ud;
	size_t left = r->b->len - r->off, n = MIN(len, (size_t)7000);

	n = MIN(n, left);
	memcpy(out, r->b->data + r->off, n);
	r->off += n;
	return (ssize_t)n;
}

static int apply_buf(int dirfd, const struct buf *b, struct strata_digest *d, int64_t *size,
                     struct strata_error **err)
{
	struct reader r = {.b = b};
	return snap_apply_tar_at(dirfd, mem_read, &r, d, size, err);
}

static int open_dir(const char *p)
{
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static const struct ent all_types[] = {
        {E_DIR, "etc", .mode = 0750, .uid = 10, .gid = 20, .mtime = 1111111111},
        {E_FILE, "etc/hosts", "127.0.0.1 localhost\n", .mode = 04755, .uid = 1000, .gid = 1000,
         .mtime = 1222222222},
        {E_SYMLINK, "etc/abs-link", .target = "/etc/hosts"},
        {E_SYMLINK, "etc/rel-link", .target = "../nowhere/x"},
        /* a hard link header carries the file's metadata, as tar writes it */
        {E_HARDLINK, "etc/hosts2", .target = "etc/hosts", .mode = 04755, .uid = 1000, .gid = 1000,
         .mtime = 1222222222},
        {E_FILE, "bin/ping", "ELF", .mode = 0755, .xattr = "security.capability",
         .xattr_value = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                        "\x00\x00",
         .xattr_len = 20},
        {E_FILE, "bin/tagged", "t", .xattr = "user.note", .xattr_value = "hello"},
        {E_CHR, "dev/null", .mode = 0666, .major = 1, .minor = 3},
        {E_BLK, "dev/loop9", .mode = 0660, .major = 7, .minor = 9},
        {E_FIFO, "run/fifo", .mode = 0600},
        {E_DIR, "run", .mode = 0711, .mtime = 1333333333},
};

static void check_all_types(int fd)
{
	struct stat st;
	char buf[256];
	ssize_t n;

	assert_int_equal(fstatat(fd, "etc", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_uid, 10);
	assert_int_equal(st.st_gid, 20);
	/* set after its children were written */
	assert_int_equal(st.st_mtim.tv_sec, 1111111111);

	assert_int_equal(fstatat(fd, "etc/hosts", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_mode & 07777, 04755); /* setuid kept after chown */
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_mtim.tv_sec, 1222222222);
	assert_int_equal(st.st_nlink, 2);
	{
		struct stat st2;
		assert_int_equal(fstatat(fd, "etc/hosts2", &st2, AT_SYMLINK_NOFOLLOW), 0);
		assert_int_equal(st2.st_ino, st.st_ino);
	}
	n = readlinkat(fd, "etc/abs-link", buf, sizeof(buf));
	assert_int_equal(n, 10);
	assert_memory_equal(buf, "/etc/hosts", 10);
	n = readlinkat(fd, "etc/rel-link", buf, sizeof(buf));
	assert_int_equal(n, 12);

	snprintf(buf, sizeof(buf), "/proc/self/fd/%d/bin/ping", fd);
	{
		char v[64];
		assert_int_equal(lgetxattr(buf, "security.capability", v, sizeof(v)), 20);
		assert_int_equal(v[0], 1);
		snprintf(buf, sizeof(buf), "/proc/self/fd/%d/bin/tagged", fd);
		assert_int_equal(lgetxattr(buf, "user.note", v, sizeof(v)), 5);
		assert_memory_equal(v, "hello", 5);
	}
	assert_int_equal(fstatat(fd, "dev/null", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(major(st.st_rdev), 1);
	assert_int_equal(minor(st.st_rdev), 3);
	assert_int_equal(st.st_mode & 07777, 0666);
	assert_int_equal(fstatat(fd, "dev/loop9", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISBLK(st.st_mode));
	assert_int_equal(minor(st.st_rdev), 9);
	assert_int_equal(fstatat(fd, "run/fifo", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISFIFO(st.st_mode));
	/* "run" came after its child, as an existing dir: metadata updated */
	assert_int_equal(fstatat(fd, "run", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_mode & 07777, 0711);
	assert_int_equal(st.st_mtim.tv_sec, 1333333333);
	/* implicit parents: 0755 */
	assert_int_equal(fstatat(fd, "bin", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
}

static void apply_all_types(struct fixture *f, int filter, const char *sub)
{
	_cleanup_free_ char *dir = fixture_dir(f, sub);
	_cleanup_close_ int fd = open_dir(dir);
	struct buf plain = make_tar(all_types, ELEMENTSOF(all_types));
	struct buf in = filter == ARCHIVE_FILTER_NONE ? plain : compress(&plain, filter);
	_cleanup_error_ struct strata_error *err = NULL;
	struct strata_digest got, want;
	int64_t size = 0;
	int r;

	assert_int_equal(strata_sha256(plain.data, plain.len, &want), 0);
	r = apply_buf(fd, &in, &got, &size, &err);
	if (r < 0)
		fail_msg("apply: %s", strata_error_message(err));
	assert_true(strata_digest_equal(&got, &want));
	assert_int_equal(size, (int64_t)plain.len);
	check_all_types(fd);
	if (in.data != plain.data)
		free(in.data);
	free(plain.data);
}

static void test_plain(void **state)
{
	apply_all_types(*state, ARCHIVE_FILTER_NONE, "plain");
}

static void test_gzip(void **state)
{
	apply_all_types(*state, ARCHIVE_FILTER_GZIP, "gzip");
}

static void test_zstd(void **state)
{
	apply_all_types(*state, ARCHIVE_FILTER_ZSTD, "zstd");
}

static void test_replace_rules(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *dir = fixture_dir(f, "replace");
	_cleanup_close_ int fd = open_dir(dir);
	_cleanup_error_ struct strata_error *err = NULL;
	const struct ent l1[] = {
	        {E_DIR, "d", .mode = 0755}, {E_FILE, "d/keep", "k"},
	        {E_FILE, "p", "file"},      {E_DIR, "q"},
	        {E_FILE, "q/inner", "i"},   {E_SYMLINK, "s", .target = "/etc"},
	};
	const struct ent l2[] = {
	        {E_DIR, "d", .mode = 0700, .mtime = 1444444444}, /* dir over dir: merged */
	        {E_DIR, "p"},                                    /* dir over file */
	        {E_FILE, "q", "now a file"},                     /* file over dir */
	        {E_FILE, "s", "not through the link"},           /* file over symlink */
	};
	struct buf b1 = make_tar(l1, ELEMENTSOF(l1)), b2 = make_tar(l2, ELEMENTSOF(l2));
	struct stat st;

	assert_int_equal(apply_buf(fd, &b1, NULL, NULL, &err), 0);
	assert_int_equal(apply_buf(fd, &b2, NULL, NULL, &err), 0);
	assert_int_equal(fstatat(fd, "d/keep", &st, 0), 0);
	assert_int_equal(fstatat(fd, "d", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_mtim.tv_sec, 1444444444);
	assert_int_equal(fstatat(fd, "p", &st, 0), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(fstatat(fd, "q", &st, 0), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(fstatat(fd, "s", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_text(dir, "s", "not through the link");
	free(b1.data);
	free(b2.data);
}

/* Whiteouts and opaque dirs applied into the upper dir, checked through a
 * real overlay mount. */
static void test_whiteouts_through_overlay(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *mnt = fixture_dir(f, "mnt");
	_cleanup_error_ struct strata_error *err = NULL;
	const struct ent l1[] = {
	        {E_FILE, "a/keep", "keep"},   {E_FILE, "a/gone", "gone"},   {E_DIR, "a/gonedir"},
	        {E_FILE, "a/gonedir/x", "x"}, {E_FILE, "d/lower", "lower"}, {E_FILE, "top", "top"},
	};
	const struct ent l2[] = {
	        {E_FILE, "a/.wh.gone"},     {E_FILE, "a/.wh.gonedir"},    {E_DIR, "d"},
	        {E_FILE, "d/.wh..wh..opq"}, {E_FILE, "d/upper", "upper"}, {E_FILE, ".wh.top"},
	};
	struct buf b1 = make_tar(l1, ELEMENTSOF(l1)), b2 = make_tar(l2, ELEMENTSOF(l2));
	struct buf gz = compress(&b2, ARCHIVE_FILTER_GZIP);
	struct snap_mount *m = NULL;
	struct reader r1 = {.b = &b1}, r2 = {.b = &gz};
	struct strata_digest d;
	size_t n = 0;
	uint64_t id;
	char upper[256], v[8];
	struct stat st;

	assert_int_equal(snap_prepare(f->store, "l1-a", NULL, NULL, 0, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	assert_int_equal(snap_apply_layer(f->store, "l1-a", mem_read, &r1, &d, NULL, &err), 0);
	assert_int_equal(snap_commit(f->store, "l1", "l1-a", NULL, 0, &err), 0);
	assert_int_equal(snap_prepare(f->store, "l2-a", "l1", NULL, 0, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	assert_int_equal(snap_apply_layer(f->store, "l2-a", mem_read, &r2, &d, NULL, &err), 0);

	/* the upper dir holds overlay's own whiteout forms */
	assert_int_equal(snap_get_id(f->store, "l2-a", &id, &err), 0);
	snprintf(upper, sizeof(upper), "%s/%llu/fs/a/gone", snap_store_snapshots_dir(f->store),
	         (unsigned long long)id);
	assert_int_equal(lstat(upper, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(0, 0));
	snprintf(upper, sizeof(upper), "%s/%llu/fs/d", snap_store_snapshots_dir(f->store),
	         (unsigned long long)id);
	assert_int_equal(lgetxattr(upper, "trusted.overlay.opaque", v, sizeof(v)), 1);
	assert_int_equal(v[0], 'y');
	snprintf(upper, sizeof(upper), "%s/%llu/fs/d/.wh..wh..opq",
	         snap_store_snapshots_dir(f->store), (unsigned long long)id);
	assert_int_equal(access(upper, F_OK), -1);

	assert_int_equal(snap_commit(f->store, "l2", "l2-a", NULL, 0, &err), 0);
	assert_int_equal(snap_view(f->store, "v", "l2", NULL, 0, &m, &n, &err), 0);
	mount_or_fail(m, n, mnt);
	m = snap_mounts_free(m, n);
	assert_text(mnt, "a/keep", "keep");
	assert_false(exists_at(mnt, "a/gone"));
	assert_false(exists_at(mnt, "a/gonedir"));
	assert_false(exists_at(mnt, "top"));
	assert_false(exists_at(mnt, "d/lower")); /* hidden by the opaque dir */
	assert_text(mnt, "d/upper", "upper");
	assert_int_equal(snap_unmount(mnt), 0);

	/* applying to a committed snapshot is refused */
	r1.off = 0;
	assert_int_equal(snap_apply_layer(f->store, "l2", mem_read, &r1, &d, NULL, NULL), -EBADFD);
	free(b1.data);
	free(b2.data);
	free(gz.data);
}

/* Each hostile tar goes into a fresh root next to a sentinel dir; the error
 * must name the entry and nothing may appear outside the root. */
static void hostile(struct fixture *f, const char *sub, const struct ent *ents, size_t n,
                    const char *entry_in_msg)
{
	_cleanup_free_ char *box = fixture_dir(f, sub);
	_cleanup_free_ char *root = path_join(box, "root");
	_cleanup_free_ char *outside = path_join(box, "outside");
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_close_ int fd = -1;
	struct buf b = make_tar(ents, n);
	int r;

	assert_int_equal(mkdir(root, 0755), 0);
	assert_int_equal(mkdir(outside, 0755), 0);
	write_text(outside, "sentinel", "untouched");
	fd = open_dir(root);
	r = apply_buf(fd, &b, NULL, NULL, &err);
	assert_int_equal(r, -EINVAL);
	assert_non_null(err);
	if (!strstr(strata_error_message(err), entry_in_msg))
		fail_msg("error \"%s\" does not name \"%s\"", strata_error_message(err),
		         entry_in_msg);
	/* nothing new beside root, nothing changed outside */
	assert_false(exists_at(box, "x"));
	assert_false(exists_at(box, "evil"));
	assert_false(exists_at(outside, "x"));
	assert_false(exists_at(outside, "etc"));
	assert_text(outside, "sentinel", "untouched");
	assert_false(exists_at("/", "strata-evil-x"));
	free(b.data);
}

static void test_hostile_dotdot(void **state)
{
	const struct ent e[] = {{E_FILE, "ok", "fine"}, {E_FILE, "../x", "evil"}};
	hostile(*state, "h1", e, ELEMENTSOF(e), "../x");
}

static void test_hostile_nested_dotdot(void **state)
{
	const struct ent e[] = {{E_FILE, "a/b/../../../outside/x", "evil"}};
	hostile(*state, "h2", e, ELEMENTSOF(e), "a/b/../../../outside/x");
}

static void test_hostile_absolute(void **state)
{
	const struct ent e[] = {{E_FILE, "/strata-evil-x", "evil"}};
	hostile(*state, "h3", e, ELEMENTSOF(e), "/strata-evil-x");
}

static void test_hostile_symlink_parent(void **state)
{
	const struct ent e[] = {{E_SYMLINK, "a", .target = "/"},
	                        {E_FILE, "a/strata-evil-x", "evil"}};
	hostile(*state, "h4", e, ELEMENTSOF(e), "a/strata-evil-x");
}

static void test_hostile_symlink_relative(void **state)
{
	const struct ent e[] = {{E_SYMLINK, "b", .target = "../outside"}, {E_FILE, "b/x", "evil"}};
	hostile(*state, "h5", e, ELEMENTSOF(e), "b/x");
}

static void test_hostile_symlink_dir_entry(void **state)
{
	const struct ent e[] = {{E_SYMLINK, "b", .target = "../outside"}, {E_DIR, "b/etc"}};
	hostile(*state, "h6", e, ELEMENTSOF(e), "b/etc");
}

static void test_hostile_hardlink(void **state)
{
	const struct ent e[] = {{E_HARDLINK, "h", .target = "../../x"}};
	hostile(*state, "h7", e, ELEMENTSOF(e), "h");
}

static void test_hostile_hardlink_absolute(void **state)
{
	const struct ent e[] = {{E_HARDLINK, "h", .target = "/etc/passwd"}};
	hostile(*state, "h8", e, ELEMENTSOF(e), "/etc/passwd");
}

static void test_hostile_hardlink_through_symlink(void **state)
{
	const struct ent e[] = {{E_SYMLINK, "l", .target = "../outside"},
	                        {E_HARDLINK, "h", .target = "l/sentinel"}};
	hostile(*state, "h9", e, ELEMENTSOF(e), "l/sentinel");
}

static void test_hostile_whiteout_dotdot(void **state)
{
	const struct ent e[] = {{E_FILE, "d/.wh.."}};
	hostile(*state, "h10", e, ELEMENTSOF(e), "d/.wh..");
}

static void test_garbage_input(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *dir = fixture_dir(f, "garbage");
	_cleanup_close_ int fd = open_dir(dir);
	_cleanup_error_ struct strata_error *err = NULL;
	char junk[3000];
	struct buf b = {.data = junk, .len = sizeof(junk)};

	memset(junk, 'z', sizeof(junk));
	assert_true(apply_buf(fd, &b, NULL, NULL, &err) < 0);
	assert_non_null(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_plain, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_gzip, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_zstd, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_replace_rules, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_whiteouts_through_overlay, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_dotdot, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_nested_dotdot, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_absolute, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_symlink_parent, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_symlink_relative, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_symlink_dir_entry, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_hardlink, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_hardlink_absolute, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_hardlink_through_symlink,
	                                        fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_hostile_whiteout_dotdot, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_garbage_input, fixture_setup,
	                                        fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
