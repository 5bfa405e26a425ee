/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Real runs: a busybox-static rootfs through the real containerd-shim-runc-v2,
 * runc and CNI plugins (root only). Every test checks that it left nothing
 * behind: netns, shim socket, container dir, host-local reservation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "runtime.h"

static char tmp[] = "/tmp/strata-rt-run-XXXXXX";
static char rootfs[256], root[256], statedir[256], cniconf[256];

static void sh(const char *fmt, ...) _printf_(1, 2);
static void sh(const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	va_start(ap, fmt);
	assert_true(vasprintf(&cmd, fmt, ap) >= 0);
	va_end(ap);
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "# command failed (%d): %s\n", r, cmd);
	free(cmd);
}

static int setup(void **state)
{
	if (geteuid() != 0)
		return -1;
	if (!mkdtemp(tmp))
		return -1;
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmp);
	snprintf(root, sizeof(root), "%s/root", tmp);
	snprintf(statedir, sizeof(statedir), "%s/state", tmp);
	snprintf(cniconf, sizeof(cniconf), "%s/net.d", tmp);
	sh("mkdir -p %s/bin %s/etc %s/tmp %s/proc %s/sys %s/dev && cp /bin/busybox %s/bin/busybox",
	   rootfs, rootfs, rootfs, rootfs, rootfs, rootfs, rootfs);
	sh("for a in sh ls cat echo true false sleep id env ip ping hostname wc; do "
	   "ln -sf busybox %s/bin/$a; done",
	   rootfs);
	sh("printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534::/:/bin/false\\n' "
	   ">%s/etc/passwd && printf 'root:x:0:\\nnogroup:x:65534:\\n' >%s/etc/group",
	   rootfs, rootfs);
	return 0;
}

static int teardown(void **state)
{
	sh("rm -rf %s", tmp);
	return 0;
}

struct out {
	int fd;
	char path[300];
};

