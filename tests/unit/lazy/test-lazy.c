/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy layers end to end, without containerd: a real HTTP registry
 * (estargz-registry.py serve) serving eStargz layers by Range, a store whose
 * Prepare with containerd's remote-snapshot labels mounts them through FUSE,
 * reads through the FUSE mount and through an overlay on top of it, chunk
 * verification failures, fallbacks, restart and removal, cache eviction.
 *
 * Needs root (FUSE and overlay mounts). Everything it mounts is unmounted in
 * teardown, even when a case fails.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <cmocka.h>
#include <jansson.h>

#include "common.h"
#include "lazy-internal.h"
#include "snapshotter.h"

static char tmpdir[] = "/tmp/strata-lazy-XXXXXX";
static char root[256], cache_dir[300];
static json_t *summary;
static pid_t registry_pid;
static int port;
static struct strata_meta *meta;
static struct snap_store *store;

static int start_registry(void)
{
	_cleanup_free_ char *script = NULL;
	int pfd[2];
	FILE *f;
	char line[8192];

	if (asprintf(&script, "%s/estargz-registry.py", SRCDIR) < 0 || pipe(pfd) < 0)
		return -1;
	registry_pid = fork();
	if (registry_pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execlp("python3", "python3", script, "serve", NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof(line), f))
		return -1;
	port = atoi(line);
	if (!fgets(line, sizeof(line), f))
		return -1;
	json_decref(summary);
	summary = json_loads(line, 0, NULL);
	fclose(f);
	return summary && port > 0 ? 0 : -1;
}

static int open_store(bool background)
{
	struct snap_options o = {
	        .userxattr = 0,
	        .lazy_no_background = !background,
	        .lazy_bg_delay_ms = 0,
	};
	return snap_store_open(root, meta, &o, &store, NULL);
}

static int setup(void **state)
{
	_cleanup_free_ char *md = NULL;

	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(root, sizeof(root), "%s/root", tmpdir);
	snprintf(cache_dir, sizeof(cache_dir), "%s/cache/chunks", root);
	md = path_join(root, "meta");
	if (start_registry() < 0 || path_mkdir_p(md, 0700) < 0)
		return -1;
	if (strata_meta_open(md, NULL, &meta, NULL) < 0)
		return -1;
	return open_store(false);
}

static void unmount_all_under(const char *dir)
{
	/* deepest first: overlays above FUSE mounts */
	for (int pass = 0; pass < 4; pass++) {
		FILE *f = fopen("/proc/self/mountinfo", "r");
		char line[4096], mp[2048];
		if (!f)
			return;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "%*s %*s %*s %*s %2047s", mp) == 1 &&
			    strncmp(mp, dir, strlen(dir)) == 0)
				(void)umount2(mp, MNT_DETACH);
		fclose(f);
	}
}

static int teardown(void **state)
{
	store = snap_store_close(store);
	strata_meta_close(meta);
	if (registry_pid > 0) {
		kill(registry_pid, SIGTERM);
		waitpid(registry_pid, NULL, 0);
	}
	unmount_all_under(tmpdir);
	json_decref(summary);
	(void)path_rm_rf_at(AT_FDCWD, tmpdir);
	return 0;
}

static const char *sum(const char *layer, const char *key)
{
	return json_string_value(json_object_get(json_object_get(summary, layer), key));
}

/* Prepare as containerd does for a layer of image <layer>/img:v1. */
static int prepare(const char *layer, const char *repo, const char *chain, const char *parent,
                   bool with_toc, struct snap_mount **mounts, size_t *n)
{
	char ref[128], key[160];
	struct snap_label labels[4];
	size_t nl = 0;

	snprintf(ref, sizeof(ref), "127.0.0.1:%d/%s/img:v1", port, repo);
	snprintf(key, sizeof(key), "default/1/extract-%s %s", repo, chain);
	labels[nl++] = (struct snap_label){(char *)"containerd.io/snapshot.ref", (char *)chain};
	labels[nl++] =
	        (struct snap_label){(char *)"containerd.io/snapshot/remote/stargz.reference", ref};
	labels[nl++] = (struct snap_label){(char *)"containerd.io/snapshot/remote/stargz.digest",
	                                   (char *)sum(layer, "digest")};
	if (with_toc && sum(layer, "toc_digest"))
		labels[nl++] =
		        (struct snap_label){(char *)"containerd.io/snapshot/stargz/toc.digest",
		                            (char *)sum(layer, "toc_digest")};
	return snap_prepare(store, key, parent, labels, nl, mounts, n, NULL);
}

static char *fs_path(const char *chain, const char *rel)
{
	uint64_t id;
	char *p;

	assert_int_equal(snap_get_id(store, chain, &id, NULL), 0);
	assert_true(asprintf(&p, "%s/snapshots/%" PRIu64 "/fs/%s", root, id, rel) > 0);
	return p;
}

static uint64_t registry_bytes(void)
{
	char cmd[128], buf[256];
	FILE *f;
	json_t *j;
	uint64_t n;

	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/stats", port);
	f = popen(cmd, "r");
	assert_non_null(f);
	buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
	pclose(f);
	j = json_loads(buf, 0, NULL);
	assert_non_null(j);
	n = (uint64_t)json_integer_value(json_object_get(j, "bytes"));
	json_decref(j);
	return n;
}

