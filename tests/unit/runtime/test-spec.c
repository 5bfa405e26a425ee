/* SPDX-License-Identifier: Apache-2.0 */
/* config.json generation and user resolution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "runtime.h"

static char tmp[] = "/tmp/strata-rt-spec-XXXXXX";
static int rootfd = -1;

static void put(const char *rel, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	FILE *f = fopen(p, "we");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static int setup(void **state)
{
	char p[512];
	if (!mkdtemp(tmp))
		return -1;
	snprintf(p, sizeof(p), "%s/etc", tmp);
	mkdir(p, 0755);
	put("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
	                  "# comment\n"
	                  "app:x:1000:1000:App:/home/app:/bin/sh\n"
	                  "nobody:x:65534:65534::/nonexistent:/bin/false\n");
	put("etc/group", "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\nstaff:x:50:app\n"
	                 "nogroup:x:65534:\n");
	rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return rootfd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[600];
	safe_close(rootfd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static json_t *gen(const char *img, const struct rt_spec_opts *o, struct strata_error **err)
{
	char *s = NULL;
	json_t *j = NULL;
	if (rt_spec_generate(img, rootfd, o, &s, err) < 0)
		return NULL;
	assert_int_equal(json_parse(s, strlen(s), "spec", &j, NULL), 0);
	free(s);
	return j;
}

static bool has_string(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach (arr, i, v)
		if (json_is_string(v) && streq(json_string_value(v), s))
			return true;
	return false;
}

static void test_defaults(void **state)
{
	struct rt_spec_opts o = {.id = "abcdef0123456789", .netns_path = "/run/netns/x"};
	json_t *j = gen("{\"config\":{\"Cmd\":[\"sh\"]},\"rootfs\":{}}", &o, NULL);
	assert_non_null(j);
	json_t *p = json_object_get(j, "process");
	assert_true(json_is_true(json_object_get(p, "noNewPrivileges")));
	assert_false(json_is_true(json_object_get(p, "terminal")));
	assert_string_equal(json_get_str(p, "cwd"), "/");
	json_t *caps = json_object_get(p, "capabilities");
	assert_int_equal(json_array_size(json_object_get(caps, "bounding")), 14);
	assert_true(has_string(json_object_get(caps, "effective"), "CAP_NET_BIND_SERVICE"));
	assert_false(has_string(json_object_get(caps, "effective"), "CAP_SYS_ADMIN"));
	json_t *rl = json_array_get(json_object_get(p, "rlimits"), 0);
	assert_string_equal(json_get_str(rl, "type"), "RLIMIT_NOFILE");
	assert_int_equal(json_get_int(rl, "hard", 0), 1024);
	json_t *user = json_object_get(p, "user");
	assert_int_equal(json_get_int(user, "uid", -1), 0);
	assert_int_equal(json_get_int(user, "gid", -1), 0);
	assert_true(
	        has_string(json_object_get(p, "env"),
	                   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	assert_string_equal(json_get_str(j, "hostname"), "abcdef012345");
	assert_string_equal(json_get_str(json_object_get(j, "root"), "path"), "rootfs");

	json_t *mounts = json_object_get(j, "mounts");
	const char *want[] = {"/proc",       "/dev", "/dev/pts",      "/dev/shm",
	                      "/dev/mqueue", "/sys", "/sys/fs/cgroup"};
	for (size_t i = 0; i < ELEMENTSOF(want); i++)
		assert_string_equal(json_get_str(json_array_get(mounts, i), "destination"),
		                    want[i]);
	assert_true(has_string(json_object_get(json_array_get(mounts, 5), "options"), "ro"));

	json_t *lx = json_object_get(j, "linux");
	assert_string_equal(json_get_str(lx, "cgroupsPath"), "/strata/abcdef0123456789");
	assert_true(has_string(json_object_get(lx, "maskedPaths"), "/proc/kcore"));
	assert_true(has_string(json_object_get(lx, "readonlyPaths"), "/proc/sysrq-trigger"));
	json_t *ns = json_object_get(lx, "namespaces");
	assert_int_equal(json_array_size(ns), 5);
	json_t *net = json_array_get(ns, 4);
	assert_string_equal(json_get_str(net, "type"), "network");
	assert_string_equal(json_get_str(net, "path"), "/run/netns/x");
	json_t *devs = json_object_get(json_object_get(lx, "resources"), "devices");
	assert_false(json_is_true(json_object_get(json_array_get(devs, 0), "allow")));
	assert_int_equal(json_array_size(devs), 10);
	json_t *pts = json_array_get(devs, 9);
	assert_int_equal(json_get_int(pts, "major", 0), 136);
	assert_null(json_object_get(pts, "minor"));
	json_decref(j);
}

static void test_env_override(void **state)
{
	const char *env[] = {"FOO=2", "BAR=3", "PATH=/custom", NULL};
	char envfile[600];
	snprintf(envfile, sizeof(envfile), "%s/env.list", tmp);
	put("env.list", "# comment\n\nFROMFILE=yes\nFOO=file\n");
	struct rt_spec_opts o = {.id = "c1", .env = (char **)env, .env_file = envfile};
	json_t *j =
	        gen("{\"config\":{\"Cmd\":[\"sh\"],\"Env\":[\"PATH=/img\",\"FOO=1\",\"KEEP=k\"]}}",
	            &o, NULL);
	json_t *e = json_object_get(json_object_get(j, "process"), "env");
	assert_int_equal(json_array_size(e), 5);
	assert_true(has_string(e, "PATH=/custom"));
	assert_true(has_string(e, "FOO=2"));
	assert_true(has_string(e, "BAR=3"));
	assert_true(has_string(e, "KEEP=k"));
	assert_true(has_string(e, "FROMFILE=yes"));
	json_decref(j);

	/* image PATH replaces the default one */
	struct rt_spec_opts o2 = {.id = "c1"};
	j = gen("{\"config\":{\"Cmd\":[\"sh\"],\"Env\":[\"PATH=/img\"]}}", &o2, NULL);
	e = json_object_get(json_object_get(j, "process"), "env");
	assert_int_equal(json_array_size(e), 1);
	assert_true(has_string(e, "PATH=/img"));
	json_decref(j);
}

