/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE read path of a lazy layer, with parallel fetches. A read that
 * misses the chunk cache fetches only what it needs (the missed chunk's
 * member and the following chunks this read covers) and is answered as soon
 * as those are verified. What it will likely want next is fetched at the
 * same time, as separate Range requests (other connections), by a small
 * per-layer pool of workers:
 *   - the next READ_AHEAD_CHUNKS chunks of a large file;
 *   - for a small file, the following small files of the same directory in
 *     blob order (python's stdlib, a locale, the libraries next to a
 *     library): NEIGHBOUR_FIRST bytes at the directory's first miss, up to
 *     NEIGHBOUR_MAX at later ones (a program that reads several files of a
 *     directory tends to read more of them; one that reads one file of a
 *     big directory wastes little). Files of other directories are left: in
 *     tar order they are seldom read together (zoneinfo after /etc/localtime).
 *   - for an executable or library (ELF), its shared libraries (DT_NEEDED),
 *     found in the usual library directories of the image's mounted layers,
 *     as soon as its first chunk is verified: the dynamic loader asks for
 *     them one after another.
 * And at mount, for a layer without a prefetch landmark, the files that
 * nearly every container start reads (the dynamic loader, libc,
 * ld.so.cache, passwd and group), while containerd still sets the
 * container up.
 * Read-ahead is cut into pieces of at most PIECE_MAX, so a reader that wants
 * a file of it waits for that piece only. A worker takes what is queued
 * together (up to BATCH_MAX pieces, BATCH_BYTES) into one request for
 * several ranges, each piece decoded as soon as its part has arrived: a
 * registry spends about as much on a request as on a megabyte (measured:
 * docker-registry, ~7 ms of CPU per request, 8 ranges in one ~11 ms), and
 * what is queued together (the start-up files, a program's libraries, a
 * directory's neighbours) is queued in one go. Every chunk is verified on
 * its own: a corrupt chunk in a read-ahead piece is not cached and fails
 * only the reads of that chunk; a failed piece leaves reads to fetch for
 * themselves.
 *
 * Coordination with lazy-layer.c's fetches (landmark prefetch, background
 * fetch): the layer's in-flight table (l->lock, l->inflight). A fetch claims
 * its blob range; one that overlaps a claimed range waits for it to finish
 * and then looks at the cache again.
 */
#include <elf.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lazy-internal.h"

/* A read fetches at most this much compressed data in one request. */
#define READ_SPAN_MAX (8u << 20)
/* Chunks of a large file past a missed read's end, fetched along. */
#define READ_AHEAD_CHUNKS 4
/* Neighbours of a small file fetched along: bytes, largest gap between two
 * of their members, and the largest member that triggers or joins it. */
#define NEIGHBOUR_FIRST      (128u << 10)
#define NEIGHBOUR_MAX        (512u << 10)
#define NEIGHBOUR_GAP_MAX    (16u << 10)
#define NEIGHBOUR_MEMBER_MAX (128u << 10)
/* Read-ahead request size (a larger member is one piece of its own). */
#define PIECE_MAX (128u << 10)
/* Pieces one request may carry. */
#define BATCH_MAX   16
#define BATCH_BYTES (1u << 20)
#define WORKERS     3
/* An executable looked up has its first EXEC_HINT_CHUNKS chunks fetched
 * (the second often holds the library list), for EXEC_HINTS_MAX of them per
 * layer: a scan of a bin directory must not fetch the layer. */
#define EXEC_HINT_CHUNKS 2
#define EXEC_HINTS_MAX   16
#define QUEUE_MAX        64
/* directories whose misses are counted (round robin) */
#define DIRS_MAX 16

struct piece {
	uint64_t start, end;
};

/* Per layer. lock protects everything but l; it is never held across a
 * fetch. */
struct lazy_fetch {
	struct lazy_layer *l;
	pthread_mutex_t lock;
	pthread_cond_t work; /* queued, or stop */
	pthread_cond_t idle; /* queue empty and no worker busy */
	struct piece q[QUEUE_MAX];
	unsigned head, n, busy;
	unsigned hold; /* > 0: pieces are being queued together, workers wait */
	/* a stale .pyc was seen: this image's build reset its sources'
	 * mtimes, so python reads the source after every bytecode */
	atomic_bool stale_pyc;
	atomic_uint exec_hints;
	pthread_t threads[WORKERS];
	unsigned n_threads;
	bool stop;
	struct {
		uint32_t dir, misses;
	} dirs[DIRS_MAX];
	unsigned dir_next;
};

static bool network_error(int r)
{
	return r != -EBADMSG && r != -ENOMEM;
}

/* Wait until no in-flight fetch overlaps [start, end), then claim it.
 * false when one did overlap (the caller looks at the cache again). Every
 * fetch of the layer (reads, read-ahead, prefetch, background) goes
 * through here, on the layer's in-flight table. */
static bool claim(struct lazy_layer *l, uint64_t start, uint64_t end)
{
	bool waited = false;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		bool overlap = false;
		for (unsigned i = 0; i < l->n_inflight; i++)
			if (l->inflight[i].start < end && start < l->inflight[i].end)
				overlap = true;
		if (!overlap && l->n_inflight < ELEMENTSOF(l->inflight))
			break;
		waited = true;
		pthread_cond_wait(&l->cond, &l->lock);
	}
	if (!waited) {
		l->inflight[l->n_inflight].start = start;
		l->inflight[l->n_inflight].end = end;
		l->n_inflight++;
	}
	pthread_mutex_unlock(&l->lock);
	return !waited;
}

/* claim() without the wait: false when an in-flight fetch overlaps (it
 * will cache the chunks) or the table is full. */
