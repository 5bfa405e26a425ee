/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy/client.c against a real `strata serve` (started once for the group,
 * root and socket in a temp dir) and against a scripted nghttp2 server in a
 * thread for the wire cases a healthy daemon never produces: one-byte DATA
 * frames, percent-encoded trailers-only errors, a daemon dying mid-stream,
 * non-200 answers, RST_STREAM, and a daemon that never answers.
 */
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <nghttp2/nghttp2.h>

#include <cmocka.h>

#include "proxy.h"
#include "health.pb-c.h"
#include "snapshots.pb-c.h"

typedef Grpc__Health__V1__HealthCheckRequest HealthReq;
typedef Grpc__Health__V1__HealthCheckResponse HealthResp;

static char tmpdir[] = "/tmp/strata-client-test.XXXXXX";
static char sock_path[256];
static pid_t daemon_pid;

/* --- the real daemon --- */

static int start_daemon(void **state)
{
	const char *bin = getenv("STRATA_BIN");
	char root[300];

	(void)state;
	if (!bin) {
		fprintf(stderr, "STRATA_BIN is not set\n");
		return -1;
	}
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/run/strata.sock", tmpdir);
	snprintf(root, sizeof(root), "%s/root", tmpdir);
	daemon_pid = fork();
	if (daemon_pid < 0)
		return -1;
	if (daemon_pid == 0) {
		execl(bin, bin, "--root", root, "--address", sock_path, "--log-level", "warn",
		      "serve", (char *)NULL);
		_exit(127);
	}
	/* Ready when a connect succeeds and Health answers. */
	for (int i = 0; i < 100; i++) {
		_cleanup_(proxy_client_freep) struct proxy_client *c = NULL;
		HealthReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
		ProtobufCMessage *resp = NULL;

		if (proxy_client_connect(sock_path, &c, NULL) == 0 &&
		    proxy_client_unary(c, "/grpc.health.v1.Health/Check", &req.base,
		                       &grpc__health__v1__health_check_response__descriptor, &resp,
		                       1000, NULL) == 0) {
			protobuf_c_message_free_unpacked(resp, NULL);
			return 0;
		}
		usleep(100 * 1000);
	}
	fprintf(stderr, "strata serve did not come up at %s\n", sock_path);
	return -1;
}

