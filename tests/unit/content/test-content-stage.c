/* SPDX-License-Identifier: Apache-2.0 */
/* content_writer_stage / content_writer_flush: the two-step write the gRPC
 * Write uses (hash and answer first, file write overlapped). */
#include <signal.h>
#include <sys/resource.h>

#include "content-test.h"

#define BIG   (512u * 1024) /* written by the flusher thread */
#define SMALL 1000u         /* written synchronously at flush */

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed);
	return p;
}

static void digest_of(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                      struct strata_digest *ret)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL;

	assert_int_equal(strata_hasher_new(&h), 0);
	assert_int_equal(strata_hasher_update(h, a, alen), 0);
	if (blen)
		assert_int_equal(strata_hasher_update(h, b, blen), 0);
	assert_int_equal(strata_hasher_final(h, ret), 0);
}

static int64_t disk_offset(struct content_store *s, const char *ref)
{
	struct content_status st;
	int64_t off;

	assert_int_equal(content_status(s, ref, &st, NULL), 0);
	off = st.offset;
	content_status_done(&st);
	return off;
}

static void test_stage_flush_commit(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ uint8_t *big = pattern(BIG, 1), *small = pattern(SMALL, 2);
	struct content_writer *w = NULL;
	struct strata_digest want, got, d;
	struct content_status st;

	digest_of(big, BIG, small, SMALL, &want);
	assert_int_equal(content_writer_open(f->store, "stage", 0, NULL, &w, NULL), 0);

	assert_int_equal(content_writer_stage(w, 0, big, BIG, NULL), 0);
	/* Counted and hashed at once, ... */
	assert_int_equal(content_writer_status(w, &st), 0);
	assert_int_equal(st.offset, BIG);
	/* ... one chunk at a time. */
	assert_int_equal(content_writer_stage(w, BIG, small, SMALL, NULL), -EBUSY);
	assert_int_equal(content_writer_write(w, BIG, small, SMALL, NULL), -EBUSY);
	assert_int_equal(content_writer_commit(w, 0, NULL, NULL, 0, NULL, NULL), -EBUSY);
	assert_int_equal(content_writer_flush(w, NULL), 0);
	assert_int_equal(disk_offset(f->store, "stage"), BIG);
	assert_int_equal(content_writer_flush(w, NULL), 0); /* nothing staged */

	/* Wrong offset: refused before anything is staged. */
	assert_int_equal(content_writer_stage(w, 5, small, SMALL, NULL), -ERANGE);
	assert_int_equal(content_writer_stage(w, -1, small, SMALL, NULL), 0);
	assert_int_equal(content_writer_flush(w, NULL), 0);

	assert_int_equal(content_writer_digest(w, &got), 0);
	assert_true(strata_digest_equal(&got, &want));
	assert_int_equal(content_writer_commit(w, BIG + SMALL, &want, NULL, 0, &d, NULL), 0);
	assert_true(strata_digest_equal(&d, &want));
	content_writer_close(w);

	struct content_info info;
	assert_int_equal(content_info(f->store, &want, &info, NULL), 0);
	assert_int_equal(info.size, BIG + SMALL);
	content_info_done(&info);
}

/* Closing with a chunk staged keeps only what was flushed, and a resumed
 * writer continues from there with the right hash. */
static void test_close_drops_staged(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ uint8_t *a = pattern(BIG, 3), *b = pattern(BIG, 4);
	struct content_writer *w = NULL;
	struct strata_digest want, d;
	struct content_status st;

	digest_of(a, BIG, b, BIG, &want);
	for (int posted = 0; posted < 2; posted++) {
		size_t blen = posted ? BIG : SMALL;

		assert_int_equal(content_writer_open(f->store, "drop", 0, NULL, &w, NULL), 0);
		assert_int_equal(content_writer_write(w, 0, a, BIG, NULL), 0);
		assert_int_equal(content_writer_stage(w, BIG, b, blen, NULL), 0);
		content_writer_close(w);
		assert_int_equal(disk_offset(f->store, "drop"), BIG);

		assert_int_equal(content_writer_open(f->store, "drop", 0, NULL, &w, NULL), 0);
		assert_int_equal(content_writer_status(w, &st), 0);
		assert_int_equal(st.offset, BIG);
		if (posted) {
			assert_int_equal(content_writer_stage(w, BIG, b, BIG, NULL), 0);
			assert_int_equal(content_writer_flush(w, NULL), 0);
			assert_int_equal(
			        content_writer_commit(w, 2 * BIG, &want, NULL, 0, &d, NULL), 0);
		}
		content_writer_close(w);
	}
}

/* A flush that fails rolls the writer back to before the stage. */
static void test_flush_error_rolls_back(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ uint8_t *a = pattern(BIG, 5), *b = pattern(BIG, 6);
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_writer *w = NULL;
	struct strata_digest want, got;
	struct rlimit old, lim;
	struct content_status st;

	digest_of(a, BIG, NULL, 0, &want);
	assert_int_equal(content_writer_open(f->store, "fail", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_stage(w, 0, a, BIG, NULL), 0);
	assert_int_equal(content_writer_flush(w, NULL), 0);

	/* Files may not grow past BIG + 4 KiB: the next chunk's write fails
	 * (EFBIG) after landing partly. */
	(void)signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = BIG + 4096;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(content_writer_stage(w, BIG, b, BIG, NULL), 0);
	assert_int_equal(content_writer_flush(w, &err), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_non_null(err);

	assert_int_equal(content_writer_status(w, &st), 0);
	assert_int_equal(st.offset, BIG);
	assert_int_equal(disk_offset(f->store, "fail"), BIG);
	assert_int_equal(content_writer_digest(w, &got), 0);
	assert_true(strata_digest_equal(&got, &want));
	assert_int_equal(content_writer_commit(w, BIG, &want, NULL, 0, NULL, NULL), 0);
	content_writer_close(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_stage_flush_commit, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_close_drops_staged, fixture_setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_flush_error_rolls_back, fixture_setup,
	                                        fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