static bool try_claim(struct lazy_layer *l, uint64_t start, uint64_t end)
{
	bool ok;

	pthread_mutex_lock(&l->lock);
	ok = l->n_inflight < ELEMENTSOF(l->inflight);
	for (unsigned i = 0; i < l->n_inflight && ok; i++)
		if (l->inflight[i].start < end && start < l->inflight[i].end)
			ok = false;
	if (ok) {
		l->inflight[l->n_inflight].start = start;
		l->inflight[l->n_inflight].end = end;
		l->n_inflight++;
	}
	pthread_mutex_unlock(&l->lock);
	return ok;
}

static void release(struct lazy_layer *l, uint64_t start)
{
	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < l->n_inflight; i++)
		if (l->inflight[i].start == start) {
			l->inflight[i] = l->inflight[--l->n_inflight];
			break;
		}
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

uint32_t lazy_fetch_first_at(const struct content_estargz_toc *toc, uint64_t off)
{
	uint32_t lo = 0, hi = toc->n_chunks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (toc->chunks[toc->by_offset[mid]].offset < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const struct content_estargz_chunk *at(const struct content_estargz_toc *toc, uint32_t p)
{
	return &toc->chunks[toc->by_offset[p]];
}

static void queue_libraries(struct lazy_layer *l, const struct content_estargz_chunk *c,
                            const uint8_t *p);
static void queue_file(struct lazy_fetch *f, uint32_t idx);
static int64_t lookup_file(const struct content_estargz_toc *toc, const char *path);

struct want {
	uint32_t chunk;
	uint8_t *dst;
	uint64_t off; /* within the chunk */
	size_t len;
	bool delivered;
};

/* The member at blob-order position p: the position after its chunks, and
 * in *ret_need the bytes it must inflate to hold them all. */
static uint32_t member_end(const struct content_estargz_toc *toc, uint32_t p, uint64_t *ret_need)
{
	uint64_t off = at(toc, p)->offset, need = 0;
	uint32_t q;

	for (q = p; q < toc->n_chunks && at(toc, q)->offset == off; q++)
		need = MAX(need, at(toc, q)->inner_offset + at(toc, q)->size);
	*ret_need = need;
	return q;
}

/* Verify, cache and hand over the chunks [p, q) of one member, inflated
 * into out (r: how the inflate went). -EIO when w's own chunk failed. */
static int finish_member(struct lazy_layer *l, uint32_t p, uint32_t q, const uint8_t *out, int r,
                         struct want *w)
{
	const struct content_estargz_toc *toc = l->toc;
	int result = 0;

	for (uint32_t k = p; k < q; k++) {
		uint32_t ci = toc->by_offset[k];
		const struct content_estargz_chunk *c = &toc->chunks[ci];
		struct strata_digest got;
		bool ok = r == 0 && strata_sha256(out + c->inner_offset, c->size, &got) == 0 &&
		          strata_digest_equal(&got, &c->digest);
		int pr;

		if (!ok) {
			_cleanup_free_ char *path = content_estargz_path(toc, c->entry);
			atomic_fetch_add(&l->verify_failures, 1);
			log_warn("lazy layer %" PRIu64 ": chunk at offset %" PRIu64
			         " of \"%s\" failed verification (%s): not served",
			         l->id, c->file_offset, strempty(path),
			         r < 0 ? "corrupt gzip" : "chunkDigest mismatch");
			if (w && ci == w->chunk)
				result = -EIO;
			continue;
		}
		atomic_fetch_add(&l->chunks_fetched, 1);
		/* the reader first: the rest is for later reads */
		if (w && ci == w->chunk) {
			memcpy(w->dst, out + c->inner_offset + w->off, w->len);
			w->delivered = true;
		}
		pr = lazy_cache_put(l->mgr->cache, &c->digest, out + c->inner_offset, c->size);
		if (pr < 0)
			log_debug_errno(pr, "chunk cache: store chunk");
		/* after the put: of two chunks holding an ELF file's library
		 * list, the one stored last finds the other */
		if (toc->entries[c->entry].mode & 0111)
			queue_libraries(l, c, out + c->inner_offset);
	}
	return result;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *a;

	if (need <= *cap)
		return 0;
	a = realloc(*buf, need);
	if (!a)
		return -ENOMEM;
	*buf = a;
	*cap = need;
	return 0;
}

/* Decode, verify and cache every chunk whose member lies in buf (blob bytes
 * [start, start + len)); hand w's bytes over. -EIO only when w's own chunk
 * failed. */
static int decode(struct lazy_layer *l, const uint8_t *buf, uint64_t start, size_t len,
                  struct want *w)
{
	const struct content_estargz_toc *toc = l->toc;
	_cleanup_free_ uint8_t *out = NULL;
	size_t out_cap = 0;
	int result = 0;

	for (uint32_t p = lazy_fetch_first_at(toc, start); p < toc->n_chunks;) {
		const struct content_estargz_chunk *g = at(toc, p);
		uint64_t need;
		uint32_t q;
		int r;

		if (g->end > start + len)
			break;
		q = member_end(toc, p, &need);
		if (grow(&out, &out_cap, need) < 0)
			return -ENOMEM;
		r = content_estargz_inflate(buf + (g->offset - start), g->end - g->offset, out,
		                            need);
		if (finish_member(l, p, q, out, r, w) < 0)
			result = -EIO;
		p = q;
	}
	return result;
}

/* One Range request for [start, end), claimed by the caller, then decode
 * it; the claim is released. (Inflating a large member with zlib as it
 * arrives, to overlap the transfer, measured slower: 45-65 ms against
 * 35-64 ms for a program's 2 MB first chunk; zlib inflates at half
 * libdeflate's speed and stalls the socket while it does.) */
static int fetch_claimed(struct lazy_layer *l, uint64_t start, uint64_t end, struct want *w,
                         const char *why)
{
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	double t0, t1;
	int64_t n;
	int r;

	buf = malloc(end - start);
	if (!buf) {
		release(l, start);
		return -ENOMEM;
	}
	t0 = log_now_ms();
	n = content_registry_read_range(l->mgr->registry, l->ref, &l->digest, start, end - start,
	                                buf, &err);
	atomic_fetch_add(&l->requests, 1);
	if (n > 0)
		atomic_fetch_add(&l->bytes_fetched, (uint64_t)n);
	if (n >= 0 && (uint64_t)n != end - start)
		n = -EBADMSG;
	if (n < 0) {
		release(l, start);
		if (network_error((int)n))
			atomic_store(&l->healthy, false);
		log_warn("lazy layer %" PRIu64 ": fetch bytes %" PRIu64 "-%" PRIu64 " (%s): %s",
		         l->id, start, end - 1, why,
		         err ? strata_error_message(err) : strerror((int)-n));
		return -EIO;
	}
	atomic_store(&l->healthy, true);
	t1 = log_now_ms();
	r = decode(l, buf, start, (size_t)(end - start), w);
	release(l, start);
	/* the bench counts "fetched N bytes at" lines: keep the wording */
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_debug("lazy layer %" PRIu64 ": fetched %" PRId64 " bytes at %" PRIu64
		          " (%s; layer total %" PRIuFAST64 "): %.1f ms request, %.1f ms decode",
		          l->id, n, start, why, atomic_load(&l->bytes_fetched), t1 - t0,
		          log_now_ms() - t1);
	return r;
}

/* fetch_claimed() after claiming: -EAGAIN when another fetch of an
 * overlapping range was waited for instead. */
static int fetch(struct lazy_layer *l, uint64_t start, uint64_t end, struct want *w,
                 const char *why)
{
	if (!claim(l, start, end))
		return -EAGAIN;
	return fetch_claimed(l, start, end, w, why);
}

/* Several claimed ranges of read-ahead in one request. */
struct ranges_job {
	struct lazy_layer *l;
	const struct content_registry_range *rs;
	unsigned n;
	bool done[BATCH_MAX];
	uint64_t delivered;
	double t0;
};

static int ranges_part(size_t i, const uint8_t *data, size_t len, void *userdata)
{
	struct ranges_job *j = userdata;
	struct lazy_layer *l = j->l;
	double t1 = log_now_ms();

	atomic_fetch_add(&l->bytes_fetched, (uint64_t)len);
	j->delivered += len;
	(void)decode(l, data, j->rs[i].offset, len, NULL);
	release(l, j->rs[i].offset);
	j->done[i] = true;
	/* the bench counts "fetched N bytes at" lines: keep the wording */
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_debug("lazy layer %" PRIu64 ": fetched %zu bytes at %" PRIu64
		          " (read-ahead, range %zu of %u in one request; layer total %" PRIuFAST64
		          "): %.1f ms request, %.1f ms decode",
		          l->id, len, j->rs[i].offset, i + 1, j->n, atomic_load(&l->bytes_fetched),
		          t1 - j->t0, log_now_ms() - t1);
	return 0;
}

static void fetch_ranges(struct lazy_layer *l, const struct content_registry_range *rs, unsigned n)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct ranges_job j = {.l = l, .rs = rs, .n = n, .t0 = log_now_ms()};
	uint64_t bytes = 0;
	unsigned requests = 0;
	int r;

	r = content_registry_read_ranges(l->mgr->registry, l->ref, &l->digest, rs, n, ranges_part,
	                                 &j, &bytes, &requests, &err);
	atomic_fetch_add(&l->requests, requests);
	if (bytes > j.delivered) {
		/* a registry that merged the ranges sent the gaps too */
		atomic_fetch_add(&l->bytes_fetched, bytes - j.delivered);
		log_debug("lazy layer %" PRIu64 ": fetched %" PRIu64 " bytes at %" PRIu64
		          " (read-ahead, between the ranges of a merged answer)",
		          l->id, bytes - j.delivered, rs[0].offset);
	}
	for (unsigned i = 0; i < n; i++)
		if (!j.done[i])
			release(l, rs[i].offset);
	if (r < 0) {
		if (network_error(r))
			atomic_store(&l->healthy, false);
		log_warn("lazy layer %" PRIu64 ": read-ahead of %u ranges from byte %" PRIu64
		         ": %s",
		         l->id, n, rs[0].offset, err ? strata_error_message(err) : strerror(-r));
		return;
	}
	atomic_store(&l->healthy, true);
}

int lazy_fetch_span(struct lazy_layer *l, uint64_t start, uint64_t end, const char *why)
{
	return fetch(l, start, end, NULL, why);
}

/* --- read-ahead workers ----------------------------------------------------- */

/* Trim [*start, *end) to the uncached members it holds (the first and last
 * uncached ones): false when all are cached. */
static bool trim(struct lazy_layer *l, uint64_t *start, uint64_t *end)
{
	const struct content_estargz_toc *toc = l->toc;
	uint64_t s = UINT64_MAX, e = 0;

	for (uint32_t p = lazy_fetch_first_at(toc, *start); p < toc->n_chunks; p++) {
		const struct content_estargz_chunk *c = at(toc, p);
		if (c->end > *end)
			break;
		if (lazy_cache_has(l->mgr->cache, &c->digest))
			continue;
		s = MIN(s, c->offset);
		e = MAX(e, c->end);
	}
	if (e == 0)
		return false;
	*start = s;
	*end = e;
	return true;
}

static void run_piece(struct lazy_layer *l, struct piece pc)
{
	for (int tries = 0; tries < 4 && !atomic_load(&l->stopping); tries++) {
		uint64_t s = pc.start, e = pc.end;
		if (!trim(l, &s, &e))
			return;
		if (fetch(l, s, e, NULL, "read-ahead") != -EAGAIN)
			return;
	}
}

static int cmp_piece(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Pieces taken together: what is still uncached and not in flight
 * elsewhere, in one request. */
static void run_batch(struct lazy_layer *l, struct piece *pcs, unsigned n)
{
	struct content_registry_range rs[BATCH_MAX];
	unsigned m = 0;

	if (n == 1) {
		run_piece(l, pcs[0]);
		return;
	}
	qsort(pcs, n, sizeof(*pcs), cmp_piece);
	for (unsigned i = 0; i < n && !atomic_load(&l->stopping); i++) {
		uint64_t s = pcs[i].start, e = pcs[i].end;

		if (!trim(l, &s, &e) || (m > 0 && s < rs[m - 1].offset + rs[m - 1].len) ||
		    !try_claim(l, s, e))
			continue;
		rs[m++] = (struct content_registry_range){.offset = s, .len = e - s};
	}
	if (m == 1)
		(void)fetch_claimed(l, rs[0].offset, rs[0].offset + rs[0].len, NULL, "read-ahead");
	else if (m > 1)
		fetch_ranges(l, rs, m);
}

static void *worker_main(void *userdata)
{
	struct lazy_fetch *f = userdata;

	/* Not niced: a reader that wants a file of a piece in flight waits
	 * for it, and a starved worker (measured: 250 ms to decode 128 KiB
	 * at load 12 on 2 cores) would hold that reader up. */
	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct piece batch[BATCH_MAX];
		unsigned nb = 0;
		uint64_t bytes = 0;

		while (!f->stop && (f->n == 0 || f->hold > 0))
			pthread_cond_wait(&f->work, &f->lock);
		if (f->stop)
			break;
		while (f->n > 0 && nb < BATCH_MAX) {
			const struct piece *pc = &f->q[f->head];
			if (nb > 0 && bytes + (pc->end - pc->start) > BATCH_BYTES)
				break;
			bytes += pc->end - pc->start;
			batch[nb++] = *pc;
			f->head = (f->head + 1) % QUEUE_MAX;
			f->n--;
		}
		f->busy++;
		pthread_mutex_unlock(&f->lock);
		run_batch(f->l, batch, nb);
		pthread_mutex_lock(&f->lock);
		f->busy--;
		if (f->n == 0 && f->busy == 0)
			pthread_cond_broadcast(&f->idle);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* Wake a worker for what is queued; f->lock held. Workers start with the
 * first piece: most layers never need them. Without any, the queue is
 * dropped: read-ahead is an optimisation, never owed. */
static void kick_locked(struct lazy_fetch *f)
{
	if (f->n == 0 || f->hold > 0)
		return;
	if (f->n_threads < WORKERS && f->n + f->busy >= f->n_threads &&
	    pthread_create(&f->threads[f->n_threads], NULL, worker_main, f) == 0)
		f->n_threads++;
	if (f->n_threads == 0) {
		f->n = 0;
		return;
	}
	pthread_cond_signal(&f->work);
}

/* Queue a piece (dropped when the queue is full or it is queued already). */
static void enqueue(struct lazy_fetch *f, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&f->lock);
	if (f->stop || f->n == QUEUE_MAX)
		goto out;
	for (unsigned i = 0; i < f->n; i++) {
		const struct piece *p = &f->q[(f->head + i) % QUEUE_MAX];
		if (p->start < end && start < p->end)
			goto out;
	}
	f->q[(f->head + f->n) % QUEUE_MAX] = (struct piece){start, end};
	f->n++;
	kick_locked(f);
out:
	pthread_mutex_unlock(&f->lock);
}

/* Between hold() and unhold(), queued pieces wait, so that a worker takes
 * them together. */
static void hold(struct lazy_fetch *f)
{
	pthread_mutex_lock(&f->lock);
	f->hold++;
	pthread_mutex_unlock(&f->lock);
}

static void unhold(struct lazy_fetch *f)
{
	pthread_mutex_lock(&f->lock);
	f->hold--;
	kick_locked(f);
	pthread_mutex_unlock(&f->lock);
}

/* Queue the uncached members in [start, end) as pieces of <= PIECE_MAX. */
static void enqueue_range(struct lazy_fetch *f, uint64_t start, uint64_t end)
{
	const struct content_estargz_toc *toc = f->l->toc;
	uint64_t ps = 0, pe = 0;

	for (uint32_t p = lazy_fetch_first_at(toc, start); p < toc->n_chunks;) {
		const struct content_estargz_chunk *g = at(toc, p);
		uint64_t member = g->offset;
		bool cached = true;

		if (g->end > end)
			break;
		for (; p < toc->n_chunks && at(toc, p)->offset == member; p++)
			cached &= lazy_cache_has(f->l->mgr->cache, &at(toc, p)->digest);
		if (cached || (pe > ps && (member != pe || g->end - ps > PIECE_MAX))) {
			if (pe > ps)
				enqueue(f, ps, pe);
			ps = pe = 0;
		}
		if (cached)
			continue;
		if (pe == ps)
			ps = member;
		pe = g->end;
	}
	if (pe > ps)
		enqueue(f, ps, pe);
}

/* Count a miss in directory dir: the how-manieth it is (recent ones). */
static unsigned dir_miss(struct lazy_fetch *f, uint32_t dir)
{
	unsigned n = 1;

	pthread_mutex_lock(&f->lock);
	for (unsigned i = 0; i < DIRS_MAX; i++)
		if (f->dirs[i].misses && f->dirs[i].dir == dir) {
			n = ++f->dirs[i].misses;
			goto out;
		}
	f->dirs[f->dir_next].dir = dir;
	f->dirs[f->dir_next].misses = 1;
	f->dir_next = (f->dir_next + 1) % DIRS_MAX;
out:
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* The end of the run of small files of directory `dir` that follows blob
 * offset `from` (members of other entries end it), within max bytes. */
static uint64_t neighbours_end(const struct content_estargz_toc *toc, uint32_t dir, uint64_t from,
                               uint64_t max)
{
	uint64_t end = from;

	for (uint32_t p = lazy_fetch_first_at(toc, from); p < toc->n_chunks;) {
		const struct content_estargz_chunk *g = at(toc, p);
		uint64_t member = g->offset;

		if (g->offset - end > NEIGHBOUR_GAP_MAX || g->end - from > max ||
		    g->end - g->offset > NEIGHBOUR_MEMBER_MAX)
			break;
		for (; p < toc->n_chunks && at(toc, p)->offset == member; p++) {
			const struct content_estargz_entry *e = &toc->entries[at(toc, p)->entry];
			if (e->n_chunks != 1 || e->parent != dir)
				return end;
		}
		end = g->end;
	}
	return end;
}

/* Whether [start, end) is queued for the workers or being fetched. */
static bool foreseen(struct lazy_fetch *f, uint64_t start, uint64_t end)
{
	struct lazy_layer *l = f->l;
	bool found = false;

	pthread_mutex_lock(&f->lock);
	for (unsigned i = 0; i < f->n && !found; i++) {
		const struct piece *p = &f->q[(f->head + i) % QUEUE_MAX];
		found = p->start < end && start < p->end;
	}
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < l->n_inflight && !found; i++)
		found = l->inflight[i].start < end && start < l->inflight[i].end;
	pthread_mutex_unlock(&l->lock);
	return found;
}

/* After a miss of entry idx whose fetch is [start, end) and covers the
 * file's chunks before `next`. */
static void read_ahead(struct lazy_layer *l, uint32_t idx, uint32_t next, uint64_t start,
                       uint64_t end)
{
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e = &toc->entries[idx];
	struct lazy_fetch *f = l->fetch;

	if (!f || atomic_load(&l->stopping))
		return;
	if (e->n_chunks > 1) {
		uint32_t last = MIN(next + READ_AHEAD_CHUNKS, e->first_chunk + e->n_chunks);
		hold(f);
		for (uint32_t k = next; k < last; k++) {
			const struct content_estargz_chunk *c = &toc->chunks[k];
			if (!lazy_cache_has(l->mgr->cache, &c->digest))
				enqueue(f, c->offset, c->end);
		}
		unhold(f);
		return;
	}
	/* A file that read-ahead already has in flight or queued (a stale
	 * .pyc's source, a library) was foreseen: no neighbours for it (they
	 * were python's unread encodings, 0.5% of the image). */
	if (end - start <= NEIGHBOUR_MEMBER_MAX && !foreseen(f, start, end)) {
		uint64_t max = dir_miss(f, e->parent) > 1 ? NEIGHBOUR_MAX : NEIGHBOUR_FIRST;
		hold(f);
		enqueue_range(f, end, neighbours_end(toc, e->parent, end, max));
		unhold(f);
	}
}

/* Entry of a path relative to the layer root, symlinks not followed: -1
 * when there is none. */
static int64_t lookup_path(const struct content_estargz_toc *toc, const char *path)
{
	int64_t cur = 0;

	while (*path && cur >= 0) {
		size_t n = strcspn(path, "/");
		if (!S_ISDIR(toc->entries[cur].mode))
			return -1;
		cur = content_estargz_lookup(toc, (uint32_t)cur, path, n);
		path += n + (path[n] == '/');
	}
	return cur;
}

void lazy_fetch_start(struct lazy_fetch *f)
{
	static const char *const startup[] = {
	        "etc/passwd",
	        "etc/group",
	        "etc/ld.so.cache",
	        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
	        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
	        "usr/lib/x86_64-linux-gnu/libc.so.6",
	        "lib/x86_64-linux-gnu/libc.so.6",
	        "usr/lib64/ld-linux-x86-64.so.2",
	        "usr/lib64/libc.so.6",
	        "usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
	        "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
	        "usr/lib/aarch64-linux-gnu/libc.so.6",
	        "lib/aarch64-linux-gnu/libc.so.6",
	        "lib/ld-musl-x86_64.so.1",
	        "lib/ld-musl-aarch64.so.1",
	        /* glibc's setlocale for C.UTF-8 (python coerces the C locale
	         * to it) and its iconv, and the time zone */
	        "usr/lib/locale/C.utf8/LC_CTYPE",
	        "usr/lib/locale/C.UTF-8/LC_CTYPE",
	        "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
	        "usr/lib/aarch64-linux-gnu/gconv/gconv-modules.cache",
	        "etc/localtime",
	};
	const struct content_estargz_toc *toc = f->l->toc;

	if (toc->prefetch_end > 0 || f->l->mgr->opts.no_prefetch)
		return;
	hold(f);
	for (size_t i = 0; i < ELEMENTSOF(startup); i++) {
		int64_t idx = lookup_file(toc, startup[i]);

		if (idx >= 0)
			queue_file(f, (uint32_t)idx);
	}
	unhold(f);
}

/* --- shared libraries of an ELF file ----------------------------------------- */

#define NEEDED_MAX 32
#define NAME_MAX_  256

/* An ELF file's bytes: the chunk just verified, else the chunk cache (a
 * library list is read once the chunks holding it have arrived, in any
 * order). */
struct elf_src {
	struct lazy_layer *l;
	uint32_t entry;
	const uint8_t *cur; /* file bytes [cur_off, cur_off + cur_len) */
	uint64_t cur_off;
	size_t cur_len;
};

/* Read file bytes [off, off + len) lying in one chunk: false when out of
 * the file or not (yet) available. */
static bool src_read(const struct elf_src *s, uint64_t off, void *buf, size_t len)
{
	const struct content_estargz_toc *toc = s->l->toc;
	const struct content_estargz_chunk *c;
	uint32_t ci;

	if (off >= s->cur_off && off - s->cur_off <= s->cur_len &&
	    len <= s->cur_len - (off - s->cur_off)) {
		memcpy(buf, s->cur + (off - s->cur_off), len);
		return true;
	}
	ci = content_estargz_chunk_at(toc, s->entry, off);
	if (ci == CONTENT_ESTARGZ_NONE)
		return false;
	c = &toc->chunks[ci];
	if (len > c->size - (off - c->file_offset))
		return false;
	return lazy_cache_read(s->l->mgr->cache, &c->digest, c->size, buf, len,
	                       off - c->file_offset) == (ssize_t)len;
}

/* The DT_NEEDED names of a little-endian ELF64 file (verified bytes, but of
 * any image: everything is bounds-checked), into names[NEEDED_MAX][NAME_MAX_].
 * 0 when it is not one, or the parts needed are not available yet. */
static size_t elf_needed(const struct elf_src *s, char (*names)[NAME_MAX_])
{
	Elf64_Ehdr eh;
	Elf64_Phdr dyn = {0};
	_cleanup_free_ Elf64_Dyn *d = NULL;
	uint64_t strtab = 0, strsz = 0, stroff = UINT64_MAX;
	size_t n = 0, nd;

	if (!src_read(s, 0, &eh, sizeof(eh)) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
		return 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (!src_read(s, eh.e_phoff + i * sizeof(ph), &ph, sizeof(ph)))
			return 0;
		if (ph.p_type == PT_DYNAMIC)
			dyn = ph;
	}
	if (dyn.p_type != PT_DYNAMIC || dyn.p_filesz > (64u << 10))
		return 0;
	nd = dyn.p_filesz / sizeof(Elf64_Dyn);
	d = calloc(MAX(nd, (size_t)1), sizeof(*d));
	if (!d || !src_read(s, dyn.p_offset, d, nd * sizeof(*d)))
		return 0;
	for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL; i++) {
		if (d[i].d_tag == DT_STRTAB)
			strtab = d[i].d_un.d_ptr;
		else if (d[i].d_tag == DT_STRSZ)
			strsz = d[i].d_un.d_val;
	}
	/* the string table's address -> file offset, through its PT_LOAD */
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (!src_read(s, eh.e_phoff + i * sizeof(ph), &ph, sizeof(ph)))
			return 0;
		if (ph.p_type == PT_LOAD && strtab >= ph.p_vaddr &&
		    strtab - ph.p_vaddr < ph.p_filesz)
			stroff = strtab - ph.p_vaddr + ph.p_offset;
	}
	if (stroff == UINT64_MAX)
		return 0;
	for (size_t i = 0; i < nd && d[i].d_tag != DT_NULL && n < NEEDED_MAX; i++) {
		char *name = names[n];
		size_t k, want;

		if (d[i].d_tag != DT_NEEDED || d[i].d_un.d_val >= strsz)
			continue;
		want = (size_t)MIN((uint64_t)NAME_MAX_, strsz - d[i].d_un.d_val);
		/* a name near a chunk's end: read what there is of it */
		while (want > 0 && !src_read(s, stroff + d[i].d_un.d_val, name, want))
			want /= 2;
		k = strnlen(name, want);
		if (want == 0 || k == 0 || k == want || memchr(name, '/', k))
			continue;
		n++;
	}
	return n;
}

