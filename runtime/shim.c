/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd-shim-runc-v2 without containerd: the shim v2 `start` protocol,
 * the Task API over ttrpc, and the cleanup of a shim that died.
 *
 * Start protocol (containerd runtime/v2/binary.go, shim/util.go):
 *   cwd = bundle (basename = id), own process group,
 *   argv = shim -namespace NS -address A -publish-binary B -id ID start,
 *   stdin = a marshalled google.protobuf.Any of containerd.runc.v1.Options
 *   (never a terminal or an open pipe: `start` reads it to EOF),
 *   stdout = the ttrpc address, printed without a newline, exit 0.
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
#include <sys/stat.h>
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

/* Marshal Any{containerd.runc.v1.Options{binary_name}} into a pipe that
 * becomes the shim's stdin; /dev/null when there is nothing to say. */
static int options_stdin(const char *runtime_binary)
{
	int p[2];

	if (!runtime_binary || !*runtime_binary)
		return open("/dev/null", O_RDONLY | O_CLOEXEC);

	Rtpb__RuncOptions opts = RTPB__RUNC_OPTIONS__INIT;
	Rtpb__Any any = RTPB__ANY__INIT;
	_cleanup_free_ uint8_t *inner = NULL, *outer = NULL;
	size_t n;

	opts.binary_name = (char *)runtime_binary;
	n = rtpb__runc_options__get_packed_size(&opts);
	inner = malloc(n + 1);
	if (!inner)
		return -ENOMEM;
	rtpb__runc_options__pack(&opts, inner);
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
	int r = loop_write(p[1], outer, n);
	safe_close(p[1]);
	if (r < 0) {
		safe_close(p[0]);
		return r;
	}
	return p[0];
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
	posix_spawnattr_t attr;
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
	posix_spawn_file_actions_addchdir_np(&fa, p->bundle);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setpgroup(&attr, 0);
	{
		sigset_t none, all;
		sigemptyset(&none);
		sigfillset(&all);
		posix_spawnattr_setsigmask(&attr, &none);
		sigemptyset(&all);
		sigaddset(&all, SIGPIPE);
		sigaddset(&all, SIGINT);
		sigaddset(&all, SIGTERM);
		posix_spawnattr_setsigdefault(&attr, &all);
	}
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                        POSIX_SPAWN_SETSIGDEF);
	r = -posix_spawn(&pid, shim, &fa, &attr, (char *const *)argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
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

int rt_shim_start(const struct rt_shim_params *p, struct rt_shim **ret,
                  struct strata_error **ret_err)
{
	_cleanup_(rt_shim_freep) struct rt_shim *s = NULL;
	_cleanup_free_ char *shim = NULL, *runtime = NULL, *out = NULL;
	_cleanup_close_ int in = -1;
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

	r = rt_ttrpc_connect(s->address, &s->conn, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "connect to the shim");
	log_debug("shim for %s listening on %s", p->id, s->address);
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

int rt_shim_shutdown(struct rt_shim *s, struct strata_error **ret_err)
{
	Rtpb__ShutdownRequest req = RTPB__SHUTDOWN_REQUEST__INIT;
	struct strata_error *err = NULL;
	int r;

	req.id = s->id;
	r = task_call(s, "Shutdown", &req.base, NULL, NULL, 10000, &err);
	/* The shim exits while answering: a closed connection is success. */
	if (r == -ECONNRESET || r == -EPIPE) {
		strata_error_free(err);
		return 0;
	}
	strata_error_propagate(ret_err, &err);
	strata_error_free(err);
	return r;
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
