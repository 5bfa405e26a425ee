/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache of lazy layers: verified, uncompressed chunks on disk under
 * ROOT/cache/chunks/, content-addressed by their sha256, so a chunk shared by
 * layers (or images) is stored once. Only verified bytes are ever put here.
 *
 * Bounded: the total size is tracked in memory (scanned once at open), and a
 * put that takes it over the cap evicts the least recently used files
 * (by mtime, which a hit refreshes when it is older than TOUCH_SEC) until
 * 90% of the cap. Nothing per chunk is kept in memory, but for a moment:
 *
 * Write-behind: a small chunk put (up to PENDING_CHUNK_MAX) is kept in
 * memory (served from there by lazy_cache_has/read, not by pin) and written
 * by a writer thread at the lowest priority. Creating a file costs an inode
 * allocation, measured at ~0.4 ms of CPU each on a busy ext4 (and 0.36 ms
 * per first-use directory); a container's start fetches hundreds of small
 * files (the read-ahead of a directory's neighbours), and on two cores that
 * CPU came out of the start. Large chunks are written at once: kept in
 * memory too (4 MiB), the python start measured slower (their reads lose
 * the splice path until written). Bounded by PENDING_BYTES_MAX; a chunk
 * lost with the process is refetched.
 */
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lazy-internal.h"

#define TOUCH_SEC 300
/* Open chunk files kept for cached reads: 64 x 4 MiB chunks covers a 256 MiB
 * working set, and costs 64 fds per store, not per layer. */
#define FD_SLOTS 64
/* Write-behind: chunks up to PENDING_CHUNK_MAX, PENDING_BYTES_MAX at most. */
#define PENDING_CHUNK_MAX (256u << 10)
#define PENDING_BYTES_MAX (16u << 20)
#define PENDING_BUCKETS   256

/* A chunk waiting for the writer. */
struct pending {
	struct pending *hnext; /* bucket chain */
	struct pending *qnext; /* write order */
	struct strata_digest digest;
	size_t len;
	uint8_t data[];
};

/* An open, size-checked chunk file. pins counts readers using fd right now
 * (a FUSE reply may splice from it); a slot is reused or closed only when
 * unpinned. */
struct fd_slot {
	struct strata_digest digest;
	uint64_t size; /* checked at open; a pin for another size reopens */
	int fd;
	unsigned pins;
	uint64_t used;  /* fd_clock at the last pin: LRU */
	time_t touched; /* when the file's mtime was last refreshed */
};

/* Thread-safe: dir_fd is immutable, size atomic, evict_lock serialises
 * eviction (a put finding it busy skips, the evictor catches up). fd_lock
 * protects slots and fd_clock; it is held only around table updates, never
 * across I/O other than open/close of one chunk file. */
struct lazy_cache {
	int dir_fd;
	uint64_t max_bytes;
	atomic_uint_fast64_t size;
	pthread_mutex_t evict_lock;
	atomic_uint_fast64_t tmp_seq;

	pthread_mutex_t fd_lock;
	struct fd_slot slots[FD_SLOTS];
	uint64_t fd_clock;

	/* write-behind; pend_lock protects all of it, held for table
	 * updates and copies of at most PENDING_CHUNK_MAX, never for I/O.
	 * An entry stays in the table until its file exists. */
	pthread_mutex_t pend_lock;
	pthread_cond_t pend_work;    /* queued, or stop */
	pthread_cond_t pend_drained; /* queue empty and nothing being written */
	struct pending *buckets[PENDING_BUCKETS];
	struct pending *q_head, *q_tail;
	size_t pend_bytes;
	bool writing, pend_stop, writer_started;
	pthread_t writer;
};

static void write_behind_stop(struct lazy_cache *c);

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
	pthread_mutex_init(&c->fd_lock, NULL);
	pthread_mutex_init(&c->pend_lock, NULL);
	pthread_cond_init(&c->pend_work, NULL);
	pthread_cond_init(&c->pend_drained, NULL);
	for (size_t i = 0; i < FD_SLOTS; i++)
		c->slots[i].fd = -1;
	(void)visit(c, add_size, &total);
	atomic_store(&c->size, total);
	*ret = c;
	return 0;
}