static int64_t lookup_path(const struct content_estargz_toc *toc, const char *path);

/* Library name in directory dir of toc, one same-directory symlink followed
 * (libz.so.1 -> libz.so.1.2.13): its regular file's entry, or -1. */
static int64_t find_library(const struct content_estargz_toc *toc, const char *dir,
                            const char *name)
{
	int64_t d = lookup_path(toc, dir), e;

	if (d < 0 || !S_ISDIR(toc->entries[d].mode))
		return -1;
	e = content_estargz_lookup(toc, (uint32_t)d, name, strlen(name));
	if (e >= 0 && S_ISLNK(toc->entries[e].mode)) {
		const char *target = content_estargz_str(toc, toc->entries[e].link);
		e = strchr(target, '/')
		            ? -1
		            : content_estargz_lookup(toc, (uint32_t)d, target, strlen(target));
	}
	if (e < 0)
		return -1;
	e = content_estargz_resolve(toc, (uint32_t)e);
	return S_ISREG(toc->entries[e].mode) ? e : -1;
}

/* Queue the shared libraries an ELF file needs, from the mounted layers of
 * the same image (same reference): the dynamic loader reads them next, one
 * after another. */
static void queue_libraries(struct lazy_layer *l, const struct content_estargz_chunk *c,
                            const uint8_t *p)
{
	static const char *const dirs[] = {
	        "usr/lib/x86_64-linux-gnu",
	        "lib/x86_64-linux-gnu",
	        "usr/lib/aarch64-linux-gnu",
	        "lib/aarch64-linux-gnu",
	        "usr/lib64",
	        "lib64",
	        "usr/lib",
	        "lib",
	};
	struct lazy_manager *m = l->mgr;
	const struct elf_src src = {
	        .l = l,
	        .entry = c->entry,
	        .cur = p,
	        .cur_off = c->file_offset,
	        .cur_len = (size_t)c->size,
	};
	_cleanup_free_ char(*names)[NAME_MAX_] = NULL;
	size_t n;
	uint8_t magic[SELFMAG];

	/* most executable-mode files are scripts: look before allocating */
	if (!src_read(&src, 0, magic, sizeof(magic)) || memcmp(magic, ELFMAG, SELFMAG) != 0)
		return;
	names = calloc(NEEDED_MAX, sizeof(*names));
	if (!names)
		return;
	n = elf_needed(&src, names);
	if (n == 0)
		return;
	/* under m->lock: a layer is freed only after it left m->layers; no
	 * network I/O here, only lookups and cache checks */
	pthread_mutex_lock(&m->lock);
	for (size_t k = 0; k < m->n_layers; k++)
		if (m->layers[k]->fetch && streq(m->layers[k]->ref_str, l->ref_str))
			hold(m->layers[k]->fetch);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t k = m->n_layers; k-- > 0 && !found;) {
			struct lazy_layer *x = m->layers[k];
			if (!x->fetch || !streq(x->ref_str, l->ref_str))
				continue;
			for (size_t di = 0; di < ELEMENTSOF(dirs) && !found; di++) {
				int64_t e = find_library(x->toc, dirs[di], names[i]);
				if (e < 0)
					continue;
				found = true;
				for (uint32_t k2 = x->toc->entries[e].first_chunk;
				     k2 <
				     x->toc->entries[e].first_chunk + x->toc->entries[e].n_chunks;
				     k2++)
					if (!lazy_cache_has(m->cache, &x->toc->chunks[k2].digest))
						enqueue(x->fetch, x->toc->chunks[k2].offset,
						        x->toc->chunks[k2].end);
			}
		}
	}
	for (size_t k = 0; k < m->n_layers; k++)
		if (m->layers[k]->fetch && streq(m->layers[k]->ref_str, l->ref_str))
			unhold(m->layers[k]->fetch);
	pthread_mutex_unlock(&m->lock);
}

