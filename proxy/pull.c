/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pull engine behind Images.Pull: resolve, fetch and verify manifest and
 * config, then download and unpack the layers, and record the image.
 *
 * Layers flow in one pass each. Up to PULL_DOWNLOADERS threads fetch layer
 * blobs, in order, into content writers (ingest ref "@strata/pull/<digest>",
 * so an interrupted pull resumes from the ingest's offset). The handler
 * thread unpacks layers strictly in order, since layer N's snapshot needs
 * layer N-1's committed as parent: it reads the layer's compressed bytes
 * from the ingest's data file as they land (following the download, waiting
 * when it catches up), or from the stored blob when the blob was already
 * there. So the layer being unpacked streams, and layers that downloaded
 * ahead are read back from the page cache: no second copy, no ring buffer,
 * memory bounded. Nothing unverified is ever committed: a snapshot is
 * committed only after its blob's digest was verified at the content
 * commit and its diff ID matched the config's rootfs.diff_ids.
 *
 * A third kind of thread sends progress: it wakes on state changes and every
 * PROXY_PULL_PROGRESS_INTERVAL_US, and is the only sender until the final
 * message.
 *
 * Lazy layers. Unless the request says LAZY_NEVER, a layer whose descriptor
 * carries the eStargz annotation containerd.io/snapshot/stargz/toc.digest
 * (and whose blob is not stored already) is not downloaded: the unpacker
 * asks the snapshotter for a remote snapshot instead, with the labels of
 * containerd's remote-snapshotter protocol (snapshot.ref = "@strata/
 * <chainID>", stargz.reference = the repository at the platform manifest's
 * digest, stargz.digest, toc.digest). The snapshotter reads and verifies the
 * TOC, mounts the layer through FUSE and commits it under "@strata/
 * <chainID>" with the parent chain, exactly where an unpacked layer would
 * be, and answers AlreadyExists; the image record and `strata run` see no
 * difference. When it falls back instead (a normal active snapshot comes
 * back), LAZY_AUTO downloads and unpacks that layer into it, after finding
 * out why with one footer + TOC read of our own (the snapshotter only logs
 * its reason) and saying so in a progress message; LAZY_ALWAYS fails with
 * the reason. The layer blob of a lazy layer is never stored: the chunk
 * cache keeps what was read.
 *
 * Integrity of lazy layers. The diff ID (sha256 of the uncompressed tar)
 * cannot be checked without reading the whole layer, which is what lazy
 * pulling avoids. stargz's chain of trust replaces it: the manifest is
 * verified against its digest, the manifest names the TOC digest, the TOC
 * is verified against it before anything is mounted, and every chunk read
 * is verified against the TOC's chunkDigest before a byte is returned. The
 * image record says which layers were mounted lazily (label
 * strata.io/lazy.layers) and that their diff IDs were not verified
 * (strata.io/lazy.integrity).
 *
 * Concurrent pulls in one daemon share layers: a process-wide set of busy
 * names serialises the download of one blob ("blob:<digest>") and the unpack
 * of one chain ("chain:<chainID>"); whoever comes second finds the work done.
 * Lock order: busy names are taken before job->lock, and no thread waits for
 * a busy name while holding a busy name it would need to release first
 * (downloaders hold only their blob, the unpacker only its chain and waits on
 * downloads, which never wait on unpacks).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pull-internal.h"

#define PULL_DOWNLOADERS   4
#define CONFIG_SIZE_MAX    (16u << 20)
#define LABEL_UNCOMPRESSED "containerd.io/uncompressed"
#define LABEL_GC_CONFIG    "containerd.io/gc.ref.content.config"
#define LABEL_GC_LAYER     "containerd.io/gc.ref.content.l."
#define LABEL_GC_MANIFEST  "containerd.io/gc.ref.content.m."
#define LABEL_SOURCE       "containerd.io/distribution.source."
#define MAX_MESSAGES       8
#define LABEL_TARGET       "containerd.io/snapshot.ref"
#define LABEL_REMOTE       "containerd.io/snapshot/remote"
#define LABEL_SGZ_REF      "containerd.io/snapshot/remote/stargz.reference"
#define LABEL_SGZ_DIGEST   "containerd.io/snapshot/remote/stargz.digest"
#define LABEL_LAYER_DIGEST "strata.io/layer.digest"
#define LABEL_LAZY_LAYERS  "strata.io/lazy.layers"
#define LABEL_LAZY_INTEG   "strata.io/lazy.integrity"
#define LAZY_INTEGRITY                                                                        \
	"toc.digest from the verified manifest, every chunk verified when read; diff IDs of " \
	"lazy layers not verified"

typedef Strata__Images__V1__LayerProgress__State LayerState;
#define ST(x) STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__##x

