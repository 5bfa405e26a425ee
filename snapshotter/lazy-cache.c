/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache of lazy layers: verified, uncompressed chunks on disk under
 * ROOT/cache/chunks/, content-addressed by their sha256, so a chunk shared by
 * layers (or images) is stored once. Only verified bytes are ever put here.
 *
 * Bounded: the total size is tracked in memory (scanned once at open), and a
 * put that takes it over the cap evicts the least recently used files
 * (by mtime, which a hit refreshes when it is older than TOUCH_SEC) until
 * 90% of the cap. Nothing per chunk is kept in memory.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lazy-internal.h"

#define TOUCH_SEC 300

/* Thread-safe: dir_fd is immutable, size atomic, evict_lock serialises
 * eviction (a put finding it busy skips, the evictor catches up). */
struct lazy_cache {
	int dir_fd;
	uint64_t max_bytes;
	atomic_uint_fast64_t size;
	pthread_mutex_t evict_lock;
	atomic_uint_fast64_t tmp_seq;
};

static void chunk_name(const struct strata_digest *d, char buf[static 68])
{
	char hex[STRATA_SHA256_HEX_LEN + 1];

	strata_digest_hex(d, hex);
	snprintf(buf, 68, "%.2s/%s", hex, hex);
}

/* Visit every chunk file: fn(subdir fd, name, stat). */
typedef void (*visit_fn)(int dfd, const char *name, const struct stat *st, void *userdata);

static int visit(struct lazy_cache *c, visit_fn fn, void *userdata)
{
	int fd = openat(c->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *top;

	if (fd < 0)
		return negative_errno();
	top = fdopendir(fd);
	if (!top) {
		close(fd);
		return -ENOMEM;
	}
	for (struct dirent *de; (de = readdir(top));) {
		int sfd;
		DIR *sub;

		if (strlen(de->d_name) != 2)
			continue;
		sfd = openat(c->dir_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sfd < 0)
			continue;
		sub = fdopendir(sfd);
		if (!sub) {
			close(sfd);
			continue;
		}
		for (struct dirent *f; (f = readdir(sub));) {
			struct stat st;
			if (f->d_name[0] == '.')
				continue;
			if (fstatat(sfd, f->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			fn(sfd, f->d_name, &st, userdata);
		}
		closedir(sub);
	}
	closedir(top);
	return 0;
}

static void add_size(int dfd, const char *name, const struct stat *st, void *userdata)
{
	uint64_t *total = userdata;

	/* a temp file of a crashed put */
	if (strchr(name, '.')) {
		(void)unlinkat(dfd, name, 0);
		return;
	}
	*total += (uint64_t)st->st_size;
}

int lazy_cache_open(const char *dir, uint64_t max_bytes, struct lazy_cache **ret)
{
	struct lazy_cache *c;
	uint64_t total = 0;
	int r;

	r = path_mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd < 0) {
		r = negative_errno();
		free(c);
		return r;
	}
	c->max_bytes = max_bytes;
	pthread_mutex_init(&c->evict_lock, NULL);
	(void)visit(c, add_size, &total);
	atomic_store(&c->size, total);
	*ret = c;
	return 0;
}

struct lazy_cache *lazy_cache_free(struct lazy_cache *c)
{
	if (!c)
		return NULL;
	close(c->dir_fd);
	pthread_mutex_destroy(&c->evict_lock);
	free(c);
	return NULL;
}

uint64_t lazy_cache_size(struct lazy_cache *c)
{
	return atomic_load(&c->size);
}

bool lazy_cache_has(struct lazy_cache *c, const struct strata_digest *d)
{
	char name[68];

	chunk_name(d, name);
	return faccessat(c->dir_fd, name, F_OK, 0) == 0;
}

ssize_t lazy_cache_read(struct lazy_cache *c, const struct strata_digest *d, uint64_t size,
                        void *buf, size_t len, uint64_t off)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char name[68];
	ssize_t n;

	chunk_name(d, name);
	fd = openat(c->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) < 0)
		return -ENOENT;
	if ((uint64_t)st.st_size != size) {
		/* damaged (e.g. a torn write after a crash without rename
		 * atomicity): drop it, the caller refetches */
		(void)unlinkat(c->dir_fd, name, 0);
		return -ENOENT;
	}
	if (off >= size)
		return 0;
	n = loop_pread(fd, buf, (size_t)MIN((uint64_t)len, size - off), off);
	if (n < 0)
		return -ENOENT;
	if (st.st_mtime + TOUCH_SEC < time(NULL))
		(void)futimens(fd, NULL);
	return n;
}