/* --- python sources ---------------------------------------------------------- */

/* Queue an entry's uncached chunks. */
static void queue_file(struct lazy_fetch *f, uint32_t idx)
{
	const struct content_estargz_toc *toc = f->l->toc;
	const struct content_estargz_entry *e = &toc->entries[idx];

	for (uint32_t k = e->first_chunk; k < e->first_chunk + e->n_chunks; k++)
		if (!lazy_cache_has(f->l->mgr->cache, &toc->chunks[k].digest))
			enqueue(f, toc->chunks[k].offset, toc->chunks[k].end);
}

/* Regular file at path relative to the layer root, following symlinks (an
 * absolute target is taken from the layer root): -1 when there is none. */
static int64_t lookup_file(const struct content_estargz_toc *toc, const char *path)
{
	int64_t e = lookup_path(toc, path);

	for (int hops = 0; e >= 0 && hops < 4 && S_ISLNK(toc->entries[e].mode); hops++) {
		const char *t = content_estargz_str(toc, toc->entries[e].link);
		e = t[0] == '/' ? lookup_path(toc, t + 1) : -1;
	}
	if (e < 0)
		return -1;
	e = content_estargz_resolve(toc, (uint32_t)e);
	return S_ISREG(toc->entries[e].mode) ? e : -1;
}

