/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small blocking gRPC client over a unix socket, for the strata CLI (and
 * tests): HTTP/2 with prior knowledge on nghttp2, one call at a time on one
 * connection, unary and server-streaming methods.
 *
 * The whole client runs on the caller's thread: a call submits its request,
 * then alternates between flushing nghttp2's output to the socket and feeding
 * it what the socket returns until the stream closes. Response messages are
 * reassembled from the 5-byte gRPC framing across DATA frames and decoded as
 * they complete, so a streaming callback sees each message as soon as its
 * last byte arrives. The status comes from grpc-status/grpc-message in the
 * trailers, or in the only HEADERS frame of a trailers-only response.
 *
 * Not thread-safe: one struct proxy_client per thread.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <nghttp2/nghttp2.h>

#include "config.h"
#include "proxy.h"

#define CLIENT_WINDOW_SIZE (16 * 1024 * 1024)

struct proxy_client {
	int fd;
	char *address;
	nghttp2_session *session;
	bool write_closed; /* EPIPE: output is discarded, input read to EOF */
	bool goaway;       /* the daemon sent GOAWAY: no new calls */
	/* Once the connection is unusable (EOF, reset, protocol error, GOAWAY),
	 * every later call fails with this. */
	int broken;
	char *broken_msg;
};

struct client_call {
	struct proxy_client *client;
	int32_t stream_id;
	const char *path;
	const ProtobufCMessageDescriptor *resp_desc;
	proxy_client_msg_fn fn;
	void *userdata;

	/* The framed request, sent by the data provider. */
	uint8_t *req;
	size_t req_len, req_off;

	/* Response reassembly. */
	uint8_t hdr[5];
	size_t hdr_len;
	uint8_t *msg;
	size_t msg_len, msg_have;
	size_t n_msgs;

	int http_status;
	bool have_status;
	int grpc_status;
	char *grpc_message;
	bool closed;
	uint32_t rst_code;

	/* A local failure (undecodable message, callback error): the stream is
	 * reset and the call returns this. */
	struct strata_error *err;
};

static void client_call_done(struct client_call *call)
{
	free(call->req);
	free(call->msg);
	free(call->grpc_message);
	strata_error_free(call->err);
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

/* grpc-message is percent-encoded (PROTOCOL-HTTP2.md); an invalid escape is
 * kept literally, as grpc-go does. */
static char *percent_decode(const uint8_t *s, size_t n)
{
	char *out = malloc(n + 1), *p = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			*p++ = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
			continue;
		}
		*p++ = (char)s[i];
	}
	*p = '\0';
	return out;
}

static void client_break(struct proxy_client *c, int err, const char *fmt, ...) _printf_(3, 4);
static void client_break(struct proxy_client *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->broken)
		return;
	c->broken = err;
	va_start(ap, fmt);
	if (vasprintf(&c->broken_msg, fmt, ap) < 0)
		c->broken_msg = NULL;
	va_end(ap);
}

static int call_fail(struct client_call *call, int err, const char *fmt, ...) _printf_(3, 4);
static int call_fail(struct client_call *call, int err, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	if (!call->err) {
		va_start(ap, fmt);
		if (vasprintf(&m, fmt, ap) < 0)
			m = NULL;
		va_end(ap);
		(void)strata_error_set(&call->err, err, "%s", m ? m : strerror(-err));
		free(m);
	}
	/* Stop the daemon's side too; ignored if the stream is already gone. */
	if (!call->closed)
		(void)nghttp2_submit_rst_stream(call->client->session, NGHTTP2_FLAG_NONE,
		                                call->stream_id, NGHTTP2_CANCEL);
	return err;
}

