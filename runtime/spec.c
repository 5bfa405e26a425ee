/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.json (OCI runtime spec 1.0) from an image config and run options,
 * with the defaults containerd (oci/spec.go populateDefaultUnixSpec) and
 * nerdctl apply: capabilities, rlimits, noNewPrivileges, default mounts,
 * namespaces, masked and read-only paths, device cgroup rules, cgroupsPath.
 *
 * Precedence, lowest first: the default PATH, the image's Env, --env-file,
 * -e; each replaces an earlier value of the same key. Args are Entrypoint +
 * (user args, or Cmd when the user gave none); --entrypoint drops Cmd.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "runtime.h"

#define DEFAULT_PATH_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *const default_caps[] = {
        "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
        "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
        "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
        "CAP_KILL",    "CAP_AUDIT_WRITE",
};

static const char *const masked_paths[] = {
        "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/sys/firmware",       "/proc/scsi",
};

static const char *const readonly_paths[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

struct default_mount {
	const char *dest, *type, *source;
	const char *opts[8];
};

static const struct default_mount default_mounts[] = {
        {"/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}},
        {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}},
        {"/dev/pts",
         "devpts",
         "devpts",
         {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
        {"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
        {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}},
        {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}},
        {"/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}},
};

/* {type, major, minor (-1 = any)} allowed rwm after "deny all". */
static const struct {
	char type;
	int major, minor;
} allowed_devices[] = {
        {'c', 1, 3}, {'c', 1, 5}, {'c', 1, 7}, {'c', 1, 8},    {'c', 1, 9},
        {'c', 5, 0}, {'c', 5, 1}, {'c', 5, 2}, {'c', 136, -1},
};

static json_t *str_array(const char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n && v[i]; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* --- env: a list of "K=V" strings, replaced by key ---------------------- */

struct env {
	char **v;
	size_t n;
};

static void env_done(struct env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
}

static size_t key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

static int env_set(struct env *e, const char *kv)
{
	size_t k = key_len(kv);
	char *copy = strdup(kv);
	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < e->n; i++)
		if (key_len(e->v[i]) == k && strncmp(e->v[i], kv, k) == 0) {
			free(e->v[i]);
			e->v[i] = copy;
			return 0;
		}
	char **n = realloc(e->v, (e->n + 1) * sizeof(char *));
	if (!n) {
		free(copy);
		return -ENOMEM;
	}
	e->v = n;
	e->v[e->n++] = copy;
	return 0;
}

static bool env_has(const struct env *e, const char *key)
{
	size_t k = strlen(key);
	for (size_t i = 0; i < e->n; i++)
		if (key_len(e->v[i]) == k && strncmp(e->v[i], key, k) == 0)
			return true;
	return false;
}

/* A user-given entry: "K=V", or "K" meaning "K's value in our environment,
 * if set" (docker's rule). */
static int env_set_user(struct env *e, const char *kv, const char *what,
                        struct strata_error **ret_err)
{
	if (!*kv || *kv == '=')
		return strata_error_set(ret_err, -EINVAL, "%s: invalid environment entry \"%s\"",
		                        what, kv);
	if (strchr(kv, '='))
		return env_set(e, kv);
	const char *v = getenv(kv);
	if (!v)
		return 0;
	_cleanup_free_ char *full = NULL;
	if (asprintf(&full, "%s=%s", kv, v) < 0)
		return -ENOMEM;
	return env_set(e, full);
}

static int env_file(struct env *e, const char *path, struct strata_error **ret_err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f)
		return strata_error_set_errno(ret_err, negative_errno(), "env file \"%s\"", path);
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *s = line;
		while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
			s[--n] = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			continue;
		int r = env_set_user(e, s, path, ret_err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* --- pieces of the spec ---------------------------------------------------- */

static int append_strings(json_t *arr, const json_t *src)
{
	size_t i;
	json_t *v;
	json_array_foreach (src, i, v) {
		if (!json_is_string(v))
			return -EINVAL;
		json_array_append(arr, v);
	}
	return 0;
}

static int build_args(const json_t *img, const struct rt_spec_opts *o, json_t **ret,
                      struct strata_error **ret_err)
{
	_cleanup_json_ json_t *args = json_array();
	json_t *entry = json_get_array(img, "Entrypoint");
	json_t *cmd = json_get_array(img, "Cmd");

	if (!args)
		return -ENOMEM;
	if (o->entrypoint) {
		if (*o->entrypoint)
			json_array_append_new(args, json_string(o->entrypoint));
		cmd = NULL;
	} else if (entry && append_strings(args, entry) < 0) {
		return strata_error_set(ret_err, -EINVAL,
		                        "image config: Entrypoint is not a list of strings");
	}
	if (o->args && o->args[0]) {
		for (size_t i = 0; o->args[i]; i++)
			json_array_append_new(args, json_string(o->args[i]));
	} else if (cmd && append_strings(args, cmd) < 0) {
		return strata_error_set(ret_err, -EINVAL,
		                        "image config: Cmd is not a list of strings");
	}
	if (json_array_size(args) == 0)
		return strata_error_set(ret_err, -EINVAL,
		                        "no command: the image has no Entrypoint or Cmd, give one");
	*ret = TAKE_PTR(args);
	return 0;
}

/* What the user sets over the image's or container's environment, in
 * docker's order: --env-file (when given), then each -e; then TERM for a
 * terminal unless set. */
static int env_set_overrides(struct env *e, const char *file, char *const *env, bool tty,
                             struct strata_error **ret_err)
{
	int r;

	if (file) {
		r = env_file(e, file, ret_err);
		if (r < 0)
			return r;
	}
	for (size_t k = 0; env && env[k]; k++) {
		r = env_set_user(e, env[k], "-e", ret_err);
		if (r < 0)
			return r;
	}
	if (tty && !env_has(e, "TERM")) {
		r = env_set(e, "TERM=xterm");
		if (r < 0)
			return r;
	}
	return 0;
}

static int build_env(const json_t *img, const struct rt_spec_opts *o, json_t **ret,
                     struct strata_error **ret_err)
{
	_cleanup_(env_done) struct env e = {0};
	json_t *ienv = json_get_array(img, "Env");
	size_t i;
	json_t *v;
	int r;

	r = env_set(&e, DEFAULT_PATH_ENV);
	if (r < 0)
		return r;
	json_array_foreach (ienv, i, v) {
		if (!json_is_string(v) || !strchr(json_string_value(v), '='))
			continue; /* tolerated by containerd too */
		r = env_set(&e, json_string_value(v));
		if (r < 0)
			return r;
	}
	r = env_set_overrides(&e, o->env_file, o->env, o->tty, ret_err);
	if (r < 0)
		return r;
	*ret = str_array((const char *const *)e.v, e.n);
	return *ret ? 0 : -ENOMEM;
}

static json_t *caps_object(void)
{
	json_t *c = json_object();
	json_object_set_new(c, "bounding", str_array(default_caps, ELEMENTSOF(default_caps)));
	json_object_set_new(c, "permitted", str_array(default_caps, ELEMENTSOF(default_caps)));
	json_object_set_new(c, "effective", str_array(default_caps, ELEMENTSOF(default_caps)));
	return c;
}

static json_t *mount_obj(const char *dest, const char *type, const char *source,
                         const char *const *opts, size_t n_opts)
{
	return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type, "source",
	                 source, "options", str_array(opts, n_opts));
}

static int build_mounts(const struct rt_spec_opts *o, json_t **ret, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *m = json_array();

	for (size_t i = 0; i < ELEMENTSOF(default_mounts); i++) {
		const struct default_mount *d = &default_mounts[i];
		json_array_append_new(
		        m, mount_obj(d->dest, d->type, d->source, d->opts, ELEMENTSOF(d->opts)));
	}
	static const char *const bind_ro[] = {"rbind", "rprivate", "ro"};
	static const char *const bind_rw[] = {"rbind", "rprivate"};
	const struct {
		const char *file, *dest;
	} files[] = {
	        {o->resolv_conf, "/etc/resolv.conf"},
	        {o->hosts_file, "/etc/hosts"},
	        {o->hostname_file, "/etc/hostname"},
	};
	for (size_t i = 0; i < ELEMENTSOF(files); i++)
		if (files[i].file)
			json_array_append_new(m, mount_obj(files[i].dest, "bind", files[i].file,
			                                   bind_rw, ELEMENTSOF(bind_rw)));
	for (size_t i = 0; i < o->n_volumes; i++) {
		const struct rt_volume *v = &o->volumes[i];
		struct stat st;
		if (!v->host || v->host[0] != '/' || !v->container || v->container[0] != '/')
			return strata_error_set(ret_err, -EINVAL,
			                        "volume %s:%s: both paths must be absolute",
			                        strempty(v->host), strempty(v->container));
		if (stat(v->host, &st) < 0)
			return strata_error_set_errno(ret_err, negative_errno(), "volume \"%s\"",
			                              v->host);
		json_array_append_new(m, mount_obj(v->container, "bind", v->host,
		                                   v->readonly ? bind_ro : bind_rw,
		                                   v->readonly ? 3 : 2));
	}
	*ret = TAKE_PTR(m);
	return 0;
}

static json_t *build_linux(const struct rt_spec_opts *o)
{
	json_t *lx = json_object();
	json_t *ns = json_array();
	json_t *devs = json_array();
	_cleanup_free_ char *cg = NULL;

	json_array_append_new(ns, json_pack("{s:s}", "type", "pid"));
	json_array_append_new(ns, json_pack("{s:s}", "type", "ipc"));
	if (o->net != RT_NET_HOST)
		json_array_append_new(ns, json_pack("{s:s}", "type", "uts"));
	json_array_append_new(ns, json_pack("{s:s}", "type", "mount"));
	if (o->net != RT_NET_HOST) {
		if (o->netns_path)
			json_array_append_new(ns, json_pack("{s:s, s:s}", "type", "network", "path",
			                                    o->netns_path));
		else
			json_array_append_new(ns, json_pack("{s:s}", "type", "network"));
	}
	json_object_set_new(lx, "namespaces", ns);

	json_array_append_new(devs, json_pack("{s:b, s:s}", "allow", 0, "access", "rwm"));
	for (size_t i = 0; i < ELEMENTSOF(allowed_devices); i++) {
		char type[2] = {allowed_devices[i].type, 0};
		json_t *d = json_pack("{s:b, s:s, s:i, s:s}", "allow", 1, "type", type, "major",
		                      allowed_devices[i].major, "access", "rwm");
		if (allowed_devices[i].minor >= 0)
			json_object_set_new(d, "minor", json_integer(allowed_devices[i].minor));
		json_array_append_new(devs, d);
	}
	json_object_set_new(lx, "resources", json_pack("{s:o}", "devices", devs));
	if (asprintf(&cg, "/%s/%s", o->ns ? o->ns : RT_DEFAULT_NAMESPACE, o->id) >= 0)
		json_object_set_new(lx, "cgroupsPath", json_string(cg));
	json_object_set_new(lx, "maskedPaths", str_array(masked_paths, ELEMENTSOF(masked_paths)));
	json_object_set_new(lx, "readonlyPaths",
	                    str_array(readonly_paths, ELEMENTSOF(readonly_paths)));
	return lx;
}

static int build_user(const json_t *img, int rootfs_fd, const struct rt_spec_opts *o, json_t **ret,
                      struct strata_error **ret_err)
{
	const char *spec = o->user ? o->user : json_get_str(img, "User");
	struct rt_user u = {0};
	json_t *gids;
	int r;

	r = rt_user_resolve(rootfs_fd, spec, &u, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "user \"%s\"", strempty(spec));
	*ret = json_pack("{s:I, s:I}", "uid", (json_int_t)u.uid, "gid", (json_int_t)u.gid);
	if (u.n_additional_gids > 0) {
		gids = json_array();
		for (size_t i = 0; i < u.n_additional_gids; i++)
			json_array_append_new(gids, json_integer(u.additional_gids[i]));
		json_object_set_new(*ret, "additionalGids", gids);
	}
	rt_user_done(&u);
	return *ret ? 0 : -ENOMEM;
}

/* runc sizes the pty before the process starts: a program that asks at
 * once (stty size) sees the caller's size, not 0 0 until ResizePty lands. */
static void set_console_size(json_t *proc, bool tty, unsigned width, unsigned height)
{
	if (tty && width > 0 && height > 0)
		json_object_set_new(proc, "consoleSize",
		                    json_pack("{s:I, s:I}", "height", (json_int_t)height, "width",
		                              (json_int_t)width));
	else
		json_object_del(proc, "consoleSize");
}

static bool valid_id(const char *id)
{
	if (!id || !*id || strlen(id) > 128)
		return false;
	for (const char *p = id; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '_' && *p != '-' && *p != '.')
			return false;
	return id[0] != '.';
}

int rt_spec_generate(const char *image_config, int rootfs_fd, const struct rt_spec_opts *o,
                     char **ret_json, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *parsed = NULL, *spec = NULL;
	json_t *img = NULL, *args = NULL, *env = NULL, *user = NULL, *mounts = NULL;
	const char *cwd;
	_cleanup_free_ char *hostname = NULL;
	int r;

	if (!valid_id(o->id))
		return strata_error_set(ret_err, -EINVAL, "invalid container id \"%s\"",
		                        strempty(o->id));
	if (image_config && *image_config) {
		r = json_parse(image_config, strlen(image_config), "image config", &parsed,
		               ret_err);
		if (r < 0)
			return r;
		if (!json_is_object(parsed))
			return strata_error_set(ret_err, -EINVAL, "image config is not an object");
		img = json_get_obj(parsed, "config");
		if (!img && !json_get_obj(parsed, "rootfs"))
			img = parsed; /* given the "config" object itself */
	}

	r = build_args(img, o, &args, ret_err);
	if (r < 0)
		return r;
	spec = json_object();
	json_t *proc = json_object();
	json_object_set_new(spec, "ociVersion", json_string("1.0.2-dev"));
	json_object_set_new(spec, "process", proc);
	json_object_set_new(proc, "terminal", json_boolean(o->tty));
	set_console_size(proc, o->tty, o->console_width, o->console_height);
	json_object_set_new(proc, "args", args);

	r = build_env(img, o, &env, ret_err);
	if (r < 0)
		return r;
	json_object_set_new(proc, "env", env);

	cwd = o->cwd ? o->cwd : json_get_str(img, "WorkingDir");
	if (!cwd || !*cwd)
		cwd = "/";
	if (cwd[0] != '/')
		return strata_error_set(ret_err, -EINVAL,
		                        "working directory \"%s\" must be absolute", cwd);
	json_object_set_new(proc, "cwd", json_string(cwd));

	r = build_user(img, rootfs_fd, o, &user, ret_err);
	if (r < 0)
		return r;
	json_object_set_new(proc, "user", user);
	json_object_set_new(proc, "capabilities", caps_object());
	json_object_set_new(proc, "rlimits",
	                    json_pack("[{s:s, s:i, s:i}]", "type", "RLIMIT_NOFILE", "hard", 1024,
	                              "soft", 1024));
	json_object_set_new(proc, "noNewPrivileges", json_true());

	json_object_set_new(spec, "root",
	                    json_pack("{s:s, s:b}", "path", o->root_path ? o->root_path : "rootfs",
	                              "readonly", o->readonly_rootfs));
	if (o->net != RT_NET_HOST) {
		if (o->hostname)
			hostname = strdup(o->hostname);
		else
			hostname = strndup(o->id, 12);
		if (!hostname)
			return -ENOMEM;
		json_object_set_new(spec, "hostname", json_string(hostname));
	}

	r = build_mounts(o, &mounts, ret_err);
	if (r < 0)
		return r;
	json_object_set_new(spec, "mounts", mounts);
	json_object_set_new(spec, "linux", build_linux(o));

	*ret_json = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	return *ret_json ? 0 : -ENOMEM;
}

int rt_volume_parse(const char *s, struct rt_volume *ret, struct strata_error **ret_err)
{
	_cleanup_free_ char *copy = strdup(s ? s : "");
	char *host, *ctr, *mode;

	if (!copy)
		return -ENOMEM;
	host = copy;
	ctr = strchr(host, ':');
	if (!ctr || ctr == host)
		return strata_error_set(ret_err, -EINVAL, "volume \"%s\": want HOST:CONTAINER[:ro]",
		                        s);
	*ctr++ = '\0';
	mode = strchr(ctr, ':');
	if (mode)
		*mode++ = '\0';
	if (ctr[0] != '/')
		return strata_error_set(ret_err, -EINVAL,
		                        "volume \"%s\": container path must be absolute", s);
	if (mode && !streq(mode, "ro") && !streq(mode, "rw"))
		return strata_error_set(ret_err, -EINVAL, "volume \"%s\": mode must be ro or rw",
		                        s);
	*ret = (struct rt_volume){0};
	if (host[0] == '/') {
		ret->host = strdup(host);
	} else {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		ret->host = cwd ? path_join(cwd, host) : NULL;
	}
	ret->container = strdup(ctr);
	ret->readonly = mode && streq(mode, "ro");
	if (!ret->host || !ret->container) {
		rt_volume_done(ret);
		return -ENOMEM;
	}
	return 0;
}

void rt_volume_done(struct rt_volume *v)
{
	free(v->host);
	free(v->container);
	*v = (struct rt_volume){0};
}

int rt_spec_exec_process(const char *container_spec, int rootfs_fd, const struct rt_exec_opts *o,
                         char **ret_json, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *spec = NULL, *proc = NULL;
	_cleanup_(env_done) struct env e = {0};
	json_t *args, *v;
	size_t i;
	int r;

	if (!o->args || !o->args[0])
		return strata_error_set(ret_err, -EINVAL, "exec: no command");
	r = json_parse(container_spec, strlen(container_spec), "config.json", &spec, ret_err);
	if (r < 0)
		return r;
	if (!json_is_object(json_object_get(spec, "process")))
		return strata_error_set(ret_err, -EINVAL, "config.json has no process");
	/* Everything else (capabilities, rlimits, noNewPrivileges, apparmor)
	 * as the container's own process has it, as nerdctl and docker do. */
	proc = json_deep_copy(json_object_get(spec, "process"));
	args = json_array();
	if (!proc || !args) {
		json_decref(args);
		return -ENOMEM;
	}
	for (size_t k = 0; o->args[k]; k++)
		json_array_append_new(args, json_string(o->args[k]));
	json_object_set_new(proc, "args", args);
	json_object_set_new(proc, "terminal", json_boolean(o->tty));
	set_console_size(proc, o->tty, o->console_width, o->console_height);

	json_array_foreach (json_get_array(proc, "env"), i, v) {
		if (!json_is_string(v))
			continue;
		r = env_set(&e, json_string_value(v));
		if (r < 0)
			return r;
	}
	r = env_set_overrides(&e, NULL, o->env, o->tty, ret_err);
	if (r < 0)
		return r;
	json_object_set_new(proc, "env", str_array((const char *const *)e.v, e.n));

	if (o->cwd) {
		if (o->cwd[0] != '/')
			return strata_error_set(ret_err, -EINVAL,
			                        "working directory \"%s\" must be absolute",
			                        o->cwd);
		json_object_set_new(proc, "cwd", json_string(o->cwd));
	}
	if (o->user) {
		struct rt_spec_opts uo = {.user = o->user};
		json_t *user = NULL;
		r = build_user(NULL, rootfs_fd, &uo, &user, ret_err);
		if (r < 0)
			return r;
		json_object_set_new(proc, "user", user);
	}
	*ret_json = json_dumps(proc, JSON_COMPACT | JSON_PRESERVE_ORDER);
	return *ret_json ? 0 : -ENOMEM;
}
