/* SPDX-License-Identifier: Apache-2.0 */
/*
 * User resolution for the container's process: the image's "User" (or -u)
 * looked up in the rootfs's /etc/passwd and /etc/group, as runc's
 * user.GetExecUser and containerd's WithUser do.
 *
 * The files belong to the image, which is untrusted: they are opened with
 * RESOLVE_IN_ROOT (a symlink to /etc/shadow resolves inside the rootfs, never
 * on the host), must be regular files (a fifo would hang us), and are size
 * capped.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime.h"

#define MAX_DB_SIZE (8u << 20)

/* Read a database file from the rootfs. Missing (or a symlink loop) is an
 * empty database, which is what runc does with a missing file. */
static int read_db(int rootfs_fd, const char *path, char **ret, struct strata_error **ret_err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	ssize_t n;

	*ret = NULL;
	if (rootfs_fd < 0)
		return 0;
	fd = path_openat(rootfs_fd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0,
	                 PATH_RESOLVE_IN_ROOT);
	if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR)
		return 0;
	if (fd < 0)
		return strata_error_set_errno(ret_err, fd, "open /%s in the rootfs", path);
	if (fstat(fd, &st) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "stat /%s", path);
	if (!S_ISREG(st.st_mode))
		return strata_error_set(ret_err, -EINVAL, "/%s in the rootfs is not a regular file",
		                        path);
	if ((uint64_t)st.st_size > MAX_DB_SIZE)
		return strata_error_set(ret_err, -EFBIG, "/%s in the rootfs is too large", path);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	n = loop_read(fd, buf, (size_t)st.st_size);
	if (n < 0)
		return strata_error_set_errno(ret_err, (int)n, "read /%s", path);
	buf[n] = '\0';
	*ret = TAKE_PTR(buf);
	return 0;
}

static bool parse_id(const char *s, unsigned long *ret)
{
	char *end;
	if (!s || !*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > 0xfffffffeul)
		return false;
	*ret = v;
	return true;
}

/* Split line into at most max ':'-fields in place; returns the count. */
static size_t split_fields(char *line, char **f, size_t max)
{
	size_t n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == ':') {
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

struct pw {
	char *name;
	unsigned long uid, gid;
	char *home;
};

/* Find a passwd entry by name (when by_name) or uid. Returns 1 when found,
 * 0 when not; strings in *ret are malloc'd. */
static int passwd_find(char *db, const char *name, unsigned long uid, bool by_name, struct pw *ret)
{
	char *save = NULL;
	for (char *line = db ? strtok_r(db, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[7];
		unsigned long u, g;
		if (*line == '#' || split_fields(line, f, 7) < 4)
			continue;
		if (!parse_id(f[2], &u) || !parse_id(f[3], &g))
			continue;
		if (by_name ? !streq(f[0], name) : u != uid)
			continue;
		ret->name = strdup(f[0]);
		ret->home = f[5] && *f[5] ? strdup(f[5]) : NULL;
		ret->uid = u;
		ret->gid = g;
		return ret->name ? 1 : -ENOMEM;
	}
	return 0;
}

/* Look up a group by name; 1 found, 0 not. */
static int group_find(const char *db, const char *name, unsigned long *ret_gid)
{
	_cleanup_free_ char *copy = db ? strdup(db) : NULL;
	char *save = NULL;
	if (db && !copy)
		return -ENOMEM;
	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[4];
		unsigned long g;
		if (*line == '#' || split_fields(line, f, 4) < 3 || !parse_id(f[2], &g))
			continue;
		if (streq(f[0], name)) {
			*ret_gid = g;
			return 1;
		}
	}
	return 0;
}

/* Groups listing user as a member, other than primary. */
static int group_members(const char *db, const char *user, gid_t primary, struct rt_user *u)
{
	_cleanup_free_ char *copy = db ? strdup(db) : NULL;
	char *save = NULL;
	if (db && !copy)
		return -ENOMEM;
	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[4], *msave = NULL;
		unsigned long g;
		if (*line == '#' || split_fields(line, f, 4) < 4 || !parse_id(f[2], &g))
			continue;
		if ((gid_t)g == primary)
			continue;
		for (char *m = strtok_r(f[3], ",", &msave); m; m = strtok_r(NULL, ",", &msave)) {
			if (!streq(m, user))
				continue;
			bool dup = false;
			for (size_t i = 0; i < u->n_additional_gids; i++)
				dup = dup || u->additional_gids[i] == (gid_t)g;
			if (dup)
				break;
			gid_t *n = realloc(u->additional_gids,
			                   (u->n_additional_gids + 1) * sizeof(gid_t));
			if (!n)
				return -ENOMEM;
			u->additional_gids = n;
			u->additional_gids[u->n_additional_gids++] = (gid_t)g;
			break;
		}
	}
	return 0;
}

void rt_user_done(struct rt_user *u)
{
	free(u->additional_gids);
	free(u->home);
	*u = (struct rt_user){0};
}

int rt_user_resolve(int rootfs_fd, const char *spec, struct rt_user *ret,
                    struct strata_error **ret_err)
{
	_cleanup_free_ char *passwd = NULL, *group = NULL, *user_part = NULL;
	struct pw pw = {0};
	const char *group_part = NULL;
	struct rt_user u = {0};
	unsigned long id;
	int r, found;

	if (!spec || !*spec)
		spec = "0";
	user_part = strdup(spec);
	if (!user_part)
		return -ENOMEM;
	char *colon = strchr(user_part, ':');
	if (colon) {
		*colon = '\0';
		group_part = colon + 1;
		if (!*group_part || strchr(group_part, ':'))
			return strata_error_set(ret_err, -EINVAL, "invalid user \"%s\"", spec);
	}
	if (!*user_part)
		return strata_error_set(ret_err, -EINVAL, "invalid user \"%s\"", spec);

	r = read_db(rootfs_fd, "etc/passwd", &passwd, ret_err);
	if (r < 0)
		return r;
	r = read_db(rootfs_fd, "etc/group", &group, ret_err);
	if (r < 0)
		return r;

	bool numeric = parse_id(user_part, &id);
	found = passwd_find(passwd, user_part, numeric ? id : 0, !numeric, &pw);
	if (found < 0)
		return found;
	if (!found && !numeric)
		return strata_error_set(
		        ret_err, -ENOENT,
		        "unable to find user %s: no matching entries in passwd file", user_part);
	u.uid = (uid_t)(found ? pw.uid : id);
	u.gid = (gid_t)(found ? pw.gid : 0);
	u.home = found ? TAKE_PTR(pw.home) : NULL;

	if (group_part) {
		if (parse_id(group_part, &id)) {
			u.gid = (gid_t)id;
		} else {
			r = group_find(group, group_part, &id);
			if (r < 0)
				goto fail;
			if (r == 0) {
				r = strata_error_set(ret_err, -ENOENT,
				                     "unable to find group %s: no matching entries "
				                     "in group file",
				                     group_part);
				goto fail;
			}
			u.gid = (gid_t)id;
		}
	}
	if (found) {
		r = group_members(group, pw.name, u.gid, &u);
		if (r < 0)
			goto fail;
	}
	free(pw.name);
	*ret = u;
	return 0;
fail:
	free(pw.name);
	rt_user_done(&u);
	return r;
}
