/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pull-test-tool: offline inspection of a Strata root for the pull
 * integration tests (tests/integration/04-pull.bats), run while the daemon
 * is stopped. Strata's own snapshots are invisible over gRPC by design, so
 * the tests look at them here.
 *
 *   pull-test-tool ROOT snapshots             "name kind" per snapshot
 *   pull-test-tool ROOT mount PARENT TARGET   a view on PARENT mounted on TARGET
 *   pull-test-tool ROOT unmount TARGET        undo mount
 *   pull-test-tool ROOT private DIGEST        1 or 0: Strata's private mark
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "content.h"
#include "snapshotter.h"

#define VIEW_KEY "pull-test-tool-view"

static int print_one(const struct snap_info *info, void *userdata)
{
	printf("%s %s\n", info->name, snap_kind_to_string(info->kind));
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_(strata_meta_closep) struct strata_meta *meta = NULL;
	_cleanup_(content_store_closep) struct content_store *content = NULL;
	_cleanup_(snap_store_closep) struct snap_store *snaps = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *metadir = NULL;
	int r;

	if (argc < 3) {
		fprintf(stderr, "usage: %s ROOT snapshots|mount|unmount|private ...\n", argv[0]);
		return 2;
	}
	metadir = path_join(argv[1], "meta");
	r = strata_meta_open(metadir, NULL, &meta, &err);
	if (r >= 0)
		r = snap_store_open(argv[1], meta, NULL, &snaps, &err);
	if (r >= 0)
		r = content_store_open(argv[1], meta, NULL, &content, &err);
	if (r < 0)
		goto fail;

	if (streq(argv[2], "snapshots")) {
		r = snap_walk(snaps, NULL, 0, print_one, NULL, &err);
	} else if (streq(argv[2], "mount") && argc == 5) {
		struct snap_mount *m = NULL;
		size_t n = 0;

		r = snap_view(snaps, VIEW_KEY, argv[3], NULL, 0, &m, &n, &err);
		if (r >= 0)
			r = snap_mount_apply(m, n, argv[4], &err);
		snap_mounts_free(m, n);
	} else if (streq(argv[2], "unmount") && argc == 4) {
		(void)snap_unmount(argv[3]);
		r = snap_remove(snaps, VIEW_KEY, &err);
	} else if (streq(argv[2], "private") && argc == 4) {
		struct strata_digest d;

		r = strata_digest_parse(argv[3], &d, &err);
		if (r >= 0)
			r = content_mark_is_private(content, &d);
		if (r >= 0)
			printf("%d\n", r);
	} else {
		fprintf(stderr, "unknown command\n");
		return 2;
	}
	if (r >= 0)
		return 0;
fail:
	fprintf(stderr, "%s\n", err ? strata_error_message(err) : strerror(-r));
	return 1;
}