/* The source D/M.py of D/__pycache__/M.TAG.pyc (entry idx), symlinks
 * followed: its regular file's entry, or -1. */
static int64_t source_of(const struct content_estargz_toc *toc, uint32_t idx)
{
	const struct content_estargz_entry *e = &toc->entries[idx];
	const char *name = content_estargz_str(toc, e->name);
	char src[NAME_MAX_];
	size_t stem = strcspn(name, ".");
	int64_t si;

	if (stem == 0 || stem + 4 > sizeof(src))
		return -1;
	memcpy(src, name, stem);
	strcpy(src + stem, ".py");
	si = content_estargz_lookup(toc, toc->entries[e->parent].parent, src, stem + 3);
	for (int hops = 0; si >= 0 && hops < 4 && S_ISLNK(toc->entries[si].mode); hops++) {
		const char *t = content_estargz_str(toc, toc->entries[si].link);
		si = t[0] == '/' ? lookup_path(toc, t + 1) : -1;
	}
	if (si < 0)
		return -1;
	si = content_estargz_resolve(toc, (uint32_t)si);
	return S_ISREG(toc->entries[si].mode) ? si : -1;
}

/* Python reads a module's source right after its bytecode when the .pyc
 * records another source mtime or size than the source has (images whose
 * build reset the sources' mtimes): for a .pyc whose first 16 bytes are
 * hdr, queue its source when it is stale. Only files that were opened:
 * queuing the sources of read-ahead bytecode would double it. */
