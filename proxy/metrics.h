/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's Prometheus endpoint (metrics.c): a tiny HTTP/1.1 server on
 * its own thread that answers GET /metrics with the text exposition format
 * (version 0.0.4): per lazy layer counters from snapshotter/
 * (snap_lazy_stats) and a few daemon gauges. Off unless an address is given
 * (`strata serve --metrics-address`). One request per connection, answered
 * in order; a scrape is small and cheap, so one thread is enough, and a
 * client that stalls is cut off after a few seconds.
 *
 * Included by proxy/proxy.h, the module's public header.
 */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "common.h"

struct snap_store;
struct content_store;
struct proxy_metrics;

struct proxy_metrics_config {
	/* "HOST:PORT": 127.0.0.1:9464, [::1]:9464, or ":9464" for every
	 * address. Port 0 picks a free one (see proxy_metrics_port()). */
	const char *address;
	struct snap_store *snaps;      /* borrowed; must outlive the server */
	struct content_store *content; /* borrowed; may be NULL */
};

/* Bind, listen and start the thread. -EADDRINUSE etc. with a message. */
int proxy_metrics_start(const struct proxy_metrics_config *cfg, struct proxy_metrics **ret,
                        struct strata_error **ret_err);
/* Stop the thread, close the socket. NULL-safe; returns NULL. */
struct proxy_metrics *proxy_metrics_stop(struct proxy_metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct proxy_metrics *, proxy_metrics_stop)
/* The bound port. */
unsigned proxy_metrics_port(const struct proxy_metrics *m);

/* Write the whole exposition to f (also what GET /metrics answers). */
int proxy_metrics_write(FILE *f, struct snap_store *snaps, struct content_store *content);

/* Bytes and files of the lazy layers' chunk cache (ROOT/cache/chunks, next
 * to ROOT/snapshots); walks the directory. 0 when there is none. */
int proxy_lazy_cache_usage(struct snap_store *snaps, uint64_t *ret_bytes, uint64_t *ret_files);
