/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC server's I/O thread: epoll, the HTTP/2 connections (nghttp2,
 * h2c with prior knowledge), gRPC message framing, and handing calls to the
 * worker pool and their responses back to the wire.
 *
 * Threading model
 *   - One I/O thread (the one in proxy_server_run) owns the listening socket,
 *     every connection and every nghttp2_session. nghttp2 is not thread-safe:
 *     whoever touches a session holds the server's io_lock. The I/O thread
 *     holds it except while it sleeps in epoll_wait; a worker that posts its
 *     call while the I/O thread sleeps takes it (trylock, never waiting) and
 *     submits and sends that call's response itself (proxy_server_progress_
 *     now): a unary call then costs one thread switch each way, not two on
 *     the way back. Workers never accept, read, free a connection or change
 *     its epoll registration; what they cannot finish they leave marked
 *     dirty for the I/O thread and kick it.
 *   - Handlers run on a bounded worker pool (call.c). They may block (fsync,
 *     directory walks, mounts); the I/O thread never does.
 *   - A request becomes a struct proxy_call. Unary and server-streaming calls
 *     are dispatched once their single request message is complete; bidi
 *     calls at once, their request messages queued to the handler in order
 *     (proxy_call_recv).
 *   - Handlers queue responses and the final status on the call (under its
 *     lock) and post it: pushed out at once as above, or put on the server's
 *     wake queue + eventfd when the I/O thread is busy; it then submits
 *     HEADERS, resumes the deferred data provider, or sends trailers. A unary
 *     response is posted only with its status (one write to the client).
 *   - Flow control, outbound: the data provider copies from the call's queue
 *     and returns NGHTTP2_ERR_DEFERRED when it is empty; proxy_call_send()
 *     blocks once PROXY_OUT_LIMIT bytes are queued, so a client that stops
 *     reading stalls only its own producer.
 *     Inbound: the connection window is returned at once (one stream can
 *     never starve the others); the stream window is withheld while more
 *     than PROXY_IN_LIMIT bytes of complete messages wait for the handler.
 *   - Cancellation: RST_STREAM, a disconnect, an expired grpc-timeout or the
 *     end of the shutdown drain mark the call cancelled, wake its handler and
 *     run its cancel callback.
 *   - Shutdown: proxy_server_stop() writes the eventfd; the loop closes the
 *     listener, sends GOAWAY, lets in-flight calls finish (up to the drain
 *     timeout), closes connections and joins the workers.
 */
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "proxy-internal.h"

/* Stop reading from a connection while this much output is unsent. */
#define CONN_OUT_HIGH (1024 * 1024)

static int tag_listen, tag_wake;

static const char *const default_path_unknown = "";

/* --- connection output --- */

static void conn_arm(struct proxy_conn *c)
{
	uint32_t ev = (c->reading ? EPOLLIN : 0) | (c->want_out ? EPOLLOUT : 0);
	struct epoll_event e = {.events = ev, .data.ptr = c};

	if (ev == c->epoll_events)
		return;
	if (epoll_ctl(c->server->epoll_fd, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->epoll_events = ev;
}

static int conn_out_append(struct proxy_conn *c, const uint8_t *data, size_t len)
{
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = MAX(c->out_cap * 2, c->out_len + len);
		uint8_t *p;

		cap = MAX(cap, (size_t)64 * 1024);
		p = realloc(c->out, cap);
		if (!p)
			return -ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static void conn_free(struct proxy_conn *c);

/* Move nghttp2's output to the socket. Returns -1 if the connection was freed. */
static int conn_flush(struct proxy_conn *c)
{
	for (;;) {
		while (c->out_len - c->out_off < CONN_OUT_HIGH) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(c->session, &data);

			if (n < 0) {
				log_debug("nghttp2 send: %s", nghttp2_strerror((int)n));
				conn_free(c);
				return -1;
			}
			if (n == 0)
				break;
			if (conn_out_append(c, data, (size_t)n) < 0) {
				conn_free(c);
				return -1;
			}
		}
		if (c->out_off == c->out_len)
			break;

		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			log_debug_errno(-errno, "connection write");
			conn_free(c);
			return -1;
		}
		c->out_off += (size_t)w;
		if (c->out_off < c->out_len)
			break; /* the socket buffer is full */
	}

	bool pending = c->out_off < c->out_len;
	c->want_out = pending;
	/* Back-pressure: a peer that does not read does not get to write. */
	c->reading = !pending || c->out_len - c->out_off < CONN_OUT_HIGH;
	if (!pending && !nghttp2_session_want_read(c->session) &&
	    !nghttp2_session_want_write(c->session)) {
		conn_free(c);
		return -1;
	}
	if (!pending && c->server->stopping && c->n_calls == 0 &&
	    !nghttp2_session_want_write(c->session)) {
		conn_free(c);
		return -1;
	}
	conn_arm(c);
	c->dirty = false;
	return 0;
}

/* --- responses --- */

#define NV(n, v)                                                                               \
	{                                                                                      \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE \
	}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data);

