/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata prune [--dry-run] [--cache[=KEEP]]: Images/Prune removes the blobs
 * and snapshots no image references, and we list them with the bytes
 * reclaimed. --cache also evicts the lazy layers' chunk cache (down to KEEP
 * bytes, default nothing), least recently used first.
 *
 * First, orphaned container snapshots: `strata run` prepares
 * "@strata/ctr/<id>" and the CLI removes it with the container, so a failed
 * Remove or a CLI killed between Prepare and writing the container's record
 * leaves one behind that the daemon's Prune never touches (it cannot know
 * our containers). We remove those whose record (STATE/containers/<id>) is
 * gone, but never one younger than a grace period (a `strata run` may be
 * between Prepare and its record right now), nor one that is mounted.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon.h"
#include "progress.h"
#include "runtime.h"
#include "snapshots.pb-c.h"

/* Long enough for any `strata run` to get from Prepare to its record. */
#define CTR_GRACE_SEC   60
#define CALL_TIMEOUT_MS 120000

/* "123", "64k", "512M", "2G" (powers of 1024). */
static int parse_size(const char *s, uint64_t *ret)
{
	char *end = NULL;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] && !(streq(end + 1, "B") || streq(end + 1, "iB")))
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

/* The grace period; STRATA_PRUNE_GRACE (seconds) is for tests only. */
static int64_t ctr_grace(void)
{
	const char *s = getenv("STRATA_PRUNE_GRACE");
	char *end;
	long long v;

	if (!s || !*s)
		return CTR_GRACE_SEC;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < 0)
		return CTR_GRACE_SEC;
	return v;
}