static void read_file(const char *path, char **ret, size_t *ret_len)
{
	assert_int_equal(path_read_file_at(AT_FDCWD, path, 16 << 20, ret, ret_len), 0);
}

static uint64_t registry_stat(const char *key)
{
	char cmd[128], buf[256];
	FILE *f;
	json_t *j;
	uint64_t n;

	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/stats", port);
	f = popen(cmd, "r");
	assert_non_null(f);
	buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
	pclose(f);
	j = json_loads(buf, 0, NULL);
	assert_non_null(j);
	n = (uint64_t)json_integer_value(json_object_get(j, key));
	json_decref(j);
	return n;
}

static uint64_t registry_requests(void)
{
	return registry_stat("requests");
}

/* Blob Range requests from byte `from` on answer 503 (-1: none do). */
static void registry_fail_from(int64_t from)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd),
	         "curl -sf -o /dev/null 'http://127.0.0.1:%d/fail?from=%" PRId64 "'", port, from);
	assert_int_equal(system(cmd), 0);
}

/* --- read-ahead (lazy-fetch.c), on layer "ra" ---------------------------- */

static bool ra_cached(const char *name)
{
	json_t *chunks = json_object_get(json_object_get(summary, "ra"), "chunks");
	struct strata_digest d;

	assert_int_equal(
	        strata_digest_parse(json_string_value(json_object_get(chunks, name)), &d, NULL), 0);
	return lazy_cache_has(store->lazy->cache, &d);
}

static bool ra_big_cached(int k)
{
	json_t *chunks = json_object_get(json_object_get(summary, "ra"), "big_chunks");
	struct strata_digest d;

	assert_int_equal(
	        strata_digest_parse(json_string_value(json_array_get(chunks, (size_t)k)), &d, NULL),
	        0);
	return lazy_cache_has(store->lazy->cache, &d);
}

/* The mounted "ra" layer, with an empty chunk cache. */
static struct lazy_layer *ra_layer(void)
{
	struct lazy_layer *l;
	uint64_t id;
	int r = prepare("ra", "ra", "chain-ra", "", true, NULL, NULL);

	assert_true(r == -EEXIST);
	assert_int_equal(snap_get_id(store, "chain-ra", &id, NULL), 0);
	l = lazy_manager_find(store->lazy, id);
	assert_non_null(l);
	assert_non_null(l->fetch);
	lazy_fetch_wait_idle(l->fetch);
	assert_int_equal(lazy_cache_evict(store->lazy->cache, 0), 0);
	return l;
}

static uint32_t ra_entry(struct lazy_layer *l, const char *dir, const char *name)
{
	int64_t d = content_estargz_lookup(l->toc, 0, dir, strlen(dir)), e;

	assert_true(d >= 0);
	e = content_estargz_lookup(l->toc, (uint32_t)d, name, strlen(name));
	assert_true(e >= 0);
	return (uint32_t)e;
}

static void check_chunk(const uint8_t *buf, size_t len, int k)
{
	json_t *chunks = json_object_get(json_object_get(summary, "ra"), "big_chunks");
	struct strata_digest got, want;

	assert_int_equal(strata_sha256(buf, len, &got), 0);
	assert_int_equal(strata_digest_parse(json_string_value(json_array_get(chunks, (size_t)k)),
	                                     &want, NULL),
	                 0);
	assert_true(strata_digest_equal(&got, &want));
}

/* A small file's miss is answered with its own member, while the following
 * small files of its directory (not the next directory's) are fetched in
 * the background; a later read of one of them makes no request. */
static void test_read_ahead_neighbours(void **state)
{
	struct lazy_layer *l = ra_layer();
	_cleanup_free_ char *p = NULL, *data = NULL;
	uint64_t before;
	size_t len;
	char name[16];

	assert_false(ra_cached("lib/f00"));
	p = fs_path("chain-ra", "lib/f00");
	read_file(p, &data, &len);
	assert_int_equal(len, 3000);
	lazy_fetch_wait_idle(l->fetch);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "lib/f%02d", i);
		assert_true(ra_cached(name));
	}
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "other/g%02d", i);
		assert_false(ra_cached(name));
	}
	before = registry_requests();
	free(p);
	free(data);
	data = NULL;
	p = fs_path("chain-ra", "lib/f13");
	read_file(p, &data, &len);
	assert_int_equal(len, 3000);
	assert_true(ra_cached("lib/f13"));
	/* one request: /stats itself */
	assert_int_equal(registry_requests(), before + 1);
}

/* Reading an executable's first chunk queues the libraries it needs
 * (DT_NEEDED, through a symlink); a missing one is skipped. */
static void test_read_ahead_libraries(void **state)
{
	struct lazy_layer *l = ra_layer();
	_cleanup_free_ char *p = NULL, *data = NULL;
	size_t len;

	assert_false(ra_cached("lib/libfoo.so.1.0"));
	p = fs_path("chain-ra", "bin/prog");
	read_file(p, &data, &len);
	assert_true(len > 64);
	assert_memory_equal(data,
	                    "\x7f"
	                    "ELF",
	                    4);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(ra_cached("lib/libfoo.so.1.0"));
	/* not a neighbour read-ahead: lib/ is another directory */
	assert_false(ra_cached("lib/f19"));
}

