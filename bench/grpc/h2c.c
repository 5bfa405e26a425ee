/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark's gRPC client transport (see h2c.h). Blocking socket, one
 * owner thread per connection: every call pumps nghttp2 (send what is queued,
 * then read) until the condition it waits for holds. DATA is sent with
 * NGHTTP2_DATA_FLAG_NO_COPY straight from the queued pieces, so a 1 MiB
 * content chunk is written from the caller's buffer without extra copies.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <nghttp2/nghttp2.h>

#include "h2c.h"

#define MAX_PIECES   48
#define RECV_WINDOW  (16 * 1024 * 1024)
#define READ_BUFSIZE (256 * 1024)

struct piece {
	const uint8_t *p;
	size_t len;
	uint8_t *owned; /* freed once sent; NULL for borrowed data */
};

struct h2c_stream {
	struct h2c_conn *conn;
	int32_t id;
	/* outbound: queued pieces, sent in order */
	struct piece pieces[MAX_PIECES];
	size_t n_pieces, first;
	bool eof; /* close_send called */
	bool deferred;
	/* inbound: raw gRPC-framed bytes not yet returned */
	uint8_t *in;
	size_t in_len, in_off, in_cap;
	int http_status;
	int grpc_status; /* -1 until the trailers say */
	char grpc_message[256];
	bool closed;
	uint32_t rst_code;
};

struct h2c_conn {
	int fd;
	nghttp2_session *session;
	nghttp2_nv md[8]; /* extra request headers; names and values owned */
	size_t n_md;
	char err[512];
	uint8_t rbuf[READ_BUFSIZE];
};

static void set_err(struct h2c_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

const char *h2c_last_error(struct h2c_conn *c)
{
	return c->err;
}

static int write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	while (len > 0) {
		ssize_t n = write(fd, b, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t cb_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                       void *user_data)
{
	struct h2c_conn *c = user_data;
	if (write_all(c->fd, data, length) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)length;
}

static size_t pending_bytes(const struct h2c_stream *s)
{
	size_t n = 0;
	for (size_t i = s->first; i < s->n_pieces; i++)
		n += s->pieces[i].len;
	return n;
}

static ssize_t cb_data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
	struct h2c_stream *s = source->ptr;
	size_t avail = pending_bytes(s);

	if (avail == 0) {
		if (s->eof) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
			return 0;
		}
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (length > avail)
		length = avail;
	*data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (length == avail && s->eof)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)length;
}

/* Writes the frame header and `length` bytes from the queued pieces. */
static int cb_send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
	struct h2c_conn *c = user_data;
	struct h2c_stream *s = source->ptr;
	struct iovec iov[MAX_PIECES + 1];

	size_t niov = 0, left = length;

	iov[niov++] = (struct iovec){(void *)framehd, 9};
	for (size_t i = s->first; i < s->n_pieces && left > 0; i++) {
		size_t n = s->pieces[i].len < left ? s->pieces[i].len : left;
		iov[niov++] = (struct iovec){(void *)s->pieces[i].p, n};
		left -= n;
	}
	if (frame->data.padlen > 0 || left > 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;

	/* writev until everything went out (blocking socket: rarely partial) */
	struct iovec *v = iov;
	while (niov > 0) {
		ssize_t n = writev(c->fd, v, (int)niov);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		}
		while (niov > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			niov--;
		}
		if (niov > 0) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}

	/* consume */
	left = length;
	while (left > 0) {
		struct piece *p = &s->pieces[s->first];
		size_t n = p->len < left ? p->len : left;
		p->p += n;
		p->len -= n;
		left -= n;
		if (p->len == 0) {
			free(p->owned);
			p->owned = NULL;
			s->first++;
		}
	}
	if (s->first == s->n_pieces)
		s->first = s->n_pieces = 0;
	return 0;
}

static int cb_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!s)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0)
		s->http_status = atoi((const char *)value);
	else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
		s->grpc_status = atoi((const char *)value);
	else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		size_t n = valuelen < sizeof(s->grpc_message) - 1 ? valuelen
		                                                  : sizeof(s->grpc_message) - 1;
		memcpy(s->grpc_message, value, n);
		s->grpc_message[n] = 0;
	}
	return 0;
}

static int cb_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	if (!s)
		return 0;
	if (s->in_off > 0 && s->in_off == s->in_len)
		s->in_off = s->in_len = 0;
	if (s->in_len + len > s->in_cap) {
		size_t cap = s->in_cap ? s->in_cap : 4096;
		while (cap < s->in_len + len)
			cap *= 2;
		uint8_t *n = realloc(s->in, cap);
		if (!n)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		s->in = n;
		s->in_cap = cap;
	}
	memcpy(s->in + s->in_len, data, len);
	s->in_len += len;
	return 0;
}

static int cb_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	if (s) {
		s->closed = true;
		s->rst_code = error_code;
	}
	return 0;
}