struct victim {
	struct timespec mtime;
	uint64_t size;
	char name[68];
};

struct evict_scan {
	struct victim *v;
	size_t n, cap;
	uint64_t total;
};

static void collect(int dfd, const char *name, const struct stat *st, void *userdata)
{
	struct evict_scan *e = userdata;
	char sub[8];
	int l;

	e->total += (uint64_t)st->st_size;
	if (strlen(name) != STRATA_SHA256_HEX_LEN)
		return;
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 1024;
		struct victim *a = realloc(e->v, cap * sizeof(*a));
		if (!a)
			return;
		e->v = a;
		e->cap = cap;
	}
	l = snprintf(sub, sizeof(sub), "%.2s", name);
	(void)l;
	e->v[e->n].mtime = st->st_mtim;
	e->v[e->n].size = (uint64_t)st->st_size;
	snprintf(e->v[e->n].name, sizeof(e->v[e->n].name), "%s/%s", sub, name);
	e->n++;
	(void)dfd;
}

static int cmp_victim(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : x->mtime.tv_nsec > y->mtime.tv_nsec;
}

static int evict_locked(struct lazy_cache *c, uint64_t target)
{
	struct evict_scan e = {0};
	uint64_t total;
	int r;

	/* The scan is O(files), with a short-lived list: eviction is rare. */
	r = visit(c, collect, &e);
	if (r < 0) {
		free(e.v);
		return r;
	}
	qsort(e.v, e.n, sizeof(*e.v), cmp_victim);
	total = e.total;
	for (size_t i = 0; i < e.n && total > target; i++) {
		if (unlinkat(c->dir_fd, e.v[i].name, 0) == 0)
			total -= e.v[i].size;
	}
	atomic_store(&c->size, total);
	log_debug("chunk cache: evicted down to %" PRIu64 " bytes (cap %" PRIu64 ")", total,
	          c->max_bytes);
	free(e.v);
	return 0;
}

int lazy_cache_evict(struct lazy_cache *c, uint64_t target)
{
	int r;

	pthread_mutex_lock(&c->evict_lock);
	r = evict_locked(c, target);
	pthread_mutex_unlock(&c->evict_lock);
	return r;
}

int lazy_cache_put(struct lazy_cache *c, const struct strata_digest *d, const void *buf, size_t len)
{
	_cleanup_close_ int fd = -1;
	char name[68], tmp[96];
	int r;

	chunk_name(d, name);
	if (faccessat(c->dir_fd, name, F_OK, 0) == 0)
		return 0;
	snprintf(tmp, sizeof(tmp), "%.2s", name);
	if (mkdirat(c->dir_fd, tmp, 0700) < 0 && errno != EEXIST)
		return negative_errno();
	snprintf(tmp, sizeof(tmp), "%s.%" PRIuFAST64 ".tmp", name,
	         atomic_fetch_add(&c->tmp_seq, 1));
	fd = openat(c->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return negative_errno();
	r = loop_write(fd, buf, len);
	/* No fsync: a chunk lost in a crash is refetched; a torn one fails
	 * the size check or is replaced. Rename makes it visible whole. */
	if (r == 0 && renameat(c->dir_fd, tmp, c->dir_fd, name) < 0)
		r = negative_errno();
	if (r < 0) {
		(void)unlinkat(c->dir_fd, tmp, 0);
		return r;
	}
	if (atomic_fetch_add(&c->size, len) + len > c->max_bytes && c->max_bytes > 0 &&
	    pthread_mutex_trylock(&c->evict_lock) == 0) {
		(void)evict_locked(c, c->max_bytes / 10 * 9);
		pthread_mutex_unlock(&c->evict_lock);
	}
	return 0;
}
