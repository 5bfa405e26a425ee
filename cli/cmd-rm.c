/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata rm [-f] ID...: runtime/ removes the task, the shim (or cleans up
 * after a dead one), the CNI attachment and netns, the rootfs mount and the
 * record; then the daemon removes the container's snapshot. The daemon is
 * reached (started if need be) before anything is removed, so a failure
 * there leaves the container whole for another try.
 */
#include <getopt.h>
#include <string.h>

#include "daemon.h"
#include "runtime.h"

static int rm_one(struct cli_ctx *ctx, struct proxy_client **client, const char *state,
                  const char *arg, bool force)
{
	_cleanup_(rt_container_freep) struct rt_container *c = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *id = NULL;
	int r;

	r = rt_container_load(state, arg, &c, &err);
	if (r < 0)
		return cli_fail("rm", "%s", strata_error_message(err));
	id = strdup(rt_container_id(c));
	if (!id)
		return cli_fail("rm", "out of memory");
	if (!*client) {
		r = cli_daemon_connect(ctx, true, client, NULL, &err);
		if (r < 0)
			return cli_fail("rm", "%s: %s", arg, strata_error_message(err));
	}
	r = rt_container_delete(c, force, &err);
	if (r == -EBUSY)
		return cli_fail("rm",
		                "container %s is running: stop it first ('strata stop %s') or "
		                "use 'strata rm -f'",
		                arg, arg);
	if (r < 0)
		return cli_fail("rm", "%s", strata_error_message(err));
	strata_error_free(err);
	err = NULL;
	r = cli_container_snapshot_remove(ctx, client, id, true, &err);
	if (r < 0)
		return cli_fail("rm", "%s", strata_error_message(err));
	printf("%s\n", arg);
	return EXIT_OK;
}

int cmd_rm(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"force", no_argument, NULL, 'f'},
	        {0},
	};
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *state = NULL;
	bool force = false;
	int c, code = EXIT_OK;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (c != 'f')
			return cli_usage_error("rm", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		force = true;
	}
	if (optind >= argc)
		return cli_usage_error("rm", "missing container id");
	if (rt_state_dir(ctx->config, ctx->address, &state, &err) < 0)
		return cli_fail("rm", "%s", strata_error_message(err));
	for (int i = optind; i < argc; i++)
		if (rm_one(ctx, &client, state, argv[i], force) != EXIT_OK)
			code = EXIT_ERROR;
	return code;
}