static int submit_status(struct proxy_call *call, bool trailers_only)
{
	_cleanup_free_ char *msg = NULL;
	char code[16];
	nghttp2_nv nv[4];
	size_t n = 0;

	(void)snprintf(code, sizeof(code), "%d", (int)call->status);
	if (trailers_only) {
		nv[n++] = (nghttp2_nv)NV(":status", "200");
		nv[n++] = (nghttp2_nv)NV("content-type", "application/grpc");
	}
	nv[n++] = (nghttp2_nv)NV("grpc-status", code);
	if (call->message) {
		msg = proxy_percent_encode(call->message);
		if (msg)
			nv[n++] = (nghttp2_nv)NV("grpc-message", msg);
	}
	if (trailers_only)
		return nghttp2_submit_response(call->conn->session, call->stream_id, nv, n, NULL);
	return nghttp2_submit_trailer(call->conn->session, call->stream_id, nv, n);
}

/* Push whatever the worker produced into nghttp2 (I/O thread). */
static void call_progress(struct proxy_call *call)
{
	struct proxy_conn *c = call->conn;
	bool finished, have_out;

	if (!c || call->io_state == CALL_IO_DONE)
		return;
	(void)pthread_mutex_lock(&call->lock);
	finished = call->finished;
	have_out = call->out_head != NULL;
	(void)pthread_mutex_unlock(&call->lock);

	/* status and message are immutable once finished is set. */
	if (call->io_state == CALL_IO_IDLE) {
		if (finished && !have_out) {
			if (submit_status(call, true) == 0)
				call->io_state = CALL_IO_DONE;
		} else if (finished || have_out) {
			nghttp2_nv hdrs[] = {NV(":status", "200"),
			                     NV("content-type", "application/grpc")};
			nghttp2_data_provider prd = {.source.ptr = call,
			                             .read_callback = data_read_cb};

			if (nghttp2_submit_response(c->session, call->stream_id, hdrs,
			                            ELEMENTSOF(hdrs), &prd) == 0)
				call->io_state = CALL_IO_STREAMING;
		}
	} else if (call->data_deferred) {
		call->data_deferred = false;
		(void)nghttp2_session_resume_data(c->session, call->stream_id);
	}
	c->dirty = true;
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
	struct proxy_call *call = source->ptr;
	size_t copied = 0;
	bool eof;

	(void)pthread_mutex_lock(&call->lock);
	while (copied < length && call->out_head) {
		struct proxy_buf *b = call->out_head;
		size_t n = MIN(b->len - call->out_off, length - copied);

		memcpy(buf + copied, b->data + call->out_off, n);
		copied += n;
		call->out_off += n;
		call->out_bytes -= n;
		if (call->out_off == b->len) {
			call->out_head = b->next;
			if (!call->out_head)
				call->out_tail = NULL;
			call->out_off = 0;
			free(b);
		}
	}
	if (copied > 0 && call->out_bytes < PROXY_OUT_LIMIT)
		(void)pthread_cond_broadcast(&call->cond);
	eof = call->finished && !call->out_head;
	(void)pthread_mutex_unlock(&call->lock);

	if (copied == 0 && !eof) {
		call->data_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (eof) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (submit_status(call, false) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		call->io_state = CALL_IO_DONE;
	}
	return (ssize_t)copied;
}

/* The I/O thread answers a call itself (bad request, deadline, ...). */
static void call_reject(struct proxy_call *call, int err, enum grpc_status status,
                        const char *message)
{
	call->rejected = true;
	proxy_call_abort(call, err, status, message);
	call_progress(call);
}

static void call_reject_http(struct proxy_call *call, const char *http_status)
{
	nghttp2_nv nv[] = {NV(":status", http_status)};

	call->rejected = true;
	proxy_call_abort(call, -ECANCELED, GRPC_OK, NULL);
	if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, 1, NULL) == 0)
		call->io_state = CALL_IO_DONE;
	call->conn->dirty = true;
}