static uint64_t now_us(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

bool proxy_pull_progress_due(uint64_t now, uint64_t last_sent, bool state_changed,
                             bool bytes_changed)
{
	if (state_changed)
		return true;
	return bytes_changed && now - last_sent >= PROXY_PULL_PROGRESS_INTERVAL_US;
}

char *proxy_strata_snapshot_key(const struct strata_digest *chain_id,
                                char buf[static PROXY_STRATA_KEY_MAX])
{
	char d[STRATA_DIGEST_STRING_MAX];

	snprintf(buf, PROXY_STRATA_KEY_MAX, PROXY_STRATA_KEY_PREFIX "%s",
	         strata_digest_format(chain_id, d));
	return buf;
}

/* --- busy names (process-wide) ---------------------------------------------- */

/* Protected by busy_lock; busy_cond is broadcast on every release. */
struct busy {
	char *name;
	struct busy *next;
};

static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_cond = PTHREAD_COND_INITIALIZER;
static struct busy *busy_names;

static bool busy_has(const char *name)
{
	for (struct busy *b = busy_names; b; b = b->next)
		if (streq(b->name, name))
			return true;
	return false;
}

static int busy_acquire(const char *name)
{
	struct busy *b = calloc(1, sizeof(*b));

	if (!b || !(b->name = strdup(name))) {
		free(b);
		return -ENOMEM;
	}
	pthread_mutex_lock(&busy_lock);
	while (busy_has(name))
		pthread_cond_wait(&busy_cond, &busy_lock);
	b->next = busy_names;
	busy_names = b;
	pthread_mutex_unlock(&busy_lock);
	return 0;
}

static void busy_release(const char *name)
{
	pthread_mutex_lock(&busy_lock);
	for (struct busy **p = &busy_names; *p; p = &(*p)->next)
		if (streq((*p)->name, name)) {
			struct busy *b = *p;
			*p = b->next;
			free(b->name);
			free(b);
			break;
		}
	pthread_cond_broadcast(&busy_cond);
	pthread_mutex_unlock(&busy_lock);
}

/* --- the job --------------------------------------------------------------- */

struct pull_layer {
	const struct content_image_descriptor *desc; /* in job->manifest */
	struct strata_digest diff_id;
	struct strata_digest chain_id;
	char digest_str[STRATA_DIGEST_STRING_MAX];
	char key[PROXY_STRATA_KEY_MAX];    /* "@strata/<chainID>" */
	char ingest[PROXY_STRATA_KEY_MAX]; /* "@strata/pull/<digest>" */
	bool need_download;                /* fixed before the threads start */
	bool need_extract;
	/* Try a remote (lazy) snapshot first; no download unless that fails
	 * (then the unpacker downloads it itself). Fixed before the threads
	 * start, like need_download. */
	bool lazy_try;

	/* Protected by job->lock. */
	LayerState state;
	int64_t done;     /* bytes in the ingest (or the blob size when stored) */
	bool dl_started;  /* data_fd is set: the unpacker may follow the download */
	bool dl_finished; /* the downloader is done with it (see dl_error) */
	int dl_error;
	struct strata_error *dl_err;
	int data_fd; /* read-only, on the ingest's data; closed with the job */
};

struct pull_job {
	struct proxy_images *img;
	struct proxy_call *call;
	struct content_registry_client *client;
	struct content_ref *ref;
	char *source_key; /* containerd.io/distribution.source.<domain> */
	struct content_image_manifest *manifest;
	struct pull_layer *layers;
	size_t n_layers;
	Strata__Images__V1__LazyMode lazy;
	char *lazy_ref; /* "domain/path@<manifest digest>", for the snapshotter */
	/* --user or --plain-http: lazy layers must read with this pull's
	 * client, not the daemon's default (see route_lazy_reads) */
	bool own_transport;

	/* lock protects the fields below and every layer's "protected" part;
	 * cond is broadcast when a download makes progress, starts or ends,
	 * and on cancellation. Never held across I/O. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t next_download;
	bool cancelled; /* a failure or the client going away: stop everything */
	int cancel_error;

	/* The progress thread's wake-up (uses lock). */
	pthread_cond_t progress_cond;
	bool progress_stop;
	bool state_changed;
	bool bytes_changed;
	char *messages[MAX_MESSAGES];
	size_t n_messages;
};

static void job_set_state(struct pull_job *job, struct pull_layer *l, LayerState st)
{
	pthread_mutex_lock(&job->lock);
	l->state = st;
	job->state_changed = true;
	pthread_cond_signal(&job->progress_cond);
	pthread_mutex_unlock(&job->lock);
}

static void job_cancel(struct pull_job *job, int error)
{
	pthread_mutex_lock(&job->lock);
	if (!job->cancelled) {
		job->cancelled = true;
		job->cancel_error = error;
	}
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
}

static void job_message(struct pull_job *job, const char *fmt, ...) _printf_(2, 3);
static void job_message(struct pull_job *job, const char *fmt, ...)
{
	char *m = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (!m)
		return;
	pthread_mutex_lock(&job->lock);
	if (job->n_messages < MAX_MESSAGES) {
		job->messages[job->n_messages++] = m;
		m = NULL;
	}
	pthread_cond_signal(&job->progress_cond);
	pthread_mutex_unlock(&job->lock);
	free(m);
}

/* --- progress -------------------------------------------------------------- */

struct progress_msg {
	Strata__Images__V1__PullProgress pb;
	Strata__Images__V1__LayerProgress *layers;
	Strata__Images__V1__LayerProgress **ptrs;
	char *message;
};

static void progress_msg_done(struct progress_msg *m)
{
	free(m->layers);
	free(m->ptrs);
	free(m->message);
}

/* Fill m from the job; called with job->lock held. Takes the queued messages. */
static int progress_msg_fill(struct pull_job *job, struct progress_msg *m)
{
	size_t n = job->n_layers, len = 0;

	*m = (struct progress_msg){0};
	strata__images__v1__pull_progress__init(&m->pb);
	m->layers = calloc(MAX(n, (size_t)1), sizeof(*m->layers));
	m->ptrs = calloc(MAX(n, (size_t)1), sizeof(*m->ptrs));
	if (!m->layers || !m->ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct pull_layer *l = &job->layers[i];
		Strata__Images__V1__LayerProgress *p = &m->layers[i];

		strata__images__v1__layer_progress__init(p);
		p->digest = l->digest_str;
		p->size = l->desc->size;
		p->done = l->done;
		p->state = l->state;
		m->ptrs[i] = p;
	}
	m->pb.layers = m->ptrs;
	m->pb.n_layers = n;
	for (size_t i = 0; i < job->n_messages; i++)
		len += strlen(job->messages[i]) + 1;
	if (len > 0) {
		m->message = calloc(1, len);
		if (!m->message)
			return -ENOMEM;
		for (size_t i = 0; i < job->n_messages; i++) {
			if (i > 0)
				strcat(m->message, "\n");
			strcat(m->message, job->messages[i]);
			free(job->messages[i]);
		}
		job->n_messages = 0;
		m->pb.message = m->message;
	}
	return 0;
}

static void *progress_thread(void *userdata)
{
	struct pull_job *job = userdata;
	uint64_t last = 0;

	pthread_mutex_lock(&job->lock);
	while (!job->progress_stop) {
		uint64_t now = now_us();

		if (proxy_pull_progress_due(now, last, job->state_changed || job->n_messages > 0,
		                            job->bytes_changed)) {
			struct progress_msg m;
			int r = progress_msg_fill(job, &m);

			job->state_changed = job->bytes_changed = false;
			pthread_mutex_unlock(&job->lock);
			if (r >= 0)
				r = proxy_call_send(job->call, &m.pb.base);
			progress_msg_done(&m);
			if (r < 0)
				job_cancel(job, r);
			last = now;
			pthread_mutex_lock(&job->lock);
			continue;
		}
		if (proxy_call_cancelled(job->call) < 0 && !job->cancelled) {
			job->cancelled = true;
			job->cancel_error = proxy_call_cancelled(job->call);
			pthread_cond_broadcast(&job->cond);
		}
		{
			struct timespec ts;
			(void)clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += PROXY_PULL_PROGRESS_INTERVAL_US * 1000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			(void)pthread_cond_timedwait(&job->progress_cond, &job->lock, &ts);
		}
	}
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

/* --- downloads ------------------------------------------------------------- */

struct fetch_ctx {
	struct pull_job *job;
	struct pull_layer *l;
	struct content_writer *w;
};

static int fetch_write(const void *buf, size_t len, void *userdata)
{
	struct fetch_ctx *c = userdata;
	int r;

	r = content_writer_write(c->w, -1, buf, len, NULL);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->job->lock);
	c->l->done += (int64_t)len;
	c->job->bytes_changed = true;
	r = c->job->cancelled ? -ECANCELED : 0;
	pthread_cond_broadcast(&c->job->cond);
	pthread_mutex_unlock(&c->job->lock);
	return r;
}

static int layer_labels(struct pull_job *job, struct pull_layer *l, struct content_label labels[2],
                        char diff[static STRATA_DIGEST_STRING_MAX])
{
	labels[0] = (struct content_label){(char *)LABEL_UNCOMPRESSED,
	                                   strata_digest_format(&l->diff_id, diff)};
	labels[1] = (struct content_label){job->source_key, job->ref->path};
	/* sorted by key, as the store wants them */
	if (strcmp(labels[0].key, labels[1].key) > 0) {
		struct content_label t = labels[0];
		labels[0] = labels[1];
		labels[1] = t;
	}
	return 2;
}

/* Download one layer blob into the content store. 0 when stored (now or
 * before). */
static int download_blob(struct pull_job *job, struct pull_layer *l, struct strata_error **ret_err)
{
	struct content_store *s = job->img->content;
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	struct content_status st = {0};
	struct content_label labels[2];
	char diff[STRATA_DIGEST_STRING_MAX];
	struct fetch_ctx fc = {job, l, NULL};
	int fd, r;

	for (unsigned tries = 0;; tries++) {
		r = content_writer_open(s, l->ingest, l->desc->size, &l->desc->digest, &w, NULL);
		if (r != -EAGAIN || tries >= 100)
			break;
		usleep(100 * 1000); /* a writer of another process/client holds the ref */
	}
	if (r == -EEXIST)
		return 0;
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "open ingest %s", l->ingest);
	r = content_writer_status(w, &st);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "ingest status %s", l->ingest);
	fd = content_ingest_open_data(s, l->ingest);
	if (fd < 0)
		return strata_error_set_errno(ret_err, fd, "open ingest data %s", l->ingest);

	pthread_mutex_lock(&job->lock);
	l->data_fd = fd;
	l->done = st.offset;
	l->dl_started = true;
	if (l->state == ST(WAITING))
		l->state = ST(DOWNLOADING);
	job->state_changed = true;
	pthread_cond_signal(&job->progress_cond);
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);

	if (st.offset > 0)
		log_debug("pull: layer %s: resuming at byte %" PRId64, l->digest_str, st.offset);
	fc.w = w;
	/* A resumed fetch cannot be verified by the client (it lacks the first
	 * bytes); the content commit verifies every byte either way. */
	r = content_registry_fetch_blob(job->client, job->ref, l->desc, (uint64_t)st.offset,
	                                st.offset == 0 ? CONTENT_REGISTRY_FETCH_VERIFY : 0,
	                                fetch_write, &fc, ret_err);
	if (r == -EBADMSG) {
		w = content_writer_close(w);
		(void)content_abort(s, l->ingest, NULL); /* never keep bytes that lie */
		return strata_error_prefix(ret_err, r, "fetch");
	}
	if (r < 0)
		return strata_error_prefix(ret_err, r, "fetch"); /* the ingest stays, to resume */

	(void)layer_labels(job, l, labels, diff);
	r = content_writer_commit(w, l->desc->size, &l->desc->digest, labels, 2, NULL, ret_err);
	if (r == -EBADMSG) {
		w = content_writer_close(w);
		(void)content_abort(s, l->ingest, NULL);
		return strata_error_prefix(ret_err, r, "verify");
	}
	if (r == -EEXIST)
		return 0; /* someone else stored it meanwhile */
	if (r < 0)
		return strata_error_prefix(ret_err, r, "commit");
	/* ours until containerd claims it (see svc-images.c) */
	r = content_mark_set_private(s, &l->desc->digest, true);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "mark %s", l->digest_str);
	return 0;
}

