/* SPDX-License-Identifier: Apache-2.0 */
/* ttrpc client framing against an in-test fake server on a socketpair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "runtime.h"
#include "rt-ttrpc.pb-c.h"

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct frame {
	uint32_t id;
	uint8_t type, flags;
	Rtpb__Request *req;
};

/* Server side: read one request frame. */
static void read_request(int fd, struct frame *f)
{
	uint8_t h[10];
	assert_int_equal(loop_read(fd, h, 10), 10);
	uint32_t len = get32(h);
	uint8_t *buf = malloc(len + 1);
	assert_int_equal(loop_read(fd, buf, len), (ssize_t)len);
	f->id = get32(h + 4);
	f->type = h[8];
	f->flags = h[9];
	f->req = rtpb__request__unpack(NULL, len, buf);
	assert_non_null(f->req);
	free(buf);
}

static void send_response(int fd, uint32_t id, int code, const char *msg, const void *payload,
                          size_t plen)
{
	Rtpb__Response resp = RTPB__RESPONSE__INIT;
	Rtpb__Status st = RTPB__STATUS__INIT;
	if (code) {
		st.code = code;
		st.message = (char *)msg;
		resp.status = &st;
	}
	resp.payload.data = (uint8_t *)payload;
	resp.payload.len = plen;
	size_t n = rtpb__response__get_packed_size(&resp);
	uint8_t *buf = malloc(10 + n);
	rtpb__response__pack(&resp, buf + 10);
	be32(buf, (uint32_t)n);
	be32(buf + 4, id);
	buf[8] = 2;
	buf[9] = 0;
	assert_int_equal(loop_write(fd, buf, 10 + n), 0);
	free(buf);
}

struct fixture {
	int server;
	struct rt_ttrpc *c;
};

static int setup(void **state)
{
	int sv[2];
	struct fixture *f = calloc(1, sizeof(*f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->server = sv[1];
	assert_int_equal(rt_ttrpc_new(sv[0], &f->c), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	rt_ttrpc_free(f->c);
	safe_close(f->server);
	free(f);
	return 0;
}

struct echo_job {
	int fd;
	int n;
	bool reverse; /* read all n requests, answer in reverse order */
};

static void *echo_server(void *arg)
{
	struct echo_job *j = arg;
	struct frame f[8];
	for (int i = 0; i < j->n; i++) {
		read_request(j->fd, &f[i]);
		if (!j->reverse) {
			send_response(j->fd, f[i].id, 0, NULL, f[i].req->payload.data,
			              f[i].req->payload.len);
			rtpb__request__free_unpacked(f[i].req, NULL);
		}
	}
	for (int i = j->n; j->reverse && i-- > 0;) {
		send_response(j->fd, f[i].id, 0, NULL, f[i].req->payload.data,
		              f[i].req->payload.len);
		rtpb__request__free_unpacked(f[i].req, NULL);
	}
	return NULL;
}

static void *error_server(void *arg)
{
	struct fixture *fx = arg;
	struct frame f;
	read_request(fx->server, &f);
	send_response(fx->server, f.id, 5 /* NotFound */, "container \"x\" not found", NULL, 0);
	rtpb__request__free_unpacked(f.req, NULL);
	read_request(fx->server, &f);
	send_response(fx->server, f.id, 12 /* Unimplemented */, "", NULL, 0);
	rtpb__request__free_unpacked(f.req, NULL);
	return NULL;
}

static void test_status_mapping(void **state)
{
	struct fixture *fx = *state;
	struct strata_error *err = NULL;
	pthread_t t;

	pthread_create(&t, NULL, error_server, fx);
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "m", NULL, 0, 1000, NULL, NULL, &err), -ENOENT);
	assert_string_equal(strata_error_message(err), "container \"x\" not found");
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "m", NULL, 0, 1000, NULL, NULL, &err), -ENOSYS);
	assert_non_null(err);
	strata_error_free(err);
	pthread_join(t, NULL);
}

struct concurrent {
	struct rt_ttrpc *c;
	const char *payload;
	int r;
	char *out;
	size_t len;
};

static void *concurrent_client(void *arg)
{
	struct concurrent *x = arg;
	x->r = rt_ttrpc_call(x->c, "s", "m", x->payload, strlen(x->payload), 5000, (void **)&x->out,
	                     &x->len, NULL);
	return NULL;
}

static void *state_client(void *arg)
{
	struct concurrent *x = arg;
	x->r = rt_ttrpc_call(x->c, "containerd.task.v2.Task", "State", x->payload,
	                     strlen(x->payload), 5000, (void **)&x->out, &x->len, NULL);
	return NULL;
}

