/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One lazy layer's data path: file reads -> chunks -> chunk cache or one
 * coalesced Range request -> gunzip -> sha256 check against chunkDigest ->
 * cache. Unverified bytes never leave this file: a chunk whose digest does
 * not match fails the read with -EIO and is not cached.
 *
 * Also the manager (the set of mounted layers of a store) and each layer's
 * helper thread: prefetch of the landmark range, registry health probes, and
 * the throttled background fetch of the rest of the layer.
 */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>

#include "lazy-internal.h"

/* Prefetch/background requests. */
#define RANGE_PIECE_MAX (16u << 20)
#define PROBE_RETRY_MS  5000

int lazy_layer_fetch_range(struct lazy_layer *l, uint64_t start, uint64_t end)
{
	const struct content_estargz_toc *toc = l->toc;
	uint32_t p = lazy_fetch_first_at(toc, start);
	int result = 0;

	while (p < toc->n_chunks && !atomic_load(&l->stopping)) {
		uint64_t ps, pe = 0;
		uint32_t q = p;

		/* skip members already cached entirely */
		while (q < toc->n_chunks) {
			const struct content_estargz_chunk *c = &toc->chunks[toc->by_offset[q]];
			if (c->offset >= end || !lazy_cache_has(l->mgr->cache, &c->digest))
				break;
			q++;
		}
		if (q >= toc->n_chunks || toc->chunks[toc->by_offset[q]].offset >= end)
			break;
		ps = toc->chunks[toc->by_offset[q]].offset;
		for (p = q; p < toc->n_chunks; p++) {
			const struct content_estargz_chunk *c = &toc->chunks[toc->by_offset[p]];
			if (c->offset >= end || (c->end - ps > RANGE_PIECE_MAX && pe > ps))
				break;
			pe = MAX(pe, c->end);
		}
		int r = lazy_fetch_span(l, ps, pe, "prefetch or background");
		if (r < 0 && r != -EAGAIN)
			result = r;
		if (r == -EIO && !atomic_load(&l->healthy))
			break;
	}
	return result;
}

/* --- the helper thread ---------------------------------------------------- */

/* Sleep ms unless the layer is stopping; false when it is. */
static bool nap(struct lazy_layer *l, unsigned ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->lock);
	while (!(stop = atomic_load(&l->stopping)))
		if (pthread_cond_timedwait(&l->cond, &l->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&l->lock);
	return !stop && !atomic_load(&l->stopping);
}

bool lazy_layer_probe(struct lazy_layer *l)
{
	uint8_t b[CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE];
	int64_t n = content_registry_read_range(l->mgr->registry, l->ref, &l->digest,
	                                        l->blob_size - sizeof(b), sizeof(b), b, NULL);
	bool ok = n == (int64_t)sizeof(b);

	atomic_store(&l->healthy, ok);
	return ok;
}

static void *helper_main(void *userdata)
{
	struct lazy_layer *l = userdata;
	const struct lazy_options *o = &l->mgr->opts;

	/* low priority: this thread only works ahead of readers */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	if (!atomic_load(&l->healthy)) {
		while (!lazy_layer_probe(l)) {
			log_debug("lazy layer %" PRIu64 ": registry still unreachable", l->id);
			if (!nap(l, PROBE_RETRY_MS))
				return NULL;
		}
		log_debug("lazy layer %" PRIu64 ": registry reachable again", l->id);
	}
	if (!o->no_prefetch && l->toc->prefetch_end > 0) {
		uint64_t before = atomic_load(&l->bytes_fetched);
		int r;

		atomic_store(&l->prefetch_phase, SNAP_LAZY_RUNNING);
		r = lazy_layer_fetch_range(l, 0, l->toc->prefetch_end);
		atomic_store(&l->prefetch_bytes, atomic_load(&l->bytes_fetched) - before);
		atomic_store(&l->prefetch_phase, r < 0 ? SNAP_LAZY_FAILED : SNAP_LAZY_DONE);
		log_debug("lazy layer %" PRIu64 ": prefetched %" PRIu64 " bytes (%s)", l->id,
		          (uint64_t)atomic_load(&l->prefetch_bytes), r < 0 ? strerror(-r) : "ok");
	}
	if (o->no_background || !nap(l, o->bg_delay_ms))
		return NULL;
	atomic_store(&l->bg_phase, SNAP_LAZY_RUNNING);
	for (uint64_t pos = l->toc->prefetch_end;
	     pos < l->toc->toc_offset && !atomic_load(&l->stopping);) {
		uint64_t next = MIN(pos + (1u << 20), l->toc->toc_offset);
		int r = lazy_layer_fetch_range(l, pos, next);
		if (r < 0 && !atomic_load(&l->healthy)) {
			if (!nap(l, PROBE_RETRY_MS))
				return NULL;
			continue; /* retry the same piece */
		}
		pos = next;
		atomic_store(&l->bg_done, pos - l->toc->prefetch_end);
		if (!nap(l, 10))
			return NULL;
	}
	atomic_store(&l->bg_phase, SNAP_LAZY_DONE);
	log_debug("lazy layer %" PRIu64 ": background fetch done (%" PRIuFAST64 " bytes fetched)",
	          l->id, atomic_load(&l->bytes_fetched));
	return NULL;
}

