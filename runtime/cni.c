/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CNI 1.0 plugin chains (containernetworking SPEC.md), run directly: each
 * plugin is a binary given CNI_* variables and the network config on stdin.
 *
 * ADD runs the list in order, each plugin seeing the previous one's result
 * as prevResult; the final result is returned for the caller to store. DEL
 * runs the list in reverse with that stored result, continues past failing
 * plugins (to undo as much as possible), and is idempotent: it must work
 * after a crash, after a partial ADD, and twice.
 *
 * Strata's default network "strata" has the shape of nerdctl's "bridge":
 * bridge strata0 as gateway with masquerade and hairpin, host-local IPAM on
 * 10.4.88.0/24 (clear of containerd's 10.88.0.0/16 and nerdctl's
 * 10.4.0.0/24), portmap, firewall, tuning.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "json.h"
#include "runtime.h"

#define CONFLIST_NAME "strata.conflist"
#define CNI_VERSION   "1.0.0"
#define DEFAULT_PATH  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

char *rt_cni_default_conflist(void)
{
	_cleanup_json_ json_t *j = json_pack(
	        "{s:s, s:s, s:[{s:s, s:s, s:b, s:b, s:b, s:{s:s, s:[[{s:s, s:s}]], s:[{s:s}]}},"
	        " {s:s, s:{s:b}}, {s:s}, {s:s}]}",
	        "cniVersion", CNI_VERSION, "name", RT_CNI_NETWORK, "plugins",
	        /* bridge */
	        "type", "bridge", "bridge", RT_CNI_BRIDGE, "isGateway", 1, "ipMasq", 1,
	        "hairpinMode", 1, "ipam", "type", "host-local", "ranges", "subnet", RT_CNI_SUBNET,
	        "gateway", RT_CNI_GATEWAY, "routes", "dst", "0.0.0.0/0",
	        /* portmap */
	        "type", "portmap", "capabilities", "portMappings", 1,
	        /* firewall, tuning */
	        "type", "firewall", "type", "tuning");
	return j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
}

int rt_cni_load_conflist(const struct rt_cni_config *cfg, char **ret_json,
                         struct strata_error **ret_err)
{
	const char *dir = cfg && cfg->conf_dir ? cfg->conf_dir : RT_DEFAULT_CNI_CONF;
	_cleanup_free_ char *path = path_join(dir, CONFLIST_NAME);
	_cleanup_free_ char *def = NULL;
	_cleanup_close_ int dfd = -1;
	int r;

	if (!path)
		return -ENOMEM;
	r = path_read_file_at(AT_FDCWD, path, 1 << 20, ret_json, NULL);
	if (r >= 0)
		return 0;
	if (r != -ENOENT)
		return strata_error_set_errno(ret_err, r, "read \"%s\"", path);
	/* First use: write ours so that it can be inspected and edited. */
	def = rt_cni_default_conflist();
	if (!def)
		return -ENOMEM;
	r = path_mkdir_p(dir, 0755);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "create \"%s\"", dir);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "open \"%s\"", dir);
	r = path_write_file_atomic_at(dfd, CONFLIST_NAME, def, strlen(def), 0644);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "write \"%s\"", path);
	*ret_json = TAKE_PTR(def);
	return 0;
}

static int find_plugin(const char *plugin_path, const char *type, char **ret,
                       struct strata_error **ret_err)
{
	_cleanup_free_ char *copy = strdup(plugin_path);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	if (!*type || strchr(type, '/'))
		return strata_error_set(ret_err, -EINVAL, "invalid CNI plugin type \"%s\"", type);
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *p = path_join(d, type);
		if (!p)
			return -ENOMEM;
		if (access(p, X_OK) == 0) {
			*ret = TAKE_PTR(p);
			return 0;
		}
	}
	return strata_error_set(ret_err, -ENOENT,
	                        "CNI plugin \"%s\" not found in %s: install it with "
	                        "'apt-get install containernetworking-plugins'",
	                        type, plugin_path);
}

