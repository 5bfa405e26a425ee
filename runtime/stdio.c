/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stdio relay of an attached container (see rt-internal.h). One thread,
 * one poll loop; no locking: the thread owns the fifo fds and the stdin
 * buffer until it is joined; the shared words are the eventfd that asks it
 * to stop and the atomic busy flag that rt_stdio_finish reads.
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
	bool busy; /* atomic: the thread is writing output to dst_out/dst_err */
	/* Owned by the thread: stdin read but not yet taken by the fifo. */
	char in_buf[65536];
	size_t in_off, in_len;
	bool in_eof; /* src_in ended: close the fifo once in_buf is empty */
};

/* Copy what is readable from src to dst. Returns 1 on data, 0 on EOF, -1 on
 * EAGAIN (nothing now). While it writes, *busy is set: a reader of ours that
 * is slow to take the output does not count against rt_stdio_finish's
 * timeout. */
static int pump(int src, int dst, bool *busy)
{
	char buf[65536];
	ssize_t n = read(src, buf, sizeof(buf));
	if (n > 0) {
		if (dst >= 0) {
			__atomic_store_n(busy, true, __ATOMIC_RELEASE);
			(void)loop_write(dst, buf, (size_t)n);
			__atomic_store_n(busy, false, __ATOMIC_RELEASE);
		}
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	return 0;
}

/* Our stdin into the container's stdin fifo. The fifo's write end is
 * non-blocking (it was opened O_RDWR|O_NONBLOCK): what it does not take now
 * waits in in_buf, and src_in is not read again until it has gone, so a
 * process that reads slowly (or writes a lot meanwhile) loses nothing and
 * does not stall the output relay. */
static void stdin_done(struct rt_stdio_params *p)
{
	p->in_fifo_fd = safe_close(p->in_fifo_fd);
	if (p->stdin_eof)
		p->stdin_eof(p->userdata);
}

static void relay_stdin_write(struct rt_stdio *s)
{
	struct rt_stdio_params *p = &s->p;
	while (s->in_len > 0) {
		ssize_t n = write(p->in_fifo_fd, s->in_buf + s->in_off, s->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* the reader went: nothing more will be taken */
			s->in_len = 0;
			s->in_eof = true;
			break;
		}
		s->in_off += (size_t)n;
		s->in_len -= (size_t)n;
	}
	s->in_off = 0;
	if (s->in_eof)
		stdin_done(p);
}

static void relay_stdin_read(struct rt_stdio *s)
{
	struct rt_stdio_params *p = &s->p;
	ssize_t n = read(p->src_in, s->in_buf, sizeof(s->in_buf));
	if (n > 0) {
		s->in_off = 0;
		s->in_len = (size_t)n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		s->in_eof = true;
	} else {
		return;
	}
	relay_stdin_write(s);
}

static void *relay(void *arg)
{
	struct rt_stdio *s = arg;
	struct rt_stdio_params *p = &s->p;
	bool stopping = false;
	unsigned drain = 0;

	while (p->out_fd >= 0 || p->err_fd >= 0) {
		bool in_pending = p->in_fifo_fd >= 0 && s->in_len > 0;
		struct pollfd pfd[5] = {
		        {.fd = p->out_fd, .events = POLLIN},
		        {.fd = p->err_fd, .events = POLLIN},
		        {.fd = p->in_fifo_fd >= 0 && !in_pending ? p->src_in : -1,
		         .events = POLLIN},
		        /* Once stopping, the eventfd stays readable: not polled. */
		        {.fd = stopping ? -1 : s->stop_fd, .events = POLLIN},
		        {.fd = in_pending ? p->in_fifo_fd : -1, .events = POLLOUT},
		};
		int r = poll(pfd, 5, stopping ? 0 : -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* Drained what was there; bounded, for a writer that never stops. */
		if (stopping && (r == 0 || ++drain > 64))
			break;
		if (pfd[3].revents)
			stopping = true;
		/* Linux reports POLLHUP on a fifo only after a writer came and
		 * went, so a read of 0 here is a real end of stream. */
		if (pfd[0].revents && pump(p->out_fd, p->dst_out, &s->busy) == 0)
			p->out_fd = safe_close(p->out_fd);
		if (pfd[1].revents && pump(p->err_fd, p->dst_err, &s->busy) == 0)
			p->err_fd = safe_close(p->err_fd);
		if (pfd[2].revents)
			relay_stdin_read(s);
		if (pfd[4].revents)
			relay_stdin_write(s);
	}
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	return NULL;
}

int rt_stdio_start(const struct rt_stdio_params *p, struct rt_stdio **ret)
{
	struct rt_stdio *s = calloc(1, sizeof(*s));
	int r;

	if (!s) {
		/* the fds are ours even when we fail */
		safe_close(p->out_fd);
		safe_close(p->err_fd);
		safe_close(p->in_fifo_fd);
		return -ENOMEM;
	}
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
	const int slice_ms = 50;
	uint64_t one = 1;
	int left = timeout_ms;

	if (!s || !s->running)
		return;
	/* The timeout counts the time the relay waits for output that does
	 * not come, not the time our own reader takes to accept it: output
	 * that is already on its way is never cut short. */
	for (;;) {
		struct timespec ts;
		int step = left < slice_ms ? left : slice_ms;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)step * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_timedjoin_np(s->thread, NULL, &ts) == 0) {
			s->running = false;
			return;
		}
		if (!__atomic_load_n(&s->busy, __ATOMIC_ACQUIRE))
			left -= step;
		if (left <= 0)
			break;
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
