/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata snapshots ls|info KEY|usage [KEY]|rm KEY...|mount KEY PARENT DIR:
 * clients of the daemon's Images/ListSnapshots, RemoveSnapshots and
 * ViewSnapshot, which show
 * every snapshot of the store: Strata's own ("@strata/...", which
 * containerd's Snapshots service hides) and containerd's ("ns/seq/key"),
 * with the counters of lazy (remote) layers.
 */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "progress.h"
#include "snapshotter.h"

typedef Strata__Images__V1__Snapshot SnapPb;
typedef Strata__Images__V1__ListSnapshotsResponse ListPb;

#define CALL_TIMEOUT_MS 120000

static int list(struct proxy_client *client, const char *key, bool usage, ListPb **ret,
                struct strata_error **ret_err)
{
	Strata__Images__V1__ListSnapshotsRequest req =
	        STRATA__IMAGES__V1__LIST_SNAPSHOTS_REQUEST__INIT;

	req.key = (char *)(key ? key : "");
	req.usage = usage;
	return proxy_client_unary(client, "/strata.images.v1.Images/ListSnapshots", &req.base,
	                          &strata__images__v1__list_snapshots_response__descriptor,
	                          (ProtobufCMessage **)ret, CALL_TIMEOUT_MS, ret_err);
}

static json_t *timestamp_json(const Google__Protobuf__Timestamp *ts)
{
	char buf[64];

	if (!ts)
		return json_null();
	return json_string(cli_format_time(ts->seconds, ts->nanos, buf, sizeof(buf)));
}

static json_t *lazy_json(const Strata__Images__V1__LazyStats *l)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	(void)json_object_set_new(o, "bytes_fetched", json_integer((json_int_t)l->bytes_fetched));
	(void)json_object_set_new(o, "blob_size", json_integer((json_int_t)l->blob_size));
	(void)json_object_set_new(o, "requests", json_integer((json_int_t)l->requests));
	(void)json_object_set_new(o, "chunks_fetched", json_integer((json_int_t)l->chunks_fetched));
	(void)json_object_set_new(o, "cache_hits", json_integer((json_int_t)l->cache_hits));
	(void)json_object_set_new(o, "cache_misses", json_integer((json_int_t)l->cache_misses));
	(void)json_object_set_new(o, "verify_failures",
	                          json_integer((json_int_t)l->verify_failures));
	(void)json_object_set_new(o, "toc_entries", json_integer((json_int_t)l->toc_entries));
	(void)json_object_set_new(o, "toc_memory", json_integer((json_int_t)l->toc_memory));
	(void)json_object_set_new(o, "healthy", json_boolean(l->healthy));
	if (l->prefetch && *l->prefetch)
		(void)json_object_set_new(o, "prefetch", json_string(l->prefetch));
	(void)json_object_set_new(o, "prefetch_bytes", json_integer((json_int_t)l->prefetch_bytes));
	(void)json_object_set_new(o, "prefetch_total", json_integer((json_int_t)l->prefetch_total));
	if (l->background && *l->background)
		(void)json_object_set_new(o, "background", json_string(l->background));
	(void)json_object_set_new(o, "background_done",
	                          json_integer((json_int_t)l->background_done));
	(void)json_object_set_new(o, "background_total",
	                          json_integer((json_int_t)l->background_total));
	(void)json_object_set_new(o, "pull_credentials", json_boolean(l->pull_credentials));
	return o;
}

/* Every field of the Snapshot message, named as in the proto. */
static json_t *snapshot_json(const SnapPb *s)
{
	json_t *o = json_object(), *labels = json_object();

	if (!o || !labels) {
		json_decref(o);
		json_decref(labels);
		return NULL;
	}
	for (size_t i = 0; i < s->n_labels; i++)
		(void)json_object_set_new(labels, s->labels[i]->key,
		                          json_string(s->labels[i]->value));
	(void)json_object_set_new(o, "name", json_string(s->name));
	(void)json_object_set_new(o, "parent", json_string(s->parent));
	(void)json_object_set_new(o, "kind", json_string(s->kind));
	(void)json_object_set_new(o, "created_at", timestamp_json(s->created_at));
	(void)json_object_set_new(o, "updated_at", timestamp_json(s->updated_at));
	(void)json_object_set_new(o, "labels", labels);
	(void)json_object_set_new(o, "strata", json_boolean(s->strata));
	(void)json_object_set_new(o, "remote", json_boolean(s->remote));
	if (s->has_usage) {
		(void)json_object_set_new(o, "size", json_integer(s->size));
		(void)json_object_set_new(o, "inodes", json_integer(s->inodes));
	}
	if (s->lazy)
		(void)json_object_set_new(o, "lazy", lazy_json(s->lazy));
	return o;
}

