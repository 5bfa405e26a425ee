/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Between svc-images.c (strata.images.v1.Images) and pull.c (the pull
 * engine). Exposed to tests/unit/pull/ for the pure helpers.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "content.h"
#include "images.pb-c.h"
#include "proxy.h"
#include "snapshotter.h"

/* Snapshot keys and ingest refs Strata uses for its own images. containerd's
 * keys are "<namespace>/<seq>/<key>" with namespaces matching
 * ^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$, so nothing it makes starts with '@'. */
#define PROXY_STRATA_KEY_PREFIX     "@strata/"
#define PROXY_STRATA_EXTRACT_PREFIX "@strata/extract/"
#define PROXY_STRATA_INGEST_PREFIX  "@strata/pull/"
#define PROXY_STRATA_KEY_MAX        128

/* Progress messages: at most one per interval, plus one per state change. */
#define PROXY_PULL_PROGRESS_INTERVAL_US 100000

struct proxy_images {
	struct content_store *content;
	struct snap_store *snaps;
	char *hosts_dir;
	char *docker_config_dir; /* NULL: $DOCKER_CONFIG or ~/.docker */
	/* Pulls hold it shared for their whole run, Prune exclusively: Prune
	 * never sees a pull's blobs and snapshots before the image record that
	 * names them exists. */
	pthread_rwlock_t prune_lock;
};

/* Run one Images.Pull call: stream PullProgress on call, the last message
 * carrying the image. */
int proxy_pull(struct proxy_images *img, struct proxy_call *call,
               const Strata__Images__V1__PullRequest *req, struct strata_error **ret_err);

/* "@strata/<chainID>" into buf (PROXY_STRATA_KEY_MAX). */
char *proxy_strata_snapshot_key(const struct strata_digest *chain_id,
                                char buf[static PROXY_STRATA_KEY_MAX]);

/* Whether a progress message is due: on a state change always, on byte
 * counts at most once per PROXY_PULL_PROGRESS_INTERVAL_US. */
bool proxy_pull_progress_due(uint64_t now_us, uint64_t last_sent_us, bool state_changed,
                             bool bytes_changed);

/* An Image message with its own copies of everything (svc-images.c). */
Strata__Images__V1__Image *proxy_image_pb_new(const struct content_image_record *r);
void proxy_image_pb_free(Strata__Images__V1__Image *p);