static void test_args(void **state)
{
	const char *user_args[] = {"echo", "hi", NULL};
	const char *img = "{\"Entrypoint\":[\"/init\"],\"Cmd\":[\"--flag\"],\"WorkingDir\":\"/w\"}";
	struct rt_spec_opts o = {.id = "c1"};
	json_t *j = gen(img, &o, NULL);
	json_t *p = json_object_get(j, "process");
	json_t *a = json_object_get(p, "args");
	assert_int_equal(json_array_size(a), 2);
	assert_string_equal(json_string_value(json_array_get(a, 0)), "/init");
	assert_string_equal(json_string_value(json_array_get(a, 1)), "--flag");
	assert_string_equal(json_get_str(p, "cwd"), "/w");
	json_decref(j);

	o.args = (char **)user_args;
	j = gen(img, &o, NULL);
	a = json_object_get(json_object_get(j, "process"), "args");
	assert_int_equal(json_array_size(a), 3);
	assert_string_equal(json_string_value(json_array_get(a, 1)), "echo");
	json_decref(j);

	/* --entrypoint drops Cmd */
	o.args = NULL;
	o.entrypoint = "/bin/sh";
	j = gen(img, &o, NULL);
	a = json_object_get(json_object_get(j, "process"), "args");
	assert_int_equal(json_array_size(a), 1);
	assert_string_equal(json_string_value(json_array_get(a, 0)), "/bin/sh");
	json_decref(j);

	/* nothing to run */
	struct strata_error *err = NULL;
	struct rt_spec_opts o3 = {.id = "c1"};
	assert_null(gen("{}", &o3, &err));
	assert_int_equal(err->code, -EINVAL);
	assert_non_null(strstr(err->msg, "no command"));
	strata_error_free(err);
}