/* A lookup of an executable fetches its first chunk, and with it the
 * libraries it needs (runc looks the command up when it creates the
 * container, before start execs it); a lookup of another file does not. */
static void test_exec_lookup(void **state)
{
	struct lazy_layer *l = ra_layer();
	_cleanup_free_ char *tool = fs_path("chain-ra", "sbin/tool");
	_cleanup_free_ char *notes = fs_path("chain-ra", "sbin/notes");
	struct stat sb;

	assert_false(ra_cached("sbin/tool"));
	assert_false(ra_cached("lib/libqux.so.1"));
	assert_int_equal(stat(notes, &sb), 0);
	assert_int_equal(stat(tool, &sb), 0);
	assert_true(sb.st_mode & 0111);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(ra_cached("sbin/tool"));
	assert_true(ra_cached("lib/libqux.so.1"));
	assert_false(ra_cached("sbin/notes"));
}

/* An executable whose library list lies in its second chunk (64 KiB
 * chunks here; python3.11's is 5.5 MB into the file): found once both
 * chunks have arrived. */
static void test_read_ahead_libraries_second_chunk(void **state)
{
	struct lazy_layer *l = ra_layer();
	uint32_t prog = ra_entry(l, "bin", "prog2");
	uint8_t buf[4096];

	assert_true(l->toc->entries[prog].n_chunks > 1);
	assert_false(ra_cached("lib/libbar.so.1"));
	assert_int_equal(lazy_fetch_read(l, prog, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_memory_equal(buf,
	                    "\x7f"
	                    "ELF",
	                    4);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(ra_cached("lib/libbar.so.1"));
}

/* Every chunk of a start-up layer's file is cached (or, want = false, none
 * is). */
static bool startup_cached(const char *name)
{
	json_t *chunks = json_object_get(
	        json_object_get(json_object_get(summary, "startup"), "chunks"), name);
	bool all = true;

	assert_true(json_array_size(chunks) > 0);
	for (size_t i = 0; i < json_array_size(chunks); i++) {
		struct strata_digest d;
		assert_int_equal(
		        strata_digest_parse(json_string_value(json_array_get(chunks, i)), &d, NULL),
		        0);
		all &= lazy_cache_has(store->lazy->cache, &d);
	}
	return all;
}

/* At mount, a layer without a prefetch landmark fetches the files nearly
 * every container start reads (passwd, libc), and nothing else. */
static void test_startup_files(void **state)
{
	struct lazy_layer *l;
	uint64_t id;

	assert_int_equal(lazy_cache_evict(store->lazy->cache, 0), 0);
	assert_int_equal(prepare("startup", "startup", "chain-startup", "", true, NULL, NULL),
	                 -EEXIST);
	assert_int_equal(snap_get_id(store, "chain-startup", &id, NULL), 0);
	l = lazy_manager_find(store->lazy, id);
	assert_non_null(l);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(startup_cached("etc/passwd"));
	assert_true(startup_cached("usr/lib/x86_64-linux-gnu/libc.so.6"));
	assert_false(startup_cached("etc/motd"));
	/* through the /etc/localtime symlink */
	assert_true(startup_cached("usr/share/zoneinfo/Etc/UTC"));
	assert_int_equal(snap_remove(store, "chain-startup", NULL), 0);
}

/* Opening a .pyc whose recorded source mtime differs from the source's
 * fetches the source along (python reads it next); a valid one does not.
 * stale's .pyc is read from the registry (the read path looks), fresh's is
 * already cached by then as its neighbour (the open looks). */
static void test_stale_pyc_source(void **state)
{
	struct lazy_layer *l;
	_cleanup_free_ char *p = NULL, *q = NULL, *data = NULL, *data2 = NULL;
	size_t len;
	uint64_t id;

	assert_int_equal(lazy_cache_evict(store->lazy->cache, 0), 0);
	assert_int_equal(prepare("startup", "startup", "chain-pyc", "", true, NULL, NULL), -EEXIST);
	assert_int_equal(snap_get_id(store, "chain-pyc", &id, NULL), 0);
	l = lazy_manager_find(store->lazy, id);
	assert_non_null(l);
	lazy_fetch_wait_idle(l->fetch);
	assert_false(startup_cached("usr/lib/python3/stale.py"));
	assert_false(startup_cached("usr/lib/python3/__pycache__/fresh.cpython-311.pyc"));
	p = fs_path("chain-pyc", "usr/lib/python3/__pycache__/stale.cpython-311.pyc");
	read_file(p, &data, &len);
	assert_int_equal(len, 516);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(startup_cached("usr/lib/python3/stale.py"));
	assert_true(startup_cached("usr/lib/python3/__pycache__/fresh.cpython-311.pyc"));
	q = fs_path("chain-pyc", "usr/lib/python3/__pycache__/fresh.cpython-311.pyc");
	read_file(q, &data2, &len);
	assert_int_equal(len, 516);
	lazy_fetch_wait_idle(l->fetch);
	assert_false(startup_cached("usr/lib/python3/fresh.py"));
	assert_int_equal(snap_remove(store, "chain-pyc", NULL), 0);
}

/* A read of chunk 0 of data/big reads chunks 1-4 ahead; chunk 2 does not
 * verify: the read of chunk 0 is served, chunks 1, 3, 4 are cached, chunk 2
 * is not, and only its reads fail. */
static void test_read_ahead_corrupt_chunk(void **state)
{
	struct lazy_layer *l = ra_layer();
	uint32_t big = ra_entry(l, "data", "big");
	_cleanup_free_ uint8_t *buf = malloc(1 << 16);
	struct snap_lazy_stats st;

	assert_non_null(buf);
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, 0), 1 << 16);
	check_chunk(buf, 1 << 16, 0);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(ra_big_cached(1));
	assert_false(ra_big_cached(2));
	assert_true(ra_big_cached(3));
	assert_true(ra_big_cached(4));
	assert_false(ra_big_cached(5));
	assert_int_equal(lazy_fetch_read(l, big, buf, 100, (2 << 16) + 10), -EIO);
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, 3 << 16), 1 << 16);
	check_chunk(buf, 1 << 16, 3);
	/* a read spanning chunks 1 and 2 fails whole: never a short read */
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, (1 << 16) + 100), -EIO);
	assert_int_equal(snap_lazy_stats(store, "chain-ra", &st), 0);
	assert_true(st.verify_failures >= 2);
}

