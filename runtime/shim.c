/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd-shim-runc-v2 without containerd: the shim v2 `start` protocol,
 * the Task API over ttrpc, and the cleanup of a shim that died.
 *
 * Starting the shim: `shim ... start` (containerd runtime/v2/binary.go)
 * only does this (runc/manager/manager_linux.go Start): create the listening
 * socket unix:///run/containerd/s/<sha256(address/ns/id)>, write it to
 * <bundle>/address, and run itself again without an action, cwd = bundle,
 * own process group, the listener as fd 3, stdio on /dev/null; then print
 * the address. That is one Go program start (~35 ms, more on a busy host)
 * spent on a socket and a fork, so we do those ourselves and exec the shim's
 * serving mode directly; the shim serves the inherited fd 3
 * (shim/shim_unix.go serveListener). It is our child until we exit (then
 * init adopts it). STRATA_SHIM_START_ACTION=1 goes through `start` instead
 * (stdin: a marshalled Any of containerd.runc.v1.Options, or /dev/null;
 * stdout: the address without a newline).
 *
 * runc options (binary_name: runc or crun) go in Create's `options`, which
 * is what the shim reads them from (runc/container.go NewContainer).
 *
 * The `log` fifo trap: the shim daemon opens <bundle>/log for writing with a
 * blocking open and only then serves requests. We create it and hold it
 * O_RDWR|O_NONBLOCK before `start` (so that open never blocks) and drain it
 * into <bundle>/shim.log from a thread. When we go away (detached run, CLI
 * exit) the fifo loses its last reader: the shim handles SIGPIPE itself, so
 * its log writes just fail with EPIPE.
 *
 * Events: -address is meant to be containerd's socket; we pass our own
 * (Strata's address) only as the key the shim hashes into its socket name,
 * and we leave TTRPC_ADDRESS unset so the shim's event publisher fails fast
 * (pointing it at a missing socket stalls the shim 5 s per event). We learn
 * of exits from Wait, not from /tasks/exit events.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "digest.h"
#include "runtime.h"
#include "rt-task.pb-c.h"
#include "rt-types.pb-c.h"

extern char **environ;

#define TASK_SERVICE     "containerd.task.v2.Task"
#define RUNC_OPTIONS_URL "containerd.runc.v1.Options"
#define SHIM_SOCKET_DIR  "/run/containerd/s"
#define CALL_TIMEOUT_MS  30000

struct rt_shim {
	struct rt_ttrpc *conn;
	char *address;
	char *id;
	/* log fifo drain (only for shims we started) */
	int log_fd;
	int log_out;
	int stop_fd;
	pthread_t log_thread;
	bool log_thread_running;
	pid_t pid; /* the shim, when it is our child (we spawned it); else 0 */
};

static const char *install_hint(const char *name)
{
	if (streq(name, RT_SHIM_BINARY))
		return "apt-get install containerd";
	if (streq(name, "runc"))
		return "apt-get install runc";
	if (streq(name, "crun"))
		return "apt-get install crun";
	if (streq(name, "iptables"))
		return "apt-get install iptables";
	return NULL;
}

int rt_require_binary(const char *name, char **ret_path, struct strata_error **ret_err)
{
	int r = rt_find_binary(name, ret_path);
	if (r == -ENOENT) {
		const char *hint = install_hint(name);
		if (hint)
			return strata_error_set(ret_err, r,
			                        "%s not found in PATH: install it with '%s'", name,
			                        hint);
		return strata_error_set(ret_err, r, "%s not found in PATH", name);
	}
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "look up %s", name);
	return 0;
}

const char *rt_task_status_to_string(enum rt_task_status s)
{
	static const char *const names[] = {"unknown", "created", "running",
	                                    "stopped", "paused",  "pausing"};
	return (unsigned)s < ELEMENTSOF(names) ? names[s] : "unknown";
}

