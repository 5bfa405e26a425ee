/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Containers: the bundle directory, its record, and the run lifecycle.
 *
 * STATE/containers/<id>/ (STATE: the runtime state dir, /run/strata by
 * default, see rt_state_dir) is both our record and the shim's bundle (the
 * shim wants the bundle's basename to be the id):
 *   strata.json   our record (written before anything that needs undoing,
 *                 updated as resources are acquired), so `ps` and `rm` work
 *                 after a Strata restart or a CLI crash
 *   config.json   the OCI spec;  rootfs/  mount point when we mount layers
 *   network.json  {conflist, result}: what CNI DEL needs, even after a crash
 *   log, shim.log, address   the shim's log fifo, where we drain it, and
 *                 its socket address
 *   stdout, stderr, stdin   fifos of an attached run
 *   resolv.conf, hosts, hostname   bind mounted into the container
 * Like containerd's bundles under /run/containerd, this is state about
 * processes, which do not survive a reboot either: files are replaced by
 * rename (a reader never sees half a record) but never fsync'd, which on
 * disk would cost two flushes per write, and on tmpfs is moot.
 *
 * What must outlive the state dir goes under ROOT/containers/<id>/: only the
 * output of a detached container (container.log), which can grow without
 * bound and so belongs on disk, not in /run.
 *
 * A struct rt_container is used by one thread at a time.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "json.h"
#include "rt-internal.h"

struct rt_container {
	char *base;  /* STATE/containers */
	char *dir;   /* base/<id> */
	json_t *rec; /* strata.json */
	struct rt_shim *shim;
	struct rt_stdio *io;
	struct rt_cni_config cni; /* borrowed from the create config; NULL after load */
	bool exited;
	int exit_code;
	/* Made by rt_container_create in this process, and whether it got as far
	 * as starting a shim: a failed create does not look for one. */
	bool created_here, shim_spawned;
	/* A pidfd of the shim we shut down, until it has exited (-1: none). */
	int shim_exit_fd;
};

#define CONTAINERS_DIR "containers"

static const char *rec_str(const struct rt_container *c, const char *key)
{
	return json_get_str(c->rec, key);
}

const char *rt_container_id(const struct rt_container *c)
{
	return rec_str(c, "id");
}

const char *rt_container_dir(const struct rt_container *c)
{
	return c->dir;
}

const char *rt_container_log_path(const struct rt_container *c)
{
	return rec_str(c, "log_path");
}

struct rt_container *rt_container_free(struct rt_container *c)
{
	if (!c)
		return NULL;
	rt_stdio_free(c->io);
	rt_shim_free(c->shim);
	safe_close(c->shim_exit_fd);
	json_decref(c->rec);
	free(c->base);
	free(c->dir);
	free(c);
	return NULL;
}

/* Replace dir/name with data: a temporary file renamed over it, no fsync
 * (see the header comment). */
