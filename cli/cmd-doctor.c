/* SPDX-License-Identifier: Apache-2.0 */
/* strata doctor: one line per host check, with the fix for each failure. */
#include <unistd.h>

#include "cli.h"
#include "runtime.h"

int cmd_doctor(struct cli_ctx *ctx, int argc, char **argv)
{
	struct rt_check *checks = NULL;
	size_t n = 0, failed = 0;
	bool color = isatty(STDOUT_FILENO);
	int r;

	if (argc == 2 && streq(argv[1], "--paths")) {
		/* The effective locations, after options, environment and config. */
		printf("root=%s\naddress=%s\nconfig=%s\n", ctx->root, ctx->address,
		       ctx->config_path);
		return EXIT_OK;
	}
	if (argc > 1)
		return cli_usage_error("doctor", "unknown argument \"%s\"", argv[1]);
	r = rt_host_checks(getenv("STRATA_CNI_PATH"), &checks, &n);
	if (r < 0)
		return cli_fail("doctor", "running checks: %s", strerror(-r));

	for (size_t i = 0; i < n; i++) {
		const struct rt_check *c = &checks[i];
		const char *tag = c->status == RT_CHECK_OK     ? "ok  "
		                  : c->status == RT_CHECK_WARN ? "warn"
		                                               : "FAIL";
		const char *on = "", *off = "";
		if (color) {
			on = c->status == RT_CHECK_OK     ? "\033[32m"
			     : c->status == RT_CHECK_WARN ? "\033[33m"
			                                  : "\033[31m";
			off = "\033[0m";
		}
		printf("%s[%s]%s %-24s %s", on, tag, off, c->name, c->detail ? c->detail : "");
		if (c->fix && c->status != RT_CHECK_OK)
			printf(": fix: %s", c->fix);
		printf("\n");
		if (c->status == RT_CHECK_FAIL)
			failed++;
	}
	(void)rt_checks_free(checks, n);
	if (failed) {
		fprintf(stderr, "strata: doctor: %zu check%s failed\n", failed,
		        failed == 1 ? "" : "s");
		return EXIT_ERROR;
	}
	return EXIT_OK;
}
