/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata rmi REF...: Images/Delete for each reference. Every reference is
 * tried; the exit code is 1 if any of them failed, each failure named.
 * Blobs and snapshots the image used stay until `strata prune`.
 */
#include <getopt.h>

#include "progress.h"

int cmd_rmi(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {{0}};
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	int c, r, ret = EXIT_OK;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (optopt)
			return cli_usage_error("rmi", "unknown or incomplete option '-%c'", optopt);
		return cli_usage_error("rmi", "unknown or incomplete option '%s'",
		                       argv[optind - 1]);
	}
	if (optind >= argc)
		return cli_usage_error("rmi", "missing image reference");

	r = cli_connect(ctx, "rmi", &client);
	if (r != 0)
		return r;
	for (int i = optind; i < argc; i++) {
		Strata__Images__V1__DeleteImageRequest req =
		        STRATA__IMAGES__V1__DELETE_IMAGE_REQUEST__INIT;
		_cleanup_error_ struct strata_error *err = NULL;
		ProtobufCMessage *resp = NULL;

		req.name = argv[i];
		r = proxy_client_unary(client, "/strata.images.v1.Images/Delete", &req.base,
		                       &google__protobuf__empty__descriptor, &resp, 60000, &err);
		if (r < 0) {
			ret = cli_fail_ref("rmi", argv[i], err);
			continue;
		}
		protobuf_c_message_free_unpacked(resp, NULL);
		printf("removed %s\n", argv[i]);
	}
	return ret;
}