static int write_state_file(const char *dir, const char *name, const char *data, mode_t mode)
{
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int fd = -1;
	char tmp[NAME_MAX + 1];
	int r;

	if (dfd < 0)
		return negative_errno();
	if (snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return negative_errno();
	r = loop_write(fd, data, strlen(data));
	if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
		r = negative_errno();
	if (r < 0)
		(void)unlinkat(dfd, tmp, 0);
	return r;
}

static int save_record(struct rt_container *c)
{
	_cleanup_free_ char *s = json_dumps(c->rec, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s)
		return -ENOMEM;
	return write_state_file(c->dir, "strata.json", s, 0600);
}

static int write_file(const char *dir, const char *name, const char *data, mode_t mode)
{
	return write_state_file(dir, name, data, mode);
}

static char *random_id(void)
{
	uint8_t b[32];
	char *s = malloc(65);
	if (!s || getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(b); i++)
		sprintf(s + 2 * i, "%02x", b[i]);
	return s;
}

static char *now_rfc3339(void)
{
	struct timespec ts;
	struct tm tm;
	char buf[64], *out = NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	if (asprintf(&out, "%s.%09ldZ", buf, ts.tv_nsec) < 0)
		return NULL;
	return out;
}

static const char *net_name(enum rt_net_mode m)
{
	return m == RT_NET_HOST ? "host" : m == RT_NET_NONE ? "none" : "bridge";
}

/* --- the state dir ------------------------------------------------------- */

int rt_state_dir(const struct toml_value *config, const char *address, char **ret,
                 struct strata_error **ret_err)
{
	_cleanup_free_ char *dir = NULL;
	const char *conf = NULL;

	if (config &&
	    toml_as_string(toml_get_path(config, "runtime", "state_dir", NULL), &conf) >= 0 &&
	    *conf) {
		dir = strdup(conf);
	} else if (address && *address) {
		const char *a = strncmp(address, "unix://", 7) == 0 ? address + 7 : address;
		const char *slash = strrchr(a, '/');
		dir = !slash       ? strdup(".")
		      : slash == a ? strdup("/")
		                   : strndup(a, (size_t)(slash - a));
	} else {
		dir = strdup(RT_DEFAULT_STATE_DIR);
	}
	if (!dir)
		return -ENOMEM;
	/* The shim runs in the bundle: every path we hand out is absolute. */
	if (dir[0] != '/') {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		char *abs;
		if (!cwd)
			return strata_error_set_errno(ret_err, negative_errno(), "getcwd");
		abs = streq(dir, ".") ? TAKE_PTR(cwd) : path_join(cwd, dir);
		if (!abs)
			return -ENOMEM;
		free(dir);
		dir = abs;
	}
	*ret = TAKE_PTR(dir);
	return 0;
}

/* --- rootfs mounts ------------------------------------------------------ */

static const struct {
	const char *name;
	unsigned long set, clear;
} mount_flags[] = {
        {"ro", MS_RDONLY, 0},
        {"rw", 0, MS_RDONLY},
        {"bind", MS_BIND, 0},
        {"rbind", MS_BIND | MS_REC, 0},
        {"nosuid", MS_NOSUID, 0},
        {"suid", 0, MS_NOSUID},
        {"nodev", MS_NODEV, 0},
        {"dev", 0, MS_NODEV},
        {"noexec", MS_NOEXEC, 0},
        {"exec", 0, MS_NOEXEC},
        {"noatime", MS_NOATIME, 0},
        {"relatime", MS_RELATIME, 0},
        {"strictatime", MS_STRICTATIME, 0},
        {"sync", MS_SYNCHRONOUS, 0},
        {"defaults", 0, 0},
};

int rt_mount_all(const struct rt_mount *m, size_t n, const char *target, unsigned flags_in,
                 struct strata_error **ret_err)
{
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *data = NULL;
		unsigned long flags = 0;
		size_t dlen = 0;

		for (size_t k = 0; m[i].options && m[i].options[k]; k++) {
			const char *o = m[i].options[k];
			bool known = false;
			for (size_t f = 0; f < ELEMENTSOF(mount_flags); f++)
				if (streq(o, mount_flags[f].name)) {
					flags = (flags | mount_flags[f].set) &
					        ~mount_flags[f].clear;
					known = true;
				}
			if (known)
				continue;
			size_t ol = strlen(o);
			char *nd = realloc(data, dlen + ol + 2);
			if (!nd)
				return -ENOMEM;
			data = nd;
			if (dlen)
				data[dlen++] = ',';
			memcpy(data + dlen, o, ol + 1);
			dlen += ol;
		}
		const char *type = m[i].type && *m[i].type ? m[i].type : "none";
		int k = -1;
		if ((flags_in & RT_MOUNT_VOLATILE) && streq(type, "overlay") &&
		    !(flags & MS_BIND)) {
			_cleanup_free_ char *vdata = NULL;
			if (asprintf(&vdata, "%s%svolatile", strempty(data), dlen ? "," : "") < 0)
				return -ENOMEM;
			k = mount(m[i].source, target, type, flags & ~MS_RDONLY, vdata);
			/* Kernels before 5.10 do not know it: mount without. */
			if (k < 0 && errno != EINVAL)
				return strata_error_set_errno(ret_err, negative_errno(),
				                              "mount %s \"%s\" on \"%s\"", type,
				                              strempty(m[i].source), target);
		}
		if (k < 0 && mount(m[i].source, target, (flags & MS_BIND) ? NULL : type,
		                   flags & ~MS_RDONLY, data) < 0)
			return strata_error_set_errno(ret_err, negative_errno(),
			                              "mount %s \"%s\" on \"%s\"", type,
			                              strempty(m[i].source), target);
		if ((flags & MS_BIND) && (flags & MS_RDONLY) &&
		    mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
			return strata_error_set_errno(ret_err, negative_errno(),
			                              "remount \"%s\" read-only", target);
		if (!(flags & MS_BIND) && (flags & MS_RDONLY) &&
		    mount(NULL, target, NULL, MS_REMOUNT | MS_RDONLY, data) < 0)
			return strata_error_set_errno(ret_err, negative_errno(),
			                              "remount \"%s\" read-only", target);
	}
	return 0;
}

/* --- network files ------------------------------------------------------- */

/* The host's resolv.conf without loopback nameservers (unreachable from a
 * container's own netns, e.g. systemd-resolved's 127.0.0.53). */
static char *container_resolv_conf(void)
{
	_cleanup_fclose_ FILE *f = fopen("/etc/resolv.conf", "re");
	_cleanup_free_ char *line = NULL;
	char *out = NULL;
	size_t len = 0, cap = 0;
	bool have_ns = false;
	FILE *mf = open_memstream(&out, &len);

	if (!mf)
		return NULL;
	while (f && getline(&line, &cap, f) >= 0) {
		char addr[128];
		if (sscanf(line, " nameserver %127s", addr) == 1) {
			if (strncmp(addr, "127.", 4) == 0 || streq(addr, "::1"))
				continue;
			have_ns = true;
		}
		fputs(line, mf);
	}
	if (!have_ns)
		fputs("nameserver 8.8.8.8\nnameserver 8.8.4.4\n", mf);
	fclose(mf);
	return out;
}

static int write_net_files(struct rt_container *c, struct rt_spec_opts *so, const char *ip,
                           struct strata_error **ret_err)
{
	_cleanup_free_ char *hosts = NULL, *hn = NULL, *resolv = NULL;
	const char *hostname = so->hostname;
	_cleanup_free_ char *short_id = strndup(so->id, 12);
	int r;

	if (!short_id)
		return -ENOMEM;
	if (!hostname)
		hostname = short_id;
	if (asprintf(&hosts,
	             "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s%s%s%s",
	             ip ? ip : "", ip ? "\t" : "", ip ? hostname : "", ip ? "\n" : "") < 0 ||
	    asprintf(&hn, "%s\n", hostname) < 0)
		return -ENOMEM;
	resolv = container_resolv_conf();
	if (!resolv)
		return -ENOMEM;
	if ((r = write_file(c->dir, "hosts", hosts, 0644)) < 0 ||
	    (r = write_file(c->dir, "hostname", hn, 0644)) < 0 ||
	    (r = write_file(c->dir, "resolv.conf", resolv, 0644)) < 0)
		return strata_error_set_errno(ret_err, r, "write network files in \"%s\"", c->dir);
	return 0;
}

/* --- create ---------------------------------------------------------------- */

/* --net none: runc makes the network namespace (a "network" namespace
 * without a path) and brings its lo up itself (libcontainer's loopback
 * strategy), as for `ctr run`: nothing of ours to create or tear down.
 * --net bridge: a named netns wired by CNI. */
static int setup_network(struct rt_container *c, const struct rt_container_config *cfg,
                         enum rt_net_mode net, char **ret_ip, struct strata_error **ret_err)
{
	_cleanup_free_ char *nsname = NULL, *nspath = NULL, *conflist = NULL, *result = NULL;
	const char *id = rt_container_id(c);
	int r;

	*ret_ip = NULL;
	if (net != RT_NET_BRIDGE)
		return 0;
	if (asprintf(&nsname, "strata-%.32s", id) < 0)
		return -ENOMEM;
	r = rt_netns_create(nsname, &nspath, ret_err);
	if (r < 0)
		return r;
	json_object_set_new(c->rec, "netns", json_string(nsname));
	json_object_set_new(c->rec, "netns_path", json_string(nspath));
	r = save_record(c);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "save container record");

	r = rt_cni_load_conflist(&cfg->cni, &conflist, ret_err);
	if (r < 0)
		return r;
	/* Keep the conflist before ADD: DEL needs it even if we crash now. */
	_cleanup_json_ json_t *net_rec = json_object();
	_cleanup_json_ json_t *cl = json_loads(conflist, 0, NULL);
	if (!cl)
		return strata_error_set(ret_err, -EINVAL, "CNI conflist is not valid JSON");
	json_object_set(net_rec, "conflist", cl);
	if (cfg->cni.plugin_path)
		json_object_set_new(net_rec, "plugin_path", json_string(cfg->cni.plugin_path));
	{
		_cleanup_free_ char *s = json_dumps(net_rec, JSON_COMPACT);
		r = s ? write_file(c->dir, "network.json", s, 0600) : -ENOMEM;
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "write network.json");
	}
	r = rt_cni_add(&cfg->cni, conflist, id, nspath, "eth0", cfg->ports, cfg->n_ports, &result,
	               ret_err);
	if (r < 0)
		return r;
	json_object_set_new(net_rec, "result", json_loads(result, 0, NULL));
	{
		_cleanup_free_ char *s = json_dumps(net_rec, JSON_COMPACT);
		r = s ? write_file(c->dir, "network.json", s, 0600) : -ENOMEM;
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "write network.json");
	}
	*ret_ip = rt_cni_result_ip(result);
	if (*ret_ip)
		json_object_set_new(c->rec, "ip", json_string(*ret_ip));
	return 0;
}

