/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec: one more process in a running container, through the shim's Task
 * API as containerd does it (Exec with an exec id and a process spec, Start
 * and Wait with that exec id, Delete), stdio over fifos as for `run`.
 *
 * An exec's fifos live in <bundle>/exec/<exec id>/, so removing the
 * container (rm -f, or rm after the shim died) removes them with the bundle.
 * The CLI that runs an exec holds an flock on that directory until it has
 * deleted the exec; a directory whose lock is free belongs to a CLI that
 * died, and the next exec in the same container deletes it once the shim
 * no longer runs its process (stopped, or created and never started). A directory is made under a
 * dot name, locked, then renamed into place, so the collector never sees one that is not yet
 * locked.
 *
 * A struct rt_exec is used by one thread at a time, except rt_exec_kill and
 * rt_exec_resize, which may come from a signal-forwarding thread while
 * another waits (the ttrpc client matches concurrent calls).
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "rt-internal.h"

#define EXEC_DIR "exec"

struct rt_exec {
	struct rt_container *c; /* borrowed: outlives the exec */
	struct rt_shim *shim;   /* the container's */
	char *id;               /* exec id */
	char *base;             /* <bundle>/exec */
	int lock_fd;            /* <bundle>/exec/<id>, flock'ed */
	struct rt_stdio *io;
	bool created; /* the shim knows it (Exec answered) */
	bool started, waited;
};

const char *rt_exec_id(const struct rt_exec *e)
{
	return e->id;
}

static int remove_exec_dir(const char *base, const char *name)
{
	_cleanup_close_ int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bfd < 0)
		return errno == ENOENT ? 0 : negative_errno();
	return path_rm_rf_at(bfd, name);
}

struct rt_exec *rt_exec_free(struct rt_exec *e)
{
	if (!e)
		return NULL;
	if (e->started && !e->waited) {
		(void)rt_shim_kill(e->shim, e->id, SIGKILL, false, NULL);
		(void)rt_shim_wait(e->shim, e->id, NULL, NULL);
	}
	if (e->created)
		(void)rt_shim_delete(e->shim, e->id, NULL, NULL);
	rt_stdio_free(e->io);
	if (e->base && e->id)
		(void)remove_exec_dir(e->base, e->id);
	safe_close(e->lock_fd);
	free(e->base);
	free(e->id);
	free(e);
	return NULL;
}

static char *random_exec_id(void)
{
	uint8_t b[8];
	char *s = malloc(5 + 2 * sizeof(b) + 1);
	if (!s || getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		free(s);
		return NULL;
	}
	strcpy(s, "exec-");
	for (size_t i = 0; i < sizeof(b); i++)
		sprintf(s + 5 + 2 * i, "%02x", b[i]);
	return s;
}

/* Execs whose CLI died: delete them in the shim once their process is gone,
 * and their fifos with them. Best effort. */
static void collect_orphans(struct rt_shim *shim, const char *base)
{
	DIR *d = opendir(base);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct rt_task_state st;
		if (de->d_name[0] == '.')
			continue;
		_cleanup_close_ int fd =
		        openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue; /* its CLI still runs it */
		int r = rt_shim_state(shim, de->d_name, &st, NULL);
		/* Running on without its CLI: goes with the container. One that
		 * was created and never started never will be. */
		if (r >= 0 && (st.status == RT_TASK_RUNNING || st.status == RT_TASK_PAUSED ||
		               st.status == RT_TASK_PAUSING))
			continue;
		if (r >= 0)
			(void)rt_shim_delete(shim, de->d_name, NULL, NULL);
		log_debug("removing the fifos of exec %s, whose CLI went away", de->d_name);
		(void)path_rm_rf_at(dirfd(d), de->d_name);
	}
	closedir(d);
}

/* <base>/<id>, made under a dot name, locked, then renamed into place. */
static int make_exec_dir(struct rt_exec *e, char **ret_dir, struct strata_error **ret_err)
{
	_cleanup_free_ char *tmp = NULL, *dir = NULL;
	int r;

	if (mkdir(e->base, 0700) < 0 && errno != EEXIST)
		return strata_error_set_errno(ret_err, negative_errno(), "create \"%s\"", e->base);
	if (asprintf(&tmp, "%s/.%s", e->base, e->id) < 0 ||
	    asprintf(&dir, "%s/%s", e->base, e->id) < 0)
		return -ENOMEM;
	if (mkdir(tmp, 0700) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "create \"%s\"", tmp);
	e->lock_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e->lock_fd < 0 || flock(e->lock_fd, LOCK_EX) < 0 || rename(tmp, dir) < 0) {
		r = negative_errno();
		(void)rmdir(tmp);
		return strata_error_set_errno(ret_err, r, "set up \"%s\"", dir);
	}
	*ret_dir = TAKE_PTR(dir);
	return 0;
}