static ssize_t req_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct client_call *call = source->ptr;
	size_t n = MIN(length, call->req_len - call->req_off);

	(void)session;
	(void)stream_id;
	(void)user_data;
	memcpy(buf, call->req + call->req_off, n);
	call->req_off += n;
	if (call->req_off == call->req_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
	struct client_call *call =
	        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	(void)flags;
	(void)user_data;
	if (!call || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		call->http_status = 0;
		for (size_t i = 0; i < valuelen && value[i] >= '0' && value[i] <= '9'; i++)
			call->http_status = call->http_status * 10 + (value[i] - '0');
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		int v = 0;
		for (size_t i = 0; i < valuelen && value[i] >= '0' && value[i] <= '9'; i++)
			v = v * 10 + (value[i] - '0');
		call->grpc_status = v;
		call->have_status = true;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		free(call->grpc_message);
		call->grpc_message = percent_decode(value, valuelen);
	}
	return 0;
}

/* One complete response message: decode it and hand it to the caller. */
static int deliver(struct client_call *call)
{
	ProtobufCMessage *m;
	int r;

	m = protobuf_c_message_unpack(call->resp_desc, NULL, call->msg_len, call->msg);
	if (!m)
		return call_fail(call, -EBADMSG, "%s: cannot decode the %s response", call->path,
		                 call->resp_desc->name);
	call->n_msgs++;
	r = call->fn(m, call->userdata, &call->err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (r < 0)
		return call_fail(call, r, "%s: stopped by the caller", call->path);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
	struct client_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)flags;
	(void)user_data;
	if (!call || call->err)
		return 0;
	while (len > 0) {
		if (call->hdr_len < 5) {
			size_t n = MIN(len, 5 - call->hdr_len);

			memcpy(call->hdr + call->hdr_len, data, n);
			call->hdr_len += n;
			data += n;
			len -= n;
			if (call->hdr_len < 5)
				break;
			if (call->hdr[0] != 0) {
				(void)call_fail(call, -EPROTO,
				                "%s: compressed response (never negotiated)",
				                call->path);
				return 0;
			}
			call->msg_len = (size_t)call->hdr[1] << 24 | (size_t)call->hdr[2] << 16 |
			                (size_t)call->hdr[3] << 8 | call->hdr[4];
			if (call->msg_len > PROXY_MAX_MESSAGE_SIZE) {
				(void)call_fail(call, -EMSGSIZE,
				                "%s: response message larger than max (%zu vs. %u)",
				                call->path, call->msg_len, PROXY_MAX_MESSAGE_SIZE);
				return 0;
			}
			free(call->msg);
			call->msg = malloc(call->msg_len ? call->msg_len : 1);
			if (!call->msg) {
				(void)call_fail(call, -ENOMEM, "%s: out of memory", call->path);
				return 0;
			}
			call->msg_have = 0;
		}
		size_t n = MIN(len, call->msg_len - call->msg_have);
		memcpy(call->msg + call->msg_have, data, n);
		call->msg_have += n;
		data += n;
		len -= n;
		if (call->msg_have == call->msg_len) {
			if (deliver(call) < 0)
				return 0;
			call->hdr_len = 0;
			call->msg_have = 0;
			call->msg_len = 0;
		}
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct client_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)user_data;
	if (call) {
		call->closed = true;
		call->rst_code = error_code;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct proxy_client *c = user_data;

	(void)session;
	/* The daemon is draining: a call it already accepted runs to its end
	 * (streams above last_stream_id are closed by nghttp2 itself and
	 * on_stream_close tells their call); no new call may start. */
	if (frame->hd.type == NGHTTP2_GOAWAY)
		c->goaway = true;
	return 0;
}

/* Write everything nghttp2 has queued. The socket is blocking: the daemon's
 * I/O thread never blocks, so it always drains us eventually. */
static int client_flush(struct proxy_client *c)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->session, &data);

		if (n < 0) {
			client_break(c, -EPROTO, "HTTP/2 error: %s", nghttp2_strerror((int)n));
			return c->broken;
		}
		if (n == 0)
			return 0;
		while (n > 0) {
			ssize_t w =
			        c->write_closed ? n : send(c->fd, data, (size_t)n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EPIPE || errno == ECONNRESET) {
					/* The daemon closed; what it sent before that
					 * (the end of our call, maybe) is still ours to
					 * read, and EOF explains the rest. */
					c->write_closed = true;
					continue;
				}
				client_break(c, -ECONNRESET,
				             "connection to the Strata daemon at %s lost: %m",
				             c->address);
				return c->broken;
			}
			data += w;
			n -= w;
		}
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run the connection until the call's stream closes, the deadline passes or
 * the connection dies. */