static json_t *ports_json(const struct rt_port_mapping *p, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_pack("{s:i, s:i, s:s}", "hostPort", p[i].host_port,
		                      "containerPort", p[i].container_port, "protocol",
		                      p[i].protocol ? p[i].protocol : "tcp");
		if (p[i].host_ip)
			json_object_set_new(m, "hostIP", json_string(p[i].host_ip));
		json_array_append_new(a, m);
	}
	return a;
}

static int open_fifo(const char *dir, const char *name, int flags, char **ret_path)
{
	_cleanup_free_ char *p = path_join(dir, name);
	int fd;
	if (!p)
		return -ENOMEM;
	if (mkfifo(p, 0600) < 0 && errno != EEXIST)
		return negative_errno();
	fd = open(p, flags | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	*ret_path = TAKE_PTR(p);
	return fd;
}

struct stdio_setup {
	char *in, *out, *err;
	int out_fd, err_fd, in_fd;
};

static void stdio_setup_done(struct stdio_setup *s)
{
	free(s->in);
	free(s->out);
	free(s->err);
	safe_close(s->out_fd);
	safe_close(s->err_fd);
	safe_close(s->in_fd);
}

static int prepare_stdio(struct rt_container *c, const struct rt_container_config *cfg,
                         struct stdio_setup *s, struct strata_error **ret_err)
{
	*s = (struct stdio_setup){.out_fd = -1, .err_fd = -1, .in_fd = -1};
	if (cfg->detach && cfg->spec.tty) {
		/* The shim's console copy takes no file:// URI, only a path it
		 * opens as is (a fifo, or a file that exists): the pty's output,
		 * stderr included, goes to the log file made here. */
		const char *log = rec_str(c, "log_path");
		_cleanup_close_ int fd = -1;
		if (!log)
			return strata_error_set(ret_err, -EINVAL, "no log path");
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return strata_error_set_errno(ret_err, negative_errno(), "create \"%s\"",
			                              log);
		return (s->out = strdup(log)) ? 0 : -ENOMEM;
	}
	if (cfg->detach) {
		if (asprintf(&s->out, "file://%s", rec_str(c, "log_path")) < 0 ||
		    !(s->err = strdup(s->out)))
			return -ENOMEM;
		return 0;
	}
	s->out_fd = open_fifo(c->dir, "stdout", O_RDONLY, &s->out);
	if (s->out_fd < 0)
		return strata_error_set_errno(ret_err, s->out_fd, "stdout fifo");
	if (!cfg->spec.tty) {
		s->err_fd = open_fifo(c->dir, "stderr", O_RDONLY, &s->err);
		if (s->err_fd < 0)
			return strata_error_set_errno(ret_err, s->err_fd, "stderr fifo");
	}
	if (cfg->interactive) {
		/* O_RDWR: opening a fifo's write end alone fails without a reader. */
		s->in_fd = open_fifo(c->dir, "stdin", O_RDWR, &s->in);
		if (s->in_fd < 0)
			return strata_error_set_errno(ret_err, s->in_fd, "stdin fifo");
	}
	return 0;
}

/* rm -rf dir, given as base/name. */
static int remove_tree(const char *base, const char *name)
{
	_cleanup_close_ int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bfd < 0)
		return errno == ENOENT ? 0 : negative_errno();
	return path_rm_rf_at(bfd, name);
}

/* mkdir base/id, creating base when missing. -EEXIST names the container. */
static int make_container_dir(const char *base, const char *id, char **ret_dir,
                              struct strata_error **ret_err)
{
	_cleanup_free_ char *dir = path_join(base, id);
	int r;

	if (!dir)
		return -ENOMEM;
	if (mkdir(dir, 0711) == 0)
		goto done;
	if (errno == ENOENT) {
		r = path_mkdir_p(base, 0711);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "create \"%s\"", base);
		if (mkdir(dir, 0711) == 0)
			goto done;
	}
	if (errno == EEXIST)
		return strata_error_set(ret_err, -EEXIST, "container \"%s\" already exists", id);
	return strata_error_set_errno(ret_err, negative_errno(), "create \"%s\"", dir);
