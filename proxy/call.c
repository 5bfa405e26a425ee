/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker side of a call: the proxy_call_* API handlers use, the call's
 * reference counting, and the bounded worker pool that runs handlers.
 *
 * Everything here may run on any thread. State shared with the I/O thread
 * lives under call->lock; whenever a worker changes something the I/O thread
 * must act on (a queued response, the final status, released request window)
 * it posts the call on the server's wake queue, at most once until the I/O
 * thread has looked at it (wake_pending).
 */
#include <signal.h>
#include <string.h>

#include "proxy-internal.h"

struct proxy_call *proxy_call_new(struct proxy_server *server, struct proxy_conn *conn,
                                  int32_t stream_id)
{
	struct proxy_call *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	atomic_init(&call->refs, 1);
	call->server = server;
	call->conn = conn;
	call->stream_id = stream_id;
	(void)pthread_mutex_init(&call->lock, NULL);
	(void)pthread_cond_init(&call->cond, NULL);
	return call;
}

struct proxy_call *proxy_call_ref(struct proxy_call *call)
{
	atomic_fetch_add(&call->refs, 1);
	return call;
}

void proxy_buf_free_list(struct proxy_buf *b)
{
	while (b) {
		struct proxy_buf *next = b->next;
		free(b);
		b = next;
	}
}

struct proxy_buf *proxy_buf_get(struct proxy_server *s, size_t len)
{
	struct proxy_buf *b = NULL;
	size_t cap = 0;

	if (len >= PROXY_SPARE_MIN && len <= PROXY_SPARE_CAP) {
		(void)pthread_mutex_lock(&s->buf_lock);
		if (s->n_spare > 0)
			b = s->spare[--s->n_spare];
		(void)pthread_mutex_unlock(&s->buf_lock);
		cap = PROXY_SPARE_CAP;
	}
	if (!b)
		b = malloc(sizeof(*b) + MAX(len, cap));
	if (!b)
		return NULL;
	b->next = NULL;
	b->len = len;
	b->cap = cap;
	return b;
}

void proxy_buf_put(struct proxy_server *s, struct proxy_buf *b)
{
	if (b && b->cap == PROXY_SPARE_CAP) {
		(void)pthread_mutex_lock(&s->buf_lock);
		if (s->n_spare < PROXY_SPARES) {
			s->spare[s->n_spare++] = b;
			b = NULL;
		}
		(void)pthread_mutex_unlock(&s->buf_lock);
	}
	free(b);
}

struct proxy_call *proxy_call_unref(struct proxy_call *call)
{
	if (!call || atomic_fetch_sub(&call->refs, 1) != 1)
		return NULL;

	free(call->path);
	for (size_t i = 0; i < call->n_meta; i++) {
		free(call->meta[i].key);
		free(call->meta[i].value);
	}
	free(call->meta);
	free(call->content_type);
	free(call->timeout);
	free(call->request);
	free(call->frame_msg);
	proxy_buf_free_list(call->out_head);
	proxy_buf_free_list(call->in_head);
	free(call->message);
	(void)pthread_mutex_destroy(&call->lock);
	(void)pthread_cond_destroy(&call->cond);
	free(call);
	return NULL;
}

void proxy_call_post_wake(struct proxy_call *call)
{
	struct proxy_server *s = call->server;

	if (proxy_server_progress_now(call))
		return;

	(void)pthread_mutex_lock(&s->wake_lock);
	if (s->n_wake == s->wake_cap) {
		size_t cap = s->wake_cap ? s->wake_cap * 2 : 64;
		struct proxy_call **w = realloc(s->wake, cap * sizeof(*w));
		if (!w) {
			/* Cannot happen in practice; the I/O thread would miss this
			 * call until its next event, so at least keep it alive. */
			(void)pthread_mutex_unlock(&s->wake_lock);
			return;
		}
		s->wake = w;
		s->wake_cap = cap;
	}
	s->wake[s->n_wake++] = proxy_call_ref(call);
	(void)pthread_mutex_unlock(&s->wake_lock);
	proxy_server_kick(s);
}

/* With call->lock held: whether the caller must post a wake after unlocking. */
static bool mark_wake_locked(struct proxy_call *call)
{
	if (call->wake_pending)
		return false;
	call->wake_pending = true;
	return true;
}

