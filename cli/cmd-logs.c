/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata logs [-f] ID: a detached container's output, which its shim writes
 * to ROOT/containers/<id>/container.log (stdout and stderr together). -f
 * follows until the container exits: poll the file, ask the shim now and
 * then whether the task still runs, then drain once more.
 */
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "runtime.h"

/* Copy what fd has from its offset to stdout. */
static int drain(int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (loop_write(STDOUT_FILENO, buf, (size_t)n) < 0)
			return -EPIPE;
	return n < 0 ? negative_errno() : 0;
}

static bool still_running(struct rt_container *c)
{
	struct rt_container_info info;
	bool running;

	if (rt_container_inspect(c, &info, NULL) < 0)
		return false;
	running = info.shim_alive &&
	          (info.status == RT_TASK_RUNNING || info.status == RT_TASK_CREATED ||
	           info.status == RT_TASK_PAUSED || info.status == RT_TASK_PAUSING);
	rt_container_info_done(&info);
	return running;
}

int cmd_logs(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"follow", no_argument, NULL, 'f'},
	        {0},
	};
	_cleanup_(rt_container_freep) struct rt_container *c = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *state = NULL;
	const char *path;
	_cleanup_close_ int fd = -1;
	bool follow = false;
	int ch, r;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (ch != 'f')
			return cli_usage_error("logs", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		follow = true;
	}
	if (optind >= argc)
		return cli_usage_error("logs", "missing container id");
	if (argc - optind > 1)
		return cli_usage_error("logs", "one container at a time");

	r = rt_state_dir(ctx->config, ctx->address, &state, &err);
	if (r >= 0)
		r = rt_container_load(state, argv[optind], &c, &err);
	if (r < 0)
		return cli_fail("logs", "%s", strata_error_message(err));
	path = rt_container_log_path(c);
	fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (!path || (fd < 0 && errno == ENOENT))
		return cli_fail("logs",
		                "container %s has no log: only detached containers (run -d) keep "
		                "their output; an attached one wrote to the terminal that ran it",
		                argv[optind]);
	if (fd < 0)
		return cli_fail("logs", "open \"%s\": %m", path);

	r = drain(fd);
	if (follow && r >= 0) {
		struct timespec last = {0}, now;
		for (;;) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			/* Ask the shim at most 5 times a second. */
			if ((now.tv_sec - last.tv_sec) * 1000 +
			            (now.tv_nsec - last.tv_nsec) / 1000000 >=
			    200) {
				last = now;
				if (!still_running(c)) {
					r = drain(fd);
					break;
				}
			}
			usleep(50000);
			r = drain(fd);
			if (r < 0)
				break;
		}
	}
	if (r == -EPIPE)
		return EXIT_OK; /* our reader went away (| head) */
	if (r < 0)
		return cli_fail("logs", "read \"%s\": %s", path, strerror(-r));
	return EXIT_OK;
}