done:
	*ret_dir = TAKE_PTR(dir);
	return 0;
}

static void container_shim_params(const struct rt_container *c, struct rt_shim_params *p)
{
	*p = (struct rt_shim_params){
	        .ns = rec_str(c, "namespace"),
	        .id = rt_container_id(c),
	        .bundle = c->dir,
	        .address = rec_str(c, "shim_key"),
	        .runtime_binary = rec_str(c, "runtime"),
	};
}

/* The shim's own `start` reads config.json, so then it waits for the spec. */
static bool shim_starts_early(void)
{
	const char *m = getenv("STRATA_SHIM_START_ACTION");
	return !m || !streq(m, "1");
}

static int start_shim(struct rt_container *c, struct strata_error **ret_err)
{
	struct rt_shim_params sp;
	int r;

	container_shim_params(c, &sp);
	c->shim_spawned = true;
	r = rt_shim_start(&sp, &c->shim, ret_err);
	if (r < 0)
		return r;
	log_debug("container %s: shim started", sp.id);
	return 0;
}

static void stdin_eof(void *userdata)
{
	struct rt_container *c = userdata;
	if (c->shim)
		(void)rt_shim_close_stdin(c->shim, NULL, NULL);
}

int rt_container_begin(const struct rt_container_config *cfg, struct rt_container **ret,
                       struct strata_error **ret_err)
{
	_cleanup_(rt_container_freep) struct rt_container *c = NULL;
	_cleanup_free_ char *gen_id = NULL, *shim_address = NULL, *shim_bin = NULL,
	                    *runtime_bin = NULL;
	const char *id = cfg->id;
	const char *ns = cfg->ns ? cfg->ns : RT_DEFAULT_NAMESPACE;
	int r;

	if (!cfg->root || !cfg->state_dir)
		return strata_error_set(ret_err, -EINVAL, "container: need a root and a state dir");
	if (!id) {
		id = gen_id = random_id();
		if (!id)
			return -ENOMEM;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->shim_exit_fd = -1;
	if (!(c->base = path_join(cfg->state_dir, CONTAINERS_DIR)))
		return -ENOMEM;
	c->cni = cfg->cni;
	c->created_here = true;
	/* The spec generator validates the id too; do it before mkdir. */
	if (strchr(id, '/') || streq(id, ".") || streq(id, ".."))
		return strata_error_set(ret_err, -EINVAL, "invalid container id \"%s\"", id);
	/* Nothing is made when the runtime cannot run at all. */
	r = rt_require_binary(RT_SHIM_BINARY, &shim_bin, ret_err);
	if (r < 0)
		return r;
	r = rt_require_binary(cfg->runtime_binary ? cfg->runtime_binary : "runc", &runtime_bin,
	                      ret_err);
	if (r < 0)
		return r;

	r = make_container_dir(c->base, id, &c->dir, ret_err);
	if (r < 0)
		return r;
	{
		_cleanup_free_ char *created = now_rfc3339();
		c->rec =
		        json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "id", id, "namespace", ns,
		                  "runtime", cfg->runtime_binary ? cfg->runtime_binary : "runc",
		                  "net", net_name(cfg->spec.net), "created", created ? created : "",
		                  "detach", cfg->detach, "tty", cfg->spec.tty);
	}
	if (!c->rec)
		return -ENOMEM;
	if (cfg->name)
		json_object_set_new(c->rec, "name", json_string(cfg->name));
	if (cfg->image)
		json_object_set_new(c->rec, "image", json_string(cfg->image));
	if (cfg->n_ports)
		json_object_set_new(c->rec, "ports", ports_json(cfg->ports, cfg->n_ports));
	/* What names the things made below goes in the first record, so that a
	 * crash at any point leaves enough for `rm`: the shim's socket (a hash
	 * of its -address, which is this key) and the detached log's place. */
	json_object_set_new(c->rec, "shim_key", json_string(c->base));
	struct rt_shim_params sp = {
	        .ns = ns,
	        .id = id,
	        .bundle = c->dir,
	        .address = c->base,
	        .runtime_binary = cfg->runtime_binary,
	};
	r = rt_shim_socket_address(&sp, &shim_address);
	if (r < 0)
		goto fail;
	json_object_set_new(c->rec, "shim_address", json_string(shim_address));
	if (cfg->detach) {
		_cleanup_free_ char *logs = path_join(cfg->root, CONTAINERS_DIR);
		_cleanup_free_ char *log_dir = logs ? path_join(logs, id) : NULL;
		_cleanup_free_ char *log_path =
		        log_dir ? path_join(log_dir, "container.log") : NULL;
		if (!log_path) {
			r = -ENOMEM;
			goto fail;
		}
		json_object_set_new(c->rec, "log_dir", json_string(log_dir));
		json_object_set_new(c->rec, "log_path", json_string(log_path));
	}
	r = save_record(c);
	if (r < 0) {
		strata_error_set_errno(ret_err, r, "save container record");
		goto fail;
	}
	if (cfg->detach) {
		_cleanup_free_ char *logs = path_join(cfg->root, CONTAINERS_DIR), *log_dir = NULL;
		/* No live container has this id (its state dir is ours): a log
		 * dir by that name is an orphan, e.g. from before a reboot. */
		r = logs ? remove_tree(logs, id) : -ENOMEM;
		if (r >= 0)
			r = make_container_dir(logs, id, &log_dir, ret_err);
		if (r < 0)
			goto fail;
	}

	/* The shim is a Go program that takes tens of ms to come up: start it
	 * now and let it boot while the caller and rt_container_finish prepare
	 * the rootfs, the spec and the network. It needs nothing of the bundle
	 * but its log fifo until Create. */
	if (shim_starts_early()) {
		r = start_shim(c, ret_err);
		if (r < 0)
			goto fail;
	}
	*ret = TAKE_PTR(c);
	return 0;

fail:
	(void)rt_container_delete(c, true, NULL);
	return strata_error_prefix(ret_err, r, "create container %s", id);
}