static void download_layer(struct pull_job *job, struct pull_layer *l)
{
	_cleanup_error_ struct strata_error *err = NULL;
	char busy[STRATA_DIGEST_STRING_MAX + 8];
	int r;

	snprintf(busy, sizeof(busy), "blob:%s", l->digest_str);
	r = busy_acquire(busy);
	if (r >= 0) {
		r = download_blob(job, l, &err);
		busy_release(busy);
	}
	if (r < 0)
		(void)strata_error_prefix(&err, r, "layer %s", l->digest_str);

	pthread_mutex_lock(&job->lock);
	l->dl_finished = true;
	if (r < 0) {
		l->dl_error = r;
		l->dl_err = TAKE_PTR(err);
		/* the unpacker reports it; the other downloads stop */
		job->cancelled = true;
		if (!job->cancel_error)
			job->cancel_error = r;
	} else {
		l->done = l->desc->size;
		if (!l->need_extract)
			l->state = ST(DONE);
	}
	job->state_changed = true;
	pthread_cond_signal(&job->progress_cond);
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
}

static void *downloader(void *userdata)
{
	struct pull_job *job = userdata;

	for (;;) {
		struct pull_layer *l = NULL;

		pthread_mutex_lock(&job->lock);
		while (job->next_download < job->n_layers &&
		       !job->layers[job->next_download].need_download)
			job->next_download++;
		if (!job->cancelled && job->next_download < job->n_layers)
			l = &job->layers[job->next_download++];
		pthread_mutex_unlock(&job->lock);
		if (!l)
			return NULL;
		download_layer(job, l);
	}
}

/* --- unpacking ------------------------------------------------------------- */

struct layer_source {
	struct pull_job *job;
	struct pull_layer *l;
	struct content_reader *blob; /* the stored blob, or NULL: follow the ingest */
	int64_t pos;
};

static ssize_t layer_read(void *userdata, void *buf, size_t len)
{
	struct layer_source *src = userdata;
	struct pull_job *job = src->job;
	struct pull_layer *l = src->l;
	int64_t avail = 0;
	ssize_t n;
	int fd, r = 0;

	if (src->blob) {
		n = content_reader_pread(src->blob, buf, len, src->pos);
		if (n > 0)
			src->pos += n;
		return n;
	}
	pthread_mutex_lock(&job->lock);
	for (;;) {
		if (l->dl_finished && l->dl_error < 0) {
			r = l->dl_error;
			break;
		}
		if (job->cancelled) {
			r = job->cancel_error < 0 ? job->cancel_error : -ECANCELED;
			break;
		}
		if (src->pos < l->done) {
			avail = l->done - src->pos;
			break;
		}
		if (l->dl_finished)
			break; /* the end */
		pthread_cond_wait(&job->cond, &job->lock);
	}
	fd = l->data_fd;
	pthread_mutex_unlock(&job->lock);
	if (r < 0)
		return r;
	if (avail == 0)
		return 0;
	n = pread(fd, buf, (size_t)MIN((int64_t)len, avail), src->pos);
	if (n < 0)
		return negative_errno();
	if (n == 0)
		return -EIO; /* the ingest said these bytes were written */
	src->pos += n;
	return n;
}

/* Wait until layer l's download started or ended; < 0 when it failed or the
 * job was cancelled. */
static int wait_download(struct pull_job *job, struct pull_layer *l, bool until_finished,
                         struct strata_error **ret_err)
{
	int r = 0;

	pthread_mutex_lock(&job->lock);
	while (!l->dl_finished && !(l->dl_started && !until_finished) && !job->cancelled)
		pthread_cond_wait(&job->cond, &job->lock);
	if (l->dl_finished && l->dl_error < 0) {
		r = l->dl_error;
		strata_error_propagate(ret_err, &l->dl_err);
	} else if (job->cancelled && !(l->dl_finished || (l->dl_started && !until_finished))) {
		r = job->cancel_error < 0 ? job->cancel_error : -ECANCELED;
	}
	pthread_mutex_unlock(&job->lock);
	if (r < 0 && ret_err && !*ret_err)
		(void)strata_error_set_errno(ret_err, r, "layer %s", l->digest_str);
	return r;
}

/* Unpack layer l into the active snapshot extract_key (made here unless
 * prepared) and commit it. downloading: l's blob is being (or was) fetched
 * into its ingest by a downloader; otherwise it is read from the store. */
static int unpack_into(struct pull_job *job, struct pull_layer *l, const char *parent,
                       const char *extract_key, bool downloading, bool prepared,
                       struct strata_error **ret_err)
{
	struct snap_store *snaps = job->img->snaps;
	_cleanup_(content_reader_freep) struct content_reader *blob = NULL;
	struct layer_source src = {job, l, NULL, 0};
	struct snap_mount *mounts = NULL;
	char got[STRATA_DIGEST_STRING_MAX], want[STRATA_DIGEST_STRING_MAX];
	struct snap_label label = {(char *)LABEL_LAYER_DIGEST, l->digest_str};
	struct strata_digest diff_id;
	size_t n_mounts = 0;
	bool follow;
	int r;

