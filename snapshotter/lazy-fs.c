/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE file system of one lazy layer (libfuse3 low-level API), read-only.
 *
 * Cache-coherence contract: the layer is immutable, so the kernel may cache
 * everything for as long as it likes: entries, negative entries and
 * attributes get long timeouts, files are opened with keep_cache, and
 * directories with cache_readdir.
 *
 * Inodes: entry index + 1 of the compiled TOC (the root is index 0, i.e.
 * FUSE_ROOT_ID). They are a pure function of the TOC, so a daemon restarted
 * with the same TOC would answer the same numbers. Nothing is allocated per
 * inode: lookup counts need no bookkeeping and forget is a no-op.
 *
 * Threads: one session per layer, served by libfuse's multi-threaded loop
 * (at most opts.fuse_threads workers) on its own thread. Handlers share only
 * the immutable TOC and the layer's fetch path (lazy-fetch.c), which takes
 * no lock across network I/O; no lock is held here around fuse_reply_*.
 */
#define FUSE_USE_VERSION 312

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "lazy-internal.h"

#define TIMEOUT      (86400.0 * 365)
#define OPAQUE_XATTR "trusted.overlay.opaque"
/* chunks one cached read may span; more takes the copying path */
#define READ_PINS_MAX 16
#define READAHEAD_KB  "1024"
/* Largest read request. A cached read is answered by splicing chunk files
 * into /dev/fuse, which libfuse does only when header + data fit its pipe;
 * pipes grow to /proc/sys/fs/pipe-max-size (1 MiB) without CAP_SYS_RESOURCE,
 * so a 1 MiB read would be copied twice instead of spliced. */
#define READ_MAX  (512u << 10)
#define FUSE_NICE (-5)
/* chunk files read ahead from disk by a cached sequential read */
#define DISK_AHEAD_CHUNKS 2

static struct lazy_layer *layer_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ino -> entry index, or -1 when out of range. */
static int64_t idx_of(const struct lazy_layer *l, fuse_ino_t ino)
{
	if (ino == 0 || ino > l->toc->n_entries)
		return -1;
	return (int64_t)(ino - 1);
}

static void fill_attr(const struct lazy_layer *l, uint32_t idx, struct stat *st)
{
	uint32_t r = content_estargz_resolve(l->toc, idx);
	const struct content_estargz_entry *e = &l->toc->entries[r];

	memset(st, 0, sizeof(*st));
	st->st_ino = r + 1;
	st->st_mode = e->mode;
	st->st_nlink = e->nlink;
	st->st_uid = e->uid;
	st->st_gid = e->gid;
	st->st_size = S_ISDIR(e->mode) ? 4096 : (off_t)e->size;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_rdev = makedev(e->dev_major, e->dev_minor);
	st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = e->mtime_sec;
	st->st_mtim.tv_nsec = st->st_atim.tv_nsec = st->st_ctim.tv_nsec = e->mtime_nsec;
}

