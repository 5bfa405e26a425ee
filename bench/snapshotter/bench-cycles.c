/* SPDX-License-Identifier: Apache-2.0 */
/*
 * In-process Prepare + Mounts + Commit + Remove cycles per second, with N
 * threads (default: 1 and 16), every metadata write durable (LMDB fsync
 * through group commit). Usage: bench-snap-cycles [SECONDS [THREADS...]]
 * Prints one line per thread count, and how many writes shared a commit.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "snapshotter.h"

struct run {
	struct snap_store *store;
	double seconds;
	int thread;
	atomic_bool stop;
	atomic_ulong cycles;
	atomic_int failed;
};

struct worker {
	struct run *run;
	int id;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *run = w->run;
	char key[64], name[64];

	for (unsigned long i = 0; !atomic_load(&run->stop); i++) {
		struct strata_error *err = NULL;
		struct snap_mount *m = NULL;
		size_t n = 0;
		int r;

		snprintf(key, sizeof(key), "t%d-%lu-active", w->id, i);
		snprintf(name, sizeof(name), "t%d-%lu", w->id, i);
		r = snap_prepare(run->store, key, "base", NULL, 0, &m, &n, &err);
		snap_mounts_free(m, n);
		if (r == 0) {
			r = snap_mounts(run->store, key, &m, &n, &err);
			snap_mounts_free(m, n);
		}
		if (r == 0)
			r = snap_commit(run->store, name, key, NULL, 0, &err);
		if (r == 0)
			r = snap_remove(run->store, name, &err);
		if (r < 0) {
			fprintf(stderr, "cycle failed: %s\n", strata_error_message(err));
			strata_error_free(err);
			atomic_store(&run->failed, 1);
			return NULL;
		}
		atomic_fetch_add(&run->cycles, 1);
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	int counts[16] = {1, 16}, n_counts = 2;
	char root[] = "/var/tmp/strata-bench-XXXXXX";
	_cleanup_free_ char *metadir = NULL;
	struct strata_meta *meta = NULL;
	struct snap_store *store = NULL;
	struct strata_error *err = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;

	if (argc > 2) {
		n_counts = 0;
		for (int i = 2; i < argc && n_counts < 16; i++)
			counts[n_counts++] = atoi(argv[i]);
	}
	if (!mkdtemp(root))
		return 1;
	metadir = path_join(root, "meta");
	if (strata_meta_open(metadir, NULL, &meta, &err) < 0 ||
	    snap_store_open(root, meta, NULL, &store, &err) < 0 ||
	    snap_prepare(store, "base-a", NULL, NULL, 0, &m, &n, &err) < 0 ||
	    snap_commit(store, "base", "base-a", NULL, 0, &err) < 0) {
		fprintf(stderr, "setup: %s\n", strata_error_message(err));
		return 1;
	}
	snap_mounts_free(m, n);

	for (int c = 0; c < n_counts; c++) {
		struct run run = {.store = store, .seconds = seconds};
		pthread_t th[256];
		struct worker w[256];
		struct strata_meta_stats s0, s1;
		int threads = counts[c] > 256 ? 256 : counts[c];
		double t0, t1;

		strata_meta_get_stats(meta, &s0);
		t0 = now();
		for (int i = 0; i < threads; i++) {
			w[i] = (struct worker){.run = &run, .id = c * 1000 + i};
			pthread_create(&th[i], NULL, worker_main, &w[i]);
		}
		while (now() - t0 < seconds && !atomic_load(&run.failed)) {
			struct timespec ts = {0, 50 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		atomic_store(&run.stop, true);
		for (int i = 0; i < threads; i++)
			pthread_join(th[i], NULL);
		t1 = now();
		strata_meta_get_stats(meta, &s1);
		printf("threads=%d cycles=%lu seconds=%.2f cycles_per_sec=%.1f "
		       "writes=%llu commits=%llu writes_per_commit=%.2f\n",
		       threads, (unsigned long)atomic_load(&run.cycles), t1 - t0,
		       (double)atomic_load(&run.cycles) / (t1 - t0),
		       (unsigned long long)(s1.write_calls - s0.write_calls),
		       (unsigned long long)(s1.commits - s0.commits),
		       (double)(s1.write_calls - s0.write_calls) /
		               (double)(s1.commits - s0.commits ? s1.commits - s0.commits : 1));
		if (atomic_load(&run.failed))
			return 1;
	}
	snap_store_close(store);
	strata_meta_close(meta);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
		(void)!system(cmd);
	}
	return 0;
}
