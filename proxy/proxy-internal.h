/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private structures of proxy/: the server, its connections and calls, and
 * the hand-off between the I/O thread (server.c) and the worker pool
 * (call.c). Read the threading model at the top of server.c first.
 *
 * Ownership of a call: one reference held by the I/O thread while the HTTP/2
 * stream exists (dropped in on_stream_close or when the connection dies), one
 * by the worker while the handler runs, one per entry in the wake queue.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <nghttp2/nghttp2.h>

#include "proxy.h"

/* Window we advertise per stream and for the connection: a 1 MiB content
 * Write flows without waiting for WINDOW_UPDATEs. */
#define PROXY_WINDOW_SIZE (16 * 1024 * 1024)
/* Response bytes queued per stream before proxy_call_send() blocks. */
#define PROXY_OUT_LIMIT (4u * 1024 * 1024)
/* Complete request messages queued per bidi stream before we stop returning
 * stream-level window to the client. */
#define PROXY_IN_LIMIT (4u * 1024 * 1024)

struct proxy_service {
	char *name;
	const struct proxy_method *methods;
	size_t n_methods;
	void *userdata;
};

/* A chunk of bytes queued in either direction: for responses a framed gRPC
 * message (5-byte prefix + protobuf), for requests one unframed message. */
struct proxy_buf {
	struct proxy_buf *next;
	size_t len;
	size_t cap; /* PROXY_SPARE_CAP for a reusable receive buffer, else 0 */
	uint8_t data[];
};

/* Request messages of this size are received into reusable buffers (a
 * content Write's 1 MiB chunks): no fresh allocation, and no page faults, per
 * message. At most PROXY_SPARES are kept. */
#define PROXY_SPARE_MIN (256u * 1024)
#define PROXY_SPARE_CAP (2u * 1024 * 1024)
#define PROXY_SPARES    4

struct proxy_meta {
	char *key;
	char *value;
};

enum proxy_call_io_state {
	CALL_IO_IDLE,      /* nothing submitted to nghttp2 yet */
	CALL_IO_STREAMING, /* response HEADERS submitted, data provider attached */
	CALL_IO_DONE,      /* END_STREAM submitted */
};

struct proxy_call {
	atomic_uint refs;

	/* Immutable once the call is dispatched to a worker. */
	struct proxy_server *server;
	const struct proxy_service *service;
	const struct proxy_method *method;
	int32_t stream_id;
	uint64_t deadline_usec; /* CLOCK_MONOTONIC, 0 = none */
	char *path;
	struct proxy_meta *meta;
	size_t n_meta;
	char *content_type;
	char *timeout;
	struct proxy_buf *request; /* unary / server-stream: the one request message */

	/* I/O thread only. */
	struct proxy_conn *conn; /* NULL once the stream is gone */
	struct proxy_call *conn_prev, *conn_next;
	struct proxy_call *dl_prev, *dl_next; /* server's deadline list */
	bool in_deadline_list;
	enum proxy_call_io_state io_state;
	bool data_deferred; /* data provider returned NGHTTP2_ERR_DEFERRED */
	bool dispatched;    /* handed to a worker */
	bool remote_closed; /* client sent END_STREAM */
	bool end_sent;      /* our END_STREAM went out */
	bool headers_done;  /* request HEADERS complete */
	bool rejected;      /* the I/O thread answered it itself; ignore its data */
	bool bad_method;    /* :method was not POST */
	uint8_t frame_hdr[5];
	size_t frame_hdr_len;
	struct proxy_buf *frame_msg; /* message being reassembled */
	size_t frame_msg_have;
	size_t frame_bytes; /* header bytes received, for the size guard */

	/* Protected by lock. The I/O thread holds it only briefly and never across
	 * nghttp2 calls other than inside the data provider. */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* send space, incoming message, cancellation */
	struct proxy_buf *out_head, *out_tail;
	size_t out_off;   /* bytes of out_head already handed to nghttp2 */
	size_t out_bytes; /* queued response bytes */
	struct proxy_buf *in_head, *in_tail;
	size_t in_bytes;   /* queued request bytes */
	size_t unconsumed; /* stream window withheld from the client */
	bool in_eof;
	bool finished;
	enum grpc_status status;
	char *message;
	unsigned n_sent;
	int cancelled; /* 0, -ECANCELED or -ETIMEDOUT */
	bool wake_pending;
	void (*cancel_fn)(void *userdata);
	void *cancel_userdata;
};