static void out_open(struct out *o, const char *name)
{
	snprintf(o->path, sizeof(o->path), "%s/%s", tmp, name);
	o->fd = open(o->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(o->fd >= 0);
}

static char *out_read(struct out *o)
{
	char *s = NULL;
	assert_int_equal(path_read_file_at(AT_FDCWD, o->path, 1 << 20, &s, NULL), 0);
	close(o->fd);
	return s;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Run args with net mode; returns the exit code, stdout in *ret_out. */
static int run(const char *id, enum rt_net_mode net, const char **args, char **ret_out,
               void (*while_running)(struct rt_container *))
{
	struct out o, e;
	struct rt_container *c = NULL;
	struct strata_error *err = NULL;
	int code = -1, r;

	out_open(&o, "stdout");
	out_open(&e, "stderr");
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = id,
	        .image = "busybox",
	        .image_config = "{\"config\":{\"Cmd\":[\"sh\"],\"Env\":[\"FOO=bar\"]}}",
	        .rootfs = rootfs,
	        .spec = {.args = (char **)args, .net = net},
	        .cni = {.conf_dir = cniconf},
	        .custom_stdio = true,
	        .stdin_fd = -1,
	        .stdout_fd = o.fd,
	        .stderr_fd = e.fd,
	};
	r = rt_container_create(&cfg, &c, &err);
	if (r < 0)
		fprintf(stderr, "# create: %s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	r = rt_container_start(c, &err);
	if (r < 0)
		fprintf(stderr, "# start: %s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	if (while_running)
		while_running(c);
	r = rt_container_wait(c, &code, &err);
	if (r < 0)
		fprintf(stderr, "# wait: %s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	r = rt_container_delete(c, false, &err);
	if (r < 0)
		fprintf(stderr, "# delete: %s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	rt_container_free(c);
	strata_error_free(err);
	*ret_out = out_read(&o);
	char *errs = out_read(&e);
	if (*errs)
		fprintf(stderr, "# container stderr: %s", errs);
	free(errs);
	return code;
}

/* Nothing left behind by container id. */
static void assert_clean(const char *id)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/containers/%s", statedir, id);
	assert_int_equal(stat(p, &st), -1);
	snprintf(p, sizeof(p), "%s/containers/%s", root, id);
	assert_int_equal(stat(p, &st), -1);
	snprintf(p, sizeof(p), "/run/netns/strata-%s", id);
	assert_int_equal(stat(p, &st), -1);
	snprintf(p, sizeof(p), "/run/containerd/runc/strata/%s", id);
	assert_int_equal(stat(p, &st), -1);
	struct rt_shim_params sp = {.ns = "strata", .id = id, .address = NULL};
	char *addr = NULL, key[300];
	snprintf(key, sizeof(key), "%s/containers", statedir);
	sp.address = key;
	assert_int_equal(rt_shim_socket_address(&sp, &addr), 0);
	assert_int_equal(stat(addr + 7, &st), -1);
	free(addr);
	/* no mount under our temp dir */
	char *mounts = NULL;
	assert_int_equal(
	        path_read_file_at(AT_FDCWD, "/proc/self/mountinfo", 1 << 22, &mounts, NULL), 0);
	assert_null(strstr(mounts, tmp));
	snprintf(p, sizeof(p), "strata-%s", id);
	assert_null(strstr(mounts, p));
	free(mounts);
}

static void test_echo(void **state)
{
	const char *args[] = {"echo", "hi", NULL};
	char *out = NULL;
	int64_t t0 = now_us();
	assert_int_equal(run("echo1", RT_NET_HOST, args, &out, NULL), 0);
	fprintf(stderr, "# echo hi (host net): %.1f ms\n", (double)(now_us() - t0) / 1000.0);
	assert_string_equal(out, "hi\n");
	free(out);
	assert_clean("echo1");
}

static void test_env_from_image(void **state)
{
	const char *args[] = {"sh", "-c", "echo $FOO $(id -u) $(pwd)", NULL};
	char *out = NULL;
	assert_int_equal(run("env1", RT_NET_HOST, args, &out, NULL), 0);
	assert_string_equal(out, "bar 0 /\n");
	free(out);
	assert_clean("env1");
}

static void test_exit_code(void **state)
{
	const char *args[] = {"sh", "-c", "exit 3", NULL};
	char *out = NULL;
	assert_int_equal(run("exit3", RT_NET_HOST, args, &out, NULL), 3);
	free(out);
	assert_clean("exit3");
}

static void kill9(struct rt_container *c)
{
	struct strata_error *err = NULL;
	usleep(100000);
	assert_int_equal(rt_container_kill(c, SIGKILL, &err), 0);
}

static void test_sigkill(void **state)
{
	const char *args[] = {"sleep", "30", NULL};
	char *out = NULL;
	assert_int_equal(run("kill9", RT_NET_HOST, args, &out, kill9), 137);
	free(out);
	assert_clean("kill9");
}

static void test_net_none(void **state)
{
	const char *args[] = {"sh", "-c",
	                      "ls /sys/class/net; ip -o addr show lo | grep -c 127.0.0.1", NULL};
	char *out = NULL;
	assert_int_equal(run("netnone", RT_NET_NONE, args, &out, NULL), 0);
	assert_string_equal(out, "lo\n1\n");
	free(out);
	assert_clean("netnone");
}

static void test_net_bridge(void **state)
{
	const char *args[] = {"sh", "-c",
	                      "ip -o -4 addr show eth0 | grep -o '10\\.4\\.88\\.[0-9]*/24' && "
	                      "ping -c 1 -W 2 " RT_CNI_GATEWAY " >/dev/null && echo ping-ok",
	                      NULL};
	char *out = NULL;
	struct stat st;
	char p[256];
	assert_int_equal(run("bridge1", RT_NET_BRIDGE, args, &out, NULL), 0);
	assert_non_null(strstr(out, "10.4.88."));
	assert_non_null(strstr(out, "ping-ok"));
	/* host-local released the address */
	char ip[32] = "";
	sscanf(out, "%31[0-9.]", ip);
	snprintf(p, sizeof(p), "/var/lib/cni/networks/" RT_CNI_NETWORK "/%s", ip);
	assert_int_equal(stat(p, &st), -1);
	free(out);
	assert_clean("bridge1");
}

static void test_missing_runc(void **state)
{
	char *saved = strdup(getenv("PATH"));
	struct rt_container *c = NULL;
	struct strata_error *err = NULL;
	const char *args[] = {"true", NULL};
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "norunc",
	        .rootfs = rootfs,
	        .spec = {.args = (char **)args, .net = RT_NET_HOST},
	        .detach = true,
	};
	/* A PATH with the shim but without runc. */
	sh("mkdir -p %s/onlyshim && ln -sf /usr/bin/containerd-shim-runc-v2 %s/onlyshim/", tmp,
	   tmp);
	char path[300];
	snprintf(path, sizeof(path), "%s/onlyshim", tmp);
	setenv("PATH", path, 1);
	int r = rt_container_create(&cfg, &c, &err);
	setenv("PATH", saved, 1);
	free(saved);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(strata_error_message(err),
	                       "runc not found in PATH: install it with 'apt-get install runc'"));
	strata_error_free(err);
	assert_null(c);
	assert_clean("norunc");
}

static void test_detached_and_reload(void **state)
{
	struct rt_container *c = NULL, *c2 = NULL;
	struct strata_error *err = NULL;
	const char *args[] = {"sh", "-c", "echo detached-out; sleep 30", NULL};
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "det1",
	        .name = "mydet",
	        .rootfs = rootfs,
	        .spec = {.args = (char **)args, .net = RT_NET_NONE},
	        .cni = {.conf_dir = cniconf},
	        .detach = true,
	};
	struct rt_container_info info;
	assert_int_equal(rt_container_create(&cfg, &c, &err), 0);
	assert_int_equal(rt_container_start(c, &err), 0);
	rt_container_free(c); /* "the CLI exits" */

	assert_int_equal(rt_container_load(statedir, "mydet", &c2, &err), 0);
	assert_int_equal(rt_container_inspect(c2, &info, &err), 0);
	assert_true(info.shim_alive);
	assert_int_equal(info.status, RT_TASK_RUNNING);
	rt_container_info_done(&info);
	usleep(200000);
	char p[300], *log = NULL;
	snprintf(p, sizeof(p), "%s/containers/det1/container.log", root);
	assert_int_equal(path_read_file_at(AT_FDCWD, p, 1 << 20, &log, NULL), 0);
	assert_string_equal(log, "detached-out\n");
	free(log);
	/* rm without force refuses a running container */
	assert_int_equal(rt_container_delete(c2, false, &err), -EBUSY);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_container_delete(c2, true, &err), 0);
	rt_container_free(c2);
	assert_clean("det1");
}

