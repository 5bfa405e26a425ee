/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A canned strata.images.v1.Images service on proxy/'s server, so the CLI's
 * image commands (rendering, exit codes, error paths) are tested without a
 * registry or a real image store. test-cli-images.sh drives it.
 *
 * usage: fake-images-server SOCKET
 * Knows one image, "example.com/app:1". Pull of a ref containing "missing"
 * fails NotFound; "die" makes the server exit mid-stream; anything else
 * streams two layers' progress and returns the image. Delete of the known
 * image works once. Prints "ready" when listening.
 */
#include <signal.h>
#include <string.h>
#include <time.h>

#include "proxy.h"
#include "images.pb-c.h"

#define IMAGE_NAME   "example.com/app:1"
#define IMAGE_DIGEST "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define LAYER_A      "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LAYER_B      "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

typedef Strata__Images__V1__Image ImagePb;
typedef Strata__Images__V1__LayerProgress LayerPb;

static struct proxy_server *server;
static bool deleted;

static void on_signal(int sig)
{
	(void)sig;
	proxy_server_stop(server);
}

static void fill_image(ImagePb *im, Google__Protobuf__Timestamp *ts, char **chain)
{
	im->name = (char *)IMAGE_NAME;
	im->digest = (char *)IMAGE_DIGEST;
	im->media_type = (char *)"application/vnd.oci.image.manifest.v1+json";
	im->size = 2345678;
	ts->seconds = (int64_t)time(NULL) - 180;
	ts->nanos = 5;
	im->created_at = ts;
	im->updated_at = ts;
	im->config_digest = (char *)"sha256:cccc";
	im->manifest_digest = (char *)IMAGE_DIGEST;
	im->platform = (char *)"linux/amd64";
	chain[0] = (char *)"sha256:chain-a";
	chain[1] = (char *)"sha256:chain-b";
	im->chain_ids = chain;
	im->n_chain_ids = 2;
}

static int pull(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                struct strata_error **ret_err)
{
	const Strata__Images__V1__PullRequest *req = (const void *)request;
	LayerPb a = STRATA__IMAGES__V1__LAYER_PROGRESS__INIT,
	        b = STRATA__IMAGES__V1__LAYER_PROGRESS__INIT;
	LayerPb *layers[] = {&a, &b};
	Strata__Images__V1__PullProgress msg = STRATA__IMAGES__V1__PULL_PROGRESS__INIT;
	ImagePb im = STRATA__IMAGES__V1__IMAGE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	char *chain[2];
	int r;

	(void)userdata;
	if (strstr(req->ref, "missing"))
		return strata_error_set(ret_err, -ENOENT, "%s: not found", req->ref);
	if (req->user[0] && !streq(req->user, "bob:secret"))
		return strata_error_set(ret_err, -EACCES, "registry: wrong credentials for bob");
	a.digest = (char *)LAYER_A;
	b.digest = (char *)LAYER_B;
	a.size = 2000000;
	b.size = 300000;
	msg.layers = layers;
	msg.n_layers = 2;
	msg.message = (char *)"resolved to " IMAGE_DIGEST;
	if ((r = proxy_call_send(call, &msg.base)) < 0)
		return r;
	msg.message = (char *)"";
	b.state = STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__EXISTS;
	b.done = b.size;
	a.state = STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__DOWNLOADING;
	for (int i = 0; i <= 10; i++) {
		a.done = a.size * i / 10;
		if ((r = proxy_call_send(call, &msg.base)) < 0)
			return r;
		if (i == 5 && strstr(req->ref, "die"))
			_exit(3);
		(void)nanosleep(&(struct timespec){.tv_nsec = 30 * 1000 * 1000}, NULL);
	}
	a.state = STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__EXTRACTING;
	if ((r = proxy_call_send(call, &msg.base)) < 0)
		return r;
	a.state = STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__DONE;
	fill_image(&im, &ts, chain);
	msg.image = &im;
	return proxy_call_send(call, &msg.base);
}

