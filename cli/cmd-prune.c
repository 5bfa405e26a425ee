/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata prune [--dry-run] [--cache[=KEEP]]: Images/Prune removes the blobs
 * and snapshots no image references, and we list them with the bytes
 * reclaimed. --cache also evicts the lazy layers' chunk cache (down to KEEP
 * bytes, default nothing), least recently used first.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>

#include "progress.h"

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
	int c, r;

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
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return EXIT_OK;
}
