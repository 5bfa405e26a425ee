/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small gRPC server for the proxy/ tests: proxy/'s server with the
 * strata.test.v1.Test service (test.proto) and grpc.health.v1.
 *
 * usage: proxy-test-server SOCKET [DRAIN_MS]
 * Prints "ready" on stdout once listening; SIGTERM/SIGINT stop it (drain,
 * exit 0). With PROXY_TEST_ROOT=DIR it also serves containerd's Snapshots and
 * Content services on stores under DIR.
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "proxy.h"
#include "test.pb-c.h"
#include "content.h"
#include "snapshotter.h"

/* Read by the signal handler: set before handlers are installed, cleared
 * before the server is freed (a late SIGTERM then stops nothing). */
static struct proxy_server *volatile server;
static atomic_long n_cancelled, n_deadline, n_active, n_completed, n_cancel_cb;

static void on_signal(int sig)
{
	proxy_server_stop(server);
}

static void count_cancel(int r)
{
	if (r == -ETIMEDOUT)
		atomic_fetch_add(&n_deadline, 1);
	else if (r == -ECANCELED)
		atomic_fetch_add(&n_cancelled, 1);
}

static void on_cancel(void *userdata)
{
	atomic_fetch_add(&n_cancel_cb, 1);
}

/* Sleep ms, waking every 5 ms to notice cancellation. */
static int sleep_cancellable(struct proxy_call *call, int ms)
{
	for (int slept = 0; slept < ms; slept += 5) {
		int r = proxy_call_cancelled(call);
		if (r < 0)
			return r;
		(void)nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
	}
	return proxy_call_cancelled(call);
}

static int echo(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                struct strata_error **ret_err)
{
	const Strata__Test__V1__EchoRequest *req = (const void *)request;
	Strata__Test__V1__EchoResponse resp = STRATA__TEST__V1__ECHO_RESPONSE__INIT;
	int r;

	atomic_fetch_add(&n_active, 1);
	proxy_call_on_cancel(call, on_cancel, NULL);
	r = sleep_cancellable(call, req->sleep_ms);
	proxy_call_on_cancel(call, NULL, NULL);
	if (r < 0) {
		count_cancel(r);
		goto out;
	}
	if (req->errno_code) {
		r = strata_error_set(ret_err, -req->errno_code, "%s", req->error_message);
		goto out;
	}
	resp.message = req->message;
	resp.payload = req->payload;
	resp.seq = req->seq;
	r = proxy_call_send(call, &resp.base);
out:
	atomic_fetch_sub(&n_active, 1);
	atomic_fetch_add(&n_completed, 1);
	return r;
}

static int stream(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                  struct strata_error **ret_err)
{
	const Strata__Test__V1__EchoRequest *req = (const void *)request;
	Strata__Test__V1__EchoResponse resp = STRATA__TEST__V1__ECHO_RESPONSE__INIT;
	_cleanup_free_ uint8_t *payload = calloc(1, (size_t)MAX(req->size, 1));
	int r = 0;

	if (!payload)
		return -ENOMEM;
	atomic_fetch_add(&n_active, 1);
	resp.message = req->message;
	resp.payload.data = payload;
	resp.payload.len = (size_t)MAX(req->size, 0);
	for (int i = 0; i < req->count; i++) {
		resp.seq = i;
		memset(payload, 'a' + i % 26, resp.payload.len);
		r = proxy_call_send(call, &resp.base);
		if (r < 0)
			break;
		r = sleep_cancellable(call, req->sleep_ms);
		if (r < 0)
			break;
	}
	count_cancel(r);
	atomic_fetch_sub(&n_active, 1);
	atomic_fetch_add(&n_completed, 1);
	return r;
}