static int list(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                struct strata_error **ret_err)
{
	Strata__Images__V1__ListImagesResponse resp =
	        STRATA__IMAGES__V1__LIST_IMAGES_RESPONSE__INIT;
	ImagePb im = STRATA__IMAGES__V1__IMAGE__INIT, *ims[] = {&im};
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	char *chain[2];

	(void)request;
	(void)userdata;
	(void)ret_err;
	fill_image(&im, &ts, chain);
	resp.images = ims;
	resp.n_images = deleted ? 0 : 1;
	return proxy_call_send(call, &resp.base);
}

static int get(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
               struct strata_error **ret_err)
{
	const Strata__Images__V1__GetImageRequest *req = (const void *)request;
	Strata__Images__V1__GetImageResponse resp = STRATA__IMAGES__V1__GET_IMAGE_RESPONSE__INIT;
	ImagePb im = STRATA__IMAGES__V1__IMAGE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	static const char manifest[] =
	        "{\"schemaVersion\":2,\"layers\":[{\"digest\":\"" LAYER_A "\"}]}";
	static const char config[] = "{\"config\":{\"Cmd\":[\"/bin/sh\"]}}";
	char *chain[2];

	(void)userdata;
	if (deleted || !streq(req->name, IMAGE_NAME))
		return strata_error_set(ret_err, -ENOENT, "image \"%s\": not found", req->name);
	fill_image(&im, &ts, chain);
	resp.image = &im;
	resp.manifest = (ProtobufCBinaryData){sizeof(manifest) - 1, (uint8_t *)manifest};
	resp.config = (ProtobufCBinaryData){sizeof(config) - 1, (uint8_t *)config};
	return proxy_call_send(call, &resp.base);
}

static int delete (struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                   struct strata_error **ret_err)
{
	const Strata__Images__V1__DeleteImageRequest *req = (const void *)request;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

	(void)userdata;
	if (deleted || !streq(req->name, IMAGE_NAME))
		return strata_error_set(ret_err, -ENOENT, "image \"%s\": not found", req->name);
	deleted = true;
	return proxy_call_send(call, &e.base);
}

static int prune(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                 struct strata_error **ret_err)
{
	const Strata__Images__V1__PruneRequest *req = (const void *)request;
	Strata__Images__V1__PruneResponse resp = STRATA__IMAGES__V1__PRUNE_RESPONSE__INIT;
	char *blobs[] = {(char *)LAYER_A, (char *)LAYER_B};
	char *snaps[] = {(char *)"sha256:chain-a"};

	(void)userdata;
	(void)ret_err;
	(void)req;
	resp.removed_blobs = blobs;
	resp.n_removed_blobs = 2;
	resp.removed_snapshots = snaps;
	resp.n_removed_snapshots = 1;
	resp.reclaimed_bytes = 2300000;
	return proxy_call_send(call, &resp.base);
}

static const struct proxy_method methods[] = {
        {"Pull", PROXY_SERVER_STREAM, &strata__images__v1__pull_request__descriptor, pull},
        {"List", PROXY_UNARY, &strata__images__v1__list_images_request__descriptor, list},
        {"Get", PROXY_UNARY, &strata__images__v1__get_image_request__descriptor, get},
        {"Delete", PROXY_UNARY, &strata__images__v1__delete_image_request__descriptor, delete},
        {"Prune", PROXY_UNARY, &strata__images__v1__prune_request__descriptor, prune},
};

int main(int argc, char **argv)
{
	_cleanup_error_ struct strata_error *err = NULL;
	struct proxy_server_config cfg = {.max_workers = 1};
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: fake-images-server SOCKET\n");
		return 2;
	}
	cfg.address = argv[1];
	r = proxy_server_new(&cfg, &server, &err);
	if (r >= 0)
		r = proxy_server_register_service(server, "strata.images.v1.Images", methods,
		                                  ELEMENTSOF(methods), NULL, &err);
	if (r < 0) {
		fprintf(stderr, "fake-images-server: %s\n", strata_error_message(err));
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	printf("ready\n");
	fflush(stdout);
	r = proxy_server_run(server);
	server = proxy_server_free(server);
	return r < 0 ? 1 : 0;
}
