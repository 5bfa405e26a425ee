/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host checks for `strata doctor`: each check says what it found and, when it
 * fails, the one command that fixes it, so a missing piece is never a cryptic
 * error later (the seed of this project is exactly those errors).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

int rt_find_binary(const char *name, char **ret_path)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy = NULL;
	char *save = NULL;

	if (!name || !*name)
		return -EINVAL;
	if (strchr(name, '/')) {
		if (access(name, X_OK) < 0)
			return negative_errno();
		*ret_path = strdup(name);
		return *ret_path ? 0 : -ENOMEM;
	}
	copy = strdup(path && *path ? path : DEFAULT_PATH);
	if (!copy)
		return -ENOMEM;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *full = path_join(dir, name);
		struct stat st;
		if (!full)
			return -ENOMEM;
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) {
			*ret_path = TAKE_PTR(full);
			return 0;
		}
	}
	return -ENOENT;
}

struct checks {
	struct rt_check *v;
	size_t n;
};

static int add(struct checks *c, const char *name, enum rt_check_status status, char *detail,
               const char *fix)
{
	struct rt_check *nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
	if (!nv) {
		free(detail);
		return -ENOMEM;
	}
	c->v = nv;
	c->v[c->n] = (struct rt_check){
	        .name = name,
	        .status = status,
	        .detail = detail,
	        .fix = fix ? strdup(fix) : NULL,
	};
	c->n++;
	return 0;
}

static char *fmt(const char *f, ...) _printf_(1, 2);
static char *fmt(const char *f, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static int check_root(struct checks *c)
{
	if (geteuid() == 0)
		return add(c, "root", RT_CHECK_OK, fmt("running as root"), NULL);
	return add(c, "root", RT_CHECK_FAIL, fmt("running as uid %u", (unsigned)geteuid()),
	           "run strata as root (mounts, FUSE and runc need it)");
}

static int check_fuse(struct checks *c)
{
	_cleanup_close_ int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd >= 0)
		return add(c, "fuse", RT_CHECK_OK, fmt("/dev/fuse is usable"), NULL);
	return add(c, "fuse", RT_CHECK_FAIL, fmt("/dev/fuse: %s", strerror(errno)),
	           "run 'modprobe fuse' and 'apt-get install fuse3' (lazy layers need FUSE)");
}

static int proc_filesystems_has(const char *fs)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/filesystems", "re");
	char line[256];

	if (!f)
		return negative_errno();
	while (fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, '\t');
		name = name ? name + 1 : line;
		name[strcspn(name, "\n")] = '\0';
		if (streq(name, fs))
			return 1;
	}
	return 0;
}

static int check_overlay(struct checks *c)
{
	int r = proc_filesystems_has("overlay");
	if (r > 0)
		return add(c, "overlayfs", RT_CHECK_OK, fmt("overlay is in /proc/filesystems"),
		           NULL);
	return add(c, "overlayfs", RT_CHECK_FAIL,
	           r < 0 ? fmt("/proc/filesystems: %s", strerror(-r))
	                 : fmt("overlay is not in /proc/filesystems"),
	           "run 'modprobe overlay' (snapshots are overlay mounts)");
}

static int check_binary(struct checks *c, const char *name, const char *why, const char *fix)
{
	_cleanup_free_ char *p = NULL;
	int r = rt_find_binary(name, &p);
	if (r >= 0)
		return add(c, name, RT_CHECK_OK, fmt("%s", p), NULL);
	return add(c, name, RT_CHECK_FAIL, fmt("%s not found in PATH (%s)", name, why), fix);
}

static int check_cni(struct checks *c, const char *cni_path)
{
	static const char *const plugins[] = {"bridge",  "host-local", "loopback",
	                                      "portmap", "firewall",   "tuning"};
	char missing[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < ELEMENTSOF(plugins); i++) {
		_cleanup_free_ char *p = path_join(cni_path, plugins[i]);
		if (!p)
			return -ENOMEM;
		if (access(p, X_OK) == 0)
			continue;
		len += (size_t)snprintf(missing + len, sizeof(missing) - MIN(len, sizeof(missing)),
		                        "%s%s", len ? ", " : "", plugins[i]);
	}
	if (len == 0)
		return add(c, "cni", RT_CHECK_OK, fmt("CNI plugins in %s", cni_path), NULL);
	return add(c, "cni", RT_CHECK_FAIL, fmt("missing in %s: %s", cni_path, missing),
	           "run 'apt-get install containernetworking-plugins' (strata run --net bridge)");
}

static int check_openat2(struct checks *c)
{
	if (path_have_openat2())
		return add(c, "openat2", RT_CHECK_OK, fmt("kernel confines paths with openat2"),
		           NULL);
	return add(c, "openat2", RT_CHECK_WARN,
	           fmt("openat2 unavailable: using the slower component-by-component walk"),
	           "use a kernel >= 5.6 for faster confined extraction");
}

int rt_host_checks(const char *cni_path, struct rt_check **ret, size_t *ret_n)
{
	struct checks c = {0};
	int r = 0;

	if (!cni_path)
		cni_path = RT_DEFAULT_CNI_PATH;
	if (r >= 0)
		r = check_root(&c);
	if (r >= 0)
		r = check_fuse(&c);
	if (r >= 0)
		r = check_overlay(&c);
	if (r >= 0)
		r = check_binary(
		        &c, "containerd-shim-runc-v2", "strata run launches containers through it",
		        "run 'apt-get install containerd' (it ships containerd-shim-runc-v2)");
	if (r >= 0)
		r = check_binary(&c, "runc", "the OCI runtime the shim calls",
		                 "run 'apt-get install runc'");
	if (r >= 0)
		r = check_cni(&c, cni_path);
	if (r >= 0)
		r = check_binary(&c, "iptables",
		                 "CNI bridge masquerading and port mappings need it",
		                 "run 'apt-get install iptables'");
	if (r >= 0)
		r = check_openat2(&c);
	if (r < 0) {
		(void)rt_checks_free(c.v, c.n);
		return r;
	}
	*ret = c.v;
	*ret_n = c.n;
	return 0;
}

struct rt_check *rt_checks_free(struct rt_check *checks, size_t n)
{
	if (!checks)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		free(checks[i].detail);
		free(checks[i].fix);
	}
	free(checks);
	return NULL;
}
