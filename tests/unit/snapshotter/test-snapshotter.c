/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The behaviours containerd's snapshot test suite checks
 * (snapshots/testsuite), as tests of our own: prepare/commit/view chains,
 * stat, update, remove rules, walk filters, usage, error classes, real
 * mounts, the 128-layer chain and Cleanup after a simulated crash.
 */
#include <inttypes.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "snap-test.h"

static struct snap_label gcroot[] = {{(char *)"containerd.io/gc.root", (char *)"check-walk"}};

static void prepare_ok(struct fixture *f, const char *key, const char *parent,
                       struct snap_mount **m, size_t *n)
{
	_cleanup_error_ struct strata_error *err = NULL;
	int r = snap_prepare(f->store, key, parent, NULL, 0, m, n, &err);
	if (r < 0)
		fail_msg("prepare %s: %s", key, strata_error_message(err));
}

static void prepare_nomount(struct fixture *f, const char *key, const char *parent)
{
	struct snap_mount *m = NULL;
	size_t n = 0;
	prepare_ok(f, key, parent, &m, &n);
	snap_mounts_free(m, n);
}

static void view_nomount(struct fixture *f, const char *key, const char *parent,
                         const struct snap_label *l, size_t nl)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;
	if (snap_view(f->store, key, parent, l, nl, &m, &n, &err) < 0)
		fail_msg("view %s: %s", key, strata_error_message(err));
	snap_mounts_free(m, n);
}

static void commit_ok(struct fixture *f, const char *name, const char *key)
{
	_cleanup_error_ struct strata_error *err = NULL;
	if (snap_commit(f->store, name, key, NULL, 0, &err) < 0)
		fail_msg("commit %s -> %s: %s", key, name, strata_error_message(err));
}

static void remove_ok(struct fixture *f, const char *key)
{
	_cleanup_error_ struct strata_error *err = NULL;
	if (snap_remove(f->store, key, &err) < 0)
		fail_msg("remove %s: %s", key, strata_error_message(err));
}

static void stat_ok(struct fixture *f, const char *key, struct snap_info *info)
{
	_cleanup_error_ struct strata_error *err = NULL;
	if (snap_stat(f->store, key, info, &err) < 0)
		fail_msg("stat %s: %s", key, strata_error_message(err));
}

static bool has_option(const struct snap_mount *m, const char *opt)
{
	for (size_t i = 0; i < m->n_options; i++)
		if (streq(m->options[i], opt))
			return true;
	return false;
}

