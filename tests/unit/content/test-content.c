/* SPDX-License-Identifier: Apache-2.0 */
/* Every content store operation and its error paths. */
#include <unistd.h>

#include "content-internal.h"
#include "content-test.h"

#define D(s) digest_of(s)
/* labels from literals (the struct owns mutable strings elsewhere) */
#define L(k, v)                          \
	{                                \
		(char *)(k), (char *)(v) \
	}

static struct strata_digest digest_of(const char *s)
{
	struct strata_digest d;
	(void)strata_sha256(s, strlen(s), &d);
	return d;
}

static void test_write_commit_read(void **state)
{
	struct fixture *f = *state;
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	_cleanup_(content_reader_freep) struct content_reader *rd = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_label labels[] = {L("b", "2"), L("a", "1")};
	struct content_status st;
	struct content_info info;
	struct strata_digest d = D("hello world"), got;
	char buf[64];
	char path[256];
	struct stat sb;

	assert_int_equal(content_writer_open(f->store, "ref1", 11, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "hello ", 6, NULL), 0);
	assert_int_equal(content_writer_write(w, 6, "world", 5, NULL), 0);
	assert_int_equal(content_writer_status(w, &st), 0);
	assert_string_equal(st.ref, "ref1");
	assert_int_equal(st.offset, 11);
	assert_int_equal(st.total, 11);
	assert_int_equal(content_writer_digest(w, &got), 0);
	assert_true(strata_digest_equal(&got, &d));

	/* Status of the same ingest from the store side */
	assert_int_equal(content_status(f->store, "ref1", &st, NULL), 0);
	assert_int_equal(st.offset, 11);
	assert_int_equal(st.total, 11);
	assert_true(st.started_at.tv_sec > 0);
	content_status_done(&st);

	assert_int_equal(content_writer_commit(w, 11, &d, labels, 2, &got, &err), 0);
	assert_true(strata_digest_equal(&got, &d));
	/* after commit the writer only closes */
	assert_int_equal(content_writer_write(w, -1, "x", 1, NULL), -EBADFD);
	assert_int_equal(content_writer_commit(w, 0, NULL, NULL, 0, NULL, NULL), -EBADFD);
	w = content_writer_close(w);

	/* ingest gone */
	assert_int_equal(content_status(f->store, "ref1", &st, NULL), -ENOENT);

	assert_int_equal(content_info(f->store, &d, &info, NULL), 0);
	assert_int_equal(info.size, 11);
	assert_int_equal(info.n_labels, 2);
	assert_string_equal(info.labels[0].key, "a"); /* sorted */
	assert_string_equal(content_info_label(&info, "b"), "2");
	assert_true(info.created_at.tv_sec > 0);
	content_info_done(&info);

	blob_path(f, &d, path, sizeof(path));
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0444);

	assert_int_equal(content_reader_open(f->store, &d, &rd, NULL), 0);
	assert_int_equal(content_reader_size(rd), 11);
	assert_int_equal(content_reader_pread(rd, buf, sizeof(buf), 0), 11);
	assert_memory_equal(buf, "hello world", 11);
	assert_int_equal(content_reader_pread(rd, buf, 3, 6), 3);
	assert_memory_equal(buf, "wor", 3);
	assert_int_equal(content_reader_pread(rd, buf, 10, 11), 0);
	assert_int_equal(content_reader_pread(rd, buf, 10, 12), -ERANGE);
	assert_int_equal(content_reader_pread(rd, buf, 10, -1), -ERANGE);
	assert_true(content_reader_fd(rd) >= 0);
}

static void test_empty_blob(void **state)
{
	struct fixture *f = *state;
	struct strata_digest d;
	struct content_info info;

	assert_int_equal(put_blob(f->store, "empty", "", 0, NULL, 0, &d), 0);
	assert_int_equal(content_info(f->store, &d, &info, NULL), 0);
	assert_int_equal(info.size, 0);
	content_info_done(&info);
}

