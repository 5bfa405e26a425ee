/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stdio relay of an attached container (see rt-internal.h). One thread,
 * one poll loop; no locking: the thread owns the fifo fds until it is
 * joined, and the only shared word is the eventfd that asks it to stop.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

#include "rt-internal.h"

struct rt_stdio {
	struct rt_stdio_params p;
	int stop_fd;
	pthread_t thread;
	bool running;
	bool done; /* set by the thread when both outputs ended */
};

/* Copy what is readable from src to dst. Returns 1 on data, 0 on EOF, -1 on
 * EAGAIN (nothing now). */
static int pump(int src, int dst)
{
	char buf[65536];
	ssize_t n = read(src, buf, sizeof(buf));
	if (n > 0) {
		if (dst >= 0)
			(void)loop_write(dst, buf, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	return 0;
}

static void *relay(void *arg)
{
	struct rt_stdio *s = arg;
	struct rt_stdio_params *p = &s->p;
	bool stopping = false;

	while (p->out_fd >= 0 || p->err_fd >= 0) {
		struct pollfd pfd[4] = {
		        {.fd = p->out_fd, .events = POLLIN},
		        {.fd = p->err_fd, .events = POLLIN},
		        {.fd = p->in_fifo_fd >= 0 ? p->src_in : -1, .events = POLLIN},
		        {.fd = s->stop_fd, .events = POLLIN},
		};
		int r = poll(pfd, 4, stopping ? 0 : -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (r == 0 && stopping)
			break; /* drained what was there */
		if (pfd[3].revents)
			stopping = true;
		/* Linux reports POLLHUP on a fifo only after a writer came and
		 * went, so a read of 0 here is a real end of stream. */
		if (pfd[0].revents && pump(p->out_fd, p->dst_out) == 0)
			p->out_fd = safe_close(p->out_fd);
		if (pfd[1].revents && pump(p->err_fd, p->dst_err) == 0)
			p->err_fd = safe_close(p->err_fd);
		if (pfd[2].revents) {
			char buf[4096];
			ssize_t n = read(p->src_in, buf, sizeof(buf));
			if (n > 0) {
				(void)loop_write(p->in_fifo_fd, buf, (size_t)n);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				p->in_fifo_fd = safe_close(p->in_fifo_fd);
				if (p->stdin_eof)
					p->stdin_eof(p->userdata);
			}
		}
	}
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	return NULL;
}

int rt_stdio_start(const struct rt_stdio_params *p, struct rt_stdio **ret)
{
	struct rt_stdio *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->p = *p;
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		r = negative_errno();
		rt_stdio_free(s);
		return r;
	}
	r = -pthread_create(&s->thread, NULL, relay, s);
	if (r < 0) {
		rt_stdio_free(s);
		return r;
	}
	s->running = true;
	*ret = s;
	return 0;
}

void rt_stdio_finish(struct rt_stdio *s, int timeout_ms)
{
	struct timespec ts;
	uint64_t one = 1;

	if (!s || !s->running)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	if (pthread_timedjoin_np(s->thread, NULL, &ts) == 0) {
		s->running = false;
		return;
	}
	/* Output still open (a daemonised child holds it): stop relaying. */
	(void)!write(s->stop_fd, &one, sizeof(one));
	pthread_join(s->thread, NULL);
	s->running = false;
}

struct rt_stdio *rt_stdio_free(struct rt_stdio *s)
{
	if (!s)
		return NULL;
	rt_stdio_finish(s, 0);
	safe_close(s->p.out_fd);
	safe_close(s->p.err_fd);
	safe_close(s->p.in_fifo_fd);
	safe_close(s->stop_fd);
	free(s);
	return NULL;
}