static int client_pump(struct proxy_client *c, struct client_call *call, uint64_t deadline_ms)
{
	uint8_t buf[64 * 1024];

	for (;;) {
		int r = client_flush(c);
		if (r < 0)
			return r;
		if (call->closed)
			return 0;
		if (c->broken)
			return c->broken;

		int timeout = -1;
		if (deadline_ms) {
			uint64_t now = now_ms();
			if (now >= deadline_ms) {
				(void)call_fail(call, -ETIMEDOUT, "%s: deadline exceeded",
				                call->path);
				(void)client_flush(c);
				return -ETIMEDOUT;
			}
			timeout = (int)MIN(deadline_ms - now, (uint64_t)INT32_MAX);
		}
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		r = poll(&p, 1, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (r == 0)
			continue; /* the deadline check above ends the call */

		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0 && errno != ECONNRESET) {
			client_break(c, -ECONNRESET,
			             "connection to the Strata daemon at %s lost: %m", c->address);
			return c->broken;
		}
		/* A peer that closes with our bytes unread resets a unix socket
		 * instead of a clean EOF: the same event for us. */
		if (n <= 0) {
			client_break(c, -ECONNRESET,
			             "the Strata daemon at %s closed the connection (did it exit?)",
			             c->address);
			/* Let the caller see a call that completed in this very read. */
			return call->closed ? 0 : c->broken;
		}
		ssize_t rv = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
		if (rv < 0) {
			client_break(c, -EPROTO, "HTTP/2 error from the daemon at %s: %s",
			             c->address, nghttp2_strerror((int)rv));
			return c->broken;
		}
	}
}

int proxy_client_connect(const char *address, struct proxy_client **ret,
                         struct strata_error **ret_err)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = NULL;
	nghttp2_session_callbacks *cb = NULL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	nghttp2_settings_entry iv[] = {
	        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CLIENT_WINDOW_SIZE},
	        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1 << 20},
	};
	int r;

	if (!address || !*address)
		return strata_error_set(ret_err, -EINVAL, "no daemon address given");
	if (strlen(address) >= sizeof(sa.sun_path))
		return strata_error_set(ret_err, -ENAMETOOLONG,
		                        "daemon address \"%s\" is too long for a unix socket",
		                        address);
	memcpy(sa.sun_path, address, strlen(address));

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->address = strdup(address);
	if (!c->address)
		return -ENOMEM;

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "create a unix socket");
	while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = negative_errno();
		if (r == -EINTR)
			continue;
		if (r == -ENOENT)
			return strata_error_set(
			        ret_err, r,
			        "cannot connect to the Strata daemon at %s: no socket "
			        "there — is `strata serve` running?",
			        address);
		if (r == -ECONNREFUSED)
			return strata_error_set(
			        ret_err, r,
			        "cannot connect to the Strata daemon at %s: connection "
			        "refused (stale socket) — is `strata serve` running?",
			        address);
		if (r == -EACCES || r == -EPERM)
			return strata_error_set(
			        ret_err, r,
			        "cannot connect to the Strata daemon at %s: permission "
			        "denied (the socket is root's: run as root)",
			        address);
		return strata_error_set_errno(ret_err, r,
		                              "cannot connect to the Strata daemon at %s", address);
	}

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	r = nghttp2_session_client_new(&c->session, cb, c);
	nghttp2_session_callbacks_del(cb);
	if (r != 0)
		return -ENOMEM;
	/* The client preface goes out with the first call's flush. */
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
	                                          CLIENT_WINDOW_SIZE) != 0)
		return strata_error_set(ret_err, -EPROTO, "HTTP/2 session setup failed");

	*ret = TAKE_PTR(c);
	return 0;
}