/* The registry goes down for the rest of the blob while the read-ahead of
 * chunks 1-4 runs: the read that triggered it is served, the read-ahead
 * stops without caching anything it could not verify, a read of a chunk
 * that did not come fails, and once the registry is back it is fetched. */
static void test_read_ahead_registry_down(void **state)
{
	struct lazy_layer *l = ra_layer();
	uint32_t big = ra_entry(l, "data", "big");
	const struct content_estargz_entry *e = &l->toc->entries[big];
	_cleanup_free_ uint8_t *buf = malloc(1 << 16);

	assert_non_null(buf);
	registry_fail_from((int64_t)l->toc->chunks[e->first_chunk + 3].offset);
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, 0), 1 << 16);
	check_chunk(buf, 1 << 16, 0);
	lazy_fetch_wait_idle(l->fetch);
	assert_true(ra_big_cached(1));
	assert_false(ra_big_cached(3));
	assert_false(ra_big_cached(4));
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, 4 << 16), -EIO);
	assert_false(atomic_load(&l->healthy));
	/* cached chunks are still served */
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, 1 << 16), 1 << 16);
	check_chunk(buf, 1 << 16, 1);
	/* the failed read's read-ahead fails too: let it end first, or its
	 * late "unhealthy" could land after the good read below */
	lazy_fetch_wait_idle(l->fetch);
	registry_fail_from(-1);
	assert_int_equal(lazy_fetch_read(l, big, buf, 1 << 16, 4 << 16), 1 << 16);
	check_chunk(buf, 1 << 16, 4);
	assert_true(atomic_load(&l->healthy));
	lazy_fetch_wait_idle(l->fetch);
	assert_int_equal(snap_remove(store, "chain-ra", NULL), 0);
}