/* pid has exited (a zombie has: its reaper may be slow), within 2 s. */
static bool process_gone(pid_t pid)
{
	for (int i = 0; i < 20; i++) {
		char p[64], *stat = NULL;
		bool zombie;
		snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
		if (path_read_file_at(AT_FDCWD, p, 4096, &stat, NULL) < 0)
			return true;
		zombie = strstr(stat, ") Z ") != NULL;
		free(stat);
		if (zombie)
			return true;
		usleep(100000);
	}
	return false;
}

static void test_dead_shim_cleanup(void **state)
{
	struct rt_container *c = NULL, *c2 = NULL;
	struct strata_error *err = NULL;
	const char *args[] = {"sleep", "30", NULL};
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "dead1",
	        .rootfs = rootfs,
	        .spec = {.args = (char **)args, .net = RT_NET_BRIDGE},
	        .cni = {.conf_dir = cniconf},
	        .detach = true,
	};
	struct rt_container_info info;
	assert_int_equal(rt_container_create(&cfg, &c, &err), 0);
	assert_int_equal(rt_container_start(c, &err), 0);
	assert_int_equal(rt_container_inspect(c, &info, &err), 0);
	assert_true(info.shim_alive);
	assert_true(info.shim_pid > 0);
	pid_t init = (pid_t)info.pid;
	assert_true(init > 0);
	/* kill -9 the shim */
	assert_int_equal(kill((pid_t)info.shim_pid, SIGKILL), 0);
	rt_container_info_done(&info);
	rt_container_free(c);
	usleep(200000);
	assert_int_equal(rt_container_load(statedir, "dead1", &c2, &err), 0);
	assert_int_equal(rt_container_inspect(c2, &info, &err), 0);
	assert_false(info.shim_alive);
	rt_container_info_done(&info);
	int r = rt_container_delete(c2, true, &err);
	if (r < 0)
		fprintf(stderr, "# %s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	rt_container_free(c2);
	assert_clean("dead1");
	/* the container's sleep is gone too (its pid, not a `sleep 30` some
	 * other process of a shared host may run) */
	assert_true(process_gone(init));
}

/* Create's runc options reach the shim (it writes them to options.json). */
static void check_options(struct rt_container *c)
{
	char p[512], *opts = NULL;
	snprintf(p, sizeof(p), "%s/options.json", rt_container_dir(c));
	assert_int_equal(path_read_file_at(AT_FDCWD, p, 1 << 20, &opts, NULL), 0);
	assert_non_null(strstr(opts, "\"binary_name\":\"runc\""));
	free(opts);
}