struct proxy_conn {
	int fd;
	struct proxy_server *server;
	nghttp2_session *session;
	struct proxy_conn *prev, *next;
	struct proxy_call *calls; /* open streams with a call */
	size_t n_calls;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	bool want_out; /* EPOLLOUT armed */
	bool reading;  /* EPOLLIN armed */
	bool dirty;    /* needs a flush this loop iteration */
	bool goaway_sent;
	uint32_t epoll_events; /* what is armed now */
};

struct proxy_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* work queued or shutdown */
	pthread_cond_t idle_cond; /* a worker went idle (for drain) */
	struct proxy_call **queue;
	size_t q_head, q_len, q_cap;
	pthread_t *threads;
	size_t n_threads, max_threads, n_idle, n_busy;
	bool shutdown;
};

struct proxy_server {
	char *address;
	int listen_fd;
	int epoll_fd;
	int wake_fd; /* eventfd: wake queue and stop requests */
	atomic_int stop_requested;
	bool stopping;
	bool created_socket;
	unsigned drain_timeout_ms;
	uint64_t drain_deadline_usec;

	struct proxy_service *services;
	size_t n_services;

	struct proxy_conn *conns;
	size_t n_conns;
	struct proxy_call *deadlines; /* calls with a grpc-timeout */

	/* Wake queue: calls whose worker produced output, finished, or released
	 * request window. Protected by wake_lock; leaf lock (take a call's lock
	 * first, never the other way round). */
	pthread_mutex_t wake_lock;
	struct proxy_call **wake;
	size_t n_wake, wake_cap;

	struct proxy_pool pool;

	/* Whoever touches the connections, sessions and calls' I/O-side fields
	 * ("I/O thread only" below and in struct proxy_call) holds io_lock:
	 * the I/O thread, except while it sleeps in epoll_wait, or a worker
	 * that found it free (trylock, never waiting) and pushes its call's
	 * response out itself, saving the I/O thread a wakeup. */
	pthread_mutex_t io_lock;

	/* Spare receive buffers (proxy_buf_get/put). Leaf lock. */
	pthread_mutex_t buf_lock;
	struct proxy_buf *spare[PROXY_SPARES];
	size_t n_spare;

	/* I/O thread only (with io_lock). */
	nghttp2_session_callbacks *h2_callbacks;
	nghttp2_option *h2_option;
	/* Socket reads: a 1 MiB content chunk in 4-5 reads, still cache-warm when
	 * nghttp2 hands its DATA to us. */
	uint8_t rbuf[256 * 1024];
};

/* grpc-wire.c */
char *proxy_percent_encode(const char *s);
int proxy_parse_timeout(const char *s, uint64_t *ret_usec);
uint64_t proxy_now_usec(void);

/* call.c */
struct proxy_call *proxy_call_new(struct proxy_server *server, struct proxy_conn *conn,
                                  int32_t stream_id);
struct proxy_call *proxy_call_ref(struct proxy_call *call);
struct proxy_call *proxy_call_unref(struct proxy_call *call);
void proxy_buf_free_list(struct proxy_buf *b);
/* A buffer for a len-byte request message (next NULL, len set), or NULL.
 * proxy_buf_put() keeps a reusable one for the next message, else frees;
 * free() is always fine too. */
struct proxy_buf *proxy_buf_get(struct proxy_server *server, size_t len);
void proxy_buf_put(struct proxy_server *server, struct proxy_buf *b);
/* Mark cancelled (err -ECANCELED or -ETIMEDOUT), wake the handler and run the
 * cancel callback. When status != GRPC_OK and the call is not finished yet,
 * also finish it with that status (the I/O thread then sends it). */
void proxy_call_abort(struct proxy_call *call, int err, enum grpc_status status,
                      const char *message);
/* A request message of a bidi call whose large bytes field (a content Write's
 * data) points into the received buffer instead of a copy. */
