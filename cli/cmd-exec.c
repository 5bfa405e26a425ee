/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata exec [-i] [-t] [-e K=V]... [-w DIR] [-u USER] ID CMD...: a command
 * in a running container, through its shim (runtime/exec.c), with docker's
 * and nerdctl's semantics: the container's environment, working dir, user
 * and capabilities unless overridden; stdio relayed; signals forwarded as
 * for an attached run; the exit code passed through (128+N for signal N;
 * 126 when the command cannot be run, 127 when it is not found).
 */
#include <getopt.h>
#include <signal.h>
#include <string.h>

#include "attach.h"
#include "runtime.h"

struct exec_opts {
	struct cli_process_opts p;
	const char *id;
	char **args;
};

static int parse_args(int argc, char **argv, struct exec_opts *o)
{
	static const struct option opts[] = {CLI_PROCESS_LONG_OPTS, {0}};
	int c, r;

	opterr = 0;
	/* "+": options end at the container id; what follows is the command. */
	while ((c = getopt_long(argc, argv, "+" CLI_PROCESS_SHORT_OPTS, opts, NULL)) != -1) {
		r = cli_process_opt("exec", c, argv, &o->p);
		if (r != 0)
			return r;
	}
	if (optind >= argc)
		return cli_usage_error("exec", "missing container id");
	o->id = argv[optind++];
	if (optind >= argc)
		return cli_usage_error("exec", "missing command");
	o->args = argv + optind; /* argv is NULL-terminated */
	return 0;
}

static int exec_kill(void *target, int sig)
{
	return rt_exec_kill(target, sig, NULL);
}

static int exec_resize(void *target, unsigned width, unsigned height)
{
	return rt_exec_resize(target, width, height, NULL);
}

static int exec(struct cli_ctx *ctx, const struct exec_opts *o)
{
	_cleanup_(rt_container_freep) struct rt_container *c = NULL;
	_cleanup_(rt_exec_freep) struct rt_exec *e = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *state = NULL;
	int code = EXIT_ERROR, r, sig;

	/* As docker and nerdctl: -it relays a terminal, so stdin must be one. */
	if (o->p.tty && o->p.interactive && !isatty(STDIN_FILENO))
		return cli_fail("exec", "the input device is not a TTY");
	if (rt_state_dir(ctx->config, ctx->address, &state, &err) < 0 ||
	    rt_container_load(state, o->id, &c, &err) < 0)
		return cli_fail("exec", "%s", strata_error_message(err));

	struct rt_exec_config cfg = {
	        .opts =
	                {
	                        .args = o->args,
	                        .env = o->p.env,
	                        .cwd = o->p.cwd,
	                        .user = o->p.user,
	                        .tty = o->p.tty,
	                },
	        .interactive = o->p.interactive,
	};
	if (o->p.tty)
		(void)cli_terminal_size(&cfg.opts.console_width, &cfg.opts.console_height);
	r = cli_signals_install();
	if (r < 0)
		return cli_fail("exec", "install signal handlers: %s", strerror(-r));
	if (o->p.tty && o->p.interactive)
		cli_terminal_raw();
	r = rt_exec_start(c, &cfg, &e, &err);
	if (r < 0) {
		cli_terminal_restore();
		cli_signals_restore();
		(void)cli_fail("exec", "%s", strata_error_message(err));
		if (r != -ENOEXEC)
			return EXIT_ERROR;
		/* docker's 126 for any other failure to start the process */
		code = cli_start_failure_code(strata_error_message(err));
		return code ? code : 126;
	}
	sig = cli_signals_pending();
	if (sig)
		(void)rt_exec_kill(e, sig, NULL);

	struct cli_attach_target target = {
	        .target = e,
	        .kill = exec_kill,
	        .resize = o->p.tty ? exec_resize : NULL,
	};
	bool fwd_started = cli_forward_start(&target) >= 0;
	r = rt_exec_wait(e, &code, &err);
	cli_terminal_restore();
	if (fwd_started)
		cli_forward_stop();
	cli_signals_restore();
	if (r < 0) {
		(void)cli_fail("exec", "%s", strata_error_message(err));
		code = EXIT_ERROR;
	}
	return code;
}

int cmd_exec(struct cli_ctx *ctx, int argc, char **argv)
{
	struct exec_opts o = {0};
	int r;

	(void)signal(SIGPIPE, SIG_IGN);
	cli_stdio_ensure_open();
	r = parse_args(argc, argv, &o);
	if (r == 0)
		r = exec(ctx, &o);
	free(o.p.env);
	return r;
}
