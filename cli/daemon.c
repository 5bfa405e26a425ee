/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Find-or-start the daemon (see daemon.h).
 *
 * The daemon must outlive us (a detached container's snapshot lives in it),
 * so it is not our child: we fork, the child calls setsid() and forks the
 * daemon, then exits; the daemon is reparented to init. Its stdio goes to
 * ROOT/strata.log (or /dev/null when that cannot be opened), so nothing it
 * writes ever blocks on our terminal or dies with it.
 *
 * Two CLIs starting at once: both take an flock on ROOT/.daemon-start.lock
 * around "connect, else start and wait", so the second one finds the first
 * one's daemon instead of starting another.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "daemon.h"
#include "empty.pb-c.h"
#include "health.pb-c.h"
#include "runtime.h"
#include "snapshots.pb-c.h"

static int health_check(struct proxy_client *c, unsigned timeout_ms, struct strata_error **ret_err)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	r = proxy_client_unary(c, "/grpc.health.v1.Health/Check", &req.base,
	                       &grpc__health__v1__health_check_response__descriptor, &resp,
	                       timeout_ms, ret_err);
	if (r < 0)
		return r;
	if (((Grpc__Health__V1__HealthCheckResponse *)resp)->status !=
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
		r = strata_error_set(ret_err, -EAGAIN, "the daemon is not serving yet");
	protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

/* The last `lines` lines of a file (at most its last 16 KiB), or NULL. */
static char *log_tail(const char *path, int lines)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char buf[16384];
	ssize_t n;
	off_t size;

	if (fd < 0)
		return NULL;
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0)
		return NULL;
	n = pread(fd, buf, sizeof(buf) - 1,
	          size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	char *p = buf + n;
	while (p > buf && lines > 0) {
		p--;
		if (*p == '\n')
			lines--;
	}
	if (*p == '\n')
		p++;
	return strdup(p);
}

/* Whether pid is a live (not zombie) process. */
static bool process_alive(pid_t pid)
{
	char path[64], s[1024];
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, s, sizeof(s) - 1);
	if (n <= 0)
		return false;
	s[n] = '\0';
	/* "pid (comm) S ...": the state follows the last ')'. */
	const char *e = strrchr(s, ')');
	return e && e[1] == ' ' && e[2] != 'Z' && e[2] != 'X';
}

static int spawn_daemon(const struct cli_ctx *ctx, const char *log_path, pid_t *ret_pid,
                        struct strata_error **ret_err)
{
	const char *argv[12];
	size_t n = 0;
	int pfd[2];
	pid_t child, daemon_pid = -1;

	argv[n++] = "strata";
	argv[n++] = "--root";
	argv[n++] = ctx->root;
	argv[n++] = "--address";
	argv[n++] = ctx->address;
	if (ctx->config_explicit) {
		argv[n++] = "--config";
		argv[n++] = ctx->config_path;
	}
	if (ctx->log_level_set) {
		argv[n++] = "--log-level";
		argv[n++] = log_level_to_string(ctx->log_level);
	}
	argv[n++] = "serve";
	argv[n] = NULL;