int proxy_call_send(struct proxy_call *call, const ProtobufCMessage *msg)
{
	struct proxy_buf *b;
	size_t size;
	bool post;
	int r = 0;

	if (!call || !msg)
		return -EINVAL;
	size = protobuf_c_message_get_packed_size(msg);
	if (size > PROXY_MAX_MESSAGE_SIZE)
		return -EMSGSIZE;
	b = malloc(sizeof(*b) + 5 + size);
	if (!b)
		return -ENOMEM;
	b->next = NULL;
	b->len = 5 + size;
	b->cap = 0;
	b->data[0] = 0; /* not compressed */
	b->data[1] = (uint8_t)(size >> 24);
	b->data[2] = (uint8_t)(size >> 16);
	b->data[3] = (uint8_t)(size >> 8);
	b->data[4] = (uint8_t)size;
	(void)protobuf_c_message_pack(msg, b->data + 5);

	(void)pthread_mutex_lock(&call->lock);
	while (call->out_bytes >= PROXY_OUT_LIMIT && !call->cancelled && !call->finished)
		(void)pthread_cond_wait(&call->cond, &call->lock);
	if (call->cancelled)
		r = call->cancelled;
	else if (call->finished || (call->method->kind == PROXY_UNARY && call->n_sent > 0))
		r = -EINVAL;
	if (r < 0) {
		(void)pthread_mutex_unlock(&call->lock);
		free(b);
		return r;
	}
	if (call->out_tail)
		call->out_tail->next = b;
	else
		call->out_head = b;
	call->out_tail = b;
	call->out_bytes += b->len;
	call->n_sent++;
	/* A unary response goes out with its status when the handler returns
	 * (run_call finishes the call): one wake of the I/O thread and one
	 * write to the client instead of two each. */
	post = call->method->kind != PROXY_UNARY && mark_wake_locked(call);
	(void)pthread_mutex_unlock(&call->lock);

	if (post)
		proxy_call_post_wake(call);
	return 0;
}

/* Next complete request message of a bidi call: 1 and *ret, 0 at EOF, or
 * the cancellation error. */
static int recv_buf(struct proxy_call *call, struct proxy_buf **ret)
{
	struct proxy_buf *b = NULL;
	bool post = false;
	int r = 0;

	(void)pthread_mutex_lock(&call->lock);
	while (!call->in_head && !call->in_eof && !call->cancelled && !call->finished)
		(void)pthread_cond_wait(&call->cond, &call->lock);
	if (call->cancelled) {
		r = call->cancelled;
	} else if (call->in_head && !call->finished) {
		b = call->in_head;
		call->in_head = b->next;
		if (!call->in_head)
			call->in_tail = NULL;
		call->in_bytes -= b->len;
		if (call->unconsumed > 0 && call->in_bytes < PROXY_IN_LIMIT)
			post = mark_wake_locked(call);
	}
	(void)pthread_mutex_unlock(&call->lock);
	if (post)
		proxy_call_post_wake(call);
	*ret = b;
	return b ? 1 : r;
}

static void finish_undecodable(struct proxy_call *call)
{
	proxy_call_finish_status(call, GRPC_INTERNAL,
	                         "grpc: failed to unmarshal the received message");
}

int proxy_call_recv(struct proxy_call *call, ProtobufCMessage **ret)
{
	struct proxy_buf *b;
	ProtobufCMessage *msg;
	int r;

	r = recv_buf(call, &b);
	if (r <= 0)
		return r;
	msg = protobuf_c_message_unpack(call->method->request, NULL, b->len, b->data);
	proxy_buf_put(call->server, b);
	if (!msg) {
		finish_undecodable(call);
		return -EBADMSG;
	}
	*ret = msg;
	return 1;
}

/* --- decoding without copying a large bytes field --- */

/* Bytes of the varint at p (at most len), 0 if malformed. */
static size_t varint_get(const uint8_t *p, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	for (size_t i = 0; i < len && i < 10; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*ret = v;
			return i + 1;
		}
	}
	return 0;
}

/* Find the length-delimited top-level field `field` in a message: where its
 * key starts, where its payload starts and where it ends. Returns how often
 * it occurs, or -EBADMSG for anything unusual (malformed input, the field with
 * another wire type, groups): the caller then leaves decoding to protobuf-c. */
