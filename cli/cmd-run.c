/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata run: the image from the daemon (pulled if absent), an active
 * snapshot "@strata/ctr/<id>" prepared on its top layer over the daemon's
 * Snapshots service, then runtime/ in this process: bundle, rootfs mounts,
 * network, containerd-shim-runc-v2. Attached runs relay stdio and exit with
 * the container's code; -d prints the id and returns.
 *
 * Signals in an attached run go to the container (attach.c): the first
 * SIGINT/SIGTERM as is, the next one as SIGKILL; SIGWINCH resizes the
 * container's pty with -t, whose initial size is in the spec.
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>

#include "attach.h"
#include "daemon.h"
#include "progress.h"
#include "runtime.h"
#include "snapshots.pb-c.h"

struct run_opts {
	struct cli_process_opts p;
	bool rm, detach, plain_http;
	const char *name, *env_file, *entrypoint, *hostname, *runtime_binary;
	const char *platform;
	enum rt_net_mode net;
	struct rt_volume *volumes;
	size_t n_volumes;
	struct rt_port_mapping *ports;
	size_t n_ports;
	const char *ref;
	char **args; /* NULL = image Cmd */
};

static void run_opts_done(struct run_opts *o)
{
	free(o->p.env);
	for (size_t i = 0; i < o->n_volumes; i++)
		rt_volume_done(&o->volumes[i]);
	free(o->volumes);
	free(o->ports);
}

static int grow(void **array, size_t *n, size_t size)
{
	void *a = realloc(*array, (*n + 2) * size);
	if (!a)
		return -ENOMEM;
	memset((char *)a + *n * size, 0, 2 * size);
	*array = a;
	(*n)++;
	return 0;
}

/* [IP:]HOSTPORT:CTRPORT[/tcp|udp] */
static int parse_port(const char *s, struct rt_port_mapping *ret)
{
	char buf[128], *proto, *last, *mid;
	unsigned long hp, cp;
	char *end;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	*ret = (struct rt_port_mapping){0};
	proto = strchr(buf, '/');
	if (proto) {
		*proto++ = '\0';
		if (streq(proto, "tcp"))
			ret->protocol = "tcp";
		else if (streq(proto, "udp"))
			ret->protocol = "udp";
		else
			return -EINVAL;
	}
	last = strrchr(buf, ':');
	if (!last)
		return -EINVAL;
	*last++ = '\0';
	mid = strrchr(buf, ':');
	if (mid) {
		*mid++ = '\0';
		/* The host IP stays in argv (s): point into it. */
		ret->host_ip = strndup(s, (size_t)(mid - 1 - buf));
	} else {
		mid = buf;
	}
	errno = 0;
	hp = strtoul(mid, &end, 10);
	if (errno || *end || !*mid || hp == 0 || hp > 65535)
		return -EINVAL;
	cp = strtoul(last, &end, 10);
	if (errno || *end || !*last || cp == 0 || cp > 65535)
		return -EINVAL;
	ret->host_port = (uint16_t)hp;
	ret->container_port = (uint16_t)cp;
	return 0;
}

