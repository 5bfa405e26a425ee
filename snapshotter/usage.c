/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk usage of a snapshot directory, as containerd's continuity
 * fs.DiskUsage counts it: every distinct inode once (the directory itself
 * included), size = allocated blocks * 512. Only inodes with more than one
 * link need remembering, so memory stays proportional to hard links.
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "snap-internal.h"

struct linked {
	dev_t dev;
	ino_t ino;
	int64_t blocks;
};

struct du {
	struct snap_usage u;
	struct linked *links;
	size_t n_links, cap_links;
};

static int note(struct du *d, const struct stat *st)
{
	if (S_ISDIR(st->st_mode) || st->st_nlink <= 1) {
		d->u.inodes++;
		d->u.size += (int64_t)st->st_blocks * 512;
		return 0;
	}
	if (d->n_links == d->cap_links) {
		size_t cap = d->cap_links ? d->cap_links * 2 : 64;
		struct linked *a = realloc(d->links, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		d->links = a;
		d->cap_links = cap;
	}
	d->links[d->n_links++] = (struct linked){st->st_dev, st->st_ino, st->st_blocks};
	return 0;
}

static int walk(struct du *d, int dfd, unsigned depth)
{
	DIR *dir;
	int r = 0;

	if (depth > 4096)
		return -ELOOP;
	dir = fdopendir(dfd);
	if (!dir) {
		(void)close(dfd);
		return negative_errno();
	}
	for (struct dirent *de; (de = readdir(dir));) {
		struct stat st;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* removed while we walk */
			r = negative_errno();
			break;
		}
		r = note(d, &st);
		if (r < 0)
			break;
		if (S_ISDIR(st.st_mode)) {
			int fd = openat(dirfd(dir), de->d_name,
			                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				if (errno == ENOENT)
					continue;
				r = negative_errno();
				break;
			}
			r = walk(d, fd, depth + 1);
			if (r < 0)
				break;
		}
	}
	closedir(dir);
	return r;
}

static int cmp_linked(const void *a, const void *b)
{
	const struct linked *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

int snap_disk_usage_at(int dirfd, const char *path, struct snap_usage *ret)
{
	struct du d = {0};
	struct stat st;
	int fd, r;

	fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, &st) < 0) {
		r = negative_errno();
		(void)close(fd);
		return r;
	}
	r = note(&d, &st);
	if (r == 0)
		r = walk(&d, fd, 0);
	else
		(void)close(fd);
	if (r == 0 && d.n_links > 0) {
		qsort(d.links, d.n_links, sizeof(*d.links), cmp_linked);
		for (size_t i = 0; i < d.n_links; i++) {
			if (i > 0 && cmp_linked(&d.links[i - 1], &d.links[i]) == 0)
				continue;
			d.u.inodes++;
			d.u.size += d.links[i].blocks * 512;
		}
	}
	free(d.links);
	if (r == 0)
		*ret = d.u;
	return r;
}
