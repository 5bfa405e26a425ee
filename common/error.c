/* SPDX-License-Identifier: Apache-2.0 */
/* Error objects and the errno <-> gRPC status mapping (see error.h). */
#include <stdarg.h>
#include <string.h>

#include "error.h"

static int error_vset(struct strata_error **ret_err, int code, int with_errno, const char *fmt,
                      va_list ap)
{
	struct strata_error *e;
	char *msg = NULL;

	if (code >= 0)
		code = -EIO;
	if (!ret_err || *ret_err)
		return code;

	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	if (msg && with_errno) {
		char *full = NULL;
		if (asprintf(&full, "%s: %s", msg, strerror(-code)) >= 0) {
			free(msg);
			msg = full;
		}
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		free(msg);
		return code;
	}
	e->code = code;
	e->msg = msg;
	*ret_err = e;
	return code;
}

int strata_error_set(struct strata_error **ret_err, int code, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = error_vset(ret_err, code, 0, fmt, ap);
	va_end(ap);
	return r;
}

int strata_error_set_errno(struct strata_error **ret_err, int code, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = error_vset(ret_err, code, 1, fmt, ap);
	va_end(ap);
	return r;
}

int strata_error_prefix(struct strata_error **err, int code, const char *fmt, ...)
{
	_cleanup_free_ char *ctx = NULL;
	char *full = NULL;
	va_list ap;

	if (!err)
		return code < 0 ? code : -EIO;
	if (!*err) {
		if (code >= 0)
			code = -EIO;
		(void)strata_error_set(err, code, "%s", strerror(-code));
		if (!*err)
			return code;
	}

	va_start(ap, fmt);
	if (vasprintf(&ctx, fmt, ap) < 0)
		ctx = NULL;
	va_end(ap);
	if (!ctx)
		return (*err)->code;

	if (asprintf(&full, "%s: %s", ctx, strata_error_message(*err)) < 0)
		return (*err)->code;
	free((*err)->msg);
	(*err)->msg = full;
	return (*err)->code;
}

void strata_error_propagate(struct strata_error **dst, struct strata_error **src)
{
	if (!src || !*src)
		return;
	if (dst && !*dst) {
		*dst = TAKE_PTR(*src);
		return;
	}
	*src = strata_error_free(*src);
}

const char *strata_error_message(const struct strata_error *err)
{
	if (!err)
		return "unknown error";
	if (err->msg)
		return err->msg;
	return strerror(-err->code);
}

struct strata_error *strata_error_free(struct strata_error *err)
{
	if (!err)
		return NULL;
	free(err->msg);
	free(err);
	return NULL;
}

enum grpc_status strata_errno_to_grpc(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return GRPC_OK;
	case ENOENT:
		return GRPC_NOT_FOUND;
	case EEXIST:
		return GRPC_ALREADY_EXISTS;
	case EINVAL:
		return GRPC_INVALID_ARGUMENT;
	case EAGAIN:
	case EBUSY:
	case ECONNREFUSED:
	case ENOTCONN:
		return GRPC_UNAVAILABLE;
	case ENOTEMPTY:
	case EBADMSG:
	case EBADFD:
		return GRPC_FAILED_PRECONDITION;
	case ENOSYS:
	case EOPNOTSUPP:
		return GRPC_UNIMPLEMENTED;
	case ERANGE:
		return GRPC_OUT_OF_RANGE;
	case ECANCELED:
		return GRPC_CANCELLED;
	case ETIMEDOUT:
		return GRPC_DEADLINE_EXCEEDED;
	case ENOSPC:
	case EMSGSIZE:
	case EDQUOT:
		return GRPC_RESOURCE_EXHAUSTED;
	case EPERM:
	case EACCES:
		return GRPC_PERMISSION_DENIED;
	default:
		return GRPC_UNKNOWN;
	}
}

int strata_grpc_to_errno(enum grpc_status status)
{
	switch (status) {
	case GRPC_OK:
		return 0;
	case GRPC_CANCELLED:
		return -ECANCELED;
	case GRPC_INVALID_ARGUMENT:
		return -EINVAL;
	case GRPC_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	case GRPC_NOT_FOUND:
		return -ENOENT;
	case GRPC_ALREADY_EXISTS:
		return -EEXIST;
	case GRPC_PERMISSION_DENIED:
	case GRPC_UNAUTHENTICATED:
		return -EACCES;
	case GRPC_RESOURCE_EXHAUSTED:
		return -ENOSPC;
	case GRPC_FAILED_PRECONDITION:
		return -EBADFD;
	case GRPC_OUT_OF_RANGE:
		return -ERANGE;
	case GRPC_UNIMPLEMENTED:
		return -ENOSYS;
	case GRPC_UNAVAILABLE:
		return -EAGAIN;
	case GRPC_ABORTED:
	case GRPC_INTERNAL:
	case GRPC_DATA_LOSS:
	case GRPC_UNKNOWN:
	default:
		return -EIO;
	}
}

const char *strata_grpc_status_name(enum grpc_status status)
{
	static const char *const names[] = {
	        [GRPC_OK] = "OK",
	        [GRPC_CANCELLED] = "Canceled",
	        [GRPC_UNKNOWN] = "Unknown",
	        [GRPC_INVALID_ARGUMENT] = "InvalidArgument",
	        [GRPC_DEADLINE_EXCEEDED] = "DeadlineExceeded",
	        [GRPC_NOT_FOUND] = "NotFound",
	        [GRPC_ALREADY_EXISTS] = "AlreadyExists",
	        [GRPC_PERMISSION_DENIED] = "PermissionDenied",
	        [GRPC_RESOURCE_EXHAUSTED] = "ResourceExhausted",
	        [GRPC_FAILED_PRECONDITION] = "FailedPrecondition",
	        [GRPC_ABORTED] = "Aborted",
	        [GRPC_OUT_OF_RANGE] = "OutOfRange",
	        [GRPC_UNIMPLEMENTED] = "Unimplemented",
	        [GRPC_INTERNAL] = "Internal",
	        [GRPC_UNAVAILABLE] = "Unavailable",
	        [GRPC_DATA_LOSS] = "DataLoss",
	        [GRPC_UNAUTHENTICATED] = "Unauthenticated",
	};
	if ((unsigned)status >= ELEMENTSOF(names))
		return "Unknown";
	return names[status];
}