struct proxy_client *proxy_client_free(struct proxy_client *c)
{
	if (!c)
		return NULL;
	if (c->session) {
		/* A polite GOAWAY; the daemon copes without it. */
		if (!c->broken && c->fd >= 0 &&
		    nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR) == 0)
			(void)client_flush(c);
		nghttp2_session_del(c->session);
	}
	(void)safe_close(c->fd);
	free(c->address);
	free(c->broken_msg);
	free(c);
	return NULL;
}

/* Turn the finished (or failed) call into the return value and message. */
static int call_result(struct client_call *call, int pump, bool unary,
                       struct strata_error **ret_err)
{
	struct proxy_client *c = call->client;

	if (call->err) {
		int code = call->err->code;
		strata_error_propagate(ret_err, &call->err);
		return code;
	}
	if (!call->closed) {
		/* The connection's own message says it all (no method path: this
		 * is what a user sees when the daemon dies). */
		if (pump < 0 && c->broken)
			return strata_error_set(ret_err, c->broken, "%s",
			                        c->broken_msg ? c->broken_msg
			                                      : strerror(-c->broken));
		return strata_error_set_errno(ret_err, pump < 0 ? pump : -EIO, "%s", call->path);
	}
	if (call->have_status) {
		if (call->grpc_status != GRPC_OK) {
			enum grpc_status st = (enum grpc_status)call->grpc_status;
			return strata_error_set(ret_err, strata_grpc_to_errno(st), "%s",
			                        call->grpc_message && *call->grpc_message
			                                ? call->grpc_message
			                                : strata_grpc_status_name(st));
		}
		if (call->hdr_len > 0)
			return strata_error_set(ret_err, -EPROTO, "%s: truncated response message",
			                        call->path);
		if (unary && call->n_msgs != 1)
			return strata_error_set(ret_err, -EPROTO,
			                        "%s: expected one response message, got %zu",
			                        call->path, call->n_msgs);
		return 0;
	}
	if (call->rst_code == NGHTTP2_REFUSED_STREAM && c->goaway)
		return strata_error_set(ret_err, -ECONNRESET,
		                        "the Strata daemon at %s is shutting down", c->address);
	if (call->rst_code != NGHTTP2_NO_ERROR)
		return strata_error_set(ret_err, -ECONNRESET, "%s: the daemon reset the call (%s)",
		                        call->path, nghttp2_http2_strerror(call->rst_code));
	if (call->http_status != 200)
		return strata_error_set(ret_err, -EPROTO, "%s: the daemon answered HTTP %d",
		                        call->path, call->http_status);
	return strata_error_set(ret_err, -EPROTO, "%s: response without grpc-status", call->path);
}

static int client_call_run(struct proxy_client *c, struct client_call *call,
                           const ProtobufCMessage *req, unsigned timeout_ms, bool unary,
                           struct strata_error **ret_err)
{
	char timeout_hdr[32] = "";
	size_t len;
	int32_t id;
	int r;

	if (c->broken)
		return strata_error_set(ret_err, c->broken, "%s",
		                        c->broken_msg ? c->broken_msg : strerror(-c->broken));
	if (c->goaway)
		return strata_error_set(ret_err, -ECONNRESET,
		                        "the Strata daemon at %s is shutting down", c->address);

