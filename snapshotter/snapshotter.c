/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot operations (see snapshotter.h): argument checks, the
 * directory steps around each metadata write, and the crash-safe order
 * between them. Metadata itself lives in snap-meta.c.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lazy-internal.h"

/* LMDB's default maximum key size. */
#define SNAP_KEY_MAX 511
/* Ids reserved per metadata write; unused ones are skipped after a restart,
 * which keeps ids unique without a write per Prepare. */
#define ID_BLOCK 64
/* Under the store root, beside snapshots/ (see snap_store.trash_fd). */
#define TRASH_DIR "snapshots-trash"
/* The trash thread waits this long after a Remove before sweeping, so a
 * burst of removals is one pass and the deletions stay out of the way of
 * the operations that usually follow a Remove at once. */
#define TRASH_DELAY_MS 100

const char *snap_kind_to_string(enum snap_kind kind)
{
	switch (kind) {
	case SNAP_KIND_VIEW:
		return "view";
	case SNAP_KIND_ACTIVE:
		return "active";
	case SNAP_KIND_COMMITTED:
		return "committed";
	default:
		return "unknown";
	}
}

void snap_labels_free(struct snap_label *labels, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(labels[i].key);
		free(labels[i].value);
	}
	free(labels);
}

int snap_labels_copy(const struct snap_label *src, size_t n, struct snap_label **ret)
{
	struct snap_label *l;

	*ret = NULL;
	if (n == 0)
		return 0;
	l = calloc(n, sizeof(*l));
	if (!l)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		l[i].key = strdup(src[i].key);
		l[i].value = strdup(strempty(src[i].value));
		if (!l[i].key || !l[i].value) {
			snap_labels_free(l, n);
			return -ENOMEM;
		}
	}
	*ret = l;
	return 0;
}

void snap_info_done(struct snap_info *info)
{
	if (!info)
		return;
	free(info->name);
	free(info->parent);
	snap_labels_free(info->labels, info->n_labels);
	*info = (struct snap_info){0};
}

const char *snap_info_label(const struct snap_info *info, const char *key)
{
	for (size_t i = 0; i < info->n_labels; i++)
		if (streq(info->labels[i].key, key))
			return info->labels[i].value;
	return NULL;
}

/* containerd's NeedsUserXAttr: only inside a user namespace. */
static bool in_user_namespace(void)
{
	_cleanup_free_ char *buf = NULL;
	unsigned long a, b, c;

	if (path_read_file_at(AT_FDCWD, "/proc/self/uid_map", 4096, &buf, NULL) < 0)
		return false;
	if (sscanf(buf, "%lu %lu %lu", &a, &b, &c) != 3)
		return false;
	return !(a == 0 && b == 0 && c == 4294967295UL);
}

static int alloc_id(struct snap_store *s, uint64_t *ret)
{
	int r = 0;

	pthread_mutex_lock(&s->id_lock);
	if (s->next_id == s->id_end) {
		uint64_t first;
		r = snap_meta_reserve_ids(s, ID_BLOCK, &first);
		if (r == 0) {
			s->next_id = first;
			s->id_end = first + ID_BLOCK;
		}
	}
	if (r == 0)
		*ret = s->next_id++;
	pthread_mutex_unlock(&s->id_lock);
	return r;
}

static void id_name(uint64_t id, char buf[static 24])
{
	snprintf(buf, 24, "%" PRIu64, id);
}

static uint64_t now_usec(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Delete everything in the trash. */
static void trash_sweep(struct snap_store *s)
{
	DIR *d;
	int fd, r;

	pthread_mutex_lock(&s->sweep_lock);
	fd = openat(s->trash_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		(void)safe_close(fd);
		pthread_mutex_unlock(&s->sweep_lock);
		return;
	}
	for (struct dirent *de; (de = readdir(d));) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		r = path_rm_rf_at(s->trash_fd, de->d_name);
		if (r < 0)
			log_debug_errno(r, "trash: remove \"%s/" TRASH_DIR "/%s\"", s->root,
			                de->d_name);
	}
	closedir(d);
	pthread_mutex_unlock(&s->sweep_lock);
}