int h2c_connect(const char *socket_path, const char *const *metadata, struct h2c_conn **ret)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	nghttp2_session_callbacks *cbs = NULL;
	struct h2c_conn *c;
	int r;

	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, socket_path);

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* H2C_SNDBUF=BYTES: the send buffer, for the socket-buffer experiment
	 * (a unix stream socket's capacity is the sender's buffer). */
	if (c->fd >= 0 && getenv("H2C_SNDBUF")) {
		int sz = atoi(getenv("H2C_SNDBUF"));
		(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		goto fail;
	}
	for (size_t i = 0; metadata && metadata[i] && metadata[i + 1]; i += 2) {
		char *n = strdup(metadata[i]), *v = strdup(metadata[i + 1]);
		if (!n || !v || c->n_md == sizeof(c->md) / sizeof(c->md[0])) {
			free(n);
			free(v);
			r = -ENOMEM;
			goto fail;
		}
		c->md[c->n_md++] =
		        (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v),
		                     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
	}

	if (nghttp2_session_callbacks_new(&cbs) != 0) {
		r = -ENOMEM;
		goto fail;
	}
	nghttp2_session_callbacks_set_send_callback(cbs, cb_send);
	nghttp2_session_callbacks_set_send_data_callback(cbs, cb_send_data);
	nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
	r = nghttp2_session_client_new(&c->session, cbs, c);
	nghttp2_session_callbacks_del(cbs);
	if (r != 0) {
		r = -ENOMEM;
		goto fail;
	}

	nghttp2_settings_entry iv[] = {
	        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, RECV_WINDOW},
	        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1 << 20},
	};
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
	    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, RECV_WINDOW) !=
	            0 ||
	    nghttp2_session_send(c->session) != 0) {
		r = -EIO;
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	h2c_close(c);
	return r;
}

void h2c_close(struct h2c_conn *c)
{
	if (!c)
		return;
	if (c->session) {
		nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
		nghttp2_session_send(c->session);
		nghttp2_session_del(c->session);
	}
	if (c->fd >= 0)
		close(c->fd);
	for (size_t i = 0; i < c->n_md; i++) {
		free(c->md[i].name);
		free(c->md[i].value);
	}
	free(c);
}

static bool have_message(const struct h2c_stream *s)
{
	size_t avail = s->in_len - s->in_off;
	if (avail < 5)
		return false;
	const uint8_t *h = s->in + s->in_off;
	uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
	return avail >= 5 + (size_t)len;
}

/* Pump the session until the stream is closed, or (want_msg) a whole
 * message is buffered. */