int rt_shim_socket_address(const struct rt_shim_params *p, char **ret)
{
	_cleanup_free_ char *key = NULL;
	struct strata_digest d;
	char hex[STRATA_SHA256_HEX_LEN + 1];
	int r;

	/* filepath.Join(address, ns, id): our inputs are already clean. */
	if (asprintf(&key, "%s/%s/%s", p->address, p->ns ? p->ns : RT_DEFAULT_NAMESPACE, p->id) < 0)
		return -ENOMEM;
	r = strata_sha256(key, strlen(key), &d);
	if (r < 0)
		return r;
	strata_digest_hex(&d, hex);
	if (asprintf(ret, "unix://" SHIM_SOCKET_DIR "/%s", hex) < 0)
		return -ENOMEM;
	return 0;
}

static void *log_drain(void *arg)
{
	struct rt_shim *s = arg;
	char buf[8192];

	for (;;) {
		struct pollfd pfd[2] = {{.fd = s->log_fd, .events = POLLIN},
		                        {.fd = s->stop_fd, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents & POLLIN) {
			ssize_t n = read(s->log_fd, buf, sizeof(buf));
			if (n > 0 && s->log_out >= 0)
				(void)loop_write(s->log_out, buf, (size_t)n);
			continue;
		}
		if (pfd[1].revents)
			break;
	}
	/* Whatever is left in the pipe. */
	for (;;) {
		ssize_t n = read(s->log_fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (s->log_out >= 0)
			(void)loop_write(s->log_out, buf, (size_t)n);
	}
	return NULL;
}

static int open_log_fifo(struct rt_shim *s, const char *bundle, struct strata_error **ret_err)
{
	_cleanup_free_ char *fifo = path_join(bundle, "log");
	_cleanup_free_ char *out = path_join(bundle, "shim.log");
	int r;

	if (!fifo || !out)
		return -ENOMEM;
	if (mkfifo(fifo, 0700) < 0 && errno != EEXIST)
		return strata_error_set_errno(ret_err, negative_errno(), "mkfifo \"%s\"", fifo);
	s->log_fd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (s->log_fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "open \"%s\"", fifo);
	s->log_out = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "eventfd");
	r = -pthread_create(&s->log_thread, NULL, log_drain, s);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "start the shim log reader");
	s->log_thread_running = true;
	return 0;
}

struct rt_shim *rt_shim_free(struct rt_shim *s)
{
	if (!s)
		return NULL;
	if (s->log_thread_running) {
		uint64_t one = 1;
		(void)!write(s->stop_fd, &one, sizeof(one));
		pthread_join(s->log_thread, NULL);
	}
	safe_close(s->stop_fd);
	safe_close(s->log_fd);
	safe_close(s->log_out);
	rt_ttrpc_free(s->conn);
	/* Reap it if it is done; a running shim is adopted by init when we exit. */
	if (s->pid > 0)
		(void)waitpid(s->pid, NULL, WNOHANG);
	free(s->address);
	free(s->id);
	free(s);
	return NULL;
}

static struct rt_shim *shim_new(const char *id)
{
	struct rt_shim *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->log_fd = s->log_out = s->stop_fd = -1;
	s->id = strdup(id);
	if (!s->id)
		return rt_shim_free(s);
	return s;
}

const char *rt_shim_address(const struct rt_shim *s)
{
	return s->address;
}

/* Our environment without TTRPC_ADDRESS (see the header comment). */
static char **shim_environ(void)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = calloc(n + 2, sizeof(char *));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "TTRPC_ADDRESS=", 14) != 0 &&
		    strncmp(environ[i], "GOMAXPROCS=", 11) != 0)
			env[k++] = environ[i];
	env[k++] = (char *)"GOMAXPROCS=2"; /* as containerd does */
	env[k] = NULL;
	return env;
}

