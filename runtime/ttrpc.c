/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A ttrpc client (github.com/containerd/ttrpc), the protocol containerd
 * speaks to its shims.
 *
 * Wire: each message is a 10-byte header (uint32 BE payload length, uint32
 * BE stream id, uint8 type 1=request 2=response, uint8 flags 0) and a
 * protobuf payload of at most 4 MiB: a Request {service, method, payload,
 * timeout_nano, metadata} or a Response {google.rpc.Status status, payload}.
 * Client streams are odd, from 1, stepping by 2.
 *
 * Concurrency: calls from several threads share the connection. Writers
 * serialise on write_lock. Reading is "leader/followers": the first waiting
 * caller reads frames off the socket and hands each response to the caller
 * whose stream id it carries; the others sleep on `cond`. A response whose
 * caller already gave up (timed out) is dropped by id, so a late reply can
 * never be mistaken for the answer to a newer call.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "runtime.h"
#include "rt-ttrpc.pb-c.h"

#define HEADER_LEN    10
#define TYPE_REQUEST  1
#define TYPE_RESPONSE 2
/* Once a frame has begun, its remainder must follow promptly. */
#define FRAME_TIMEOUT_MS 10000

struct pending {
	uint32_t id;
	bool done;
	int err;          /* transport error, or 0 */
	uint8_t *payload; /* the raw Response message */
	size_t len;
	struct pending *next;
};

struct rt_ttrpc {
	int fd;
	/* Protects everything below. Never held across socket I/O. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t next_id;
	bool reading; /* a caller is the reader */
	int dead;     /* -errno once the connection broke */
	struct pending *pending;
	/* Serialises whole-frame writes; taken without `lock` held. */
	pthread_mutex_t write_lock;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rt_ttrpc_new(int fd, struct rt_ttrpc **ret)
{
	struct rt_ttrpc *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;

	if (!c) {
		safe_close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->next_id = 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->write_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	*ret = c;
	return 0;
}

int rt_ttrpc_connect(const char *address, struct rt_ttrpc **ret, struct strata_error **ret_err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = address;
	socklen_t salen;
	int fd;

	if (!address || !*address)
		return strata_error_set(ret_err, -EINVAL, "ttrpc: empty address");
	if (strncmp(path, "unix://", 7) == 0)
		path += 7;
	if (strlen(path) >= sizeof(sa.sun_path))
		return strata_error_set(ret_err, -ENAMETOOLONG, "ttrpc: address \"%s\" too long",
		                        address);
	memcpy(sa.sun_path, path, strlen(path));
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	else
		salen++;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "ttrpc: socket");
	if (connect(fd, (struct sockaddr *)&sa, salen) < 0) {
		int r = negative_errno();
		safe_close(fd);
		return strata_error_set_errno(ret_err, r, "ttrpc: connect to \"%s\"", address);
	}
	return rt_ttrpc_new(fd, ret);
}

static void pending_free_payloads(struct pending *p)
{
	free(p->payload);
	p->payload = NULL;
}

struct rt_ttrpc *rt_ttrpc_free(struct rt_ttrpc *c)
{
	if (!c)
		return NULL;
	safe_close(c->fd);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->write_lock);
	pthread_cond_destroy(&c->cond);
	free(c);
	return NULL;
}

/* Write all of buf, waiting for POLLOUT up to deadline (< 0 = none). */
static int write_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return negative_errno();
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		int t = deadline < 0 ? -1 : (int)MAX(deadline - now_ms(), (int64_t)0);
		int r = poll(&pfd, 1, t);
		if (r < 0 && errno != EINTR)
			return negative_errno();
		if (r == 0)
			return -ETIMEDOUT;
	}
	return 0;
}