static void *trash_main(void *arg)
{
	struct snap_store *s = arg;

	/* Background work: below the daemon's request threads for the CPU. */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	pthread_mutex_lock(&s->trash_lock);
	for (;;) {
		if (s->trash_pending) {
			uint64_t now = now_usec();

			/* A closing store sweeps at once, leaving nothing behind. */
			if (!s->trash_stop && now < s->trash_due) {
				struct timespec until = {
				        .tv_sec = (time_t)(s->trash_due / 1000000u),
				        .tv_nsec = (long)(s->trash_due % 1000000u) * 1000L,
				};
				(void)pthread_cond_timedwait(&s->trash_cond, &s->trash_lock,
				                             &until);
				continue;
			}
			s->trash_pending = false;
			pthread_mutex_unlock(&s->trash_lock);
			trash_sweep(s);
			pthread_mutex_lock(&s->trash_lock);
			continue;
		}
		if (s->trash_stop)
			break;
		pthread_cond_wait(&s->trash_cond, &s->trash_lock);
	}
	pthread_mutex_unlock(&s->trash_lock);
	return NULL;
}

/* Open the trash and start its thread, which first sweeps what a crash
 * left. Without either, Remove deletes in place as before. */
static void trash_open(struct snap_store *s)
{
	_cleanup_free_ char *dir = path_join(s->root, TRASH_DIR);
	pthread_condattr_t ca;
	sigset_t all, old;
	int r;

	if (!dir)
		return;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_debug_errno(-errno, "create \"%s\" (removing in place)", dir);
		return;
	}
	s->trash_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->trash_fd < 0)
		return;
	(void)pthread_condattr_init(&ca);
	(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	(void)pthread_cond_destroy(&s->trash_cond);
	(void)pthread_cond_init(&s->trash_cond, &ca);
	(void)pthread_condattr_destroy(&ca);
	s->trash_pending = true;
	/* Signals stay with the daemon's own threads. */
	(void)sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&s->trash_thread, NULL, trash_main, s);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		trash_sweep(s);
		s->trash_fd = safe_close(s->trash_fd);
		return;
	}
	s->have_trash_thread = true;
}

static void trash_close(struct snap_store *s)
{
	if (s->have_trash_thread) {
		pthread_mutex_lock(&s->trash_lock);
		s->trash_stop = true;
		pthread_cond_signal(&s->trash_cond);
		pthread_mutex_unlock(&s->trash_lock);
		(void)pthread_join(s->trash_thread, NULL);
		s->have_trash_thread = false;
	}
	s->trash_fd = safe_close(s->trash_fd);
}

int snap_store_open(const char *root, struct strata_meta *meta, const struct snap_options *opts,
                    struct snap_store **ret, struct strata_error **ret_err)
{
	_cleanup_(snap_store_closep) struct snap_store *s = NULL;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->snapshots_fd = s->trash_fd = -1;
	s->meta = meta;
	pthread_mutex_init(&s->id_lock, NULL);
	pthread_rwlock_init(&s->dirs_lock, NULL);
	pthread_mutex_init(&s->trash_lock, NULL);
	pthread_cond_init(&s->trash_cond, NULL);
	pthread_mutex_init(&s->sweep_lock, NULL);
	s->root = strdup(root);
	s->snapshots_dir = path_join(root, "snapshots");
	if (!s->root || !s->snapshots_dir)
		return -ENOMEM;
	r = path_mkdir_p(s->snapshots_dir, 0700);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "create \"%s\"", s->snapshots_dir);
	s->snapshots_fd = open(s->snapshots_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->snapshots_fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "open \"%s\"",
		                              s->snapshots_dir);
	r = snap_meta_open(s);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "open snapshot databases");
	trash_open(s);

	s->index_off = access("/sys/module/overlay/parameters/index", F_OK) == 0;
	if (!opts || opts->userxattr < 0)
		s->userxattr = in_user_namespace();
	else
		s->userxattr = opts->userxattr > 0;
	if (!opts || !opts->lazy_disable) {
		struct lazy_options lo = {0};
		if (opts) {
			lo = (struct lazy_options){
			        .allow_unverified = opts->lazy_allow_unverified,
			        .no_prefetch = opts->lazy_no_prefetch,
			        .no_background = opts->lazy_no_background,
			        .bg_delay_ms = opts->lazy_bg_delay_ms,
			        .fuse_threads = opts->lazy_fuse_threads,
			        .cache_max_bytes = opts->lazy_cache_max_bytes,
			        .handover = opts->lazy_handover,
			};
		}
		r = lazy_manager_new(root, &lo, opts ? opts->registry : NULL, &s->lazy, ret_err);
		if (r < 0)
			return strata_error_prefix(ret_err, r, "lazy layers");
		/* Never fails the open: a layer that cannot be mounted is
		 * reported Unavailable by Mounts/View. */
		(void)lazy_remote_remount_all(s, NULL);
	}
	*ret = TAKE_PTR(s);
	return 0;
}