/* The packed runc options {binary_name} (for Create's options Any). */
static int pack_runc_options(const char *runtime_binary, uint8_t **ret, size_t *ret_len)
{
	Rtpb__RuncOptions opts = RTPB__RUNC_OPTIONS__INIT;
	uint8_t *buf;
	size_t n;

	opts.binary_name = (char *)runtime_binary;
	n = rtpb__runc_options__get_packed_size(&opts);
	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	rtpb__runc_options__pack(&opts, buf);
	*ret = buf;
	*ret_len = n;
	return 0;
}

/* Marshal Any{containerd.runc.v1.Options{binary_name}} into a pipe that
 * becomes the stdin of `shim start`; /dev/null when there is nothing to say. */
static int options_stdin(const char *runtime_binary)
{
	_cleanup_free_ uint8_t *inner = NULL, *outer = NULL;
	Rtpb__Any any = RTPB__ANY__INIT;
	size_t n;
	int p[2], r;

	if (!runtime_binary || !*runtime_binary)
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	r = pack_runc_options(runtime_binary, &inner, &n);
	if (r < 0)
		return r;
	any.type_url = (char *)RUNC_OPTIONS_URL;
	any.value.data = inner;
	any.value.len = n;
	n = rtpb__any__get_packed_size(&any);
	outer = malloc(n + 1);
	if (!outer)
		return -ENOMEM;
	rtpb__any__pack(&any, outer);

	if (pipe2(p, O_CLOEXEC) < 0)
		return negative_errno();
	/* A few dozen bytes: always fits the pipe buffer. */
	r = loop_write(p[1], outer, n);
	safe_close(p[1]);
	if (r < 0) {
		safe_close(p[0]);
		return r;
	}
	return p[0];
}

