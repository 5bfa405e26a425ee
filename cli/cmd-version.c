/* SPDX-License-Identifier: Apache-2.0 */
/* strata version */
#include "cli.h"
#include "config.h"

int cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc > 1)
		return cli_usage_error("version", "takes no arguments");
	printf("strata version %s\n", STRATA_VERSION);
	printf("commit: %s\n", STRATA_GIT_COMMIT);
	return EXIT_OK;
}