	if (downloading) {
		r = wait_download(job, l, false, ret_err);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&job->lock);
	follow = l->dl_started;
	pthread_mutex_unlock(&job->lock);
	if (!follow) {
		r = content_reader_open(job->img->content, &l->desc->digest, &blob, ret_err);
		if (r < 0)
			return strata_error_prefix(ret_err, r, "layer %s", l->digest_str);
		src.blob = blob;
	}

	r = prepared ? 0
	             : snap_prepare(snaps, extract_key, parent, NULL, 0, &mounts, &n_mounts, NULL);
	if (r == -EEXIST) {
		/* left by a crashed pull: we hold the chain, nobody else uses it */
		(void)snap_remove(snaps, extract_key, NULL);
		r = snap_prepare(snaps, extract_key, parent, NULL, 0, &mounts, &n_mounts, ret_err);
	} else if (r < 0) {
		r = snap_prepare(snaps, extract_key, parent, NULL, 0, &mounts, &n_mounts, ret_err);
	}
	if (r < 0)
		return strata_error_prefix(ret_err, r, "layer %s: prepare snapshot", l->digest_str);
	snap_mounts_free(mounts, n_mounts);
	job_set_state(job, l, ST(EXTRACTING));

	r = snap_apply_layer(snaps, extract_key, layer_read, &src, &diff_id, NULL, ret_err);
	if (r >= 0 && downloading)
		r = wait_download(job, l, true, ret_err); /* the blob is verified */
	if (r >= 0 && !strata_digest_equal(&diff_id, &l->diff_id))
		r = strata_error_set(ret_err, -EBADMSG,
		                     "diff ID %s does not match the image config's %s",
		                     strata_digest_format(&diff_id, got),
		                     strata_digest_format(&l->diff_id, want));
	if (r >= 0)
		r = snap_commit(snaps, l->key, extract_key, &label, 1, ret_err);
	if (r < 0) {
		(void)snap_remove(snaps, extract_key, NULL);
		return strata_error_prefix(ret_err, r, "layer %s", l->digest_str);
	}
	return 0;
}

/* --- lazy layers ---------------------------------------------------------- */

/* Why layer l cannot be served lazily, found with our own footer + TOC read
 * (the snapshotter logs its reason but does not return it). Only called
 * when the snapshotter fell back, so the extra requests are noise next to
 * the full download that follows. */