static int find_bytes_field(const uint8_t *p, size_t len, uint32_t field, size_t *ret_key,
                            size_t *ret_data, size_t *ret_end)
{
	size_t off = 0;
	int n = 0;

	while (off < len) {
		size_t key = off, k, skip;
		uint64_t tag, v;

		k = varint_get(p + off, len - off, &tag);
		if (k == 0)
			return -EBADMSG;
		off += k;
		switch (tag & 7) {
		case 0: /* varint */
			skip = varint_get(p + off, len - off, &v);
			if (skip == 0)
				return -EBADMSG;
			break;
		case 1: /* 64-bit */
			skip = 8;
			break;
		case 5: /* 32-bit */
			skip = 4;
			break;
		case 2: /* length-delimited */
			k = varint_get(p + off, len - off, &v);
			if (k == 0 || v > len - off - k)
				return -EBADMSG;
			off += k;
			skip = (size_t)v;
			if (tag >> 3 == field) {
				*ret_key = key;
				*ret_data = off;
				*ret_end = off + skip;
				n++;
			}
			break;
		default:
			return -EBADMSG;
		}
		if (tag >> 3 == field && (tag & 7) != 2)
			return -EBADMSG;
		if (skip > len - off)
			return -EBADMSG;
		off += skip;
	}
	return n;
}

/* Unpack b; when the message has the bytes field `field` exactly once, decode
 * the rest and point the field into b (*ret_field, NULL otherwise). */
static ProtobufCMessage *unpack_borrowing(const ProtobufCMessageDescriptor *desc,
                                          const struct proxy_buf *b, uint32_t field,
                                          ProtobufCBinaryData **ret_field)
{
	const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(desc, field);
	_cleanup_free_ uint8_t *rest = NULL;
	size_t key, data, end, rest_len;
	ProtobufCMessage *msg;
	ProtobufCBinaryData *bd;

	*ret_field = NULL;
	if (!fd || fd->type != PROTOBUF_C_TYPE_BYTES || fd->label == PROTOBUF_C_LABEL_REPEATED ||
	    (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
	    find_bytes_field(b->data, b->len, field, &key, &data, &end) != 1)
		return protobuf_c_message_unpack(desc, NULL, b->len, b->data);

	/* Everything but the field: a few bytes (action, offset, ref, ...). */
	rest_len = b->len - (end - key);
	rest = malloc(MAX(rest_len, (size_t)1));
	if (!rest)
		return NULL;
	memcpy(rest, b->data, key);
	memcpy(rest + key, b->data + end, b->len - end);
	msg = protobuf_c_message_unpack(desc, NULL, rest_len, rest);
	if (!msg)
		return NULL;
	bd = (ProtobufCBinaryData *)((uint8_t *)msg + fd->offset);
	bd->data = (uint8_t *)b->data + data;
	bd->len = end - data;
	if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->quantifier_offset)
		*(protobuf_c_boolean *)((uint8_t *)msg + fd->quantifier_offset) = 1;
	*ret_field = bd;
	return msg;
}

int proxy_call_recv_msg(struct proxy_call *call, uint32_t borrow_field, struct proxy_msg *ret)
{
	ProtobufCBinaryData *field;
	struct proxy_buf *b;
	ProtobufCMessage *msg;
	int r;

	*ret = (struct proxy_msg){.server = call->server};
	r = recv_buf(call, &b);
	if (r <= 0)
		return r;
	msg = unpack_borrowing(call->method->request, b, borrow_field, &field);
	if (!msg) {
		proxy_buf_put(call->server, b);
		finish_undecodable(call);
		return -EBADMSG;
	}
	ret->msg = msg;
	if (field) {
		ret->buf = b;
		ret->borrowed = field;
	} else {
		proxy_buf_put(call->server, b);
	}
	return 1;
}

void proxy_msg_done(struct proxy_msg *m)
{
	/* The borrowed bytes are b's, not protobuf-c's to free. */
	if (m->borrowed)
		*m->borrowed = (ProtobufCBinaryData){0};
	if (m->msg)
		protobuf_c_message_free_unpacked(m->msg, NULL);
	if (m->buf)
		proxy_buf_put(m->server, m->buf);
	*m = (struct proxy_msg){0};
}

void proxy_call_finish_status(struct proxy_call *call, enum grpc_status status, const char *message)
{
	bool post;

	(void)pthread_mutex_lock(&call->lock);
	if (call->finished) {
		(void)pthread_mutex_unlock(&call->lock);
		return;
	}
	call->finished = true;
	call->status = status;
	call->message = message && *message ? strdup(message) : NULL;
	(void)pthread_cond_broadcast(&call->cond);
	post = mark_wake_locked(call);
	(void)pthread_mutex_unlock(&call->lock);
	if (post)
		proxy_call_post_wake(call);
}

