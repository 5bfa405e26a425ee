/* SPDX-License-Identifier: Apache-2.0 */
/* runtime/ internals shared between its files (not part of the API). */
#pragma once

#include "runtime.h"

/*
 * stdio relay for attached containers (stdio.c): one thread copies the
 * container's stdout/stderr fifos to our fds and, when interactive, our
 * stdin into the container's stdin fifo. The fifos' read ends are opened
 * O_NONBLOCK before Create, so no open blocks; EOF on a fifo (the shim
 * closes its writer once the process's output is drained) ends that stream.
 */
struct rt_stdio;

struct rt_stdio_params {
	int out_fd, err_fd;   /* fifo read ends (owned by the relay), err_fd may be -1 */
	int in_fifo_fd;       /* fifo write end for the container's stdin, or -1 */
	int src_in;           /* our stdin (not owned), -1 when not interactive */
	int dst_out, dst_err; /* where output goes (not owned) */
	/* Called from the relay thread when src_in reaches EOF (CloseIO). */
	void (*stdin_eof)(void *userdata);
	void *userdata;
};

/* Takes the fds p owns (out_fd, err_fd, in_fifo_fd), also when it fails. */
int rt_stdio_start(const struct rt_stdio_params *p, struct rt_stdio **ret);
/* Where a run's or exec's stdio goes (container.c): our stdin only when
 * interactive; with custom_stdio the caller's fds, else our 0, 1 and 2. */
void rt_stdio_set_ends(struct rt_stdio_params *p, bool interactive, bool custom_stdio, int stdin_fd,
                       int stdout_fd, int stderr_fd);
/* Wait up to timeout_ms for the output streams to end, then stop and drain
 * whatever is buffered. */
void rt_stdio_finish(struct rt_stdio *s, int timeout_ms);
struct rt_stdio *rt_stdio_free(struct rt_stdio *s);

/* Mount the rootfs mounts list on target (container.c). RT_MOUNT_VOLATILE:
 * overlays get overlayfs's "volatile" option (when the kernel has it), so
 * that their unmount does not sync the whole upper filesystem (syncfs of the
 * disk under ROOT: tens of ms on a busy host). A container's upper dir is
 * never mounted again once unmounted, which is the one thing volatile
 * forbids after a crash, so it is always safe for container rootfs. */
#define RT_MOUNT_VOLATILE (1u << 0)
int rt_mount_all(const struct rt_mount *m, size_t n, const char *target, unsigned flags,
                 struct strata_error **ret_err);

/* The container's shim, connected on first use (container.c); owned by c. */
int rt_container_shim(struct rt_container *c, struct rt_shim **ret, struct strata_error **ret_err);