static int memfd_with(const char *name, const char *data)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (data) {
		int r = loop_write(fd, data, strlen(data));
		if (r < 0 || lseek(fd, 0, SEEK_SET) < 0) {
			safe_close(fd);
			return r < 0 ? r : negative_errno();
		}
	}
	return fd;
}

static char *read_all_fd(int fd)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;
	for (;;) {
		if (len + 4097 > cap) {
			char *n = realloc(buf, cap = cap ? cap * 2 : 8192);
			if (!n) {
				free(buf);
				return NULL;
			}
			buf = n;
		}
		ssize_t k = read(fd, buf + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	if (buf)
		buf[len] = '\0';
	return buf ? buf : strdup("");
}

struct invoke {
	const char *command; /* ADD / DEL / CHECK */
	const char *container_id;
	const char *netns;
	const char *ifname;
	const char *plugin_path;
};

/* Turn a failed plugin run into a message: the CNI error object when the
 * plugin printed one, its raw output otherwise. */
static int plugin_error(const char *type, const struct invoke *iv, int status, const char *out,
                        const char *err_out, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *j = json_loads(out, 0, NULL);
	const char *msg = json_get_str(j, "msg");
	const char *details = json_get_str(j, "details");
	int64_t code = json_get_int(j, "code", 0);
	int r = code == 3                ? -ENOENT
	        : code == 7 || code == 6 ? -EINVAL
	        : code == 11             ? -EAGAIN
	                                 : -EIO;

	if (msg)
		return strata_error_set(ret_err, r,
		                        "CNI plugin %s %s failed: %s%s%s (code %" PRId64 ")", type,
		                        iv->command, msg, details && *details ? ": " : "",
		                        details ? details : "", code);
	return strata_error_set(ret_err, r, "CNI plugin %s %s failed with status %d: %s%s", type,
	                        iv->command, status, out, err_out ? err_out : "");
}

/* Run one plugin; *ret_out gets its stdout (the result) on success. */
static int invoke_plugin(const struct invoke *iv, const char *type, const char *conf,
                         char **ret_out, struct strata_error **ret_err)
{
	_cleanup_free_ char *bin = NULL, *out = NULL, *err_out = NULL;
	_cleanup_free_ char *e_cmd = NULL, *e_id = NULL, *e_ns = NULL, *e_if = NULL, *e_path = NULL,
	                    *e_syspath = NULL;
	_cleanup_close_ int in = -1, errfd = -1;
	const char *sys_path = getenv("PATH");
	posix_spawn_file_actions_t fa;
	int pipefd[2], status, r;
	pid_t pid;

	r = find_plugin(iv->plugin_path, type, &bin, ret_err);
	if (r < 0)
		return r;
	if (asprintf(&e_cmd, "CNI_COMMAND=%s", iv->command) < 0 ||
	    asprintf(&e_id, "CNI_CONTAINERID=%s", iv->container_id) < 0 ||
	    asprintf(&e_ns, "CNI_NETNS=%s", strempty(iv->netns)) < 0 ||
	    asprintf(&e_if, "CNI_IFNAME=%s", iv->ifname) < 0 ||
	    asprintf(&e_path, "CNI_PATH=%s", iv->plugin_path) < 0 ||
	    asprintf(&e_syspath, "PATH=%s", sys_path && *sys_path ? sys_path : DEFAULT_PATH) < 0)
		return -ENOMEM;
	char *envp[] = {e_cmd,  e_id,      e_ns, e_if, (char *)"CNI_ARGS=IgnoreUnknown=1",
	                e_path, e_syspath, NULL};
	char *argv[] = {bin, NULL};

	in = memfd_with("cni-stdin", conf);
	errfd = memfd_with("cni-stderr", NULL);
	if (in < 0 || errfd < 0)
		return strata_error_set_errno(ret_err, in < 0 ? in : errfd, "memfd");
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return negative_errno();
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errfd, 2);
	r = -posix_spawn(&pid, bin, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	safe_close(pipefd[1]);
	if (r < 0) {
		safe_close(pipefd[0]);
		return strata_error_set_errno(ret_err, r, "run CNI plugin \"%s\"", bin);
	}
	out = read_all_fd(pipefd[0]);
	safe_close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return negative_errno();
	if (!out)
		return -ENOMEM;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (lseek(errfd, 0, SEEK_SET) == 0)
			err_out = read_all_fd(errfd);
		return plugin_error(
		        type, iv, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
		        out, err_out, ret_err);
	}
	log_debug("CNI %s %s: %s", type, iv->command, out);
	if (ret_out)
		*ret_out = TAKE_PTR(out);
	return 0;
}