/* --- requests --- */

static void deadline_link(struct proxy_server *s, struct proxy_call *call)
{
	call->dl_prev = NULL;
	call->dl_next = s->deadlines;
	if (s->deadlines)
		s->deadlines->dl_prev = call;
	s->deadlines = call;
	call->in_deadline_list = true;
}

static void deadline_unlink(struct proxy_server *s, struct proxy_call *call)
{
	if (!call->in_deadline_list)
		return;
	if (call->dl_prev)
		call->dl_prev->dl_next = call->dl_next;
	else
		s->deadlines = call->dl_next;
	if (call->dl_next)
		call->dl_next->dl_prev = call->dl_prev;
	call->in_deadline_list = false;
}

static void call_dispatch(struct proxy_call *call)
{
	int r;

	call->dispatched = true;
	r = proxy_pool_submit(&call->server->pool, call);
	if (r < 0)
		call_reject(call, -ECANCELED, GRPC_UNAVAILABLE, "server is shutting down");
}

static const struct proxy_service *find_service(const struct proxy_server *s, const char *name,
                                                size_t len)
{
	for (size_t i = 0; i < s->n_services; i++)
		if (strlen(s->services[i].name) == len &&
		    memcmp(s->services[i].name, name, len) == 0)
			return &s->services[i];
	return NULL;
}

static bool content_type_ok(const char *ct)
{
	static const char grpc[] = "application/grpc";

	if (!ct || strncmp(ct, grpc, sizeof(grpc) - 1) != 0)
		return false;
	ct += sizeof(grpc) - 1;
	return *ct == '\0' || *ct == '+' || *ct == ';';
}