static int print_json(json_t *j)
{
	_cleanup_free_ char *s = NULL;

	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	printf("%s\n", s);
	return 0;
}

/* "lazy 1.2 MB/30 MB" for a mounted remote layer, with the prefetch or
 * background fetch while it runs or when it failed ("prefetching",
 * "background 40%"), "lazy (unmounted)", or "-". */
static const char *lazy_column(const SnapPb *s, char *buf, size_t n)
{
	const Strata__Images__V1__LazyStats *l = s->lazy;
	char a[16], b[16], fetch[32] = "";

	if (!s->remote)
		return "-";
	if (!l)
		return "lazy (not mounted)";
	if (streq(strempty(l->prefetch), "running"))
		snprintf(fetch, sizeof(fetch), " prefetching");
	else if (streq(strempty(l->prefetch), "failed"))
		snprintf(fetch, sizeof(fetch), " prefetch failed");
	else if (streq(strempty(l->background), "running") && l->background_total > 0)
		snprintf(fetch, sizeof(fetch), " background %u%%",
		         (unsigned)(l->background_done * 100 / l->background_total));
	snprintf(buf, n, "lazy %s/%s%s%s", cli_format_size((int64_t)l->bytes_fetched, a, sizeof(a)),
	         cli_format_size((int64_t)l->blob_size, b, sizeof(b)), fetch,
	         l->healthy ? "" : " UNHEALTHY");
	return buf;
}

static int do_ls(struct proxy_client *client, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"json", no_argument, NULL, 'j'},
	        {"quiet", no_argument, NULL, 'q'},
	        {0},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	ListPb *resp = NULL;
	bool json = false, quiet = false;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return cli_usage_error("snapshots", "ls: unknown option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("snapshots", "ls: unexpected argument \"%s\"", argv[optind]);
	r = list(client, NULL, false, &resp, &err);
	if (r < 0)
		return cli_fail("snapshots", "%s", strata_error_message(err));
	if (json) {
		json_t *a = json_array();

		for (size_t i = 0; a && i < resp->n_snapshots; i++)
			(void)json_array_append_new(a, snapshot_json(resp->snapshots[i]));
		r = print_json(a);
	} else {
		if (!quiet)
			printf("%-80s %-80s %-10s %s\n", "KEY", "PARENT", "KIND", "LAZY");
		for (size_t i = 0; i < resp->n_snapshots; i++) {
			const SnapPb *s = resp->snapshots[i];
			char lz[96];

			if (quiet)
				printf("%s\n", s->name);
			else
				printf("%-80s %-80s %-10s %s\n", s->name,
				       *s->parent ? s->parent : "-", s->kind,
				       lazy_column(s, lz, sizeof(lz)));
		}
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r < 0 ? cli_fail("snapshots", "out of memory") : EXIT_OK;
}

static int do_info(struct proxy_client *client, int argc, char **argv)
{
	_cleanup_error_ struct strata_error *err = NULL;
	ListPb *resp = NULL;
	int r;

	if (argc != 2)
		return cli_usage_error("snapshots", "info takes one KEY");
	r = list(client, argv[1], true, &resp, &err);
	if (r < 0)
		return cli_fail("snapshots", "%s", strata_error_message(err));
	r = resp->n_snapshots == 1 ? print_json(snapshot_json(resp->snapshots[0])) : -EPROTO;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r < 0 ? cli_fail("snapshots", "info %s: %s", argv[1], strerror(-r)) : EXIT_OK;
}

