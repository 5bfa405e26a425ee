/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mounts: building them exactly as containerd's overlay snapshotter returns
 * them (snapshots/overlay/overlay.go, mounts()), and performing them for
 * Strata's own callers (snap_mount_apply).
 *
 * Paths are absolute and all share ROOT/snapshots/, so containerd's own
 * mount code (mount_linux.go, compactLowerdirOption) can shorten a long
 * lowerdir to paths relative to that directory, as it does for its own
 * snapshotter.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "snap-internal.h"

static bool force_legacy;

void snap_mount_force_legacy(bool on)
{
	force_legacy = on;
}

struct snap_mount *snap_mounts_free(struct snap_mount *mounts, size_t n)
{
	if (!mounts)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		free(mounts[i].type);
		free(mounts[i].source);
		for (size_t j = 0; j < mounts[i].n_options; j++)
			free(mounts[i].options[j]);
		free(mounts[i].options);
	}
	free(mounts);
	return NULL;
}

static char *upper_path(const struct snap_store *s, uint64_t id)
{
	char *p;
	return asprintf(&p, "%s/%" PRIu64 "/fs", s->snapshots_dir, id) < 0 ? NULL : p;
}

static int push_opt(struct snap_mount *m, char *opt)
{
	char **a;

	if (!opt)
		return -ENOMEM;
	a = realloc(m->options, (m->n_options + 1) * sizeof(char *));
	if (!a) {
		free(opt);
		return -ENOMEM;
	}
	m->options = a;
	m->options[m->n_options++] = opt;
	return 0;
}

static int bind_mount(char *source, bool ro, struct snap_mount **ret, size_t *ret_n)
{
	struct snap_mount *m = calloc(1, sizeof(*m));
	int r;

	if (!m || !source) {
		free(m);
		free(source);
		return -ENOMEM;
	}
	m->source = source;
	m->type = strdup("bind");
	r = m->type ? push_opt(m, strdup(ro ? "ro" : "rw")) : -ENOMEM;
	if (r == 0)
		r = push_opt(m, strdup("rbind"));
	if (r < 0) {
		snap_mounts_free(m, 1);
		return r;
	}
	*ret = m;
	*ret_n = 1;
	return 0;
}

int snap_build_mounts(const struct snap_store *s, enum snap_kind kind, uint64_t id,
                      const uint64_t *parent_ids, size_t n_parents, struct snap_mount **ret,
                      size_t *ret_n)
{
	struct snap_mount *m = NULL;
	char *opt = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	/* Overlay needs a lower dir: a lone layer is a bind mount. */
	if (n_parents == 0)
		return bind_mount(upper_path(s, id), kind == SNAP_KIND_VIEW, ret, ret_n);
	if (kind != SNAP_KIND_ACTIVE && n_parents == 1)
		return bind_mount(upper_path(s, parent_ids[0]), true, ret, ret_n);

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->type = strdup("overlay");
	m->source = strdup("overlay");
	r = m->type && m->source ? 0 : -ENOMEM;
	if (r == 0 && s->index_off)
		r = push_opt(m, strdup("index=off"));
	if (r == 0 && s->userxattr)
		r = push_opt(m, strdup("userxattr"));
	if (r == 0 && kind == SNAP_KIND_ACTIVE) {
		char *w = NULL, *u = NULL;
		if (asprintf(&w, "workdir=%s/%" PRIu64 "/work", s->snapshots_dir, id) < 0)
			w = NULL;
		r = push_opt(m, w);
		if (r == 0 && asprintf(&u, "upperdir=%s/%" PRIu64 "/fs", s->snapshots_dir, id) < 0)
			u = NULL;
		if (r == 0)
			r = push_opt(m, u);
	}
	if (r == 0) {
		f = open_memstream(&opt, &len);
		if (!f) {
			r = -ENOMEM;
		} else {
			fputs("lowerdir=", f);
			for (size_t i = 0; i < n_parents; i++)
				fprintf(f, "%s%s/%" PRIu64 "/fs", i ? ":" : "", s->snapshots_dir,
				        parent_ids[i]);
			r = fclose(f) == 0 ? 0 : -ENOMEM;
			if (r == 0)
				r = push_opt(m, TAKE_PTR(opt));
			free(opt);
		}
	}
	if (r < 0) {
		snap_mounts_free(m, 1);
		return r;
	}
	*ret = m;
	*ret_n = 1;
	return 0;
}