/* Request HEADERS complete: validate and route. */
static void request_start(struct proxy_call *call)
{
	struct proxy_server *s = call->server;
	const char *path = call->path ? call->path : default_path_unknown;
	const char *slash;
	char msg[512];

	if (call->bad_method) {
		call_reject_http(call, "405");
		return;
	}
	if (!content_type_ok(call->content_type)) {
		call_reject_http(call, "415");
		return;
	}
	slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
	if (!slash) {
		(void)snprintf(msg, sizeof(msg), "malformed method name: \"%s\"", path);
		call_reject(call, -ECANCELED, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	call->service = find_service(s, path + 1, (size_t)(slash - path - 1));
	if (!call->service) {
		(void)snprintf(msg, sizeof(msg), "unknown service %.*s", (int)(slash - path - 1),
		               path + 1);
		call_reject(call, -ECANCELED, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	for (size_t i = 0; i < call->service->n_methods; i++)
		if (streq(call->service->methods[i].name, slash + 1)) {
			call->method = &call->service->methods[i];
			break;
		}
	if (!call->method) {
		(void)snprintf(msg, sizeof(msg), "unknown method %s for service %s", slash + 1,
		               call->service->name);
		call_reject(call, -ECANCELED, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (call->timeout) {
		uint64_t usec;

		if (proxy_parse_timeout(call->timeout, &usec) < 0) {
			call_reject(call, -ECANCELED, GRPC_INTERNAL, "malformed grpc-timeout");
			return;
		}
		call->deadline_usec = proxy_now_usec() + usec;
		deadline_link(s, call);
	}
	if (call->method->kind == PROXY_BIDI_STREAM)
		call_dispatch(call);
}

static void request_message(struct proxy_call *call, struct proxy_buf *b)
{
	if (call->method->kind != PROXY_BIDI_STREAM) {
		/* Unary and server-streaming take the first message; grpc-go
		 * reads no further either. */
		if (call->dispatched) {
			free(b);
			return;
		}
		call->request = b;
		call_dispatch(call);
		return;
	}
	(void)pthread_mutex_lock(&call->lock);
	if (call->in_tail)
		call->in_tail->next = b;
	else
		call->in_head = b;
	call->in_tail = b;
	call->in_bytes += b->len;
	(void)pthread_cond_broadcast(&call->cond);
	(void)pthread_mutex_unlock(&call->lock);
}

/* Split DATA payload into gRPC messages: 1 byte flags, 4 bytes length. */
static void request_data(struct proxy_call *call, const uint8_t *data, size_t len)
{
	char msg[128];

	while (len > 0 && !call->rejected) {
		if (call->frame_hdr_len < 5) {
			size_t n = MIN(5 - call->frame_hdr_len, len);
			uint32_t mlen;

			memcpy(call->frame_hdr + call->frame_hdr_len, data, n);
			call->frame_hdr_len += n;
			data += n;
			len -= n;
			if (call->frame_hdr_len < 5)
				return;
			if (call->frame_hdr[0] & 1) {
				call_reject(call, -ECANCELED, GRPC_UNIMPLEMENTED,
				            "grpc: compressed messages are not supported");
				return;
			}
			mlen = (uint32_t)call->frame_hdr[1] << 24 |
			       (uint32_t)call->frame_hdr[2] << 16 |
			       (uint32_t)call->frame_hdr[3] << 8 | call->frame_hdr[4];
			if (mlen > PROXY_MAX_MESSAGE_SIZE) {
				(void)snprintf(msg, sizeof(msg),
				               "grpc: received message larger than max (%u vs. %u)",
				               mlen, PROXY_MAX_MESSAGE_SIZE);
				call_reject(call, -ECANCELED, GRPC_RESOURCE_EXHAUSTED, msg);
				return;
			}
			call->frame_msg = proxy_buf_get(call->server, mlen);
			if (!call->frame_msg) {
				call_reject(call, -ECANCELED, GRPC_RESOURCE_EXHAUSTED,
				            "out of memory");
				return;
			}
			call->frame_msg_have = 0;
		} else {
			size_t n = MIN(call->frame_msg->len - call->frame_msg_have, len);

			memcpy(call->frame_msg->data + call->frame_msg_have, data, n);
			call->frame_msg_have += n;
			data += n;
			len -= n;
		}
		if (call->frame_msg_have == call->frame_msg->len) {
			struct proxy_buf *b = TAKE_PTR(call->frame_msg);

			call->frame_hdr_len = 0;
			request_message(call, b);
		}
	}
}

static void request_end(struct proxy_call *call)
{
	call->remote_closed = true;
	if (call->rejected || !call->method)
		return;
	if (call->frame_hdr_len > 0) {
		call_reject(call, -ECANCELED, GRPC_INTERNAL,
		            "grpc: request ended inside a message");
		return;
	}
	if (call->method->kind != PROXY_BIDI_STREAM) {
		if (!call->dispatched)
			call_reject(call, -ECANCELED, GRPC_INTERNAL,
			            "grpc: the request carried no message");
		return;
	}
	(void)pthread_mutex_lock(&call->lock);
	call->in_eof = true;
	(void)pthread_cond_broadcast(&call->cond);
	(void)pthread_mutex_unlock(&call->lock);
}

/* --- nghttp2 callbacks (I/O thread, inside mem_recv/mem_send) --- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct proxy_conn *c = user_data;
	struct proxy_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = proxy_call_new(c->server, c, frame->hd.stream_id);
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call->conn_next = c->calls;
	if (c->calls)
		c->calls->conn_prev = call;
	c->calls = call;
	c->n_calls++;
	(void)nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static char *strndup_u8(const uint8_t *s, size_t n)
{
	return strndup((const char *)s, n);
}

#define HDR_IS(name, namelen, lit) ((namelen) == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
	struct proxy_call *call;
	char **slot = NULL;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* request trailers carry nothing we use */
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;

	if (HDR_IS(name, namelen, ":path"))
		slot = &call->path;
	else if (HDR_IS(name, namelen, "content-type"))
		slot = &call->content_type;
	else if (HDR_IS(name, namelen, "grpc-timeout"))
		slot = &call->timeout;
	else if (HDR_IS(name, namelen, ":method"))
		call->bad_method = !(valuelen == 4 && memcmp(value, "POST", 4) == 0);
	else if (namelen > 0 && name[0] != ':' && !HDR_IS(name, namelen, "te") &&
	         !HDR_IS(name, namelen, "user-agent") && call->n_meta < 64) {
		struct proxy_meta *m = realloc(call->meta, (call->n_meta + 1) * sizeof(*m));

		if (!m)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		call->meta = m;
		m[call->n_meta].key = strndup_u8(name, namelen);
		m[call->n_meta].value = strndup_u8(value, valuelen);
		if (!m[call->n_meta].key || !m[call->n_meta].value) {
			free(m[call->n_meta].key);
			free(m[call->n_meta].value);
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		call->n_meta++;
	}
	if (slot) {
		free(*slot);
		*slot = strndup_u8(value, valuelen);
		if (!*slot)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct proxy_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !call->headers_done) {
		call->headers_done = true;
		request_start(call);
	}
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		request_end(call);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
	struct proxy_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	bool hold = false;

	/* The connection window always comes straight back: a stalled stream
	 * must not starve its neighbours. */
	(void)nghttp2_session_consume_connection(session, len);
	if (call && !call->rejected && call->method) {
		request_data(call, data, len);
		if (call->method->kind == PROXY_BIDI_STREAM && !call->rejected) {
			(void)pthread_mutex_lock(&call->lock);
			hold = call->in_bytes >= PROXY_IN_LIMIT;
			if (hold)
				call->unconsumed += len;
			(void)pthread_mutex_unlock(&call->lock);
		}
	}
	if (!hold)
		(void)nghttp2_session_consume_stream(session, stream_id, len);
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct proxy_call *call;

	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	call->end_sent = true;
	/* We answered before the client finished sending: tell it to stop. */
	if (!call->remote_closed)
		(void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
		                                NGHTTP2_NO_ERROR);
	return 0;
}

/* Drop the I/O thread's hold on a call whose stream is gone. */
static void call_detach(struct proxy_conn *c, struct proxy_call *call)
{
	if (call->conn_prev)
		call->conn_prev->conn_next = call->conn_next;
	else
		c->calls = call->conn_next;
	if (call->conn_next)
		call->conn_next->conn_prev = call->conn_prev;
	c->n_calls--;
	deadline_unlink(c->server, call);
	call->conn = NULL;
	if (!call->end_sent)
		proxy_call_abort(call, -ECANCELED, GRPC_OK, NULL);
	(void)proxy_call_unref(call);
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct proxy_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!call)
		return 0;
	(void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	call_detach(user_data, call);
	return 0;
}

static int setup_callbacks(struct proxy_server *s)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	s->h2_callbacks = cb;

	if (nghttp2_option_new(&s->h2_option) != 0)
		return -ENOMEM;
	/* We return window ourselves (on_data_chunk_recv, proxy_call_recv). */
	nghttp2_option_set_no_auto_window_update(s->h2_option, 1);
	return 0;
}

/* --- connections --- */

static void conn_free(struct proxy_conn *c)
{
	struct proxy_server *s = c->server;

	while (c->calls)
		call_detach(c, c->calls);
	nghttp2_session_del(c->session);
	(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	safe_close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	free(c->out);
	free(c);
}

static void conn_goaway(struct proxy_conn *c)
{
	if (c->goaway_sent)
		return;
	(void)nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
	                            nghttp2_session_get_last_proc_stream_id(c->session),
	                            NGHTTP2_NO_ERROR, NULL, 0);
	c->goaway_sent = true;
	c->dirty = true;
}

static void conn_accept(struct proxy_server *s)
{
	for (;;) {
		nghttp2_settings_entry iv[] = {
		        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024},
		        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, PROXY_WINDOW_SIZE},
		        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1024 * 1024},
		        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
		};
		struct proxy_conn *c;
		struct epoll_event e;
		int fd;

		fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_debug_errno(-errno, "accept");
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			safe_close(fd);
			continue;
		}
		c->fd = fd;
		c->server = s;
		if (nghttp2_session_server_new2(&c->session, s->h2_callbacks, c, s->h2_option) !=
		    0) {
			free(c);
			safe_close(fd);
			continue;
		}
		/* The server's first frame must be SETTINGS; the connection-level
		 * window is raised with a WINDOW_UPDATE right after. */
		(void)nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv));
		(void)nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
		                                            PROXY_WINDOW_SIZE);
		c->reading = true;
		c->epoll_events = EPOLLIN;
		e = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &e) < 0) {
			nghttp2_session_del(c->session);
			free(c);
			safe_close(fd);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->n_conns++;
		if (s->stopping)
			conn_goaway(c);
		c->dirty = true;
	}
}