static void posix_spawn_signals(posix_spawnattr_t *attr)
{
	sigset_t none, dfl;

	sigemptyset(&none);
	posix_spawnattr_setsigmask(attr, &none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	posix_spawnattr_setsigdefault(attr, &dfl);
}

/* Spawn the shim in a process group of its own with default signal
 * dispositions and an empty mask, in the bundle dir; consumes fa. */
static int spawn_shim(const char *shim, posix_spawn_file_actions_t *fa, const char *bundle,
                      const char *const *argv, char **env, pid_t *ret_pid)
{
	posix_spawnattr_t attr;
	int r;

	posix_spawn_file_actions_addchdir_np(fa, bundle);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawn_signals(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                        POSIX_SPAWN_SETSIGDEF);
	r = -posix_spawn(ret_pid, shim, fa, &attr, (char *const *)argv, env);
	posix_spawn_file_actions_destroy(fa);
	posix_spawnattr_destroy(&attr);
	return r;
}

/* Run the shim binary with args in the bundle dir; collect stdout+stderr.
 * Returns the exit status (>= 0) or -errno. */
static int run_shim(const char *shim, const struct rt_shim_params *p, const char *verb,
                    bool with_bundle, int stdin_fd, char **ret_out, size_t *ret_len)
{
	_cleanup_free_ char **env = shim_environ();
	_cleanup_free_ char *self = NULL;
	_cleanup_free_ char *out = NULL;
	posix_spawn_file_actions_t fa;
	size_t len = 0, cap = 0;
	int pipefd[2], status;
	pid_t pid;
	int r;

	if (!env)
		return -ENOMEM;
	self = realpath("/proc/self/exe", NULL);
	const char *argv[] = {
	        shim,
	        "-namespace",
	        p->ns ? p->ns : RT_DEFAULT_NAMESPACE,
	        "-address",
	        p->address,
	        "-publish-binary",
	        self ? self : "strata",
	        "-id",
	        p->id,
	        with_bundle ? "-bundle" : verb,
	        with_bundle ? p->bundle : NULL,
	        with_bundle ? verb : NULL,
	        NULL,
	};

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return negative_errno();
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	r = spawn_shim(shim, &fa, p->bundle, argv, env, &pid);
	safe_close(pipefd[1]);
	if (r < 0) {
		safe_close(pipefd[0]);
		return r;
	}

	/* The daemon the shim re-execs does not inherit this pipe: EOF comes
	 * when `start` exits. */
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *n = realloc(out, cap = cap ? cap * 2 : 8192);
			if (!n) {
				r = -ENOMEM;
				break;
			}
			out = n;
		}
		ssize_t k = read(pipefd[0], out + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	safe_close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return negative_errno();
	if (r < 0)
		return r;
	if (out)
		out[len] = '\0';
	*ret_out = out ? TAKE_PTR(out) : strdup("");
	if (ret_len)
		*ret_len = len;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

static char *strip(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* The classic way: `shim start` prints the address of the daemon it forked. */
static int start_via_action(const char *shim, const struct rt_shim_params *p, struct rt_shim *s,
                            struct strata_error **ret_err)
{
	_cleanup_free_ char *out = NULL;
	_cleanup_close_ int in = -1;
	int r;

	in = options_stdin(p->runtime_binary);
	if (in < 0)
		return strata_error_set_errno(ret_err, in, "shim options");
	r = run_shim(shim, p, "start", false, in, &out, NULL);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "run %s start", shim);
	strip(out);
	if (r != 0)
		return strata_error_set(ret_err, -EIO, "%s start exited with status %d: %s", shim,
		                        r, *out ? out : "(no output)");
	if (!*out)
		return strata_error_set(ret_err, -EPROTO, "%s start printed no address", shim);
	s->address = TAKE_PTR(out);
	return 0;
}

/* Bind and listen on the shim's socket path. A socket file left by a shim
 * that died is replaced; one that still answers means a live shim owns it. */
static int shim_listen(const char *address, struct strata_error **ret_err)
{
	const char *path = address + strlen("unix://");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t salen;
	_cleanup_close_ int fd = -1;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return strata_error_set(ret_err, -ENAMETOOLONG, "shim socket \"%s\" too long",
		                        path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	r = path_mkdir_p(SHIM_SOCKET_DIR, 0711);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "create " SHIM_SOCKET_DIR);
	/* Kept at fd 10 or above: the child's fds 0 to 3 are set up by dup2. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "socket");
	if (fd < 10) {
		int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
		if (high < 0)
			return strata_error_set_errno(ret_err, negative_errno(), "fcntl");
		safe_close(fd);
		fd = high;
	}
	for (int attempt = 0;; attempt++) {
		if (bind(fd, (struct sockaddr *)&sa, salen) == 0)
			break;
		if (errno != EADDRINUSE || attempt > 0)
			return strata_error_set_errno(ret_err, negative_errno(), "bind \"%s\"",
			                              path);
		_cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, salen) == 0)
			return strata_error_set(ret_err, -EEXIST, "a shim already serves \"%s\"",
			                        path);
		if (unlink(path) < 0 && errno != ENOENT)
			return strata_error_set_errno(ret_err, negative_errno(), "remove \"%s\"",
			                              path);
	}
	if (chmod(path, 0600) < 0 || listen(fd, SOMAXCONN) < 0) {
		r = negative_errno();
		(void)unlink(path);
		return strata_error_set_errno(ret_err, r, "listen on \"%s\"", path);
	}
	return TAKE_FD(fd);
}

/* As containerd's AdjustOOMScore: the shim is a little likelier to be
 * OOM-killed than whoever started it. Best effort. */
static void adjust_oom_score(pid_t pid)
{
	char buf[32], path[64];
	_cleanup_close_ int self = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
	ssize_t n = self >= 0 ? read(self, buf, sizeof(buf) - 1) : -1;
	int v;

	if (n <= 0)
		return;
	buf[n] = '\0';
	v = MIN(atoi(buf) + 1, 1000);
	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)pid);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = snprintf(buf, sizeof(buf), "%d", v);
		(void)!write(fd, buf, (size_t)n);
	}
}

/* What `start` does, minus its own Go start-up (see the header comment). */
static int start_direct(const char *shim, const struct rt_shim_params *p, struct rt_shim *s,
                        struct strata_error **ret_err)
{
	_cleanup_free_ char **env = shim_environ();
	_cleanup_free_ char *address = NULL;
	_cleanup_close_ int lfd = -1, dfd = -1;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int r;