static void test_basic(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *preparing = fixture_dir(f, "preparing");
	_cleanup_free_ char *next = fixture_dir(f, "next");
	_cleanup_free_ char *view = fixture_dir(f, "view");
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_info si = {0}, si2 = {0}, tmp = {0};
	struct snap_mount *m = NULL;
	size_t n = 0;

	prepare_ok(f, "preparing", NULL, &m, &n);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].type, "bind");
	assert_int_equal(m[0].n_options, 2);
	assert_string_equal(m[0].options[0], "rw");
	assert_string_equal(m[0].options[1], "rbind");
	assert_non_null(strstr(m[0].source, "/snapshots/"));
	mount_or_fail(m, n, preparing);
	m = snap_mounts_free(m, n);

	write_text(preparing, "foo", "foo\n");
	assert_int_equal(mkdir(strjoina_(preparing, "/a"), 0755), 0);
	assert_int_equal(path_mkdir_p(strjoina_(preparing, "/a/b/c"), 0755), 0);
	assert_int_equal(snap_unmount(preparing), 0);
	commit_ok(f, "committed", "preparing");

	stat_ok(f, "committed", &si);
	assert_string_equal(si.parent, "");
	assert_int_equal(si.kind, SNAP_KIND_COMMITTED);
	assert_int_equal(snap_stat(f->store, "preparing", &tmp, &err), -ENOENT);
	err = strata_error_free(err);

	prepare_ok(f, "next", "committed", &m, &n);
	assert_string_equal(m[0].type, "overlay");
	assert_string_equal(m[0].source, "overlay");
	/* containerd's option order: index=off, workdir, upperdir, lowerdir */
	assert_true(m[0].n_options >= 3);
	assert_int_equal(strncmp(m[0].options[m[0].n_options - 3], "workdir=", 8), 0);
	assert_int_equal(strncmp(m[0].options[m[0].n_options - 2], "upperdir=", 9), 0);
	assert_int_equal(strncmp(m[0].options[m[0].n_options - 1], "lowerdir=", 9), 0);
	if (access("/sys/module/overlay/parameters/index", F_OK) == 0)
		assert_string_equal(m[0].options[0], "index=off");
	mount_or_fail(m, n, next);
	m = snap_mounts_free(m, n);
	assert_text(next, "foo", "foo\n");
	assert_true(exists_at(next, "a/b/c"));
	write_text(next, "bar", "bar\n");
	write_text(next, "foo", "bar\n");
	assert_int_equal(path_rm_rf_at(AT_FDCWD, strjoina_(next, "/a/b")), 0);
	assert_int_equal(snap_unmount(next), 0);

	stat_ok(f, "next", &tmp);
	assert_string_equal(tmp.parent, "committed");
	assert_int_equal(tmp.kind, SNAP_KIND_ACTIVE);
	snap_info_done(&tmp);
	commit_ok(f, "committed-next", "next");
	stat_ok(f, "committed-next", &si2);
	assert_string_equal(si2.parent, "committed");
	assert_int_equal(si2.kind, SNAP_KIND_COMMITTED);

	/* a view of a 2-layer chain is a read-only overlay */
	view_nomount(f, "nextnext", "committed-next", NULL, 0);
	assert_int_equal(snap_mounts(f->store, "nextnext", &m, &n, &err), 0);
	assert_string_equal(m[0].type, "overlay");
	assert_false(has_option(&m[0], "rw"));
	for (size_t i = 0; i < m[0].n_options; i++) {
		assert_null(strstr(m[0].options[i], "upperdir="));
		assert_null(strstr(m[0].options[i], "workdir="));
	}
	assert_non_null(strchr(m[0].options[m[0].n_options - 1], ':'));
	mount_or_fail(m, n, view);
	m = snap_mounts_free(m, n);
	assert_text(view, "foo", "bar\n");
	assert_text(view, "bar", "bar\n");
	assert_true(exists_at(view, "a"));
	assert_false(exists_at(view, "a/b"));
	assert_int_equal(snap_unmount(view), 0);

	remove_ok(f, "nextnext");
	assert_int_equal(snap_remove(f->store, "committed", &err), -ENOTEMPTY);
	assert_non_null(strstr(strata_error_message(err), "remove"));
	assert_int_equal(strata_errno_to_grpc(err->code), GRPC_FAILED_PRECONDITION);
	remove_ok(f, "committed-next");
	remove_ok(f, "committed");
	snap_info_done(&si);
	snap_info_done(&si2);
}

static void test_stat_and_transitivity(void **state)
{
	struct fixture *f = *state;
	struct snap_info a = {0}, b = {0}, pb = {0};

	prepare_nomount(f, "preparing", NULL);
	stat_ok(f, "preparing", &a);
	assert_string_equal(a.name, "preparing");
	assert_int_equal(a.kind, SNAP_KIND_ACTIVE);
	assert_string_equal(a.parent, "");
	snap_info_done(&a);
	commit_ok(f, "snapA", "preparing");
	prepare_nomount(f, "next", "snapA");
	commit_ok(f, "snapB", "next");
	stat_ok(f, "snapA", &a);
	stat_ok(f, "snapB", &b);
	stat_ok(f, b.parent, &pb);
	assert_string_equal(a.parent, "");
	assert_string_equal(b.parent, "snapA");
	assert_string_equal(pb.parent, "");
	assert_string_equal(pb.name, "snapA");
	snap_info_done(&a);
	snap_info_done(&b);
	snap_info_done(&pb);
}

static void test_prepare_view_same_key(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;

	prepare_nomount(f, "preparing", NULL);
	commit_ok(f, "snapA", "preparing");
	prepare_nomount(f, "newlayer", "snapA");
	assert_int_equal(snap_view(f->store, "newlayer", "snapA", NULL, 0, &m, &n, &e1), -EEXIST);
	assert_int_equal(strata_errno_to_grpc(e1->code), GRPC_ALREADY_EXISTS);
	prepare_nomount(f, "prepLayer", "snapA");
	assert_int_equal(snap_prepare(f->store, "prepLayer", "snapA", NULL, 0, &m, &n, &e2),
	                 -EEXIST);
	view_nomount(f, "viewLayer", "snapA", NULL, 0);
	assert_int_equal(snap_view(f->store, "viewLayer", "snapA", NULL, 0, &m, &n, &e3), -EEXIST);
	/* a committed name is taken too */
	assert_int_equal(snap_prepare(f->store, "snapA", NULL, NULL, 0, &m, &n, NULL), -EEXIST);
	assert_null(m);
}

