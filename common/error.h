/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The error convention (see docs/architecture.md, "Errors").
 *
 * Every function returns int: >= 0 success, -errno failure. Control-plane
 * functions (pull, unpack, run, RPC handlers) also take a trailing
 * `struct strata_error **ret_err` that receives a human message. Callers add
 * context on the way up with strata_error_prefix(), so a message reads like
 * "pull \"x\": layer sha256:...: write \"/path\": No space left on device".
 *
 * ret_err may be NULL (the caller only wants the code). An error object is set
 * at most once: setting over an existing one keeps the first (innermost) cause
 * and frees nothing the caller still owns.
 *
 * errno values double as error classes, mapped to containerd's errdefs and to
 * gRPC status codes by strata_errno_to_grpc():
 *   ENOENT NotFound, EEXIST AlreadyExists, EINVAL InvalidArgument,
 *   EAGAIN/EBUSY Unavailable, ENOTEMPTY/EBADMSG/EBADFD FailedPrecondition,
 *   ENOSYS/EOPNOTSUPP Unimplemented, ERANGE OutOfRange, ECANCELED Canceled,
 *   ETIMEDOUT DeadlineExceeded, ENOSPC/EMSGSIZE ResourceExhausted,
 *   EPERM/EACCES PermissionDenied, anything else Unknown.
 */
#pragma once

#include "macro.h"

struct strata_error {
	int code; /* negative errno, never 0 */
	char *msg;
};

/* Set *ret_err (if ret_err and *ret_err is still NULL) and return code
 * (which must be negative). The message is formatted with printf rules. */
int strata_error_set(struct strata_error **ret_err, int code, const char *fmt, ...) _printf_(3, 4);

/* Like strata_error_set() with ": strerror(-code)" appended. */
int strata_error_set_errno(struct strata_error **ret_err, int code, const char *fmt, ...)
        _printf_(3, 4);

/* Prefix context ("ctx: old message") to an existing error; if *err is NULL,
 * creates one from code using strerror. Returns the error's code (or code when
 * err is NULL). */
int strata_error_prefix(struct strata_error **err, int code, const char *fmt, ...) _printf_(3, 4);

/* Move an error from src into dst (dst keeps an existing one). */
void strata_error_propagate(struct strata_error **dst, struct strata_error **src);

/* The message, or strerror of the code when no message was set. */
const char *strata_error_message(const struct strata_error *err);

struct strata_error *strata_error_free(struct strata_error *err);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct strata_error *, strata_error_free)
#define _cleanup_error_ _cleanup_(strata_error_freep)

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum grpc_status {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* Map a negative (or positive) errno to a gRPC status, and back. */
enum grpc_status strata_errno_to_grpc(int err);
int strata_grpc_to_errno(enum grpc_status status);
const char *strata_grpc_status_name(enum grpc_status status);