/* Read exactly len bytes; waits up to deadline for each chunk. */
static int read_all(int fd, uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int t = deadline < 0 ? -1 : (int)MAX(deadline - now_ms(), (int64_t)0);
		int r = poll(&pfd, 1, t);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return negative_errno();
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read one frame. Waits for its first byte until deadline; the rest must
 * follow within FRAME_TIMEOUT_MS or the stream is unusable. Oversized
 * payloads are skipped (as ttrpc's server does) and reported as -EMSGSIZE
 * for that stream id. */
static int read_frame(int fd, int64_t deadline, uint32_t *ret_id, uint8_t *ret_type,
                      uint8_t **ret_payload, size_t *ret_len)
{
	uint8_t h[HEADER_LEN];
	_cleanup_free_ uint8_t *payload = NULL;
	uint32_t len;
	int r;

	r = read_all(fd, h, 1, deadline);
	if (r < 0)
		return r;
	r = read_all(fd, h + 1, HEADER_LEN - 1, now_ms() + FRAME_TIMEOUT_MS);
	if (r < 0)
		return r == -ETIMEDOUT ? -EPROTO : r;
	len = get_be32(h);
	*ret_id = get_be32(h + 4);
	*ret_type = h[8];
	if (len > RT_TTRPC_MAX_MESSAGE) {
		uint8_t sink[4096];
		while (len > 0) {
			size_t n = MIN((size_t)len, sizeof(sink));
			r = read_all(fd, sink, n, now_ms() + FRAME_TIMEOUT_MS);
			if (r < 0)
				return r == -ETIMEDOUT ? -EPROTO : r;
			len -= (uint32_t)n;
		}
		*ret_payload = NULL;
		*ret_len = 0;
		return -EMSGSIZE;
	}
	payload = malloc(len ? len : 1);
	if (!payload)
		return -ENOMEM;
	r = read_all(fd, payload, len, now_ms() + FRAME_TIMEOUT_MS);
	if (r < 0)
		return r == -ETIMEDOUT ? -EPROTO : r;
	*ret_payload = TAKE_PTR(payload);
	*ret_len = len;
	return 0;
}

static void unlink_pending(struct rt_ttrpc *c, struct pending *p)
{
	for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

/* Deliver a frame to its caller (lock held). Unknown ids are stale replies
 * to calls that timed out: dropped. */
static void dispatch(struct rt_ttrpc *c, uint32_t id, int err, uint8_t *payload, size_t len)
{
	for (struct pending *p = c->pending; p; p = p->next)
		if (p->id == id && !p->done) {
			p->done = true;
			p->err = err;
			p->payload = payload;
			p->len = len;
			return;
		}
	log_debug("ttrpc: dropping response for unknown stream %u", id);
	free(payload);
}

static int cond_wait_until(struct rt_ttrpc *c, int64_t deadline)
{
	if (deadline < 0)
		return pthread_cond_wait(&c->cond, &c->lock);
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	return pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/* Wait for p's response, reading the socket when nobody else is. */
static int await_response(struct rt_ttrpc *c, struct pending *p, int64_t deadline)
{
	for (;;) {
		if (p->done)
			return p->err;
		if (c->dead)
			return c->dead;
		if (deadline >= 0 && now_ms() >= deadline)
			return -ETIMEDOUT;
		if (c->reading) {
			(void)cond_wait_until(c, deadline);
			continue;
		}
		c->reading = true;
		pthread_mutex_unlock(&c->lock);

		uint32_t id = 0;
		uint8_t type = 0;
		uint8_t *payload = NULL;
		size_t len = 0;
		int r = read_frame(c->fd, deadline, &id, &type, &payload, &len);

		pthread_mutex_lock(&c->lock);
		c->reading = false;
		if (r >= 0 && type != TYPE_RESPONSE) {
			log_debug("ttrpc: ignoring frame of type %u on stream %u", type, id);
			free(payload);
		} else if (r >= 0 || r == -EMSGSIZE) {
			dispatch(c, id, r, payload, len);
		} else if (r != -ETIMEDOUT) {
			c->dead = r;
		}
		pthread_cond_broadcast(&c->cond);
	}
}

static int status_to_error(const Rtpb__Status *st, const char *service, const char *method,
                           struct strata_error **ret_err)
{
	int r = strata_grpc_to_errno((enum grpc_status)st->code);
	if (r >= 0)
		r = -EIO;
	return strata_error_set(ret_err, r, "%s",
	                        st->message && *st->message
	                                ? st->message
	                                : strata_grpc_status_name((enum grpc_status)st->code));
}

int rt_ttrpc_call(struct rt_ttrpc *c, const char *service, const char *method, const void *req,
                  size_t req_len, int64_t timeout_ms, void **ret_payload, size_t *ret_len,
                  struct strata_error **ret_err)
{
	Rtpb__Request rq = RTPB__REQUEST__INIT;
	_cleanup_free_ uint8_t *frame = NULL;
	struct pending p = {0};
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	size_t n;
	int r;

	rq.service = (char *)service;
	rq.method = (char *)method;
	rq.payload.data = (uint8_t *)req;
	rq.payload.len = req_len;
	if (timeout_ms > 0)
		rq.timeout_nano = timeout_ms * 1000000;
	n = rtpb__request__get_packed_size(&rq);
	if (n > RT_TTRPC_MAX_MESSAGE)
		return strata_error_set(ret_err, -EMSGSIZE,
		                        "ttrpc %s/%s: request of %zu bytes exceeds the 4 MiB limit",
		                        service, method, n);
	frame = malloc(HEADER_LEN + n);
	if (!frame)
		return -ENOMEM;
	rtpb__request__pack(&rq, frame + HEADER_LEN);
	put_be32(frame, (uint32_t)n);
	frame[8] = TYPE_REQUEST;
	frame[9] = 0;

	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		r = c->dead;
		pthread_mutex_unlock(&c->lock);
		return strata_error_set_errno(ret_err, r, "ttrpc %s/%s: connection lost", service,
		                              method);
	}
	p.id = c->next_id;
	c->next_id += 2;
	if (c->next_id > 0x7fffffffu) /* wrap, staying odd */
		c->next_id = 1;
	p.next = c->pending;
	c->pending = &p;
	pthread_mutex_unlock(&c->lock);

	put_be32(frame + 4, p.id);
	pthread_mutex_lock(&c->write_lock);
	r = write_all(c->fd, frame, HEADER_LEN + n, deadline);
	pthread_mutex_unlock(&c->write_lock);

	pthread_mutex_lock(&c->lock);
	if (r < 0 && r != -ETIMEDOUT)
		c->dead = r;
	if (r >= 0)
		r = await_response(c, &p, deadline);
	unlink_pending(c, &p);
	pthread_mutex_unlock(&c->lock);

	if (r < 0) {
		pending_free_payloads(&p);
		if (r == -ETIMEDOUT)
			return strata_error_set(ret_err, r,
			                        "ttrpc %s/%s: timed out after %" PRId64 " ms",
			                        service, method, timeout_ms);
		if (r == -EMSGSIZE)
			return strata_error_set(ret_err, r,
			                        "ttrpc %s/%s: response exceeds the 4 MiB limit",
			                        service, method);
		return strata_error_set_errno(ret_err, r, "ttrpc %s/%s", service, method);
	}

	Rtpb__Response *resp = rtpb__response__unpack(NULL, p.len, p.payload);
	pending_free_payloads(&p);
	if (!resp)
		return strata_error_set(ret_err, -EBADMSG, "ttrpc %s/%s: malformed response",
		                        service, method);
	if (resp->status && resp->status->code != 0) {
		r = status_to_error(resp->status, service, method, ret_err);
		rtpb__response__free_unpacked(resp, NULL);
		return r;
	}
	if (ret_payload) {
		void *out = NULL;
		if (resp->payload.len > 0) {
			out = malloc(resp->payload.len);
			if (!out) {
				rtpb__response__free_unpacked(resp, NULL);
				return -ENOMEM;
			}
			memcpy(out, resp->payload.data, resp->payload.len);
		}
		*ret_payload = out;
		if (ret_len)
			*ret_len = resp->payload.len;
	}
	rtpb__response__free_unpacked(resp, NULL);
	return 0;
}
