/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata stop [-t SECONDS] ID...: SIGTERM, then SIGKILL once the timeout
 * passes (default 10 s, as docker). strata kill [-s SIGNAL] ID...: one
 * signal (default SIGKILL). Both talk to the container's shim only.
 */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "runtime.h"

static const struct {
	const char *name;
	int sig;
} signals[] = {
        {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
        {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
        {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
        {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
        {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
        {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
        {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
        {"PWR", SIGPWR},       {"SYS", SIGSYS},
};

/* "TERM", "SIGTERM", "sigterm", "15". -EINVAL if none. */
static int parse_signal(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (!errno && *s && !*end)
		return v > 0 && v < NSIG ? (int)v : -EINVAL;
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < ELEMENTSOF(signals); i++)
		if (strcasecmp(s, signals[i].name) == 0)
			return signals[i].sig;
	return -EINVAL;
}

static bool running(const struct rt_container_info *i)
{
	return i->shim_alive && (i->status == RT_TASK_RUNNING || i->status == RT_TASK_PAUSED ||
	                         i->status == RT_TASK_PAUSING || i->status == RT_TASK_CREATED);
}

/* Whether the container still runs (inspect fresh). */
static bool still_running(struct rt_container *c)
{
	struct rt_container_info info;
	bool r;

	if (rt_container_inspect(c, &info, NULL) < 0)
		return false;
	r = running(&info);
	rt_container_info_done(&info);
	return r;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool wait_stopped(struct rt_container *c, int64_t timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	unsigned delay = 5000;

	for (;;) {
		if (!still_running(c))
			return true;
		if (now_ms() >= deadline)
			return false;
		usleep(delay);
		delay = MIN(delay * 2, 100000u);
	}
}

static int stop_one(const char *state, const char *id, long timeout_s)
{
	_cleanup_(rt_container_freep) struct rt_container *c = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	int r;

	r = rt_container_load(state, id, &c, &err);
	if (r < 0)
		return cli_fail("stop", "%s", strata_error_message(err));
	if (still_running(c)) {
		r = rt_container_kill(c, SIGTERM, &err);
		if (r < 0 && r != -ENOENT)
			return cli_fail("stop", "%s: %s", id, strata_error_message(err));
		if (!wait_stopped(c, (int64_t)timeout_s * 1000)) {
			strata_error_free(err);
			err = NULL;
			r = rt_container_kill(c, SIGKILL, &err);
			if (r < 0 && r != -ENOENT)
				return cli_fail("stop", "%s: %s", id, strata_error_message(err));
			if (!wait_stopped(c, 10000))
				return cli_fail("stop", "%s: still running 10 s after SIGKILL", id);
		}
	}
	printf("%s\n", id);
	return EXIT_OK;
}

int cmd_stop(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"time", required_argument, NULL, 't'},
	        {"timeout", required_argument, NULL, 't'},
	        {0},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *state = NULL;
	long timeout_s = 10;
	int c, code = EXIT_OK;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
		char *end;
		if (c != 't')
			return cli_usage_error("stop", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		errno = 0;
		timeout_s = strtol(optarg, &end, 10);
		if (errno || *end || !*optarg || timeout_s < 0)
			return cli_usage_error("stop", "-t \"%s\": want a number of seconds",
			                       optarg);
	}
	if (optind >= argc)
		return cli_usage_error("stop", "missing container id");
	if (rt_state_dir(ctx->config, ctx->address, &state, &err) < 0)
		return cli_fail("stop", "%s", strata_error_message(err));
	for (int i = optind; i < argc; i++)
		if (stop_one(state, argv[i], timeout_s) != EXIT_OK)
			code = EXIT_ERROR;
	return code;
}

int cmd_kill(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"signal", required_argument, NULL, 's'},
	        {0},
	};
	_cleanup_error_ struct strata_error *serr = NULL;
	_cleanup_free_ char *state = NULL;
	int sig = SIGKILL, c, code = EXIT_OK;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c != 's')
			return cli_usage_error("kill", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		sig = parse_signal(optarg);
		if (sig < 0)
			return cli_usage_error("kill", "unknown signal \"%s\"", optarg);
	}
	if (optind >= argc)
		return cli_usage_error("kill", "missing container id");
	if (rt_state_dir(ctx->config, ctx->address, &state, &serr) < 0)
		return cli_fail("kill", "%s", strata_error_message(serr));
	for (int i = optind; i < argc; i++) {
		_cleanup_(rt_container_freep) struct rt_container *ct = NULL;
		_cleanup_error_ struct strata_error *err = NULL;

		if (rt_container_load(state, argv[i], &ct, &err) < 0) {
			code = cli_fail("kill", "%s", strata_error_message(err));
			continue;
		}
		if (!still_running(ct)) {
			code = cli_fail("kill", "container %s is not running", argv[i]);
			continue;
		}
		if (rt_container_kill(ct, sig, &err) < 0) {
			code = cli_fail("kill", "%s: %s", argv[i], strata_error_message(err));
			continue;
		}
		printf("%s\n", argv[i]);
	}
	return code;
}