static int do_usage(struct proxy_client *client, int argc, char **argv)
{
	_cleanup_error_ struct strata_error *err = NULL;
	ListPb *resp = NULL;
	int64_t total = 0, inodes = 0;
	int r;

	if (argc > 2)
		return cli_usage_error("snapshots", "usage takes at most one KEY");
	r = list(client, argc == 2 ? argv[1] : NULL, true, &resp, &err);
	if (r < 0)
		return cli_fail("snapshots", "%s", strata_error_message(err));
	printf("%-80s %-12s %s\n", "KEY", "SIZE", "INODES");
	for (size_t i = 0; i < resp->n_snapshots; i++) {
		const SnapPb *s = resp->snapshots[i];
		char size[16];

		if (!s->has_usage) {
			printf("%-80s %-12s %s\n", s->name, "?", "?");
			continue;
		}
		total += s->size;
		inodes += s->inodes;
		printf("%-80s %-12s %" PRId64 "\n", s->name,
		       cli_format_size(s->size, size, sizeof(size)), s->inodes);
	}
	if (argc < 2) {
		char size[16];
		printf("%-80s %-12s %" PRId64 "\n", "total",
		       cli_format_size(total, size, sizeof(size)), inodes);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return EXIT_OK;
}

static int do_rm(struct proxy_client *client, int argc, char **argv)
{
	Strata__Images__V1__RemoveSnapshotsRequest req =
	        STRATA__IMAGES__V1__REMOVE_SNAPSHOTS_REQUEST__INIT;
	Strata__Images__V1__RemoveSnapshotsResponse *resp = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	int r, code;

	if (argc < 2)
		return cli_usage_error("snapshots", "rm needs at least one KEY");
	req.keys = argv + 1;
	req.n_keys = (size_t)argc - 1;
	r = proxy_client_unary(client, "/strata.images.v1.Images/RemoveSnapshots", &req.base,
	                       &strata__images__v1__remove_snapshots_response__descriptor,
	                       (ProtobufCMessage **)&resp, CALL_TIMEOUT_MS, &err);
	if (r < 0)
		return cli_fail("snapshots", "%s", strata_error_message(err));
	for (size_t i = 0; i < resp->n_removed; i++)
		printf("%s\n", resp->removed[i]);
	for (size_t i = 0; i < resp->n_errors; i++)
		(void)cli_fail("snapshots", "rm %s", resp->errors[i]);
	code = resp->n_errors > 0 ? EXIT_ERROR : EXIT_OK;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return code;
}

/* A read-only view KEY on PARENT, mounted on DIR here (the mounts come
 * from the daemon: lazy layers are its FUSE mounts). */
static int do_mount(struct proxy_client *client, int argc, char **argv)
{
	Strata__Images__V1__ViewSnapshotRequest req =
	        STRATA__IMAGES__V1__VIEW_SNAPSHOT_REQUEST__INIT;
	Strata__Images__V1__ViewSnapshotResponse *resp = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	struct snap_mount *m;
	int r;

	if (argc != 4)
		return cli_usage_error("snapshots", "mount takes KEY PARENT DIR");
	req.key = argv[1];
	req.parent = argv[2];
	r = proxy_client_unary(client, "/strata.images.v1.Images/ViewSnapshot", &req.base,
	                       &strata__images__v1__view_snapshot_response__descriptor,
	                       (ProtobufCMessage **)&resp, CALL_TIMEOUT_MS, &err);
	if (r < 0)
		return cli_fail("snapshots", "%s", strata_error_message(err));
	m = calloc(MAX(resp->n_mounts, (size_t)1), sizeof(*m));
	if (!m) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return cli_fail("snapshots", "out of memory");
	}
	for (size_t i = 0; i < resp->n_mounts; i++)
		m[i] = (struct snap_mount){resp->mounts[i]->type, resp->mounts[i]->source,
		                           resp->mounts[i]->options, resp->mounts[i]->n_options};
	r = snap_mount_apply(m, resp->n_mounts, argv[3], &err);
	free(m);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (r < 0)
		return cli_fail("snapshots",
		                "mount %s on %s: %s (remove the view with `strata "
		                "snapshots rm %s`)",
		                argv[1], argv[3], strata_error_message(err), argv[1]);
	return EXIT_OK;
}

int cmd_snapshots(struct cli_ctx *ctx, int argc, char **argv)
{
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	const char *sub;
	int r;

	if (argc < 2)
		return cli_usage_error("snapshots",
		                       "missing subcommand (ls, info, usage, rm, mount)");
	sub = argv[1];
	if (!streq(sub, "ls") && !streq(sub, "list") && !streq(sub, "info") &&
	    !streq(sub, "usage") && !streq(sub, "rm") && !streq(sub, "remove") &&
	    !streq(sub, "mount"))
		return cli_usage_error("snapshots", "unknown subcommand \"%s\"", sub);
	r = cli_connect(ctx, "snapshots", &client);
	if (r != 0)
		return r;
	if (streq(sub, "ls") || streq(sub, "list"))
		return do_ls(client, argc - 1, argv + 1);
	if (streq(sub, "info"))
		return do_info(client, argc - 1, argv + 1);
	if (streq(sub, "usage"))
		return do_usage(client, argc - 1, argv + 1);
	if (streq(sub, "mount"))
		return do_mount(client, argc - 1, argv + 1);
	return do_rm(client, argc - 1, argv + 1);
}