static void test_runtime_binary_option(void **state)
{
	struct rt_container *c = NULL;
	struct strata_error *err = NULL;
	const char *args[] = {"true", NULL};
	int code = -1;
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "rtbin",
	        .rootfs = rootfs,
	        .spec = {.args = (char **)args, .net = RT_NET_HOST},
	        .runtime_binary = "runc",
	        .detach = true,
	};
	assert_int_equal(rt_container_create(&cfg, &c, &err), 0);
	check_options(c);
	assert_int_equal(rt_container_start(c, &err), 0);
	assert_int_equal(rt_container_wait(c, &code, &err), 0);
	assert_int_equal(code, 0);
	assert_int_equal(rt_container_delete(c, false, &err), 0);
	rt_container_free(c);
	assert_clean("rtbin");
}

/* The shim's own `start` action still works (STRATA_SHIM_START_ACTION=1). */
static void test_start_action(void **state)
{
	const char *args[] = {"echo", "via-start", NULL};
	char *out = NULL;
	setenv("STRATA_SHIM_START_ACTION", "1", 1);
	int code = run("startact", RT_NET_NONE, args, &out, NULL);
	assert_int_equal(code, 0);
	assert_string_equal(out, "via-start\n");
	free(out);
	assert_clean("startact");
}

static int unset_start_action(void **state)
{
	unsetenv("STRATA_SHIM_START_ACTION");
	return 0;
}

/* begin without finish (the image or snapshot failed): nothing stays. */
static void test_begin_abandoned(void **state)
{
	struct rt_container *c = NULL;
	struct strata_error *err = NULL;
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "abandon",
	        .spec = {.net = RT_NET_NONE},
	        .detach = true,
	};
	struct rt_container_info info;
	assert_int_equal(rt_container_begin(&cfg, &c, &err), 0);
	/* Look first, assert after the cleanup: a failed check must not leave
	 * a shim running. */
	assert_int_equal(rt_container_inspect(c, &info, &err), 0);
	/* no rootfs yet: finish refuses, and cleans up */
	int r = rt_container_finish(c, &cfg, &err);
	strata_error_free(err);
	err = NULL;
	rt_container_free(c);
	pid_t shim = (pid_t)info.shim_pid;
	assert_true(info.shim_alive);
	assert_true(info.shim_pid > 0);
	assert_int_equal(info.status, RT_TASK_UNKNOWN); /* no task yet */
	rt_container_info_done(&info);
	assert_int_equal(r, -EINVAL);
	assert_clean("abandon");
	/* the shim exits after Shutdown (our child: reaped, or soon gone) */
	for (int i = 0; i < 100 && kill(shim, 0) == 0; i++) {
		(void)waitpid(shim, NULL, WNOHANG);
		usleep(10000);
	}
	assert_int_equal(kill(shim, 0), -1);
}

/* Layer mounts: an overlay we mount with "volatile", released (unmounted)
 * as soon as the task stopped, then everything deleted. */
static void test_overlay_release(void **state)
{
	struct rt_container *c = NULL;
	struct strata_error *err = NULL;
	char lower[300], upper[300], work[300], opt[1024], p[400];
	const char *args[] = {"sh", "-c", "echo data >/written", NULL};
	struct stat st;
	int code = -1;

	snprintf(lower, sizeof(lower), "%s", rootfs);
	snprintf(upper, sizeof(upper), "%s/ovl/upper", tmp);
	snprintf(work, sizeof(work), "%s/ovl/work", tmp);
	sh("mkdir -p %s %s", upper, work);
	snprintf(opt, sizeof(opt), "lowerdir=%s", lower);
	char uo[400], wo[400];
	snprintf(uo, sizeof(uo), "upperdir=%s", upper);
	snprintf(wo, sizeof(wo), "workdir=%s", work);
	char *options[] = {(char *)"index=off", opt, uo, wo, NULL};
	struct rt_mount m = {
	        .type = (char *)"overlay", .source = (char *)"overlay", .options = options};
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "ovl1",
	        .mounts = &m,
	        .n_mounts = 1,
	        .spec = {.args = (char **)args, .net = RT_NET_NONE},
	        .detach = true,
	};
	assert_int_equal(rt_container_create(&cfg, &c, &err), 0);
	/* mounted with volatile: overlayfs marks the work dir */
	snprintf(p, sizeof(p), "%s/work/incompat/volatile", work);
	assert_int_equal(stat(p, &st), 0);
	/* not released while the task exists but has not run */
	assert_int_equal(rt_container_release_rootfs(c, &err), -EBUSY);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_container_start(c, &err), 0);
	assert_int_equal(rt_container_wait(c, &code, &err), 0);
	assert_int_equal(code, 0);
	assert_int_equal(rt_container_release_rootfs(c, &err), 0);
	char *mounts = NULL;
	assert_int_equal(
	        path_read_file_at(AT_FDCWD, "/proc/self/mountinfo", 1 << 22, &mounts, NULL), 0);
	assert_null(strstr(mounts, rt_container_dir(c)));
	free(mounts);
	/* the write went to the upper dir */
	snprintf(p, sizeof(p), "%s/written", upper);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(rt_container_delete(c, false, &err), 0);
	rt_container_free(c);
	sh("rm -rf %s/ovl", tmp);
	assert_clean("ovl1");
}