int rt_container_finish(struct rt_container *c, const struct rt_container_config *cfg,
                        struct strata_error **ret_err)
{
	_cleanup_free_ char *rootfs = NULL, *ip = NULL, *spec = NULL, *cmdline = NULL;
	_cleanup_free_ char *f_resolv = NULL, *f_hosts = NULL, *f_hostname = NULL;
	_cleanup_(stdio_setup_done) struct stdio_setup io = {
	        .out_fd = -1, .err_fd = -1, .in_fd = -1};
	_cleanup_close_ int rootfs_fd = -1;
	struct rt_spec_opts so = cfg->spec;
	const char *id = rt_container_id(c);
	int r;

	so.id = id;
	so.ns = rec_str(c, "namespace");
	if (!cfg->rootfs && cfg->n_mounts == 0) {
		r = strata_error_set(ret_err, -EINVAL, "container: need a rootfs (dir or mounts)");
		goto fail;
	}
	if (cfg->image && !rec_str(c, "image"))
		json_object_set_new(c->rec, "image", json_string(cfg->image));

	/* rootfs */
	if (cfg->rootfs) {
		rootfs = realpath(cfg->rootfs, NULL);
		if (!rootfs) {
			r = strata_error_set_errno(ret_err, negative_errno(), "rootfs \"%s\"",
			                           cfg->rootfs);
			goto fail;
		}
		so.root_path = rootfs;
	} else {
		rootfs = path_join(c->dir, "rootfs");
		if (!rootfs || mkdir(rootfs, 0755) < 0) {
			r = strata_error_set_errno(ret_err, rootfs ? negative_errno() : -ENOMEM,
			                           "create rootfs dir");
			goto fail;
		}
		json_object_set_new(c->rec, "rootfs_mounted", json_true());
		r = save_record(c);
		if (r < 0) {
			strata_error_set_errno(ret_err, r, "save container record");
			goto fail;
		}
		r = rt_mount_all(cfg->mounts, cfg->n_mounts, rootfs, RT_MOUNT_VOLATILE, ret_err);
		if (r < 0)
			goto fail;
		so.root_path = "rootfs";
	}
	rootfs_fd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfs_fd < 0) {
		r = strata_error_set_errno(ret_err, negative_errno(), "open rootfs \"%s\"", rootfs);
		goto fail;
	}

	log_debug("container %s: rootfs ready", id);
	/* network */
	r = setup_network(c, cfg, so.net, &ip, ret_err);
	if (r < 0)
		goto fail;
	so.netns_path = rec_str(c, "netns_path");
	if (so.net == RT_NET_HOST) {
		so.resolv_conf = so.resolv_conf ? so.resolv_conf : "/etc/resolv.conf";
		so.hosts_file = so.hosts_file ? so.hosts_file : "/etc/hosts";
	} else {
		r = write_net_files(c, &so, ip, ret_err);
		if (r < 0)
			goto fail;
	}
	f_resolv = path_join(c->dir, "resolv.conf");
	f_hosts = path_join(c->dir, "hosts");
	f_hostname = path_join(c->dir, "hostname");
	if (!f_resolv || !f_hosts || !f_hostname) {
		r = -ENOMEM;
		goto fail;
	}
	if (so.net != RT_NET_HOST) {
		if (!so.resolv_conf)
			so.resolv_conf = f_resolv;
		if (!so.hosts_file)
			so.hosts_file = f_hosts;
		if (!so.hostname_file)
			so.hostname_file = f_hostname;
	}

	/* spec */
	r = rt_spec_generate(cfg->image_config, rootfs_fd, &so, &spec, ret_err);
	if (r < 0)
		goto fail;
	r = write_file(c->dir, "config.json", spec, 0600);
	if (r < 0) {
		strata_error_set_errno(ret_err, r, "write config.json");
		goto fail;
	}
	if (!c->shim) {
		r = start_shim(c, ret_err);
		if (r < 0)
			goto fail;
	}
	{
		_cleanup_json_ json_t *sj = json_loads(spec, 0, NULL);
		json_t *args = json_object_get(json_object_get(sj, "process"), "args");
		size_t i;
		json_t *a;
		FILE *mf = open_memstream(&cmdline, &(size_t){0});
		if (mf) {
			json_array_foreach (args, i, a)
				fprintf(mf, "%s%s", i ? " " : "", json_string_value(a));
			fclose(mf);
			json_object_set_new(c->rec, "command", json_string(cmdline));
		}
	}

	/* the task */
	log_debug("container %s: bundle ready", id);
	r = prepare_stdio(c, cfg, &io, ret_err);
	if (r < 0)
		goto fail;
	struct rt_task_create tc = {
	        .bundle = c->dir,
	        .terminal = so.tty,
	        .stdin_path = io.in,
	        .stdout_path = io.out,
	        .stderr_path = io.err,
	        .runtime_binary = cfg->runtime_binary,
	};
	uint32_t pid = 0;
	r = rt_shim_create(c->shim, &tc, &pid, ret_err);
	if (r < 0)
		goto fail;
	json_object_set_new(c->rec, "pid", json_integer(pid));
	(void)save_record(c);

	if (!cfg->detach) {
		struct rt_stdio_params p = {
		        .out_fd = TAKE_FD(io.out_fd),
		        .err_fd = TAKE_FD(io.err_fd),
		        .in_fifo_fd = TAKE_FD(io.in_fd),
		        .stdin_eof = stdin_eof,
		        .userdata = c,
		};
		rt_stdio_set_ends(&p, cfg->interactive, cfg->custom_stdio, cfg->stdin_fd,
		                  cfg->stdout_fd, cfg->stderr_fd);
		r = rt_stdio_start(&p, &c->io);
		if (r < 0) {
			strata_error_set_errno(ret_err, r, "start the stdio relay");
			goto fail;
		}
	}
	return 0;