static void test_user_resolution(void **state)
{
	struct rt_user u;
	struct strata_error *err = NULL;

	assert_int_equal(rt_user_resolve(rootfd, "app", &u, NULL), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 1000);
	assert_string_equal(u.home, "/home/app");
	assert_int_equal(u.n_additional_gids, 2); /* wheel, staff */
	assert_int_equal(u.additional_gids[0], 10);
	assert_int_equal(u.additional_gids[1], 50);
	rt_user_done(&u);

	assert_int_equal(rt_user_resolve(rootfd, "1000:staff", &u, NULL), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 50);
	rt_user_done(&u);

	assert_int_equal(rt_user_resolve(rootfd, "app:7", &u, NULL), 0);
	assert_int_equal(u.gid, 7);
	rt_user_done(&u);

	/* numeric ids need no entry */
	assert_int_equal(rt_user_resolve(rootfd, "4242", &u, NULL), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 0);
	rt_user_done(&u);

	assert_int_equal(rt_user_resolve(rootfd, "ghost", &u, &err), -ENOENT);
	assert_non_null(strstr(err->msg, "unable to find user ghost"));
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_user_resolve(rootfd, "app:ghosts", &u, &err), -ENOENT);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_user_resolve(rootfd, ":1", &u, &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_user_resolve(rootfd, "a:b:c", &u, &err), -EINVAL);
	strata_error_free(err);

	/* in the spec */
	struct rt_spec_opts o = {.id = "c1", .user = "app"};
	json_t *j = gen("{\"Cmd\":[\"sh\"]}", &o, NULL);
	json_t *user = json_object_get(json_object_get(j, "process"), "user");
	assert_int_equal(json_get_int(user, "uid", -1), 1000);
	assert_int_equal(json_array_size(json_object_get(user, "additionalGids")), 2);
	json_decref(j);
}

/* An image whose /etc/passwd points at the host's must not make us read
 * the host's (which has "daemon"; the rootfs does not). */