/* Returns -1 if the connection was freed. */
static int conn_read(struct proxy_conn *c)
{
	struct proxy_server *s = c->server;

	/* A bounded number of reads per wakeup keeps one busy client from
	 * starving the others. */
	for (int i = 0; i < 16; i++) {
		ssize_t n = read(c->fd, s->rbuf, sizeof(s->rbuf));
		ssize_t rv;

		if (n == 0) {
			conn_free(c);
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_free(c);
			return -1;
		}
		rv = nghttp2_session_mem_recv(c->session, s->rbuf, (size_t)n);
		if (rv < 0) {
			log_debug("HTTP/2 connection error: %s", nghttp2_strerror((int)rv));
			/* Say why if nghttp2 queued a GOAWAY, then hang up. */
			(void)nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
			if (conn_flush(c) == 0)
				conn_free(c);
			return -1;
		}
		if (c->out_len - c->out_off >= CONN_OUT_HIGH)
			break;
		/* A short read drained the socket: epoll (level-triggered)
		 * reports what comes next; no read just to see EAGAIN. */
		if ((size_t)n < sizeof(s->rbuf))
			break;
	}
	c->dirty = true;
	return 0;
}

/* --- the loop --- */

/* Act on a posted call (with io_lock): return withheld window, push out
 * its response. */
