/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy layers survive a daemon restart: the FUSE connections are kept alive
 * outside the daemon, and the next daemon resumes serving them.
 *
 * Why: an overlay rootfs of a running container stacks the lazy layer's
 * FUSE mount. When the last fd of a FUSE connection closes (the daemon
 * exits or is killed) the kernel aborts the connection, and every read of
 * the container fails with ENOTCONN for good. nydus (fd takeover) and
 * stargz-snapshotter (fuse manager) keep the connection in another process;
 * so do we.
 *
 * The fd holder: a tiny process (`strata serve --fuse-fd-holder`, exec'd by
 * the daemon on its first lazy mount, in its own session, reparented to
 * init) listening on ROOT/run/fuse-fds.sock (SOCK_SEQPACKET). The daemon
 * sends it each new layer's /dev/fuse fd with SCM_RIGHTS (PUT id dev), and
 * DEL id when a layer is unmounted for good. A starting daemon asks for
 * every kept fd (GET); the holder keeps its copies until told DEL, so a
 * daemon that crashes while resuming loses nothing. The holder drops an fd
 * whose connection is gone (poll reports POLLERR once the mount's
 * superblock died) and exits when it holds no fd and no daemon is
 * connected, removing its socket and pid file. Its pid is in
 * ROOT/run/fuse-fds.pid.
 *
 * Resuming (lazy_layer_start): the snapshot's mountpoint must still be the
 * FUSE mount of that connection (mountinfo's device equals the one sent
 * with PUT) and the connection alive; otherwise the mount is detached and
 * mounted afresh, as before. libfuse adopts an fd through
 * fuse_session_mount(se, "/dev/fd/N"). The kernel did INIT long ago, so the
 * session is brought to the initialised state with a synthetic FUSE_INIT
 * (fuse_session_process_buf): libfuse's reply goes to a unique the kernel
 * does not know and fails with ENOENT, which libfuse ignores. Then
 * FUSE_NOTIFY_RESEND (Linux 6.9) puts back every request the old daemon
 * had read but not answered (it was killed, or its worker was cancelled
 * right after a read), so no reader waits forever; older kernels refuse the
 * notification and such a request stays unanswered.
 *
 * Inode numbers are TOC entry index + 1, file handles are entry indexes and
 * nothing is kept per inode (see lazy-fs.c), so the nodeids and handles the
 * kernel holds stay valid in the new daemon, and FORGET/RELEASE of ones it
 * never handed out are no-ops.
 *
 * On exit (lazy_manager_free, only when handover is on: `strata serve`
 * without --unmount-on-exit) a layer in use is left mounted and its fd
 * stays with the holder: the FUSE loop is stopped without aborting the
 * connection (fuse_session_exit, then a signal to interrupt the loop's
 * sem_wait; libfuse cancels its workers blocked in read(2)). Pending
 * requests wait in the kernel for the next daemon. "In use": another mount
 * of the same device (a bind mount or a view), an overlay naming the
 * mountpoint in its lowerdir, or the mount is busy (umount2 without
 * MNT_DETACH fails). An idle layer is unmounted as before, so a clean stop
 * with no container leaves no mount behind. While no daemon runs, reads of
 * a kept layer block (they are killable) until the next daemon resumes it.
 * To unmount everything: remove the snapshots (strata rmi + prune, or stop
 * the containers first), or run `strata serve --unmount-on-exit`.
 *
 * Locking: struct lazy_handover's lock serialises its socket and kept[];
 * it is never held across a mount or FUSE reply. The holder is single
 * threaded.
 */
#define FUSE_USE_VERSION 312

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "lazy-internal.h"
#include "snapshotter.h"

#define SOCK_NAME "fuse-fds.sock"
#define PID_NAME  "fuse-fds.pid"
/* The holder's fixed fds after exec. */
#define HOLDER_LISTEN_FD 3
#define HOLDER_DIR_FD    4
#define HOLDER_MAX_FDS   65536
#define HOLDER_CLIENTS   8
/* enum fuse_notify_code's FUSE_NOTIFY_RESEND (protocol 7.40), which older
 * <linux/fuse.h> lack. */