static void test_not_found(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_reader *rd = NULL;
	struct content_info info;
	struct content_status st;
	struct strata_digest d = D("nope");

	assert_int_equal(content_info(f->store, &d, &info, &err), -ENOENT);
	assert_non_null(strstr(err->msg, "not found"));
	assert_int_equal(content_reader_open(f->store, &d, &rd, NULL), -ENOENT);
	assert_int_equal(content_delete(f->store, &d, NULL), -ENOENT);
	info = (struct content_info){.digest = d};
	assert_int_equal(content_update(f->store, &info, NULL, 0, NULL, NULL), -ENOENT);
	assert_int_equal(content_status(f->store, "nope", &st, NULL), -ENOENT);
	assert_int_equal(content_abort(f->store, "nope", NULL), -ENOENT);
}

static void test_already_exists(void **state)
{
	struct fixture *f = *state;
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_status st;
	struct strata_digest d;

	assert_int_equal(put_blob(f->store, "a", "same", 4, NULL, 0, &d), 0);
	/* commit of content that is already stored: AlreadyExists, ingest dropped */
	assert_int_equal(put_blob(f->store, "b", "same", 4, NULL, 0, NULL), -EEXIST);
	assert_int_equal(content_status(f->store, "b", &st, NULL), -ENOENT);
	/* a writer that names stored content up front is refused at open */
	assert_int_equal(content_writer_open(f->store, "c", 4, &d, &w, &err), -EEXIST);
	assert_null(w);
	assert_non_null(strstr(err->msg, "already exists"));
}