static void call_wake(struct proxy_call *call)
{
	size_t release = 0;

	(void)pthread_mutex_lock(&call->lock);
	call->wake_pending = false;
	if (call->unconsumed > 0 && call->in_bytes < PROXY_IN_LIMIT) {
		release = call->unconsumed;
		call->unconsumed = 0;
	}
	(void)pthread_mutex_unlock(&call->lock);
	if (call->conn && release > 0) {
		(void)nghttp2_session_consume_stream(call->conn->session, call->stream_id, release);
		call->conn->dirty = true;
	}
	call_progress(call);
}

static void process_wakes(struct proxy_server *s)
{
	struct proxy_call **w;
	size_t n;
	uint64_t v;

	(void)!read(s->wake_fd, &v, sizeof(v));
	(void)pthread_mutex_lock(&s->wake_lock);
	w = TAKE_PTR(s->wake);
	n = s->n_wake;
	s->n_wake = s->wake_cap = 0;
	(void)pthread_mutex_unlock(&s->wake_lock);

	for (size_t i = 0; i < n; i++) {
		call_wake(w[i]);
		(void)proxy_call_unref(w[i]);
	}
	free(w);
}

/* conn_flush() for a worker holding io_lock: moves nghttp2's output to the
 * socket but never frees the connection nor changes what epoll watches.
 * -1 when something is left for the I/O thread (output the socket did not
 * take, an error). */
static int conn_send_now(struct proxy_conn *c)
{
	for (;;) {
		while (c->out_len - c->out_off < CONN_OUT_HIGH) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(c->session, &data);

			if (n < 0)
				return -1;
			if (n == 0)
				break;
			if (conn_out_append(c, data, (size_t)n) < 0)
				return -1;
		}
		if (c->out_off == c->out_len)
			return 0;

		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->out_off += (size_t)w;
		if (c->out_off < c->out_len)
			return -1;
	}
}