/* --- performing mounts --------------------------------------------------- */

struct flag_opt {
	const char *name;
	bool clear;
	unsigned long flag;
	uint64_t attr; /* MOUNT_ATTR_* for the new API */
};

static const struct flag_opt flag_opts[] = {
        {"ro", false, MS_RDONLY, MOUNT_ATTR_RDONLY},
        {"rw", true, MS_RDONLY, MOUNT_ATTR_RDONLY},
        {"nosuid", false, MS_NOSUID, MOUNT_ATTR_NOSUID},
        {"suid", true, MS_NOSUID, MOUNT_ATTR_NOSUID},
        {"nodev", false, MS_NODEV, MOUNT_ATTR_NODEV},
        {"dev", true, MS_NODEV, MOUNT_ATTR_NODEV},
        {"noexec", false, MS_NOEXEC, MOUNT_ATTR_NOEXEC},
        {"exec", true, MS_NOEXEC, MOUNT_ATTR_NOEXEC},
        {"noatime", false, MS_NOATIME, MOUNT_ATTR_NOATIME},
        {"nodiratime", false, MS_NODIRATIME, MOUNT_ATTR_NODIRATIME},
        {"relatime", false, MS_RELATIME, MOUNT_ATTR_RELATIME},
        {"strictatime", false, MS_STRICTATIME, MOUNT_ATTR_STRICTATIME},
        {"sync", false, MS_SYNCHRONOUS, 0},
        {"async", true, MS_SYNCHRONOUS, 0},
        {"dirsync", false, MS_DIRSYNC, 0},
        {"bind", false, MS_BIND, 0},
        {"rbind", false, MS_BIND | MS_REC, 0},
};

struct parsed_opts {
	unsigned long flags;
	uint64_t attrs;
	char *data; /* comma-joined options that are not flags */
	size_t data_len;
};

static const struct flag_opt *find_flag(const char *o)
{
	for (size_t i = 0; i < ELEMENTSOF(flag_opts); i++)
		if (streq(flag_opts[i].name, o))
			return &flag_opts[i];
	return NULL;
}

static int parse_opts(const struct snap_mount *m, struct parsed_opts *ret)
{
	struct parsed_opts p = {0};
	FILE *f = open_memstream(&p.data, &p.data_len);
	bool first = true;

	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_options; i++) {
		const struct flag_opt *fo = find_flag(m->options[i]);
		if (!fo) {
			fprintf(f, "%s%s", first ? "" : ",", m->options[i]);
			first = false;
			continue;
		}
		if (fo->clear) {
			p.flags &= ~fo->flag;
			p.attrs &= ~fo->attr;
		} else {
			p.flags |= fo->flag;
			p.attrs |= fo->attr;
		}
	}
	if (fclose(f) != 0) {
		free(p.data);
		return -ENOMEM;
	}
	*ret = p;
	return 0;
}

/* The kernel's explanation of an fsconfig failure, when it left one. */
static void fs_log(int fsfd, char *buf, size_t size)
{
	ssize_t n = read(fsfd, buf, size - 1);
	buf[n > 0 ? n : 0] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
}

/* Overlay through fsopen(): one fsconfig per lower dir, so the chain is not
 * bounded by the page-sized option string. -ENOSYS/-EOPNOTSUPP mean "use the
 * legacy path". */