static int pump(struct h2c_stream *s, bool want_msg)
{
	struct h2c_conn *c = s->conn;
	for (;;) {
		int r = nghttp2_session_send(c->session);
		if (r != 0) {
			set_err(c, "nghttp2 send: %s", nghttp2_strerror(r));
			return -EIO;
		}
		if (s->closed || (want_msg && have_message(s)))
			return 0;
		ssize_t n = read(c->fd, c->rbuf, sizeof(c->rbuf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			set_err(c, "connection closed by the server");
			return -ECONNRESET;
		}
		ssize_t m = nghttp2_session_mem_recv(c->session, c->rbuf, (size_t)n);
		if (m < 0) {
			set_err(c, "nghttp2 recv: %s", nghttp2_strerror((int)m));
			return -EIO;
		}
	}
}

static int queue_piece(struct h2c_stream *s, const uint8_t *p, size_t len, uint8_t *owned)
{
	if (s->n_pieces == MAX_PIECES && s->first > 0) {
		memmove(s->pieces, s->pieces + s->first,
		        (s->n_pieces - s->first) * sizeof(s->pieces[0]));
		s->n_pieces -= s->first;
		s->first = 0;
	}
	if (s->n_pieces == MAX_PIECES) {
		free(owned);
		return -ENOBUFS;
	}
	s->pieces[s->n_pieces++] = (struct piece){p, len, owned};
	return 0;
}

static void kick(struct h2c_stream *s)
{
	if (s->deferred && s->id > 0) {
		s->deferred = false;
		nghttp2_session_resume_data(s->conn->session, s->id);
	}
}

static uint8_t *frame_message(const ProtobufCMessage *msg, size_t extra, size_t *ret_len)
{
	size_t n = msg ? protobuf_c_message_get_packed_size(msg) : 0;
	uint8_t *b = malloc(5 + n);
	if (!b)
		return NULL;
	size_t total = n + extra;
	b[0] = 0;
	b[1] = (uint8_t)(total >> 24);
	b[2] = (uint8_t)(total >> 16);
	b[3] = (uint8_t)(total >> 8);
	b[4] = (uint8_t)total;
	if (msg)
		protobuf_c_message_pack(msg, b + 5);
	*ret_len = 5 + n;
	return b;
}

int h2c_stream_open(struct h2c_conn *c, const char *path, struct h2c_stream **ret)
{
	struct h2c_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->conn = c;
	s->grpc_status = -1;

#define NV(n, v)                                               \
	{(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), \
	 NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}
	nghttp2_nv hdrs[7 + sizeof(c->md) / sizeof(c->md[0])] = {
	        NV(":method", "POST"),
	        NV(":scheme", "http"),
	        NV(":path", path),
	        NV(":authority", "localhost"),
	        NV("content-type", "application/grpc"),
	        NV("te", "trailers"),
	        NV("user-agent", "strata-bench-grpc"),
	};
#undef NV
	size_t nhdrs = 7;
	for (size_t i = 0; i < c->n_md; i++)
		hdrs[nhdrs++] = c->md[i];
	nghttp2_data_provider prd = {.source.ptr = s, .read_callback = cb_data_read};
	int32_t id = nghttp2_submit_request(c->session, NULL, hdrs, nhdrs, &prd, s);
	if (id < 0) {
		set_err(c, "submit: %s", nghttp2_strerror(id));
		free(s);
		return -EIO;
	}
	s->id = id;
	*ret = s;
	return 0;
}

int h2c_stream_send(struct h2c_stream *s, const ProtobufCMessage *msg)
{
	size_t len;
	uint8_t *b = frame_message(msg, 0, &len);
	if (!b)
		return -ENOMEM;
	int r = queue_piece(s, b, len, b);
	kick(s);
	return r;
}

int h2c_stream_send_raw(struct h2c_stream *s, const uint8_t *head, size_t head_len,
                        const uint8_t *tail, size_t tail_len)
{
	size_t len;
	uint8_t *b = frame_message(NULL, head_len + tail_len, &len);
	if (!b)
		return -ENOMEM;
	uint8_t *nb = realloc(b, len + head_len);
	if (!nb) {
		free(b);
		return -ENOMEM;
	}
	memcpy(nb + len, head, head_len);
	int r = queue_piece(s, nb, len + head_len, nb);
	if (r >= 0 && tail_len > 0)
		r = queue_piece(s, tail, tail_len, NULL);
	kick(s);
	return r;
}

int h2c_stream_close_send(struct h2c_stream *s)
{
	s->eof = true;
	if (s->id > 0)
		nghttp2_session_resume_data(s->conn->session, s->id);
	s->deferred = false;
	return 0;
}

int h2c_stream_recv(struct h2c_stream *s, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **ret)
{
	int r = pump(s, true);
	if (r < 0)
		return r;
	if (!have_message(s))
		return 0; /* closed without (another) message */
	const uint8_t *h = s->in + s->in_off;
	uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
	ProtobufCMessage *m = NULL;
	if (desc) {
		m = protobuf_c_message_unpack(desc, NULL, len, h + 5);
		if (!m) {
			set_err(s->conn, "undecodable response message");
			return -EBADMSG;
		}
	}
	s->in_off += 5 + len;
	if (ret)
		*ret = m;
	else if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	return 1;
}

static void stream_free(struct h2c_stream *s)
{
	if (!s)
		return;
	if (s->id > 0 && !s->closed) {
		nghttp2_submit_rst_stream(s->conn->session, NGHTTP2_FLAG_NONE, s->id,
		                          NGHTTP2_CANCEL);
		nghttp2_session_set_stream_user_data(s->conn->session, s->id, NULL);
	}
	for (size_t i = s->first; i < s->n_pieces; i++)
		free(s->pieces[i].owned);
	free(s->in);
	free(s);
}

int h2c_stream_finish(struct h2c_stream *s)
{
	struct h2c_conn *c = s->conn;
	int r = pump(s, false);
	if (r >= 0) {
		if (s->grpc_status > 0) {
			set_err(c, "grpc-status %d: %s", s->grpc_status, s->grpc_message);
			r = s->grpc_status;
		} else if (s->grpc_status < 0) {
			set_err(c, "no grpc-status (http %d, rst %u)", s->http_status, s->rst_code);
			r = -EPROTO;
		}
	}
	stream_free(s);
	return r;
}

static int unary(struct h2c_conn *c, const char *path, const ProtobufCMessage *req,
                 const uint8_t *raw, size_t raw_len, const ProtobufCMessageDescriptor *resp_desc,
                 ProtobufCMessage **ret)
{
	struct h2c_stream *s = NULL;
	ProtobufCMessage *m = NULL;
	int r;

	r = h2c_stream_open(c, path, &s);
	if (r < 0)
		return r;
	r = req ? h2c_stream_send(s, req) : h2c_stream_send_raw(s, raw, raw_len, NULL, 0);
	if (r >= 0)
		r = h2c_stream_close_send(s);
	if (r >= 0)
		r = pump(s, false); /* unary: wait for the whole answer */
	if (r >= 0 && s->grpc_status == 0) {
		r = h2c_stream_recv(s, resp_desc, &m);
		if (r == 0) {
			set_err(c, "unary call returned no message");
			r = -EPROTO;
		}
	}
	if (r < 0) {
		stream_free(s);
		return r;
	}
	r = h2c_stream_finish(s);
	if (r != 0) {
		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
		return r;
	}
	if (ret)
		*ret = m;
	else if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

int h2c_unary(struct h2c_conn *c, const char *path, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret)
{
	return unary(c, path, req, NULL, 0, resp_desc, ret);
}

int h2c_unary_raw(struct h2c_conn *c, const char *path, const uint8_t *req, size_t req_len)
{
	return unary(c, path, NULL, req, req_len, NULL, NULL);
}