bool proxy_server_progress_now(struct proxy_call *call)
{
	struct proxy_server *s = call->server;
	bool kick = false;

	/* Busy I/O thread: it takes the wake queue soon enough. */
	if (pthread_mutex_trylock(&s->io_lock) != 0)
		return false;
	/* Draining and closing stay with the I/O thread. */
	if (s->stopping) {
		(void)pthread_mutex_unlock(&s->io_lock);
		return false;
	}
	call_wake(call);
	/* call->conn is valid under io_lock (NULL once the stream is gone). */
	if (call->conn) {
		struct proxy_conn *c = call->conn;

		if (conn_send_now(c) < 0) {
			c->dirty = true;
			kick = true;
		} else {
			/* Let the I/O thread re-check what to watch and whether
			 * the session is over, at its next wakeup. */
			c->dirty = true;
		}
	}
	(void)pthread_mutex_unlock(&s->io_lock);
	if (kick)
		proxy_server_kick(s);
	return true;
}

static void expire_deadlines(struct proxy_server *s, uint64_t now)
{
	struct proxy_call *call = s->deadlines, *next;

	for (; call; call = next) {
		next = call->dl_next;
		if (call->deadline_usec > now)
			continue;
		deadline_unlink(s, call);
		if (call->io_state == CALL_IO_DONE)
			continue;
		call_reject(call, -ETIMEDOUT, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
	}
}

static int next_timeout_ms(struct proxy_server *s, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	for (struct proxy_call *call = s->deadlines; call; call = call->dl_next)
		next = MIN(next, call->deadline_usec);
	if (s->stopping)
		next = MIN(next, s->drain_deadline_usec);
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return (int)MIN((next - now + 999) / 1000, (uint64_t)60000);
}

static void begin_stop(struct proxy_server *s)
{
	s->stopping = true;
	s->drain_deadline_usec = proxy_now_usec() + (uint64_t)s->drain_timeout_ms * 1000u;
	proxy_notify_stopping();
	if (s->listen_fd >= 0) {
		(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->listen_fd, NULL);
		s->listen_fd = safe_close(s->listen_fd);
	}
	/* New clients get ECONNREFUSED/ENOENT at once instead of a hang. */
	if (s->created_socket) {
		(void)unlink(s->address);
		s->created_socket = false;
	}
	for (struct proxy_conn *c = s->conns; c; c = c->next)
		conn_goaway(c);
	log_debug("stopping: %zu connections draining", s->n_conns);
}

int proxy_server_run(struct proxy_server *s)
{
	struct epoll_event ev[64];

	(void)pthread_mutex_lock(&s->io_lock);
	for (;;) {
		uint64_t now = proxy_now_usec();
		int n, timeout;

		if (s->stopping && s->n_conns == 0)
			break;
		if (s->stopping && now >= s->drain_deadline_usec) {
			log_debug("drain timeout: closing %zu connections", s->n_conns);
			while (s->conns)
				conn_free(s->conns);
			break;
		}

		/* Workers may push responses out themselves while we sleep. */
		timeout = next_timeout_ms(s, now);
		(void)pthread_mutex_unlock(&s->io_lock);
		n = epoll_wait(s->epoll_fd, ev, ELEMENTSOF(ev), timeout);
		(void)pthread_mutex_lock(&s->io_lock);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			(void)pthread_mutex_unlock(&s->io_lock);
			return log_debug_errno(-errno, "epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;

			if (p == &tag_listen) {
				conn_accept(s);
			} else if (p == &tag_wake) {
				process_wakes(s);
				if (atomic_load(&s->stop_requested) && !s->stopping)
					begin_stop(s);
			} else {
				struct proxy_conn *c = p;

				if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
					if (conn_read(c) < 0)
						continue;
				}
				if (ev[i].events & EPOLLOUT)
					c->dirty = true;
			}
		}
		expire_deadlines(s, proxy_now_usec());

		for (struct proxy_conn *c = s->conns, *next; c; c = next) {
			next = c->next;
			if (c->dirty || s->stopping)
				(void)conn_flush(c);
		}
	}

	(void)pthread_mutex_unlock(&s->io_lock);
	/* Every connection is gone, so every call is finished or cancelled:
	 * the workers return promptly. */
	proxy_pool_shutdown(&s->pool);
	return 0;
}