static int stop_daemon(void **state)
{
	int status = 0;
	char cmd[400];

	(void)state;
	if (daemon_pid > 0) {
		(void)kill(daemon_pid, SIGTERM);
		(void)waitpid(daemon_pid, &status, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	(void)system(cmd);
	/* SIGTERM drains and exits 0: anything else is a daemon bug worth seeing. */
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static struct proxy_client *connect_or_die(const char *path)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct proxy_client *c = NULL;

	if (proxy_client_connect(path, &c, &err) < 0)
		fail_msg("connect %s: %s", path, strata_error_message(err));
	return c;
}

static void test_connect_missing(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct proxy_client *c = NULL;
	char path[300];

	(void)state;
	snprintf(path, sizeof(path), "%s/nothing-here.sock", tmpdir);
	assert_int_equal(proxy_client_connect(path, &c, &err), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(strata_error_message(err), "is `strata serve` running?"));
	assert_non_null(strstr(strata_error_message(err), path));
	assert_non_null(strstr(strata_error_message(err), "no socket"));
}

static void test_connect_refused(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct proxy_client *c = NULL;

	(void)state;
	/* A socket file nobody listens on: what a crashed daemon leaves. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", tmpdir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(proxy_client_connect(sa.sun_path, &c, &err), -ECONNREFUSED);
	assert_non_null(strstr(strata_error_message(err), "is `strata serve` running?"));
	assert_non_null(strstr(strata_error_message(err), "refused"));
}

static void test_health(void **state)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = connect_or_die(sock_path);
	_cleanup_error_ struct strata_error *err = NULL;
	HealthReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	(void)state;
	/* Several calls on one connection, one after the other. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(
		        proxy_client_unary(c, "/grpc.health.v1.Health/Check", &req.base,
		                           &grpc__health__v1__health_check_response__descriptor,
		                           &resp, 5000, &err),
		        0);
		assert_int_equal(((HealthResp *)resp)->status,
		                 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
		protobuf_c_message_free_unpacked(resp, NULL);
		resp = NULL;
	}
	assert_string_equal(proxy_client_address(c), sock_path);
}

static int prepare(struct proxy_client *c, const char *key, const char *label_value)
{
	_cleanup_error_ struct strata_error *err = NULL;
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry l =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT;
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry *lp[] = {&l};
	ProtobufCMessage *resp = NULL;
	int r;

	req.snapshotter = (char *)"strata";
	req.key = (char *)key;
	if (label_value) {
		l.key = (char *)"test/big";
		l.value = (char *)label_value;
		req.labels = lp;
		req.n_labels = 1;
	}
	r = proxy_client_unary(
	        c, "/containerd.services.snapshots.v1.Snapshots/Prepare", &req.base,
	        &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor, &resp,
	        10000, &err);
	if (r < 0)
		fprintf(stderr, "prepare %s: %s\n", key, strata_error_message(err));
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

static int remove_snapshot(struct proxy_client *c, const char *key)
{
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.snapshotter = (char *)"strata";
	req.key = (char *)key;
	r = proxy_client_unary(c, "/containerd.services.snapshots.v1.Snapshots/Remove", &req.base,
	                       &google__protobuf__empty__descriptor, &resp, 10000, NULL);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

struct list_count {
	size_t messages, infos;
	int stop_after; /* >0: fail the callback after that many messages */
};

static int count_infos(const ProtobufCMessage *msg, void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__ListSnapshotsResponse *r = (const void *)msg;
	struct list_count *lc = userdata;

	lc->messages++;
	lc->infos += r->n_info;
	if (lc->stop_after > 0 && lc->messages >= (size_t)lc->stop_after)
		return strata_error_set(ret_err, -EINTR, "enough");
	return 0;
}

static int list_snapshots(struct proxy_client *c, struct list_count *lc,
                          struct strata_error **ret_err)
{
	Containerd__Services__Snapshots__V1__ListSnapshotsRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;

	req.snapshotter = (char *)"strata";
	return proxy_client_stream(
	        c, "/containerd.services.snapshots.v1.Snapshots/List", &req.base,
	        &containerd__services__snapshots__v1__list_snapshots_response__descriptor,
	        count_infos, lc, 0, ret_err);
}

static void test_snapshots_list_stream(void **state)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = connect_or_die(sock_path);
	_cleanup_error_ struct strata_error *err = NULL;
	struct list_count lc = {0};
	char key[64];

	(void)state;
	for (int i = 0; i < 250; i++) {
		snprintf(key, sizeof(key), "list-%03d", i);
		assert_int_equal(prepare(c, key, NULL), 0);
	}
	assert_int_equal(list_snapshots(c, &lc, &err), 0);
	assert_int_equal(lc.infos, 250);
	/* The server batches (100 per message): several messages streamed. */
	assert_true(lc.messages >= 2);

	/* A callback that stops early cancels the call; the connection lives on. */
	struct list_count stop = {.stop_after = 1};
	assert_int_equal(list_snapshots(c, &stop, &err), -EINTR);
	assert_string_equal(strata_error_message(err), "enough");
	err = strata_error_free(err);
	struct list_count again = {0};
	assert_int_equal(list_snapshots(c, &again, &err), 0);
	assert_int_equal(again.infos, 250);

	for (int i = 0; i < 250; i++) {
		snprintf(key, sizeof(key), "list-%03d", i);
		assert_int_equal(remove_snapshot(c, key), 0);
	}
}

/* A 300 KiB response crosses many 16 KiB DATA frames. */
static void test_large_message(void **state)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = connect_or_die(sock_path);
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *big = malloc(300 * 1024 + 1);
	Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
	Containerd__Services__Snapshots__V1__StatSnapshotResponse *resp = NULL;

	(void)state;
	for (size_t i = 0; i < 300 * 1024; i++)
		big[i] = (char)('a' + i % 26);
	big[300 * 1024] = '\0';
	assert_int_equal(prepare(c, "big-labels", big), 0);
	req.snapshotter = (char *)"strata";
	req.key = (char *)"big-labels";
	assert_int_equal(
	        proxy_client_unary(
	                c, "/containerd.services.snapshots.v1.Snapshots/Stat", &req.base,
	                &containerd__services__snapshots__v1__stat_snapshot_response__descriptor,
	                (ProtobufCMessage **)&resp, 10000, &err),
	        0);
	assert_non_null(resp->info);
	assert_string_equal(resp->info->name, "big-labels");
	assert_int_equal(resp->info->n_labels, 1);
	assert_string_equal(resp->info->labels[0]->value, big);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	assert_int_equal(remove_snapshot(c, "big-labels"), 0);
}