static void test_remote_prepare_and_read(void **state)
{
	_cleanup_free_ char *hello = NULL, *big = NULL, *p = NULL, *data = NULL;
	struct snap_lazy_stats st;
	struct snap_info info = {0};
	struct strata_digest d, want;
	struct stat sb, sb2;
	uint64_t before = registry_bytes();
	char xv[16], target[64];
	size_t len;

	assert_int_equal(prepare("valid", "valid", "chain-valid", "", true, NULL, NULL), -EEXIST);
	assert_int_equal(snap_stat(store, "chain-valid", &info, NULL), 0);
	assert_int_equal(info.kind, SNAP_KIND_COMMITTED);
	assert_string_equal(snap_info_label(&info, "containerd.io/snapshot/remote"), "strata");
	assert_string_equal(snap_info_label(&info, "containerd.io/snapshot.ref"), "chain-valid");
	snap_info_done(&info);
	/* a second Prepare of the same chain finds it */
	assert_int_equal(prepare("valid", "valid", "chain-valid", "", true, NULL, NULL), -EEXIST);

	hello = fs_path("chain-valid", "bin/hello");
	read_file(hello, &data, &len);
	assert_int_equal(len, 18);
	assert_memory_equal(data, "hello, lazy world\n", 18);
	/* only the tail (footer+TOC) and a few chunks so far */
	assert_true(registry_bytes() - before <
	            (uint64_t)json_integer_value(
	                    json_object_get(json_object_get(summary, "valid"), "size")) /
	                    2);

	big = fs_path("chain-valid", "bin/big");
	free(data);
	data = NULL;
	read_file(big, &data, &len);
	assert_int_equal(len, 300 << 10);
	assert_int_equal(strata_sha256(data, len, &d), 0);
	assert_int_equal(
	        strata_digest_parse(json_string_value(json_object_get(summary, "big_digest")),
	                            &want, NULL),
	        0);
	assert_true(strata_digest_equal(&d, &want));

	/* attributes from the TOC */
	free(p);
	p = fs_path("chain-valid", "bin/link");
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(stat(hello, &sb2), 0);
	assert_int_equal(sb.st_ino, sb2.st_ino);
	assert_int_equal(sb2.st_nlink, 2);
	assert_int_equal(sb2.st_mode, S_IFREG | 0755);
	assert_int_equal(sb2.st_mtime, 1704164645);
	free(p);
	p = fs_path("chain-valid", "bin/sym");
	assert_int_equal(readlink(p, target, sizeof(target)), 5);
	free(p);
	p = fs_path("chain-valid", "etc/conf");
	assert_int_equal(lgetxattr(p, "user.note", xv, sizeof(xv)), 4);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_uid, 1000);
	free(p);
	p = fs_path("chain-valid", "etc/gone");
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISCHR(sb.st_mode));
	assert_int_equal(sb.st_rdev, makedev(0, 0));
	free(p);
	p = fs_path("chain-valid", "opq");
	assert_int_equal(lgetxattr(p, "trusted.overlay.opaque", xv, sizeof(xv)), 1);
	free(p);
	p = fs_path("chain-valid", "nothere");
	assert_int_equal(lstat(p, &sb), -1);
	assert_int_equal(errno, ENOENT);

	assert_int_equal(snap_lazy_stats(store, "chain-valid", &st), 0);
	assert_true(st.healthy);
	assert_true(st.bytes_fetched > 0);
	assert_int_equal(st.verify_failures, 0);
	assert_true(lazy_cache_size(store->lazy->cache) >= (300 << 10));

	/* a re-read is served by the cache (page cache dropped via a new
	 * open is not guaranteed, so read through the layer directly) */
	uint64_t b2 = registry_bytes();
	struct lazy_layer *l = lazy_manager_find(store->lazy, 0);
	(void)l;
	uint64_t id;
	assert_int_equal(snap_get_id(store, "chain-valid", &id, NULL), 0);
	l = lazy_manager_find(store->lazy, id);
	assert_non_null(l);
	char buf[4096];
	assert_int_equal(lazy_fetch_read(l, content_estargz_resolve(l->toc, 2), buf, 10, 0) >= 0,
	                 1);
	assert_int_equal(registry_bytes(), b2);
}

static void test_overlay_on_top(void **state)
{
	struct snap_mount *m = NULL;
	size_t n = 0;
	char target[300];
	_cleanup_free_ char *data = NULL;
	size_t len;
	struct stat sb;

	assert_int_equal(snap_prepare(store, "default/2/ctr", "chain-valid", NULL, 0, &m, &n, NULL),
	                 0);
	snprintf(target, sizeof(target), "%s/ovl", tmpdir);
	assert_int_equal(mkdir(target, 0755), 0);
	assert_int_equal(snap_mount_apply(m, n, target, NULL), 0);
	snap_mounts_free(m, n);

	char p[400];
	snprintf(p, sizeof(p), "%s/bin/hello", target);
	read_file(p, &data, &len);
	assert_int_equal(len, 18);
	/* the whiteout in the lowest layer is hidden by overlayfs */
	snprintf(p, sizeof(p), "%s/etc/gone", target);
	assert_int_equal(lstat(p, &sb), -1);
	snprintf(p, sizeof(p), "%s/deep/a/b/c/file", target);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_size, 5000);
	/* writes go to the upper dir */
	snprintf(p, sizeof(p), "%s/bin/hello", target);
	assert_int_equal(path_write_file_atomic_at(AT_FDCWD, p, "x", 1, 0644), 0);
	assert_int_equal(umount2(target, 0), 0);
	assert_int_equal(snap_remove(store, "default/2/ctr", NULL), 0);
}

