/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal blocking gRPC client for the benchmark: one HTTP/2 connection
 * (nghttp2, h2c with prior knowledge) over a unix socket, driven by the one
 * thread that owns it. Not part of the daemon; no TLS, no compression, no
 * retries. A connection is not thread-safe: each benchmark thread has its own.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

struct h2c_conn;
struct h2c_stream;

/* Connect to a unix socket. metadata: NULL, or a NULL-terminated list of
 * lowercase name, value pairs sent on every call (containerd-namespace,
 * containerd-lease); copied. */
int h2c_connect(const char *socket_path, const char *const *metadata, struct h2c_conn **ret);
void h2c_close(struct h2c_conn *c);

/* Unary call. On gRPC status 0 returns 0 and *ret (free with
 * protobuf_c_message_free_unpacked; resp_desc may be NULL to ignore the
 * body); on a non-zero gRPC status returns that status (> 0) with the
 * message in h2c_last_error(); on transport failure returns -errno. */
int h2c_unary(struct h2c_conn *c, const char *path, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret);

/* Unary call with a pre-encoded request; the response body is ignored. */
int h2c_unary_raw(struct h2c_conn *c, const char *path, const uint8_t *req, size_t req_len);

/* Bidi streaming: open, then alternate send/recv, then close_send and
 * finish (which returns the gRPC status as h2c_unary does). */
int h2c_stream_open(struct h2c_conn *c, const char *path, struct h2c_stream **ret);
/* Queue one message (sent by the next recv/close_send/finish). */
int h2c_stream_send(struct h2c_stream *s, const ProtobufCMessage *msg);
/* Send one message whose protobuf encoding is head (len head_len) followed by
 * tail (len tail_len); the tail (a big bytes field) is sent without copying
 * and must stay valid until the next h2c_* call returns. */
int h2c_stream_send_raw(struct h2c_stream *s, const uint8_t *head, size_t head_len,
                        const uint8_t *tail, size_t tail_len);
/* 1 and *ret, 0 at end of stream, -errno on transport failure. */
int h2c_stream_recv(struct h2c_stream *s, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **ret);
int h2c_stream_close_send(struct h2c_stream *s);
/* Wait for the trailers and free the stream: 0, grpc status > 0, or -errno. */
int h2c_stream_finish(struct h2c_stream *s);

const char *h2c_last_error(struct h2c_conn *c);
