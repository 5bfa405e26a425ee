/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Named network namespaces in /run/netns, made the way `ip netns add` makes
 * them, without running ip: a short-lived thread unshares CLONE_NEWNET (which
 * affects only that thread) and bind mounts /proc/thread-self/ns/net onto
 * /run/netns/<name>; the mount keeps the namespace alive after the thread
 * exits. /run/netns is made a shared mount first (as ip does) so an unmount
 * propagates into mount namespaces created meanwhile.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "runtime.h"

static int valid_name(const char *name)
{
	return name && *name && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..") &&
	       strlen(name) < 200;
}

static int make_netns_dir_shared(void)
{
	int r = path_mkdir_p(RT_NETNS_DIR, 0755);
	if (r < 0)
		return r;
	if (mount("", RT_NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return negative_errno();
	/* Not a mount point yet: bind it onto itself, then share it. */
	if (mount(RT_NETNS_DIR, RT_NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
		return negative_errno();
	if (mount("", RT_NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
		return negative_errno();
	return 0;
}

struct unshare_job {
	const char *path;
	int err;
};

static void *unshare_thread(void *arg)
{
	struct unshare_job *j = arg;
	if (unshare(CLONE_NEWNET) < 0) {
		j->err = negative_errno();
		return NULL;
	}
	if (mount("/proc/thread-self/ns/net", j->path, "none", MS_BIND, NULL) < 0)
		j->err = negative_errno();
	return NULL;
}

int rt_netns_create(const char *name, char **ret_path, struct strata_error **ret_err)
{
	_cleanup_free_ char *path = NULL;
	struct unshare_job job = {0};
	pthread_t t;
	int fd, r;

	if (!valid_name(name))
		return strata_error_set(ret_err, -EINVAL, "invalid netns name \"%s\"",
		                        strempty(name));
	path = path_join(RT_NETNS_DIR, name);
	if (!path)
		return -ENOMEM;
	r = make_netns_dir_shared();
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "prepare " RT_NETNS_DIR);
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "create \"%s\"", path);
	safe_close(fd);

	job.path = path;
	r = -pthread_create(&t, NULL, unshare_thread, &job);
	if (r >= 0) {
		pthread_join(t, NULL);
		r = job.err;
	}
	if (r < 0) {
		(void)unlink(path);
		return strata_error_set_errno(ret_err, r, "create network namespace \"%s\"", path);
	}
	if (ret_path)
		*ret_path = TAKE_PTR(path);
	return 0;
}

int rt_netns_remove(const char *name, struct strata_error **ret_err)
{
	_cleanup_free_ char *path = NULL;

	if (!valid_name(name))
		return strata_error_set(ret_err, -EINVAL, "invalid netns name \"%s\"",
		                        strempty(name));
	path = path_join(RT_NETNS_DIR, name);
	if (!path)
		return -ENOMEM;
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return strata_error_set_errno(ret_err, negative_errno(), "unmount \"%s\"", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return strata_error_set_errno(ret_err, negative_errno(), "remove \"%s\"", path);
	return 0;
}