struct snap_store *snap_store_close(struct snap_store *s)
{
	if (!s)
		return NULL;
	lazy_manager_free(s->lazy);
	trash_close(s);
	(void)safe_close(s->snapshots_fd);
	pthread_mutex_destroy(&s->id_lock);
	pthread_rwlock_destroy(&s->dirs_lock);
	pthread_mutex_destroy(&s->trash_lock);
	pthread_cond_destroy(&s->trash_cond);
	pthread_mutex_destroy(&s->sweep_lock);
	free(s->root);
	free(s->snapshots_dir);
	free(s);
	return NULL;
}

const char *snap_store_snapshots_dir(const struct snap_store *s)
{
	return s->snapshots_dir;
}

static int check_key(const char *what, const char *key, struct strata_error **ret_err)
{
	if (!key || !key[0])
		return strata_error_set(ret_err, -EINVAL, "%s must not be empty: invalid argument",
		                        what);
	if (strlen(key) > SNAP_KEY_MAX)
		return strata_error_set(ret_err, -EINVAL,
		                        "%s is longer than %d bytes: invalid argument", what,
		                        SNAP_KEY_MAX);
	return 0;
}

/* <name>/{fs,work} under dirfd (work for active snapshots only). */
static int make_dirs_at(int dirfd, const char *name, enum snap_kind kind)
{
	_cleanup_close_ int dfd = -1;

	if (mkdirat(dirfd, name, 0700) < 0)
		return negative_errno();
	dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return negative_errno();
	if (mkdirat(dfd, "fs", 0755) < 0)
		return negative_errno();
	if (kind == SNAP_KIND_ACTIVE && mkdirat(dfd, "work", 0711) < 0)
		return negative_errno();
	return 0;
}

/* fs takes the parent's owner, as containerd does, so a container's root
 * directory keeps the image's ownership. */