static bool record_exists(const char *state, const char *id)
{
	_cleanup_free_ char *dir = path_join(state, "containers");
	struct stat st;

	/* when in doubt (out of memory, odd errors), the record exists */
	if (!dir)
		return true;
	if (fstatat(AT_FDCWD, dir, &st, 0) < 0)
		return errno != ENOENT;
	_cleanup_free_ char *rec = path_join(dir, id);
	if (!rec)
		return true;
	return fstatat(AT_FDCWD, rec, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

/* Whether anything on this host mounts the snapshot: an overlay with its
 * upperdir, or a bind of its directory. In doubt, yes. */
static bool snapshot_mounted(struct proxy_client *client, const char *key)
{
	Containerd__Services__Snapshots__V1__MountsRequest req =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_REQUEST__INIT;
	Containerd__Services__Snapshots__V1__MountsResponse *resp = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	char **needles = NULL;
	size_t n_needles = 0, cap = 0;
	bool found = false;
	int r;

	req.snapshotter = (char *)"strata";
	req.key = (char *)key;
	r = proxy_client_unary(client, "/containerd.services.snapshots.v1.Snapshots/Mounts",
	                       &req.base,
	                       &containerd__services__snapshots__v1__mounts_response__descriptor,
	                       (ProtobufCMessage **)&resp, CALL_TIMEOUT_MS, NULL);
	if (r < 0)
		return r != -ENOENT;
	needles = calloc(resp->n_mounts + 1, sizeof(*needles));
	if (!needles) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return true;
	}
	for (size_t i = 0; i < resp->n_mounts; i++) {
		const Containerd__Types__Mount *m = resp->mounts[i];
		char *n = NULL;

		if (streq(m->type, "overlay")) {
			for (size_t j = 0; j < m->n_options && !n; j++)
				if (strncmp(m->options[j], "upperdir=", 9) == 0)
					n = strdup(m->options[j]);
		} else if (m->source && *m->source) {
			/* mountinfo's root field: a bind mount's source */
			if (asprintf(&n, " %s ", m->source) < 0)
				n = NULL;
		}
		if (n)
			needles[n_needles++] = n;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		found = true;
	while (f && !found && getline(&line, &cap, f) > 0) {
		for (size_t i = 0; i < n_needles && !found; i++) {
			const char *hit = strstr(line, needles[i]);
			size_t k = strlen(needles[i]);
			/* upperdir=X must not match upperdir=X2 */
			found = hit && (needles[i][0] == ' ' || hit[k] == ',' || hit[k] == '\n' ||
			                hit[k] == '\0');
		}
	}
	for (size_t i = 0; i < n_needles; i++)
		free(needles[i]);
	free(needles);
	return found;
}

/*
 * Remove (or list, dry_run) the "@strata/ctr/<id>" snapshots whose
 * container record is gone. Prints one line per snapshot; *ret_n counts
 * them. Failing to remove one is reported and the rest go on.
 */
static int prune_container_snapshots(struct cli_ctx *ctx, struct proxy_client **client,
                                     bool dry_run, size_t *ret_n)
{
	Strata__Images__V1__ListSnapshotsRequest req =
	        STRATA__IMAGES__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	Strata__Images__V1__ListSnapshotsResponse *resp = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *state = NULL;
	const size_t pl = strlen(CLI_SNAPSHOT_PREFIX);
	int64_t grace = ctr_grace(), now = (int64_t)time(NULL);
	int r, ret = 0;

	*ret_n = 0;
	if (rt_state_dir(ctx->config, ctx->address, &state, &err) < 0)
		return cli_fail("prune", "%s", strata_error_message(err));
	req.key = (char *)"";
	r = proxy_client_unary(*client, "/strata.images.v1.Images/ListSnapshots", &req.base,
	                       &strata__images__v1__list_snapshots_response__descriptor,
	                       (ProtobufCMessage **)&resp, CALL_TIMEOUT_MS, &err);
	/* a daemon without ListSnapshots (an older one): nothing to sweep */
	if (r == -ENOSYS)
		return 0;
	if (r < 0)
		return cli_fail("prune", "list snapshots: %s", strata_error_message(err));

	for (size_t i = 0; i < resp->n_snapshots; i++) {
		const Strata__Images__V1__Snapshot *s = resp->snapshots[i];
		const char *id = s->name + pl;
		_cleanup_error_ struct strata_error *e = NULL;

		if (strncmp(s->name, CLI_SNAPSHOT_PREFIX, pl) != 0 || !*id || strchr(id, '/') ||
		    streq(id, ".") || streq(id, ".."))
			continue;
		/* no timestamp: as young as can be */
		if (!s->created_at || now - s->created_at->seconds < grace)
			continue;
		if (record_exists(state, id))
			continue;
		if (snapshot_mounted(*client, s->name)) {
			fprintf(stderr,
			        "strata: prune: container snapshot %s has no container "
			        "record but is mounted: kept\n",
			        s->name);
			continue;
		}
		if (dry_run) {
			printf("would remove container snapshot %s\n", s->name);
			(*ret_n)++;
			continue;
		}
		r = cli_container_snapshot_remove(ctx, client, id, false, &e);
		if (r < 0) {
			fprintf(stderr, "strata: prune: %s\n", strata_error_message(e));
			ret = EXIT_ERROR;
			if (!*client)
				break;
			continue;
		}
		printf("removed container snapshot %s\n", s->name);
		(*ret_n)++;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}

int cmd_prune(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_CACHE = 0x100 };
	static const struct option opts[] = {
	        {"dry-run", no_argument, NULL, 'n'},
	        {"cache", optional_argument, NULL, OPT_CACHE},
	        {0},
	};
	Strata__Images__V1__PruneRequest req = STRATA__IMAGES__V1__PRUNE_REQUEST__INIT;
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	Strata__Images__V1__PruneResponse *resp = NULL;
	const char *verb;
	char size[16];
	size_t n_ctr = 0;
	int c, r, code;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "n", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			req.dry_run = true;
			break;
		case OPT_CACHE:
			req.cache = true;
			if (optarg && parse_size(optarg, &req.cache_keep_bytes) < 0)
				return cli_usage_error("prune",
				                       "--cache=%s: want a size in bytes (k, M, G "
				                       "suffixes)",
				                       optarg);
			break;
		default:
			if (optopt && optopt < 0x100)
				return cli_usage_error(
				        "prune", "unknown or incomplete option '-%c'", optopt);
			return cli_usage_error("prune", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("prune", "unexpected argument \"%s\"", argv[optind]);

	r = cli_connect(ctx, "prune", &client);
	if (r != 0)
		return r;
	/* first, so that the layers under an orphan can go in the same prune */
	code = prune_container_snapshots(ctx, &client, req.dry_run, &n_ctr);
	if (!client)
		return code ? code : cli_fail("prune", "lost the connection to the daemon");
	/* A prune walks the store and deletes: no deadline. */
	r = proxy_client_unary(client, "/strata.images.v1.Images/Prune", &req.base,
	                       &strata__images__v1__prune_response__descriptor,
	                       (ProtobufCMessage **)&resp, 0, &err);
	if (r < 0)
		return cli_fail("prune", "%s", strata_error_message(err));

	verb = req.dry_run ? "would remove" : "removed";
	for (size_t i = 0; i < resp->n_removed_snapshots; i++)
		printf("%s snapshot %s\n", verb, resp->removed_snapshots[i]);
	for (size_t i = 0; i < resp->n_removed_blobs; i++)
		printf("%s blob %s\n", verb, resp->removed_blobs[i]);
	printf("%s %zu blob%s and %zu snapshot%s, %s %s\n", verb, resp->n_removed_blobs,
	       resp->n_removed_blobs == 1 ? "" : "s", resp->n_removed_snapshots,
	       resp->n_removed_snapshots == 1 ? "" : "s",
	       req.dry_run ? "would reclaim" : "reclaimed",
	       cli_format_size(resp->reclaimed_bytes, size, sizeof(size)));
	if (req.cache) {
		char before[16], after[16];

		printf("chunk cache: %s -> %s\n",
		       cli_format_size(resp->cache_bytes_before, before, sizeof(before)),
		       cli_format_size(resp->cache_bytes_after, after, sizeof(after)));
	}
	if (n_ctr > 0)
		printf("%s %zu container snapshot%s\n", verb, n_ctr, n_ctr == 1 ? "" : "s");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return code ? code : EXIT_OK;
}