static void test_stat_missing(void **state)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = connect_or_die(sock_path);
	_cleanup_error_ struct strata_error *err = NULL;
	Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	(void)state;
	req.snapshotter = (char *)"strata";
	req.key = (char *)"no-such-key";
	assert_int_equal(
	        proxy_client_unary(
	                c, "/containerd.services.snapshots.v1.Snapshots/Stat", &req.base,
	                &containerd__services__snapshots__v1__stat_snapshot_response__descriptor,
	                &resp, 10000, &err),
	        -ENOENT);
	assert_null(resp);
	/* containerd's wording, through grpc-message, quotes and all. */
	assert_string_equal(strata_error_message(err),
	                    "snapshot \"no-such-key\" does not exist: not found");
}

static void test_unknown_method(void **state)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = connect_or_die(sock_path);
	_cleanup_error_ struct strata_error *err = NULL;
	HealthReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	(void)state;
	assert_int_equal(proxy_client_unary(c, "/grpc.health.v1.Health/Nope", &req.base,
	                                    &grpc__health__v1__health_check_response__descriptor,
	                                    &resp, 5000, &err),
	                 -ENOSYS);
	assert_non_null(strstr(strata_error_message(err), "unknown method"));
	err = strata_error_free(err);
	assert_int_equal(proxy_client_unary(c, "/no.Such/Service", &req.base,
	                                    &grpc__health__v1__health_check_response__descriptor,
	                                    &resp, 5000, &err),
	                 -ENOSYS);
	assert_non_null(strstr(strata_error_message(err), "unknown service"));
}

/* --- a scripted server for the cases a healthy daemon does not produce --- */

enum fake_mode {
	FAKE_SPLIT,         /* two messages in one-byte DATA frames, then OK trailers */
	FAKE_TRAILERS_ONLY, /* NOT_FOUND with a percent-encoded message, no body */
	FAKE_DIE,           /* one message and half another, then close the socket */
	FAKE_HTTP_503,      /* :status 503 and nothing else */
	FAKE_RST,           /* RST_STREAM(INTERNAL_ERROR) */
	FAKE_HANG,          /* never answer */
	FAKE_EOF,           /* close as soon as the request arrives */
	FAKE_GOAWAY,        /* GOAWAY (draining), then answer like FAKE_SPLIT */
};

struct fake {
	enum fake_mode mode;
	char path[100];
	int listen_fd, fd;
	pthread_t thread;
	nghttp2_session *session;
	uint8_t body[64];
	size_t body_len, body_off;
	bool die; /* close once everything queued is written */
	int stop_pipe[2];
};

static ssize_t fake_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct fake *f = user_data;
	size_t n;

	(void)session;
	(void)source;
	if (f->body_off == f->body_len) {
		if (f->mode == FAKE_DIE) {
			f->die = true;
			return NGHTTP2_ERR_DEFERRED;
		}
		nghttp2_nv tr[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		(void)nghttp2_submit_trailer(session, stream_id, tr, 1);
		return 0;
	}
	n = f->mode == FAKE_SPLIT ? 1 : MIN(length, f->body_len - f->body_off);
	memcpy(buf, f->body + f->body_off, n);
	f->body_off += n;
	return (ssize_t)n;
}

static size_t frame_health(uint8_t *out, int status)
{
	HealthResp m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	size_t len;

	m.status = status;
	len = protobuf_c_message_pack(&m.base, out + 5);
	out[0] = 0;
	out[1] = out[2] = out[3] = 0;
	out[4] = (uint8_t)len;
	return 5 + len;
}

static int fake_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct fake *f = user_data;
	int32_t id = frame->hd.stream_id;