/* rt_exec: output and exit code of a process in a running container, its
 * fifos gone after, -ESRCH once the container stopped. */
static void test_exec(void **state)
{
	struct rt_container *c = NULL;
	struct strata_error *err = NULL;
	const char *args[] = {"sleep", "30", NULL};
	const char *eargs[] = {"sh", "-c", "echo \"$FOO $X\"; echo to-err >&2; exit 7", NULL};
	const char *xenv[] = {"X=y", NULL};
	struct rt_container_config cfg = {
	        .root = root,
	        .state_dir = statedir,
	        .id = "exec1",
	        .image_config = "{\"config\":{\"Env\":[\"FOO=bar\"]}}",
	        .rootfs = rootfs,
	        .spec = {.args = (char **)args, .net = RT_NET_NONE},
	        .cni = {.conf_dir = cniconf},
	        .detach = true,
	};
	struct out o, e;
	struct rt_exec *x = NULL;
	char p[512], *s;
	int code = -1;
	struct stat st;

	assert_int_equal(rt_container_create(&cfg, &c, &err), 0);
	assert_int_equal(rt_container_start(c, &err), 0);
	out_open(&o, "exec-out");
	out_open(&e, "exec-err");
	struct rt_exec_config xc = {
	        .opts = {.args = (char **)eargs, .env = (char **)xenv},
	        .custom_stdio = true,
	        .stdin_fd = -1,
	        .stdout_fd = o.fd,
	        .stderr_fd = e.fd,
	};
	int r = rt_exec_start(c, &xc, &x, &err);
	if (r < 0)
		fprintf(stderr, "# exec: %s\n", strata_error_message(err));
	assert_int_equal(r, 0);
	snprintf(p, sizeof(p), "%s/containers/exec1/exec/%s/stdout", statedir, rt_exec_id(x));
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(rt_exec_wait(x, &code, &err), 0);
	assert_int_equal(code, 7);
	x = rt_exec_free(x);
	assert_int_equal(stat(p, &st), -1);
	s = out_read(&o);
	assert_string_equal(s, "bar y\n");
	free(s);
	s = out_read(&e);
	assert_string_equal(s, "to-err\n");
	free(s);

	/* not found: -ENOEXEC with runc's message; nothing left */
	const char *nargs[] = {"/no/such", NULL};
	xc = (struct rt_exec_config){.opts = {.args = (char **)nargs},
	                             .custom_stdio = true,
	                             .stdin_fd = -1,
	                             .stdout_fd = -1,
	                             .stderr_fd = -1};
	assert_int_equal(rt_exec_start(c, &xc, &x, &err), -ENOEXEC);
	assert_non_null(strstr(strata_error_message(err), "/no/such"));
	err = strata_error_free(err);
	snprintf(p, sizeof(p), "%s/containers/exec1/exec", statedir);
	assert_int_equal(rmdir(p), 0); /* empty */

	/* stopped */
	kill9(c);
	assert_int_equal(rt_container_wait(c, &code, &err), 0);
	assert_int_equal(rt_exec_start(c, &xc, &x, &err), -ESRCH);
	assert_non_null(strstr(strata_error_message(err), "is not running"));
	err = strata_error_free(err);
	assert_int_equal(rt_container_delete(c, false, &err), 0);
	rt_container_free(c);
	assert_clean("exec1");
}