	if (!env)
		return -ENOMEM;
	r = rt_shim_socket_address(p, &address);
	if (r < 0)
		return r;
	lfd = shim_listen(address, ret_err);
	if (lfd < 0)
		return lfd;
	/* The shim reads it back to remove its socket on Shutdown. */
	dfd = open(p->bundle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		r = strata_error_set_errno(ret_err, negative_errno(), "open \"%s\"", p->bundle);
		goto fail;
	}
	{
		_cleanup_close_ int afd =
		        openat(dfd, "address", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (afd < 0 || loop_write(afd, address, strlen(address)) < 0) {
			r = strata_error_set_errno(ret_err, afd < 0 ? negative_errno() : -EIO,
			                           "write \"%s/address\"", p->bundle);
			goto fail;
		}
	}

	const char *argv[] = {
	        shim,       "-namespace", p->ns ? p->ns : RT_DEFAULT_NAMESPACE,
	        "-id",      p->id,        "-address",
	        p->address, NULL,
	};
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	posix_spawn_file_actions_adddup2(&fa, lfd, 3);
	/* Nothing else of ours: an inherited pipe would keep a reader waiting. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	r = spawn_shim(shim, &fa, p->bundle, argv, env, &pid);
	if (r < 0) {
		strata_error_set_errno(ret_err, r, "run %s", shim);
		goto fail;
	}
	s->pid = pid;
	adjust_oom_score(pid);
	s->address = TAKE_PTR(address);
	return 0;

fail:
	(void)unlink(address + strlen("unix://"));
	return r;
}

int rt_shim_start(const struct rt_shim_params *p, struct rt_shim **ret,
                  struct strata_error **ret_err)
{
	_cleanup_(rt_shim_freep) struct rt_shim *s = NULL;
	_cleanup_free_ char *shim = NULL, *runtime = NULL;
	const char *mode = getenv("STRATA_SHIM_START_ACTION");
	int r;

	r = rt_require_binary(RT_SHIM_BINARY, &shim, ret_err);
	if (r < 0)
		return r;
	/* The shim would only fail at Create, with a message about log.json. */
	r = rt_require_binary(p->runtime_binary ? p->runtime_binary : "runc", &runtime, ret_err);
	if (r < 0)
		return r;

	s = shim_new(p->id);
	if (!s)
		return -ENOMEM;
	r = open_log_fifo(s, p->bundle, ret_err);
	if (r < 0)
		return r;
	if (mode && streq(mode, "1"))
		r = start_via_action(shim, p, s, ret_err);
	else
		r = start_direct(shim, p, s, ret_err);
	if (r < 0)
		return r;

	/* The socket listens already: connect succeeds before the shim serves,
	 * and the first call waits for it. */
	r = rt_ttrpc_connect(s->address, &s->conn, ret_err);
	if (r < 0) {
		if (s->pid > 0)
			(void)kill(s->pid, SIGKILL);
		return strata_error_prefix(ret_err, r, "connect to the shim");
	}
	log_debug("shim for %s (pid %d) listening on %s", p->id, (int)s->pid, s->address);
	*ret = TAKE_PTR(s);
	return 0;
}

int rt_shim_connect(const char *address, const char *id, struct rt_shim **ret,
                    struct strata_error **ret_err)
{
	_cleanup_(rt_shim_freep) struct rt_shim *s = shim_new(id);
	int r;