void proxy_server_kick(struct proxy_server *s)
{
	uint64_t one = 1;

	(void)!write(s->wake_fd, &one, sizeof(one));
}

void proxy_server_stop(struct proxy_server *s)
{
	/* NULL is accepted: a signal may arrive after the caller let go. */
	if (!s)
		return;
	atomic_store(&s->stop_requested, 1);
	proxy_server_kick(s);
}

/* --- setup --- */

int proxy_server_new(const struct proxy_server_config *cfg, struct proxy_server **ret,
                     struct strata_error **ret_err)
{
	_cleanup_(proxy_server_freep) struct proxy_server *s = NULL;
	struct epoll_event e;
	int r;

	if (!cfg || !cfg->address)
		return strata_error_set(ret_err, -EINVAL, "no socket address given");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->listen_fd = s->epoll_fd = s->wake_fd = -1;
	(void)pthread_mutex_init(&s->wake_lock, NULL);
	(void)pthread_mutex_init(&s->io_lock, NULL);
	(void)pthread_mutex_init(&s->buf_lock, NULL);
	s->drain_timeout_ms = cfg->drain_timeout_ms ? cfg->drain_timeout_ms : 10000;
	s->address = strdup(cfg->address);
	if (!s->address)
		return -ENOMEM;
	r = proxy_pool_init(&s->pool, cfg->max_workers ? cfg->max_workers : 64);
	if (r < 0)
		return r;
	r = setup_callbacks(s);
	if (r < 0)
		return strata_error_set(ret_err, r, "set up HTTP/2");

	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->epoll_fd < 0 || s->wake_fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "create event loop");

	r = proxy_socket_listen(s->address, &s->created_socket, ret_err);
	if (r < 0)
		return r;
	s->listen_fd = r;

	e = (struct epoll_event){.events = EPOLLIN, .data.ptr = &tag_listen};
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "epoll");
	e = (struct epoll_event){.events = EPOLLIN, .data.ptr = &tag_wake};
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &e) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "epoll");

	r = proxy_health_register(s, ret_err);
	if (r < 0)
		return r;

	*ret = TAKE_PTR(s);
	return 0;
}

int proxy_server_register_service(struct proxy_server *s, const char *service,
                                  const struct proxy_method *methods, size_t n_methods,
                                  void *userdata, struct strata_error **ret_err)
{
	struct proxy_service *v;

	if (find_service(s, service, strlen(service)))
		return strata_error_set(ret_err, -EEXIST, "service %s registered twice", service);
	v = realloc(s->services, (s->n_services + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->services = v;
	v[s->n_services] = (struct proxy_service){
	        .name = strdup(service),
	        .methods = methods,
	        .n_methods = n_methods,
	        .userdata = userdata,
	};
	if (!v[s->n_services].name)
		return -ENOMEM;
	s->n_services++;
	return 0;
}

const char *proxy_server_address(const struct proxy_server *s)
{
	return s->address;
}

struct proxy_server *proxy_server_free(struct proxy_server *s)
{
	if (!s)
		return NULL;
	while (s->conns)
		conn_free(s->conns);
	proxy_pool_shutdown(&s->pool);
	for (size_t i = 0; i < s->n_wake; i++)
		(void)proxy_call_unref(s->wake[i]);
	free(s->wake);
	if (s->created_socket)
		(void)unlink(s->address);
	safe_close(s->listen_fd);
	safe_close(s->epoll_fd);
	safe_close(s->wake_fd);
	if (s->h2_callbacks)
		nghttp2_session_callbacks_del(s->h2_callbacks);
	if (s->h2_option)
		nghttp2_option_del(s->h2_option);
	for (size_t i = 0; i < s->n_services; i++)
		free(s->services[i].name);
	free(s->services);
	free(s->address);
	(void)pthread_mutex_destroy(&s->wake_lock);
	(void)pthread_mutex_destroy(&s->io_lock);
	for (size_t i = 0; i < s->n_spare; i++)
		free(s->spare[i]);
	(void)pthread_mutex_destroy(&s->buf_lock);
	free(s);
	return NULL;
}
