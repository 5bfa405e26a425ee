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
	bool interactive, tty;
	const char *cwd, *user;
	char **env;
	size_t n_env;
	const char *id;
	char **args;
};

static int parse_args(int argc, char **argv, struct exec_opts *o)
{
	static const struct option opts[] = {
	        {"interactive", no_argument, NULL, 'i'}, {"tty", no_argument, NULL, 't'},
	        {"env", required_argument, NULL, 'e'},   {"workdir", required_argument, NULL, 'w'},
	        {"user", required_argument, NULL, 'u'},  {0},
	};
	int c;

	opterr = 0;
	/* "+": options end at the container id; what follows is the command. */
	while ((c = getopt_long(argc, argv, "+ite:w:u:", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o->interactive = true;
			break;
		case 't':
			o->tty = true;
			break;
		case 'e': {
			if (!*optarg || optarg[0] == '=')
				return cli_usage_error("exec", "invalid -e \"%s\": want KEY=VALUE",
				                       optarg);
			char **n = realloc(o->env, (o->n_env + 2) * sizeof(char *));
			if (!n)
				return cli_fail("exec", "out of memory");
			o->env = n;
			o->env[o->n_env++] = optarg;
			o->env[o->n_env] = NULL;
			break;
		}
		case 'w':
			if (optarg[0] != '/')
				return cli_usage_error(
				        "exec", "-w \"%s\": must be an absolute path", optarg);
			o->cwd = optarg;
			break;
		case 'u':
			if (!*optarg)
				return cli_usage_error("exec", "-u needs USER[:GROUP]");
			o->user = optarg;
			break;
		default:
			if (optopt && optopt < 0x100)
				return cli_usage_error("exec", "unknown or incomplete option '-%c'",
				                       optopt);
			return cli_usage_error("exec", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
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
	if (o->tty && o->interactive && !isatty(STDIN_FILENO))
		return cli_fail("exec", "the input device is not a TTY");
	if (rt_state_dir(ctx->config, ctx->address, &state, &err) < 0 ||
	    rt_container_load(state, o->id, &c, &err) < 0)
		return cli_fail("exec", "%s", strata_error_message(err));

	struct rt_exec_config cfg = {
	        .opts =
	                {
	                        .args = o->args,
	                        .env = o->env,
	                        .cwd = o->cwd,
	                        .user = o->user,
	                        .tty = o->tty,
	                },
	        .interactive = o->interactive,
	};
	if (o->tty)
		(void)cli_terminal_size(&cfg.opts.console_width, &cfg.opts.console_height);
	r = cli_signals_install();
	if (r < 0)
		return cli_fail("exec", "install signal handlers: %s", strerror(-r));
	if (o->tty && o->interactive)
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
	        .resize = o->tty ? exec_resize : NULL,
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
	free(o.env);
	return r;
}