static void test_corrupt_chunk(void **state)
{
	_cleanup_free_ char *big = NULL;
	struct snap_lazy_stats st;
	uint8_t buf[65536];
	int fd;

	assert_int_equal(prepare("corrupt", "corrupt", "chain-corrupt", "", true, NULL, NULL),
	                 -EEXIST);
	big = fs_path("chain-corrupt", "bin/big");
	fd = open(big, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* chunk 0 verifies (and is cached by the valid layer already) */
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	/* chunk 1's chunkDigest does not match: EIO, twice (nothing cached) */
	assert_int_equal(pread(fd, buf, 100, 65536 + 10), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(pread(fd, buf, 100, 65536 + 10), -1);
	assert_int_equal(errno, EIO);
	close(fd);
	assert_int_equal(snap_lazy_stats(store, "chain-corrupt", &st), 0);
	assert_true(st.verify_failures >= 2);
	assert_int_equal(snap_remove(store, "chain-corrupt", NULL), 0);
}

/* The first Prepare of a multi-layer image fetches the other layer's TOC
 * along: the second Prepare reads no footer or TOC, and its layer reads
 * right. */
static void test_sibling_toc_ahead(void **state)
{
	_cleanup_free_ char *hello = NULL, *data = NULL;
	uint64_t before;
	size_t len;

	assert_int_equal(prepare("ra", "multi", "chain-m1", "", true, NULL, NULL), -EEXIST);
	before = registry_stat("tails");
	assert_int_equal(prepare("valid", "multi", "chain-m2", "chain-m1", true, NULL, NULL),
	                 -EEXIST);
	/* no footer/TOC read (the layer's landmark prefetch may run) */
	assert_int_equal(registry_stat("tails"), before);
	hello = fs_path("chain-m2", "bin/hello");
	read_file(hello, &data, &len);
	assert_int_equal(len, 18);
	assert_memory_equal(data, "hello, lazy world\n", 18);
	assert_int_equal(snap_remove(store, "chain-m2", NULL), 0);
	assert_int_equal(snap_remove(store, "chain-m1", NULL), 0);
}

static void test_fallbacks(void **state)
{
	struct snap_mount *m = NULL;
	size_t n = 0;
	struct snap_info info = {0};

	/* not eStargz: a normal active snapshot */
	assert_int_equal(prepare("plain", "plain", "chain-plain", "", true, &m, &n), 0);
	assert_true(n == 1);
	snap_mounts_free(m, n);
	assert_int_equal(snap_stat(store, "chain-plain", &info, NULL), -ENOENT);
	/* a registry that ignores Range */
	assert_int_equal(
	        prepare("valid", "norangevalid", "chain-norange", "chain-valid", true, &m, &n), 0);
	snap_mounts_free(m, n);
	/* a TOC that leaves the layer */
	assert_int_equal(prepare("hostile", "hostile", "chain-hostile", "", true, &m, &n), 0);
	snap_mounts_free(m, n);
	/* unknown repository */
	assert_int_equal(prepare("valid", "nosuch", "chain-nosuch", "", true, &m, &n), 0);
	snap_mounts_free(m, n);
	assert_int_equal(snap_remove(store, "default/1/extract-plain chain-plain", NULL), 0);
	assert_int_equal(snap_remove(store, "default/1/extract-norangevalid chain-norange", NULL),
	                 0);
	assert_int_equal(snap_remove(store, "default/1/extract-hostile chain-hostile", NULL), 0);
	assert_int_equal(snap_remove(store, "default/1/extract-nosuch chain-nosuch", NULL), 0);
}

static void test_restart(void **state)
{
	_cleanup_free_ char *hello = NULL, *data = NULL, *deep = NULL, *fs = NULL;
	struct stat a, b;
	size_t len;

	hello = fs_path("chain-valid", "bin/hello");
	fs = fs_path("chain-valid", "");
	assert_int_equal(stat(hello, &a), 0);
	store = snap_store_close(store);
	/* unmounted on close */
	assert_int_equal(stat(hello, &b), -1);
	assert_int_equal(stat(fs, &b), 0);
	assert_int_not_equal(b.st_dev, a.st_dev);
	assert_int_equal(open_store(true), 0);
	assert_int_equal(stat(hello, &b), 0);
	assert_int_equal(b.st_ino, a.st_ino); /* same inode numbers */
	read_file(hello, &data, &len);
	assert_int_equal(len, 18);
	deep = fs_path("chain-valid", "deep/a/b/c/file");
	free(data);
	data = NULL;
	read_file(deep, &data, &len);
	assert_int_equal(len, 5000);
	/* Mounts of a child works after the restart */
	struct snap_mount *m = NULL;
	size_t n = 0;
	assert_int_equal(snap_view(store, "default/3/view", "chain-valid", NULL, 0, &m, &n, NULL),
	                 0);
	snap_mounts_free(m, n);
	assert_int_equal(snap_remove(store, "default/3/view", NULL), 0);
}

/* toc.json is not synced at Prepare: a restart that finds it missing or
 * damaged fetches the TOC again (checked against the record's toc_digest),
 * stores it again, and the layer mounts and reads as before. */
static void test_restart_lost_toc(void **state)
{
	_cleanup_free_ char *hello = NULL, *data = NULL, *tocp = NULL, *json = NULL;
	struct strata_digest d, want;
	struct stat a, b;
	uint64_t id;
	size_t len;
	char p[300];

	assert_int_equal(snap_get_id(store, "chain-valid", &id, NULL), 0);
	snprintf(p, sizeof(p), "%s/snapshots/%" PRIu64 "/toc.json", root, id);
	tocp = strdup(p);
	hello = fs_path("chain-valid", "bin/hello");
	assert_int_equal(strata_digest_parse(sum("valid", "toc_digest"), &want, NULL), 0);
	for (int round = 0; round < 3; round++) {
		store = snap_store_close(store);
		if (round == 0) {
			assert_int_equal(unlink(tocp), 0);
		} else if (round == 1) {
			/* a crash that kept the name but not all of the data */
			assert_int_equal(truncate(tocp, 100), 0);
		} else {
			_cleanup_close_ int fd = open(tocp, O_WRONLY);
			assert_true(fd >= 0);
			assert_int_equal(pwrite(fd, "X", 1, 10), 1);
		}
		assert_int_equal(open_store(false), 0);
		/* the registry's TOC, stored again */
		free(json);
		json = NULL;
		read_file(tocp, &json, &len);
		assert_int_equal(strata_sha256(json, len, &d), 0);
		assert_true(strata_digest_equal(&d, &want));
		free(data);
		data = NULL;
		read_file(hello, &data, &len);
		assert_int_equal(len, 18);
		assert_memory_equal(data, "hello, lazy world\n", 18);
	}
	/* an intact toc.json is used as it is: not written again */
	assert_int_equal(stat(tocp, &a), 0);
	store = snap_store_close(store);
	assert_int_equal(open_store(false), 0);
	assert_int_equal(stat(tocp, &b), 0);
	assert_int_equal(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
	assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
	assert_non_null(lazy_manager_find(store->lazy, id));
}

/* A lost toc.json with the registry down: the layer is not mounted and
 * Mounts of a child answers Unavailable, as for any unmountable layer. */
static void test_restart_lost_toc_registry_down(void **state)
{
	_cleanup_free_ char *json = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0, len;
	uint64_t id;
	char p[300];

	assert_int_equal(snap_get_id(store, "chain-valid", &id, NULL), 0);
	snprintf(p, sizeof(p), "%s/snapshots/%" PRIu64 "/toc.json", root, id);
	kill(registry_pid, SIGTERM);
	waitpid(registry_pid, NULL, 0);
	registry_pid = 0;
	store = snap_store_close(store);
	read_file(p, &json, &len);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(open_store(false), 0);
	assert_null(lazy_manager_find(store->lazy, id));
	assert_int_equal(snap_view(store, "default/5/view", "chain-valid", NULL, 0, &m, &n, NULL),
	                 -EAGAIN);
	/* back as it was for the tests that follow (the registry comes back
	 * on another port, which the record does not name) */
	store = snap_store_close(store);
	assert_int_equal(path_write_file_atomic_at(AT_FDCWD, p, json, len, 0600), 0);
	assert_int_equal(start_registry(), 0);
	assert_int_equal(open_store(false), 0);
	assert_non_null(lazy_manager_find(store->lazy, id));
}

/* Layer "bigtoc" (12 MiB): a TOC member bigger than 64 KiB but within
 * blob/128 comes with the footer in one Range request of blob/128 bytes,
 * all counted in *ret_fetched. */
static void test_toc_one_request(void **state)
{
	_cleanup_(content_ref_freep) struct content_ref *ref = NULL;
	struct content_estargz_toc *toc = NULL;
	struct strata_digest d, tocd;
	uint64_t size = (uint64_t)json_integer_value(
	                 json_object_get(json_object_get(summary, "bigtoc"), "size")),
	         fetched = 0, req, bytes;
	char r[128];

	snprintf(r, sizeof(r), "127.0.0.1:%d/bigtoc/img:v1", port);
	assert_int_equal(content_ref_parse(r, &ref, NULL), 0);
	assert_int_equal(strata_digest_parse(sum("bigtoc", "digest"), &d, NULL), 0);
	assert_int_equal(strata_digest_parse(sum("bigtoc", "toc_digest"), &tocd, NULL), 0);
	for (int i = 0; i < 2; i++) { /* the first may also say hello to the registry */
		req = registry_requests();
		bytes = registry_bytes();
		fetched = 0;
		assert_int_equal(content_estargz_open_remote(snap_lazy_registry(store), ref, &d,
		                                             size, &tocd, &toc, NULL, NULL,
		                                             &fetched, NULL),
		                 0);
		/* one Range request, besides two /stats (registry_bytes and this) */
		req = registry_requests() - req;
		if (i == 1)
			assert_int_equal(req, 3);
		/* the /stats answers themselves are not counted in bytes */
		assert_int_equal(registry_bytes() - bytes, fetched);
		assert_int_equal(fetched, size / 128);
		/* a TOC a fixed 64 KiB tail would have needed a second request for */
		assert_true(size - toc->toc_offset > (64u << 10));
		assert_true(toc->n_entries > 1);
		toc = content_estargz_toc_free(toc);
	}
}

static void test_unhealthy_after_restart(void **state)
{
	_cleanup_free_ char *hello = NULL;
	struct snap_mount *m = NULL;
	size_t n = 0;

	/* registry gone: the restart still mounts, Mounts says Unavailable */
	kill(registry_pid, SIGTERM);
	waitpid(registry_pid, NULL, 0);
	registry_pid = 0;
	store = snap_store_close(store);
	assert_int_equal(open_store(false), 0);
	hello = fs_path("chain-valid", "bin/hello");
	struct stat sb;
	assert_int_equal(stat(hello, &sb), 0);
	assert_int_equal(snap_view(store, "default/4/view", "chain-valid", NULL, 0, &m, &n, NULL),
	                 -EAGAIN);
	/* cached data is still served by the layer itself */
	_cleanup_free_ char *data = NULL;
	size_t len;
	read_file(hello, &data, &len);
	assert_int_equal(len, 18);
	/* registry back: healthy again */
	assert_int_equal(start_registry(), 0);
}

static void test_remove_unmounts(void **state)
{
	_cleanup_free_ char *fs = NULL;
	char p[300];
	uint64_t id;
	struct stat sb;

	/* the registry restarted on a new port: the record keeps the old ref,
	 * so only removal is tested here */
	assert_int_equal(snap_get_id(store, "chain-valid", &id, NULL), 0);
	assert_int_equal(snap_remove(store, "chain-valid", NULL), 0);
	snprintf(p, sizeof(p), "%s/snapshots/%" PRIu64, root, id);
	assert_int_equal(stat(p, &sb), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_cache_eviction(void **state)
{
	struct lazy_cache *c = NULL;
	char dir[400];
	uint8_t buf[30000];
	struct strata_digest d[5];

	snprintf(dir, sizeof(dir), "%s/evict", tmpdir);
	assert_int_equal(lazy_cache_open(dir, 100000, &c), 0);
	for (int i = 0; i < 5; i++) {
		memset(buf, i, sizeof(buf));
		assert_int_equal(strata_sha256(buf, sizeof(buf), &d[i]), 0);
		assert_int_equal(lazy_cache_put(c, &d[i], buf, sizeof(buf)), 0);
		/* distinct mtimes for LRU order */
		lazy_cache_flush(c);
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_true(lazy_cache_size(c) <= 100000);
	assert_false(lazy_cache_has(c, &d[0]));
	assert_true(lazy_cache_has(c, &d[4]));
	assert_int_equal(lazy_cache_read(c, &d[4], sizeof(buf), buf, 10, 5), 10);
	assert_int_equal(buf[0], 4);
	/* wrong size: treated as damaged and dropped */
	assert_int_equal(lazy_cache_read(c, &d[4], 12345, buf, 10, 0), -ENOENT);
	assert_false(lazy_cache_has(c, &d[4]));
	assert_int_equal(lazy_cache_evict(c, 0), 0);
	assert_int_equal(lazy_cache_size(c), 0);
	lazy_cache_free(c);
}

/* Write-behind: a small chunk is served from memory at once and is in its
 * file after a flush; a large one is in its file when put returns;
 * closing the cache writes what waits. */
static void test_cache_write_behind(void **state)
{
	struct lazy_cache *c = NULL;
	char dir[400], path[600], hex[STRATA_SHA256_HEX_LEN + 1];
	static uint8_t small[1000], big[512 << 10];
	uint8_t out[16];
	struct strata_digest ds, db, dl[3];
	struct stat sb;

	snprintf(dir, sizeof(dir), "%s/behind", tmpdir);
	assert_int_equal(lazy_cache_open(dir, 1ull << 30, &c), 0);
	memset(small, 's', sizeof(small));
	memset(big, 'b', sizeof(big));
	assert_int_equal(strata_sha256(small, sizeof(small), &ds), 0);
	assert_int_equal(strata_sha256(big, sizeof(big), &db), 0);

	assert_int_equal(lazy_cache_put(c, &db, big, sizeof(big)), 0);
	strata_digest_hex(&db, hex);
	snprintf(path, sizeof(path), "%s/%.2s/%s", dir, hex, hex);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, sizeof(big));

	assert_int_equal(lazy_cache_put(c, &ds, small, sizeof(small)), 0);
	assert_true(lazy_cache_has(c, &ds));
	assert_int_equal(lazy_cache_read(c, &ds, sizeof(small), out, sizeof(out), 990), 10);
	assert_memory_equal(out, small, 10);
	/* the wrong size is a miss, as for a file */
	assert_int_equal(lazy_cache_read(c, &ds, 999, out, sizeof(out), 0), -ENOENT);
	lazy_cache_flush(c);
	strata_digest_hex(&ds, hex);
	snprintf(path, sizeof(path), "%s/%.2s/%s", dir, hex, hex);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, sizeof(small));

	for (int i = 0; i < 3; i++) {
		small[0] = (uint8_t)i;
		assert_int_equal(strata_sha256(small, sizeof(small), &dl[i]), 0);
		assert_int_equal(lazy_cache_put(c, &dl[i], small, sizeof(small)), 0);
	}
	lazy_cache_free(c);
	for (int i = 0; i < 3; i++) {
		strata_digest_hex(&dl[i], hex);
		snprintf(path, sizeof(path), "%s/%.2s/%s", dir, hex, hex);
		assert_int_equal(stat(path, &sb), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_remote_prepare_and_read),
	        cmocka_unit_test(test_overlay_on_top),
	        cmocka_unit_test(test_corrupt_chunk),
	        cmocka_unit_test(test_read_ahead_neighbours),
	        cmocka_unit_test(test_read_ahead_corrupt_chunk),
	        cmocka_unit_test(test_read_ahead_libraries),
	        cmocka_unit_test(test_read_ahead_libraries_second_chunk),
	        cmocka_unit_test(test_exec_lookup),
	        cmocka_unit_test(test_startup_files),
	        cmocka_unit_test(test_stale_pyc_source),
	        cmocka_unit_test(test_read_ahead_registry_down),
	        cmocka_unit_test(test_sibling_toc_ahead),
	        /* before test_fallbacks: its "norange" repository marks the
	         * host as ignoring Range until the store is reopened */
	        cmocka_unit_test(test_toc_one_request),
	        cmocka_unit_test(test_fallbacks),
	        cmocka_unit_test(test_restart),
	        cmocka_unit_test(test_restart_lost_toc),
	        cmocka_unit_test(test_restart_lost_toc_registry_down),
	        cmocka_unit_test(test_unhealthy_after_restart),
	        cmocka_unit_test(test_remove_unmounts),
	        cmocka_unit_test(test_cache_eviction),
	        cmocka_unit_test(test_cache_write_behind),
	};
	if (geteuid() != 0)
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