#define NOTIFY_RESEND 7
/* A unique no kernel request has: replies to it fail with ENOENT. */
#define SYNTHETIC_UNIQUE (UINT64_C(1) << 62)
/* Interrupts the loop thread's sem_wait (libfuse's mt loop). */
#define STOP_SIGNAL SIGUSR2

enum { HO_PUT = 1, HO_DEL, HO_GET, HO_ITEM, HO_END };

struct ho_msg {
	uint32_t op;
	uint32_t pad;
	uint64_t id;
	uint64_t dev;
};

struct kept_fd {
	uint64_t id;
	dev_t dev;
	int fd;
};

struct lazy_handover {
	char *run_dir;
	bool keep; /* spawn a holder and PUT new layers */
	pthread_mutex_t lock;
	int fd;               /* connection to the holder, -1: none */
	struct kept_fd *kept; /* received with GET, not yet claimed */
	size_t n_kept;
	pid_t spawned; /* spawn_holder's first child, not yet reaped */
};

/* --- messages ---------------------------------------------------------- */

static int send_msg(int sock, const struct ho_msg *m, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *c;
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n == (ssize_t)sizeof(*m))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? negative_errno() : -EIO;
	}
}

/* 1 with a message (and *ret_fd, or -1), 0 at EOF, -errno. */
static int recv_msg(int sock, struct ho_msg *m, int *ret_fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = u.buf,
	                    .msg_controllen = sizeof(u.buf)};
	ssize_t n;

	*ret_fd = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return negative_errno();
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(*m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		if (*ret_fd >= 0)
			close(*ret_fd);
		*ret_fd = -1;
		return -EBADMSG;
	}
	return 1;
}

/* --- the holder process ---------------------------------------------------- */