static void queue_stale_source(struct lazy_layer *l, uint32_t idx, const uint8_t *hdr)
{
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *s;
	uint32_t flags, mtime, size;
	int64_t si;

	flags = hdr[4] | hdr[5] << 8 | hdr[6] << 16 | (uint32_t)hdr[7] << 24;
	mtime = hdr[8] | hdr[9] << 8 | hdr[10] << 16 | (uint32_t)hdr[11] << 24;
	size = hdr[12] | hdr[13] << 8 | hdr[14] << 16 | (uint32_t)hdr[15] << 24;
	if (flags != 0)
		return; /* hash-based .pyc: python checks it without the source's data */
	si = source_of(toc, idx);
	if (si < 0)
		return;
	s = &toc->entries[si];
	if ((uint32_t)s->mtime_sec == mtime && (uint32_t)s->size == size)
		return;
	atomic_store(&l->fetch->stale_pyc, true);
	queue_file(l->fetch, (uint32_t)si);
}

/* Whether entry idx is a .pyc in a __pycache__ directory. */
static bool is_pyc(const struct content_estargz_toc *toc, uint32_t idx)
{
	const struct content_estargz_entry *e = &toc->entries[idx];
	const char *name = content_estargz_str(toc, e->name);
	size_t n = strlen(name);

	return n > 4 && streq(name + n - 4, ".pyc") && e->parent != 0 &&
	       streq(content_estargz_str(toc, toc->entries[e->parent].name), "__pycache__");
}