static int open_fifo(const char *dir, const char *name, int flags, char **ret_path)
{
	_cleanup_free_ char *p = path_join(dir, name);
	int fd;
	if (!p)
		return -ENOMEM;
	if (mkfifo(p, 0600) < 0)
		return negative_errno();
	fd = open(p, flags | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	*ret_path = TAKE_PTR(p);
	return fd;
}

static void stdin_eof(void *userdata)
{
	struct rt_exec *e = userdata;
	(void)rt_shim_close_stdin(e->shim, e->id, NULL);
}

/* The process spec: the container's own, as rt_spec_exec_process adapts it,
 * with users resolved in the running container's root. */
static int exec_process_json(struct rt_container *c, uint32_t pid, const struct rt_exec_opts *o,
                             char **ret, struct strata_error **ret_err)
{
	_cleanup_free_ char *path = path_join(rt_container_dir(c), "config.json");
	_cleanup_free_ char *spec = NULL;
	_cleanup_close_ int root_fd = -1;
	char proc_root[64];
	int r;

	if (!path)
		return -ENOMEM;
	r = path_read_file_at(AT_FDCWD, path, 4 << 20, &spec, NULL);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read \"%s\"", path);
	if (o->user) {
		/* What the process sees as /, volumes included. */
		snprintf(proc_root, sizeof(proc_root), "/proc/%u/root", pid);
		root_fd = open(proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (root_fd < 0)
			return strata_error_set_errno(ret_err, negative_errno(), "open \"%s\"",
			                              proc_root);
	}
	return rt_spec_exec_process(spec, root_fd, o, ret, ret_err);
}

int rt_exec_start(struct rt_container *c, const struct rt_exec_config *cfg, struct rt_exec **ret,
                  struct strata_error **ret_err)
{
	_cleanup_(rt_exec_freep) struct rt_exec *e = NULL;
	_cleanup_free_ char *dir = NULL, *process = NULL;
	_cleanup_free_ char *in = NULL, *out = NULL, *err = NULL;
	_cleanup_close_ int in_fd = -1, out_fd = -1, err_fd = -1;
	const char *cid = rt_container_id(c);
	_cleanup_error_ struct strata_error *shim_err = NULL;
	struct rt_task_state st;
	int r;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->c = c;
	e->lock_fd = -1;
	r = rt_container_shim(c, &e->shim, &shim_err);
	if (r >= 0)
		r = rt_shim_state(e->shim, NULL, &st, &shim_err);
	if (r < 0) {
		log_debug("exec in %s: shim unreachable: %s", cid, strata_error_message(shim_err));
		return strata_error_set(ret_err, -ESRCH,
		                        "container %s is not running (its shim is gone)", cid);
	}
	if (st.status != RT_TASK_RUNNING)
		return strata_error_set(ret_err, -ESRCH, "container %s is not running (%s)", cid,
		                        rt_task_status_to_string(st.status));

	r = exec_process_json(c, st.pid, &cfg->opts, &process, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "exec in container %s", cid);

	e->id = random_exec_id();
	e->base = path_join(rt_container_dir(c), EXEC_DIR);
	if (!e->id || !e->base)
		return -ENOMEM;
	collect_orphans(e->shim, e->base);
	r = make_exec_dir(e, &dir, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "exec in container %s", cid);
	out_fd = r = open_fifo(dir, "stdout", O_RDONLY, &out);
	if (r >= 0 && !cfg->opts.tty)
		err_fd = r = open_fifo(dir, "stderr", O_RDONLY, &err);
	/* O_RDWR: opening a fifo's write end alone fails without a reader. */
	if (r >= 0 && cfg->interactive)
		in_fd = r = open_fifo(dir, "stdin", O_RDWR, &in);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "exec in container %s: fifos in \"%s\"",
		                              cid, dir);

	struct rt_exec_process ep = {
	        .exec_id = e->id,
	        .terminal = cfg->opts.tty,
	        .stdin_path = in,
	        .stdout_path = out,
	        .stderr_path = err,
	        .process_json = process,
	};
	r = rt_shim_exec(e->shim, &ep, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "exec in container %s", cid);
	e->created = true;

	r = rt_shim_start_task(e->shim, e->id, NULL, ret_err);
	if (r < 0) {
		/* runc's own message says what failed (not found, permission);
		 * -ENOEXEC tells the caller it was the process that could not
		 * start, for docker's exit codes 126/127. */
		(void)strata_error_prefix(ret_err, r, "exec in container %s", cid);
		if (ret_err && *ret_err)
			(*ret_err)->code = -ENOEXEC;
		return -ENOEXEC;
	}
	e->started = true;
	/* Only now: the shim opens the stdin fifo in Start, and what we wrote
	 * there before would go when our write end closes at EOF. Output waits
	 * in the fifos meanwhile. */
	struct rt_stdio_params p = {
	        .out_fd = TAKE_FD(out_fd),
	        .err_fd = TAKE_FD(err_fd),
	        .in_fifo_fd = TAKE_FD(in_fd),
	        .stdin_eof = stdin_eof,
	        .userdata = e,
	};
	rt_stdio_set_ends(&p, cfg->interactive, cfg->custom_stdio, cfg->stdin_fd, cfg->stdout_fd,
	                  cfg->stderr_fd);
	r = rt_stdio_start(&p, &e->io);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "start the stdio relay");
	log_debug("exec %s started in %s", e->id, cid);
	*ret = TAKE_PTR(e);
	return 0;
}

int rt_exec_wait(struct rt_exec *e, int *ret_code, struct strata_error **ret_err)
{
	uint32_t status = 0;
	int r = rt_shim_wait(e->shim, e->id, &status, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "wait for exec %s in container %s", e->id,
		                           rt_container_id(e->c));
	e->waited = true;
	/* As docker: output that a background child keeps open is not waited
	 * for past 2 s of silence (the shim's Delete then waits 2 s more for
	 * its own copy), not until the child exits. Not Delete first: the shim
	 * gives its copy 2 s there, and drops what a slow reader of ours had
	 * not taken by then. */
	rt_stdio_finish(e->io, 2000);
	/* The shim reports 128+N for a signal, as for the init process. */
	if (ret_code)
		*ret_code = (int)status;
	return 0;
}

int rt_exec_kill(struct rt_exec *e, int sig, struct strata_error **ret_err)
{
	return rt_shim_kill(e->shim, e->id, sig, false, ret_err);
}

int rt_exec_resize(struct rt_exec *e, unsigned width, unsigned height,
                   struct strata_error **ret_err)
{
	return rt_shim_resize_pty(e->shim, e->id, width, height, ret_err);
}
