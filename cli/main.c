/* SPDX-License-Identifier: Apache-2.0 */
/* strata: global options, environment defaults and command dispatch. */
#include <getopt.h>
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "config.h"

int cli_fail(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "strata: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_ERROR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "strata: %s%s", cmd ? cmd : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'strata %s%s--help' for usage.\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (streq(argv[i], "--"))
			return false;
		if (streq(argv[i], "-h") || streq(argv[i], "--help"))
			return true;
	}
	return false;
}

void cli_print_command_help(const struct cli_command *c)
{
	printf("%s\n\nUsage: strata %s\n", c->summary, c->usage);
	if (!c->run)
		printf("\n(not implemented yet in this version)\n");
}

static void print_help(FILE *f)
{
	size_t n;
	const struct cli_command *cmds = cli_commands(&n);

	fprintf(f,
	        "Usage: strata [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
	        "\n"
	        "Strata: a content store and lazy-pulling snapshotter for containerd,\n"
	        "and a small container runner.\n"
	        "\n"
	        "Global options (before the command):\n"
	        "  --root DIR         state directory (env STRATA_ROOT, default %s)\n"
	        "  --address PATH     daemon socket (env STRATA_ADDRESS, default %s)\n"
	        "  --config FILE      configuration (env STRATA_CONFIG, default %s)\n"
	        "  --log-level LEVEL  debug, info, warn or error (default info)\n"
	        "  -h, --help         this help\n"
	        "  -v, --version      same as 'strata version'\n"
	        "\n"
	        "Commands:\n",
	        STRATA_DEFAULT_ROOT, STRATA_DEFAULT_ADDRESS, STRATA_DEFAULT_CONFIG);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "  %-10s %s%s\n", cmds[i].name, cmds[i].summary,
		        cmds[i].run ? "" : " (not implemented yet)");
	fprintf(f, "\nRun 'strata COMMAND --help' for a command's options.\n");
}

static const struct cli_command *find_command(const char *name)
{
	size_t n;
	const struct cli_command *cmds = cli_commands(&n);

	for (size_t i = 0; i < n; i++)
		if (streq(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

/* Environment first, then options override it (options win). */
static void ctx_defaults(struct cli_ctx *ctx)
{
	const char *e;

	ctx->root = STRATA_DEFAULT_ROOT;
	ctx->address = STRATA_DEFAULT_ADDRESS;
	ctx->config_path = STRATA_DEFAULT_CONFIG;
	ctx->log_level = LOG_LEVEL_INFO;
	if ((e = getenv("STRATA_ROOT")) && *e) {
		ctx->root = e;
		ctx->root_set = true;
	}
	if ((e = getenv("STRATA_ADDRESS")) && *e) {
		ctx->address = e;
		ctx->address_set = true;
	}
	if ((e = getenv("STRATA_CONFIG")) && *e) {
		ctx->config_path = e;
		ctx->config_explicit = true;
	}
}

static int check_path_option(const char *opt, const char *value)
{
	if (!value || !*value)
		return cli_usage_error(NULL, "%s needs a non-empty value", opt);
	return 0;
}

int main(int argc, char **argv)
{
	enum { OPT_ROOT = 0x100, OPT_ADDRESS, OPT_CONFIG, OPT_LOG_LEVEL };
	static const struct option opts[] = {
	        {"root", required_argument, NULL, OPT_ROOT},
	        {"address", required_argument, NULL, OPT_ADDRESS},
	        {"config", required_argument, NULL, OPT_CONFIG},
	        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'v'},
	        {0},
	};
	struct cli_ctx ctx = {.argv0 = argv[0]};
	const struct cli_command *cmd;
	int c, r;

	ctx_defaults(&ctx);
	opterr = 0;
	/* "+": stop at the first non-option, which is the command. */
	while ((c = getopt_long(argc, argv, "+hv", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ROOT:
			if ((r = check_path_option("--root", optarg)))
				return r;
			ctx.root = optarg;
			ctx.root_set = true;
			break;
		case OPT_ADDRESS:
			if ((r = check_path_option("--address", optarg)))
				return r;
			ctx.address = optarg;
			ctx.address_set = true;
			break;
		case OPT_CONFIG:
			if ((r = check_path_option("--config", optarg)))
				return r;
			ctx.config_path = optarg;
			ctx.config_explicit = true;
			break;
		case OPT_LOG_LEVEL:
			if (log_level_from_string(optarg, &ctx.log_level) < 0)
				return cli_usage_error(
				        NULL,
				        "invalid --log-level \"%s\" (debug, info, warn, error)",
				        optarg);
			ctx.log_level_set = true;
			break;
		case 'h':
			print_help(stdout);
			return EXIT_OK;
		case 'v':
			return cmd_version(&ctx, 1, (char *[]){(char *)"version", NULL});
		case '?':
		default:
			if (optopt)
				return cli_usage_error(NULL, "unknown or incomplete option '-%c'",
				                       optopt);
			return cli_usage_error(NULL, "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	log_set_level(ctx.log_level);

	if (optind >= argc) {
		print_help(stderr);
		return EXIT_USAGE;
	}
	if (streq(argv[optind], "help")) {
		if (optind + 1 < argc && (cmd = find_command(argv[optind + 1]))) {
			cli_print_command_help(cmd);
			return EXIT_OK;
		}
		print_help(stdout);
		return EXIT_OK;
	}
	cmd = find_command(argv[optind]);
	if (!cmd)
		return cli_usage_error(NULL, "unknown command \"%s\"", argv[optind]);

	if (cli_wants_help(argc - optind, argv + optind)) {
		cli_print_command_help(cmd);
		return EXIT_OK;
	}
	if (!cmd->run)
		return cli_fail(cmd->name, "not implemented yet in strata %s", STRATA_VERSION);

	{
		_cleanup_error_ struct strata_error *err = NULL;
		int first = optind;

		r = cli_config_load(&ctx, &err);
		if (r < 0) {
			r = cli_fail(cmd->name, "%s", strata_error_message(err));
			(void)toml_free(ctx.config);
			return r;
		}
		/* Commands parse their own options with getopt from a fresh state. */
		optind = 0;
		r = cmd->run(&ctx, argc - first, argv + first);
		(void)toml_free(ctx.config);
		return r;
	}
}
