/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signals and the terminal of an attached run or exec (see attach.h). The
 * state is global because signal handlers are: one attachment at a time.
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "attach.h"

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	uint8_t b = (uint8_t)sig;
	(void)!write(sig_pipe[1], &b, 1);
	errno = saved;
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};

int cli_signals_install(void)
{
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};

	if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return negative_errno();
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
		if (sigaction(forwarded[i], &sa, NULL) < 0)
			return negative_errno();
	return 0;
}

void cli_signals_restore(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};

	if (sig_pipe[0] < 0)
		return;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
		(void)sigaction(forwarded[i], &sa, NULL);
	sig_pipe[0] = safe_close(sig_pipe[0]);
	sig_pipe[1] = safe_close(sig_pipe[1]);
}

int cli_signals_pending(void)
{
	uint8_t b;
	int sig = 0;
	while (sig_pipe[0] >= 0 && read(sig_pipe[0], &b, 1) == 1)
		if (b != SIGWINCH)
			sig = b;
	return sig;
}

bool cli_terminal_size(unsigned *ret_width, unsigned *ret_height)
{
	struct winsize ws;
	if ((ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 ||
	     ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) &&
	    ws.ws_col > 0 && ws.ws_row > 0) {
		*ret_width = ws.ws_col;
		*ret_height = ws.ws_row;
		return true;
	}
	return false;
}

/* Only touched by the thread that calls start and stop. */
static struct forwarder {
	struct cli_attach_target t;
	int stop_fd[2];
	pthread_t thread;
	bool running;
} fwd = {.stop_fd = {-1, -1}};

static void resize(const struct cli_attach_target *t)
{
	unsigned w, h;
	if (t->resize && cli_terminal_size(&w, &h))
		(void)t->resize(t->target, w, h);
}

static void *forward_signals(void *arg)
{
	struct forwarder *f = arg;
	int count = 0;

	for (;;) {
		struct pollfd pfd[2] = {
		        {.fd = sig_pipe[0], .events = POLLIN},
		        {.fd = f->stop_fd[0], .events = POLLIN},
		};
		uint8_t b;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		while (read(sig_pipe[0], &b, 1) == 1) {
			int sig = b;
			if (sig == SIGWINCH) {
				resize(&f->t);
				continue;
			}
			/* Like docker: pass it on; insisting kills. */
			if ((sig == SIGINT || sig == SIGTERM) && ++count > 1)
				sig = SIGKILL;
			(void)f->t.kill(f->t.target, sig);
		}
	}
	return NULL;
}

int cli_forward_start(const struct cli_attach_target *t)
{
	int r;

	if (sig_pipe[0] < 0 || fwd.running)
		return -EINVAL;
	fwd.t = *t;
	if (pipe2(fwd.stop_fd, O_CLOEXEC) < 0)
		return negative_errno();
	r = -pthread_create(&fwd.thread, NULL, forward_signals, &fwd);
	if (r < 0) {
		fwd.stop_fd[0] = safe_close(fwd.stop_fd[0]);
		fwd.stop_fd[1] = safe_close(fwd.stop_fd[1]);
		return r;
	}
	fwd.running = true;
	/* A resize before the thread ran stays in the pipe: no size is lost. */
	resize(t);
	return 0;
}

void cli_forward_stop(void)
{
	if (!fwd.running)
		return;
	(void)!write(fwd.stop_fd[1], "x", 1);
	pthread_join(fwd.thread, NULL);
	fwd.running = false;
	fwd.stop_fd[0] = safe_close(fwd.stop_fd[0]);
	fwd.stop_fd[1] = safe_close(fwd.stop_fd[1]);
}

static struct termios saved_tio;
static bool tio_saved;

void cli_terminal_raw(void)
{
	struct termios raw;
	if (tio_saved || !isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	raw = saved_tio;
	cfmakeraw(&raw);
	/* Output post-processing off too: the pty in the container does it. */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
		tio_saved = true;
}

void cli_terminal_restore(void)
{
	if (tio_saved)
		(void)tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
	tio_saved = false;
}

int cli_start_failure_code(const char *msg)
{
	/* runc: `exec: "CMD": executable file not found in $PATH`, or
	 * `exec: "CMD": stat CMD: no such file or directory`; a missing -w
	 * dir says "chdir to cwd" instead, and is not 127. */
	bool cmd = strstr(msg, "exec: \"") != NULL;
	if (cmd &&
	    (strstr(msg, "executable file not found") || strstr(msg, "no such file or directory")))
		return 127;
	if (strstr(msg, "permission denied"))
		return 126;
	if (strstr(msg, "not a directory"))
		return 127;
	return 0;
}

void cli_stdio_ensure_open(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		/* open() takes the lowest free fd: this one. */
		int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
		if (n >= 0 && n != fd)
			close(n);
	}
}

int cli_process_opt(const char *cmd, int c, char **argv, struct cli_process_opts *o)
{
	switch (c) {
	case 'i':
		o->interactive = true;
		return 0;
	case 't':
		o->tty = true;
		return 0;
	case 'e': {
		if (!*optarg || optarg[0] == '=')
			return cli_usage_error(cmd, "invalid -e \"%s\": want KEY=VALUE", optarg);
		char **n = realloc(o->env, (o->n_env + 2) * sizeof(char *));
		if (!n)
			return cli_fail(cmd, "out of memory");
		o->env = n;
		o->env[o->n_env++] = optarg;
		o->env[o->n_env] = NULL;
		return 0;
	}
	case 'w':
		if (optarg[0] != '/')
			return cli_usage_error(cmd, "-w \"%s\": must be an absolute path", optarg);
		o->cwd = optarg;
		return 0;
	case 'u':
		if (!*optarg)
			return cli_usage_error(cmd, "-u needs USER[:GROUP]");
		o->user = optarg;
		return 0;
	default:
		if (optopt && optopt < 0x100)
			return cli_usage_error(cmd, "unknown or incomplete option '-%c'", optopt);
		return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
	}
}
