/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an attached `run` or `exec` does with the user's terminal and
 * signals. A handler writes the signal number to a pipe (nothing else is
 * async-signal-safe); a thread forwards it to the process: the first
 * SIGINT/SIGTERM as is, the next one as SIGKILL; SIGWINCH resizes the
 * process's pty when it has one. One attachment per process at a time.
 */
#pragma once

#include <stdbool.h>

#include "cli.h"

/* The process signals go to: kill(target, sig), resize(target, w, h). */
struct cli_attach_target {
	void *target;
	int (*kill)(void *target, int sig);
	int (*resize)(void *target, unsigned width, unsigned height); /* NULL: no pty */
};

/* Catch SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH from now on. */
int cli_signals_install(void);
/* A signal that arrived before forwarding started (0 = none). */
int cli_signals_pending(void);
/* Back to the default dispositions; closes the pipe. */
void cli_signals_restore(void);

/* Start forwarding to t (which must outlive cli_forward_stop). With a pty
 * (t->resize), the current size is sent first. */
int cli_forward_start(const struct cli_attach_target *t);
void cli_forward_stop(void);

/* The size of our terminal (stdin, else stdout); false if neither is one. */
bool cli_terminal_size(unsigned *ret_width, unsigned *ret_height);
/* Raw mode on stdin when it is a terminal; restore undoes it (idempotent). */
void cli_terminal_raw(void);
void cli_terminal_restore(void);

/* The options of the process that run and exec share: -i, -t, -e KEY=VALUE,
 * -w DIR, -u USER[:GROUP]. The strings point into argv. */
struct cli_process_opts {
	bool interactive, tty;
	const char *cwd, *user;
	char **env; /* NULL-terminated (NULL when none); free the array only */
	size_t n_env;
};

/* getopt_long's c (optarg set) for cmd: 0 when taken into o, else the exit
 * code of the usage error (a bad value, an unknown or incomplete option) or
 * of the failure. Commands call it for every option they do not handle. */
int cli_process_opt(const char *cmd, int c, char **argv, struct cli_process_opts *o);
/* Their getopt_long entries and short options. */
#define CLI_PROCESS_LONG_OPTS                                                                     \
	{"interactive", no_argument, NULL, 'i'}, {"tty", no_argument, NULL, 't'},                 \
	        {"env", required_argument, NULL, 'e'}, {"workdir", required_argument, NULL, 'w'}, \
	{                                                                                         \
		"user", required_argument, NULL, 'u'                                              \
	}
#define CLI_PROCESS_SHORT_OPTS "ite:w:u:"

/* docker's exit code (translateContainerdStartErr) for a process that the
 * OCI runtime could not start, from its message: 127 when the command is not
 * found (or a path through a file), 126 when it cannot be run (permission
 * denied); 0 when the message is none of those. */
int cli_start_failure_code(const char *msg);

/* A closed fd 0, 1 or 2 becomes /dev/null: else the first fifo or socket
 * opened takes its number, and stdin relays from it (a hang), or output
 * goes into it. */
void cli_stdio_ensure_open(void);