static void test_remove_intermediate(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;

	prepare_nomount(f, "base", NULL);
	commit_ok(f, "committed-base", "base");
	prepare_nomount(f, "intermediate", "committed-base");
	commit_ok(f, "committed-inter", "intermediate");
	prepare_nomount(f, "toplayer", "committed-inter");
	assert_int_equal(snap_remove(f->store, "committed-inter", &err), -ENOTEMPTY);
	remove_ok(f, "toplayer");
	remove_ok(f, "committed-inter");
	remove_ok(f, "committed-base");
}

static void base_snapshots(struct fixture *f)
{
	prepare_nomount(f, "c1-a", NULL);
	commit_ok(f, "c1", "c1-a");
	prepare_nomount(f, "c2-a", "c1");
	commit_ok(f, "c2", "c2-a");
	prepare_nomount(f, "a1", "c2");
	prepare_nomount(f, "a2", NULL);
	view_nomount(f, "v1", "c2", NULL, 0);
	view_nomount(f, "v2", NULL, NULL, 0);
}

static int ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	return a.tv_nsec < b.tv_nsec ? -1 : a.tv_nsec > b.tv_nsec;
}

static void assert_labels(const struct snap_info *in, const char *const kv[], size_t n)
{
	assert_int_equal(in->n_labels, n);
	for (size_t i = 0; i < n; i++) {
		const char *v = snap_info_label(in, kv[2 * i]);
		if (!v || !streq(v, kv[2 * i + 1]))
			fail_msg("label %s: got %s, want %s", kv[2 * i], v ? v : "(none)",
			         kv[2 * i + 1]);
	}
}

static void test_update(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *name, *parent;
		enum snap_kind kind;
	} cases[] = {
	        {"c1", "", SNAP_KIND_COMMITTED}, {"c2", "c1", SNAP_KIND_COMMITTED},
	        {"a1", "c2", SNAP_KIND_ACTIVE},  {"a2", "", SNAP_KIND_ACTIVE},
	        {"v1", "c2", SNAP_KIND_VIEW},    {"v2", "", SNAP_KIND_VIEW},
	};
	struct timespec t1, t2;

	clock_gettime(CLOCK_REALTIME, &t1);
	base_snapshots(f);
	clock_gettime(CLOCK_REALTIME, &t2);

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_error_ struct strata_error *err = NULL;
		struct snap_info st = {0}, out = {0}, req = {0};
		struct timespec created, u1, u2;
		struct snap_label l1[] = {{(char *)"l1", (char *)"v1"},
		                          {(char *)"l2", (char *)"v2"},
		                          {(char *)"l3", (char *)"v3"},
		                          {(char *)"containerd.io/gc.root", (char *)"root"}};
		struct snap_label l2[] = {{(char *)"l1", (char *)"updated"},
		                          {(char *)"l4", (char *)"v4"}};
		struct snap_label l3[] = {{(char *)"l4", (char *)"v4"},
		                          {(char *)"containerd.io/gc.root", (char *)"root"}};
		const char *const p12[] = {"labels.l1", "labels.l2"};
		const char *const plabels[] = {"labels"};
		const char *const pparent[] = {"parent"};

		stat_ok(f, cases[i].name, &st);
		assert_true(ts_cmp(st.created, t1) >= 0 && ts_cmp(st.created, t2) <= 0);
		assert_int_equal(ts_cmp(st.created, st.updated), 0);
		assert_int_equal(st.kind, cases[i].kind);
		assert_string_equal(st.parent, cases[i].parent);
		assert_string_equal(st.name, cases[i].name);
		created = st.created;

		/* no paths: labels replaced; parent ignored */
		req = (struct snap_info){.name = st.name,
		                         .parent = (char *)"doesnotexist",
		                         .labels = l1,
		                         .n_labels = 4};
		clock_gettime(CLOCK_REALTIME, &u1);
		assert_int_equal(snap_update(f->store, &req, NULL, 0, &out, &err), 0);
		clock_gettime(CLOCK_REALTIME, &u2);
		assert_int_equal(ts_cmp(out.created, created), 0);
		assert_true(ts_cmp(out.updated, u1) >= 0 && ts_cmp(out.updated, u2) <= 0);
		assert_int_equal(out.kind, cases[i].kind);
		assert_string_equal(out.parent, cases[i].parent);
		assert_string_equal(out.name, cases[i].name);
		assert_labels(&out,
		              (const char *const[]){"l1", "v1", "l2", "v2", "l3", "v3",
		                                    "containerd.io/gc.root", "root"},
		              4);
		snap_info_done(&out);

		/* labels.l1 set, labels.l2 absent from the request: deleted */
		req.labels = l2;
		req.n_labels = 2;
		assert_int_equal(snap_update(f->store, &req, p12, 2, &out, &err), 0);
		assert_labels(&out,
		              (const char *const[]){"l1", "updated", "l3", "v3",
		                                    "containerd.io/gc.root", "root"},
		              3);
		snap_info_done(&out);
		/* and a later Stat agrees */
		stat_ok(f, cases[i].name, &out);
		assert_int_equal(out.n_labels, 3);
		snap_info_done(&out);

		req.labels = l3;
		req.n_labels = 2;
		assert_int_equal(snap_update(f->store, &req, plabels, 1, &out, &err), 0);
		assert_labels(&out,
		              (const char *const[]){"l4", "v4", "containerd.io/gc.root", "root"},
		              2);
		snap_info_done(&out);

		assert_int_equal(snap_update(f->store, &req, pparent, 1, &out, &err), -EINVAL);
		assert_int_equal(strata_errno_to_grpc(err->code), GRPC_INVALID_ARGUMENT);
		snap_info_done(&st);
	}
}

