/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Presentation for the image commands (pull, images, rmi, prune): pull
 * progress (per-layer bars redrawn in place on a terminal, log-style lines
 * otherwise), human sizes and ages, and the connection to the daemon.
 */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "images.pb-c.h"
#include "proxy.h"

/* Connect to the daemon at ctx->address; on failure print the reason
 * ("... is `strata serve` running?") as cmd's error and return EXIT_ERROR,
 * else 0. The image commands never start the daemon themselves. */
int cli_connect(const struct cli_ctx *ctx, const char *cmd, struct proxy_client **ret);

/* cli_fail() for an operation on ref: "strata: CMD: REF: message", without
 * the "REF: " when the daemon's message already names it. */
int cli_fail_ref(const char *cmd, const char *ref, const struct strata_error *err);

/* "0 B", "512 B", "1.5 kB", "23.4 MB", "1.02 GB" (powers of 1000, as docker). */
const char *cli_format_size(int64_t bytes, char *buf, size_t n);
/* "Less than a second ago", "3 minutes ago", "About an hour ago", ... */
const char *cli_format_age(int64_t then_sec, int64_t now_sec, char *buf, size_t n);
/* RFC 3339 UTC with nanoseconds, containerd's rendering of a timestamp. */
const char *cli_format_time(int64_t sec, int32_t nsec, char *buf, size_t n);
/* The first 12 hex digits of "sha256:..." (the digest itself if not one). */
const char *cli_short_digest(const char *digest, char *buf, size_t n);

enum cli_progress_mode {
	CLI_PROGRESS_TTY,   /* bars redrawn in place, at most ~10 times a second */
	CLI_PROGRESS_PLAIN, /* one line per layer state change */
	CLI_PROGRESS_QUIET, /* nothing */
};

struct cli_progress;

struct cli_progress *cli_progress_new(FILE *out, enum cli_progress_mode mode);
/* Feed one PullProgress message (layer states and an optional human line). */
void cli_progress_update(struct cli_progress *p, const Strata__Images__V1__PullProgress *msg);
/* Final redraw (TTY) so the bars show where the pull ended. */
void cli_progress_finish(struct cli_progress *p);
size_t cli_progress_layers(const struct cli_progress *p);
struct cli_progress *cli_progress_free(struct cli_progress *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cli_progress *, cli_progress_free)
