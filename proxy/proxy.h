/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy/: Strata's gRPC server. It owns the unix socket, the HTTP/2
 * connections (nghttp2, h2c with prior knowledge), gRPC message framing and
 * status trailers, the worker pool that runs RPC handlers, and the services
 * Strata exposes (grpc.health.v1.Health here; Snapshots and Content in
 * svc-*.c). It knows nothing about storage: services call content/ and
 * snapshotter/.
 *
 * Threading (details in proxy/README.md and at the top of server.c): one I/O
 * thread runs epoll and every nghttp2 session; handlers run on a bounded
 * worker pool and may block (fsync, directory walks, mounts). A handler talks
 * to its call only through the proxy_call_* functions below, which are
 * thread-safe and hand work back to the I/O thread.
 *
 * Handler contract:
 *   - unary and server-streaming handlers get the decoded request; bidi
 *     handlers get NULL and pull requests with proxy_call_recv();
 *   - responses go out with proxy_call_send() (exactly once for unary);
 *   - returning >= 0 finishes the call with OK, returning < 0 finishes it with
 *     the gRPC status mapped from the errno class (strata_errno_to_grpc) and
 *     the message from *ret_err (or strerror); proxy_call_finish() may be
 *     called earlier to choose the status explicitly;
 *   - a cancelled call (client RST_STREAM, disconnect, grpc-timeout expiry,
 *     server shutdown deadline) makes send/recv fail with -ECANCELED or
 *     -ETIMEDOUT; long loops should poll proxy_call_cancelled().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "common.h"
#include "metrics.h" /* the Prometheus endpoint (part of this module's API) */

/* gRPC's default and containerd's limit, each way. */
#define PROXY_MAX_MESSAGE_SIZE (16u * 1024 * 1024)

struct proxy_server;
struct proxy_call;

enum proxy_method_kind {
	PROXY_UNARY,
	PROXY_SERVER_STREAM,
	PROXY_BIDI_STREAM, /* also serves client-streaming methods */
};

typedef int (*proxy_handler_fn)(struct proxy_call *call, const ProtobufCMessage *request,
                                void *userdata, struct strata_error **ret_err);

struct proxy_method {
	const char *name; /* "Prepare": the last element of the path */
	enum proxy_method_kind kind;
	const ProtobufCMessageDescriptor *request; /* decodes the request messages */
	proxy_handler_fn handler;
};

struct proxy_server_config {
	const char *address;       /* unix socket path */
	unsigned max_workers;      /* 0: default (64) */
	unsigned drain_timeout_ms; /* 0: default (10 s); in-flight calls get this long on stop */
};

/* Bind and listen. Creates the parent directory (mode 0711) if missing and the
 * socket with mode 0660. Fails with -EADDRINUSE if a server already answers at
 * the address; a stale socket file is replaced. Registers grpc.health.v1. */
int proxy_server_new(const struct proxy_server_config *cfg, struct proxy_server **ret,
                     struct strata_error **ret_err);

/* Register a service ("containerd.services.snapshots.v1.Snapshots") before
 * proxy_server_run(). The method table is not copied: it must outlive the
 * server (a static const table). -EEXIST if the service is already there. */
int proxy_server_register_service(struct proxy_server *server, const char *service,
                                  const struct proxy_method *methods, size_t n_methods,
                                  void *userdata, struct strata_error **ret_err);

/* Serve until proxy_server_stop(); then stop accepting, send GOAWAY, wait up
 * to drain_timeout_ms for in-flight calls, close everything, join the workers
 * and return 0. */
int proxy_server_run(struct proxy_server *server);

/* Async-signal-safe: callable from a SIGTERM handler or any thread. */
/* NULL is a no-op. */
void proxy_server_stop(struct proxy_server *server);

/* Tell systemd (Type=notify) we are ready; a no-op without libsystemd or
 * NOTIFY_SOCKET. Call after proxy_server_new() succeeded. */
int proxy_server_notify_ready(void);

/* Unlinks the socket it created. Only after proxy_server_run() returned (or
 * was never called). Returns NULL. */
struct proxy_server *proxy_server_free(struct proxy_server *server);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct proxy_server *, proxy_server_free)

const char *proxy_server_address(const struct proxy_server *server);

/* --- Strata's services --- */

struct snap_store;
struct content_store;

/* containerd.services.snapshots.v1.Snapshots backed by snapshotter/ (the
 * store must outlive the server). */
int proxy_snapshots_register(struct proxy_server *server, struct snap_store *store,
                             struct strata_error **ret_err);
/* containerd.services.content.v1.Content backed by content/. */
int proxy_content_register(struct proxy_server *server, struct content_store *store,
                           struct strata_error **ret_err);

/* --- call context, for handlers (thread-safe) --- */

/* Queue one response message. Blocks while more than a few MiB are queued for
 * this stream (flow control: a client that stops reading pauses only its own
 * producer). -ECANCELED / -ETIMEDOUT when the call is gone, -EMSGSIZE over
 * 16 MiB, -EINVAL for a second message on a unary call. */
int proxy_call_send(struct proxy_call *call, const ProtobufCMessage *msg);