static void test_update_dotted_key(void **state)
{
	struct fixture *f = *state;
	struct snap_label l[] = {{(char *)"containerd.io/snapshot.ref", (char *)"sha256:x"}};
	struct snap_info req = {.name = (char *)"a", .labels = l, .n_labels = 1}, out = {0};
	const char *const p[] = {"labels.containerd.io/snapshot.ref"};
	_cleanup_error_ struct strata_error *err = NULL;

	prepare_nomount(f, "a", NULL);
	assert_int_equal(snap_update(f->store, &req, p, 1, &out, &err), 0);
	assert_string_equal(snap_info_label(&out, "containerd.io/snapshot.ref"), "sha256:x");
	snap_info_done(&out);
	req.name = (char *)"missing";
	assert_int_equal(snap_update(f->store, &req, p, 1, &out, &err), -ENOENT);
}

static void test_remove_reuse(void **state)
{
	struct fixture *f = *state;

	prepare_nomount(f, "committed-a", NULL);
	commit_ok(f, "committed-1", "committed-a");
	prepare_nomount(f, "reuse-1", "committed-1");
	remove_ok(f, "reuse-1");
	view_nomount(f, "reuse-1", "committed-1", NULL, 0);
	remove_ok(f, "reuse-1");
	prepare_nomount(f, "reuse-1", NULL);
	remove_ok(f, "committed-1");
	commit_ok(f, "committed-1", "reuse-1");
}

static void test_view_readonly(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *mnt = fixture_dir(f, "view-mount");
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;
	_cleanup_free_ char *p = path_join(mnt, "testfile");
	int fd;

	prepare_nomount(f, "preparing", NULL);
	commit_ok(f, "committed", "preparing");
	assert_int_equal(snap_view(f->store, "view", "committed", NULL, 0, &m, &n, &err), 0);
	/* one parent: containerd answers a read-only bind of the parent */
	assert_string_equal(m[0].type, "bind");
	assert_string_equal(m[0].options[0], "ro");
	mount_or_fail(m, n, mnt);
	m = snap_mounts_free(m, n);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd < 0 && errno == EROFS);
	assert_int_equal(snap_unmount(mnt), 0);

	/* a view without parent: ro bind of its own empty dir */
	assert_int_equal(snap_view(f->store, "view2", NULL, NULL, 0, &m, &n, &err), 0);
	assert_string_equal(m[0].options[0], "ro");
	mount_or_fail(m, n, mnt);
	m = snap_mounts_free(m, n);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd < 0 && errno == EROFS);
	assert_int_equal(snap_unmount(mnt), 0);
	remove_ok(f, "view");
	remove_ok(f, "view2");
	remove_ok(f, "committed");
}

struct walked {
	char *names[64];
	size_t n;
};