fail:
	(void)rt_container_delete(c, true, NULL);
	return strata_error_prefix(ret_err, r, "create container %s", id);
}

int rt_container_create(const struct rt_container_config *cfg, struct rt_container **ret,
                        struct strata_error **ret_err)
{
	_cleanup_(rt_container_freep) struct rt_container *c = NULL;
	int r;

	if (!cfg->rootfs && cfg->n_mounts == 0)
		return strata_error_set(ret_err, -EINVAL,
		                        "container: need a rootfs (dir or mounts)");
	r = rt_container_begin(cfg, &c, ret_err);
	if (r < 0)
		return r;
	r = rt_container_finish(c, cfg, ret_err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

/* --- lifecycle -------------------------------------------------------------- */

static int ensure_shim(struct rt_container *c, struct strata_error **ret_err)
{
	const char *addr = rec_str(c, "shim_address");
	if (c->shim)
		return 0;
	if (!addr)
		return strata_error_set(ret_err, -ENOTCONN, "container %s has no shim",
		                        rt_container_id(c));
	return rt_shim_connect(addr, rt_container_id(c), &c->shim, ret_err);
}

void rt_stdio_set_ends(struct rt_stdio_params *p, bool interactive, bool custom_stdio, int stdin_fd,
                       int stdout_fd, int stderr_fd)
{
	p->src_in = !interactive ? -1 : custom_stdio ? stdin_fd : 0;
	p->dst_out = custom_stdio ? stdout_fd : 1;
	p->dst_err = custom_stdio ? stderr_fd : 2;
}

int rt_container_shim(struct rt_container *c, struct rt_shim **ret, struct strata_error **ret_err)
{
	int r = ensure_shim(c, ret_err);
	if (r < 0)
		return r;
	*ret = c->shim;
	return 0;
}

int rt_container_start(struct rt_container *c, struct strata_error **ret_err)
{
	int r = ensure_shim(c, ret_err);
	if (r < 0)
		return r;
	r = rt_shim_start_task(c->shim, NULL, NULL, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "start container %s", rt_container_id(c));
	return 0;
}

int rt_container_wait(struct rt_container *c, int *ret_code, struct strata_error **ret_err)
{
	uint32_t status = 0;
	int r = ensure_shim(c, ret_err);
	if (r < 0)
		return r;
	r = rt_shim_wait(c->shim, NULL, &status, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "wait for container %s", rt_container_id(c));
	/* The shim already reports 128+N for a signal, as a shell would. */
	c->exited = true;
	c->exit_code = (int)status;
	rt_stdio_finish(c->io, 5000);
	json_object_set_new(c->rec, "exit_code", json_integer(status));
	json_object_set_new(c->rec, "exited_at", json_integer(time(NULL)));
	(void)save_record(c);
	if (ret_code)
		*ret_code = (int)status;
	return 0;
}

int rt_container_kill(struct rt_container *c, int sig, struct strata_error **ret_err)
{
	int r = ensure_shim(c, ret_err);
	if (r < 0)
		return r;
	return rt_shim_kill(c->shim, NULL, sig, false, ret_err);
}

int rt_container_resize(struct rt_container *c, unsigned width, unsigned height,
                        struct strata_error **ret_err)
{
	int r = ensure_shim(c, ret_err);
	if (r < 0)
		return r;
	return rt_shim_resize_pty(c->shim, NULL, width, height, ret_err);
}

/* Stop and delete the task and the shim. */
static int teardown_task(struct rt_container *c, bool force, struct strata_error **ret_err)
{
	struct rt_shim_params sp;
	struct rt_task_state st;
	_cleanup_error_ struct strata_error *err = NULL;
	int r;

	container_shim_params(c, &sp);
	if (!c->shim && (!rec_str(c, "shim_address") || (c->created_here && !c->shim_spawned)))
		return 0; /* never got that far */
	r = ensure_shim(c, &err);
	if (r < 0) {
		/* The shim is gone: let its `delete` clean up runc's state. */
		log_debug("shim of %s unreachable (%s): cleaning up", sp.id,
		          strata_error_message(err));
		return rt_shim_cleanup_dead(&sp, NULL, ret_err);
	}
	/* After our own Wait the task is stopped: no need to ask. */
	if (c->exited) {
		r = 0;
		st.status = RT_TASK_STOPPED;
	} else {
		r = rt_shim_state(c->shim, NULL, &st, &err);
	}
	if (r >= 0 && (st.status == RT_TASK_RUNNING || st.status == RT_TASK_PAUSED ||
	               st.status == RT_TASK_PAUSING)) {
		if (!force)
			return strata_error_set(ret_err, -EBUSY,
			                        "container %s is running: stop it first, or "
			                        "remove it with force",
			                        sp.id);
		r = rt_shim_kill(c->shim, NULL, SIGKILL, true, ret_err);
		if (r < 0 && r != -ENOENT)
			return r;
		uint32_t status;
		r = rt_shim_wait(c->shim, NULL, &status, ret_err);
		if (r < 0)
			return r;
	}
	if (r >= 0) {
		strata_error_free(err);
		err = NULL;
		r = rt_shim_delete(c->shim, NULL, NULL, &err);
		if (r < 0 && r != -ENOENT)
			log_debug("delete task %s: %s", sp.id, strata_error_message(err));
	}
	log_debug("container %s: task deleted", sp.id);
	rt_stdio_finish(c->io, 1000);
	strata_error_free(err);
	err = NULL;
	c->shim_exit_fd = safe_close(c->shim_exit_fd);
	(void)rt_shim_shutdown(c->shim, &c->shim_exit_fd, NULL);
	log_debug("container %s: shim shut down", sp.id);
	c->shim = rt_shim_free(c->shim);
	return 0;
}

/* The shim removes its socket path on its way out, after answering
 * Shutdown (see rt_shim_shutdown): wait for it to be gone before the id can
 * be used again (the bundle dir goes after this), then remove the path in
 * case it did not. Called after the network and rootfs teardown, which the
 * shim's exit overlaps. */
static void wait_shim_gone(struct rt_container *c)
{
	struct rt_shim_params sp;
	_cleanup_free_ char *sock = NULL;

	if (c->shim_exit_fd >= 0) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int r = rt_shim_wait_exit(c->shim_exit_fd, 3000);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		log_debug("container %s: shim exit waited for %.1f ms%s%s", rt_container_id(c),
		          (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
		          r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
		c->shim_exit_fd = safe_close(c->shim_exit_fd);
	}
	container_shim_params(c, &sp);
	if (sp.address && rt_shim_socket_address(&sp, &sock) >= 0)
		(void)unlink(sock + strlen("unix://"));
}

static int teardown_network(struct rt_container *c, struct strata_error **ret_err)
{
	const char *netns = rec_str(c, "netns");
	const char *nspath = rec_str(c, "netns_path");
	const char *net = rec_str(c, "net");
	const char *id = rt_container_id(c);
	int r = 0;

	if (net && streq(net, "bridge")) {
		_cleanup_free_ char *path = path_join(c->dir, "network.json");
		_cleanup_free_ char *s = NULL;
		if (path && path_read_file_at(AT_FDCWD, path, 1 << 20, &s, NULL) >= 0) {
			_cleanup_json_ json_t *j = json_loads(s, 0, NULL);
			_cleanup_free_ char *conflist =
			        json_dumps(json_object_get(j, "conflist"), JSON_COMPACT);
			_cleanup_free_ char *result =
			        json_object_get(j, "result")
			                ? json_dumps(json_object_get(j, "result"), JSON_COMPACT)
			                : NULL;
			struct rt_cni_config cni = c->cni;
			if (!cni.plugin_path)
				cni.plugin_path = json_get_str(j, "plugin_path");
			/* Ports for portmap's DEL come from the record. */
			json_t *pj = json_get_array(c->rec, "ports");
			size_t n = json_array_size(pj);
			_cleanup_free_ struct rt_port_mapping *ports =
			        n ? calloc(n, sizeof(*ports)) : NULL;
			for (size_t i = 0; ports && i < n; i++) {
				json_t *m = json_array_get(pj, i);
				ports[i] = (struct rt_port_mapping){
				        .host_port = (uint16_t)json_get_int(m, "hostPort", 0),
				        .container_port =
				                (uint16_t)json_get_int(m, "containerPort", 0),
				        .protocol = json_get_str(m, "protocol"),
				        .host_ip = json_get_str(m, "hostIP"),
				};
			}
			if (conflist && json_object_get(j, "conflist"))
				r = rt_cni_del(&cni, conflist, id, nspath, "eth0", ports,
				               ports ? n : 0, result, ret_err);
		}
	}
	if (netns) {
		int k = rt_netns_remove(netns, ret_err);
		if (r >= 0)
			r = k;
	}
	return r;
}

static int unmount_rootfs(struct rt_container *c, struct strata_error **ret_err)
{
	_cleanup_free_ char *rootfs = NULL;

	if (!json_is_true(json_object_get(c->rec, "rootfs_mounted")))
		return 0;
	rootfs = path_join(c->dir, "rootfs");
	if (!rootfs)
		return -ENOMEM;
	while (umount2(rootfs, 0) == 0)
		; /* stacked mounts */
	if (umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return strata_error_set_errno(ret_err, negative_errno(), "unmount \"%s\"", rootfs);
	/* Only in memory: after a crash, unmounting again finds nothing. */
	json_object_del(c->rec, "rootfs_mounted");
	return 0;
}

int rt_container_release_rootfs(struct rt_container *c, struct strata_error **ret_err)
{
	struct rt_task_state st;
	int r;

	if (!c->exited) {
		r = ensure_shim(c, ret_err);
		if (r < 0)
			return r;
		r = rt_shim_state(c->shim, NULL, &st, ret_err);
		if (r < 0)
			return r;
		if (st.status != RT_TASK_STOPPED)
			return strata_error_set(ret_err, -EBUSY, "container %s is %s",
			                        rt_container_id(c),
			                        rt_task_status_to_string(st.status));
	}
	r = unmount_rootfs(c, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "release the rootfs of %s",
		                           rt_container_id(c));
	return 0;
}

int rt_container_delete(struct rt_container *c, bool force, struct strata_error **ret_err)
{
	const char *id = c ? rt_container_id(c) : NULL;
	const char *log_dir = c ? rec_str(c, "log_dir") : NULL;
	int r, first = 0;

	if (!c || !c->dir)
		return 0;
	r = teardown_task(c, force, ret_err);
	if (r == -EBUSY)
		return r;
	if (r < 0)
		first = r;
	r = teardown_network(c, first < 0 ? NULL : ret_err);
	if (r < 0 && !first)
		first = r;
	r = unmount_rootfs(c, first < 0 ? NULL : ret_err);
	if (r < 0 && !first)
		first = r;
	wait_shim_gone(c);
	if (first < 0 && !force)
		return strata_error_prefix(ret_err, first, "remove container %s", strempty(id));
	/* rm -rf refuses to cross a mount: a rootfs still mounted stays. */
	r = id ? remove_tree(c->base, id) : -EINVAL;
	if (r < 0 && !first)
		first = strata_error_set_errno(ret_err, r, "remove \"%s\"", c->dir);
	if (log_dir) {
		_cleanup_free_ char *parent = NULL;
		const char *name = NULL;
		r = path_split(log_dir, &parent, &name);
		if (r >= 0)
			r = remove_tree(parent, name);
		if (r < 0 && !first)
			first = strata_error_set_errno(ret_err, r, "remove \"%s\"", log_dir);
	}
	if (first < 0)
		return strata_error_prefix(ret_err, first, "remove container %s", strempty(id));
	return 0;
}

/* --- loading, listing -------------------------------------------------------- */

static int load_dir(const char *base, const char *id, struct rt_container **ret,
                    struct strata_error **ret_err)
{
	_cleanup_(rt_container_freep) struct rt_container *c = calloc(1, sizeof(*c));
	_cleanup_free_ char *path = NULL, *s = NULL;
	int r;

	if (!c)
		return -ENOMEM;
	c->shim_exit_fd = -1;
	c->base = strdup(base);
	c->dir = path_join(base, id);
	if (!c->base || !c->dir)
		return -ENOMEM;
	path = path_join(c->dir, "strata.json");
	if (!path)
		return -ENOMEM;
	r = path_read_file_at(AT_FDCWD, path, 1 << 20, &s, NULL);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "container %s", id);
	r = json_parse(s, strlen(s), path, &c->rec, ret_err);
	if (r < 0)
		return r;
	if (!rt_container_id(c) || !streq(rt_container_id(c), id))
		return strata_error_set(ret_err, -EBADMSG, "\"%s\": id mismatch", path);
	*ret = TAKE_PTR(c);
	return 0;
}

int rt_container_list(const char *state_dir, char ***ret_ids, struct strata_error **ret_err)
{
	_cleanup_free_ char *base = path_join(state_dir, CONTAINERS_DIR);
	DIR *d;
	struct dirent *de;
	char **ids = NULL;
	size_t n = 0;

	if (!base)
		return -ENOMEM;
	d = opendir(base);
	if (!d && errno != ENOENT)
		return strata_error_set_errno(ret_err, negative_errno(), "open \"%s\"", base);
	while (d && (de = readdir(d))) {
		struct stat st;
		_cleanup_free_ char *rec = NULL;
		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&rec, "%s/%s/strata.json", base, de->d_name) < 0 || stat(rec, &st) < 0)
			continue;
		char **nv = realloc(ids, (n + 2) * sizeof(char *));
		if (!nv)
			break;
		ids = nv;
		ids[n] = strdup(de->d_name);
		if (ids[n])
			n++;
	}
	if (d)
		closedir(d);
	if (!ids)
		ids = calloc(1, sizeof(char *));
	if (!ids)
		return -ENOMEM;
	ids[n] = NULL;
	*ret_ids = ids;
	return 0;
}

int rt_container_load(const char *state_dir, const char *id, struct rt_container **ret,
                      struct strata_error **ret_err)
{
	_cleanup_free_ char *base = path_join(state_dir, CONTAINERS_DIR);
	char **ids = NULL;
	_cleanup_free_ char *match = NULL;
	int r, n = 0;