static char *lazy_diagnose(struct pull_job *job, struct pull_layer *l)
{
	const char *toc_s =
	        content_image_descriptor_annotation(l->desc, CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	struct strata_digest tocd;
	uint64_t fetched = 0;
	char *m = NULL;
	int r;

	if (!toc_s)
		return strdup("no " CONTENT_ESTARGZ_TOC_DIGEST_LABEL " annotation: not eStargz");
	if (strata_digest_parse(toc_s, &tocd, NULL) < 0)
		return strdup("bad " CONTENT_ESTARGZ_TOC_DIGEST_LABEL " annotation");
	r = content_estargz_open_remote(job->client, job->ref, &l->desc->digest,
	                                (uint64_t)l->desc->size, &tocd, &toc, NULL, NULL, &fetched,
	                                &err);
	if (r == -EMEDIUMTYPE)
		return strdup("not eStargz (no eStargz footer)");
	if (r == -EOPNOTSUPP)
		return strdup("the registry ignores Range requests");
	if (r < 0) {
		if (asprintf(&m, "cannot read its eStargz TOC: %s",
		             err ? strata_error_message(err) : strerror(-r)) < 0)
			m = NULL;
		return m;
	}
	return strdup("the snapshotter refused it (the daemon's log says why)");
}

struct inline_download {
	struct pull_job *job;
	struct pull_layer *l;
};

static void *inline_download_main(void *userdata)
{
	struct inline_download *d = userdata;

	download_layer(d->job, d->l);
	return NULL;
}

/* Mount layer l lazily as "@strata/<chainID>": 1 when done. When the
 * snapshotter falls back: LAZY_AUTO downloads and unpacks it (0), anything
 * else fails with the reason. The caller holds the chain's busy name. */
static int lazy_layer(struct pull_job *job, struct pull_layer *l, const char *parent,
                      const char *extract_key, struct strata_error **ret_err)
{
	struct snap_store *snaps = job->img->snaps;
	const char *toc_s =
	        content_image_descriptor_annotation(l->desc, CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
	const struct snap_label labels[] = {
	        {(char *)LABEL_TARGET, l->key},
	        {(char *)LABEL_SGZ_REF, job->lazy_ref},
	        {(char *)LABEL_SGZ_DIGEST, l->digest_str},
	        {(char *)CONTENT_ESTARGZ_TOC_DIGEST_LABEL, (char *)toc_s},
	        {(char *)LABEL_LAYER_DIGEST, l->digest_str},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *why = NULL;
	struct inline_download dl = {job, l};
	struct snap_mount *mounts = NULL;
	struct snap_info info = {0};
	struct snap_lazy_stats st = {0};
	size_t n_mounts = 0;
	pthread_t thread;
	bool remote;
	int r;

	/* Left by a crashed pull (we hold the chain, nobody else uses the key);
	 * an existing key would read as the AlreadyExists of success below. */
	(void)snap_remove(snaps, extract_key, NULL);
	r = snap_prepare(snaps, extract_key, parent, labels, ELEMENTSOF(labels), &mounts, &n_mounts,
	                 &err);
	if (r == -EEXIST) {
		remote = snap_stat(snaps, l->key, &info, NULL) >= 0 &&
		         info.kind == SNAP_KIND_COMMITTED && snap_info_label(&info, LABEL_REMOTE);
		snap_info_done(&info);
		if (!remote)
			return strata_error_set(
			        ret_err, -EEXIST,
			        "layer %s: %s exists but is not its remote snapshot", l->digest_str,
			        l->key);
		if (snap_lazy_stats(snaps, l->key, &st) >= 0) {
			pthread_mutex_lock(&job->lock);
			l->done = (int64_t)st.bytes_fetched;
			job->bytes_changed = true;
			pthread_mutex_unlock(&job->lock);
		}
		log_debug("pull: layer %s: mounted lazily as %s", l->digest_str, l->key);
		job_message(job,
		            "layer %s: mounted lazily (eStargz), %" PRIu64 " of %" PRId64
		            " bytes fetched",
		            l->digest_str, st.bytes_fetched, l->desc->size);
		job_set_state(job, l, ST(LAZY));
		return 1;
	}
	if (r < 0) {
		strata_error_propagate(ret_err, &err);
		return strata_error_prefix(ret_err, r, "layer %s: prepare remote snapshot",
		                           l->digest_str);
	}
	snap_mounts_free(mounts, n_mounts);

	why = lazy_diagnose(job, l);
	if (!why) {
		(void)snap_remove(snaps, extract_key, NULL);
		return -ENOMEM;
	}
	if (job->lazy != STRATA__IMAGES__V1__LAZY_MODE__LAZY_AUTO) {
		(void)snap_remove(snaps, extract_key, NULL);
		return strata_error_set(ret_err, -EOPNOTSUPP,
		                        "layer %s cannot be mounted lazily: %s", l->digest_str,
		                        why);
	}
	log_info("pull: layer %s cannot be mounted lazily: %s: pulling it in full", l->digest_str,
	         why);
	job_message(job, "layer %s cannot be mounted lazily: %s: pulling it in full", l->digest_str,
	            why);

	/* The downloaders skip this layer (need_download is false): fetch it
	 * on a thread of its own so that the unpack still follows the
	 * download, into the active snapshot the fallback gave us. */
	r = -pthread_create(&thread, NULL, inline_download_main, &dl);
	if (r < 0) {
		(void)snap_remove(snaps, extract_key, NULL);
		return strata_error_set_errno(ret_err, r, "layer %s: start download",
		                              l->digest_str);
	}
	r = unpack_into(job, l, parent, extract_key, true, true, ret_err);
	if (r < 0)
		job_cancel(job, r); /* stops the download */
	pthread_join(thread, NULL);
	return r < 0 ? r : 0;
}

static int unpack_layer(struct pull_job *job, size_t i, struct strata_error **ret_err)
{
	struct pull_layer *l = &job->layers[i];
	char busy[PROXY_STRATA_KEY_MAX + 8], extract_key[PROXY_STRATA_KEY_MAX];
	char d[STRATA_DIGEST_STRING_MAX];
	struct snap_info info = {0};
	int r;

	snprintf(busy, sizeof(busy), "chain:%s", l->key);
	r = busy_acquire(busy);
	if (r < 0)
		return r;
	r = snap_stat(job->img->snaps, l->key, &info, NULL);
	if (r >= 0 && info.kind == SNAP_KIND_COMMITTED) {
		/* another pull unpacked it while we waited */
		snap_info_done(&info);
		busy_release(busy);
		if (!l->need_download)
			job_set_state(job, l, ST(EXISTS));
		return 0;
	}
	snap_info_done(&info);
	snprintf(extract_key, sizeof(extract_key), PROXY_STRATA_EXTRACT_PREFIX "%s",
	         strata_digest_format(&l->chain_id, d));
	if (l->lazy_try)
		r = lazy_layer(job, l, i > 0 ? job->layers[i - 1].key : NULL, extract_key, ret_err);
	else
		r = unpack_into(job, l, i > 0 ? job->layers[i - 1].key : NULL, extract_key,
		                l->need_download, false, ret_err);
	busy_release(busy);
	if (r == 0)
		job_set_state(job, l, ST(DONE));
	return r < 0 ? r : 0;
}

/* --- manifests and config -------------------------------------------------- */

/* Store a small blob we hold in memory (manifest, index, config), or add our
 * labels to it when it is already there. */
static int store_small_blob(struct pull_job *job, const struct strata_digest *d, const void *buf,
                            size_t len, struct content_label *labels, size_t n_labels,
                            struct strata_error **ret_err)
{
	struct content_store *s = job->img->content;
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	char ds[STRATA_DIGEST_STRING_MAX], ref[PROXY_STRATA_KEY_MAX];
	int r;

	strata_digest_format(d, ds);
	snprintf(ref, sizeof(ref), PROXY_STRATA_INGEST_PREFIX "%s", ds);
	r = content_writer_open(s, ref, (int64_t)len, d, &w, NULL);
	if (r >= 0) {
		r = content_writer_write(w, 0, buf, len, ret_err);
		if (r >= 0)
			r = content_writer_commit(w, (int64_t)len, d, labels, n_labels, NULL,
			                          ret_err);
		if (r >= 0) {
			r = content_mark_set_private(s, d, true);
			if (r < 0)
				return strata_error_set_errno(ret_err, r, "mark %s", ds);
			return 0;
		}
		if (r != -EEXIST)
			return strata_error_prefix(ret_err, r, "store %s", ds);
		if (ret_err && *ret_err)
			*ret_err = strata_error_free(*ret_err);
	} else if (r != -EEXIST) {
		return strata_error_set_errno(ret_err, r, "store %s", ds);
	}
	/* already stored (by containerd, or an earlier pull): set our labels */
	if (n_labels > 0) {
		_cleanup_free_ char **paths = calloc(n_labels, sizeof(*paths));
		struct content_info info = {.digest = *d, .labels = labels, .n_labels = n_labels};

		if (!paths)
			return -ENOMEM;
		for (size_t i = 0; i < n_labels && r != -ENOMEM; i++)
			if (asprintf(&paths[i], "labels.%s", labels[i].key) < 0)
				r = -ENOMEM;
		if (r != -ENOMEM)
			r = content_update(s, &info, (const char *const *)paths, n_labels, NULL,
			                   ret_err);
		for (size_t i = 0; i < n_labels; i++)
			free(paths[i]);
		if (r < 0)
			return strata_error_prefix(ret_err, r, "label %s", ds);
	}
	return 0;
}

struct membuf {
	char *data;
	size_t len, cap, max;
};

static int membuf_write(const void *buf, size_t len, void *userdata)
{
	struct membuf *m = userdata;

	if (m->len + len > m->max)
		return -EMSGSIZE;
	if (m->len + len > m->cap) {
		size_t cap = MAX(m->cap * 2, m->len + len);
		char *p = realloc(m->data, cap + 1);

		if (!p)
			return -ENOMEM;
		m->data = p;
		m->cap = cap;
	}
	memcpy(m->data + m->len, buf, len);
	m->len += len;
	return 0;
}

/* The config blob: from the store when there, else fetched (verified). */
static int get_config(struct pull_job *job, const struct content_image_descriptor *desc, char **ret,
                      size_t *ret_len, bool *ret_fetched, struct strata_error **ret_err)
{
	_cleanup_(content_reader_freep) struct content_reader *rd = NULL;
	struct membuf m = {.max = CONFIG_SIZE_MAX};
	int r;

	*ret_fetched = false;
	if (content_reader_open(job->img->content, &desc->digest, &rd, NULL) >= 0) {
		int64_t size = content_reader_size(rd);
		ssize_t n;

		if (size > CONFIG_SIZE_MAX)
			return strata_error_set(ret_err, -EMSGSIZE, "config is %" PRId64 " bytes",
			                        size);
		m.data = malloc((size_t)size + 1);
		if (!m.data)
			return -ENOMEM;
		n = content_reader_pread(rd, m.data, (size_t)size, 0);
		if (n != size) {
			free(m.data);
			return strata_error_set_errno(ret_err, n < 0 ? (int)n : -EIO,
			                              "read stored config");
		}
		m.len = (size_t)size;
	} else {
		if (desc->size > CONFIG_SIZE_MAX)
			return strata_error_set(ret_err, -EMSGSIZE, "config is %" PRId64 " bytes",
			                        desc->size);
		r = content_registry_fetch_blob(job->client, job->ref, desc, 0,
		                                CONTENT_REGISTRY_FETCH_VERIFY, membuf_write, &m,
		                                ret_err);
		if (r < 0) {
			free(m.data);
			return strata_error_prefix(ret_err, r, "fetch config");
		}
		if (!m.data && !(m.data = malloc(1)))
			return -ENOMEM;
		*ret_fetched = true;
	}
	m.data[m.len] = '\0';
	*ret = m.data;
	*ret_len = m.len;
	return 0;
}

/* --- the pull -------------------------------------------------------------- */

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct content_label *)a)->key,
	              ((const struct content_label *)b)->key);
}