struct lazy_cache *lazy_cache_free(struct lazy_cache *c)
{
	if (!c)
		return NULL;
	write_behind_stop(c);
	close(c->dir_fd);
	for (size_t i = 0; i < FD_SLOTS; i++)
		if (c->slots[i].fd >= 0)
			close(c->slots[i].fd);
	pthread_mutex_destroy(&c->evict_lock);
	pthread_mutex_destroy(&c->fd_lock);
	pthread_mutex_destroy(&c->pend_lock);
	pthread_cond_destroy(&c->pend_work);
	pthread_cond_destroy(&c->pend_drained);
	free(c);
	return NULL;
}

uint64_t lazy_cache_size(struct lazy_cache *c)
{
	uint64_t pending;

	pthread_mutex_lock(&c->pend_lock);
	pending = c->pend_bytes;
	pthread_mutex_unlock(&c->pend_lock);
	return atomic_load(&c->size) + pending;
}

/* --- write-behind ------------------------------------------------------------ */

static unsigned bucket_of(const struct strata_digest *d)
{
	return d->sha256[0] % PENDING_BUCKETS;
}

/* pend_lock held. */
static struct pending *pending_find(struct lazy_cache *c, const struct strata_digest *d)
{
	for (struct pending *p = c->buckets[bucket_of(d)]; p; p = p->hnext)
		if (strata_digest_equal(&p->digest, d))
			return p;
	return NULL;
}

static void pending_unlink(struct lazy_cache *c, struct pending *p)
{
	for (struct pending **pp = &c->buckets[bucket_of(&p->digest)]; *pp; pp = &(*pp)->hnext)
		if (*pp == p) {
			*pp = p->hnext;
			break;
		}
	c->pend_bytes -= p->len;
}

static int write_file(struct lazy_cache *c, const struct strata_digest *d, const void *buf,
                      size_t len);

static void *writer_main(void *userdata)
{
	struct lazy_cache *c = userdata;

	/* idle priority: the files are for later; the CPU is for now */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
	pthread_mutex_lock(&c->pend_lock);
	for (;;) {
		struct pending *p;
		int r;

		while (!c->q_head && !c->pend_stop)
			pthread_cond_wait(&c->pend_work, &c->pend_lock);
		p = c->q_head;
		if (!p)
			break; /* stopping, and all written */
		c->q_head = p->qnext;
		if (!c->q_head)
			c->q_tail = NULL;
		c->writing = true;
		pthread_mutex_unlock(&c->pend_lock);
		r = write_file(c, &p->digest, p->data, p->len);
		if (r < 0)
			log_debug_errno(r, "chunk cache: store chunk");
		pthread_mutex_lock(&c->pend_lock);
		c->writing = false;
		pending_unlink(c, p);
		free(p);
		if (!c->q_head) {
			pthread_cond_broadcast(&c->pend_drained);
			/* what the entries took goes back to the system */
			pthread_mutex_unlock(&c->pend_lock);
			(void)malloc_trim(0);
			pthread_mutex_lock(&c->pend_lock);
		}
	}
	pthread_mutex_unlock(&c->pend_lock);
	return NULL;
}

/* Keep a copy of the chunk for the writer: false when it should be written
 * now (large, over the bound, no writer). */
static bool write_behind(struct lazy_cache *c, const struct strata_digest *d, const void *buf,
                         size_t len)
{
	struct pending *p;
	bool queued = false;

	if (len > PENDING_CHUNK_MAX)
		return false;
	pthread_mutex_lock(&c->pend_lock);
	if (pending_find(c, d)) {
		queued = true;
		goto out;
	}
	if (c->pend_stop || c->pend_bytes + len > PENDING_BYTES_MAX)
		goto out;
	if (!c->writer_started) {
		if (pthread_create(&c->writer, NULL, writer_main, c) != 0)
			goto out;
		c->writer_started = true;
	}
	p = malloc(sizeof(*p) + len);
	if (!p)
		goto out;
	p->digest = *d;
	p->len = len;
	memcpy(p->data, buf, len);
	p->hnext = c->buckets[bucket_of(d)];
	c->buckets[bucket_of(d)] = p;
	p->qnext = NULL;
	if (c->q_tail)
		c->q_tail->qnext = p;
	else
		c->q_head = p;
	c->q_tail = p;
	c->pend_bytes += len;
	pthread_cond_signal(&c->pend_work);
	queued = true;
out:
	pthread_mutex_unlock(&c->pend_lock);
	return queued;
}