static bool conn_dead(int fd)
{
	struct pollfd p = {.fd = fd, .events = 0};

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

int snap_lazy_holder_main(void)
{
	static struct kept_fd held[HOLDER_MAX_FDS];
	static struct pollfd pfd[1 + HOLDER_CLIENTS + HOLDER_MAX_FDS];
	int clients[HOLDER_CLIENTS];
	size_t n_held = 0, n_clients = 0;
	struct rlimit rl;
	char pid[32];
	int n;

	if (fcntl(HOLDER_LISTEN_FD, F_GETFD) < 0 || fcntl(HOLDER_DIR_FD, F_GETFD) < 0)
		return -EBADF;
	(void)fcntl(HOLDER_LISTEN_FD, F_SETFD, FD_CLOEXEC);
	(void)fcntl(HOLDER_DIR_FD, F_SETFD, FD_CLOEXEC);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	(void)path_write_file_atomic_at(HOLDER_DIR_FD, PID_NAME, pid, (size_t)n, 0644);

	for (;;) {
		size_t np = 0;

		pfd[np++] = (struct pollfd){.fd = HOLDER_LISTEN_FD, .events = POLLIN};
		for (size_t i = 0; i < n_clients; i++)
			pfd[np++] = (struct pollfd){.fd = clients[i], .events = POLLIN};
		/* events 0: only POLLERR, when the connection is aborted */
		for (size_t i = 0; i < n_held; i++)
			pfd[np++] = (struct pollfd){.fd = held[i].fd, .events = 0};
		if (poll(pfd, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* held fds first: their indexes shift as they are dropped */
		for (size_t i = n_held; i-- > 0;)
			if (pfd[1 + n_clients + i].revents) {
				close(held[i].fd);
				held[i] = held[--n_held];
			}
		for (size_t c = n_clients; c-- > 0;) {
			struct ho_msg m;
			int fd, r;

			if (!pfd[1 + c].revents)
				continue;
			r = recv_msg(clients[c], &m, &fd);
			if (r == -EAGAIN || r == -EBADMSG)
				continue;
			if (r <= 0) {
				close(clients[c]);
				clients[c] = clients[--n_clients];
				continue;
			}
			if (m.op == HO_PUT || m.op == HO_DEL) {
				for (size_t i = 0; i < n_held; i++)
					if (held[i].id == m.id) {
						close(held[i].fd);
						held[i] = held[--n_held];
						break;
					}
			}
			if (m.op == HO_PUT && fd >= 0 && n_held < HOLDER_MAX_FDS) {
				held[n_held++] =
				        (struct kept_fd){.id = m.id, .dev = m.dev, .fd = fd};
				fd = -1;
			} else if (m.op == HO_GET) {
				for (size_t i = 0; i < n_held; i++) {
					struct ho_msg it = {.op = HO_ITEM,
					                    .id = held[i].id,
					                    .dev = held[i].dev};
					(void)send_msg(clients[c], &it, held[i].fd);
				}
				(void)send_msg(clients[c], &(struct ho_msg){.op = HO_END}, -1);
			}
			if (fd >= 0)
				close(fd);
		}
		if (pfd[0].revents & POLLIN) {
			int c = accept4(HOLDER_LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0 && n_clients < HOLDER_CLIENTS)
				clients[n_clients++] = c;
			else if (c >= 0)
				close(c);
		}
		if (n_held == 0 && n_clients == 0) {
			/* Unlinked before we stop answering: a daemon that
			 * connected just before sees EOF and starts another
			 * holder at a free path. */
			(void)unlinkat(HOLDER_DIR_FD, SOCK_NAME, 0);
			(void)unlinkat(HOLDER_DIR_FD, PID_NAME, 0);
			/* one that came in meanwhile sees EOF on GET, and
			 * starts another holder when it has an fd to keep */
			break;
		}
	}
	return 0;
}

/* --- the daemon's side ------------------------------------------------------ */

/* sun_path is short: bind/connect through the run directory's fd. */
static int sock_addr(int dirfd, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/" SOCK_NAME, dirfd);
	return 0;
}

static int connect_holder(const char *run_dir)
{
	_cleanup_close_ int dirfd = open(run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int s = -1;
	struct sockaddr_un sa;

	if (dirfd < 0)
		return negative_errno();
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return negative_errno();
	sock_addr(dirfd, &sa);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return negative_errno();
	/* A holder that does not answer GET (stopped, wedged) must not hang
	 * the daemon's start: the error path goes on without it. */
	(void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){.tv_sec = 10},
	                 sizeof(struct timeval));
	return TAKE_FD(s);
}

/* Reap spawn_holder's first child (it exits at once); h->lock held. */
static void reap_spawned(struct lazy_handover *h, bool block)
{
	pid_t r;

	if (h->spawned <= 0)
		return;
	do
		r = waitpid(h->spawned, NULL, block ? 0 : WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r != 0) /* reaped, or not ours any more */
		h->spawned = 0;
}

/* Start a holder and connect to it; h->lock held. */
static int spawn_holder(struct lazy_handover *h)
{
	_cleanup_close_ int dirfd = -1, lfd = -1, s = -1;
	struct sockaddr_un sa;
	pid_t pid;

	if (path_mkdir_p(h->run_dir, 0700) < 0)
		return negative_errno();
	dirfd = open(h->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return negative_errno();
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0 || s < 0)
		return negative_errno();
	sock_addr(dirfd, &sa);
	(void)unlinkat(dirfd, SOCK_NAME, 0); /* a dead holder's */
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0)
		return negative_errno();
	/* Queued before the holder runs: it never sees "no daemon yet". */
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return negative_errno();

	/* Double fork: the holder is init's child, in a session of its own,
	 * so neither the daemon's exit nor a signal to its group reaches it.
	 * Between fork and exec only async-signal-safe calls. */
	pid = fork();
	if (pid < 0)
		return negative_errno();
	if (pid == 0) {
		static char *const argv[] = {(char *)"strata", (char *)"serve",
		                             (char *)"--fuse-fd-holder", NULL};
		sigset_t none;
		int null;

		if (fork() != 0)
			_exit(0);
		(void)setsid();
		/* It outlives us: never keep the daemon's cwd busy. */
		if (chdir("/") < 0)
			_exit(127);
		sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		null = open("/dev/null", O_RDWR);
		/* Above the fixed fds first: dup2 onto itself would keep
		 * O_CLOEXEC, and dirfd may sit where lfd goes. */
		lfd = fcntl(lfd, F_DUPFD, HOLDER_DIR_FD + 1);
		dirfd = fcntl(dirfd, F_DUPFD, HOLDER_DIR_FD + 1);
		if (null < 0 || lfd < 0 || dirfd < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
		    dup2(null, 2) < 0 || dup2(lfd, HOLDER_LISTEN_FD) < 0 ||
		    dup2(dirfd, HOLDER_DIR_FD) < 0)
			_exit(127);
		(void)close_range(HOLDER_DIR_FD + 1, ~0U, 0);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	/* Reaped later (reap_spawned): waiting here put its fork and exit,
	 * 10-20 ms on a busy machine, on the first lazy Prepare's path. The
	 * connection is queued already, so nothing waits for the holder. */
	h->spawned = pid;
	log_debug("lazy layers: started the FUSE fd holder (%s/" SOCK_NAME ")", h->run_dir);
	return TAKE_FD(s);
}

static void kept_close(struct lazy_handover *h)
{
	for (size_t i = 0; i < h->n_kept; i++)
		safe_close(h->kept[i].fd);
	free(h->kept);
	h->kept = NULL;
	h->n_kept = 0;
}

int lazy_handover_open(const char *root, bool keep, struct lazy_handover **ret)
{
	struct lazy_handover *h = calloc(1, sizeof(*h));
	struct sigaction sa = {.sa_handler = lazy_handover_on_signal};
	int r;

	if (!h)
		return -ENOMEM;
	h->fd = -1;
	h->keep = keep;
	pthread_mutex_init(&h->lock, NULL);
	if (asprintf(&h->run_dir, "%s/run", root) < 0) {
		h->run_dir = NULL;
		lazy_handover_free(h);
		return -ENOMEM;
	}
	/* A no-op handler (not SIG_IGN, which would not interrupt), without
	 * SA_RESTART: it only breaks the FUSE loop thread's sem_wait. */
	sigemptyset(&sa.sa_mask);
	(void)sigaction(STOP_SIGNAL, &sa, NULL);

	/* A holder left by the previous daemon: take what it keeps. Done even
	 * without keep, so its layers are served (and released) rather than
	 * left hanging. */
	h->fd = connect_holder(h->run_dir);
	if (h->fd >= 0) {
		r = send_msg(h->fd, &(struct ho_msg){.op = HO_GET}, -1);
		while (r >= 0) {
			struct ho_msg m;
			int fd;
			r = recv_msg(h->fd, &m, &fd);
			if (r <= 0) {
				r = r ? r : -ECONNRESET;
				break;
			}
			if (m.op == HO_END)
				break;
			if (m.op != HO_ITEM || fd < 0) {
				safe_close(fd);
				continue;
			}
			struct kept_fd *a = realloc(h->kept, (h->n_kept + 1) * sizeof(*a));
			if (!a) {
				close(fd);
				r = -ENOMEM;
				break;
			}
			h->kept = a;
			h->kept[h->n_kept++] =
			        (struct kept_fd){.id = m.id, .dev = (dev_t)m.dev, .fd = fd};
		}
		if (r < 0) {
			/* the holder went away meanwhile: nothing is kept */
			log_debug_errno(r, "lazy layers: FUSE fd holder");
			kept_close(h);
			h->fd = safe_close(h->fd);
		} else if (h->n_kept) {
			log_info("lazy layers: %zu FUSE connection(s) kept across the restart",
			         h->n_kept);
		}
	}
	*ret = h;
	return 0;
}

void lazy_handover_on_signal(int sig)
{
	(void)sig;
}

struct lazy_handover *lazy_handover_free(struct lazy_handover *h)
{
	if (!h)
		return NULL;
	kept_close(h);
	safe_close(h->fd);
	reap_spawned(h, true);
	pthread_mutex_destroy(&h->lock);
	free(h->run_dir);
	free(h);
	return NULL;
}

int lazy_handover_take(struct lazy_handover *h, uint64_t id, dev_t *ret_dev)
{
	int fd = -ENOENT;

	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < h->n_kept; i++)
		if (h->kept[i].id == id) {
			fd = h->kept[i].fd;
			*ret_dev = h->kept[i].dev;
			h->kept[i] = h->kept[--h->n_kept];
			break;
		}
	pthread_mutex_unlock(&h->lock);
	return fd;
}

static void send_locked(struct lazy_handover *h, const struct ho_msg *m, int fd)
{
	int r;

	if (h->fd < 0)
		return;
	r = send_msg(h->fd, m, fd);
	if (r < 0) {
		log_warn("lazy layers: the FUSE fd holder is gone (%s): layers mounted until "
		         "another one starts will not survive a restart",
		         strerror(-r));
		h->fd = safe_close(h->fd);
	}
}

void lazy_handover_put(struct lazy_handover *h, struct lazy_layer *l)
{
	int fd = l->se ? fuse_session_fd(l->se) : -1;

	if (!h->keep || fd < 0)
		return;
	pthread_mutex_lock(&h->lock);
	reap_spawned(h, false);
	if (h->fd < 0) {
		int s = spawn_holder(h);
		if (s < 0)
			log_warn("lazy layers: cannot start the FUSE fd holder: %s: lazy layers "
			         "will not survive a restart",
			         strerror(-s));
		h->fd = s < 0 ? -1 : s;
	}
	send_locked(h, &(struct ho_msg){.op = HO_PUT, .id = l->id, .dev = (uint64_t)l->fuse_dev},
	            fd);
	pthread_mutex_unlock(&h->lock);
}

void lazy_handover_del(struct lazy_handover *h, uint64_t id)
{
	pthread_mutex_lock(&h->lock);
	reap_spawned(h, false);
	send_locked(h, &(struct ho_msg){.op = HO_DEL, .id = id}, -1);
	pthread_mutex_unlock(&h->lock);
}

void lazy_handover_release_unclaimed(struct lazy_handover *h)
{
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < h->n_kept; i++) {
		log_debug("lazy layers: kept FUSE connection of snapshot id %" PRIu64
		          " has no remote snapshot: released",
		          h->kept[i].id);
		send_locked(h, &(struct ho_msg){.op = HO_DEL, .id = h->kept[i].id}, -1);
	}
	kept_close(h);
	pthread_mutex_unlock(&h->lock);
}

bool lazy_handover_keeps(const struct lazy_handover *h)
{
	/* without a holder a kept mount would die with us anyway */
	return h && h->keep && h->fd >= 0;
}

/* --- mountinfo ---------------------------------------------------------- */

/* Undo mountinfo's octal escapes (\040) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

struct mi_line {
	dev_t dev;
	char *mountpoint;
	char *fstype;
	char *super_opts;
};

/* Split one mountinfo line (modified in place); false when malformed. */
static bool mi_parse(char *line, struct mi_line *ret)
{
	char *f[6], *save = NULL, *tok, *sep;
	unsigned maj, min;
	int n = 0;

	line[strcspn(line, "\n")] = '\0';
	sep = strstr(line, " - ");
	if (!sep)
		return false;
	*sep = '\0';
	for (tok = strtok_r(line, " ", &save); tok && n < 6; tok = strtok_r(NULL, " ", &save))
		f[n++] = tok;
	if (n < 5 || sscanf(f[2], "%u:%u", &maj, &min) != 2)
		return false;
	ret->dev = makedev(maj, min);
	ret->mountpoint = f[4];
	unescape(ret->mountpoint);
	save = NULL;
	ret->fstype = strtok_r(sep + 3, " ", &save);
	(void)strtok_r(NULL, " ", &save); /* source */
	ret->super_opts = strtok_r(NULL, " ", &save);
	return ret->fstype != NULL;
}

/* Whether an overlay's super options name mp as a lower (or upper) layer,
 * absolutely or relative to the directory the mounter was in. */
static bool overlay_uses(char *opts, const char *mp)
{
	size_t mp_len = strlen(mp);
	char *save = NULL;

	if (!opts)
		return false;
	for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		char *v = strchr(o, '='), *s2 = NULL;
		if (!v || strncmp(o, "lowerdir", 8) != 0)
			continue;
		unescape(++v);
		for (char *c = strtok_r(v, ":", &s2); c; c = strtok_r(NULL, ":", &s2)) {
			size_t n = strlen(c);
			if (streq(c, mp))
				return true;
			if (c[0] != '/' && n < mp_len && mp[mp_len - n - 1] == '/' &&
			    streq(mp + mp_len - n, c))
				return true;
		}
	}
	return false;
}