void lazy_fetch_looked_up(struct lazy_layer *l, uint32_t idx)
{
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e;
	struct lazy_fetch *f = l->fetch;
	uint32_t last;

	if (!f || atomic_load(&l->stopping))
		return;
	e = &toc->entries[content_estargz_resolve(toc, idx)];
	/* the cheap tests first: a lookup is a hot path */
	if (!S_ISREG(e->mode) || !(e->mode & 0111) || e->n_chunks == 0 ||
	    atomic_load(&f->exec_hints) >= EXEC_HINTS_MAX ||
	    lazy_cache_has(l->mgr->cache, &toc->chunks[e->first_chunk].digest) ||
	    atomic_fetch_add(&f->exec_hints, 1) >= EXEC_HINTS_MAX)
		return;
	last = e->first_chunk + MIN(e->n_chunks, (uint32_t)EXEC_HINT_CHUNKS);
	hold(f);
	for (uint32_t k = e->first_chunk; k < last; k++)
		if (!lazy_cache_has(l->mgr->cache, &toc->chunks[k].digest))
			enqueue(f, toc->chunks[k].offset, toc->chunks[k].end);
	unhold(f);
}

void lazy_fetch_opened(struct lazy_layer *l, uint32_t idx)
{
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e = &toc->entries[idx];
	uint8_t hdr[16];

	if (!l->fetch || atomic_load(&l->stopping) || !S_ISREG(e->mode) || e->n_chunks == 0 ||
	    e->size < sizeof(hdr) || !is_pyc(toc, idx))
		return;
	/* not cached yet: lazy_fetch_read() looks once the read has it */
	if (lazy_cache_read(l->mgr->cache, &toc->chunks[e->first_chunk].digest,
	                    toc->chunks[e->first_chunk].size, hdr, sizeof(hdr),
	                    0) == (ssize_t)sizeof(hdr))
		queue_stale_source(l, idx, hdr);
}

