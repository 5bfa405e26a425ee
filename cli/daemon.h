/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Find the Strata daemon, or start it. `strata run` (and the container
 * commands that need the daemon's snapshots) call cli_daemon_connect(): when
 * nothing answers at --address it starts `strata serve` itself, detached
 * (own session, not our child, output to ROOT/strata.log), with the same
 * --root/--address/--config/--log-level, writes its pid to ROOT/strata.pid
 * and waits until it answers grpc.health.v1.Health/Check.
 */
#pragma once

#include <stdbool.h>

#include "cli.h"
#include "proxy.h"

/* How long to wait for an autostarted daemon (env STRATA_START_TIMEOUT_MS
 * overrides it). */
#define CLI_DAEMON_START_TIMEOUT_MS 15000

/* Connect to the daemon at ctx->address. autostart: start it when nothing
 * answers (-ENOENT/-ECONNREFUSED), else fail with the connect error.
 * *ret_started (may be NULL) tells whether we started it. */
int cli_daemon_connect(const struct cli_ctx *ctx, bool autostart, struct proxy_client **ret,
                       bool *ret_started, struct strata_error **ret_err);

/* --- what the container commands share ------------------------------------ */

struct rt_cni_config;

/* "@strata/ctr/<id>": a container's active snapshot on the daemon (the
 * daemon's Snapshots service lets Strata's CLI use this one '@' namespace;
 * containerd never sees it). ret must hold CLI_SNAPSHOT_KEY_MAX bytes. */
#define CLI_SNAPSHOT_PREFIX  "@strata/ctr/"
#define CLI_SNAPSHOT_KEY_MAX 160
const char *cli_container_snapshot_key(const char *id, char ret[static CLI_SNAPSHOT_KEY_MAX]);

/* Remove a container's snapshot. *client may be NULL or stale: it is
 * (re)connected, starting the daemon if autostart. A snapshot already gone
 * is success. */
int cli_container_snapshot_remove(const struct cli_ctx *ctx, struct proxy_client **client,
                                  const char *id, bool autostart, struct strata_error **ret_err);

/* CNI settings from the config file's [runtime] table: cni_conf_dir and
 * cni_plugin_path (":"-separated). Unset = the runtime's defaults. */
void cli_runtime_cni_config(const struct cli_ctx *ctx, struct rt_cni_config *ret);