/* --- layers and the manager ------------------------------------------------ */

int lazy_layer_new(struct lazy_manager *m, uint64_t id, const char *ref,
                   const struct strata_digest *digest, uint64_t blob_size,
                   struct content_estargz_toc *toc, const char *mountpoint, struct lazy_layer **ret)
{
	struct lazy_layer *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return -ENOMEM;
	l->mgr = m;
	l->id = id;
	l->adopt_fd = -1;
	l->digest = *digest;
	l->blob_size = blob_size;
	l->ref_str = strdup(ref);
	l->mountpoint = strdup(mountpoint);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	atomic_store(&l->healthy, true);
	atomic_store(&l->prefetch_phase, m->opts.no_prefetch || !toc->prefetch_end
	                                         ? SNAP_LAZY_NONE
	                                         : SNAP_LAZY_PENDING);
	atomic_store(&l->bg_phase, m->opts.no_background || toc->prefetch_end >= toc->toc_offset
	                                   ? SNAP_LAZY_NONE
	                                   : SNAP_LAZY_PENDING);
	if (!l->ref_str || !l->mountpoint) {
		lazy_layer_free(l);
		return -ENOMEM;
	}
	r = content_ref_parse(ref, &l->ref, NULL);
	if (r < 0) {
		lazy_layer_free(l);
		return r;
	}
	l->toc = toc; /* owned from here on */
	*ret = l;
	return 0;
}

struct lazy_layer *lazy_layer_free(struct lazy_layer *l)
{
	if (!l)
		return NULL;
	pthread_mutex_lock(&l->lock);
	atomic_store(&l->stopping, true);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	if (l->bg_running)
		pthread_join(l->bg_thread, NULL);
	lazy_fs_unmount(l);
	safe_close(l->adopt_fd);
	content_estargz_toc_free(l->toc);
	content_ref_free(l->ref);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l->ref_str);
	free(l->mountpoint);
	free(l);
	return NULL;
}

/* Resume on the connection the holder kept when its mount is still live
 * (see lazy-handover.c), else mount afresh over whatever is left there. */
static int mount_or_resume(struct lazy_layer *l, struct strata_error **ret_err)
{
	struct lazy_handover *h = l->mgr->handover;
	_cleanup_error_ struct strata_error *err = NULL;
	bool resume = false;
	sigset_t stop, old;
	dev_t dev = 0;
	int fd = h ? lazy_handover_take(h, l->id, &dev) : -ENOENT;
	int r = -ENOENT;

	if (fd >= 0 && lazy_handover_mount_live(l->mountpoint, dev, fd)) {
		l->adopt_fd = fd;
		resume = true;
	} else if (fd >= 0) {
		close(fd);
		lazy_handover_del(h, l->id);
	}
	/* The FUSE loop thread inherits our mask: it must take the signal
	 * that stops it without unmounting (RPC threads block them all). */
	sigemptyset(&stop);
	sigaddset(&stop, SIGUSR2);
	(void)pthread_sigmask(SIG_UNBLOCK, &stop, &old);
	if (resume) {
		r = lazy_fs_mount(l, &err);
		if (r >= 0) {
			log_info("lazy layer %" PRIu64 ": resumed on its FUSE connection kept "
			         "across the restart",
			         l->id);
		} else {
			log_warn("lazy layer %" PRIu64 ": cannot resume its kept FUSE connection: "
			         "%s: mounting afresh",
			         l->id, strata_error_message(err));
			l->adopt_fd = safe_close(l->adopt_fd);
			lazy_handover_del(h, l->id);
		}
	}
	if (r < 0) {
		double t0, t1, t2;

		t0 = log_now_ms();
		lazy_fs_force_unmount(l->mountpoint);
		t1 = log_now_ms();
		r = lazy_fs_mount(l, ret_err);
		t2 = log_now_ms();
		if (r >= 0 && h)
			lazy_handover_put(h, l);
		log_debug("lazy layer %" PRIu64 ": detach %.1f ms, FUSE mount %.1f ms, handover "
		          "%.1f ms",
		          l->id, t1 - t0, t2 - t1, log_now_ms() - t2);
	}
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

int lazy_layer_start(struct lazy_layer *l, struct strata_error **ret_err)
{
	struct lazy_manager *m = l->mgr;
	struct lazy_layer **a;
	int r;

	r = mount_or_resume(l, ret_err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	a = realloc(m->layers, (m->n_layers + 1) * sizeof(*a));
	if (a) {
		m->layers = a;
		m->layers[m->n_layers++] = l;
		/* no longer broken, if it was */
		for (size_t i = 0; i < m->n_broken; i++)
			if (m->broken[i] == l->id)
				m->broken[i] = m->broken[--m->n_broken];
	}
	pthread_mutex_unlock(&m->lock);
	if (!a) {
		lazy_fs_unmount(l);
		return -ENOMEM;
	}
	if (pthread_create(&l->bg_thread, NULL, helper_main, l) == 0)
		l->bg_running = true;
	return 0;
}

struct lazy_layer *lazy_manager_find(struct lazy_manager *m, uint64_t id)
{
	struct lazy_layer *l = NULL;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_layers; i++)
		if (m->layers[i]->id == id)
			l = m->layers[i];
	pthread_mutex_unlock(&m->lock);
	return l;
}

void lazy_manager_drop(struct lazy_manager *m, uint64_t id)
{
	struct lazy_layer *l = NULL;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_layers; i++)
		if (m->layers[i]->id == id) {
			l = m->layers[i];
			m->layers[i] = m->layers[--m->n_layers];
			break;
		}
	for (size_t i = 0; i < m->n_broken; i++)
		if (m->broken[i] == id) {
			m->broken[i] = m->broken[--m->n_broken];
			break;
		}
	pthread_mutex_unlock(&m->lock);
	if (l && m->handover)
		lazy_handover_del(m->handover, id);
	lazy_layer_free(l);
}

