/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 16 threads on one store: different refs, identical content under
 * different refs, one contended ref, a ref resumed in turns, and concurrent
 * readers of one blob. No corruption, exactly one winner where one is
 * expected, and -EAGAIN (Unavailable) for the losers of a lock.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "content-test.h"

#define THREADS 16
#define CHUNK   4096

static struct content_store *store;
static pthread_barrier_t barrier;
static atomic_int n_ok, n_exists, n_again, n_errors;
static uint8_t *big; /* shared blob for readers */
static size_t big_len = 4 << 20;
static struct strata_digest big_digest;

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = (uint8_t)(seed >> 16);
	}
}

static int check(bool ok)
{
	if (!ok)
		atomic_fetch_add(&n_errors, 1);
	return ok ? 0 : -1;
}

static void unique_blobs(int id)
{
	uint8_t *buf = malloc(256 << 10), *back = malloc(256 << 10);

	for (int k = 0; k < 20; k++) {
		char ref[32];
		size_t len = (size_t)((id * 7919 + k * 104729) % (256 << 10));
		struct strata_digest d;
		struct content_reader *rd = NULL;

		snprintf(ref, sizeof(ref), "unique-%d-%d", id, k);
		fill(buf, len, (unsigned)(id * 1000 + k));
		buf[0] = (uint8_t)id; /* distinct per thread even for len 1 */
		if (len == 0)
			len = 1;
		if (check(put_blob(store, ref, buf, len, NULL, 0, &d) == 0) < 0)
			continue;
		if (check(content_reader_open(store, &d, &rd, NULL) == 0) < 0)
			continue;
		check(content_reader_pread(rd, back, len, 0) == (ssize_t)len);
		check(memcmp(buf, back, len) == 0);
		content_reader_free(rd);
	}
	free(buf);
	free(back);
}

static void identical_content(int id)
{
	static uint8_t same[1 << 20];
	char ref[32];
	int r;

	if (id == 0)
		fill(same, sizeof(same), 42);
	pthread_barrier_wait(&barrier);
	snprintf(ref, sizeof(ref), "same-%d", id);
	r = put_blob(store, ref, same, sizeof(same), NULL, 0, NULL);
	if (r == 0)
		atomic_fetch_add(&n_ok, 1);
	else if (r == -EEXIST)
		atomic_fetch_add(&n_exists, 1);
	else
		atomic_fetch_add(&n_errors, 1);
}

static void contended_ref(int id)
{
	struct content_writer *w = NULL;
	int r;

	pthread_barrier_wait(&barrier);
	r = content_writer_open(store, "contended", 0, NULL, &w, NULL);
	if (r == 0)
		atomic_fetch_add(&n_ok, 1);
	else if (r == -EAGAIN)
		atomic_fetch_add(&n_again, 1);
	else
		atomic_fetch_add(&n_errors, 1);
	/* hold it until everyone has tried */
	pthread_barrier_wait(&barrier);
	if (w) {
		check(content_writer_write(w, -1, "x", 1, NULL) == 0);
		content_writer_close(w);
	}
}

/* Each thread appends one chunk of its own byte to a shared ref, taking
 * turns through the lock. */
static void resume_in_turns(int id)
{
	uint8_t chunk[CHUNK];
	struct content_writer *w = NULL;
	int r;

	memset(chunk, 'A' + id, sizeof(chunk));
	for (;;) {
		r = content_writer_open(store, "turns", 0, NULL, &w, NULL);
		if (r == -EAGAIN) {
			sched_yield();
			continue;
		}
		break;
	}
	if (check(r == 0) < 0)
		return;
	check(content_writer_write(w, -1, chunk, sizeof(chunk), NULL) == 0);
	content_writer_close(w);
}

static void readers(int id)
{
	struct content_reader *rd = NULL;
	uint8_t buf[65536];
	unsigned seed = (unsigned)id;

	if (check(content_reader_open(store, &big_digest, &rd, NULL) == 0) < 0)
		return;
	for (int k = 0; k < 200; k++) {
		size_t off = (size_t)rand_r(&seed) % big_len;
		size_t len = (size_t)rand_r(&seed) % sizeof(buf);
		ssize_t n = content_reader_pread(rd, buf, len, (int64_t)off);
		check(n == (ssize_t)MIN(len, big_len - off));
		if (n > 0)
			check(memcmp(buf, big + off, (size_t)n) == 0);
	}
	content_reader_free(rd);
}

static void *thread_main(void *arg)
{
	int id = (int)(intptr_t)arg;

	unique_blobs(id);
	pthread_barrier_wait(&barrier);
	identical_content(id);
	pthread_barrier_wait(&barrier);
	contended_ref(id);
	pthread_barrier_wait(&barrier);
	resume_in_turns(id);
	pthread_barrier_wait(&barrier);
	readers(id);
	return NULL;
}

static void test_concurrency(void **state)
{
	struct fixture *f = *state;
	pthread_t threads[THREADS];
	struct content_writer *w = NULL;
	struct content_status st;
	int counts[THREADS] = {0};
	uint8_t *data;
	struct content_reader *rd = NULL;
	struct strata_digest d;

	store = f->store;
	big = malloc(big_len);
	fill(big, big_len, 7);
	assert_int_equal(put_blob(store, "big", big, big_len, NULL, 0, &big_digest), 0);
	pthread_barrier_init(&barrier, NULL, THREADS);

	/* the phases are separated by barriers; counters are checked at the
	 * end, so phases 2 and 3 use disjoint counters */
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(
		        pthread_create(&threads[i], NULL, thread_main, (void *)(intptr_t)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);

	assert_int_equal(atomic_load(&n_errors), 0);
	/* identical content: one commit, 15 AlreadyExists; contended ref: one
	 * holder, 15 Unavailable */
	assert_int_equal(atomic_load(&n_exists), THREADS - 1);
	assert_int_equal(atomic_load(&n_again), THREADS - 1);
	assert_int_equal(atomic_load(&n_ok), 2);

	/* the shared ingest holds every thread's chunk, each whole */
	assert_int_equal(content_status(store, "turns", &st, NULL), 0);
	assert_int_equal(st.offset, THREADS * CHUNK);
	content_status_done(&st);
	assert_int_equal(content_writer_open(store, "turns", 0, NULL, &w, NULL), 0);
	assert_int_equal(content_writer_commit(w, THREADS * CHUNK, NULL, NULL, 0, &d, NULL), 0);
	content_writer_close(w);
	assert_int_equal(content_reader_open(store, &d, &rd, NULL), 0);
	data = malloc(THREADS * CHUNK);
	assert_int_equal(content_reader_pread(rd, data, THREADS * CHUNK, 0), THREADS * CHUNK);
	for (int c = 0; c < THREADS; c++) {
		int id = data[c * CHUNK] - 'A';
		assert_true(id >= 0 && id < THREADS);
		counts[id]++;
		for (int i = 0; i < CHUNK; i++)
			assert_int_equal(data[c * CHUNK + i], data[c * CHUNK]);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(counts[i], 1);
	free(data);
	content_reader_free(rd);

	assert_int_equal(content_verify_all(store, NULL, NULL, NULL), 0);
	pthread_barrier_destroy(&barrier);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_concurrency, fixture_setup, fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