static void labels_free(struct content_label *l, size_t n)
{
	for (size_t i = 0; l && i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

struct pulled {
	struct content_image_descriptor top;
	char *platform;
	struct strata_digest manifest_digest;
	int64_t size;
};

static int label_set(struct content_label *l, const char *key_prefix, size_t i,
                     const struct strata_digest *d)
{
	char buf[STRATA_DIGEST_STRING_MAX];

	if (asprintf(&l->key, "%s%zu", key_prefix, i) < 0) {
		l->key = NULL;
		return -ENOMEM;
	}
	l->value = strdup(strata_digest_format(d, buf));
	return l->value ? 0 : -ENOMEM;
}

static int store_manifest(struct pull_job *job, const struct strata_digest *d, const char *buf,
                          size_t len, struct strata_error **ret_err)
{
	const struct content_image_manifest *m = job->manifest;
	size_t n = m->n_layers + 1;
	struct content_label *labels = calloc(n, sizeof(*labels));
	int r = 0;

	if (!labels)
		return -ENOMEM;
	labels[0].key = strdup(LABEL_GC_CONFIG);
	labels[0].value = calloc(1, STRATA_DIGEST_STRING_MAX);
	if (!labels[0].key || !labels[0].value)
		r = -ENOMEM;
	else
		strata_digest_format(&m->config.digest, labels[0].value);
	for (size_t i = 0; r >= 0 && i < m->n_layers; i++)
		r = label_set(&labels[i + 1], LABEL_GC_LAYER, i, &m->layers[i].digest);
	if (r >= 0)
		qsort(labels, n, sizeof(*labels), label_cmp);
	if (r >= 0)
		r = store_small_blob(job, d, buf, len, labels, n, ret_err);
	labels_free(labels, n);
	return r;
}

static int store_index(struct pull_job *job, const struct content_image_index *idx,
                       const struct strata_digest *d, const char *buf, size_t len,
                       struct strata_error **ret_err)
{
	size_t n = idx->n_manifests;
	struct content_label *labels = calloc(MAX(n, (size_t)1), sizeof(*labels));
	int r = 0;

	if (!labels)
		return -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = label_set(&labels[i], LABEL_GC_MANIFEST, i, &idx->manifests[i].digest);
	if (r >= 0)
		qsort(labels, n, sizeof(*labels), label_cmp);
	if (r >= 0)
		r = store_small_blob(job, d, buf, len, labels, n, ret_err);
	labels_free(labels, n);
	return r;
}

/* The record's labels naming the layers served lazily (their chains are
 * remote snapshots, whoever made them) and what vouches for them: 0 or 2
 * labels, sorted; labels[1].value is malloc'd. */
static int lazy_record_labels(struct pull_job *job, struct content_label labels[2], size_t *ret_n)
{
	_cleanup_free_ char *list = NULL;
	size_t len = 0;

	*ret_n = 0;
	for (size_t i = 0; i < job->n_layers; i++) {
		struct pull_layer *l = &job->layers[i];
		struct snap_info info = {0};
		bool remote = snap_stat(job->img->snaps, l->key, &info, NULL) >= 0 &&
		              snap_info_label(&info, LABEL_REMOTE);
		char *p;

		snap_info_done(&info);
		if (!remote)
			continue;
		p = realloc(list, len + strlen(l->digest_str) + 2);
		if (!p)
			return -ENOMEM;
		list = p;
		len += (size_t)sprintf(list + len, "%s%s", len ? "," : "", l->digest_str);
	}
	if (!list)
		return 0;
	labels[0] = (struct content_label){(char *)LABEL_LAZY_INTEG, (char *)LAZY_INTEGRITY};
	labels[1] = (struct content_label){(char *)LABEL_LAZY_LAYERS, TAKE_PTR(list)};
	*ret_n = 2;
	return 0;
}

struct pins {
	struct content_store *s;
	struct strata_digest d[8];
	size_t n;
	struct strata_digest *layers;
	size_t n_layers;
};

static void pins_release(struct pins *p)
{
	for (size_t i = 0; i < p->n; i++)
		content_image_unpin(p->s, &p->d[i]);
	for (size_t i = 0; i < p->n_layers; i++)
		content_image_unpin(p->s, &p->layers[i]);
	p->n = p->n_layers = 0;
}

static int pin(struct pins *p, const struct strata_digest *d)
{
	int r = content_image_pin(p->s, d);

	if (r >= 0)
		p->d[p->n++] = *d;
	return r;
}

/*
 * Credentials and transport for lazy reads. The snapshotter reads lazy
 * layers through the daemon's registry client (certs.d, the daemon's docker
 * config.json), which knows nothing of --user or --plain-http. When this
 * pull was given either, the daemon's client is told to send every request
 * for this repository through this pull's client (a route: a reference on
 * the client, in memory only, replaced by the next such pull of the
 * repository). Called before the first lazy Prepare, and also when the lazy
 * chains exist already: pulling again is how a user hands credentials back
 * after a daemon restart. The remote record says a layer was mounted so,
 * and the snapshotter warns at remount that the daemon's own credentials
 * are used from then on.
 */
static int route_lazy_reads(struct pull_job *job, struct strata_error **ret_err)
{
	struct content_registry_client *lazy = snap_lazy_registry(job->img->snaps);
	_cleanup_free_ char *repo = NULL;
	int r;

	if (!job->own_transport || !lazy)
		return 0;
	repo = content_ref_name(job->ref);
	if (!repo)
		return -ENOMEM;
	r = content_registry_client_set_route(lazy, repo, job->client);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "route lazy reads of %s", repo);
	log_info("pull: lazy layers of %s read with the credentials and transport given to this "
	         "pull (kept in memory only)",
	         repo);
	return 0;
}

static int start_layers(struct pull_job *job, const struct content_image_config *cfg,
                        struct strata_error **ret_err)
{
	const struct content_image_manifest *m = job->manifest;
	_cleanup_free_ struct strata_digest *chains = NULL;
	bool any_lazy = false;
	int r;

	job->layers = calloc(MAX(m->n_layers, (size_t)1), sizeof(*job->layers));
	chains = calloc(MAX(m->n_layers, (size_t)1), sizeof(*chains));
	if (!job->layers || !chains)
		return -ENOMEM;
	/* job->n_layers stays 0 until every layer is filled in (below): the
	 * progress thread reads job->layers[0..n_layers) whenever a message
	 * wakes it, and job_message() is called from this loop. Nothing to
	 * close before that: no download has started. */
	for (size_t i = 0; i < m->n_layers; i++)
		job->layers[i].data_fd = -1;
	if (m->n_layers > 0) {
		r = content_image_chain_ids(cfg->diff_ids, cfg->n_diff_ids, chains);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "compute chain IDs");
	}
	for (size_t i = 0; i < m->n_layers; i++) {
		struct pull_layer *l = &job->layers[i];
		struct snap_info info = {0};
		char d[STRATA_DIGEST_STRING_MAX];
		bool have_chain, have_blob, remote_chain;
		const char *toc;

		l->desc = &m->layers[i];
		l->diff_id = cfg->diff_ids[i];
		l->chain_id = chains[i];
		l->data_fd = -1;
		strata_digest_format(&l->desc->digest, l->digest_str);
		proxy_strata_snapshot_key(&l->chain_id, l->key);
		snprintf(l->ingest, sizeof(l->ingest), PROXY_STRATA_INGEST_PREFIX "%s",
		         strata_digest_format(&l->desc->digest, d));
		if (content_image_media_kind(l->desc->media_type) != CONTENT_MEDIA_LAYER)
			return strata_error_set(ret_err, -EOPNOTSUPP,
			                        "layer %s: unsupported media type \"%s\"",
			                        l->digest_str, strempty(l->desc->media_type));
		have_chain = snap_stat(job->img->snaps, l->key, &info, NULL) >= 0 &&
		             info.kind == SNAP_KIND_COMMITTED;
		remote_chain = have_chain && snap_info_label(&info, LABEL_REMOTE);
		snap_info_done(&info);
		have_blob = content_info(job->img->content, &l->desc->digest, NULL, NULL) >= 0;
		toc = content_image_descriptor_annotation(l->desc,
		                                          CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
		l->need_extract = !have_chain;
		/* a lazy chain never needs its blob */
		l->need_download = !have_blob && !remote_chain;
		/* A stored blob unpacks without the network: only layers we would
		 * download are candidates. */
		if (l->need_extract && !have_blob &&
		    job->lazy != STRATA__IMAGES__V1__LAZY_MODE__LAZY_NEVER) {
			if (toc) {
				l->lazy_try = true;
				l->need_download = false;
			} else if (job->lazy == STRATA__IMAGES__V1__LAZY_MODE__LAZY_ALWAYS) {
				return strata_error_set(ret_err, -EOPNOTSUPP,
				                        "layer %s cannot be mounted lazily: no %s "
				                        "annotation: not eStargz",
				                        l->digest_str,
				                        CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
			} else {
				job_message(job,
				            "layer %s is not eStargz (no %s annotation): pulling "
				            "it in full",
				            l->digest_str, CONTENT_ESTARGZ_TOC_DIGEST_LABEL);
			}
		}
		l->state = l->need_extract || l->need_download ? ST(WAITING) : ST(EXISTS);
		l->done = have_blob ? l->desc->size : 0;
		any_lazy |= l->lazy_try || remote_chain;
	}
	if (any_lazy) {
		r = route_lazy_reads(job, ret_err);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&job->lock);
	job->n_layers = m->n_layers;
	job->state_changed = true;
	pthread_mutex_unlock(&job->lock);
	return 0;
}

static int pull_layers(struct pull_job *job, struct strata_error **ret_err)
{
	pthread_t threads[PULL_DOWNLOADERS];
	size_t n_threads = 0, n_dl = 0;
	int r = 0;

	for (size_t i = 0; i < job->n_layers; i++)
		n_dl += job->layers[i].need_download;
	for (; n_threads < MIN(n_dl, (size_t)PULL_DOWNLOADERS); n_threads++) {
		r = -pthread_create(&threads[n_threads], NULL, downloader, job);
		if (r < 0)
			break;
	}
	if (r < 0 && n_threads == 0)
		return strata_error_set_errno(ret_err, r, "start download threads");
	r = 0;
	for (size_t i = 0; r >= 0 && i < job->n_layers; i++)
		if (job->layers[i].need_extract)
			r = unpack_layer(job, i, ret_err);
	if (r < 0)
		job_cancel(job, r);
	for (size_t i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL);
	/* layers that only needed their blob */
	for (size_t i = 0; r >= 0 && i < job->n_layers; i++) {
		struct pull_layer *l = &job->layers[i];
		if (l->need_download && !l->need_extract)
			r = wait_download(job, l, true, ret_err);
	}
	return r;
}

static int pull_image(struct pull_job *job, const Strata__Images__V1__PullRequest *req,
                      const struct content_image_platform *want, struct pulled *ret,
                      struct strata_error **ret_err)
{
	struct content_store *s = job->img->content;
	_cleanup_free_ char *top_buf = NULL, *man_buf = NULL, *cfg_buf = NULL;
	_cleanup_(content_image_index_freep) struct content_image_index *idx = NULL;
	_cleanup_(content_image_config_freep) struct content_image_config *cfg = NULL;
	struct content_image_descriptor mdesc = {0};
	struct pins pins = {.s = s};
	size_t top_len = 0, man_len = 0, cfg_len = 0;
	char d[STRATA_DIGEST_STRING_MAX];
	bool cfg_fetched;
	int r;

	r = content_registry_resolve(job->client, job->ref, &ret->top, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "resolve");
	job_message(job, "resolved to %s (%s)", strata_digest_format(&ret->top.digest, d),
	            strempty(ret->top.media_type));
	r = content_registry_fetch_manifest(job->client, job->ref, &ret->top, &top_buf, &top_len,
	                                    ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "fetch %s", d);

	switch (content_image_media_kind(ret->top.media_type)) {
	case CONTENT_MEDIA_INDEX: {
		const struct content_image_descriptor *sel;

		r = content_image_index_parse(top_buf, top_len, ret->top.media_type, &idx, ret_err);
		if (r >= 0)
			r = content_image_index_select(idx, want, &sel, ret_err);
		if (r >= 0)
			r = content_image_descriptor_copy(sel, &mdesc);
		if (r < 0)
			return strata_error_prefix(ret_err, r, "index %s", d);
		if (sel->platform)
			ret->platform = content_image_platform_format(sel->platform);
		r = content_registry_fetch_manifest(job->client, job->ref, &mdesc, &man_buf,
		                                    &man_len, ret_err);
		if (r < 0) {
			content_image_descriptor_done(&mdesc);
			return strata_error_prefix(ret_err, r, "fetch manifest %s",
			                           strata_digest_format(&mdesc.digest, d));
		}
		job_message(job, "selected %s for %s", strata_digest_format(&mdesc.digest, d),
		            strempty(ret->platform));
		break;
	}
	case CONTENT_MEDIA_MANIFEST:
		r = content_image_descriptor_copy(&ret->top, &mdesc);
		if (r < 0)
			return r;
		man_buf = TAKE_PTR(top_buf);
		man_len = top_len;
		break;
	default:
		return strata_error_set(ret_err, -EOPNOTSUPP, "%s: unsupported media type \"%s\"",
		                        d, strempty(ret->top.media_type));
	}
	ret->manifest_digest = mdesc.digest;
	{
		/* Remote snapshots find the layer through the platform manifest
		 * itself: no tag to move meanwhile, no index to choose from. */
		_cleanup_free_ char *repo = content_ref_name(job->ref);
		if (!repo || asprintf(&job->lazy_ref, "%s@%s", repo,
		                      strata_digest_format(&mdesc.digest, d)) < 0) {
			job->lazy_ref = NULL;
			content_image_descriptor_done(&mdesc);
			return -ENOMEM;
		}
	}
	r = content_image_manifest_parse(man_buf, man_len, mdesc.media_type, &job->manifest,
	                                 ret_err);
	content_image_descriptor_done(&mdesc);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "manifest");

	/* From here on, blobs we store are pinned until the record names them. */
	r = pin(&pins, &ret->top.digest);
	if (r >= 0)
		r = pin(&pins, &ret->manifest_digest);
	if (r >= 0)
		r = pin(&pins, &job->manifest->config.digest);
	pins.layers = calloc(MAX(job->manifest->n_layers, (size_t)1), sizeof(*pins.layers));
	if (!pins.layers)
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < job->manifest->n_layers; i++) {
		r = content_image_pin(s, &job->manifest->layers[i].digest);
		if (r >= 0)
			pins.layers[pins.n_layers++] = job->manifest->layers[i].digest;
	}
	if (r < 0)
		goto out;

	r = get_config(job, &job->manifest->config, &cfg_buf, &cfg_len, &cfg_fetched, ret_err);
	if (r >= 0)
		r = content_image_config_parse(cfg_buf, cfg_len, &cfg, ret_err);
	if (r >= 0 && cfg->n_diff_ids != job->manifest->n_layers)
		r = strata_error_set(ret_err, -EBADMSG, "config lists %zu diff IDs for %zu layers",
		                     cfg->n_diff_ids, job->manifest->n_layers);
	if (r >= 0 && cfg_fetched)
		r = store_small_blob(job, &job->manifest->config.digest, cfg_buf, cfg_len, NULL, 0,
		                     ret_err);
	if (r < 0) {
		(void)strata_error_prefix(ret_err, r, "config %s",
		                          strata_digest_format(&job->manifest->config.digest, d));
		goto out;
	}
	if (!ret->platform)
		ret->platform = content_image_platform_format(&cfg->platform);

	r = start_layers(job, cfg, ret_err);
	if (r >= 0)
		r = pull_layers(job, ret_err);
	if (r >= 0)
		r = store_manifest(job, &ret->manifest_digest, man_buf, man_len, ret_err);
	if (r >= 0 && idx)
		r = store_index(job, idx, &ret->top.digest, top_buf, top_len, ret_err);
	if (r < 0)
		goto out;

	ret->size = (int64_t)man_len + job->manifest->config.size;
	for (size_t i = 0; i < job->manifest->n_layers; i++)
		ret->size += job->manifest->layers[i].size;

	{
		struct content_label lazy_labels[2] = {{0}};
		struct content_image_record rec = {
		        .name = content_ref_format(job->ref),
		        .digest = ret->top.digest,
		        .media_type = ret->top.media_type,
		        .size = ret->size,
		        .platform = ret->platform,
		        .manifest_digest = ret->manifest_digest,
		        .config_digest = job->manifest->config.digest,
		        .n_layers = job->n_layers,
		        .n_chain_ids = job->n_layers,
		};

		rec.layers = calloc(MAX(job->n_layers, (size_t)1), sizeof(*rec.layers));
		rec.chain_ids = calloc(MAX(job->n_layers, (size_t)1), sizeof(*rec.chain_ids));
		if (!rec.name || !rec.layers || !rec.chain_ids)
			r = -ENOMEM;
		for (size_t i = 0; r >= 0 && i < job->n_layers; i++) {
			rec.layers[i] = job->layers[i].desc->digest;
			rec.chain_ids[i] = job->layers[i].chain_id;
		}
		if (r >= 0)
			r = lazy_record_labels(job, lazy_labels, &rec.n_labels);
		rec.labels = lazy_labels;
		if (r >= 0)
			r = content_image_put(s, &rec, ret_err);
		free(lazy_labels[1].value);
		free(rec.name);
		free(rec.layers);
		free(rec.chain_ids);
	}
out:
	pins_release(&pins);
	free(pins.layers);
	return r;
}