/* The device of the topmost FUSE mount on mp, 0 when none. */
static dev_t fuse_mount_dev(const char *mp)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	dev_t dev = 0;

	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0) {
		struct mi_line m;
		if (!mi_parse(line, &m) || !streq(m.mountpoint, mp))
			continue;
		dev = strncmp(m.fstype, "fuse", 4) == 0 ? m.dev : 0;
	}
	return dev;
}

bool lazy_handover_in_use(const char *mp, dev_t dev)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	bool used = false;

	if (f) {
		while (!used && getline(&line, &cap, f) > 0) {
			struct mi_line m;
			if (!mi_parse(line, &m))
				continue;
			if (dev && m.dev == dev && !streq(m.mountpoint, mp))
				used = true; /* a bind mount or view of the layer */
			else if (streq(m.fstype, "overlay") && overlay_uses(m.super_opts, mp))
				used = true;
		}
	}
	if (used)
		return true;
	/* Files open on the mount itself. On success the layer is unmounted:
	 * that is what happens to an idle layer anyway. */
	if (umount2(mp, UMOUNT_NOFOLLOW) < 0 && errno == EBUSY)
		return true;
	return false;
}

bool lazy_handover_mount_live(const char *mp, dev_t dev, int fd)
{
	return dev && fuse_mount_dev(mp) == dev && !conn_dead(fd);
}

