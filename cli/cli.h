/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The strata command line: global options, the command table, and the
 * context every command receives. cli/ only parses arguments and calls the
 * modules; it holds no logic of its own beyond presenting results.
 */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "common.h"

/* Exit codes (design contract). */
enum {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_USAGE = 2,
};

struct cli_ctx {
	const char *root;        /* --root / STRATA_ROOT */
	const char *address;     /* --address / STRATA_ADDRESS */
	const char *config_path; /* --config / STRATA_CONFIG */
	bool config_explicit;    /* given by option or environment: must exist */
	enum log_level log_level;
	bool root_set, address_set, log_level_set; /* by option or environment */
	struct toml_value *config;                 /* parsed config file, or NULL */
	const char *argv0;
};

/* Read --config (see config.c for precedence). */
int cli_config_load(struct cli_ctx *ctx, struct strata_error **ret_err);

struct cli_command {
	const char *name;
	const char *summary;
	const char *usage; /* full help text after "Usage: strata " */
	/* NULL: not implemented yet (exits 1, never fakes success). argv[0] is
	 * the command name; returns the process exit code. */
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
};

const struct cli_command *cli_commands(size_t *ret_n);

/* Print "strata: CMD: message" on stderr and return EXIT_ERROR. */
int cli_fail(const char *cmd, const char *fmt, ...) _printf_(2, 3);
/* Print a usage error and a hint, return EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) _printf_(2, 3);
/* True when argv has -h/--help anywhere before "--". */
bool cli_wants_help(int argc, char **argv);
void cli_print_command_help(const struct cli_command *c);

int cmd_version(struct cli_ctx *ctx, int argc, char **argv);
int cmd_doctor(struct cli_ctx *ctx, int argc, char **argv);
int cmd_serve(struct cli_ctx *ctx, int argc, char **argv);
int cmd_content(struct cli_ctx *ctx, int argc, char **argv);
/* Image commands: clients of the daemon's strata.images.v1.Images. */
int cmd_pull(struct cli_ctx *ctx, int argc, char **argv);
int cmd_images(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rmi(struct cli_ctx *ctx, int argc, char **argv);
int cmd_prune(struct cli_ctx *ctx, int argc, char **argv);
int cmd_snapshots(struct cli_ctx *ctx, int argc, char **argv);
/* Containers: runtime/ in this process, snapshots from the daemon. */
int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
int cmd_ps(struct cli_ctx *ctx, int argc, char **argv);
int cmd_logs(struct cli_ctx *ctx, int argc, char **argv);
int cmd_stop(struct cli_ctx *ctx, int argc, char **argv);
int cmd_kill(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rm(struct cli_ctx *ctx, int argc, char **argv);
int cmd_exec(struct cli_ctx *ctx, int argc, char **argv);
/* Image conversion, in this process: content/convert.c. */
int cmd_convert(struct cli_ctx *ctx, int argc, char **argv);