/* The stdin of one plugin: its object from the list plus cniVersion, name,
 * runtimeConfig (for capabilities it declares) and prevResult. */
static char *plugin_conf(const json_t *list, const json_t *plugin, const json_t *prev,
                         const struct rt_port_mapping *ports, size_t n_ports)
{
	_cleanup_json_ json_t *c = json_deep_copy(plugin);
	json_t *caps;

	if (!c)
		return NULL;
	json_object_set(c, "cniVersion", json_object_get(list, "cniVersion"));
	json_object_set(c, "name", json_object_get(list, "name"));
	caps = json_get_obj(c, "capabilities");
	if (caps && json_is_true(json_object_get(caps, "portMappings")) && n_ports > 0) {
		json_t *pm = json_array();
		for (size_t i = 0; i < n_ports; i++) {
			json_t *m = json_pack("{s:i, s:i, s:s}", "hostPort", ports[i].host_port,
			                      "containerPort", ports[i].container_port, "protocol",
			                      ports[i].protocol ? ports[i].protocol : "tcp");
			if (ports[i].host_ip)
				json_object_set_new(m, "hostIP", json_string(ports[i].host_ip));
			json_array_append_new(pm, m);
		}
		json_object_set_new(c, "runtimeConfig", json_pack("{s:o}", "portMappings", pm));
	}
	json_object_del(c, "capabilities");
	if (prev)
		json_object_set(c, "prevResult", (json_t *)prev);
	return json_dumps(c, JSON_COMPACT);
}

static int parse_list(const char *conflist, json_t **ret, json_t **ret_plugins,
                      struct strata_error **ret_err)
{
	_cleanup_json_ json_t *list = NULL;
	json_t *plugins;
	int r;

	r = json_parse(conflist, strlen(conflist), "CNI conflist", &list, ret_err);
	if (r < 0)
		return r;
	plugins = json_get_array(list, "plugins");
	if (!json_get_str(list, "name") || !json_get_str(list, "cniVersion") || !plugins ||
	    json_array_size(plugins) == 0)
		return strata_error_set(ret_err, -EINVAL,
		                        "CNI conflist: needs name, cniVersion and plugins");
	for (size_t i = 0; i < json_array_size(plugins); i++)
		if (!json_get_str(json_array_get(plugins, i), "type"))
			return strata_error_set(ret_err, -EINVAL,
			                        "CNI conflist: plugin %zu has no type", i);
	*ret_plugins = plugins;
	*ret = TAKE_PTR(list);
	return 0;
}

static const char *plugin_dirs(const struct rt_cni_config *cfg)
{
	return cfg && cfg->plugin_path ? cfg->plugin_path : RT_DEFAULT_CNI_PATH;
}

static int run_del(const struct rt_cni_config *cfg, const json_t *list, const json_t *plugins,
                   size_t upto, const char *container_id, const char *netns_path,
                   const char *ifname, const struct rt_port_mapping *ports, size_t n_ports,
                   const json_t *prev, struct strata_error **ret_err)
{
	struct invoke iv = {"DEL", container_id, netns_path, ifname ? ifname : "eth0",
	                    plugin_dirs(cfg)};
	int first = 0;

	/* A removed netns is fine for DEL: plugins then only release what they
	 * hold on the host (IP reservation, iptables rules). */
	if (netns_path && access(netns_path, F_OK) < 0)
		iv.netns = "";
	for (size_t i = upto; i-- > 0;) {
		const json_t *p = json_array_get(plugins, i);
		_cleanup_free_ char *conf = plugin_conf(list, p, prev, ports, n_ports);
		struct strata_error *err = NULL;
		int r;

		if (!conf)
			return -ENOMEM;
		r = invoke_plugin(&iv, json_get_str(p, "type"), conf, NULL, &err);
		if (r < 0) {
			log_debug("CNI DEL %s: %s", json_get_str(p, "type"),
			          strata_error_message(err));
			if (!first) {
				first = r;
				strata_error_propagate(ret_err, &err);
			}
			strata_error_free(err);
		}
	}
	return first;
}

