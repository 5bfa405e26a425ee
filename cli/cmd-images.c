/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata images [--json] [-q], strata images inspect REF: clients of the
 * daemon's Images/List and Images/Get.
 */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "progress.h"

typedef Strata__Images__V1__Image ImagePb;

#define LIST_TIMEOUT_MS 60000

static json_t *timestamp_json(const Google__Protobuf__Timestamp *ts)
{
	char buf[64];

	if (!ts)
		return json_null();
	return json_string(cli_format_time(ts->seconds, ts->nanos, buf, sizeof(buf)));
}

/* Every field of the Image message, named as in the proto. */
static json_t *image_json(const ImagePb *im)
{
	json_t *o = json_object(), *chain = json_array(), *labels = json_object();

	if (!o || !chain || !labels) {
		json_decref(o);
		json_decref(chain);
		json_decref(labels);
		return NULL;
	}
	for (size_t i = 0; i < im->n_chain_ids; i++)
		(void)json_array_append_new(chain, json_string(im->chain_ids[i]));
	for (size_t i = 0; i < im->n_labels; i++)
		(void)json_object_set_new(labels, im->labels[i]->key,
		                          json_string(im->labels[i]->value));
	(void)json_object_set_new(o, "name", json_string(im->name));
	(void)json_object_set_new(o, "digest", json_string(im->digest));
	(void)json_object_set_new(o, "media_type", json_string(im->media_type));
	(void)json_object_set_new(o, "size", json_integer(im->size));
	(void)json_object_set_new(o, "created_at", timestamp_json(im->created_at));
	(void)json_object_set_new(o, "updated_at", timestamp_json(im->updated_at));
	(void)json_object_set_new(o, "config_digest", json_string(im->config_digest));
	(void)json_object_set_new(o, "manifest_digest", json_string(im->manifest_digest));
	(void)json_object_set_new(o, "platform", json_string(im->platform));
	(void)json_object_set_new(o, "chain_ids", chain);
	(void)json_object_set_new(o, "labels", labels);
	return o;
}

static int print_json(json_t *j)
{
	_cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (!s)
		return -ENOMEM;
	printf("%s\n", s);
	return 0;
}

static int cmp_images(const void *a, const void *b)
{
	const ImagePb *x = *(const ImagePb *const *)a, *y = *(const ImagePb *const *)b;

	return strcmp(x->name, y->name);
}

static int images_list(struct cli_ctx *ctx, bool json, bool quiet)
{
	Strata__Images__V1__ListImagesRequest req = STRATA__IMAGES__V1__LIST_IMAGES_REQUEST__INIT;
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	Strata__Images__V1__ListImagesResponse *resp = NULL;
	int r;

	r = cli_connect(ctx, "images", &client);
	if (r != 0)
		return r;
	r = proxy_client_unary(client, "/strata.images.v1.Images/List", &req.base,
	                       &strata__images__v1__list_images_response__descriptor,
	                       (ProtobufCMessage **)&resp, LIST_TIMEOUT_MS, &err);
	if (r < 0)
		return cli_fail("images", "%s", strata_error_message(err));

	/* Stable output whatever order the daemon keeps. */
	if (resp->n_images > 1)
		qsort(resp->images, resp->n_images, sizeof(*resp->images), cmp_images);

	if (json) {
		_cleanup_json_ json_t *arr = json_array();
		for (size_t i = 0; arr && i < resp->n_images; i++)
			if (json_array_append_new(arr, image_json(resp->images[i])) < 0)
				arr = (json_decref(arr), NULL);
		r = arr ? print_json(arr) : -ENOMEM;
	} else if (quiet) {
		for (size_t i = 0; i < resp->n_images; i++)
			printf("%s\n", resp->images[i]->name);
	} else {
		size_t w = strlen("NAME");
		int64_t now = (int64_t)time(NULL);

		for (size_t i = 0; i < resp->n_images; i++)
			w = MAX(w, strlen(resp->images[i]->name));
		printf("%-*s  %-12s  %-9s  %s\n", (int)w, "NAME", "DIGEST", "SIZE", "CREATED");
		for (size_t i = 0; i < resp->n_images; i++) {
			const ImagePb *im = resp->images[i];
			char sd[16], size[16], age[48];

			printf("%-*s  %-12s  %-9s  %s\n", (int)w, im->name,
			       cli_short_digest(im->digest, sd, sizeof(sd)),
			       cli_format_size(im->size, size, sizeof(size)),
			       cli_format_age(im->created_at ? im->created_at->seconds : 0, now,
			                      age, sizeof(age)));
		}
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (r < 0)
		return cli_fail("images", "out of memory");
	return EXIT_OK;
}

/* Stored JSON (manifest or config) as a JSON value, so inspect prints one
 * well-formed document rather than embedded strings. */
static int parse_blob(const ProtobufCBinaryData *b, const char *what, json_t **ret,
                      struct strata_error **ret_err)
{
	if (b->len == 0) {
		*ret = json_null();
		return 0;
	}
	return json_parse((const char *)b->data, b->len, what, ret, ret_err);
}

static int images_inspect(struct cli_ctx *ctx, const char *ref)
{
	Strata__Images__V1__GetImageRequest req = STRATA__IMAGES__V1__GET_IMAGE_REQUEST__INIT;
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	Strata__Images__V1__GetImageResponse *resp = NULL;
	_cleanup_json_ json_t *out = NULL;
	json_t *manifest = NULL, *config = NULL;
	int r;

	r = cli_connect(ctx, "images", &client);
	if (r != 0)
		return r;
	req.name = (char *)ref;
	r = proxy_client_unary(client, "/strata.images.v1.Images/Get", &req.base,
	                       &strata__images__v1__get_image_response__descriptor,
	                       (ProtobufCMessage **)&resp, LIST_TIMEOUT_MS, &err);
	if (r < 0)
		return cli_fail_ref("images inspect", ref, err);
	r = parse_blob(&resp->manifest, "manifest", &manifest, &err);
	if (r >= 0)
		r = parse_blob(&resp->config, "config", &config, &err);
	if (r < 0) {
		json_decref(manifest);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return cli_fail("images inspect", "%s: %s", ref, strata_error_message(err));
	}
	out = json_object();
	if (out) {
		(void)json_object_set_new(out, "image",
		                          resp->image ? image_json(resp->image) : json_null());
		(void)json_object_set_new(out, "manifest", manifest);
		(void)json_object_set_new(out, "config", config);
		r = print_json(out);
	} else {
		json_decref(manifest);
		json_decref(config);
		r = -ENOMEM;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r < 0 ? cli_fail("images inspect", "out of memory") : EXIT_OK;
}

int cmd_images(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"json", no_argument, NULL, 'j'},
	        {"quiet", no_argument, NULL, 'q'},
	        {0},
	};
	bool json = false, quiet = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			if (optopt)
				return cli_usage_error(
				        "images", "unknown or incomplete option '-%c'", optopt);
			return cli_usage_error("images", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (optind < argc && streq(argv[optind], "inspect")) {
		if (json || quiet)
			return cli_usage_error("images",
			                       "inspect takes no options (it prints JSON)");
		if (argc - optind != 2)
			return cli_usage_error("images",
			                       "inspect needs exactly one image reference");
		return images_inspect(ctx, argv[optind + 1]);
	}
	if (optind < argc)
		return cli_usage_error("images", "unexpected argument \"%s\"", argv[optind]);
	if (json && quiet)
		return cli_usage_error("images", "--json and -q exclude each other");
	return images_list(ctx, json, quiet);
}