static void test_malicious_passwd_symlink(void **state)
{
	char evil[] = "/tmp/strata-rt-evil-XXXXXX", p[600];
	struct rt_user u;
	struct strata_error *err = NULL;
	int fd;

	assert_non_null(mkdtemp(evil));
	snprintf(p, sizeof(p), "%s/etc", evil);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/etc/passwd", evil);
	assert_int_equal(symlink("../../../../../../../../etc/passwd", p), 0);
	fd = open(evil, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* sanity: the host does have it */
	assert_int_equal(system("grep -q '^daemon:' /etc/passwd"), 0);
	assert_int_equal(rt_user_resolve(fd, "daemon", &u, &err), -ENOENT);
	strata_error_free(err);
	err = NULL;

	/* absolute symlink, likewise clamped to the rootfs */
	unlink(p);
	assert_int_equal(symlink("/etc/passwd", p), 0);
	assert_int_equal(rt_user_resolve(fd, "daemon", &u, &err), -ENOENT);
	strata_error_free(err);
	err = NULL;

	/* a fifo must fail, not hang */
	unlink(p);
	assert_int_equal(mkfifo(p, 0644), 0);
	assert_int_equal(rt_user_resolve(fd, "root", &u, &err), -EINVAL);
	strata_error_free(err);
	close(fd);
	snprintf(p, sizeof(p), "rm -rf %s", evil);
	assert_int_equal(system(p), 0);
}

static void test_net_and_volumes(void **state)
{
	struct rt_volume v[2];
	struct strata_error *err = NULL;
	assert_int_equal(rt_volume_parse("/tmp:/data:ro", &v[0], NULL), 0);
	assert_true(v[0].readonly);
	assert_int_equal(rt_volume_parse("/tmp:/rw", &v[1], NULL), 0);
	assert_false(v[1].readonly);

	struct rt_spec_opts o = {.id = "c1", .net = RT_NET_HOST, .volumes = v, .n_volumes = 2};
	json_t *j = gen("{\"Cmd\":[\"sh\"]}", &o, NULL);
	json_t *ns = json_object_get(json_object_get(j, "linux"), "namespaces");
	size_t i;
	json_t *n;
	json_array_foreach (ns, i, n) {
		assert_string_not_equal(json_get_str(n, "type"), "network");
		assert_string_not_equal(json_get_str(n, "type"), "uts");
	}
	assert_null(json_object_get(j, "hostname"));
	json_t *mounts = json_object_get(j, "mounts");
	json_t *m = json_array_get(mounts, json_array_size(mounts) - 2);
	assert_string_equal(json_get_str(m, "destination"), "/data");
	assert_string_equal(json_get_str(m, "type"), "bind");
	assert_true(has_string(json_object_get(m, "options"), "rbind"));
	assert_true(has_string(json_object_get(m, "options"), "ro"));
	m = json_array_get(mounts, json_array_size(mounts) - 1);
	assert_false(has_string(json_object_get(m, "options"), "ro"));
	json_decref(j);
	rt_volume_done(&v[0]);
	rt_volume_done(&v[1]);

	assert_int_equal(rt_volume_parse("/tmp", &v[0], &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_volume_parse("/tmp:rel", &v[0], &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_volume_parse("/tmp:/x:rx", &v[0], &err), -EINVAL);
	strata_error_free(err);
}

static void test_bad_inputs(void **state)
{
	struct strata_error *err = NULL;
	struct rt_spec_opts o = {.id = "../evil"};
	char *s = NULL;

	assert_int_equal(rt_spec_generate("{\"Cmd\":[\"sh\"]}", rootfd, &o, &s, &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	o.id = "ok";
	assert_int_equal(rt_spec_generate("{not json", rootfd, &o, &s, &err), -EINVAL);
	assert_non_null(strstr(err->msg, "image config"));
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_spec_generate("{\"Cmd\":\"sh\"}", rootfd, &o, &s, &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	assert_int_equal(rt_spec_generate("{\"Cmd\":[1]}", rootfd, &o, &s, &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	o.cwd = "relative";
	assert_int_equal(rt_spec_generate("{\"Cmd\":[\"sh\"]}", rootfd, &o, &s, &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	o.cwd = NULL;
	const char *env[] = {"=x", NULL};
	o.env = (char **)env;
	assert_int_equal(rt_spec_generate("{\"Cmd\":[\"sh\"]}", rootfd, &o, &s, &err), -EINVAL);
	strata_error_free(err);
	err = NULL;
	o.env = NULL;
	struct rt_volume v = {.host = (char *)"/nonexistent-strata", .container = (char *)"/x"};
	o.volumes = &v;
	o.n_volumes = 1;
	assert_int_equal(rt_spec_generate("{\"Cmd\":[\"sh\"]}", rootfd, &o, &s, &err), -ENOENT);
	strata_error_free(err);
}

/* The runtime state dir: config wins, else the socket's directory. */
static void test_state_dir(void **state)
{
	struct toml_value *conf = NULL;
	struct strata_error *err = NULL;
	char *d = NULL, *cwd = getcwd(NULL, 0), want[4200];

	assert_int_equal(rt_state_dir(NULL, "/run/strata/strata.sock", &d, &err), 0);
	assert_string_equal(d, "/run/strata");
	free(d);
	assert_int_equal(rt_state_dir(NULL, "unix:///var/run/x/y.sock", &d, &err), 0);
	assert_string_equal(d, "/var/run/x");
	free(d);
	assert_int_equal(rt_state_dir(NULL, "/s.sock", &d, &err), 0);
	assert_string_equal(d, "/");
	free(d);
	assert_int_equal(rt_state_dir(NULL, NULL, &d, &err), 0);
	assert_string_equal(d, RT_DEFAULT_STATE_DIR);
	free(d);
	/* relative: made absolute, the shim runs elsewhere */
	assert_non_null(cwd);
	assert_int_equal(rt_state_dir(NULL, "sub/s.sock", &d, &err), 0);
	snprintf(want, sizeof(want), "%s/sub", cwd);
	assert_string_equal(d, want);
	free(d);
	assert_int_equal(rt_state_dir(NULL, "s.sock", &d, &err), 0);
	assert_string_equal(d, cwd);
	free(d);

	const char *toml = "[runtime]\nstate_dir = \"/tmp/elsewhere\"\n";
	assert_int_equal(toml_parse(toml, strlen(toml), "t", &conf, &err), 0);
	assert_int_equal(rt_state_dir(conf, "/run/strata/strata.sock", &d, &err), 0);
	assert_string_equal(d, "/tmp/elsewhere");
	free(d);
	toml_free(conf);
	/* an empty value is unset */
	toml = "[runtime]\nstate_dir = \"\"\n";
	assert_int_equal(toml_parse(toml, strlen(toml), "t", &conf, &err), 0);
	assert_int_equal(rt_state_dir(conf, "/a/b.sock", &d, &err), 0);
	assert_string_equal(d, "/a");
	free(d);
	toml_free(conf);
	free(cwd);
}

/* The exec process is the container's, adapted: args, terminal, env by
 * key, cwd and user only when given; caps and the rest kept as they are. */
static void test_exec_process(void **state)
{
	struct strata_error *err = NULL;
	const char *img = "{\"config\":{\"Env\":[\"A=1\",\"B=2\"],\"WorkingDir\":\"/srv\","
	                  "\"User\":\"app\",\"Cmd\":[\"sleep\",\"60\"]}}";
	struct rt_spec_opts so = {.id = "c1"};
	char *spec = NULL, *proc = NULL;
	json_t *p;

	assert_int_equal(rt_spec_generate(img, rootfd, &so, &spec, &err), 0);

	/* nothing overridden */
	const char *a1[] = {"ps", NULL};
	struct rt_exec_opts eo = {.args = (char **)a1};
	assert_int_equal(rt_spec_exec_process(spec, -1, &eo, &proc, &err), 0);
	assert_int_equal(json_parse(proc, strlen(proc), "proc", &p, NULL), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(p, "args"), 0)), "ps");
	assert_int_equal(json_array_size(json_object_get(p, "args")), 1);
	assert_true(json_is_false(json_object_get(p, "terminal")));
	assert_string_equal(json_get_str(p, "cwd"), "/srv");
	assert_int_equal(json_get_int(json_object_get(p, "user"), "uid", -1), 1000);
	assert_true(has_string(json_object_get(p, "env"), "A=1"));
	assert_false(has_string(json_object_get(p, "env"), "TERM=xterm"));
	assert_true(has_string(json_object_get(json_object_get(p, "capabilities"), "bounding"),
	                       "CAP_NET_BIND_SERVICE"));
	assert_true(json_is_true(json_object_get(p, "noNewPrivileges")));
	assert_null(json_object_get(p, "consoleSize"));
	json_decref(p);
	free(proc);

	/* -e by key, -w, -u resolved in the given root, -t with a size */
	setenv("STRATA_TEST_FROM_ENV", "yes", 1);
	const char *a2[] = {"sh", "-c", "env", NULL};
	const char *env[] = {"A=one", "C=3", "STRATA_TEST_FROM_ENV", "STRATA_TEST_UNSET", NULL};
	eo = (struct rt_exec_opts){.args = (char **)a2,
	                           .env = (char **)env,
	                           .cwd = "/tmp",
	                           .user = "nobody",
	                           .tty = true,
	                           .console_width = 120,
	                           .console_height = 40};
	assert_int_equal(rt_spec_exec_process(spec, rootfd, &eo, &proc, &err), 0);
	assert_int_equal(json_parse(proc, strlen(proc), "proc", &p, NULL), 0);
	assert_int_equal(json_array_size(json_object_get(p, "args")), 3);
	assert_true(json_is_true(json_object_get(p, "terminal")));
	json_t *e = json_object_get(p, "env");
	assert_true(has_string(e, "A=one"));
	assert_false(has_string(e, "A=1"));
	assert_true(has_string(e, "B=2"));
	assert_true(has_string(e, "C=3"));
	assert_true(has_string(e, "STRATA_TEST_FROM_ENV=yes"));
	assert_true(has_string(e, "TERM=xterm"));
	for (size_t i = 0; i < json_array_size(e); i++)
		assert_null(strstr(json_string_value(json_array_get(e, i)), "STRATA_TEST_UNSET"));
	assert_string_equal(json_get_str(p, "cwd"), "/tmp");
	assert_int_equal(json_get_int(json_object_get(p, "user"), "uid", -1), 65534);
	assert_int_equal(json_get_int(json_object_get(p, "user"), "gid", -1), 65534);
	assert_int_equal(json_get_int(json_object_get(p, "consoleSize"), "width", 0), 120);
	assert_int_equal(json_get_int(json_object_get(p, "consoleSize"), "height", 0), 40);
	json_decref(p);
	free(proc);

	/* errors: no command, relative cwd, unknown user, not a spec */
	eo = (struct rt_exec_opts){0};
	assert_int_equal(rt_spec_exec_process(spec, rootfd, &eo, &proc, &err), -EINVAL);
	err = strata_error_free(err);
	eo = (struct rt_exec_opts){.args = (char **)a1, .cwd = "tmp"};
	assert_int_equal(rt_spec_exec_process(spec, rootfd, &eo, &proc, &err), -EINVAL);
	err = strata_error_free(err);
	eo = (struct rt_exec_opts){.args = (char **)a1, .user = "nosuchuser"};
	assert_true(rt_spec_exec_process(spec, rootfd, &eo, &proc, &err) < 0);
	assert_non_null(strstr(strata_error_message(err), "nosuchuser"));
	err = strata_error_free(err);
	eo = (struct rt_exec_opts){.args = (char **)a1};
	assert_int_equal(rt_spec_exec_process("{}", rootfd, &eo, &proc, &err), -EINVAL);
	err = strata_error_free(err);
	free(spec);
}

/* -t: runc sizes the pty from consoleSize before the process starts. */
static void test_console_size(void **state)
{
	struct rt_spec_opts o = {
	        .id = "c1", .tty = true, .console_width = 90, .console_height = 30};
	json_t *s = gen("{\"config\":{\"Cmd\":[\"sh\"]}}", &o, NULL);
	json_t *cs = json_object_get(json_object_get(s, "process"), "consoleSize");
	assert_int_equal(json_get_int(cs, "width", 0), 90);
	assert_int_equal(json_get_int(cs, "height", 0), 30);
	json_decref(s);
	o.tty = false;
	s = gen("{\"config\":{\"Cmd\":[\"sh\"]}}", &o, NULL);
	assert_null(json_object_get(json_object_get(s, "process"), "consoleSize"));
	json_decref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_env_override),
	        cmocka_unit_test(test_args),
	        cmocka_unit_test(test_user_resolution),
	        cmocka_unit_test(test_malicious_passwd_symlink),
	        cmocka_unit_test(test_net_and_volumes),
	        cmocka_unit_test(test_bad_inputs),
	        cmocka_unit_test(test_state_dir),
	        cmocka_unit_test(test_exec_process),
	        cmocka_unit_test(test_console_size),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