ssize_t lazy_fetch_read(struct lazy_layer *l, uint32_t idx, void *buf, size_t len, uint64_t off)
{
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e = &toc->entries[idx];
	size_t done = 0;
	bool ahead = false;

	if (off >= e->size)
		return 0;
	len = (size_t)MIN((uint64_t)len, e->size - off);
	for (unsigned tries = 0; done < len;) {
		uint32_t ci = content_estargz_chunk_at(toc, idx, off + done), k;
		const struct content_estargz_chunk *c;
		struct want w;
		uint64_t start, end;
		ssize_t n;
		int r;

		if (ci == CONTENT_ESTARGZ_NONE)
			return -EIO;
		c = &toc->chunks[ci];
		w = (struct want){
		        .chunk = ci,
		        .dst = (uint8_t *)buf + done,
		        .off = off + done - c->file_offset,
		};
		w.len = (size_t)MIN((uint64_t)(len - done), c->size - w.off);
		n = lazy_cache_read(l->mgr->cache, &c->digest, c->size, w.dst, w.len, w.off);
		if (n == (ssize_t)w.len) {
			atomic_fetch_add(&l->cache_hits, 1);
			done += w.len;
			tries = 0;
			continue;
		}
		atomic_fetch_add(&l->cache_misses, 1);
		/* This chunk's member and the following chunks this read needs
		 * while they are contiguous in the blob and not cached: one
		 * request. What comes after goes to the workers. */
		start = c->offset;
		end = c->end;
		for (k = ci + 1; k < e->first_chunk + e->n_chunks; k++) {
			const struct content_estargz_chunk *d = &toc->chunks[k];
			if (d->file_offset >= off + len || d->offset != end ||
			    d->end - start > READ_SPAN_MAX ||
			    lazy_cache_has(l->mgr->cache, &d->digest))
				break;
			end = d->end;
		}
		if (!ahead) {
			read_ahead(l, idx, k, start, end);
			/* once one bytecode was stale, every source is read after
			 * its bytecode: fetch it alongside, not after */
			if (off == 0 && l->fetch && atomic_load(&l->fetch->stale_pyc) &&
			    is_pyc(toc, idx)) {
				int64_t si = source_of(toc, idx);
				if (si >= 0)
					queue_file(l->fetch, (uint32_t)si);
			}
			ahead = true;
		}
		r = fetch(l, start, end, &w, "read");
		if (r == -EAGAIN && ++tries < 64)
			continue; /* someone else fetched it: read the cache again */
		if (r < 0 || !w.delivered)
			return -EIO;
		done += w.len;
		tries = 0;
	}
	if (off == 0 && done >= 16 && l->fetch && is_pyc(toc, idx))
		queue_stale_source(l, idx, buf);
	return (ssize_t)done;
}

int lazy_fetch_new(struct lazy_layer *l, struct lazy_fetch **ret)
{
	struct lazy_fetch *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->l = l;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->work, NULL);
	pthread_cond_init(&f->idle, NULL);
	*ret = f;
	return 0;
}

void lazy_fetch_wait_idle(struct lazy_fetch *f)
{
	pthread_mutex_lock(&f->lock);
	while (f->n > 0 || f->busy > 0)
		pthread_cond_wait(&f->idle, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

struct lazy_fetch *lazy_fetch_free(struct lazy_fetch *f)
{
	if (!f)
		return NULL;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	f->n = 0;
	pthread_cond_broadcast(&f->work);
	pthread_mutex_unlock(&f->lock);
	for (unsigned i = 0; i < f->n_threads; i++)
		pthread_join(f->threads[i], NULL);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->work);
	pthread_cond_destroy(&f->idle);
	free(f);
	return NULL;
}