static void fill_entry(const struct lazy_layer *l, uint32_t idx, struct fuse_entry_param *fe)
{
	memset(fe, 0, sizeof(*fe));
	fill_attr(l, idx, &fe->attr);
	fe->ino = fe->attr.st_ino;
	fe->attr_timeout = TIMEOUT;
	fe->entry_timeout = TIMEOUT;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* writes never happen; the kernel need not wait for them */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* cached reads reply from chunk fds: let libfuse splice them */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	conn->time_gran = 1;
	/* must match the max_read mount option (see READ_MAX) */
	conn->max_read = READ_MAX;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lazy_layer *l = layer_of(req);
	int64_t p = idx_of(l, parent), c;
	struct fuse_entry_param fe;

	if (p < 0 || !S_ISDIR(l->toc->entries[p].mode)) {
		fuse_reply_err(req, p < 0 ? ESTALE : ENOTDIR);
		return;
	}
	c = content_estargz_lookup(l->toc, (uint32_t)p, name, strlen(name));
	if (c < 0) {
		/* immutable: the kernel may remember the miss */
		memset(&fe, 0, sizeof(fe));
		fe.entry_timeout = TIMEOUT;
		fuse_reply_entry(req, &fe);
		return;
	}
	fill_entry(l, (uint32_t)c, &fe);
	/* queued before the reply: what follows a lookup finds it queued */
	lazy_fetch_looked_up(l, (uint32_t)c);
	fuse_reply_entry(req, &fe);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lazy_layer *l = layer_of(req);
	int64_t i = idx_of(l, ino);
	struct stat st;

	if (i < 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	fill_attr(l, (uint32_t)i, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct lazy_layer *l = layer_of(req);
	int64_t i = idx_of(l, ino);

	if (i < 0 || !S_ISLNK(l->toc->entries[i].mode)) {
		fuse_reply_err(req, i < 0 ? ESTALE : EINVAL);
		return;
	}
	fuse_reply_readlink(req, content_estargz_str(l->toc, l->toc->entries[i].link));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lazy_layer *l = layer_of(req);
	int64_t i = idx_of(l, ino);

	if (i < 0 || !S_ISDIR(l->toc->entries[i].mode)) {
		fuse_reply_err(req, i < 0 ? ESTALE : ENOTDIR);
		return;
	}
	fi->fh = (uint64_t)i;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Offsets: 1 after ".", 2 after "..", 3 + k after child k. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
	struct lazy_layer *l = layer_of(req);
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *d;
	_cleanup_free_ char *buf = NULL;
	size_t pos = 0;
	int64_t i = idx_of(l, ino);

	if (i < 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	d = &toc->entries[i];
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t o = off; o < (off_t)d->n_children + 2; o++) {
		uint32_t idx;
		const char *name;
		size_t n;

		if (o == 0) {
			idx = (uint32_t)i;
			name = ".";
		} else if (o == 1) {
			idx = d->parent;
			name = "..";
		} else {
			idx = d->first_child + (uint32_t)(o - 2);
			if (toc->entries[idx].mode == 0)
				continue; /* an opaque marker */
			name = content_estargz_str(toc, toc->entries[idx].name);
		}
		if (plus) {
			struct fuse_entry_param fe;
			fill_entry(l, idx, &fe);
			n = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &fe, o + 1);
		} else {
			struct stat st = {0};
			uint32_t r = content_estargz_resolve(toc, idx);
			st.st_ino = r + 1;
			st.st_mode = toc->entries[r].mode;
			n = fuse_add_direntry(req, buf + pos, size - pos, name, &st, o + 1);
		}
		/* No lookup counts to give back when an entry does not fit: see
		 * the inode note at the top. */
		if (n > size - pos)
			break;
		pos += n;
	}
	fuse_reply_buf(req, buf, pos);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lazy_layer *l = layer_of(req);
	int64_t i = idx_of(l, ino);
	uint32_t r;

	if (i < 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	r = content_estargz_resolve(l->toc, (uint32_t)i);
	if (S_ISDIR(l->toc->entries[r].mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->fh = r;
	fi->keep_cache = 1;
	fi->noflush = 1;
	/* before the reply: the opener's next read follows it at once */
	lazy_fetch_opened(l, r);
	fuse_reply_open(req, fi);
}

/* The fast path: when every chunk of the range is cached, reply with the
 * chunk files' fds, so libfuse splices (or at least copies once) instead of
 * read + copy. false when a chunk is missing: the caller takes the fetching
 * path. The fds stay pinned until the reply has been written. */
static bool read_cached(fuse_req_t req, struct lazy_layer *l, uint32_t idx, size_t size,
                        uint64_t off)
{
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e = &toc->entries[idx];
	struct lazy_cache_pin pins[READ_PINS_MAX];
	_cleanup_free_ struct fuse_bufvec *bv = NULL;
	size_t n = 0, done = 0, len;
	bool ok = true;

	if (off >= e->size) {
		fuse_reply_buf(req, NULL, 0);
		return true;
	}
	len = (size_t)MIN((uint64_t)size, e->size - off);
	bv = calloc(1, sizeof(*bv) + (READ_PINS_MAX - 1) * sizeof(struct fuse_buf));
	if (!bv)
		return false;
	while (done < len) {
		uint32_t ci = content_estargz_chunk_at(toc, idx, off + done);
		const struct content_estargz_chunk *c;
		uint64_t coff;
		size_t take;

		if (ci == CONTENT_ESTARGZ_NONE || n == READ_PINS_MAX) {
			ok = false;
			break;
		}
		c = &toc->chunks[ci];
		if (lazy_cache_pin(l->mgr->cache, &c->digest, c->size, &pins[n]) < 0) {
			ok = false;
			break;
		}
		coff = off + done - c->file_offset;
		take = (size_t)MIN((uint64_t)(len - done), c->size - coff);
		bv->buf[n] = (struct fuse_buf){
		        .size = take,
		        .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY,
		        .fd = pins[n].fd,
		        .pos = (off_t)coff,
		};
		n++;
		done += take;
	}
	if (ok) {
		uint32_t last = content_estargz_chunk_at(toc, idx, off + len - 1);
		bool entered = bv->buf[0].pos == 0 || n > 1;

		bv->count = n;
		atomic_fetch_add(&l->cache_hits, n);
		/* no SPLICE_MOVE: it would steal the chunk files' page-cache pages */
		fuse_reply_data(req, bv, 0);
		/* A sequential reader entering a chunk will want the next ones:
		 * get their files off the disk now (the kernel's read-ahead on
		 * one chunk file stops at its end). */
		if (entered && last != CONTENT_ESTARGZ_NONE)
			for (uint32_t k = last + 1;
			     k <= last + DISK_AHEAD_CHUNKS && k < e->first_chunk + e->n_chunks;
			     k++) {
				struct lazy_cache_pin pin;
				if (lazy_cache_pin(l->mgr->cache, &toc->chunks[k].digest,
				                   toc->chunks[k].size, &pin) < 0)
					break;
				(void)posix_fadvise(pin.fd, 0, 0, POSIX_FADV_WILLNEED);
				lazy_cache_unpin(l->mgr->cache, &pin);
			}
	}
	for (size_t i = 0; i < n; i++)
		lazy_cache_unpin(l->mgr->cache, &pins[i]);
	return ok;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct lazy_layer *l = layer_of(req);
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	if (fi->fh >= l->toc->n_entries || off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (read_cached(req, l, (uint32_t)fi->fh, size, (uint64_t)off))
		return;
	buf = malloc(MAX(size, (size_t)1));
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = lazy_fetch_read(l, (uint32_t)fi->fh, buf, size, (uint64_t)off);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	fuse_reply_buf(req, buf, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct lazy_layer *l = layer_of(req);
	struct statvfs sv = {
	        .f_bsize = 4096,
	        .f_frsize = 4096,
	        .f_blocks = (l->toc->total_size + 4095) / 4096,
	        .f_files = l->toc->n_entries,
	        .f_namemax = 255,
	};

	fuse_reply_statfs(req, &sv);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct lazy_layer *l = layer_of(req);
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e;
	const char *val = NULL;
	size_t len = 0;
	int64_t i = idx_of(l, ino);

	if (i < 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	e = &toc->entries[content_estargz_resolve(toc, (uint32_t)i)];
	if ((e->flags & CONTENT_ESTARGZ_OPAQUE) && streq(name, OPAQUE_XATTR)) {
		val = "y";
		len = 1;
	} else {
		for (uint32_t k = 0; k < e->n_xattrs; k++) {
			const struct content_estargz_xattr *x = &toc->xattrs[e->first_xattr + k];
			if (streq(content_estargz_str(toc, x->name), name)) {
				val = content_estargz_str(toc, x->value);
				len = x->value_len;
				break;
			}
		}
	}
	if (!val)
		fuse_reply_err(req, ENODATA);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct lazy_layer *l = layer_of(req);
	const struct content_estargz_toc *toc = l->toc;
	const struct content_estargz_entry *e;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int64_t i = idx_of(l, ino);

	if (i < 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	e = &toc->entries[content_estargz_resolve(toc, (uint32_t)i)];
	if (e->flags & CONTENT_ESTARGZ_OPAQUE)
		len += sizeof(OPAQUE_XATTR);
	for (uint32_t k = 0; k < e->n_xattrs; k++)
		len += strlen(content_estargz_str(toc, toc->xattrs[e->first_xattr + k].name)) + 1;
	if (size == 0) {
		fuse_reply_xattr(req, len);
		return;
	}
	if (size < len) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	buf = malloc(MAX(len, (size_t)1));
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	char *p = buf;
	if (e->flags & CONTENT_ESTARGZ_OPAQUE)
		p = stpcpy(p, OPAQUE_XATTR) + 1;
	for (uint32_t k = 0; k < e->n_xattrs; k++)
		p = stpcpy(p, content_estargz_str(toc, toc->xattrs[e->first_xattr + k].name)) + 1;
	fuse_reply_buf(req, buf, len);
}

static const struct fuse_lowlevel_ops lazy_ops = {
        .init = op_init,
        .lookup = op_lookup,
        .forget = op_forget,
        .forget_multi = op_forget_multi,
        .getattr = op_getattr,
        .readlink = op_readlink,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .readdirplus = op_readdirplus,
        .releasedir = op_releasedir,
        .open = op_open,
        .read = op_read,
        .release = op_release,
        .statfs = op_statfs,
        .getxattr = op_getxattr,
        .listxattr = op_listxattr,
};

static void *loop_main(void *userdata)
{
	struct lazy_layer *l = userdata;
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();

	if (!cfg)
		return NULL;
	/* Every request has a process blocked on it, as on a kernel file
	 * system: on a busy machine each one otherwise waits for a time slice
	 * (measured: a container start with every chunk cached took 1.2 s
	 * against 0.6 s on overlayfs at load 12 on 2 cores). The workers and
	 * their read-ahead threads inherit this. Best effort (CAP_SYS_NICE). */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), FUSE_NICE);
	fuse_loop_cfg_set_max_threads(cfg, l->mgr->opts.fuse_threads);
	/* Keep workers: with fewer idle ones than a sequential reader's
	 * requests in flight, libfuse starts (and ends) a thread per request.
	 * An idle worker costs little resident memory (its buffer is touched
	 * only as far as requests fill it) and exists only after a load. */
	fuse_loop_cfg_set_idle_threads(cfg, l->mgr->opts.fuse_threads);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	(void)fuse_session_loop_mt(l->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return NULL;
}

/* The fuse control file system lets us abort a connection whose mount is
 * still busy (an overlay using it as a lower layer), which is the only way
 * to wake the loop's threads blocked in read(/dev/fuse). */
static void abort_connection(dev_t dev)
{
	char path[96];
	int fd;

	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", minor(dev));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && access("/sys/fs/fuse/connections", F_OK) == 0 &&
	    mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL) == 0)
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	(void)loop_write(fd, "1", 1);
	close(fd);
}

/* The kernel's read-ahead window for a FUSE mount starts at 128 KiB, so a
 * sequential read arrives as small requests; libfuse already accepts 1 MiB
 * (max_pages). A bigger window means fewer, larger reads for cached data and
 * that a sequential cold read asks for the next chunks sooner. Best effort. */
static void raise_readahead(dev_t dev)
{
	char path[96];
	int fd;

	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(dev), minor(dev));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	(void)loop_write(fd, READAHEAD_KB, strlen(READAHEAD_KB));
	close(fd);
}

void lazy_fs_force_unmount(const char *path)
{
	for (int i = 0; i < 16; i++)
		if (umount2(path, MNT_DETACH) < 0)
			break;
}

int lazy_fs_mount(struct lazy_layer *l, struct strata_error **ret_err)
{
	_cleanup_free_ char *opts = NULL;
	char *argv[] = {(char *)"strata", (char *)"-o", NULL, NULL};
	struct fuse_args args;
	struct stat st;
	int r;

	if (asprintf(&opts,
	             "ro,allow_other,default_permissions,suid,dev,fsname=strata-lazy-%" PRIu64
	             ",subtype=estargz,max_read=%u",
	             l->id, READ_MAX) < 0)
		return -ENOMEM;
	argv[2] = opts;
	args = (struct fuse_args)FUSE_ARGS_INIT(3, argv);
	l->se = fuse_session_new(&args, &lazy_ops, sizeof(lazy_ops), l);
	fuse_opt_free_args(&args);
	if (!l->se)
		return strata_error_set(ret_err, -EIO, "create FUSE session for \"%s\"",
		                        l->mountpoint);
	/* a connection kept across a restart: libfuse adopts "/dev/fd/N" */
	char fdpath[32];
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", l->adopt_fd);
	if (fuse_session_mount(l->se, l->adopt_fd >= 0 ? fdpath : l->mountpoint) != 0) {
		fuse_session_destroy(l->se);
		l->se = NULL;
		return strata_error_set(ret_err, -EIO, "mount FUSE on \"%s\"", l->mountpoint);
	}
	if (l->adopt_fd >= 0) {
		l->adopt_fd = -1; /* the session's now */
		r = lazy_handover_resume(l);
		if (r < 0) {
			fuse_session_destroy(l->se);
			l->se = NULL;
			return strata_error_set_errno(ret_err, r, "resume FUSE on \"%s\"",
			                              l->mountpoint);
		}
	}
	if (!l->fetch && lazy_fetch_new(l, &l->fetch) < 0)
		r = ENOMEM;
	else
		r = pthread_create(&l->fuse_thread, NULL, loop_main, l);
	if (r != 0) {
		l->fetch = lazy_fetch_free(l->fetch);
		lazy_fs_force_unmount(l->mountpoint);
		fuse_session_destroy(l->se);
		l->se = NULL;
		return strata_error_set_errno(ret_err, -r, "start FUSE thread");
	}
	l->fuse_running = true;
	lazy_fetch_start(l->fetch);
	/* the connection id for abort_connection(); stat answers from the
	 * kernel's root inode without a request once init is done */
	if (stat(l->mountpoint, &st) == 0) {
		l->fuse_dev = st.st_dev;
		raise_readahead(st.st_dev);
	}
	return 0;
}

void lazy_fs_unmount(struct lazy_layer *l)
{
	if (!l->se)
		return;
	if (l->keep_mounted) {
		lazy_handover_detach(l);
		l->fetch = lazy_fetch_free(l->fetch);
		return;
	}
	fuse_session_exit(l->se);
	lazy_fs_force_unmount(l->mountpoint);
	if (l->fuse_dev)
		abort_connection(l->fuse_dev);
	if (l->fuse_running)
		pthread_join(l->fuse_thread, NULL);
	l->fuse_running = false;
	l->fetch = lazy_fetch_free(l->fetch);
	/* Frees libfuse's copy of the mountpoint; the connection is gone by
	 * now, so it unmounts nothing (an aborted fd answers POLLERR). */
	if (l->fuse_dev)
		fuse_session_unmount(l->se);
	fuse_session_destroy(l->se);
	l->se = NULL;
}
