/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark driver for bench/content/run.sh (not part of the daemon).
 *
 *   bench-content ingest ROOT FILE     ingest FILE through a writer; prints MB/s
 *   bench-content populate ROOT N      index N small blobs (bulk, for the
 *                                      lookup benchmarks); prints the time
 *   bench-content info ROOT N          N random Info lookups; prints lookups/s
 *   bench-content list ROOT FILTER     walk with a filter; prints count and time
 *
 * Output is one "key=value" line per figure, for the script to parse.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "content-internal.h"
#include "log.h"
#include "path.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_store(const char *root, bool check, struct strata_meta **meta,
                      struct content_store **store)
{
	_cleanup_free_ char *metadir = path_join(root, "meta");
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_options opts = {.skip_startup_check = !check};
	double t0 = now_s();
	int r;

	r = path_mkdir_p(metadir, 0700);
	if (r >= 0)
		r = strata_meta_open(metadir, NULL, meta, &err);
	if (r >= 0)
		r = content_store_open(root, *meta, &opts, store, &err);
	if (r < 0) {
		fprintf(stderr, "open: %s\n", strata_error_message(err));
		return r;
	}
	if (check)
		printf("open_with_check_s=%.3f\n", now_s() - t0);
	return 0;
}

static int cmd_ingest(struct content_store *s, const char *file)
{
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_close_ int fd = -1;
	struct content_writer *w = NULL;
	struct strata_digest d;
	char dbuf[STRATA_DIGEST_STRING_MAX];
	const size_t chunk = 1 << 20;
	struct stat st;
	uint8_t *map;
	double t0, t1;
	int r;

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return negative_errno();
	/* mmap so the figure is the store's cost, not a read copy's; the
	 * file is warm in the page cache as it is for sha256sum */
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED)
		return negative_errno();

	t0 = now_s();
	r = content_writer_open(s, "bench-ingest", st.st_size, NULL, &w, &err);
	for (off_t o = 0; r >= 0 && o < st.st_size; o += (off_t)chunk)
		r = content_writer_write(w, o, map + o, MIN(chunk, (size_t)(st.st_size - o)), &err);
	if (r >= 0)
		r = content_writer_commit(w, st.st_size, NULL, NULL, 0, &d, &err);
	t1 = now_s();
	content_writer_close(w);
	munmap(map, (size_t)st.st_size);
	if (r < 0 && r != -EEXIST) {
		fprintf(stderr, "ingest: %s\n", strata_error_message(err));
		return r;
	}
	printf("ingest_digest=%s\n", r == 0 ? strata_digest_format(&d, dbuf) : "exists");
	printf("ingest_s=%.3f\ningest_mb_s=%.1f\n", t1 - t0,
	       (double)st.st_size / (1 << 20) / (t1 - t0));
	return 0;
}

static void bench_digest(long i, struct strata_digest *d)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "bench-blob-%ld", i);
	(void)strata_sha256(buf, (size_t)n, d);
}

static int cmd_populate(struct content_store *s, long n)
{
	const long batch = 5000;
	struct content_info *infos = calloc((size_t)batch, sizeof(*infos));
	double t0 = now_s();
	int r = 0;

	if (!infos)
		return -ENOMEM;
	for (long base = 0; base < n && r >= 0; base += batch) {
		long m = MIN(batch, n - base);

		for (long j = 0; j < m && r >= 0; j++) {
			long i = base + j;
			struct content_info *info = &infos[j];
			char data[32], hex[STRATA_SHA256_HEX_LEN + 1], idx[24];
			int len = snprintf(data, sizeof(data), "bench-blob-%ld", i);

			content_info_done(info);
			bench_digest(i, &info->digest);
			info->size = len;
			clock_gettime(CLOCK_REALTIME, &info->created_at);
			info->updated_at = info->created_at;
			snprintf(idx, sizeof(idx), "%ld", i);
			r = content_info_set_label(info, "bench.kind", i % 2 ? "odd" : "even");
			if (r >= 0)
				r = content_info_set_label(info, "bench.index", idx);
			if (r >= 0 && i % 100 == 0)
				r = content_info_set_label(info, "bench.rare", "yes");
			/* the blob file too, so the startup check agrees */
			int fd = openat(s->blobs_fd, strata_digest_hex(&info->digest, hex),
			                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);
			if (fd < 0 || loop_write(fd, data, (size_t)len) < 0)
				r = -EIO;
			safe_close(fd);
		}
		if (r >= 0)
			r = content_db_put_many(s, infos, (size_t)m);
	}
	for (long j = 0; j < batch; j++)
		content_info_done(&infos[j]);
	free(infos);
	if (r < 0)
		return r;
	printf("populate_s=%.3f\n", now_s() - t0);
	return 0;
}

static int cmd_info(struct content_store *s, long n, long indexed)
{
	unsigned seed = 1;
	double t0, t1;
	long found = 0;

	t0 = now_s();
	for (long k = 0; k < n; k++) {
		struct strata_digest d;
		struct content_info info;

		bench_digest((long)((unsigned)rand_r(&seed) % (unsigned long)indexed), &d);
		if (content_info(s, &d, &info, NULL) == 0) {
			found++;
			content_info_done(&info);
		}
	}
	t1 = now_s();
	printf("info_found=%ld\ninfo_per_s=%.0f\n", found, (double)n / (t1 - t0));
	return found == n ? 0 : -ENOENT;
}

static int count_fn(const struct content_info *info, void *userdata)
{
	(*(long *)userdata)++;
	return 0;
}

static int cmd_list(struct content_store *s, const char *filter)
{
	_cleanup_error_ struct strata_error *err = NULL;
	long count = 0;
	double t0 = now_s();
	int r;

	r = content_walk(s, &filter, 1, count_fn, &count, &err);
	if (r < 0) {
		fprintf(stderr, "list: %s\n", strata_error_message(err));
		return r;
	}
	printf("list_count=%ld\nlist_s=%.3f\n", count, now_s() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	struct strata_meta *meta = NULL;
	struct content_store *s = NULL;
	int r;

	if (argc < 4) {
		fprintf(stderr, "usage: %s ingest|populate|info|list ROOT ARG [N]\n", argv[0]);
		return 2;
	}
	log_set_level(LOG_LEVEL_WARN);
	r = open_store(argv[2], streq(argv[1], "info"), &meta, &s);
	if (r < 0)
		return 1;
	if (streq(argv[1], "ingest"))
		r = cmd_ingest(s, argv[3]);
	else if (streq(argv[1], "populate"))
		r = cmd_populate(s, atol(argv[3]));
	else if (streq(argv[1], "info"))
		r = cmd_info(s, atol(argv[3]), argc > 4 ? atol(argv[4]) : atol(argv[3]));
	else if (streq(argv[1], "list"))
		r = cmd_list(s, argv[3]);
	else
		r = -EINVAL;
	content_store_close(s);
	strata_meta_close(meta);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	return 0;
}