static void test_mismatch(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_writer *w = NULL;
	struct strata_digest wrong = D("other");
	struct content_status st;

	assert_int_equal(content_writer_open(f->store, "m", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "abc", 3, NULL), 0);
	assert_int_equal(content_writer_commit(w, 4, NULL, NULL, 0, NULL, &err), -EBADMSG);
	assert_non_null(strstr(err->msg, "unexpected commit size"));
	w = content_writer_close(w);
	/* the ingest is kept for another try */
	assert_int_equal(content_status(f->store, "m", &st, NULL), 0);
	assert_int_equal(st.offset, 3);
	content_status_done(&st);

	err = strata_error_free(err);
	assert_int_equal(content_writer_open(f->store, "m", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_commit(w, 3, &wrong, NULL, 0, NULL, &err), -EBADMSG);
	assert_non_null(strstr(err->msg, "unexpected commit digest"));
	w = content_writer_close(w);

	/* size <= 0 and no expected digest: not checked */
	assert_int_equal(content_writer_open(f->store, "m", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_commit(w, 0, NULL, NULL, 0, NULL, NULL), 0);
	w = content_writer_close(w);
}

static void test_locked_ref(void **state)
{
	struct fixture *f = *state;
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_writer *w1 = NULL, *w2 = NULL;

	assert_int_equal(content_writer_open(f->store, "lock", 0, NULL, &w1, NULL), 0);
	assert_int_equal(content_writer_open(f->store, "lock", 0, NULL, &w2, &err), -EAGAIN);
	assert_null(w2);
	assert_non_null(strstr(err->msg, "locked"));
	assert_int_equal(content_abort(f->store, "lock", NULL), -EAGAIN);
	w1 = content_writer_close(w1);
	assert_int_equal(content_writer_open(f->store, "lock", 0, NULL, &w2, NULL), 0);
	w2 = content_writer_close(w2);
	assert_int_equal(content_abort(f->store, "lock", NULL), 0);
}

static void test_invalid_arguments(void **state)
{
	struct fixture *f = *state;
	struct content_writer *w = NULL;
	struct content_status st;
	_cleanup_free_ char *big = malloc(CONTENT_LABEL_MAX + 2);
	struct content_label bad[] = {L("k", big)};
	struct content_label empty_key[] = {L("", "v")};
	struct content_label dup[] = {L("k", "1"), L("k", "2")};

	assert_int_equal(content_writer_open(f->store, "", 0, NULL, &w, NULL), -EINVAL);
	assert_int_equal(content_writer_open(f->store, NULL, 0, NULL, &w, NULL), -EINVAL);
	assert_int_equal(content_writer_open(f->store, "r", -5, NULL, &w, NULL), -EINVAL);
	assert_int_equal(content_status(f->store, "", &st, NULL), -EINVAL);
	assert_int_equal(content_abort(f->store, "", NULL), -EINVAL);

	memset(big, 'x', CONTENT_LABEL_MAX);
	big[CONTENT_LABEL_MAX] = '\0'; /* key 1 + value 4096 > 4096 */
	assert_int_equal(put_blob(f->store, "l", "x", 1, bad, 1, NULL), -EINVAL);
	assert_int_equal(put_blob(f->store, "l", "x", 1, empty_key, 1, NULL), -EINVAL);
	assert_int_equal(put_blob(f->store, "l", "x", 1, dup, 2, NULL), -EINVAL);
	big[CONTENT_LABEL_MAX - 1] = '\0'; /* exactly 4096: fine */
	assert_int_equal(put_blob(f->store, "l", "x", 1, bad, 1, NULL), 0);
}

static void test_truncate_and_offsets(void **state)
{
	struct fixture *f = *state;
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	struct strata_digest d = D("new"), got;

	assert_int_equal(content_writer_open(f->store, "t", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "old data", 8, NULL), 0);
	assert_int_equal(content_writer_write(w, 3, "x", 1, &err), -ERANGE);
	assert_non_null(strstr(err->msg, "current offset 8"));
	assert_int_equal(content_writer_write(w, 9, "x", 1, NULL), -ERANGE);
	/* offset 0 over existing data starts over */
	assert_int_equal(content_writer_write(w, 0, "new", 3, NULL), 0);
	assert_int_equal(content_writer_commit(w, 3, &d, NULL, 0, &got, NULL), 0);
	assert_true(strata_digest_equal(&got, &d));
}

static void test_resume_after_close(void **state)
{
	struct fixture *f = *state;
	struct content_writer *w = NULL;
	struct content_status st;
	struct strata_digest d = D("part1part2");

	assert_int_equal(content_writer_open(f->store, "res", 10, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "part1", 5, NULL), 0);
	w = content_writer_close(w);

	assert_int_equal(content_writer_open(f->store, "res", 10, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_status(w, &st), 0);
	assert_int_equal(st.offset, 5);
	assert_int_equal(st.total, 10);
	assert_int_equal(content_writer_write(w, 5, "part2", 5, NULL), 0);
	assert_int_equal(content_writer_commit(w, 10, &d, NULL, 0, NULL, NULL), 0);
	w = content_writer_close(w);

	/* a different total than recorded starts over */
	assert_int_equal(content_writer_open(f->store, "res2", 10, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "abc", 3, NULL), 0);
	w = content_writer_close(w);
	assert_int_equal(content_writer_open(f->store, "res2", 20, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_status(w, &st), 0);
	assert_int_equal(st.offset, 0);
	assert_int_equal(st.total, 20);
	w = content_writer_close(w);
	/* unknown total resumes and keeps the recorded one */
	assert_int_equal(content_writer_open(f->store, "res2", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_status(w, &st), 0);
	assert_int_equal(st.total, 20);
	w = content_writer_close(w);
}

static void test_resume_after_reopen(void **state)
{
	struct fixture *f = *state;
	struct content_writer *w = NULL;
	struct content_status st;
	struct strata_digest d = D("before restart|after restart");

	assert_int_equal(content_writer_open(f->store, "rr", 0, &d, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "before restart|", 15, NULL), 0);
	w = content_writer_close(w);
	fixture_close_store(f);
	assert_int_equal(fixture_open_store(f, NULL), 0);

	assert_int_equal(content_status(f->store, "rr", &st, NULL), 0);
	assert_int_equal(st.offset, 15);
	assert_true(st.have_expected);
	assert_true(strata_digest_equal(&st.expected, &d));
	content_status_done(&st);

	assert_int_equal(content_writer_open(f->store, "rr", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, -1, "after restart", 13, NULL), 0);
	assert_int_equal(content_writer_commit(w, 28, &d, NULL, 0, NULL, NULL), 0);
	w = content_writer_close(w);
}

struct status_list {
	char refs[8][32];
	int n;
};

static int collect_status(const struct content_status *st, void *userdata)
{
	struct status_list *l = userdata;
	snprintf(l->refs[l->n++], sizeof(l->refs[0]), "%s", st->ref);
	return 0;
}

static int status_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_list_statuses_and_abort(void **state)
{
	struct fixture *f = *state;
	const char *refs[] = {"default/1/layer-a", "default/2/layer-b", "other/3/config"};
	struct content_writer *w = NULL;
	struct status_list l;
	_cleanup_error_ struct strata_error *err = NULL;

	for (size_t i = 0; i < ELEMENTSOF(refs); i++) {
		assert_int_equal(content_writer_open(f->store, refs[i], 0, NULL, &w, NULL), 0);
		assert_int_equal(content_writer_write(w, 0, "x", 1, NULL), 0);
		w = content_writer_close(w);
	}
	l = (struct status_list){0};
	assert_int_equal(content_list_statuses(f->store, NULL, 0, collect_status, &l, NULL), 0);
	assert_int_equal(l.n, 3);

	l = (struct status_list){0};
	const char *f1[] = {"ref~=^default/"};
	assert_int_equal(content_list_statuses(f->store, f1, 1, collect_status, &l, NULL), 0);
	assert_int_equal(l.n, 2);
	qsort(l.refs, (size_t)l.n, sizeof(l.refs[0]), status_cmp);
	assert_string_equal(l.refs[0], "default/1/layer-a");

	l = (struct status_list){0};
	const char *f2[] = {"ref==other/3/config", "ref==\"default/2/layer-b\""};
	assert_int_equal(content_list_statuses(f->store, f2, 2, collect_status, &l, NULL), 0);
	assert_int_equal(l.n, 2);

	const char *bad[] = {"ref=="};
	assert_int_equal(content_list_statuses(f->store, bad, 1, collect_status, &l, &err),
	                 -EINVAL);

	assert_int_equal(content_abort(f->store, refs[0], NULL), 0);
	assert_int_equal(content_abort(f->store, refs[0], NULL), -ENOENT);
	l = (struct status_list){0};
	assert_int_equal(content_list_statuses(f->store, NULL, 0, collect_status, &l, NULL), 0);
	assert_int_equal(l.n, 2);
}

static void test_update(void **state)
{
	struct fixture *f = *state;
	struct content_label labels[] = {L("keep", "1"), L("a.b", "x")};
	struct content_info in = {0}, out;
	struct strata_digest d;
	_cleanup_error_ struct strata_error *err = NULL;

	assert_int_equal(put_blob(f->store, "u", "upd", 3, labels, 2, &d), 0);
	in.digest = d;

	/* labels.<key> with dots sets one key */
	assert_int_equal(content_info_set_label(&in, "a.b", "y"), 0);
	assert_int_equal(content_info_set_label(&in, "ignored", "z"), 0);
	const char *p1[] = {"labels.a.b"};
	assert_int_equal(content_update(f->store, &in, p1, 1, &out, NULL), 0);
	assert_int_equal(out.n_labels, 2);
	assert_string_equal(content_info_label(&out, "a.b"), "y");
	assert_string_equal(content_info_label(&out, "keep"), "1");
	assert_null(content_info_label(&out, "ignored"));
	assert_int_equal(out.size, 3);
	assert_true(out.updated_at.tv_sec >= out.created_at.tv_sec);
	content_info_done(&out);

	/* labels.<key> absent from info removes it */
	const char *p2[] = {"labels.keep"};
	assert_int_equal(content_update(f->store, &in, p2, 1, &out, NULL), 0);
	assert_null(content_info_label(&out, "keep"));
	content_info_done(&out);

	/* "labels" replaces all */
	const char *p3[] = {"labels"};
	assert_int_equal(content_update(f->store, &in, p3, 1, &out, NULL), 0);
	assert_int_equal(out.n_labels, 2);
	assert_string_equal(content_info_label(&out, "ignored"), "z");
	content_info_done(&out);

	/* empty mask replaces all too; empty values are dropped */
	content_info_done(&in);
	in.digest = d;
	assert_int_equal(content_info_set_label(&in, "only", "1"), 0);
	assert_int_equal(content_info_set_label(&in, "blank", ""), 0);
	assert_int_equal(content_update(f->store, &in, NULL, 0, NULL, NULL), 0);
	assert_int_equal(content_info(f->store, &d, &out, NULL), 0);
	assert_int_equal(out.n_labels, 1);
	assert_string_equal(out.labels[0].key, "only");
	content_info_done(&out);

	/* bad path */
	const char *p4[] = {"labels.x", "size"};
	assert_int_equal(content_update(f->store, &in, p4, 2, NULL, &err), -EINVAL);
	assert_non_null(strstr(err->msg, "cannot update \"size\""));
	err = strata_error_free(err);
	const char *p5[] = {"labelsx"};
	assert_int_equal(content_update(f->store, &in, p5, 1, NULL, NULL), -EINVAL);

	/* bad label value through update */
	_cleanup_free_ char *big = malloc(CONTENT_LABEL_MAX + 1);
	memset(big, 'v', CONTENT_LABEL_MAX);
	big[CONTENT_LABEL_MAX] = '\0';
	assert_int_equal(content_info_set_label(&in, "only", big), 0);
	assert_int_equal(content_update(f->store, &in, NULL, 0, NULL, &err), -EINVAL);
	/* and the stored labels did not change */
	assert_int_equal(content_info(f->store, &d, &out, NULL), 0);
	assert_string_equal(content_info_label(&out, "only"), "1");
	content_info_done(&out);
	content_info_done(&in);

	/* label helpers */
	assert_int_equal(content_info_set_label(&in, "b", "1"), 0);
	assert_int_equal(content_info_set_label(&in, "a", "1"), 0);
	assert_int_equal(content_info_set_label(&in, "c", "1"), 0);
	assert_string_equal(in.labels[0].key, "a");
	assert_string_equal(in.labels[2].key, "c");
	assert_int_equal(content_info_set_label(&in, "b", NULL), 0);
	assert_int_equal(in.n_labels, 2);
	assert_int_equal(content_info_set_label(&in, "zz", NULL), 0);
	content_info_done(&in);
}

struct walk_result {
	int n;
	int stop_after;
};

static int count_walk(const struct content_info *info, void *userdata)
{
	struct walk_result *w = userdata;
	w->n++;
	if (w->stop_after && w->n >= w->stop_after)
		return 1;
	return 0;
}

static int walk_count(struct content_store *s, const char *const *filters, size_t n)
{
	struct walk_result w = {0};
	int r = content_walk(s, filters, n, count_walk, &w, NULL);
	return r < 0 ? r : w.n;
}

static int fail_walk(const struct content_info *info, void *userdata)
{
	return -EIO;
}

static void test_walk_filters(void **state)
{
	struct fixture *f = *state;
	char data[16], dstr[STRATA_DIGEST_STRING_MAX], filter[128];
	struct strata_digest d0;

	for (int i = 0; i < 10; i++) {
		char v[8], ref[8];
		struct content_label l[] = {
		        L("containerd.io/gc.ref.content.l.0", "sha256:x"),
		        L("kind", i % 2 ? "odd" : "even"),
		        L("n", v),
		};
		snprintf(v, sizeof(v), "%d", i);
		snprintf(ref, sizeof(ref), "w%d", i);
		snprintf(data, sizeof(data), "blob %d", i);
		assert_int_equal(put_blob(f->store, ref, data, strlen(data), i < 5 ? l : l + 1,
		                          i < 5 ? 3 : 2, i == 0 ? &d0 : NULL),
		                 0);
	}
	assert_int_equal(walk_count(f->store, NULL, 0), 10);
	const char *a[] = {"labels.kind==odd"};
	assert_int_equal(walk_count(f->store, a, 1), 5);
	const char *b[] = {"labels.kind==odd,labels.n~=^[13]$"};
	assert_int_equal(walk_count(f->store, b, 1), 2);
	const char *c[] = {"labels.n==1", "labels.n==2", "labels.n==99"};
	assert_int_equal(walk_count(f->store, c, 3), 2);
	const char *e[] = {"labels.\"containerd.io/gc.ref.content.l.0\""};
	assert_int_equal(walk_count(f->store, e, 1), 5);
	/* the unquoted form names the same key */
	const char *g[] = {"labels.containerd.io/gc.ref.content.l.0"};
	assert_int_equal(walk_count(f->store, g, 1), -EINVAL); /* '/' starts a quote */
	const char *h[] = {"labels.kind!=odd"};
	assert_int_equal(walk_count(f->store, h, 1), 5);
	snprintf(filter, sizeof(filter), "digest==%s", strata_digest_format(&d0, dstr));
	const char *i1[] = {filter};
	assert_int_equal(walk_count(f->store, i1, 1), 1);
	const char *j[] = {"size==6"};
	assert_int_equal(walk_count(f->store, j, 1), 10);
	const char *k[] = {"labels.kind"};
	assert_int_equal(walk_count(f->store, k, 1), 10);
	const char *bad[] = {"labels.kind=="};
	assert_int_equal(walk_count(f->store, bad, 1), -EINVAL);

	struct walk_result w = {.stop_after = 3};
	assert_int_equal(content_walk(f->store, NULL, 0, count_walk, &w, NULL), 0);
	assert_int_equal(w.n, 3);
	assert_int_equal(content_walk(f->store, NULL, 0, fail_walk, NULL, NULL), -EIO);
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	struct content_reader *rd = NULL;
	struct strata_digest d;
	char path[256];

	assert_int_equal(put_blob(f->store, "del", "delete me", 9, NULL, 0, &d), 0);
	assert_int_equal(content_delete(f->store, &d, NULL), 0);
	assert_int_equal(content_info(f->store, &d, NULL, NULL), -ENOENT);
	assert_int_equal(content_reader_open(f->store, &d, &rd, NULL), -ENOENT);
	assert_int_equal(content_delete(f->store, &d, NULL), -ENOENT);
	blob_path(f, &d, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	/* and it can be written again */
	assert_int_equal(put_blob(f->store, "del", "delete me", 9, NULL, 0, NULL), 0);
}

static void write_file(const char *path, const char *data)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(data, fp);
	fclose(fp);
}

static void test_startup_repair(void **state)
{
	struct fixture *f = *state;
	struct strata_digest good = D("orphan"), bad = D("expected"), gone, linked;
	struct content_writer *w = NULL;
	struct content_status st;
	char path[256], path2[512];

	/* a verified blob file nobody indexed */
	blob_path(f, &good, path, sizeof(path));
	write_file(path, "orphan");
	/* a file whose content does not match its name */
	blob_path(f, &bad, path, sizeof(path));
	write_file(path, "corrupt");
	/* a stray file */
	snprintf(path2, sizeof(path2), "%s/content/blobs/sha256/junk", f->root);
	write_file(path2, "junk");
	/* an index entry without a file */
	assert_int_equal(put_blob(f->store, "g", "gone", 4, NULL, 0, &gone), 0);
	blob_path(f, &gone, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	/* a commit interrupted after the link: ingest data linked into blobs/ */
	assert_int_equal(content_writer_open(f->store, "half", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "halfway", 7, NULL), 0);
	w = content_writer_close(w);
	linked = D("halfway");
	char hex[STRATA_SHA256_HEX_LEN + 1], ingest[512];
	struct strata_digest refd;
	(void)strata_sha256("half", 4, &refd);
	snprintf(ingest, sizeof(ingest), "%s/content/ingest/%s/data", f->root,
	         strata_digest_hex(&refd, hex));
	blob_path(f, &linked, path, sizeof(path));
	assert_int_equal(link(ingest, path), 0);
	/* a half-created ingest directory */
	snprintf(path2, sizeof(path2), "%s/content/ingest/.new-abc", f->root);
	assert_int_equal(mkdir(path2, 0700), 0);
	snprintf(path2, sizeof(path2), "%s/content/ingest/torn", f->root);
	assert_int_equal(mkdir(path2, 0700), 0);

	fixture_close_store(f);
	assert_int_equal(fixture_open_store(f, NULL), 0);

	assert_int_equal(content_info(f->store, &good, NULL, NULL), 0);
	assert_int_equal(content_info(f->store, &bad, NULL, NULL), -ENOENT);
	blob_path(f, &bad, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path2, sizeof(path2), "%s/content/blobs/sha256/junk", f->root);
	assert_int_equal(access(path2, F_OK), -1);
	assert_int_equal(content_info(f->store, &gone, NULL, NULL), -ENOENT);
	assert_int_equal(content_info(f->store, &linked, NULL, NULL), 0);
	assert_int_equal(content_status(f->store, "half", &st, NULL), -ENOENT);
	snprintf(path2, sizeof(path2), "%s/content/ingest/torn", f->root);
	assert_int_equal(access(path2, F_OK), -1);
	snprintf(path2, sizeof(path2), "%s/content/ingest/.new-abc", f->root);
	assert_int_equal(access(path2, F_OK), -1);
	assert_int_equal(content_verify_all(f->store, NULL, NULL, NULL), 0);
}

static void test_expire(void **state)
{
	struct fixture *f = *state;
	struct content_writer *w = NULL, *held = NULL;
	struct strata_digest refd;
	char hex[STRATA_SHA256_HEX_LEN + 1], path[512];
	struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
	size_t removed = 99;
	struct content_status st;

	assert_int_equal(content_writer_open(f->store, "old", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_write(w, 0, "x", 1, NULL), 0);
	w = content_writer_close(w);
	assert_int_equal(content_writer_open(f->store, "fresh", 0, NULL, &w, NULL), 0);
	w = content_writer_close(w);
	assert_int_equal(content_writer_open(f->store, "old-but-held", 0, NULL, &held, NULL), 0);

	const char *olds[] = {"old", "old-but-held"};
	for (int i = 0; i < 2; i++) {
		(void)strata_sha256(olds[i], strlen(olds[i]), &refd);
		snprintf(path, sizeof(path), "%s/content/ingest/%s/data", f->root,
		         strata_digest_hex(&refd, hex));
		assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
	}
	assert_int_equal(content_expire_ingests(f->store, 3600, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(content_status(f->store, "old", &st, NULL), -ENOENT);
	assert_int_equal(content_status(f->store, "fresh", &st, NULL), 0);
	content_status_done(&st);
	assert_int_equal(content_status(f->store, "old-but-held", &st, NULL), 0);
	content_status_done(&st);
	held = content_writer_close(held);

	/* expiry at open with the configured age */
	fixture_close_store(f);
	struct content_options opts = {.ingest_expiry_sec = 3600};
	assert_int_equal(fixture_open_store(f, &opts), 0);
	assert_int_equal(content_status(f->store, "old-but-held", &st, NULL), -ENOENT);
	assert_int_equal(content_status(f->store, "fresh", &st, NULL), 0);
	content_status_done(&st);
}

static void test_gc(void **state)
{
	struct fixture *f = *state;
	struct strata_digest layer, config, manifest, index_, orphan, pinned, child;
	char v1[STRATA_DIGEST_STRING_MAX], v2[STRATA_DIGEST_STRING_MAX],
	        v3[STRATA_DIGEST_STRING_MAX];
	struct content_gc_result res = {0};

	assert_int_equal(put_blob(f->store, "1", "layer", 5, NULL, 0, &layer), 0);
	assert_int_equal(put_blob(f->store, "2", "config", 6, NULL, 0, &config), 0);
	struct content_label ml[] = {
	        L("containerd.io/gc.ref.content.l.0", strata_digest_format(&layer, v1)),
	        L("containerd.io/gc.ref.content.config", strata_digest_format(&config, v2)),
	        L("containerd.io/gc.ref.contentx", "sha256:bogus"),
	};
	assert_int_equal(put_blob(f->store, "3", "manifest", 8, ml, 3, &manifest), 0);
	struct content_label il[] = {
	        L("containerd.io/gc.ref.content/m", strata_digest_format(&manifest, v3)),
	};
	assert_int_equal(put_blob(f->store, "4", "index", 5, il, 1, &index_), 0);
	assert_int_equal(put_blob(f->store, "5", "orphan", 6, NULL, 0, &orphan), 0);
	assert_int_equal(put_blob(f->store, "6", "child", 5, NULL, 0, &child), 0);
	struct content_label pl[] = {
	        L("containerd.io/gc.root", "2024-01-01T00:00:00Z"),
	        L("containerd.io/gc.ref.content", strata_digest_format(&child, v1)),
	};
	assert_int_equal(put_blob(f->store, "7", "pinned", 6, pl, 2, &pinned), 0);

	/* blobs committed during the last second are protected: wait it out */
	sleep(2);

	assert_int_equal(content_gc(f->store, &index_, 1,
	                            &(struct content_gc_options){.dry_run = true}, &res, NULL),
	                 0);
	assert_int_equal(res.n_removed, 1);
	assert_true(strata_digest_equal(&res.removed[0], &orphan));
	assert_int_equal(res.bytes_removed, 6);
	content_gc_result_done(&res);
	assert_int_equal(content_info(f->store, &orphan, NULL, NULL), 0);

	assert_int_equal(content_gc(f->store, &index_, 1, NULL, &res, NULL), 0);
	assert_int_equal(res.n_removed, 1);
	content_gc_result_done(&res);
	assert_int_equal(content_info(f->store, &orphan, NULL, NULL), -ENOENT);
	assert_int_equal(content_info(f->store, &layer, NULL, NULL), 0);
	assert_int_equal(content_info(f->store, &child, NULL, NULL), 0);

	/* without roots only the pinned tree survives */
	assert_int_equal(content_gc(f->store, NULL, 0, NULL, &res, NULL), 0);
	assert_int_equal(res.n_removed, 4);
	content_gc_result_done(&res);
	assert_int_equal(content_info(f->store, &pinned, NULL, NULL), 0);
	assert_int_equal(content_info(f->store, &child, NULL, NULL), 0);
	assert_int_equal(content_info(f->store, &manifest, NULL, NULL), -ENOENT);

	/* a fresh blob is not swept */
	assert_int_equal(put_blob(f->store, "8", "fresh", 5, NULL, 0, &orphan), 0);
	assert_int_equal(content_gc(f->store, NULL, 0, NULL, NULL, NULL), 0);
	assert_int_equal(content_info(f->store, &orphan, NULL, NULL), 0);
}

static int n_reported;

static void on_bad(const struct strata_digest *d, int error, void *userdata)
{
	assert_int_equal(error, -EBADMSG);
	n_reported++;
}

static void test_verify_all(void **state)
{
	struct fixture *f = *state;
	struct strata_digest d;
	char path[256];

	assert_int_equal(put_blob(f->store, "v1", "verify one", 10, NULL, 0, NULL), 0);
	assert_int_equal(put_blob(f->store, "v2", "verify two", 10, NULL, 0, &d), 0);
	assert_int_equal(content_verify_all(f->store, on_bad, NULL, NULL), 0);
	blob_path(f, &d, path, sizeof(path));
	assert_int_equal(chmod(path, 0644), 0);
	write_file(path, "verify tw0");
	n_reported = 0;
	assert_int_equal(content_verify_all(f->store, on_bad, NULL, NULL), 1);
	assert_int_equal(n_reported, 1);
}

static void test_record_codec(void **state)
{
	struct content_info in = {.size = 42, .created_at = {5, 6}, .updated_at = {7, 8}}, out;
	void *buf;
	size_t len;

	(void)strata_sha256("x", 1, &in.digest);
	assert_int_equal(content_info_set_label(&in, "k", "v"), 0);
	assert_int_equal(content_info_set_label(&in, "k2", ""), 0);
	assert_int_equal(content_record_encode(&in, &buf, &len), 0);
	assert_int_equal(content_record_decode(buf, len, &in.digest, &out), 0);
	assert_int_equal(out.size, 42);
	assert_int_equal(out.created_at.tv_sec, 5);
	assert_int_equal(out.updated_at.tv_nsec, 8);
	assert_int_equal(out.n_labels, 2);
	assert_string_equal(out.labels[1].key, "k2");
	content_info_done(&out);
	/* every truncation is rejected cleanly */
	for (size_t l = 0; l < len; l++)
		assert_int_equal(content_record_decode(buf, l, &in.digest, &out), -EBADMSG);
	((uint8_t *)buf)[0] = 9;
	assert_int_equal(content_record_decode(buf, len, &in.digest, &out), -EBADMSG);
	free(buf);
	content_info_done(&in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
	        T(test_write_commit_read),
	        T(test_empty_blob),
	        T(test_not_found),
	        T(test_already_exists),
	        T(test_mismatch),
	        T(test_locked_ref),
	        T(test_invalid_arguments),
	        T(test_truncate_and_offsets),
	        T(test_resume_after_close),
	        T(test_resume_after_reopen),
	        T(test_list_statuses_and_abort),
	        T(test_update),
	        T(test_walk_filters),
	        T(test_delete),
	        T(test_startup_repair),
	        T(test_expire),
	        T(test_gc),
	        T(test_verify_all),
	        cmocka_unit_test(test_record_codec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