int rt_cni_add(const struct rt_cni_config *cfg, const char *conflist, const char *container_id,
               const char *netns_path, const char *ifname, const struct rt_port_mapping *ports,
               size_t n_ports, char **ret_result, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *list = NULL, *prev = NULL;
	struct invoke iv = {"ADD", container_id, netns_path, ifname ? ifname : "eth0",
	                    plugin_dirs(cfg)};
	json_t *plugins;
	int r;

	r = parse_list(conflist, &list, &plugins, ret_err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < json_array_size(plugins); i++) {
		const json_t *p = json_array_get(plugins, i);
		_cleanup_free_ char *conf = plugin_conf(list, p, prev, ports, n_ports);
		_cleanup_free_ char *out = NULL;

		if (!conf)
			return -ENOMEM;
		r = invoke_plugin(&iv, json_get_str(p, "type"), conf, &out, ret_err);
		if (r >= 0) {
			json_decref(prev);
			prev = json_loads(out, 0, NULL);
			if (!prev)
				r = strata_error_set(ret_err, -EBADMSG,
				                     "CNI plugin %s returned invalid JSON: %s",
				                     json_get_str(p, "type"), out);
		}
		if (r < 0) {
			/* Undo what the earlier plugins (and this one) did. */
			(void)run_del(cfg, list, plugins, i + 1, container_id, netns_path, ifname,
			              ports, n_ports, prev, NULL);
			return strata_error_prefix(ret_err, r, "network \"%s\"",
			                           json_get_str(list, "name"));
		}
	}
	*ret_result = json_dumps(prev, JSON_COMPACT);
	return *ret_result ? 0 : -ENOMEM;
}

int rt_cni_del(const struct rt_cni_config *cfg, const char *conflist, const char *container_id,
               const char *netns_path, const char *ifname, const struct rt_port_mapping *ports,
               size_t n_ports, const char *prev_result, struct strata_error **ret_err)
{
	_cleanup_json_ json_t *list = NULL, *prev = NULL;
	json_t *plugins;
	int r;

	r = parse_list(conflist, &list, &plugins, ret_err);
	if (r < 0)
		return r;
	if (prev_result && *prev_result)
		prev = json_loads(prev_result, 0, NULL);
	r = run_del(cfg, list, plugins, json_array_size(plugins), container_id, netns_path, ifname,
	            ports, n_ports, prev, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "network \"%s\"",
		                           json_get_str(list, "name"));
	return 0;
}

int rt_cni_loopback(const struct rt_cni_config *cfg, const char *container_id,
                    const char *netns_path, bool add, struct strata_error **ret_err)
{
	struct invoke iv = {add ? "ADD" : "DEL", container_id, netns_path, "lo", plugin_dirs(cfg)};
	static const char conf[] = "{\"cniVersion\":\"" CNI_VERSION
	                           "\",\"name\":\"strata-loopback\",\"type\":\"loopback\"}";
	if (!add && netns_path && access(netns_path, F_OK) < 0)
		return 0;
	return invoke_plugin(&iv, "loopback", conf, NULL, ret_err);
}

char *rt_cni_result_ip(const char *result)
{
	_cleanup_json_ json_t *j = result ? json_loads(result, 0, NULL) : NULL;
	json_t *ips = json_get_array(j, "ips");
	for (size_t i = 0; i < json_array_size(ips); i++) {
		const char *a = json_get_str(json_array_get(ips, i), "address");
		if (a && strchr(a, '.'))
			return strndup(a, strcspn(a, "/"));
	}
	return NULL;
}