static int mount_overlay_new(const struct snap_mount *m, const char *target,
                             const struct parsed_opts *po, struct strata_error **ret_err)
{
	_cleanup_close_ int fsfd = -1, mfd = -1;
	_cleanup_free_ char *copy = NULL;
	char log[512];
	char *save = NULL;
	bool first_lower = true;

	fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return errno == ENOSYS || errno == EPERM ? -ENOSYS : negative_errno();
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", m->source, 0) < 0)
		return -ENOSYS;

	copy = strdup(po->data);
	if (!copy)
		return -ENOMEM;
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(o, '=');
		int rc;

		if (!eq) {
			rc = fsconfig(fsfd, FSCONFIG_SET_FLAG, o, NULL, 0);
		} else if (strncmp(o, "lowerdir=", 9) == 0) {
			char *lsave = NULL;
			rc = 0;
			for (char *l = strtok_r(eq + 1, ":", &lsave); l && rc == 0;
			     l = strtok_r(NULL, ":", &lsave)) {
				rc = fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", l, 0);
				/* Kernels before 6.8 do not know "lowerdir+". */
				if (rc < 0 && first_lower && errno == EINVAL)
					return -ENOSYS;
				first_lower = false;
			}
		} else {
			*eq = '\0';
			rc = fsconfig(fsfd, FSCONFIG_SET_STRING, o, eq + 1, 0);
			*eq = '=';
		}
		if (rc < 0) {
			int e = negative_errno();
			fs_log(fsfd, log, sizeof(log));
			return strata_error_set_errno(ret_err, e, "overlay option \"%.200s\"%s%s",
			                              o, log[0] ? ": " : "", log);
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		int e = negative_errno();
		fs_log(fsfd, log, sizeof(log));
		return strata_error_set_errno(ret_err, e, "create overlay%s%s", log[0] ? ": " : "",
		                              log);
	}
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned)po->attrs);
	if (mfd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "fsmount overlay");
	if (move_mount(mfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return strata_error_set_errno(ret_err, negative_errno(),
		                              "move overlay mount to \"%s\"", target);
	return 0;
}

/* Longest common directory of the lower dirs, as containerd's
 * compactLowerdirOption computes it (the parent of the longest common
 * prefix). NULL when there is none worth using. */
static char *common_dir(const char *lowers)
{
	_cleanup_free_ char *prefix = NULL;
	const char *p = lowers, *end;
	size_t plen;
	char *slash;

	end = strchrnul(p, ':');
	prefix = strndup(p, (size_t)(end - p));
	if (!prefix)
		return NULL;
	plen = strlen(prefix);
	while (*end) {
		size_t i = 0;
		p = end + 1;
		end = strchrnul(p, ':');
		while (i < plen && p + i < end && p[i] == prefix[i])
			i++;
		plen = i;
	}
	prefix[plen] = '\0';
	slash = strrchr(prefix, '/');
	if (!slash || slash == prefix)
		return NULL;
	*slash = '\0';
	return TAKE_PTR(prefix);
}

/* mount(2) with the data made relative to dir, from a child chdir'ed there
 * (chdir in this process would move every thread). The child reports its
 * errno through a pipe, not its exit status, which tools wrapping the child
 * (valgrind) may replace. */
static int mount_in_dir(const char *dir, const char *source, const char *target, const char *type,
                        unsigned long flags, const char *data)
{
	_cleanup_close_ int rfd = -1, wfd = -1;
	int status, err = EIO, p[2];
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return negative_errno();
	rfd = p[0];
	wfd = p[1];
	pid = fork();
	if (pid < 0)
		return negative_errno();
	if (pid == 0) {
		int e = 0;
		if (chdir(dir) < 0 || mount(source, target, type, flags, data) < 0)
			e = errno;
		(void)!write(wfd, &e, sizeof(e));
		_exit(0);
	}
	wfd = safe_close(wfd);
	do
		n = read(rfd, &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return negative_errno();
	if (n != sizeof(err))
		return -EIO;
	return -err;
}

static int mount_overlay_legacy(const struct snap_mount *m, const char *target,
                                const struct parsed_opts *po, struct strata_error **ret_err)
{
	_cleanup_free_ char *data = NULL, *dir = NULL, *abs_target = NULL;
	long page = sysconf(_SC_PAGESIZE);
	char *lower;
	int r;

	if ((long)po->data_len < page - 1) {
		if (mount(m->source, target, m->type, po->flags, po->data) < 0)
			return strata_error_set_errno(ret_err, negative_errno(),
			                              "mount overlay on \"%s\"", target);
		return 0;
	}
	/* Too long for one page: lower dirs relative to their common dir. */
	lower = strstr(po->data, "lowerdir=");
	if (!lower || (lower != po->data && lower[-1] != ','))
		return strata_error_set(ret_err, -E2BIG, "overlay options too long (%zu bytes)",
		                        po->data_len);
	{
		_cleanup_free_ char *lowers = NULL;
		const char *end = strchrnul(lower + 9, ',');
		FILE *f;
		size_t len = 0;

		lowers = strndup(lower + 9, (size_t)(end - (lower + 9)));
		if (!lowers)
			return -ENOMEM;
		dir = common_dir(lowers);
		if (!dir)
			return strata_error_set(ret_err, -E2BIG,
			                        "overlay options too long (%zu bytes)",
			                        po->data_len);
		f = open_memstream(&data, &len);
		if (!f)
			return -ENOMEM;
		fprintf(f, "%.*s", (int)(lower - po->data), po->data);
		fputs("lowerdir=", f);
		for (const char *p = lowers; *p;) {
			const char *e = strchrnul(p, ':');
			size_t dl = strlen(dir);
			/* every lower dir starts with dir + "/" by construction */
			fprintf(f, "%s%.*s", p == lowers ? "" : ":", (int)(e - p - dl - 1),
			        p + dl + 1);
			p = *e ? e + 1 : e;
		}
		fputs(end, f);
		if (fclose(f) != 0)
			return -ENOMEM;
		if ((long)len >= page - 1)
			return strata_error_set(ret_err, -E2BIG,
			                        "overlay options too long even relative to \"%s\"",
			                        dir);
	}
	abs_target = realpath(target, NULL);
	if (!abs_target)
		return strata_error_set_errno(ret_err, negative_errno(), "resolve \"%s\"", target);
	r = mount_in_dir(dir, m->source, abs_target, m->type, po->flags, data);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "mount overlay on \"%s\" from \"%s\"",
		                              target, dir);
	return 0;
}

static int mount_one(const struct snap_mount *m, const char *target, struct strata_error **ret_err)
{
	struct parsed_opts po;
	int r;

	r = parse_opts(m, &po);
	if (r < 0)
		return r;

	if (streq(m->type, "bind") || (po.flags & MS_BIND)) {
		unsigned long bflags = MS_BIND | (po.flags & MS_REC);
		if (mount(m->source, target, "none", bflags, NULL) < 0) {
			r = strata_error_set_errno(ret_err, negative_errno(),
			                           "bind mount \"%s\" on \"%s\"", m->source,
			                           target);
			goto out;
		}
		/* Flags other than MS_BIND|MS_REC only take effect on a remount. */
		if (po.flags & ~(MS_BIND | MS_REC)) {
			unsigned long rflags =
			        MS_REMOUNT | MS_BIND | (po.flags & ~(MS_BIND | MS_REC));
			if (mount("none", target, "none", rflags, NULL) < 0) {
				r = strata_error_set_errno(ret_err, negative_errno(),
				                           "remount \"%s\" with flags", target);
				(void)umount2(target, MNT_DETACH);
				goto out;
			}
		}
		r = 0;
	} else if (streq(m->type, "overlay")) {
		r = force_legacy ? -ENOSYS : mount_overlay_new(m, target, &po, ret_err);
		if (r == -ENOSYS)
			r = mount_overlay_legacy(m, target, &po, ret_err);
	} else {
		r = 0;
		if (mount(m->source, target, m->type, po.flags, po.data) < 0)
			r = strata_error_set_errno(ret_err, negative_errno(),
			                           "mount %s \"%s\" on \"%s\"", m->type, m->source,
			                           target);
	}
out:
	free(po.data);
	return r;
}

int snap_mount_apply(const struct snap_mount *mounts, size_t n, const char *target,
                     struct strata_error **ret_err)
{
	for (size_t i = 0; i < n; i++) {
		int r = mount_one(&mounts[i], target, ret_err);
		if (r < 0) {
			/* Leave the target as we found it. */
			for (size_t j = 0; j < i; j++)
				(void)umount2(target, MNT_DETACH);
			return r;
		}
	}
	return 0;
}

int snap_unmount(const char *target)
{
	if (umount2(target, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return negative_errno();
	return 0;
}