	if (!s)
		return -ENOMEM;
	s->address = strdup(address);
	if (!s->address)
		return -ENOMEM;
	r = rt_ttrpc_connect(address, &s->conn, ret_err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

/* Pack req, call Task/method, unpack into *ret with desc (NULL: ignore). */
static int task_call(struct rt_shim *s, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret,
                     int64_t timeout_ms, struct strata_error **ret_err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ void *resp = NULL;
	size_t n = protobuf_c_message_get_packed_size(req), rlen = 0;
	int r;

	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(req, buf);
	r = rt_ttrpc_call(s->conn, TASK_SERVICE, method, buf, n, timeout_ms, &resp, &rlen, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "shim %s", method);
	if (!desc)
		return 0;
	*ret = protobuf_c_message_unpack(desc, NULL, rlen, resp);
	if (!*ret)
		return strata_error_set(ret_err, -EBADMSG, "shim %s: malformed reply", method);
	return 0;
}

int rt_shim_connect_task(struct rt_shim *s, uint32_t *ret_shim_pid, uint32_t *ret_task_pid,
                         struct strata_error **ret_err)
{
	Rtpb__ConnectRequest req = RTPB__CONNECT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = s->id;
	r = task_call(s, "Connect", &req.base, &rtpb__connect_response__descriptor, &resp, 10000,
	              ret_err);
	if (r < 0)
		return r;
	if (ret_shim_pid)
		*ret_shim_pid = ((Rtpb__ConnectResponse *)resp)->shim_pid;
	if (ret_task_pid)
		*ret_task_pid = ((Rtpb__ConnectResponse *)resp)->task_pid;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int rt_shim_create(struct rt_shim *s, const struct rt_task_create *t, uint32_t *ret_pid,
                   struct strata_error **ret_err)
{
	Rtpb__CreateTaskRequest req = RTPB__CREATE_TASK_REQUEST__INIT;
	Rtpb__Any options = RTPB__ANY__INIT;
	_cleanup_free_ uint8_t *packed_options = NULL;
	_cleanup_free_ Rtpb__Mount *mounts = NULL;
	_cleanup_free_ Rtpb__Mount **mptrs = NULL;
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = s->id;
	if (t->n_rootfs > 0) {
		mounts = calloc(t->n_rootfs, sizeof(*mounts));
		mptrs = calloc(t->n_rootfs, sizeof(*mptrs));
		if (!mounts || !mptrs)
			return -ENOMEM;
		for (size_t i = 0; i < t->n_rootfs; i++) {
			size_t k = 0;
			rtpb__mount__init(&mounts[i]);
			mounts[i].type = t->rootfs[i].type;
			mounts[i].source = t->rootfs[i].source;
			mounts[i].target = t->rootfs[i].target ? t->rootfs[i].target : (char *)"";
			while (t->rootfs[i].options && t->rootfs[i].options[k])
				k++;
			mounts[i].n_options = k;
			mounts[i].options = t->rootfs[i].options;
			mptrs[i] = &mounts[i];
		}
		req.n_rootfs = t->n_rootfs;
		req.rootfs = mptrs;
	}
	if (t->runtime_binary && *t->runtime_binary) {
		r = pack_runc_options(t->runtime_binary, &packed_options, &options.value.len);
		if (r < 0)
			return r;
		options.type_url = (char *)RUNC_OPTIONS_URL;
		options.value.data = packed_options;
		req.options = &options;
	}
	req.bundle = (char *)t->bundle;
	req.terminal = t->terminal;
	req.stdin = (char *)strempty(t->stdin_path);
	req.stdout = (char *)strempty(t->stdout_path);
	req.stderr = (char *)strempty(t->stderr_path);
	r = task_call(s, "Create", &req.base, &rtpb__create_task_response__descriptor, &resp,
	              CALL_TIMEOUT_MS, ret_err);
	if (r < 0)
		return r;
	if (ret_pid)
		*ret_pid = ((Rtpb__CreateTaskResponse *)resp)->pid;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int rt_shim_exec(struct rt_shim *s, const struct rt_exec_process *e, struct strata_error **ret_err)
{
	Rtpb__ExecProcessRequest req = RTPB__EXEC_PROCESS_REQUEST__INIT;
	Rtpb__Any spec = RTPB__ANY__INIT;

	req.id = s->id;
	req.exec_id = (char *)e->exec_id;
	req.terminal = e->terminal;
	req.stdin = (char *)strempty(e->stdin_path);
	req.stdout = (char *)strempty(e->stdout_path);
	req.stderr = (char *)strempty(e->stderr_path);
	/* What containerd's typeurl registers for specs.Process: a JSON value. */
	spec.type_url = (char *)"types.containerd.io/opencontainers/runtime-spec/1/Process";
	spec.value.data = (uint8_t *)e->process_json;
	spec.value.len = strlen(e->process_json);
	req.spec = &spec;
	return task_call(s, "Exec", &req.base, NULL, NULL, CALL_TIMEOUT_MS, ret_err);
}

int rt_shim_start_task(struct rt_shim *s, const char *exec_id, uint32_t *ret_pid,
                       struct strata_error **ret_err)
{
	Rtpb__TaskIdRequest req = RTPB__TASK_ID_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	r = task_call(s, "Start", &req.base, &rtpb__start_response__descriptor, &resp,
	              CALL_TIMEOUT_MS, ret_err);
	if (r < 0)
		return r;
	if (ret_pid)
		*ret_pid = ((Rtpb__StartResponse *)resp)->pid;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int rt_shim_wait(struct rt_shim *s, const char *exec_id, uint32_t *ret_status,
                 struct strata_error **ret_err)
{
	Rtpb__TaskIdRequest req = RTPB__TASK_ID_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	r = task_call(s, "Wait", &req.base, &rtpb__wait_response__descriptor, &resp, -1, ret_err);
	if (r < 0)
		return r;
	if (ret_status)
		*ret_status = ((Rtpb__WaitResponse *)resp)->exit_status;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int rt_shim_kill(struct rt_shim *s, const char *exec_id, int sig, bool all,
                 struct strata_error **ret_err)
{
	Rtpb__KillRequest req = RTPB__KILL_REQUEST__INIT;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	req.signal = (uint32_t)sig;
	req.all = all;
	return task_call(s, "Kill", &req.base, NULL, NULL, CALL_TIMEOUT_MS, ret_err);
}

int rt_shim_delete(struct rt_shim *s, const char *exec_id, uint32_t *ret_status,
                   struct strata_error **ret_err)
{
	Rtpb__TaskIdRequest req = RTPB__TASK_ID_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	r = task_call(s, "Delete", &req.base, &rtpb__delete_response__descriptor, &resp,
	              CALL_TIMEOUT_MS, ret_err);
	if (r < 0)
		return r;
	if (ret_status)
		*ret_status = ((Rtpb__DeleteResponse *)resp)->exit_status;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int rt_shim_state(struct rt_shim *s, const char *exec_id, struct rt_task_state *ret,
                  struct strata_error **ret_err)
{
	Rtpb__TaskIdRequest req = RTPB__TASK_ID_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	r = task_call(s, "State", &req.base, &rtpb__state_response__descriptor, &resp, 10000,
	              ret_err);
	if (r < 0)
		return r;
	Rtpb__StateResponse *st = (Rtpb__StateResponse *)resp;
	*ret = (struct rt_task_state){
	        .pid = st->pid,
	        .status = (enum rt_task_status)st->status,
	        .exit_status = st->exit_status,
	        .terminal = st->terminal,
	        .exited_at = st->exited_at ? st->exited_at->seconds : 0,
	};
	/* The shim reports the zero time (year 1) while the process runs. */
	if (ret->exited_at < 0)
		ret->exited_at = 0;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int rt_shim_resize_pty(struct rt_shim *s, const char *exec_id, unsigned width, unsigned height,
                       struct strata_error **ret_err)
{
	Rtpb__ResizePtyRequest req = RTPB__RESIZE_PTY_REQUEST__INIT;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	req.width = width;
	req.height = height;
	return task_call(s, "ResizePty", &req.base, NULL, NULL, 10000, ret_err);
}

int rt_shim_close_stdin(struct rt_shim *s, const char *exec_id, struct strata_error **ret_err)
{
	Rtpb__CloseIORequest req = RTPB__CLOSE_IOREQUEST__INIT;

	req.id = s->id;
	req.exec_id = (char *)strempty(exec_id);
	req.stdin = true;
	return task_call(s, "CloseIO", &req.base, NULL, NULL, 10000, ret_err);
}

/* A pidfd for the shim process: ours when we spawned it, else the pid it
 * reports in Connect. Taken before Shutdown, so the pid cannot be reused. */
static int shim_pidfd(struct rt_shim *s)
{
	uint32_t pid = s->pid > 0 ? (uint32_t)s->pid : 0;
	int fd;

	if (!pid && rt_shim_connect_task(s, &pid, NULL, NULL) < 0)
		return -ESRCH;
	if (pid == 0)
		return -ESRCH;
	fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	return fd < 0 ? negative_errno() : fd;
}

int rt_shim_wait_exit(int pidfd, int timeout_ms)
{
	struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
	siginfo_t si;
	int r;

	if (pidfd < 0)
		return 0;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return negative_errno();
	if (r == 0)
		return -ETIMEDOUT;
	/* Reap it when it is our child (spawned by start_direct); ECHILD else. */
	(void)waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG);
	return 0;
}

int rt_shim_shutdown(struct rt_shim *s, int *ret_pidfd, struct strata_error **ret_err)
{
	Rtpb__ShutdownRequest req = RTPB__SHUTDOWN_REQUEST__INIT;
	struct strata_error *err = NULL;
	_cleanup_close_ int pidfd = ret_pidfd ? shim_pidfd(s) : -1;
	int r;

	if (ret_pidfd)
		*ret_pidfd = -1;
	req.id = s->id;
	r = task_call(s, "Shutdown", &req.base, NULL, NULL, 10000, &err);
	/* The shim exits while answering: a closed connection is success. */
	if (r == -ECONNRESET || r == -EPIPE) {
		strata_error_free(err);
		err = NULL;
		r = 0;
	}
	if (r < 0) {
		strata_error_propagate(ret_err, &err);
		strata_error_free(err);
		return r;
	}
	/* The shim answers first and exits after: see rt_shim_wait_exit. Our
	 * child (when we spawned it) is reaped there or by rt_shim_free if done,
	 * else adopted by init. */
	if (ret_pidfd && pidfd >= 0)
		*ret_pidfd = TAKE_FD(pidfd);
	return 0;
}

int rt_shim_cleanup_dead(const struct rt_shim_params *p, uint32_t *ret_status,
                         struct strata_error **ret_err)
{
	_cleanup_free_ char *shim = NULL, *out = NULL, *sock = NULL;
	_cleanup_close_ int in = -1;
	size_t out_len = 0;
	int r;

	r = rt_require_binary(RT_SHIM_BINARY, &shim, ret_err);
	if (r < 0)
		return r;
	in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "open /dev/null");
	r = run_shim(shim, p, "delete", true, in, &out, &out_len);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "run %s delete", shim);
	/* stdout carries a marshalled DeleteResponse, mixed with any warnings on
	 * stderr in our single pipe: only try to decode it when it parses. */
	if (ret_status) {
		Rtpb__DeleteResponse *d =
		        rtpb__delete_response__unpack(NULL, out_len, (uint8_t *)out);
		*ret_status = d ? d->exit_status : 137;
		if (d)
			rtpb__delete_response__free_unpacked(d, NULL);
	}
	if (r != 0)
		log_debug("%s delete for %s exited %d: %s", shim, p->id, r, out);

	r = rt_shim_socket_address(p, &sock);
	if (r < 0)
		return r;
	if (unlink(sock + strlen("unix://")) < 0 && errno != ENOENT)
		return strata_error_set_errno(ret_err, negative_errno(), "remove \"%s\"",
		                              sock + strlen("unix://"));
	return 0;
}