/* --- the FUSE session ------------------------------------------------------- */

int lazy_handover_resume(struct lazy_layer *l)
{
	struct {
		struct fuse_in_header h;
		struct fuse_init_in i;
	} init = {
	        .h = {.len = sizeof(init), .opcode = FUSE_INIT, .unique = SYNTHETIC_UNIQUE},
	        .i = {.major = FUSE_KERNEL_VERSION,
	              .minor = FUSE_KERNEL_MINOR_VERSION,
	              .max_readahead = 1u << 20,
	              /* what a current kernel offers: libfuse derives from it
	               * the same state as at the real INIT (buffer size with
	               * MAX_PAGES, splice, readdirplus, symlink caching) */
	              .flags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC |
	                       FUSE_EXPORT_SUPPORT | FUSE_BIG_WRITES | FUSE_DONT_MASK |
	                       FUSE_SPLICE_WRITE | FUSE_SPLICE_MOVE | FUSE_SPLICE_READ |
	                       FUSE_FLOCK_LOCKS | FUSE_HAS_IOCTL_DIR | FUSE_AUTO_INVAL_DATA |
	                       FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO |
	                       FUSE_PARALLEL_DIROPS | FUSE_HANDLE_KILLPRIV | FUSE_ABORT_ERROR |
	                       FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS},
	};
	struct fuse_out_header resend = {.len = sizeof(resend), .error = NOTIFY_RESEND};
	struct fuse_buf buf = {.size = sizeof(init), .mem = &init};
	int fd = fuse_session_fd(l->se);

	fuse_session_process_buf(l->se, &buf);
	if (fuse_session_exited(l->se))
		return -EPROTO; /* op_init asked for what the kernel lacks */
	if (write(fd, &resend, sizeof(resend)) < 0)
		log_debug_errno(-errno, "lazy layer %" PRIu64 ": FUSE_NOTIFY_RESEND", l->id);
	return 0;
}

void lazy_handover_detach(struct lazy_layer *l)
{
	fuse_session_exit(l->se);
	/* The loop thread waits in sem_wait for a worker to finish: interrupt
	 * it until it has seen the exit flag (a signal sent just before it
	 * blocks is lost, hence the repeat). It then cancels the workers
	 * blocked in read(2); one busy with a request answers it first. */
	while (l->fuse_running) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_kill(l->fuse_thread, STOP_SIGNAL);
		if (pthread_timedjoin_np(l->fuse_thread, NULL, &ts) == 0)
			l->fuse_running = false;
	}
	/* Closes only our fd: the holder's keeps the connection. */
	fuse_session_destroy(l->se);
	l->se = NULL;
	log_info("lazy layer %" PRIu64 ": in use: left mounted on %s for the next daemon", l->id,
	         l->mountpoint);
}