static void job_done(struct pull_job *job)
{
	for (size_t i = 0; i < job->n_layers; i++) {
		safe_close(job->layers[i].data_fd);
		strata_error_free(job->layers[i].dl_err);
	}
	free(job->layers);
	for (size_t i = 0; i < job->n_messages; i++)
		free(job->messages[i]);
	content_image_manifest_free(job->manifest);
	content_registry_client_free(job->client);
	content_ref_free(job->ref);
	free(job->source_key);
	free(job->lazy_ref);
	pthread_mutex_destroy(&job->lock);
	pthread_cond_destroy(&job->cond);
	pthread_cond_destroy(&job->progress_cond);
}

int proxy_pull(struct proxy_images *img, struct proxy_call *call,
               const Strata__Images__V1__PullRequest *req, struct strata_error **ret_err)
{
	struct pull_job job = {.img = img, .call = call};
	struct content_image_platform want = {0};
	struct content_registry_options opts = {0};
	struct pulled pulled = {0};
	struct progress_msg final = {0};
	struct content_image_record rec = {0};
	pthread_t progress;
	bool progress_running = false;
	int r;

	job.lazy = req->lazy;
	pthread_mutex_init(&job.lock, NULL);
	pthread_cond_init(&job.cond, NULL);
	{
		pthread_condattr_t a;
		pthread_condattr_init(&a);
		pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
		pthread_cond_init(&job.progress_cond, &a);
		pthread_condattr_destroy(&a);
	}

	r = content_ref_parse(strempty(req->ref), &job.ref, ret_err);
	if (r >= 0)
		r = req->platform && *req->platform
		            ? content_image_platform_parse(req->platform, &want, ret_err)
		            : content_image_platform_default(&want);
	if (r >= 0 && asprintf(&job.source_key, LABEL_SOURCE "%s", job.ref->domain) < 0) {
		job.source_key = NULL;
		r = -ENOMEM;
	}
	if (r >= 0) {
		opts.hosts_dir = img->hosts_dir;
		opts.docker_config_dir = img->docker_config_dir;
		opts.plain_http = req->plain_http;
		opts.user = req->user && *req->user ? req->user : NULL;
		job.own_transport = opts.plain_http || opts.user;
		r = content_registry_client_new(&opts, &job.client, ret_err);
	}
	if (r >= 0) {
		r = -pthread_create(&progress, NULL, progress_thread, &job);
		progress_running = r >= 0;
	}
	if (r >= 0) {
		pthread_rwlock_rdlock(&img->prune_lock);
		r = pull_image(&job, req, &want, &pulled, ret_err);
		pthread_rwlock_unlock(&img->prune_lock);
	}
	if (progress_running) {
		pthread_mutex_lock(&job.lock);
		job.progress_stop = true;
		pthread_cond_signal(&job.progress_cond);
		pthread_mutex_unlock(&job.lock);
		pthread_join(progress, NULL);
	}
	if (r >= 0) {
		_cleanup_free_ char *name = content_ref_format(job.ref);
		Strata__Images__V1__Image *image = NULL;

		r = name ? content_image_get(img->content, name, &rec, ret_err) : -ENOMEM;
		if (r >= 0)
			image = proxy_image_pb_new(&rec);
		pthread_mutex_lock(&job.lock);
		if (r >= 0 && !image)
			r = -ENOMEM;
		if (r >= 0)
			r = progress_msg_fill(&job, &final);
		pthread_mutex_unlock(&job.lock);
		if (r >= 0) {
			final.pb.image = image;
			r = proxy_call_send(call, &final.pb.base);
		}
		proxy_image_pb_free(image);
		progress_msg_done(&final);
		content_image_record_done(&rec);
	}
	if (r < 0 && job.ref)
		(void)strata_error_prefix(ret_err, r, "pull %s", strempty(req->ref));
	content_image_descriptor_done(&pulled.top);
	free(pulled.platform);
	content_image_platform_done(&want);
	job_done(&job);
	return r;
}