	if (!id || !*id || strchr(id, '/'))
		return strata_error_set(ret_err, -EINVAL, "invalid container id \"%s\"",
		                        strempty(id));
	if (!base)
		return -ENOMEM;
	r = load_dir(base, id, ret, NULL);
	if (r >= 0)
		return 0;
	/* A unique prefix, or a name. */
	r = rt_container_list(state_dir, &ids, ret_err);
	if (r < 0)
		return r;
	for (size_t i = 0; ids[i]; i++) {
		bool hit = strncmp(ids[i], id, strlen(id)) == 0;
		if (!hit) {
			struct rt_container *c = NULL;
			if (load_dir(base, ids[i], &c, NULL) >= 0) {
				hit = streq_ptr(rec_str(c, "name"), id);
				rt_container_free(c);
			}
		}
		if (hit) {
			n++;
			free(match);
			match = strdup(ids[i]);
		}
	}
	for (size_t i = 0; ids[i]; i++)
		free(ids[i]);
	free(ids);
	if (n == 0)
		return strata_error_set(ret_err, -ENOENT, "no such container: %s", id);
	if (n > 1)
		return strata_error_set(ret_err, -EINVAL, "\"%s\" matches %d containers", id, n);
	if (!match)
		return -ENOMEM;
	return load_dir(base, match, ret, ret_err);
}

void rt_container_info_done(struct rt_container_info *i)
{
	free(i->id);
	free(i->name);
	free(i->image);
	free(i->command);
	free(i->created);
	free(i->ip);
	*i = (struct rt_container_info){0};
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int rt_container_inspect(struct rt_container *c, struct rt_container_info *ret,
                         struct strata_error **ret_err)
{
	struct rt_task_state st = {0};
	int r;

	*ret = (struct rt_container_info){
	        .id = dup_or_null(rt_container_id(c)),
	        .name = dup_or_null(rec_str(c, "name")),
	        .image = dup_or_null(rec_str(c, "image")),
	        .command = dup_or_null(rec_str(c, "command")),
	        .created = dup_or_null(rec_str(c, "created")),
	        .ip = dup_or_null(rec_str(c, "ip")),
	        .exit_code = (int)json_get_int(c->rec, "exit_code", -1),
	        .pid = (uint32_t)json_get_int(c->rec, "pid", 0),
	        .exited_at = json_get_int(c->rec, "exited_at", 0),
	};
	/* Connect answers whether or not the shim has a task yet (between
	 * rt_container_begin and Create it has none). */
	r = ensure_shim(c, NULL);
	if (r >= 0 && rt_shim_connect_task(c->shim, &ret->shim_pid, NULL, NULL) >= 0) {
		ret->shim_alive = true;
		ret->status = RT_TASK_UNKNOWN;
		if (rt_shim_state(c->shim, NULL, &st, NULL) >= 0) {
			ret->status = st.status;
			ret->pid = st.pid;
			if (st.status == RT_TASK_STOPPED) {
				ret->exit_code = (int)st.exit_status;
				if (st.exited_at > 0)
					ret->exited_at = st.exited_at;
			}
		}
	} else {
		c->shim = rt_shim_free(c->shim);
		ret->status = RT_TASK_UNKNOWN;
		ret->shim_pid = 0;
	}
	(void)ret_err;
	return 0;
}