#define H(n, v)                                                                 \
	{                                                                       \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0 \
	}
	if (id == 0 || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
	    (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
		return 0;
	switch (f->mode) {
	case FAKE_GOAWAY:
		(void)nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, NULL,
		                            0);
		f->mode = FAKE_SPLIT;
		/* fall through */
	case FAKE_SPLIT:
	case FAKE_DIE: {
		nghttp2_nv h[] = {H(":status", "200"), H("content-type", "application/grpc")};
		nghttp2_data_provider prd = {.read_callback = fake_read};

		f->body_len = frame_health(f->body, 1);
		if (f->mode == FAKE_SPLIT) {
			f->body_len += frame_health(f->body + f->body_len, 2);
		} else {
			/* Half of a second message. */
			size_t n = frame_health(f->body + f->body_len, 2);
			f->body_len += n / 2;
		}
		(void)nghttp2_submit_response(session, id, h, ELEMENTSOF(h), &prd);
		break;
	}
	case FAKE_TRAILERS_ONLY: {
		nghttp2_nv h[] = {H(":status", "200"), H("content-type", "application/grpc"),
		                  H("grpc-status", "5"),
		                  H("grpc-message", "image %22x%22: caf%C3%A9 not found %zz 100%")};
		(void)nghttp2_submit_response(session, id, h, ELEMENTSOF(h), NULL);
		break;
	}
	case FAKE_HTTP_503: {
		nghttp2_nv h[] = {H(":status", "503")};
		(void)nghttp2_submit_response(session, id, h, ELEMENTSOF(h), NULL);
		break;
	}
	case FAKE_RST:
		(void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
		                                NGHTTP2_INTERNAL_ERROR);
		break;
	case FAKE_EOF:
		f->die = true;
		break;
	case FAKE_HANG:
		break;
	}
#undef H
	return 0;
}

static void *fake_thread(void *arg)
{
	struct fake *f = arg;
	nghttp2_session_callbacks *cb;
	uint8_t buf[16384];

	f->fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (f->fd < 0)
		return NULL;
	(void)nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, fake_on_frame_recv);
	(void)nghttp2_session_server_new(&f->session, cb, f);
	nghttp2_session_callbacks_del(cb);
	(void)nghttp2_submit_settings(f->session, NGHTTP2_FLAG_NONE, NULL, 0);
	for (;;) {
		const uint8_t *out;
		ssize_t n;

		while ((n = nghttp2_session_mem_send(f->session, &out)) > 0)
			if (send(f->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
				goto done;
		if (f->die)
			goto done;
		struct pollfd p[] = {{.fd = f->fd, .events = POLLIN},
		                     {.fd = f->stop_pipe[0], .events = POLLIN}};
		if (poll(p, 2, 10000) <= 0 || p[1].revents)
			goto done;
		n = recv(f->fd, buf, sizeof(buf), 0);
		if (n <= 0 || nghttp2_session_mem_recv(f->session, buf, (size_t)n) < 0)
			goto done;
	}
done:
	f->fd = safe_close(f->fd);
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->fd = -1;
	assert_true((size_t)snprintf(f->path, sizeof(f->path), "%s/fake-%d.sock", tmpdir,
	                             (int)mode) < sizeof(f->path));
	(void)unlink(f->path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 1), 0);
	assert_int_equal(pipe2(f->stop_pipe, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_thread, f), 0);
}

static void fake_stop(struct fake *f)
{
	(void)write(f->stop_pipe[1], "x", 1);
	(void)pthread_join(f->thread, NULL);
	nghttp2_session_del(f->session);
	(void)safe_close(f->listen_fd);
	(void)safe_close(f->stop_pipe[0]);
	(void)safe_close(f->stop_pipe[1]);
	(void)unlink(f->path);
}

struct collected {
	int statuses[8];
	size_t n;
};

static int collect(const ProtobufCMessage *msg, void *userdata, struct strata_error **ret_err)
{
	struct collected *c = userdata;

	(void)ret_err;
	if (c->n < ELEMENTSOF(c->statuses))
		c->statuses[c->n++] = ((const HealthResp *)msg)->status;
	return 0;
}