static int parse_args(int argc, char **argv, struct run_opts *o)
{
	enum {
		OPT_RM = 0x100,
		OPT_NAME,
		OPT_ENV_FILE,
		OPT_ENTRYPOINT,
		OPT_NET,
		OPT_HOSTNAME,
		OPT_RUNTIME_BINARY,
		OPT_PLAIN_HTTP,
		OPT_PLATFORM,
	};
	static const struct option opts[] = {
	        CLI_PROCESS_LONG_OPTS,
	        {"rm", no_argument, NULL, OPT_RM},
	        {"detach", no_argument, NULL, 'd'},
	        {"name", required_argument, NULL, OPT_NAME},
	        {"env-file", required_argument, NULL, OPT_ENV_FILE},
	        {"volume", required_argument, NULL, 'v'},
	        {"entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
	        {"net", required_argument, NULL, OPT_NET},
	        {"network", required_argument, NULL, OPT_NET},
	        {"publish", required_argument, NULL, 'p'},
	        {"hostname", required_argument, NULL, OPT_HOSTNAME},
	        {"runtime-binary", required_argument, NULL, OPT_RUNTIME_BINARY},
	        {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
	        {"platform", required_argument, NULL, OPT_PLATFORM},
	        {0},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	int c, r;

	opterr = 0;
	/* "+": options end at the image reference; what follows is the command. */
	while ((c = getopt_long(argc, argv, "+dv:p:" CLI_PROCESS_SHORT_OPTS, opts, NULL)) != -1) {
		switch (c) {
		case OPT_RM:
			o->rm = true;
			break;
		case 'd':
			o->detach = true;
			break;
		case OPT_NAME:
			if (!*optarg || strchr(optarg, '/'))
				return cli_usage_error("run", "invalid --name \"%s\"", optarg);
			o->name = optarg;
			break;
		case OPT_ENV_FILE:
			o->env_file = optarg;
			break;
		case 'v':
			if (grow((void **)&o->volumes, &o->n_volumes, sizeof(*o->volumes)) < 0)
				return cli_fail("run", "out of memory");
			if (rt_volume_parse(optarg, &o->volumes[o->n_volumes - 1], &err) < 0) {
				o->n_volumes--;
				return cli_usage_error("run", "%s", strata_error_message(err));
			}
			break;
		case OPT_ENTRYPOINT:
			o->entrypoint = optarg;
			break;
		case OPT_NET:
			if (streq(optarg, "bridge") || streq(optarg, "default"))
				o->net = RT_NET_BRIDGE;
			else if (streq(optarg, "host"))
				o->net = RT_NET_HOST;
			else if (streq(optarg, "none"))
				o->net = RT_NET_NONE;
			else
				return cli_usage_error("run", "--net \"%s\": bridge, host or none",
				                       optarg);
			break;
		case 'p':
			if (grow((void **)&o->ports, &o->n_ports, sizeof(*o->ports)) < 0)
				return cli_fail("run", "out of memory");
			if (parse_port(optarg, &o->ports[o->n_ports - 1]) < 0)
				return cli_usage_error(
				        "run", "-p \"%s\": want [IP:]HOSTPORT:CTRPORT[/tcp|udp]",
				        optarg);
			break;
		case OPT_HOSTNAME:
			if (!*optarg)
				return cli_usage_error("run", "--hostname needs a value");
			o->hostname = optarg;
			break;
		case OPT_RUNTIME_BINARY:
			if (!*optarg || strchr(optarg, '/'))
				return cli_usage_error(
				        "run",
				        "--runtime-binary \"%s\": a name such as runc "
				        "or crun, looked up in PATH",
				        optarg);
			o->runtime_binary = optarg;
			break;
		case OPT_PLAIN_HTTP:
			o->plain_http = true;
			break;
		case OPT_PLATFORM:
			if (!*optarg)
				return cli_usage_error("run", "--platform needs os/arch[/variant]");
			o->platform = optarg;
			break;
		default:
			r = cli_process_opt("run", c, argv, &o->p);
			if (r != 0)
				return r;
		}
	}
	if (optind >= argc)
		return cli_usage_error("run", "missing image reference");
	o->ref = argv[optind++];
	if (!*o->ref)
		return cli_usage_error("run", "empty image reference");
	if (optind < argc)
		o->args = argv + optind; /* argv is NULL-terminated */
	if (o->rm && o->detach)
		return cli_usage_error("run", "--rm with -d is not supported: remove a detached "
		                              "container with 'strata rm -f ID'");
	if (o->net == RT_NET_HOST && o->n_ports)
		return cli_usage_error("run", "-p needs --net bridge (with --net host the "
		                              "container's ports are the host's)");
	if (o->net == RT_NET_NONE && o->n_ports)
		return cli_usage_error("run", "-p needs --net bridge");
	return 0;
}

/* --- the image and the snapshot -------------------------------------------- */

struct pull_state {
	struct cli_progress *progress;
};

static int on_pull_progress(const ProtobufCMessage *msg, void *userdata,
                            struct strata_error **ret_err)
{
	struct pull_state *st = userdata;
	(void)ret_err;
	cli_progress_update(st->progress, (const Strata__Images__V1__PullProgress *)msg);
	return 0;
}

static int image_get(struct proxy_client *client, const char *ref,
                     Strata__Images__V1__GetImageResponse **ret, struct strata_error **ret_err)
{
	Strata__Images__V1__GetImageRequest req = STRATA__IMAGES__V1__GET_IMAGE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.name = (char *)ref;
	r = proxy_client_unary(client, "/strata.images.v1.Images/Get", &req.base,
	                       &strata__images__v1__get_image_response__descriptor, &resp, 60000,
	                       ret_err);
	if (r < 0)
		return r;
	*ret = (Strata__Images__V1__GetImageResponse *)resp;
	if (!(*ret)->image) {
		protobuf_c_message_free_unpacked(resp, NULL);
		*ret = NULL;
		return strata_error_set(ret_err, -EPROTO,
		                        "the daemon answered Get without an image");
	}
	return 0;
}

static int image_pull(struct proxy_client *client, const struct run_opts *o,
                      struct strata_error **ret_err)
{
	Strata__Images__V1__PullRequest req = STRATA__IMAGES__V1__PULL_REQUEST__INIT;
	_cleanup_(cli_progress_freep) struct cli_progress *progress = NULL;
	struct pull_state st;
	int r;

	req.ref = (char *)o->ref;
	req.plain_http = o->plain_http;
	req.platform = (char *)(o->platform ? o->platform : "");
	req.lazy = STRATA__IMAGES__V1__LAZY_MODE__LAZY_AUTO;
	progress = cli_progress_new(stderr,
	                            isatty(STDERR_FILENO) ? CLI_PROGRESS_TTY : CLI_PROGRESS_QUIET);
	if (!progress)
		return -ENOMEM;
	st.progress = progress;
	r = proxy_client_stream(client, "/strata.images.v1.Images/Pull", &req.base,
	                        &strata__images__v1__pull_progress__descriptor, on_pull_progress,
	                        &st, 0, ret_err);
	cli_progress_finish(progress);
	return r;
}

/* The image's mounts as rt_mounts pointing into resp (which must outlive them). */
static int snapshot_prepare(struct proxy_client *client, const char *key, const char *parent,
                            Containerd__Services__Snapshots__V1__PrepareSnapshotResponse **ret,
                            struct strata_error **ret_err)
{
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r;

	req.snapshotter = (char *)"strata";
	req.key = (char *)key;
	req.parent = (char *)parent;
	r = proxy_client_unary(
	        client, "/containerd.services.snapshots.v1.Snapshots/Prepare", &req.base,
	        &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor, &resp,
	        60000, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "prepare snapshot %s", key);
	*ret = (Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *)resp;
	return 0;
}

/* --- run --------------------------------------------------------------------------- */

/* Phase timings at debug level: where a run's time goes (bench/run). */
static int64_t t_start;

static int64_t elapsed_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	if (!t_start)
		t_start = now;
	return now - t_start;
}

#define phase(what) log_debug("run: %s at %.1f ms", what, (double)elapsed_us() / 1000.0)

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

/* A container with this name exists already: its id, else NULL. */
static char *name_in_use(const char *state, const char *name)
{
	char **ids = NULL;
	char *found = NULL;

	if (rt_container_list(state, &ids, NULL) < 0)
		return NULL;
	for (size_t i = 0; ids[i]; i++) {
		struct rt_container *c = NULL;
		struct rt_container_info info;
		if (!found && rt_container_load(state, ids[i], &c, NULL) >= 0 &&
		    rt_container_inspect(c, &info, NULL) >= 0) {
			if (streq_ptr(info.name, name))
				found = strdup(ids[i]);
			rt_container_info_done(&info);
		}
		rt_container_free(c);
		free(ids[i]);
	}
	free(ids);
	return found;
}

static void mounts_free(struct rt_mount *m)
{
	free(m); /* the strings belong to the Prepare response */
}

/* Prepare on the daemon, run while rt_container_begin starts the shim. Only
 * this thread uses the client meanwhile. */
struct snapshot_preparer {
	struct proxy_client *client;
	const char *key, *parent;
	Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *resp;
	struct strata_error *err;
	int r;
	pthread_t thread;
};

static void *prepare_snapshot(void *arg)
{
	struct snapshot_preparer *sp = arg;
	sp->r = snapshot_prepare(sp->client, sp->key, sp->parent, &sp->resp, &sp->err);
	return NULL;
}

/* The snapshot's removal on the daemon, run while the shim deletes the task
 * (`runc delete`): each takes tens of ms, and neither needs the other once
 * the rootfs is unmounted. Only this thread uses the client meanwhile. */
struct snapshot_remover {
	const struct cli_ctx *ctx;
	struct proxy_client **client;
	const char *id;
	struct strata_error *err;
	int r;
	pthread_t thread;
};

static void *remove_snapshot(void *arg)
{
	struct snapshot_remover *sr = arg;
	sr->r = cli_container_snapshot_remove(sr->ctx, sr->client, sr->id, false, &sr->err);
	return NULL;
}

static int container_kill(void *target, int sig)
{
	return rt_container_kill(target, sig, NULL);
}

static int container_resize(void *target, unsigned width, unsigned height)
{
	return rt_container_resize(target, width, height, NULL);
}

static int run(struct cli_ctx *ctx, struct run_opts *o)
{
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *id = NULL, *config = NULL, *image_name = NULL, *parent = NULL;
	Strata__Images__V1__GetImageResponse *img = NULL;
	Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *prep = NULL;
	struct rt_mount *mounts = NULL;
	struct rt_container *c = NULL;
	struct snapshot_remover sr = {.ctx = ctx, .client = &client};
	_cleanup_free_ char *state = NULL;
	char key[CLI_SNAPSHOT_KEY_MAX];
	bool snapshot_made = false, fwd_started = false, sr_started = false, sig_installed = false;
	int code = EXIT_ERROR, r;

	phase("start");
	/* As docker and nerdctl: -it relays a terminal, so stdin must be one. */
	if (o->p.tty && o->p.interactive && !o->detach && !isatty(STDIN_FILENO))
		return cli_fail("run", "the input device is not a TTY");
	/* Fail before any work when the runtime cannot run at all. */
	{
		_cleanup_free_ char *shim = NULL, *runtime = NULL;
		if (rt_require_binary(RT_SHIM_BINARY, &shim, &err) < 0 ||
		    rt_require_binary(o->runtime_binary ? o->runtime_binary : "runc", &runtime,
		                      &err) < 0)
			return cli_fail("run", "%s", strata_error_message(err));
	}
	if (rt_state_dir(ctx->config, ctx->address, &state, &err) < 0)
		return cli_fail("run", "%s", strata_error_message(err));
	if (o->name) {
		_cleanup_free_ char *other = name_in_use(state, o->name);
		if (other)
			return cli_fail("run",
			                "the name \"%s\" is in use by container %.12s: remove it "
			                "('strata rm %s') or choose another --name",
			                o->name, other, o->name);
	}

	r = cli_daemon_connect(ctx, true, &client, NULL, &err);
	if (r < 0)
		return cli_fail("run", "%s", strata_error_message(err));

	phase("connected");
	r = image_get(client, o->ref, &img, &err);
	if (r == -ENOENT) {
		strata_error_free(err);
		err = NULL;
		r = image_pull(client, o, &err);
		if (r >= 0)
			r = image_get(client, o->ref, &img, &err);
	}
	if (r < 0)
		return cli_fail_ref("run", o->ref, err);

	image_name = strdup(img->image->name);
	config = malloc(img->config.len + 1);
	if (img->image->n_chain_ids > 0)
		r = asprintf(&parent, "@strata/%s",
		             img->image->chain_ids[img->image->n_chain_ids - 1]) < 0
		            ? -ENOMEM
		            : 0;
	id = random_id();
	if (!image_name || !config || !id || r < 0) {
		protobuf_c_message_free_unpacked(&img->base, NULL);
		return cli_fail("run", "out of memory");
	}
	memcpy(config, img->config.data, img->config.len);
	config[img->config.len] = '\0';
	protobuf_c_message_free_unpacked(&img->base, NULL);
	phase("image found");

	struct rt_container_config cfg = {
	        .root = ctx->root,
	        .state_dir = state,
	        .id = id,
	        .name = o->name,
	        .image = image_name,
	        .image_config = config,
	        .spec =
	                {
	                        .args = o->args,
	                        .entrypoint = o->entrypoint,
	                        .env = o->p.env,
	                        .env_file = o->env_file,
	                        .cwd = o->p.cwd,
	                        .user = o->p.user,
	                        .hostname = o->hostname,
	                        .volumes = o->volumes,
	                        .n_volumes = o->n_volumes,
	                        .tty = o->p.tty,
	                        .net = o->net,
	                },
	        .ports = o->ports,
	        .n_ports = o->n_ports,
	        .runtime_binary = o->runtime_binary,
	        .detach = o->detach,
	        .interactive = o->p.interactive,
	};
	cli_runtime_cni_config(ctx, &cfg.cni);
	if (o->p.tty)
		(void)cli_terminal_size(&cfg.spec.console_width, &cfg.spec.console_height);

	if (!o->detach) {
		r = cli_signals_install();
		if (r < 0) {
			code = cli_fail("run", "install signal handlers: %s", strerror(-r));
			goto out;
		}
		sig_installed = true;
	}
	/* The daemon prepares the snapshot while we start the shim, which then
	 * boots (a Go program: tens of ms) while we mount and write the bundle. */
	cli_container_snapshot_key(id, key);
	struct snapshot_preparer sp = {
	        .client = client, .key = key, .parent = parent ? parent : ""};
	bool sp_started = pthread_create(&sp.thread, NULL, prepare_snapshot, &sp) == 0;
	if (!sp_started)
		prepare_snapshot(&sp);
	r = rt_container_begin(&cfg, &c, &err);
	phase("shim started");
	if (sp_started)
		pthread_join(sp.thread, NULL);
	phase("snapshot prepared");
	prep = sp.resp;
	if (prep)
		snapshot_made = true;
	if (r < 0) {
		/* The runtime names what is missing and how to get it: verbatim. */
		code = cli_fail("run", "%s", strata_error_message(err));
		strata_error_free(sp.err);
		goto out;
	}
	if (sp.r < 0 || !prep) {
		code = cli_fail("run", "%s", strata_error_message(sp.err));
		strata_error_free(sp.err);
		(void)rt_container_delete(c, true, NULL);
		goto out;
	}
	mounts = calloc(prep->n_mounts + 1, sizeof(*mounts));
	if (!mounts) {
		code = cli_fail("run", "out of memory");
		(void)rt_container_delete(c, true, NULL);
		goto out;
	}
	for (size_t i = 0; i < prep->n_mounts; i++)
		mounts[i] = (struct rt_mount){
		        .type = prep->mounts[i]->type,
		        .source = prep->mounts[i]->source,
		        .target = prep->mounts[i]->target,
		};
	/* protobuf-c's repeated strings are not NULL-terminated: copy them. */
	for (size_t i = 0; i < prep->n_mounts; i++) {
		char **opts = calloc(prep->mounts[i]->n_options + 1, sizeof(char *));
		if (!opts) {
			code = cli_fail("run", "out of memory");
			(void)rt_container_delete(c, true, NULL);
			goto out;
		}
		memcpy(opts, prep->mounts[i]->options, prep->mounts[i]->n_options * sizeof(char *));
		mounts[i].options = opts;
	}
	cfg.mounts = mounts;
	cfg.n_mounts = prep->n_mounts;

	phase("image and snapshot ready");
	r = rt_container_finish(c, &cfg, &err);
	phase("created");
	if (r < 0) {
		code = cli_fail("run", "%s", strata_error_message(err));
		if (strstr(strata_error_message(err), "OCI runtime create failed"))
			code = cli_start_failure_code(strata_error_message(err)) ?: code;
		goto out;
	}
	if (!o->detach) {
		int sig = cli_signals_pending();
		if (sig) {
			code = 128 + sig;
			goto remove;
		}
	}
	if (o->p.tty && o->p.interactive && !o->detach)
		cli_terminal_raw();
	r = rt_container_start(c, &err);
	if (r < 0) {
		cli_terminal_restore();
		code = cli_fail("run", "%s", strata_error_message(err));
		goto remove;
	}
	if (o->detach) {
		printf("%s\n", id);
		snapshot_made = false; /* it is the container's now */
		code = EXIT_OK;
		goto out;
	}

	struct cli_attach_target target = {
	        .target = c,
	        .kill = container_kill,
	        .resize = o->p.tty ? container_resize : NULL,
	};
	fwd_started = cli_forward_start(&target) >= 0;
	phase("started");
	r = rt_container_wait(c, &code, &err);
	phase("exited");
	cli_terminal_restore();
	if (fwd_started)
		cli_forward_stop();
	if (r < 0) {
		(void)cli_fail("run", "%s", strata_error_message(err));
		code = EXIT_ERROR;
	}
	if (!o->rm) {
		snapshot_made = false; /* kept with the container until `strata rm` */
		goto out;
	}

remove:
	strata_error_free(err);
	err = NULL;
	/* -EBUSY when the task never ran: then all in order, below. */
	sr.id = id;
	if (snapshot_made && rt_container_release_rootfs(c, NULL) >= 0 &&
	    pthread_create(&sr.thread, NULL, remove_snapshot, &sr) == 0) {
		sr_started = true;
		snapshot_made = false;
	}
	r = rt_container_delete(c, true, &err);
	phase("deleted");
	if (sr_started) {
		pthread_join(sr.thread, NULL);
		phase("snapshot removed");
		if (sr.r < 0) {
			(void)cli_fail("run", "%s", strata_error_message(sr.err));
			if (code == EXIT_OK)
				code = EXIT_ERROR;
		}
		strata_error_free(sr.err);
	}
	if (r < 0) {
		/* Its rootfs may still be mounted on the snapshot: keep both. */
		(void)cli_fail("run", "%s", strata_error_message(err));
		snapshot_made = false;
		if (code == EXIT_OK)
			code = EXIT_ERROR;
	}

out:
	if (snapshot_made) {
		strata_error_free(err);
		err = NULL;
		if (cli_container_snapshot_remove(ctx, &client, id, false, &err) < 0) {
			(void)cli_fail("run", "%s", strata_error_message(err));
			if (code == EXIT_OK)
				code = EXIT_ERROR;
		}
	}
	phase("done");
	if (sig_installed)
		cli_signals_restore();
	rt_container_free(c);
	if (mounts && prep)
		for (size_t i = 0; i < prep->n_mounts; i++)
			free(mounts[i].options);
	mounts_free(mounts);
	if (prep)
		protobuf_c_message_free_unpacked(&prep->base, NULL);
	return code;
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	struct run_opts o = {.net = RT_NET_BRIDGE};
	int r;

	(void)signal(SIGPIPE, SIG_IGN);
	cli_stdio_ensure_open();
	r = parse_args(argc, argv, &o);
	if (r == 0)
		r = run(ctx, &o);
	for (size_t i = 0; i < o.n_ports; i++)
		free((char *)o.ports[i].host_ip);
	run_opts_done(&o);
	return r;
}