/* Running, or stopped: not exited (a zombie has exited). */
static bool process_alive(pid_t pid)
{
	char p[64], *stat = NULL;
	bool alive;
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	if (path_read_file_at(AT_FDCWD, p, 4096, &stat, NULL) < 0)
		return false;
	const char *paren = strrchr(stat, ')');
	alive = !paren || (paren[1] && paren[2] != 'Z');
	free(stat);
	return alive;
}

/* The shim's socket path is a hash of the id: a shim that has answered
 * Shutdown removes that path as it exits, which must not be the socket of
 * the next shim of the same id. */
static void test_reused_id(void **state)
{
	const char *args[] = {"sleep", "30", NULL};
	struct rt_container *prev = NULL;
	pid_t shim_pid = 0;

	for (int i = 0; i < 6; i++) {
		struct rt_container *c = NULL, *c2 = NULL;
		struct strata_error *err = NULL;
		struct rt_container_info info;
		struct rt_container_config cfg = {
		        .root = root,
		        .state_dir = statedir,
		        .id = "reuse",
		        .rootfs = rootfs,
		        .spec = {.args = (char **)args, .net = RT_NET_NONE},
		        .cni = {.conf_dir = cniconf},
		        .detach = true,
		};
		if (prev) {
			assert_int_equal(rt_container_delete(prev, true, &err), 0);
			prev = rt_container_free(prev);
			/* rm waited for the old shim: it cannot remove the new
			 * shim's socket any more */
			assert_false(process_alive(shim_pid));
		}
		assert_int_equal(rt_container_create(&cfg, &c, &err), 0);
		assert_int_equal(rt_container_start(c, &err), 0);
		rt_container_free(c); /* as a CLI that exits */
		/* Long enough for a previous shim to have finished exiting. */
		usleep(150000);
		assert_int_equal(rt_container_load(statedir, "reuse", &c2, &err), 0);
		assert_int_equal(rt_container_inspect(c2, &info, &err), 0);
		if (!info.shim_alive)
			fprintf(stderr, "# round %d: the shim's socket is gone\n", i);
		assert_true(info.shim_alive);
		assert_int_equal(info.status, RT_TASK_RUNNING);
		shim_pid = (pid_t)info.shim_pid;
		rt_container_info_done(&info);
		prev = c2;
		strata_error_free(err);
	}
	assert_int_equal(rt_container_delete(prev, true, NULL), 0);
	rt_container_free(prev);
	assert_clean("reuse");
}

/* Not a pass/fail figure: run-to-exit wall time of `true`, for the notes. */
static void test_timing_true(void **state)
{
	const char *args[] = {"true", NULL};
	const enum rt_net_mode modes[] = {RT_NET_HOST, RT_NET_NONE, RT_NET_BRIDGE};
	const char *names[] = {"host", "none", "bridge"};
	for (size_t m = 0; m < ELEMENTSOF(modes); m++) {
		int64_t best = INT64_MAX, total = 0;
		const int n = 10;
		for (int i = 0; i < n; i++) {
			/* A fresh id each time, as `strata run` always makes one: the
			 * shim's socket path is a hash of the id, and a shim that has
			 * answered Shutdown may still be unlinking it. */
			char id[32];
			char *out = NULL;
			int64_t t0 = now_us();
			snprintf(id, sizeof(id), "timing-%zu-%d", m, i);
			assert_int_equal(run(id, modes[m], args, &out, NULL), 0);
			int64_t dt = now_us() - t0;
			total += dt;
			best = MIN(best, dt);
			free(out);
			assert_clean(id);
		}
		fprintf(stderr, "# true, --net %s: mean %.1f ms, best %.1f ms (%d runs)\n",
		        names[m], (double)total / n / 1000.0, (double)best / 1000.0, n);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_echo),
	        cmocka_unit_test(test_env_from_image),
	        cmocka_unit_test(test_exit_code),
	        cmocka_unit_test(test_sigkill),
	        cmocka_unit_test(test_net_none),
	        cmocka_unit_test(test_net_bridge),
	        cmocka_unit_test(test_missing_runc),
	        cmocka_unit_test(test_detached_and_reload),
	        cmocka_unit_test(test_dead_shim_cleanup),
	        cmocka_unit_test(test_runtime_binary_option),
	        cmocka_unit_test_teardown(test_start_action, unset_start_action),
	        cmocka_unit_test(test_begin_abandoned),
	        cmocka_unit_test(test_overlay_release),
	        cmocka_unit_test(test_exec),
	        cmocka_unit_test(test_reused_id),
	        cmocka_unit_test(test_timing_true),
	};
	if (geteuid() != 0)
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