static void test_framing(void **state)
{
	struct fixture *fx = *state;
	struct echo_job j = {fx->server, 1, false};
	uint8_t payload[] = {1, 2, 3, 4};
	struct concurrent a;
	struct frame f;
	void *out = NULL;
	size_t len = 0;
	pthread_t t;

	pthread_create(&t, NULL, echo_server, &j);
	assert_int_equal(rt_ttrpc_call(fx->c, "svc.S", "M", "abc", 3, 1000, &out, &len, NULL), 0);
	pthread_join(t, NULL);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "abc", 3);
	free(out);

	/* The second call is stream 3; check the request as the Go server
	 * decodes it. */
	a = (struct concurrent){fx->c, "\x0a\x01x"};
	pthread_create(&t, NULL, state_client, &a);
	read_request(fx->server, &f);
	assert_int_equal(f.id, 3);
	assert_int_equal(f.type, 1);
	assert_int_equal(f.flags, 0);
	assert_string_equal(f.req->service, "containerd.task.v2.Task");
	assert_string_equal(f.req->method, "State");
	assert_int_equal(f.req->timeout_nano, 5000LL * 1000000);
	assert_int_equal(f.req->payload.len, 3);
	rtpb__request__free_unpacked(f.req, NULL);
	send_response(fx->server, 3, 0, NULL, payload, sizeof(payload));
	pthread_join(t, NULL);
	assert_int_equal(a.r, 0);
	assert_int_equal(a.len, 4);
	assert_memory_equal(a.out, payload, 4);
	free(a.out);
}

static void test_out_of_order(void **state)
{
	struct fixture *fx = *state;
	struct echo_job j = {fx->server, 3, true};
	struct concurrent x[3] = {{fx->c, "one"}, {fx->c, "two"}, {fx->c, "three"}};
	pthread_t st, ct[3];

	pthread_create(&st, NULL, echo_server, &j);
	for (int i = 0; i < 3; i++)
		pthread_create(&ct[i], NULL, concurrent_client, &x[i]);
	for (int i = 0; i < 3; i++)
		pthread_join(ct[i], NULL);
	pthread_join(st, NULL);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(x[i].r, 0);
		assert_int_equal(x[i].len, strlen(x[i].payload));
		assert_memory_equal(x[i].out, x[i].payload, x[i].len);
		free(x[i].out);
	}
}

static void test_timeout_then_stale_reply(void **state)
{
	struct fixture *fx = *state;
	struct strata_error *err = NULL;
	struct frame f;
	void *out = NULL;
	size_t len = 0;

	/* No answer: times out. */
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "slow", "a", 1, 50, NULL, NULL, &err),
	                 -ETIMEDOUT);
	strata_error_free(err);
	read_request(fx->server, &f);
	uint32_t stale = f.id;
	rtpb__request__free_unpacked(f.req, NULL);
	/* The late reply arrives before the next call's: it must be dropped. */
	send_response(fx->server, stale, 0, NULL, "stale", 5);
	struct echo_job j = {fx->server, 1, false};
	pthread_t t;
	pthread_create(&t, NULL, echo_server, &j);
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "m", "fresh", 5, 1000, &out, &len, NULL), 0);
	pthread_join(t, NULL);
	assert_int_equal(len, 5);
	assert_memory_equal(out, "fresh", 5);
	free(out);
}

static void *huge_server(void *arg)
{
	struct fixture *fx = arg;
	struct frame f;
	size_t n = RT_TTRPC_MAX_MESSAGE + 100;
	uint8_t *big = calloc(1, n);
	read_request(fx->server, &f);
	send_response(fx->server, f.id, 0, NULL, big, n);
	rtpb__request__free_unpacked(f.req, NULL);
	free(big);
	read_request(fx->server, &f);
	send_response(fx->server, f.id, 0, NULL, "ok", 2);
	rtpb__request__free_unpacked(f.req, NULL);
	return NULL;
}

static void test_message_limit(void **state)
{
	struct fixture *fx = *state;
	struct strata_error *err = NULL;
	void *out = NULL;
	size_t len = 0;
	pthread_t t;
	size_t n = RT_TTRPC_MAX_MESSAGE + 1;
	void *big = calloc(1, n);

	/* Too large to send. */
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "m", big, n, 1000, NULL, NULL, &err), -EMSGSIZE);
	strata_error_free(err);
	err = NULL;
	free(big);
	/* Too large a reply: skipped, and the connection stays usable. */
	pthread_create(&t, NULL, huge_server, fx);
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "m", NULL, 0, 5000, NULL, NULL, &err),
	                 -EMSGSIZE);
	strata_error_free(err);
	assert_int_equal(rt_ttrpc_call(fx->c, "s", "m", NULL, 0, 5000, &out, &len, NULL), 0);
	pthread_join(t, NULL);
	assert_int_equal(len, 2);
	free(out);
}

static void test_closed_connection(void **state)
{
	struct fixture *fx = *state;
	struct strata_error *err = NULL;

	fx->server = safe_close(fx->server);
	int r = rt_ttrpc_call(fx->c, "s", "m", NULL, 0, 1000, NULL, NULL, &err);
	assert_true(r == -ECONNRESET || r == -EPIPE);
	strata_error_free(err);
	err = NULL;
	/* Later calls fail fast. */
	r = rt_ttrpc_call(fx->c, "s", "m", NULL, 0, 1000, NULL, NULL, &err);
	assert_true(r < 0);
	strata_error_free(err);
}

static void test_connect_missing(void **state)
{
	struct rt_ttrpc *c = NULL;
	struct strata_error *err = NULL;
	assert_int_equal(rt_ttrpc_connect("unix:///nonexistent/strata.sock", &c, &err), -ENOENT);
	assert_non_null(strstr(strata_error_message(err), "/nonexistent/strata.sock"));
	strata_error_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_framing, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_status_mapping, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_timeout_then_stale_reply, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_message_limit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_closed_connection, setup, teardown),
	        cmocka_unit_test(test_connect_missing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