static int take_parent_owner(struct snap_store *s, const char *name, uint64_t parent_id)
{
	char pfs[40], fs[40];
	struct stat pst, st;

	snprintf(pfs, sizeof(pfs), "%" PRIu64 "/fs", parent_id);
	snprintf(fs, sizeof(fs), "%s/fs", name);
	if (fstatat(s->snapshots_fd, pfs, &pst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(s->snapshots_fd, fs, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return negative_errno();
	/* usually the same (root): no inode change to journal then */
	if (st.st_uid == pst.st_uid && st.st_gid == pst.st_gid)
		return 0;
	if (fchownat(s->snapshots_fd, fs, pst.st_uid, pst.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		return negative_errno();
	return 0;
}

/* ROOT/snapshots/<id>/{fs,work} (work for active snapshots only). */
static int make_dirs(struct snap_store *s, uint64_t id, enum snap_kind kind, uint64_t parent_id)
{
	char name[24];
	int r;

	id_name(id, name);
	r = make_dirs_at(s->snapshots_fd, name, kind);
	if (r < 0)
		return r;
	return parent_id ? take_parent_owner(s, name, parent_id) : 0;
}

static void remove_dir(struct snap_store *s, uint64_t id)
{
	char name[24];
	int r;

	id_name(id, name);
	r = path_rm_rf_at(s->snapshots_fd, name);
	if (r < 0)
		log_debug_errno(r, "remove snapshot directory \"%s/%s\" (Cleanup will retry)",
		                s->snapshots_dir, name);
}

/* A removed snapshot's directory: into the trash for the trash thread,
 * or deleted here when it cannot go there (no trash, another filesystem). */
static void discard_dir(struct snap_store *s, uint64_t id)
{
	char name[24];

	id_name(id, name);
	if (s->trash_fd >= 0) {
		if (renameat(s->snapshots_fd, name, s->trash_fd, name) == 0) {
			pthread_mutex_lock(&s->trash_lock);
			/* Already pending: the coming sweep takes this one too. */
			if (!s->trash_pending) {
				s->trash_pending = true;
				s->trash_due = now_usec() + TRASH_DELAY_MS * 1000u;
				pthread_cond_signal(&s->trash_cond);
			}
			pthread_mutex_unlock(&s->trash_lock);
			return;
		}
		if (errno == ENOENT)
			return;
		log_debug_errno(-errno, "move snapshot directory \"%s/%s\" to the trash",
		                s->snapshots_dir, name);
	}
	remove_dir(s, id);
}

int snap_create(struct snap_store *s, enum snap_kind kind, const char *key, const char *parent,
                const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                size_t *ret_n_mounts, struct strata_error **ret_err)
{
	struct snap_create_args a = {
	        .key = key, .parent = parent, .kind = kind, .labels = labels, .n_labels = n_labels};
	struct snap_record prec = {0};
	uint64_t parent_id = 0;
	int r;

	r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;
	if (parent && parent[0]) {
		_cleanup_free_ uint64_t *chain = NULL;
		size_t n_chain = 0;

		/* Early, for the parent's owner; the write re-checks it. */
		r = snap_meta_get_chain(s, parent, &prec, &chain, &n_chain);
		if (r == -ENOENT)
			return strata_error_set(ret_err, r, "missing parent \"%s\": not found",
			                        parent);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "read parent \"%s\"", parent);
		parent_id = prec.id;
		if (prec.info.kind != SNAP_KIND_COMMITTED) {
			snap_record_done(&prec);
			return strata_error_set(ret_err, -EINVAL,
			                        "parent \"%s\" is not committed snapshot: invalid "
			                        "argument",
			                        parent);
		}
		snap_record_done(&prec);
		/* A chain with an unhealthy remote layer cannot be mounted:
		 * Unavailable, before anything is created. */
		if (ret_mounts) {
			r = lazy_remote_check_chain(s, &parent_id, 1, ret_err);
			if (r == 0)
				r = lazy_remote_check_chain(s, chain, n_chain, ret_err);
			if (r < 0)
				return r;
		}
	}
	r = alloc_id(s, &a.id);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "allocate snapshot id");

	pthread_rwlock_rdlock(&s->dirs_lock);
	r = make_dirs(s, a.id, kind, parent_id);
	if (r < 0) {
		(void)strata_error_set_errno(ret_err, r, "create directory for snapshot \"%s\"",
		                             key);
		goto fail;
	}
	r = snap_meta_create(s, &a);
	if (r < 0) {
		if (a.err)
			strata_error_propagate(ret_err, &a.err);
		else
			(void)strata_error_set_errno(ret_err, r, "create snapshot \"%s\"", key);
		goto fail;
	}
	pthread_rwlock_unlock(&s->dirs_lock);
	strata_error_free(a.err);

	if (!ret_mounts) {
		free(a.parent_ids);
		return 0;
	}
	r = snap_build_mounts(s, kind, a.id, a.parent_ids, a.n_parent_ids, ret_mounts,
	                      ret_n_mounts);
	free(a.parent_ids);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "mounts of \"%s\"", key);
	return 0;
fail:
	remove_dir(s, a.id);
	pthread_rwlock_unlock(&s->dirs_lock);
	strata_error_free(a.err);
	free(a.parent_ids);
	return r;
}

int snap_create_committed(struct snap_store *s, const char *name, const char *key,
                          const char *parent, const struct snap_label *labels, size_t n_labels,
                          int (*fill)(struct snap_store *s, uint64_t id, void *userdata),
                          void *userdata, uint64_t *ret_id, bool *ret_name_exists,
                          struct strata_error **ret_err)
{
	struct snap_create_committed_args a = {
	        .name = name, .key = key, .parent = parent, .labels = labels, .n_labels = n_labels};
	struct snap_record prec = {0};
	uint64_t parent_id = 0;
	char fs[40];
	int r;

	*ret_name_exists = false;
	r = check_key("snapshot name", name, ret_err);
	if (r == 0)
		r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;
	if (parent && parent[0]) {
		/* Early, for the parent's owner; the write re-checks it. */
		r = snap_meta_get(s, parent, &prec);
		if (r == -ENOENT)
			return strata_error_set(ret_err, r, "missing parent \"%s\": not found",
			                        parent);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "read parent \"%s\"", parent);
		parent_id = prec.id;
		snap_record_done(&prec);
	}
	r = alloc_id(s, &a.id);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "allocate snapshot id");

	/* Shared from mkdir to the metadata write, as in snap_create. The
	 * layout is an active snapshot's committed: fs and work. */
	pthread_rwlock_rdlock(&s->dirs_lock);
	r = make_dirs(s, a.id, SNAP_KIND_ACTIVE, parent_id);
	if (r < 0) {
		(void)strata_error_set_errno(ret_err, r, "create directory for snapshot \"%s\"",
		                             key);
		goto fail;
	}
	r = fill(s, a.id, userdata);
	if (r < 0) {
		(void)strata_error_set_errno(ret_err, r, "fill snapshot \"%s\"", name);
		goto fail;
	}
	/* what snap_commit records for it */
	snprintf(fs, sizeof(fs), "%" PRIu64 "/fs", a.id);
	r = snap_disk_usage_at(s->snapshots_fd, fs, &a.usage);
	if (r < 0) {
		(void)strata_error_set_errno(ret_err, r, "measure usage of snapshot \"%s\"", name);
		goto fail;
	}
	r = snap_meta_create_committed(s, &a);
	if (r < 0) {
		*ret_name_exists = r == -EEXIST && !a.key_exists;
		if (a.err)
			strata_error_propagate(ret_err, &a.err);
		else
			(void)strata_error_set_errno(ret_err, r, "create snapshot \"%s\"", name);
		goto fail;
	}
	pthread_rwlock_unlock(&s->dirs_lock);
	strata_error_free(a.err);
	*ret_id = a.id;
	return 0;
fail:
	remove_dir(s, a.id);
	pthread_rwlock_unlock(&s->dirs_lock);
	strata_error_free(a.err);
	return r;
}