static int walk_cb(const struct snap_info *info, void *userdata)
{
	struct walked *w = userdata;
	w->names[w->n++] = strdup(info->name);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_walk(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;
	struct snap_label l1[] = {{(char *)"l", (char *)"1"}, gcroot[0]};
	struct snap_label l2[] = {{(char *)"l", (char *)"2"}, gcroot[0]};
	struct snap_label l3[] = {{(char *)"l", (char *)"3"}, gcroot[0]};
	static const struct {
		const char *matches[9];
		const char *filters[3];
	} cases[] = {
	        {{"a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"},
	         {"labels.\"containerd.io/gc.root\"==check-walk"}},
	        {{"a-np", "a", "a-wl", "a-np-wl"},
	         {"kind==active,labels.\"containerd.io/gc.root\"==check-walk"}},
	        {{"v", "v-wl"}, {"kind==view,labels.\"containerd.io/gc.root\"==check-walk"}},
	        {{"p", "p-wl"}, {"kind==committed,labels.\"containerd.io/gc.root\"==check-walk"}},
	        {{"p", "a-np-wl"}, {"name==p", "name==a-np-wl"}},
	        {{"a-wl"}, {"name==a-wl,labels.l"}},
	        {{"a", "v"}, {"parent==p"}},
	        {{"a", "v", "a-wl", "v-wl"},
	         {"parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk"}},
	        {{"p-wl", "a-wl", "v-wl", "a-np-wl"}, {"labels.l"}},
	        {{"a-wl", "a-np-wl"}, {"labels.l==2"}},
	        {{"a-wl", "a-np-wl", "v-wl"}, {"labels.l~=^[23]$"}},
	};

	assert_int_equal(snap_prepare(f->store, "a-np", NULL, gcroot, 1, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	assert_int_equal(snap_prepare(f->store, "p-tmp", NULL, gcroot, 1, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	assert_int_equal(snap_commit(f->store, "p", "p-tmp", gcroot, 1, &err), 0);
	assert_int_equal(snap_prepare(f->store, "a", "p", gcroot, 1, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	view_nomount(f, "v", "p", gcroot, 1);
	assert_int_equal(snap_prepare(f->store, "p-wl-tmp", NULL, gcroot, 1, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	assert_int_equal(snap_commit(f->store, "p-wl", "p-wl-tmp", l1, 2, &err), 0);
	assert_int_equal(snap_prepare(f->store, "a-wl", "p-wl", l2, 2, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);
	view_nomount(f, "v-wl", "p-wl", l3, 2);
	assert_int_equal(snap_prepare(f->store, "a-np-wl", NULL, l2, 2, &m, &n, &err), 0);
	m = snap_mounts_free(m, n);

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct walked w = {0};
		const char *want[9];
		size_t nf = 0, nw = 0;

		while (nf < 3 && cases[i].filters[nf])
			nf++;
		while (nw < 9 && cases[i].matches[nw]) {
			want[nw] = cases[i].matches[nw];
			nw++;
		}
		assert_int_equal(snap_walk(f->store, cases[i].filters, nf, walk_cb, &w, &err), 0);
		qsort(w.names, w.n, sizeof(char *), cmp_str);
		qsort(want, nw, sizeof(char *), cmp_str);
		if (w.n != nw)
			fail_msg("case %zu: %zu matches, want %zu", i, w.n, nw);
		for (size_t j = 0; j < nw; j++)
			assert_string_equal(w.names[j], want[j]);
		for (size_t j = 0; j < w.n; j++)
			free(w.names[j]);
	}
	{
		const char *bad[] = {"kind=="};
		struct walked w = {0};
		assert_int_equal(snap_walk(f->store, bad, 1, walk_cb, &w, &err), -EINVAL);
	}
}

static void test_error_classes(void **state)
{
	struct fixture *f = *state;
	struct snap_mount *m = NULL;
	struct snap_info info = {0};
	struct snap_usage u;
	size_t n = 0;
	struct strata_error *err = NULL;

#define EXPECT(call, code)                        \
	do {                                      \
		assert_int_equal((call), (code)); \
		assert_non_null(err);             \
		err = strata_error_free(err);     \
	} while (0)

	EXPECT(snap_prepare(f->store, "", NULL, NULL, 0, &m, &n, &err), -EINVAL);
	EXPECT(snap_stat(f->store, "nope", &info, &err), -ENOENT);
	EXPECT(snap_mounts(f->store, "nope", &m, &n, &err), -ENOENT);
	EXPECT(snap_remove(f->store, "nope", &err), -ENOENT);
	EXPECT(snap_usage(f->store, "nope", &u, &err), -ENOENT);
	EXPECT(snap_commit(f->store, "c", "nope", NULL, 0, &err), -ENOENT);
	EXPECT(snap_prepare(f->store, "x", "nope", NULL, 0, &m, &n, &err), -ENOENT);

	prepare_nomount(f, "active", NULL);
	view_nomount(f, "view", NULL, NULL, 0);
	EXPECT(snap_prepare(f->store, "x", "active", NULL, 0, &m, &n, &err), -EINVAL);
	EXPECT(snap_view(f->store, "x", "view", NULL, 0, &m, &n, &err), -EINVAL);
	EXPECT(snap_commit(f->store, "c", "view", NULL, 0, &err), -EBADFD);
	commit_ok(f, "committed", "active");
	EXPECT(snap_commit(f->store, "c2", "committed", NULL, 0, &err), -EBADFD);
	EXPECT(snap_mounts(f->store, "committed", &m, &n, &err), -EBADFD);
	prepare_nomount(f, "active2", NULL);
	/* name taken: AlreadyExists, checked before the key */
	EXPECT(snap_commit(f->store, "committed", "active2", NULL, 0, &err), -EEXIST);
	EXPECT(snap_commit(f->store, "view", "nope", NULL, 0, &err), -EEXIST);
	EXPECT(snap_commit(f->store, "", "active2", NULL, 0, &err), -EINVAL);
	assert_int_equal(strata_errno_to_grpc(-EBADFD), GRPC_FAILED_PRECONDITION);
	assert_null(m);
#undef EXPECT
}

static void test_usage(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *mnt = fixture_dir(f, "mnt");
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_mount *m = NULL;
	struct snap_usage u0, u1, u2, u3;
	size_t n = 0;
	char buf[65536];
	FILE *fp;

	prepare_ok(f, "a", NULL, &m, &n);
	assert_int_equal(snap_usage(f->store, "a", &u0, &err), 0);
	assert_int_equal(u0.inodes, 1); /* the directory itself */
	mount_or_fail(m, n, mnt);
	m = snap_mounts_free(m, n);
	memset(buf, 'x', sizeof(buf));
	fp = fopen(strjoina_(mnt, "/big"), "we");
	assert_non_null(fp);
	assert_int_equal(fwrite(buf, 1, sizeof(buf), fp), sizeof(buf));
	fclose(fp);
	assert_int_equal(link(strjoina_(mnt, "/big"), strjoina_(mnt, "/big-link")), 0);
	assert_int_equal(mkdir(strjoina_(mnt, "/d"), 0755), 0);
	write_text(mnt, "d/small", "s");
	assert_int_equal(snap_unmount(mnt), 0);

	assert_int_equal(snap_usage(f->store, "a", &u1, &err), 0);
	assert_int_equal(u1.inodes, 4); /* root, big (linked twice), d, d/small */
	assert_true(u1.size >= u0.size + 65536 + 4096);
	assert_true(u1.size < u0.size + 2 * 65536); /* the hard link counted once */

	commit_ok(f, "c", "a");
	assert_int_equal(snap_usage(f->store, "c", &u2, &err), 0);
	assert_int_equal(u2.inodes, u1.inodes);
	assert_int_equal(u2.size, u1.size);
	/* committed usage is stored, not recomputed */
	{
		uint64_t id;
		char p[256];
		assert_int_equal(snap_get_id(f->store, "c", &id, &err), 0);
		snprintf(p, sizeof(p), "%s/%" PRIu64 "/fs", snap_store_snapshots_dir(f->store), id);
		write_text(p, "late", "late");
	}
	assert_int_equal(snap_usage(f->store, "c", &u3, &err), 0);
	assert_int_equal(u3.inodes, u2.inodes);
}

static void test_root_permission_and_owner(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *mnt = fixture_dir(f, "mnt");
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;
	struct stat st;
	uint64_t id;
	char p[256];

	prepare_ok(f, "a", NULL, &m, &n);
	mount_or_fail(m, n, mnt);
	m = snap_mounts_free(m, n);
	assert_int_equal(stat(mnt, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(chown(mnt, 1234, 5678), 0);
	assert_int_equal(snap_unmount(mnt), 0);
	commit_ok(f, "c", "a");
	/* the child's upper dir takes the parent's owner (containerd's Lchown) */
	prepare_nomount(f, "b", "c");
	assert_int_equal(snap_get_id(f->store, "b", &id, &err), 0);
	snprintf(p, sizeof(p), "%s/%" PRIu64 "/fs", snap_store_snapshots_dir(f->store), id);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
}

static void check_128(struct fixture *f, bool legacy)
{
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *mnt = fixture_dir(f, "mnt");
	_cleanup_free_ char *view = fixture_dir(f, "fullview");
	char parent[64] = "", key[64], name[64], file[64];
	struct snap_mount *m = NULL;
	size_t n = 0;

	for (int i = 0; i < 128; i++) {
		snprintf(key, sizeof(key), "prepare-layer-%d", i);
		prepare_ok(f, key, parent[0] ? parent : NULL, &m, &n);
		mount_or_fail(m, n, mnt);
		m = snap_mounts_free(m, n);
		if (i == 0) {
			write_text(mnt, "bottom", "way at the bottom\n");
			write_text(mnt, "overwriteme", "FIRST!\n");
			assert_int_equal(mkdir(strjoina_(mnt, "/ADDHERE"), 0755), 0);
			assert_int_equal(mkdir(strjoina_(mnt, "/ONLYME"), 0755), 0);
			write_text(mnt, "ONLYME/bottom", "bye!\n");
		} else {
			char text[64];
			snprintf(text, sizeof(text), "%d WAS HERE!\n", i);
			write_text(mnt, "overwriteme", text);
			snprintf(file, sizeof(file), "ADDHERE/file-%d", i);
			write_text(mnt, file, "same\n");
			assert_int_equal(path_rm_rf_at(AT_FDCWD, strjoina_(mnt, "/ONLYME")), 0);
			assert_int_equal(mkdir(strjoina_(mnt, "/ONLYME"), 0755), 0);
			snprintf(file, sizeof(file), "ONLYME/file-%d", i);
			write_text(mnt, file, "only me!\n");
		}
		assert_int_equal(snap_unmount(mnt), 0);
		snprintf(name, sizeof(name), "committed-%d", i);
		commit_ok(f, name, key);
		snprintf(parent, sizeof(parent), "%s", name);
	}
	assert_int_equal(snap_view(f->store, "fullview", parent, NULL, 0, &m, &n, &err), 0);
	assert_string_equal(m[0].type, "overlay");
	/* the one-page limit would have been exceeded by a single string */
	assert_true(strlen(m[0].options[m[0].n_options - 1]) > 4096);
	snap_mount_force_legacy(legacy);
	mount_or_fail(m, n, view);
	snap_mount_force_legacy(false);
	m = snap_mounts_free(m, n);
	assert_text(view, "bottom", "way at the bottom\n");
	assert_text(view, "overwriteme", "127 WAS HERE!\n");
	assert_text(view, "ADDHERE/file-1", "same\n");
	assert_text(view, "ADDHERE/file-127", "same\n");
	assert_text(view, "ONLYME/file-127", "only me!\n");
	assert_false(exists_at(view, "ONLYME/bottom"));
	assert_false(exists_at(view, "ONLYME/file-126"));
	assert_int_equal(snap_unmount(view), 0);
}

static void test_128_layers(void **state)
{
	check_128(*state, false);
}

static void test_128_layers_legacy_mount(void **state)
{
	check_128(*state, true);
}

static void test_cleanup_orphans(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	const char *sd = snap_store_snapshots_dir(f->store);
	struct snap_info info = {0};
	uint64_t id_keep, id_c;
	char p[256];

	prepare_nomount(f, "keep", NULL);
	prepare_nomount(f, "c-a", NULL);
	commit_ok(f, "c", "c-a");
	assert_int_equal(snap_get_id(f->store, "keep", &id_keep, &err), 0);
	assert_int_equal(snap_get_id(f->store, "c", &id_c, &err), 0);

	/* what a crash leaves: a directory made before its metadata commit
	 * (Prepare), one whose metadata is gone (Remove), and junk */
	snprintf(p, sizeof(p), "%s/999999/fs", sd);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	write_text(p, "data", "x");
	snprintf(p, sizeof(p), "%s/new-123/work", sd);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/007", sd);
	assert_int_equal(mkdir(p, 0700), 0);

	assert_int_equal(snap_cleanup(f->store, &err), 0);
	snprintf(p, sizeof(p), "%s/999999", sd);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/new-123", sd);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/007", sd);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/%" PRIu64 "/fs", sd, id_keep);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/%" PRIu64 "/fs", sd, id_c);
	assert_int_equal(access(p, F_OK), 0);

	/* reopen: snapshots persist and ids are never reused */
	fixture_close_store(f);
	fixture_open_store(f);
	stat_ok(f, "c", &info);
	assert_int_equal(info.kind, SNAP_KIND_COMMITTED);
	snap_info_done(&info);
	prepare_nomount(f, "after", NULL);
	{
		uint64_t id_after;
		assert_int_equal(snap_get_id(f->store, "after", &id_after, &err), 0);
		assert_true(id_after > id_keep && id_after > id_c);
	}
}

/* Poll until path is gone (the trash thread works in the background). */
static bool gone_within(const char *path, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return true;
		usleep(10000);
	}
	return access(path, F_OK) < 0 && errno == ENOENT;
}

static char *snap_dir(struct fixture *f, const char *key)
{
	_cleanup_error_ struct strata_error *err = NULL;
	uint64_t id;
	char *p;

	assert_int_equal(snap_get_id(f->store, key, &id, &err), 0);
	assert_true(asprintf(&p, "%s/%" PRIu64, snap_store_snapshots_dir(f->store), id) > 0);
	return p;
}

static char *trash_entry(struct fixture *f, const char *snapdir)
{
	char *p;

	assert_true(asprintf(&p, "%s/snapshots-trash/%s", f->root, strrchr(snapdir, '/') + 1) > 0);
	return p;
}

/* Remove answers after the metadata commit and a rename; the directory,
 * with whatever the container wrote, is deleted in the background. */
static void test_remove_async(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *base = NULL, *child = NULL, *active = NULL, *tbase = NULL,
	                    *tactive = NULL, *other = NULL;
	struct snap_usage u0, u1;

	prepare_nomount(f, "base-a", NULL);
	base = snap_dir(f, "base-a");
	write_text(strjoina_(base, "/fs"), "f", "base");
	commit_ok(f, "base", "base-a");
	prepare_nomount(f, "child", "base");
	child = snap_dir(f, "child");
	assert_int_equal(snap_usage(f->store, "base", &u0, &err), 0);

	/* a parent is still refused, and stays where it is */
	assert_int_equal(snap_remove(f->store, "base", &err), -ENOTEMPTY);
	err = strata_error_free(err);
	assert_int_equal(access(strjoina_(base, "/fs/f"), F_OK), 0);

	prepare_nomount(f, "active", NULL);
	active = snap_dir(f, "active");
	assert_int_equal(path_mkdir_p(strjoina_(active, "/fs/a/b/c"), 0755), 0);
	write_text(strjoina_(active, "/fs/a/b/c"), "x", "x");
	tactive = trash_entry(f, active);
	remove_ok(f, "active");
	/* gone from snapshots/ at once, from the disk eventually */
	assert_int_equal(access(active, F_OK), -1);
	assert_true(gone_within(tactive, 10000));

	remove_ok(f, "child");
	assert_int_equal(access(child, F_OK), -1);
	tbase = trash_entry(f, base);
	remove_ok(f, "base");
	assert_int_equal(access(base, F_OK), -1);
	assert_true(gone_within(tbase, 10000));

	/* usage of what remains is unaffected; a removed key is not found */
	prepare_nomount(f, "other-a", NULL);
	other = snap_dir(f, "other-a");
	write_text(strjoina_(other, "/fs"), "f", "base");
	commit_ok(f, "other", "other-a");
	assert_int_equal(snap_usage(f->store, "other", &u1, &err), 0);
	assert_int_equal(u1.inodes, u0.inodes);
	assert_int_equal(u1.size, u0.size);
	assert_int_equal(snap_usage(f->store, "base", &u1, &err), -ENOENT);
	err = strata_error_free(err);

	/* ids are not reused, so a removed id's trash name never clashes */
	prepare_nomount(f, "base-a", NULL);
	{
		_cleanup_free_ char *again = snap_dir(f, "base-a");
		assert_string_not_equal(again, base);
	}
}

/* What a crash leaves in the trash (renamed, not yet deleted) is swept when
 * the store opens, and Cleanup empties the trash before it returns. */
static void test_trash_swept(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *trash = path_join(f->root, "snapshots-trash");
	char p[300];

	fixture_close_store(f);
	snprintf(p, sizeof(p), "%s/4242/fs/deep/er", trash);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	write_text(p, "file", "left by a crash");
	snprintf(p, sizeof(p), "%s/4243", trash);
	assert_int_equal(mkdir(p, 0700), 0);
	fixture_open_store(f);
	snprintf(p, sizeof(p), "%s/4242", trash);
	assert_true(gone_within(p, 10000));
	snprintf(p, sizeof(p), "%s/4243", trash);
	assert_true(gone_within(p, 10000));
	assert_int_equal(access(trash, F_OK), 0);

	/* Cleanup: synchronous */
	snprintf(p, sizeof(p), "%s/77/fs", trash);
	assert_int_equal(path_mkdir_p(p, 0755), 0);
	write_text(p, "f", "x");
	assert_int_equal(snap_cleanup(f->store, &err), 0);
	snprintf(p, sizeof(p), "%s/77", trash);
	assert_int_equal(access(p, F_OK), -1);

	/* and a store closed right after Remove leaves nothing behind */
	prepare_nomount(f, "k", NULL);
	{
		_cleanup_free_ char *d = snap_dir(f, "k");
		_cleanup_free_ char *t = trash_entry(f, d);
		write_text(strjoina_(d, "/fs"), "f", "x");
		remove_ok(f, "k");
		fixture_close_store(f);
		assert_int_equal(access(t, F_OK), -1);
		fixture_open_store(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_basic, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_stat_and_transitivity, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_prepare_view_same_key, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_remove_intermediate, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_update, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_update_dotted_key, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_remove_reuse, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_view_readonly, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_walk, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_error_classes, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_usage, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_root_permission_and_owner, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_128_layers, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_128_layers_legacy_mount, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_cleanup_orphans, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_remove_async, fixture_setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_trash_swept, fixture_setup, fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