/* Next request message of a bidi call: 1 and *ret (free it with
 * protobuf_c_message_free_unpacked(*ret, NULL)), 0 at the client's half-close,
 * -ECANCELED / -ETIMEDOUT, or -EBADMSG for an undecodable message (the call is
 * then already finished with INTERNAL, as grpc-go does). */
int proxy_call_recv(struct proxy_call *call, ProtobufCMessage **ret);

/* Finish with a status: err 0 = OK, else a negative errno mapped through
 * strata_errno_to_grpc(). Later sends fail; a second finish is ignored. */
void proxy_call_finish(struct proxy_call *call, int err, const char *message);
/* Same with an explicit gRPC status code. */
void proxy_call_finish_status(struct proxy_call *call, enum grpc_status status,
                              const char *message);

/* 0, or -ECANCELED (client cancel, disconnect, shutdown) / -ETIMEDOUT (deadline). */
int proxy_call_cancelled(struct proxy_call *call);

/* Absolute CLOCK_MONOTONIC deadline in microseconds from grpc-timeout; 0 = none. */
uint64_t proxy_call_deadline(const struct proxy_call *call);

/* Request metadata (lowercase key, e.g. "containerd-namespace"), or NULL. */
const char *proxy_call_metadata(const struct proxy_call *call, const char *key);

/* Full method path, "/pkg.Service/Method". */
const char *proxy_call_path(const struct proxy_call *call);

/* Register a callback run once when the call is cancelled, to wake a producer
 * blocked elsewhere. It runs WITH the call's lock held, on the I/O thread or
 * on a worker that is inside another call's proxy_call_*() (see io_lock in
 * proxy/README.md): it must only set a flag, signal its own condition
 * variable or write an fd, must not call proxy_call_*(), and must not take a
 * lock that a handler holds while calling proxy_call_*(). Runs at once (in the caller) if the call
 * is already cancelled. Pass fn = NULL to unregister; after that returns, the callback is not
 * running and will not run. */
void proxy_call_on_cancel(struct proxy_call *call, void (*fn)(void *userdata), void *userdata);

/* --- client (client.c): a blocking gRPC client for the strata CLI --- */

/* One HTTP/2 connection to a daemon's unix socket, calls one at a time. Not
 * thread-safe. Errors come back as -errno mapped from the gRPC status
 * (strata_grpc_to_errno) with the daemon's grpc-message as the message;
 * -ECONNRESET when the daemon goes away mid-call. */
struct proxy_client;

/* Connect to the socket at address. -ENOENT / -ECONNREFUSED (nothing answers)
 * come with "cannot connect to the Strata daemon at PATH: ... — is `strata
 * serve` running?". */
int proxy_client_connect(const char *address, struct proxy_client **ret,
                         struct strata_error **ret_err);

/* Sends a GOAWAY and closes. Returns NULL. */
struct proxy_client *proxy_client_free(struct proxy_client *client);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct proxy_client *, proxy_client_free)

const char *proxy_client_address(const struct proxy_client *client);

/* Unary call on path ("/pkg.Service/Method"). On success *ret_resp is the
 * decoded response (free with protobuf_c_message_free_unpacked(*ret_resp,
 * NULL)). timeout_ms 0 = no deadline; otherwise also sent as grpc-timeout
 * and the call fails with -ETIMEDOUT when it passes. */
int proxy_client_unary(struct proxy_client *client, const char *path, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
                       unsigned timeout_ms, struct strata_error **ret_err);

/* Called once per response message of a server-streaming call, in order; msg
 * is freed after the callback returns. A negative return cancels the call
 * (RST_STREAM) and becomes proxy_client_stream()'s result; the callback may
 * set *ret_err to explain. */
typedef int (*proxy_client_msg_fn)(const ProtobufCMessage *msg, void *userdata,
                                   struct strata_error **ret_err);

/* Server-streaming call: returns 0 once the daemon finished with OK. */
int proxy_client_stream(struct proxy_client *client, const char *path, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, proxy_client_msg_fn fn,
                        void *userdata, unsigned timeout_ms, struct strata_error **ret_err);

/* --- strata.images.v1.Images (svc-images.c, pull.c) --- */

/* Where registry host configuration (containerd's certs.d layout) is read
 * when the daemon's config names none. */
#define PROXY_IMAGES_HOSTS_DIR "/etc/strata/certs.d"

struct proxy_images;

struct proxy_images_options {
	const char *hosts_dir;         /* NULL: PROXY_IMAGES_HOSTS_DIR */
	const char *docker_config_dir; /* NULL: $DOCKER_CONFIG or ~/.docker */
};

/* Strata's image service (pull, list, get, delete, prune) on content/ and
 * snapshotter/ (both must outlive the server). *ret is freed with
 * proxy_images_free() after proxy_server_run() returned. */
int proxy_images_register(struct proxy_server *server, struct content_store *content,
                          struct snap_store *snaps, const struct proxy_images_options *opts,
                          struct proxy_images **ret, struct strata_error **ret_err);
struct proxy_images *proxy_images_free(struct proxy_images *img);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct proxy_images *, proxy_images_free)