int snap_prepare(struct snap_store *s, const char *key, const char *parent,
                 const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
                 size_t *ret_n_mounts, struct strata_error **ret_err)
{
	if (s->lazy && snap_info_label(&(struct snap_info){.labels = (struct snap_label *)labels,
	                                                   .n_labels = n_labels},
	                               "containerd.io/snapshot.ref")) {
		int r = lazy_remote_prepare(s, key, parent, labels, n_labels, ret_err);
		if (r < 0)
			return r;
		if (r > 0)
			return strata_error_set(
			        ret_err, -EEXIST, "target snapshot \"%s\": already exists",
			        snap_info_label(
			                &(struct snap_info){.labels = (struct snap_label *)labels,
			                                    .n_labels = n_labels},
			                "containerd.io/snapshot.ref"));
	}
	return snap_create(s, SNAP_KIND_ACTIVE, key, parent, labels, n_labels, ret_mounts,
	                   ret_n_mounts, ret_err);
}

int snap_view(struct snap_store *s, const char *key, const char *parent,
              const struct snap_label *labels, size_t n_labels, struct snap_mount **ret_mounts,
              size_t *ret_n_mounts, struct strata_error **ret_err)
{
	return snap_create(s, SNAP_KIND_VIEW, key, parent, labels, n_labels, ret_mounts,
	                   ret_n_mounts, ret_err);
}

int snap_mounts(struct snap_store *s, const char *key, struct snap_mount **ret_mounts,
                size_t *ret_n_mounts, struct strata_error **ret_err)
{
	struct snap_record rec = {0};
	_cleanup_free_ uint64_t *ids = NULL;
	size_t n = 0;
	int r;

	r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;
	r = snap_meta_get_chain(s, key, &rec, &ids, &n);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r,
		                        "failed to get active mount: snapshot \"%s\" does not "
		                        "exist: not found",
		                        key);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read snapshot \"%s\"", key);
	if (rec.info.kind != SNAP_KIND_ACTIVE && rec.info.kind != SNAP_KIND_VIEW) {
		snap_record_done(&rec);
		return strata_error_set(ret_err, -EBADFD,
		                        "failed to get active mount: requested snapshot \"%s\" not "
		                        "active or view: failed precondition",
		                        key);
	}
	r = lazy_remote_check_chain(s, ids, n, ret_err);
	if (r < 0) {
		snap_record_done(&rec);
		return r;
	}
	r = snap_build_mounts(s, rec.info.kind, rec.id, ids, n, ret_mounts, ret_n_mounts);
	snap_record_done(&rec);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "mounts of \"%s\"", key);
	return 0;
}

static int usage_of(struct snap_store *s, uint64_t id, struct snap_usage *ret)
{
	char p[40];

	snprintf(p, sizeof(p), "%" PRIu64 "/fs", id);
	return snap_disk_usage_at(s->snapshots_fd, p, ret);
}