void proxy_call_finish(struct proxy_call *call, int err, const char *message)
{
	if (err == 0) {
		proxy_call_finish_status(call, GRPC_OK, message);
		return;
	}
	proxy_call_finish_status(call, strata_errno_to_grpc(err),
	                         message ? message : strerror(err < 0 ? -err : err));
}

int proxy_call_cancelled(struct proxy_call *call)
{
	int r;

	(void)pthread_mutex_lock(&call->lock);
	r = call->cancelled;
	(void)pthread_mutex_unlock(&call->lock);
	return r;
}

uint64_t proxy_call_deadline(const struct proxy_call *call)
{
	return call->deadline_usec;
}

const char *proxy_call_metadata(const struct proxy_call *call, const char *key)
{
	for (size_t i = 0; i < call->n_meta; i++)
		if (streq(call->meta[i].key, key))
			return call->meta[i].value;
	return NULL;
}

const char *proxy_call_path(const struct proxy_call *call)
{
	return call->path;
}

void proxy_call_on_cancel(struct proxy_call *call, void (*fn)(void *userdata), void *userdata)
{
	(void)pthread_mutex_lock(&call->lock);
	if (fn && call->cancelled) {
		fn(userdata);
		fn = NULL;
		userdata = NULL;
	}
	call->cancel_fn = fn;
	call->cancel_userdata = userdata;
	(void)pthread_mutex_unlock(&call->lock);
}

void proxy_call_abort(struct proxy_call *call, int err, enum grpc_status status,
                      const char *message)
{
	(void)pthread_mutex_lock(&call->lock);
	if (!call->cancelled)
		call->cancelled = err;
	if (status != GRPC_OK && !call->finished) {
		struct proxy_buf *keep = NULL;

		call->finished = true;
		call->status = status;
		call->message = message ? strdup(message) : NULL;
		/* A message already partly handed to nghttp2 must be completed,
		 * or the client would parse the trailers as message bytes. */
		if (call->out_head && call->out_off > 0) {
			keep = call->out_head;
			call->out_head = keep->next;
			keep->next = NULL;
		}
		proxy_buf_free_list(call->out_head);
		call->out_head = call->out_tail = keep;
		call->out_bytes = keep ? keep->len - call->out_off : 0;
		if (!keep)
			call->out_off = 0;
	}
	(void)pthread_cond_broadcast(&call->cond);
	if (call->cancel_fn) {
		void (*fn)(void *) = call->cancel_fn;
		call->cancel_fn = NULL;
		fn(call->cancel_userdata);
	}
	(void)pthread_mutex_unlock(&call->lock);
}

/* --- worker pool --- */

static void run_call(struct proxy_call *call)
{
	_cleanup_error_ struct strata_error *err = NULL;
	const struct proxy_method *m = call->method;
	ProtobufCMessage *req = NULL;
	double t0;
	bool finished;
	unsigned n_sent;
	int r;

	if (proxy_call_cancelled(call))
		return;
	if (m->kind != PROXY_BIDI_STREAM) {
		req = protobuf_c_message_unpack(m->request, NULL, call->request->len,
		                                call->request->data);
		if (!req) {
			/* What grpc-go answers for an undecodable request. */
			proxy_call_finish_status(call, GRPC_INTERNAL,
			                         "grpc: error unmarshalling request: invalid "
			                         "protobuf encoding");
			return;
		}
	}

	t0 = log_now_ms();
	r = m->handler(call, req, call->service->userdata, &err);
	/* the timeline of a container start, at debug level */
	log_debug("%s: handled in %.2f ms", call->path, log_now_ms() - t0);
	if (req)
		protobuf_c_message_free_unpacked(req, NULL);

	(void)pthread_mutex_lock(&call->lock);
	finished = call->finished;
	n_sent = call->n_sent;
	(void)pthread_mutex_unlock(&call->lock);
	if (finished)
		return;
	if (r < 0) {
		log_debug("%s: %s", call->path, err ? strata_error_message(err) : strerror(-r));
		proxy_call_finish(call, r, err ? strata_error_message(err) : NULL);
	} else if (m->kind == PROXY_UNARY && n_sent == 0) {
		proxy_call_finish_status(call, GRPC_INTERNAL, "handler sent no response");
	} else {
		proxy_call_finish_status(call, GRPC_OK, NULL);
	}
}