static int fake_stream(struct fake *f, struct collected *got, unsigned timeout_ms,
                       struct strata_error **ret_err)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = connect_or_die(f->path);
	HealthReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

	return proxy_client_stream(c, "/grpc.health.v1.Health/Watch", &req.base,
	                           &grpc__health__v1__health_check_response__descriptor, collect,
	                           got, timeout_ms, ret_err);
}

static void test_fake_split_frames(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_SPLIT);
	assert_int_equal(fake_stream(&f, &got, 5000, &err), 0);
	fake_stop(&f);
	assert_int_equal(got.n, 2);
	assert_int_equal(got.statuses[0], 1);
	assert_int_equal(got.statuses[1], 2);
}

static void test_fake_trailers_only(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_TRAILERS_ONLY);
	assert_int_equal(fake_stream(&f, &got, 5000, &err), -ENOENT);
	fake_stop(&f);
	assert_int_equal(got.n, 0);
	/* Valid escapes decoded, invalid ones kept as they came. */
	assert_string_equal(strata_error_message(err),
	                    "image \"x\": caf\xc3\xa9 not found %zz 100%");
}

static void test_fake_dies_mid_stream(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_DIE);
	assert_int_equal(fake_stream(&f, &got, 5000, &err), -ECONNRESET);
	fake_stop(&f);
	/* The complete message was delivered before the connection went. */
	assert_int_equal(got.n, 1);
	assert_non_null(strstr(strata_error_message(err), "closed the connection"));
	assert_non_null(strstr(strata_error_message(err), f.path));
}

static void test_fake_eof_before_answer(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_EOF);
	assert_int_equal(fake_stream(&f, &got, 5000, &err), -ECONNRESET);
	fake_stop(&f);
	assert_non_null(strstr(strata_error_message(err), "did it exit?"));
}

static void test_fake_http_error(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_HTTP_503);
	assert_int_equal(fake_stream(&f, &got, 5000, &err), -EPROTO);
	fake_stop(&f);
	assert_non_null(strstr(strata_error_message(err), "HTTP 503"));
}

static void test_fake_rst(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_RST);
	assert_int_equal(fake_stream(&f, &got, 5000, &err), -ECONNRESET);
	fake_stop(&f);
	assert_non_null(strstr(strata_error_message(err), "reset the call"));
}

/* A draining daemon finishes the calls it accepted; new ones fail at once. */
static void test_fake_goaway(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	HealthReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	struct collected got = {0};
	struct proxy_client *c;
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_GOAWAY);
	c = connect_or_die(f.path);
	assert_int_equal(proxy_client_stream(c, "/grpc.health.v1.Health/Watch", &req.base,
	                                     &grpc__health__v1__health_check_response__descriptor,
	                                     collect, &got, 5000, &err),
	                 0);
	assert_int_equal(got.n, 2);
	assert_int_equal(proxy_client_stream(c, "/grpc.health.v1.Health/Watch", &req.base,
	                                     &grpc__health__v1__health_check_response__descriptor,
	                                     collect, &got, 5000, &err),
	                 -ECONNRESET);
	assert_non_null(strstr(strata_error_message(err), "shutting down"));
	c = proxy_client_free(c);
	fake_stop(&f);
}

static void test_fake_timeout(void **state)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct collected got = {0};
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_HANG);
	assert_int_equal(fake_stream(&f, &got, 200, &err), -ETIMEDOUT);
	fake_stop(&f);
	assert_non_null(strstr(strata_error_message(err), "deadline exceeded"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_connect_missing),
	        cmocka_unit_test(test_connect_refused),
	        cmocka_unit_test(test_health),
	        cmocka_unit_test(test_snapshots_list_stream),
	        cmocka_unit_test(test_large_message),
	        cmocka_unit_test(test_stat_missing),
	        cmocka_unit_test(test_unknown_method),
	        cmocka_unit_test(test_fake_split_frames),
	        cmocka_unit_test(test_fake_trailers_only),
	        cmocka_unit_test(test_fake_dies_mid_stream),
	        cmocka_unit_test(test_fake_eof_before_answer),
	        cmocka_unit_test(test_fake_http_error),
	        cmocka_unit_test(test_fake_rst),
	        cmocka_unit_test(test_fake_goaway),
	        cmocka_unit_test(test_fake_timeout),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, start_daemon, stop_daemon);
}