	/* Exec our binary by its name, so the daemon's comm is "strata", not
	 * "exe"; /proc/self/exe still works when the file was replaced. */
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len > 0) {
		exe[len] = '\0';
		if (strstr(exe, " (deleted)"))
			len = -1;
	}
	if (len <= 0)
		strcpy(exe, "/proc/self/exe");

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "pipe");
	child = fork();
	if (child < 0) {
		int r = negative_errno();
		close(pfd[0]);
		close(pfd[1]);
		return strata_error_set_errno(ret_err, r, "fork");
	}
	if (child == 0) {
		sigset_t all;
		pid_t d;

		close(pfd[0]);
		(void)setsid();
		d = fork();
		if (d != 0) {
			(void)!write(pfd[1], &d, sizeof(d));
			_exit(d < 0 ? 1 : 0);
		}
		/* The daemon: fresh signal state, stdio away from our terminal. */
		sigemptyset(&all);
		(void)sigprocmask(SIG_SETMASK, &all, NULL);
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				(void)signal(s, SIG_DFL);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (logfd < 0)
			logfd = null;
		if (null < 0 || dup2(null, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			_exit(127);
		/* Nothing else of ours: an inherited pipe would keep its reader
		 * (a test harness, a `$(...)`) waiting for the daemon to exit. */
		(void)close_range(3, ~0U, 0);
		(void)!chdir("/");
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	if (read(pfd[0], &daemon_pid, sizeof(daemon_pid)) != (ssize_t)sizeof(daemon_pid))
		daemon_pid = -1;
	close(pfd[0]);
	(void)waitpid(child, NULL, 0);
	if (daemon_pid <= 0)
		return strata_error_set(ret_err, -ECHILD, "could not fork `strata serve`");
	*ret_pid = daemon_pid;
	return 0;
}

static int timeout_ms(void)
{
	const char *e = getenv("STRATA_START_TIMEOUT_MS");
	int v = e ? atoi(e) : 0;
	return v > 0 ? v : CLI_DAEMON_START_TIMEOUT_MS;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect and ask Health.Check. */
static int try_connect(const char *address, struct proxy_client **ret,
                       struct strata_error **ret_err)
{
	_cleanup_(proxy_client_freep) struct proxy_client *c = NULL;
	int r = proxy_client_connect(address, &c, ret_err);
	if (r < 0)
		return r;
	r = health_check(c, 5000, ret_err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

static bool nothing_answers(int r)
{
	return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTSOCK;
}

int cli_daemon_connect(const struct cli_ctx *ctx, bool autostart, struct proxy_client **ret,
                       bool *ret_started, struct strata_error **ret_err)
{
	_cleanup_free_ char *log_path = NULL, *lock_path = NULL, *pid_path = NULL;
	_cleanup_close_ int lock_fd = -1;
	_cleanup_error_ struct strata_error *err = NULL;
	pid_t pid = -1;
	int r;

	if (ret_started)
		*ret_started = false;
	r = try_connect(ctx->address, ret, &err);
	if (r >= 0)
		return 0;
	if (!autostart || !nothing_answers(r)) {
		strata_error_propagate(ret_err, &err);
		return r;
	}

	r = path_mkdir_p(ctx->root, 0711);
	if (r < 0)
		return strata_error_set_errno(
		        ret_err, r, "start the Strata daemon: create root \"%s\"", ctx->root);
	log_path = path_join(ctx->root, "strata.log");
	lock_path = path_join(ctx->root, ".daemon-start.lock");
	pid_path = path_join(ctx->root, "strata.pid");
	if (!log_path || !lock_path || !pid_path)
		return -ENOMEM;
	lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "lock \"%s\"", lock_path);

	/* Someone else may have started it while we waited for the lock. */
	strata_error_free(err);
	err = NULL;
	r = try_connect(ctx->address, ret, &err);
	if (r >= 0)
		return 0;
	if (!nothing_answers(r)) {
		strata_error_propagate(ret_err, &err);
		return r;
	}

	log_debug("no daemon at %s: starting `strata serve` (log %s)", ctx->address, log_path);
	r = spawn_daemon(ctx, log_path, &pid, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "start the Strata daemon");
	{
		char buf[32];
		_cleanup_close_ int dfd = open(ctx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		snprintf(buf, sizeof(buf), "%d\n", (int)pid);
		if (dfd >= 0)
			(void)path_write_file_atomic_at(dfd, "strata.pid", buf, strlen(buf), 0644);
	}

	int64_t deadline = now_ms() + timeout_ms();
	for (unsigned delay_us = 2000;; delay_us = MIN(delay_us * 2, 50000u)) {
		strata_error_free(err);
		err = NULL;
		r = try_connect(ctx->address, ret, &err);
		if (r >= 0) {
			if (ret_started)
				*ret_started = true;
			return 0;
		}
		if (!process_alive(pid) || now_ms() > deadline) {
			_cleanup_free_ char *tail = log_tail(log_path, 10);
			bool died = !process_alive(pid);
			if (died)
				(void)unlink(pid_path);
			return strata_error_set(
			        ret_err, died ? -ECHILD : -ETIMEDOUT,
			        "started `strata serve` (pid %d) but %s at %s (%s)%s%s%s%s",
			        (int)pid,
			        died ? "it exited before answering" : "it does not answer",
			        ctx->address, strata_error_message(err),
			        tail ? "; last lines of " : "", tail ? log_path : "",
			        tail ? ":\n" : "", tail ? tail : "");
		}
		usleep(delay_us);
	}
}

/* --- container helpers ------------------------------------------------------ */

const char *cli_container_snapshot_key(const char *id, char ret[static CLI_SNAPSHOT_KEY_MAX])
{
	snprintf(ret, CLI_SNAPSHOT_KEY_MAX, CLI_SNAPSHOT_PREFIX "%s", id);
	return ret;
}

static int snapshot_remove_once(struct proxy_client *client, const char *key,
                                struct strata_error **ret_err)
{
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.snapshotter = (char *)"strata";
	req.key = (char *)key;
	r = proxy_client_unary(client, "/containerd.services.snapshots.v1.Snapshots/Remove",
	                       &req.base, &google__protobuf__empty__descriptor, &resp, 60000,
	                       ret_err);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

int cli_container_snapshot_remove(const struct cli_ctx *ctx, struct proxy_client **client,
                                  const char *id, bool autostart, struct strata_error **ret_err)
{
	char key[CLI_SNAPSHOT_KEY_MAX];
	_cleanup_error_ struct strata_error *err = NULL;
	int r;

	cli_container_snapshot_key(id, key);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!*client) {
			r = cli_daemon_connect(ctx, autostart, client, NULL, ret_err);
			if (r < 0)
				return strata_error_prefix(ret_err, r, "remove snapshot %s", key);
		}
		strata_error_free(err);
		err = NULL;
		r = snapshot_remove_once(*client, key, &err);
		if (r >= 0 || r == -ENOENT)
			return 0;
		/* A connection the daemon closed while the container ran. */
		if (r != -ECONNRESET && r != -EPIPE && r != -ENOTCONN)
			break;
		*client = proxy_client_free(*client);
	}
	strata_error_propagate(ret_err, &err);
	return strata_error_prefix(ret_err, r, "remove snapshot %s", key);
}

void cli_runtime_cni_config(const struct cli_ctx *ctx, struct rt_cni_config *ret)
{
	const char *s;

	*ret = (struct rt_cni_config){0};
	if (toml_as_string(toml_get_path(ctx->config, "runtime", "cni_conf_dir", NULL), &s) >= 0 &&
	    *s)
		ret->conf_dir = s;
	if (toml_as_string(toml_get_path(ctx->config, "runtime", "cni_plugin_path", NULL), &s) >=
	            0 &&
	    *s)
		ret->plugin_path = s;
}