int snap_commit(struct snap_store *s, const char *name, const char *key,
                const struct snap_label *labels, size_t n_labels, struct strata_error **ret_err)
{
	int r;

	r = check_key("snapshot name", name, ret_err);
	if (r == 0)
		r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;

	/* The usage walk happens outside the write; the write checks that the
	 * key still names the snapshot that was measured. */
	for (int attempt = 0;; attempt++) {
		struct snap_commit_args a = {
		        .name = name, .key = key, .labels = labels, .n_labels = n_labels};
		struct snap_record rec = {0};

		r = snap_meta_get(s, key, &rec);
		if (r < 0 && r != -ENOENT)
			return strata_error_set_errno(ret_err, r, "read snapshot \"%s\"", key);
		if (r == 0 && rec.info.kind == SNAP_KIND_ACTIVE) {
			a.expect_id = rec.id;
			r = usage_of(s, rec.id, &a.usage);
			if (r < 0) {
				snap_record_done(&rec);
				return strata_error_set_errno(
				        ret_err, r, "measure usage of snapshot \"%s\"", key);
			}
		}
		snap_record_done(&rec);
		r = snap_meta_commit(s, &a);
		if (r == -EAGAIN && attempt < 3) {
			strata_error_free(a.err);
			continue;
		}
		if (r < 0) {
			if (a.err)
				strata_error_propagate(ret_err, &a.err);
			strata_error_free(a.err);
			(void)strata_error_prefix(ret_err, r, "failed to commit snapshot \"%s\"",
			                          key);
			return r;
		}
		strata_error_free(a.err);
		return 0;
	}
}

int snap_remove(struct snap_store *s, const char *key, struct strata_error **ret_err)
{
	uint64_t id;
	int r;

	r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;
	r = snap_meta_remove(s, key, &id, ret_err);
	if (r < 0) {
		(void)strata_error_prefix(ret_err, r, "failed to remove");
		return r;
	}
	/* After the durable metadata change: a crash here leaves an orphan
	 * directory for Cleanup (or, once renamed, for the trash sweep),
	 * never metadata without a directory. The rename needs no fsync for
	 * the same reason. A remote layer is unmounted first, so rm -rf
	 * never walks into it. */
	if (s->lazy)
		lazy_manager_drop(s->lazy, id);
	discard_dir(s, id);
	return 0;
}

int snap_stat(struct snap_store *s, const char *key, struct snap_info *ret,
              struct strata_error **ret_err)
{
	struct snap_record rec = {0};
	int r;

	r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;
	r = snap_meta_get(s, key, &rec);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "snapshot \"%s\" does not exist: not found",
		                        key);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read snapshot \"%s\"", key);
	*ret = rec.info;
	return 0;
}

int snap_update(struct snap_store *s, const struct snap_info *info, const char *const paths[],
                size_t n_paths, struct snap_info *ret, struct strata_error **ret_err)
{
	int r = check_key("snapshot name", info ? info->name : NULL, ret_err);

	if (r < 0)
		return r;
	return snap_meta_update(s, info, paths, n_paths, ret, ret_err);
}

int snap_usage(struct snap_store *s, const char *key, struct snap_usage *ret,
               struct strata_error **ret_err)
{
	struct snap_record rec = {0};
	int r;

	r = check_key("snapshot key", key, ret_err);
	if (r < 0)
		return r;
	r = snap_meta_get(s, key, &rec);
	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "snapshot \"%s\" does not exist: not found",
		                        key);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read snapshot \"%s\"", key);
	*ret = rec.usage;
	if (rec.info.kind == SNAP_KIND_ACTIVE) {
		r = usage_of(s, rec.id, ret);
		if (r < 0)
			(void)strata_error_set_errno(ret_err, r, "measure usage of snapshot \"%s\"",
			                             key);
	}
	snap_record_done(&rec);
	return r;
}

int snap_get_id(struct snap_store *s, const char *key, uint64_t *ret_id,
                struct strata_error **ret_err)
{
	struct snap_record rec = {0};
	int r = snap_meta_get(s, key, &rec);

	if (r == -ENOENT)
		return strata_error_set(ret_err, r, "snapshot \"%s\" does not exist: not found",
		                        key);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read snapshot \"%s\"", key);
	*ret_id = rec.id;
	snap_record_done(&rec);
	return 0;
}

struct match_ctx {
	const struct snap_info *info;
	char *scratch;
};

/* containerd's adaptSnapshot: parent is always present (maybe ""); a label
 * key is the rest of the field path joined with '.'. */