static int bidi(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                struct strata_error **ret_err)
{
	int r;

	atomic_fetch_add(&n_active, 1);
	for (;;) {
		Strata__Test__V1__EchoResponse resp = STRATA__TEST__V1__ECHO_RESPONSE__INIT;
		Strata__Test__V1__EchoRequest *req;

		r = proxy_call_recv(call, (ProtobufCMessage **)&req);
		if (r <= 0)
			break;
		if (req->errno_code) {
			r = strata_error_set(ret_err, -req->errno_code, "%s", req->error_message);
			protobuf_c_message_free_unpacked(&req->base, NULL);
			break;
		}
		resp.message = req->message;
		resp.payload = req->payload;
		resp.seq = req->seq;
		r = proxy_call_send(call, &resp.base);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		if (r < 0)
			break;
	}
	count_cancel(r);
	atomic_fetch_sub(&n_active, 1);
	atomic_fetch_add(&n_completed, 1);
	return r;
}

static int stats(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                 struct strata_error **ret_err)
{
	Strata__Test__V1__StatsResponse resp = STRATA__TEST__V1__STATS_RESPONSE__INIT;

	resp.cancelled = atomic_load(&n_cancelled);
	resp.deadline = atomic_load(&n_deadline);
	resp.active = atomic_load(&n_active);
	resp.completed = atomic_load(&n_completed);
	resp.cancel_callbacks = atomic_load(&n_cancel_cb);
	return proxy_call_send(call, &resp.base);
}

static const struct proxy_method test_methods[] = {
        {"Echo", PROXY_UNARY, &strata__test__v1__echo_request__descriptor, echo},
        {"Stream", PROXY_SERVER_STREAM, &strata__test__v1__echo_request__descriptor, stream},
        {"Bidi", PROXY_BIDI_STREAM, &strata__test__v1__echo_request__descriptor, bidi},
        {"Stats", PROXY_UNARY, &strata__test__v1__stats_request__descriptor, stats},
};

int main(int argc, char **argv)
{
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_(strata_meta_closep) struct strata_meta *meta = NULL;
	_cleanup_(content_store_closep) struct content_store *content = NULL;
	_cleanup_(snap_store_closep) struct snap_store *snaps = NULL;
	const char *root = getenv("PROXY_TEST_ROOT");
	struct proxy_server_config cfg = {0};
	struct sigaction sa = {.sa_handler = on_signal};
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s SOCKET [DRAIN_MS]\n", argv[0]);
		return 2;
	}
	cfg.address = argv[1];
	if (argc > 2)
		cfg.drain_timeout_ms = (unsigned)atoi(argv[2]);
	if (getenv("PROXY_TEST_DEBUG"))
		log_set_level(LOG_LEVEL_DEBUG);

	{
		struct proxy_server *s = NULL;
		r = proxy_server_new(&cfg, &s, &err);
		if (r < 0) {
			fprintf(stderr, "proxy-test-server: %s\n", strata_error_message(err));
			return 1;
		}
		server = s;
	}
	r = proxy_server_register_service(server, "strata.test.v1.Test", test_methods,
	                                  ELEMENTSOF(test_methods), NULL, &err);
	if (r < 0) {
		fprintf(stderr, "proxy-test-server: %s\n", strata_error_message(err));
		return 1;
	}
	if (root) {
		_cleanup_free_ char *metadir = path_join(root, "meta");

		r = path_mkdir_p(metadir, 0700);
		if (r >= 0)
			r = strata_meta_open(metadir, NULL, &meta, &err);
		if (r >= 0)
			r = content_store_open(root, meta, NULL, &content, &err);
		if (r >= 0)
			r = snap_store_open(root, meta, NULL, &snaps, &err);
		if (r >= 0)
			r = proxy_content_register(server, content, &err);
		if (r >= 0)
			r = proxy_snapshots_register(server, snaps, &err);
		if (r < 0) {
			fprintf(stderr, "proxy-test-server: %s\n", strata_error_message(err));
			return 1;
		}
	}
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)proxy_server_notify_ready();
	printf("ready\n");
	fflush(stdout);

	r = proxy_server_run(server);
	{
		struct proxy_server *s = server;
		server = NULL; /* before the free: a late signal must not touch it */
		(void)proxy_server_free(s);
	}
	if (r < 0) {
		fprintf(stderr, "proxy-test-server: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
