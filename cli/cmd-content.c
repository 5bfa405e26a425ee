/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata content ls|verify: read-only inspection of the content store.
 *
 * These open the store directly, read-only, so they work with or without a
 * running daemon (LMDB allows readers in other processes; the daemon stays
 * the only writer) and never repair anything: `verify` reports, it does not
 * fix.
 */
#include <inttypes.h>

#include "cli.h"
#include "content.h"

struct ro_store {
	struct strata_meta *meta;
	struct content_store *store;
};

static void ro_store_close(struct ro_store *s)
{
	s->store = content_store_close(s->store);
	s->meta = strata_meta_close(s->meta);
}

static int ro_store_open(struct cli_ctx *ctx, struct ro_store *s, struct strata_error **ret_err)
{
	struct strata_meta_options mo = {.read_only = 1};
	struct content_options co = {.skip_startup_check = true, .ingest_expiry_sec = -1};
	_cleanup_free_ char *meta_dir = path_join(ctx->root, "meta");
	int r;

	if (!meta_dir)
		return -ENOMEM;
	r = strata_meta_open(meta_dir, &mo, &s->meta, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "no store at root \"%s\"", ctx->root);
	r = content_store_open(ctx->root, s->meta, &co, &s->store, ret_err);
	if (r < 0)
		ro_store_close(s);
	return r;
}

static int print_info(const struct content_info *info, void *userdata)
{
	char d[STRATA_DIGEST_STRING_MAX];

	printf("%s\t%" PRId64 "\t", strata_digest_format(&info->digest, d), info->size);
	for (size_t i = 0; i < info->n_labels; i++)
		printf("%s%s=%s", i ? "," : "", info->labels[i].key, info->labels[i].value);
	printf("\n");
	return 0;
}

static void report_bad(const struct strata_digest *digest, int error, void *userdata)
{
	char d[STRATA_DIGEST_STRING_MAX];
	size_t *bad = userdata;

	(*bad)++;
	fprintf(stderr, "strata: content verify: %s: %s\n", strata_digest_format(digest, d),
	        error == -EBADMSG ? "content does not match its digest" : strerror(-error));
}

int cmd_content(struct cli_ctx *ctx, int argc, char **argv)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct ro_store s = {0};
	size_t bad = 0;
	int r;

	if (argc != 2 || (!streq(argv[1], "ls") && !streq(argv[1], "verify")))
		return cli_usage_error("content", "expected 'ls' or 'verify'");
	r = ro_store_open(ctx, &s, &err);
	if (r < 0)
		return cli_fail("content", "%s", strata_error_message(err));

	if (streq(argv[1], "ls")) {
		printf("DIGEST\tSIZE\tLABELS\n");
		r = content_walk(s.store, NULL, 0, print_info, NULL, &err);
	} else {
		r = content_verify_all(s.store, report_bad, &bad, &err);
	}
	ro_store_close(&s);
	if (r < 0)
		return cli_fail("content", "%s: %s", argv[1], strata_error_message(err));
	if (streq(argv[1], "verify")) {
		if (bad > 0)
			return cli_fail("content", "verify: %zu blob%s do not match their digest",
			                bad, bad == 1 ? "" : "s");
		printf("all blobs verified\n");
	}
	return EXIT_OK;
}