static void *worker_main(void *arg)
{
	struct proxy_pool *pool = arg;

	(void)pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct proxy_call *call;

		while (pool->q_len == 0 && !pool->shutdown) {
			pool->n_idle++;
			(void)pthread_cond_wait(&pool->cond, &pool->lock);
			pool->n_idle--;
		}
		if (pool->q_len == 0)
			break;
		call = pool->queue[pool->q_head];
		pool->q_head = (pool->q_head + 1) % pool->q_cap;
		pool->q_len--;
		pool->n_busy++;
		(void)pthread_mutex_unlock(&pool->lock);

		run_call(call);
		(void)proxy_call_unref(call);

		(void)pthread_mutex_lock(&pool->lock);
		pool->n_busy--;
	}
	(void)pthread_mutex_unlock(&pool->lock);
	return NULL;
}

int proxy_pool_init(struct proxy_pool *pool, size_t max_threads)
{
	*pool = (struct proxy_pool){.max_threads = max_threads};
	pool->threads = calloc(max_threads, sizeof(pthread_t));
	if (!pool->threads)
		return -ENOMEM;
	(void)pthread_mutex_init(&pool->lock, NULL);
	(void)pthread_cond_init(&pool->cond, NULL);
	(void)pthread_cond_init(&pool->idle_cond, NULL);
	return 0;
}

static int queue_grow(struct proxy_pool *pool)
{
	size_t cap = pool->q_cap ? pool->q_cap * 2 : 64;
	struct proxy_call **q = malloc(cap * sizeof(*q));

	if (!q)
		return -ENOMEM;
	for (size_t i = 0; i < pool->q_len; i++)
		q[i] = pool->queue[(pool->q_head + i) % pool->q_cap];
	free(pool->queue);
	pool->queue = q;
	pool->q_cap = cap;
	pool->q_head = 0;
	return 0;
}

/* Takes a reference to call for the worker. */
int proxy_pool_submit(struct proxy_pool *pool, struct proxy_call *call)
{
	bool signal = false;
	int r = 0;

	(void)pthread_mutex_lock(&pool->lock);
	if (pool->shutdown) {
		r = -ESHUTDOWN;
		goto out;
	}
	if (pool->q_len == pool->q_cap) {
		r = queue_grow(pool);
		if (r < 0)
			goto out;
	}
	pool->queue[(pool->q_head + pool->q_len) % pool->q_cap] = proxy_call_ref(call);
	pool->q_len++;
	/* Grow the pool only when nobody is idle to take the job. */
	if (pool->n_idle >= pool->q_len) {
		/* Signalled after unlocking: the worker does not wake up only to
		 * wait for our lock. */
		signal = true;
	} else if (pool->n_threads < pool->max_threads) {
		sigset_t all, old;

		/* Workers never take signals: the daemon's handlers stay on the
		 * main thread. */
		(void)sigfillset(&all);
		(void)pthread_sigmask(SIG_SETMASK, &all, &old);
		if (pthread_create(&pool->threads[pool->n_threads], NULL, worker_main, pool) == 0)
			pool->n_threads++;
		(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
		signal = true;
	} else {
		signal = true;
	}
out:
	(void)pthread_mutex_unlock(&pool->lock);
	if (signal)
		(void)pthread_cond_signal(&pool->cond);
	return r;
}

size_t proxy_pool_busy(struct proxy_pool *pool)
{
	size_t n;

	(void)pthread_mutex_lock(&pool->lock);
	n = pool->n_busy + pool->q_len;
	(void)pthread_mutex_unlock(&pool->lock);
	return n;
}

/* Runs what is queued (cancelled calls return at once), then joins. */
void proxy_pool_shutdown(struct proxy_pool *pool)
{
	if (!pool->threads)
		return;
	(void)pthread_mutex_lock(&pool->lock);
	pool->shutdown = true;
	(void)pthread_cond_broadcast(&pool->cond);
	(void)pthread_mutex_unlock(&pool->lock);
	for (size_t i = 0; i < pool->n_threads; i++)
		(void)pthread_join(pool->threads[i], NULL);
	for (size_t i = 0; i < pool->q_len; i++)
		(void)proxy_call_unref(pool->queue[(pool->q_head + i) % pool->q_cap]);
	free(pool->queue);
	free(pool->threads);
	(void)pthread_mutex_destroy(&pool->lock);
	(void)pthread_cond_destroy(&pool->cond);
	(void)pthread_cond_destroy(&pool->idle_cond);
	*pool = (struct proxy_pool){0};
}