/* Chunk bytes [off, off + len) from memory: the count, or -ENOENT. */
static ssize_t pending_read(struct lazy_cache *c, const struct strata_digest *d, uint64_t size,
                            void *buf, size_t len, uint64_t off)
{
	struct pending *p;
	ssize_t n = -ENOENT;

	pthread_mutex_lock(&c->pend_lock);
	p = pending_find(c, d);
	if (p && p->len == size) {
		n = off >= size ? 0 : (ssize_t)MIN((uint64_t)len, size - off);
		if (n > 0)
			memcpy(buf, p->data + off, (size_t)n);
	}
	pthread_mutex_unlock(&c->pend_lock);
	return n;
}

void lazy_cache_flush(struct lazy_cache *c)
{
	pthread_mutex_lock(&c->pend_lock);
	while (c->q_head || c->writing)
		pthread_cond_wait(&c->pend_drained, &c->pend_lock);
	pthread_mutex_unlock(&c->pend_lock);
}

static void write_behind_stop(struct lazy_cache *c)
{
	pthread_mutex_lock(&c->pend_lock);
	c->pend_stop = true;
	pthread_cond_broadcast(&c->pend_work);
	pthread_mutex_unlock(&c->pend_lock);
	if (c->writer_started)
		pthread_join(c->writer, NULL);
}

/* --- lookups ------------------------------------------------------------------- */

bool lazy_cache_has(struct lazy_cache *c, const struct strata_digest *d)
{
	char name[68];
	bool found;

	pthread_mutex_lock(&c->pend_lock);
	found = pending_find(c, d) != NULL;
	pthread_mutex_unlock(&c->pend_lock);
	if (found)
		return true;
	chunk_name(d, name);
	return faccessat(c->dir_fd, name, F_OK, 0) == 0;
}

/* Open chunk d and check its size: the fd, or -ENOENT (a damaged file is
 * removed: e.g. a torn write after a crash without rename atomicity; the
 * caller refetches). */
static int open_chunk(struct lazy_cache *c, const struct strata_digest *d, uint64_t size)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char name[68];

	chunk_name(d, name);
	fd = openat(c->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) < 0)
		return -ENOENT;
	if ((uint64_t)st.st_size != size) {
		(void)unlinkat(c->dir_fd, name, 0);
		return -ENOENT;
	}
	if (st.st_mtime + TOUCH_SEC < time(NULL))
		(void)futimens(fd, NULL);
	return TAKE_FD(fd);
}

int lazy_cache_pin(struct lazy_cache *c, const struct strata_digest *d, uint64_t size,
                   struct lazy_cache_pin *ret)
{
	struct fd_slot *victim = NULL;
	int fd;

	pthread_mutex_lock(&c->fd_lock);
	for (size_t i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *s = &c->slots[i];
		if (s->fd >= 0 && strata_digest_equal(&s->digest, d) && s->size == size) {
			time_t now = time(NULL);
			bool touch = s->touched + TOUCH_SEC < now;
			s->pins++;
			s->used = ++c->fd_clock;
			if (touch)
				s->touched = now;
			*ret = (struct lazy_cache_pin){.fd = s->fd, .slot = (int)i};
			pthread_mutex_unlock(&c->fd_lock);
			/* keep a hot chunk young for the disk eviction's LRU */
			if (touch)
				(void)futimens(ret->fd, NULL);
			return 0;
		}
	}
	pthread_mutex_unlock(&c->fd_lock);

	/* open outside the lock: a miss must not stall other readers' hits */
	fd = open_chunk(c, d, size);
	if (fd < 0)
		return fd;

