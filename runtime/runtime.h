/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runtime/: everything `strata run` needs beyond the image: host checks,
 * the OCI bundle and config.json, CNI networking, and the shim v2 client
 * (containerd-shim-runc-v2 over ttrpc). Lives in the CLI process.
 *
 * This first part owns the host checks behind `strata doctor` and the lookup
 * of the external binaries the runtime depends on.
 */
#pragma once

#include <stddef.h>

#include "common.h"

/* Where Debian's containernetworking-plugins installs the CNI plugins. */
#define RT_DEFAULT_CNI_PATH "/usr/lib/cni"

/* Find an executable in $PATH (or a default PATH when unset), as
 * containerd does for its shims. -ENOENT when absent. */
int rt_find_binary(const char *name, char **ret_path);

enum rt_check_status {
	RT_CHECK_OK,
	RT_CHECK_WARN, /* works, but degraded */
	RT_CHECK_FAIL,
};

struct rt_check {
	const char *name; /* short, stable: "root", "fuse", "overlayfs", ... */
	enum rt_check_status status;
	char *detail; /* what was found, or what is wrong */
	char *fix;    /* one line saying how to fix it; NULL when ok */
};

/* Run every host check. cni_path NULL = RT_DEFAULT_CNI_PATH. The array is
 * owned by the caller: free with rt_checks_free(). */
int rt_host_checks(const char *cni_path, struct rt_check **ret, size_t *ret_n);
struct rt_check *rt_checks_free(struct rt_check *checks, size_t n);
