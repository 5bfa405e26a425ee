/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.toml: the settings file behind --config. Precedence for every
 * setting: command-line option > STRATA_* environment > config file >
 * built-in default. A missing file is fine at the default path and an error
 * when the user named it.
 *
 * Keys read here (the rest belong to the modules that own them and are
 * handed over as the parsed tree):
 *   root = "/var/lib/strata"
 *   address = "/run/strata/strata.sock"
 *   log_level = "info"
 */
#include <sys/stat.h>

#include "cli.h"

static int set_string(struct cli_ctx *ctx, const char *key, const char **field, bool already_set,
                      struct strata_error **ret_err)
{
	const char *s;
	int r = toml_as_string(toml_get(ctx->config, key), &s);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return strata_error_set(ret_err, -EINVAL, "%s: \"%s\" must be a string",
		                        ctx->config_path, key);
	if (!*s)
		return strata_error_set(ret_err, -EINVAL, "%s: \"%s\" must not be empty",
		                        ctx->config_path, key);
	if (!already_set)
		*field = s;
	return 0;
}

int cli_config_load(struct cli_ctx *ctx, struct strata_error **ret_err)
{
	static const char *const known[] = {"root",    "address",     "log_level", "registry",
	                                    "content", "snapshotter", "lazy",      "runtime"};
	const char *level;
	struct stat st;
	int r;

	if (!ctx->config_explicit && stat(ctx->config_path, &st) < 0 && errno == ENOENT)
		return 0;
	r = toml_parse_file(ctx->config_path, &ctx->config, ret_err);
	if (r < 0)
		return r;

	for (size_t i = 0; i < toml_count(ctx->config); i++) {
		const char *k = toml_key_at(ctx->config, i);
		bool ok = false;
		for (size_t j = 0; j < ELEMENTSOF(known); j++)
			ok = ok || streq(k, known[j]);
		if (!ok)
			log_warn("%s: unknown setting \"%s\" ignored", ctx->config_path, k);
	}

	r = set_string(ctx, "root", &ctx->root, ctx->root_set, ret_err);
	if (r >= 0)
		r = set_string(ctx, "address", &ctx->address, ctx->address_set, ret_err);
	if (r < 0)
		return r;
	if (!ctx->log_level_set &&
	    toml_as_string(toml_get(ctx->config, "log_level"), &level) >= 0) {
		if (log_level_from_string(level, &ctx->log_level) < 0)
			return strata_error_set(
			        ret_err, -EINVAL,
			        "%s: invalid log_level \"%s\" (debug, info, warn, error)",
			        ctx->config_path, level);
		log_set_level(ctx->log_level);
	}
	return 0;
}