int lazy_manager_new(const char *root, const struct lazy_options *opts,
                     struct content_registry_client *registry, struct lazy_manager **ret,
                     struct strata_error **ret_err)
{
	struct lazy_manager *m = calloc(1, sizeof(*m));
	_cleanup_free_ char *dir = NULL;
	int r;

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->opts = *opts;
	if (!m->opts.cache_max_bytes)
		m->opts.cache_max_bytes = 10ull << 30;
	if (!m->opts.fuse_threads)
		m->opts.fuse_threads = 8;
	/* the background fetch waits for the start-up reads to be served */
	if (!m->opts.bg_delay_ms)
		m->opts.bg_delay_ms = 30000;
	m->root = strdup(root);
	if (!m->root || asprintf(&dir, "%s/cache/chunks", root) < 0) {
		lazy_manager_free(m);
		return -ENOMEM;
	}
	r = lazy_cache_open(dir, m->opts.cache_max_bytes, &m->cache);
	if (r < 0) {
		lazy_manager_free(m);
		return strata_error_set_errno(ret_err, r, "open chunk cache \"%s\"", dir);
	}
	r = lazy_handover_open(root, m->opts.handover, &m->handover);
	if (r < 0) {
		lazy_manager_free(m);
		return strata_error_set_errno(ret_err, r, "FUSE connection handover");
	}
	if (registry) {
		m->registry = registry;
	} else {
		struct content_registry_options ro = {0};
		r = content_registry_client_new(&ro, &m->registry, ret_err);
		if (r < 0) {
			lazy_manager_free(m);
			return r;
		}
		m->own_registry = true;
	}
	*ret = m;
	return 0;
}

struct lazy_manager *lazy_manager_free(struct lazy_manager *m)
{
	if (!m)
		return NULL;
	for (;;) {
		struct lazy_layer *l = NULL;
		pthread_mutex_lock(&m->lock);
		if (m->n_layers)
			l = m->layers[--m->n_layers];
		pthread_mutex_unlock(&m->lock);
		if (!l)
			break;
		/* A layer in use stays mounted for the next daemon; an idle one
		 * is unmounted, and the holder lets go of it. */
		if (lazy_handover_keeps(m->handover) && l->se &&
		    lazy_handover_in_use(l->mountpoint, l->fuse_dev))
			l->keep_mounted = true;
		else if (m->handover && l->se)
			lazy_handover_del(m->handover, l->id);
		lazy_layer_free(l);
	}
	lazy_handover_free(m->handover);
	free(m->layers);
	free(m->broken);
	lazy_cache_free(m->cache);
	if (m->own_registry)
		content_registry_client_free(m->registry);
	pthread_mutex_destroy(&m->lock);
	free(m->root);
	free(m);
	return NULL;
}
