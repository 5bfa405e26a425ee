/* SPDX-License-Identifier: Apache-2.0 */
/* The stdio relay of run -i / exec -i (runtime/stdio.c), on real fifos and
 * pipes: stdin is not lost when the container's fifo is full, and finish
 * stops relaying an output that a background child keeps open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common.h"
#include "rt-internal.h"

static char tmp[] = "/tmp/strata-rt-stdio-XXXXXX";

static int setup(void **state)
{
	return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
	_cleanup_close_ int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return path_rm_rf_at(fd, tmp + strlen("/tmp/"));
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int eof_calls;
static void on_eof(void *userdata)
{
	(void)userdata;
	__atomic_add_fetch(&eof_calls, 1, __ATOMIC_SEQ_CST);
}

struct feeder {
	int fd;
	const uint8_t *data;
	size_t len;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	assert_int_equal(loop_write(f->fd, f->data, f->len), 0);
	close(f->fd);
	return NULL;
}

/* 4 MiB of stdin into a fifo (64 KiB) whose reader is slow: all of it
 * arrives in order, then EOF, then stdin_eof once. Before the relay kept
 * what the fifo refused, everything past the first 64 KiB went missing. */
static void test_stdin_not_lost(void **state)
{
	const size_t len = 4 << 20;
	uint8_t *data = malloc(len), *got = malloc(len);
	char fifo[512];
	int src[2], out[2];
	struct rt_stdio *s = NULL;
	pthread_t t;
	size_t n = 0;

	assert_non_null(data);
	assert_non_null(got);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 7 + i / 4099);
	snprintf(fifo, sizeof(fifo), "%s/stdin", tmp);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	/* As exec.c and container.c open it. */
	int in_fifo = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	assert_true(in_fifo >= 0);
	int reader = open(fifo, O_RDONLY | O_CLOEXEC);
	assert_true(reader >= 0);
	assert_int_equal(pipe2(src, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);

	eof_calls = 0;
	struct rt_stdio_params p = {
	        .out_fd = out[0],
	        .err_fd = -1,
	        .in_fifo_fd = in_fifo,
	        .src_in = src[0],
	        .dst_out = -1,
	        .dst_err = -1,
	        .stdin_eof = on_eof,
	};
	assert_int_equal(rt_stdio_start(&p, &s), 0);
	struct feeder f = {.fd = src[1], .data = data, .len = len};
	assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);

	/* A slow reader: the fifo is full most of the time. */
	for (;;) {
		ssize_t r = read(reader, got + n, n < len ? 4096 : 1);
		assert_true(r >= 0);
		if (r == 0)
			break;
		n += (size_t)r;
		assert_true(n <= len);
		if ((n & 0xfffff) < 4096)
			usleep(20000);
	}
	assert_int_equal(n, len);
	assert_memory_equal(got, data, len);
	pthread_join(t, NULL);
	close(out[1]);
	rt_stdio_finish(s, 5000);
	assert_int_equal(__atomic_load_n(&eof_calls, __ATOMIC_SEQ_CST), 1);
	rt_stdio_free(s);
	close(reader);
	close(src[0]);
	unlink(fifo);
	free(data);
	free(got);
}

/* An output that stays open (a background child holds it): finish returns
 * after its timeout, having relayed what was written, instead of waiting
 * for the writer. */
static void test_finish_stops_open_output(void **state)
{
	int out[2], dst[2];
	struct rt_stdio *s = NULL;
	char buf[64] = {0};

	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(dst, O_CLOEXEC | O_NONBLOCK), 0);
	struct rt_stdio_params p = {
	        .out_fd = out[0],
	        .err_fd = -1,
	        .in_fifo_fd = -1,
	        .src_in = -1,
	        .dst_out = dst[1],
	        .dst_err = -1,
	};
	assert_int_equal(rt_stdio_start(&p, &s), 0);
	assert_int_equal(loop_write(out[1], "bg\n", 3), 0);
	double t0 = now_ms();
	rt_stdio_finish(s, 300);
	double dt = now_ms() - t0;
	assert_true(dt >= 250);
	assert_true(dt < 2000);
	assert_int_equal(read(dst[0], buf, sizeof(buf)), 3);
	assert_string_equal(buf, "bg\n");

	/* Also when the writer keeps writing: the drain is bounded. */
	rt_stdio_free(s);
	s = NULL;
	int out2[2];
	assert_int_equal(pipe2(out2, O_CLOEXEC), 0);
	p.out_fd = out2[0];
	p.dst_out = -1;
	assert_int_equal(rt_stdio_start(&p, &s), 0);
	fcntl(out2[1], F_SETFL, O_NONBLOCK);
	t0 = now_ms();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char junk[4096];
		memset(junk, 'x', sizeof(junk));
		for (;;)
			(void)!write(out2[1], junk, sizeof(junk));
	}
	rt_stdio_finish(s, 300);
	dt = now_ms() - t0;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_true(dt < 3000);
	rt_stdio_free(s);
	close(out[1]);
	close(out2[1]);
	close(dst[0]);
	close(dst[1]);
}

struct slow_reader {
	int fd;
	size_t got;
	bool end_seen;
};

static void *read_late(void *arg)
{
	struct slow_reader *r = arg;
	char buf[65536];
	ssize_t n;

	usleep(1000 * 1000); /* our reader stalls: the relay blocks writing */
	for (;;) {
		struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
		if (poll(&pfd, 1, 3000) <= 0)
			break; /* the tail never came */
		n = read(r->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		r->got += (size_t)n;
		if (n >= 3 && memcmp(buf + n - 3, "END", 3) == 0) {
			r->end_seen = true;
			break;
		}
	}
	return NULL;
}

static void *write_then_end(void *arg)
{
	int fd = *(int *)arg;
	static char chunk[256 << 10];
	memset(chunk, 'a', sizeof(chunk));
	assert_int_equal(loop_write(fd, chunk, sizeof(chunk)), 0);
	usleep(100 * 1000);
	assert_int_equal(loop_write(fd, "END", 3), 0);
	close(fd);
	return NULL;
}

/* A reader of ours that is slow to take the output (a pager, a stalled
 * pipe) does not count against finish's timeout: the output that follows
 * still arrives, up to its end. Before, the relay was stopped 300 ms in
 * and the tail was dropped. */
static void test_finish_waits_for_slow_reader(void **state)
{
	int out[2], dst[2];
	struct rt_stdio *s = NULL;
	pthread_t w, r;
	struct slow_reader sr = {0};

	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(dst, O_CLOEXEC), 0);
	struct rt_stdio_params p = {
	        .out_fd = out[0],
	        .err_fd = -1,
	        .in_fifo_fd = -1,
	        .src_in = -1,
	        .dst_out = dst[1],
	        .dst_err = -1,
	};
	sr.fd = dst[0];
	assert_int_equal(rt_stdio_start(&p, &s), 0);
	assert_int_equal(pthread_create(&r, NULL, read_late, &sr), 0);
	assert_int_equal(pthread_create(&w, NULL, write_then_end, &out[1]), 0);
	usleep(50 * 1000);
	rt_stdio_finish(s, 300);
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	assert_true(sr.end_seen);
	assert_int_equal(sr.got, (256 << 10) + 3);
	rt_stdio_free(s);
	close(dst[0]);
	close(dst[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_stdin_not_lost),
	        cmocka_unit_test(test_finish_stops_open_output),
	        cmocka_unit_test(test_finish_waits_for_slow_reader),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
