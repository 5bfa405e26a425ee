/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata serve: the daemon. Opens the one LMDB environment, the content
 * store and the snapshotter under --root, serves them (and Health) on
 * --address, and runs until SIGTERM/SIGINT, which drains in-flight calls.
 *
 * Lazy layers outlive the daemon (snapshotter/lazy-handover.c): their FUSE
 * connections are kept by a holder process, a layer still in use (a running
 * container's rootfs stacks it) stays mounted when the daemon stops or
 * crashes, and the next daemon resumes serving it. --unmount-on-exit stops
 * that: every lazy layer is unmounted on exit. The holder is this binary
 * re-exec'd as the hidden `serve --fuse-fd-holder`.
 */
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>

#include "cli.h"
#include "content.h"
#include "metrics.h"
#include "proxy.h"
#include "snapshotter.h"

/* The signal handler's only way to reach the server: set before the
 * handlers are installed, cleared after they are restored. */
static struct proxy_server *volatile serve_server;

static void on_stop_signal(int sig)
{
	struct proxy_server *s = serve_server;
	if (s)
		proxy_server_stop(s);
}

static int install_signals(bool on)
{
	struct sigaction sa = {.sa_handler = on ? on_stop_signal : SIG_DFL};
	struct sigaction ign = {.sa_handler = SIG_IGN};

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return negative_errno();
	/* A client that disconnects mid-write must not kill the daemon. */
	return sigaction(SIGPIPE, &ign, NULL) < 0 ? negative_errno() : 0;
}

/*
 * [registry] config_path: containerd's certs.d directory (<dir>/<host>/
 * hosts.toml), named like CRI's registry.config_path so a containerd host
 * configuration can be shared. Absent: PROXY_IMAGES_HOSTS_DIR.
 */
static int registry_config_path(struct cli_ctx *ctx, const char **ret,
                                struct strata_error **ret_err)
{
	struct toml_value *v = toml_get_path(ctx->config, "registry", "config_path", NULL);
	int r;

	*ret = NULL;
	if (!v)
		return 0;
	r = toml_as_string(v, ret);
	if (r < 0 || !**ret)
		return strata_error_set(ret_err, -EINVAL,
		                        "%s: registry.config_path must be a non-empty string",
		                        ctx->config_path);
	return 0;
}

struct serve_opts {
	const char *metrics_address; /* NULL: no metrics endpoint */
	bool unmount_on_exit;        /* unmount every lazy layer on exit */
};

static int serve(struct cli_ctx *ctx, const struct serve_opts *o, struct strata_error **ret_err)
{
	_cleanup_(strata_meta_closep) struct strata_meta *meta = NULL;
	_cleanup_(content_store_closep) struct content_store *content = NULL;
	/* Declared before snaps: lazy layers borrow it, so it is freed after. */
	_cleanup_(content_registry_client_freep) struct content_registry_client *registry = NULL;
	_cleanup_(snap_store_closep) struct snap_store *snaps = NULL;
	_cleanup_(proxy_server_freep) struct proxy_server *server = NULL;
	_cleanup_(proxy_images_freep) struct proxy_images *images = NULL;
	/* After snaps and content: stopped before them. */
	_cleanup_(proxy_metrics_stopp) struct proxy_metrics *metrics = NULL;
	_cleanup_free_ char *meta_dir = NULL;
	struct proxy_server_config cfg = {.address = ctx->address};
	struct proxy_images_options images_opts = {0};
	struct content_registry_options registry_opts = {0};
	struct snap_options snap_opts = {.userxattr = -1, .lazy_handover = !o->unmount_on_exit};
	int r;

	if (geteuid() != 0)
		return strata_error_set(ret_err, -EPERM,
		                        "must run as root: snapshots are overlay and FUSE mounts");
	r = registry_config_path(ctx, &images_opts.hosts_dir, ret_err);
	if (r < 0)
		return r;
	r = path_mkdir_p(ctx->root, 0711);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "create root \"%s\"", ctx->root);
	meta_dir = path_join(ctx->root, "meta");
	if (!meta_dir)
		return -ENOMEM;

	r = strata_meta_open(meta_dir, NULL, &meta, ret_err);
	if (r >= 0)
		r = content_store_open(ctx->root, meta, NULL, &content, ret_err);
	if (r >= 0) {
		/* Lazy layers read the registry through the same host
		 * configuration (mirrors, TLS, credentials) as pulls. */
		registry_opts.hosts_dir =
		        images_opts.hosts_dir ? images_opts.hosts_dir : PROXY_IMAGES_HOSTS_DIR;
		r = content_registry_client_new(&registry_opts, &registry, ret_err);
	}
	if (r >= 0) {
		snap_opts.registry = registry;
		r = snap_store_open(ctx->root, meta, &snap_opts, &snaps, ret_err);
	}
	if (r >= 0)
		r = proxy_server_new(&cfg, &server, ret_err);
	if (r >= 0)
		r = proxy_snapshots_register(server, snaps, ret_err);
	if (r >= 0)
		r = proxy_content_register(server, content, ret_err);
	if (r >= 0)
		r = proxy_images_register(server, content, snaps, &images_opts, &images, ret_err);
	if (r >= 0 && o->metrics_address)
		r = proxy_metrics_start(
		        &(struct proxy_metrics_config){
		                .address = o->metrics_address, .snaps = snaps, .content = content},
		        &metrics, ret_err);
	if (r < 0)
		return r;

	serve_server = server;
	r = install_signals(true);
	if (r < 0) {
		serve_server = NULL;
		return strata_error_set_errno(ret_err, r, "install signal handlers");
	}
	(void)proxy_server_notify_ready();
	log_info("strata serve ready: root=%s address=%s registry hosts=%s", ctx->root,
	         ctx->address,
	         images_opts.hosts_dir ? images_opts.hosts_dir : PROXY_IMAGES_HOSTS_DIR);

	r = proxy_server_run(server);

	(void)install_signals(false);
	serve_server = NULL;
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "serve on \"%s\"", ctx->address);
	log_info("strata serve stopped");
	return 0;
}

int cmd_serve(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_METRICS = 0x100, OPT_UNMOUNT, OPT_HOLDER };
	static const struct option opts[] = {
	        {"metrics-address", required_argument, NULL, OPT_METRICS},
	        {"unmount-on-exit", no_argument, NULL, OPT_UNMOUNT},
	        /* hidden: the FUSE fd holder the daemon starts */
	        {"fuse-fd-holder", no_argument, NULL, OPT_HOLDER},
	        {0},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	struct serve_opts o = {0};
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_METRICS:
			if (!*optarg)
				return cli_usage_error("serve",
				                       "--metrics-address needs HOST:PORT");
			o.metrics_address = optarg;
			break;
		case OPT_UNMOUNT:
			o.unmount_on_exit = true;
			break;
		case OPT_HOLDER:
			return snap_lazy_holder_main() < 0 ? EXIT_ERROR : EXIT_OK;
		default:
			return cli_usage_error("serve", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("serve", "unknown argument \"%s\"", argv[optind]);
	if (serve(ctx, &o, &err) < 0) {
		log_error("%s", strata_error_message(err));
		return EXIT_ERROR;
	}
	return EXIT_OK;
}