static bool field_lookup(const char *const fieldpath[], size_t n, void *userdata,
                         const char **ret_value)
{
	struct match_ctx *c = userdata;
	const struct snap_info *in = c->info;
	size_t len = 0;
	char *p;

	if (n == 0)
		return false;
	if (streq(fieldpath[0], "kind")) {
		if (in->kind < SNAP_KIND_VIEW || in->kind > SNAP_KIND_COMMITTED)
			return false;
		*ret_value = snap_kind_to_string(in->kind);
		return true;
	}
	if (streq(fieldpath[0], "name")) {
		*ret_value = in->name;
		return true;
	}
	if (streq(fieldpath[0], "parent")) {
		*ret_value = strempty(in->parent);
		return true;
	}
	if (!streq(fieldpath[0], "labels") || in->n_labels == 0)
		return false;
	for (size_t i = 1; i < n; i++)
		len += strlen(fieldpath[i]) + 1;
	free(c->scratch);
	c->scratch = p = malloc(len + 1);
	if (!p)
		return false;
	*p = '\0';
	for (size_t i = 1; i < n; i++) {
		if (i > 1)
			*p++ = '.';
		p = stpcpy(p, fieldpath[i]);
	}
	*ret_value = snap_info_label(in, c->scratch);
	return *ret_value != NULL;
}

int snap_walk(struct snap_store *s, const char *const filters[], size_t n_filters, snap_walk_fn fn,
              void *userdata, struct strata_error **ret_err)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	struct snap_record *recs = NULL;
	size_t n = 0;
	int r;

	r = strata_filter_parse(filters, n_filters, &f, ret_err);
	if (r < 0)
		return r;
	/* Copy everything out first: fn may be slow (a gRPC stream) and must
	 * not hold a read transaction open. */
	r = snap_meta_list(s, &recs, &n);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "list snapshots");
	for (size_t i = 0; i < n; i++) {
		struct match_ctx c = {.info = &recs[i].info};
		bool match = strata_filter_match(f, field_lookup, &c);

		free(c.scratch);
		if (!match)
			continue;
		r = fn(&recs[i].info, userdata);
		if (r < 0)
			break;
	}
	for (size_t i = 0; i < n; i++)
		snap_record_done(&recs[i]);
	free(recs);
	return r < 0 ? r : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The id a directory name stands for; 0 when it is not canonical decimal. */
static uint64_t parse_id(const char *name)
{
	char buf[24];
	char *end;
	unsigned long long v;

	if (name[0] < '1' || name[0] > '9')
		return 0;
	errno = 0;
	v = strtoull(name, &end, 10);
	if (errno || *end)
		return 0;
	id_name(v, buf);
	return streq(buf, name) ? v : 0;
}

int snap_cleanup(struct snap_store *s, struct strata_error **ret_err)
{
	_cleanup_free_ uint64_t *ids = NULL;
	size_t n = 0;
	DIR *d;
	int r, fd;

	pthread_rwlock_wrlock(&s->dirs_lock);
	r = snap_meta_ids(s, &ids, &n);
	if (r < 0) {
		pthread_rwlock_unlock(&s->dirs_lock);
		return strata_error_set_errno(ret_err, r, "list snapshot ids");
	}
	qsort(ids, n, sizeof(*ids), cmp_u64);
	fd = openat(s->snapshots_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		r = negative_errno();
		(void)safe_close(fd);
		pthread_rwlock_unlock(&s->dirs_lock);
		return strata_error_set_errno(ret_err, r, "read \"%s\"", s->snapshots_dir);
	}
	for (struct dirent *de; (de = readdir(d));) {
		uint64_t id;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		id = parse_id(de->d_name);
		if (id && bsearch(&id, ids, n, sizeof(*ids), cmp_u64))
			continue;
		r = path_rm_rf_at(s->snapshots_fd, de->d_name);
		if (r < 0)
			log_debug_errno(r, "cleanup: remove \"%s/%s\"", s->snapshots_dir,
			                de->d_name);
		else
			log_debug("cleanup: removed \"%s/%s\"", s->snapshots_dir, de->d_name);
	}
	closedir(d);
	pthread_rwlock_unlock(&s->dirs_lock);
	/* Cleanup frees space now: removed snapshots waiting in the trash
	 * too. */
	if (s->trash_fd >= 0)
		trash_sweep(s);
	return 0;
}