	len = protobuf_c_message_get_packed_size(req);
	if (len > PROXY_MAX_MESSAGE_SIZE)
		return strata_error_set(ret_err, -EMSGSIZE, "%s: request larger than max (%zu)",
		                        call->path, len);
	call->req = malloc(5 + len);
	if (!call->req)
		return -ENOMEM;
	call->req[0] = 0;
	call->req[1] = (uint8_t)(len >> 24);
	call->req[2] = (uint8_t)(len >> 16);
	call->req[3] = (uint8_t)(len >> 8);
	call->req[4] = (uint8_t)len;
	(void)protobuf_c_message_pack(req, call->req + 5);
	call->req_len = 5 + len;

#define NV(n, v)                                                   \
	{(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), \
	 NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}
	nghttp2_nv hdrs[8] = {
	        NV(":method", "POST"),
	        NV(":scheme", "http"),
	        NV(":path", call->path),
	        NV(":authority", "localhost"),
	        NV("content-type", "application/grpc"),
	        NV("te", "trailers"),
	        NV("user-agent", "strata-client/" STRATA_VERSION),
	};
	size_t n_hdrs = 7;
	if (timeout_ms > 0) {
		/* At most 8 digits (PROTOCOL-HTTP2.md): switch to seconds if needed. */
		if (timeout_ms <= 99999999u)
			snprintf(timeout_hdr, sizeof(timeout_hdr), "%um", timeout_ms);
		else
			snprintf(timeout_hdr, sizeof(timeout_hdr), "%uS", timeout_ms / 1000u);
		hdrs[n_hdrs++] = (nghttp2_nv)NV("grpc-timeout", timeout_hdr);
	}
#undef NV
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = req_read_cb};

	id = nghttp2_submit_request(c->session, NULL, hdrs, n_hdrs, &prd, call);
	if (id < 0)
		return strata_error_set(ret_err, -EPROTO, "%s: submit request: %s", call->path,
		                        nghttp2_strerror(id));
	call->stream_id = id;

	r = client_pump(c, call, timeout_ms ? now_ms() + timeout_ms : 0);
	r = call_result(call, r, unary, ret_err);
	/* The call lives on our stack: nghttp2 must never reach it again. */
	if (nghttp2_session_get_stream_user_data(c->session, id))
		(void)nghttp2_session_set_stream_user_data(c->session, id, NULL);
	return r;
}

struct unary_result {
	ProtobufCMessage *resp;
	const char *path;
};

static int unary_collect(const ProtobufCMessage *msg, void *userdata, struct strata_error **ret_err)
{
	struct unary_result *u = userdata;
	uint8_t *buf;
	size_t len;

	if (u->resp)
		return strata_error_set(ret_err, -EPROTO, "%s: more than one response message",
		                        u->path);
	/* The message is freed after the callback: keep a private copy. */
	len = protobuf_c_message_get_packed_size(msg);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	(void)protobuf_c_message_pack(msg, buf);
	u->resp = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
	free(buf);
	return u->resp ? 0 : -ENOMEM;
}

int proxy_client_unary(struct proxy_client *c, const char *path, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
                       unsigned timeout_ms, struct strata_error **ret_err)
{
	struct unary_result u = {.path = path};
	struct client_call call = {
	        .client = c,
	        .path = path,
	        .resp_desc = resp_desc,
	        .fn = unary_collect,
	        .userdata = &u,
	};
	int r;

	r = client_call_run(c, &call, req, timeout_ms, true, ret_err);
	client_call_done(&call);
	if (r < 0) {
		if (u.resp)
			protobuf_c_message_free_unpacked(u.resp, NULL);
		return r;
	}
	*ret_resp = u.resp;
	return 0;
}

int proxy_client_stream(struct proxy_client *c, const char *path, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, proxy_client_msg_fn fn,
                        void *userdata, unsigned timeout_ms, struct strata_error **ret_err)
{
	struct client_call call = {
	        .client = c,
	        .path = path,
	        .resp_desc = resp_desc,
	        .fn = fn,
	        .userdata = userdata,
	};
	int r;

	r = client_call_run(c, &call, req, timeout_ms, false, ret_err);
	client_call_done(&call);
	return r;
}

const char *proxy_client_address(const struct proxy_client *c)
{
	return c->address;
}