struct proxy_msg {
	struct proxy_server *server;
	ProtobufCMessage *msg;
	struct proxy_buf *buf;         /* owns the borrowed bytes, or NULL */
	ProtobufCBinaryData *borrowed; /* the field inside msg that points into buf */
};
/* proxy_call_recv() that does not copy the top-level bytes field number
 * borrow_field (when it occurs once; otherwise a plain decode). Returns as
 * proxy_call_recv(); release ret with proxy_msg_done(). */
int proxy_call_recv_msg(struct proxy_call *call, uint32_t borrow_field, struct proxy_msg *ret);
void proxy_msg_done(struct proxy_msg *m);

/* Post the call on the server's wake queue (takes a reference). */
void proxy_call_post_wake(struct proxy_call *call);

int proxy_pool_init(struct proxy_pool *pool, size_t max_threads);
int proxy_pool_submit(struct proxy_pool *pool, struct proxy_call *call);
void proxy_pool_shutdown(struct proxy_pool *pool);
size_t proxy_pool_busy(struct proxy_pool *pool);

/* server.c: wake the I/O thread (async-signal-safe). */
void proxy_server_kick(struct proxy_server *server);
/* server.c, from a worker: do what the I/O thread would do for a posted call
 * (submit its response, send it) right now if io_lock is free. False when
 * the caller must post the call on the wake queue instead. */
bool proxy_server_progress_now(struct proxy_call *call);

/* socket.c: returns the listening fd. */
int proxy_socket_listen(const char *path, bool *ret_created, struct strata_error **ret_err);
void proxy_notify_stopping(void);

/* health.c */
int proxy_health_register(struct proxy_server *server, struct strata_error **ret_err);

/* svc-common.c: protobuf helpers the services share. */

/* struct content_label and struct snap_label have this layout (checked in
 * svc-common.c), so either array converts with a cast. */
struct proxy_label {
	char *key;
	char *value;
};

/* Every map<string,string> entry message protobuf-c generates (LabelsEntry)
 * has this layout; only the descriptor differs. */
struct proxy_label_pb {
	ProtobufCMessage base;
	char *key;
	char *value;
};

/* An array of n entries of the map entry type entry_desc holding copies of
 * labels (never NULL for n == 0), or NULL when out of memory. Free with
 * proxy_labels_pb_free(). */
struct proxy_label_pb **proxy_labels_to_pb(const ProtobufCMessageDescriptor *entry_desc,
                                           const struct proxy_label *labels, size_t n);
/* Accepts NULL, and an array proxy_labels_to_pb() only partly filled. */
void proxy_labels_pb_free(struct proxy_label_pb **entries, size_t n);
/* A request's map entries as labels borrowing their strings; free() the
 * array only. NULL when out of memory. */
struct proxy_label *proxy_labels_from_pb(struct proxy_label_pb *const *entries, size_t n);

struct Google__Protobuf__Timestamp;
/* A heap Timestamp (free()), or NULL. */
struct Google__Protobuf__Timestamp *proxy_timestamp_new(const struct timespec *ts);

/* List responses carry this many infos each, like containerd's. */
#define PROXY_LIST_BATCH 100

/* The layout of a List response: { repeated Info info = 1; } (checked in
 * svc-common.c). */
struct proxy_list_pb {
	ProtobufCMessage base;
	size_t n_items;
	ProtobufCMessage **items;
};

/* Infos gathered for the next List response; on the handler's stack. */
struct proxy_list_batch {
	struct proxy_call *call;
	const ProtobufCMessageDescriptor *desc; /* of the response message */
	void (*free_item)(ProtobufCMessage *item);
	ProtobufCMessage *items[PROXY_LIST_BATCH];
	size_t n;
};

/* Take item (NULL: returns -ENOMEM) and send a response when the batch is
 * full. */
int proxy_list_add(struct proxy_list_batch *b, ProtobufCMessage *item);
/* Send what is gathered (nothing when empty) and free it. */
int proxy_list_flush(struct proxy_list_batch *b);
/* Free what is gathered without sending. */
void proxy_list_done(struct proxy_list_batch *b);