	pthread_mutex_lock(&c->fd_lock);
	for (size_t i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *s = &c->slots[i];
		if (s->fd >= 0 && strata_digest_equal(&s->digest, d) && s->size == size) {
			/* another reader raced us in: use theirs */
			s->pins++;
			s->used = ++c->fd_clock;
			*ret = (struct lazy_cache_pin){.fd = s->fd, .slot = (int)i};
			pthread_mutex_unlock(&c->fd_lock);
			close(fd);
			return 0;
		}
		if (s->pins > 0)
			continue;
		/* an empty slot, else the least recently used */
		if (!victim || (victim->fd >= 0 && (s->fd < 0 || s->used < victim->used)))
			victim = s;
	}
	if (!victim) {
		/* every slot busy: a private fd the caller closes on unpin */
		pthread_mutex_unlock(&c->fd_lock);
		*ret = (struct lazy_cache_pin){.fd = fd, .slot = -1};
		return 0;
	}
	int old = victim->fd;
	victim->digest = *d;
	victim->size = size;
	victim->fd = fd;
	victim->pins = 1;
	victim->used = ++c->fd_clock;
	victim->touched = time(NULL);
	*ret = (struct lazy_cache_pin){.fd = fd, .slot = (int)(victim - c->slots)};
	pthread_mutex_unlock(&c->fd_lock);
	if (old >= 0)
		close(old);
	return 0;
}

void lazy_cache_unpin(struct lazy_cache *c, struct lazy_cache_pin *p)
{
	if (p->fd < 0)
		return;
	if (p->slot < 0) {
		close(p->fd);
	} else {
		pthread_mutex_lock(&c->fd_lock);
		c->slots[p->slot].pins--;
		pthread_mutex_unlock(&c->fd_lock);
	}
	p->fd = -1;
}

/* Close unpinned fds, so evicted files free their space now. */
static void drop_fds(struct lazy_cache *c)
{
	int fds[FD_SLOTS];
	size_t n = 0;

	pthread_mutex_lock(&c->fd_lock);
	for (size_t i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *s = &c->slots[i];
		if (s->fd >= 0 && s->pins == 0) {
			fds[n++] = s->fd;
			s->fd = -1;
		}
	}
	pthread_mutex_unlock(&c->fd_lock);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

ssize_t lazy_cache_read(struct lazy_cache *c, const struct strata_digest *d, uint64_t size,
                        void *buf, size_t len, uint64_t off)
{
	struct lazy_cache_pin pin;
	ssize_t n;
	int r;

	r = lazy_cache_pin(c, d, size, &pin);
	if (r == -ENOENT)
		return pending_read(c, d, size, buf, len, off);
	if (r < 0)
		return r;
	if (off >= size)
		n = 0;
	else
		n = loop_pread(pin.fd, buf, (size_t)MIN((uint64_t)len, size - off), off);
	lazy_cache_unpin(c, &pin);
	return n < 0 ? -ENOENT : n;
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
	drop_fds(c);
	log_debug("chunk cache: evicted down to %" PRIu64 " bytes (cap %" PRIu64 ")", total,
	          c->max_bytes);
	free(e.v);
	return 0;
}

int lazy_cache_evict(struct lazy_cache *c, uint64_t target)
{
	int r;

	/* what waits in memory is part of the cache being pruned */
	lazy_cache_flush(c);
	pthread_mutex_lock(&c->evict_lock);
	r = evict_locked(c, target);
	pthread_mutex_unlock(&c->evict_lock);
	return r;
}

int lazy_cache_put(struct lazy_cache *c, const struct strata_digest *d, const void *buf, size_t len)
{
	char name[68];

	chunk_name(d, name);
	if (faccessat(c->dir_fd, name, F_OK, 0) == 0)
		return 0;
	if (write_behind(c, d, buf, len))
		return 0;
	return write_file(c, d, buf, len);
}

static int write_file(struct lazy_cache *c, const struct strata_digest *d, const void *buf,
                      size_t len)
{
	_cleanup_close_ int fd = -1;
	char name[68], tmp[96];
	int r;

	chunk_name(d, name);
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
