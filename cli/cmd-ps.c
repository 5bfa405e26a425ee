/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata ps: the container records in the runtime state dir (see
 * rt_state_dir), each asked of its shim (runtime/ rt_container_inspect). No
 * daemon needed: containers belong to their shims, not to `strata serve`.
 */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "progress.h"
#include "runtime.h"

struct row {
	struct rt_container_info info;
	int64_t created;
};

static int64_t parse_rfc3339(const char *s)
{
	struct tm tm = {0};
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

static const char *state_name(const struct rt_container_info *i)
{
	if (!i->shim_alive)
		return "dead";
	switch (i->status) {
	case RT_TASK_CREATED:
		return "created";
	case RT_TASK_RUNNING:
		return "running";
	case RT_TASK_STOPPED:
		return "exited";
	case RT_TASK_PAUSED:
	case RT_TASK_PAUSING:
		return "paused";
	default:
		return "unknown";
	}
}

static bool is_running(const struct rt_container_info *i)
{
	return i->shim_alive && (i->status == RT_TASK_RUNNING || i->status == RT_TASK_PAUSED ||
	                         i->status == RT_TASK_PAUSING);
}

/* "Up 3 seconds", "Exited (0) 2 minutes ago", "Created", "shim dead". */
static const char *status_text(const struct row *r, int64_t now, char *buf, size_t n)
{
	const struct rt_container_info *i = &r->info;
	char age[64];

	if (!i->shim_alive) {
		snprintf(buf, n, "shim dead");
	} else if (i->status == RT_TASK_STOPPED) {
		if (i->exited_at > 0)
			snprintf(buf, n, "Exited (%d) %s", i->exit_code,
			         cli_format_age(i->exited_at, now, age, sizeof(age)));
		else
			snprintf(buf, n, "Exited (%d)", i->exit_code);
	} else if (i->status == RT_TASK_CREATED) {
		snprintf(buf, n, "Created");
	} else if (is_running(i)) {
		cli_format_age(r->created, now, age, sizeof(age));
		size_t l = strlen(age);
		if (l > 4 && streq(age + l - 4, " ago"))
			age[l - 4] = '\0';
		snprintf(buf, n, "Up %s%s",
		         streq(age, "Less than a second") ? "less than a second" : age,
		         i->status == RT_TASK_RUNNING ? "" : " (Paused)");
	} else {
		snprintf(buf, n, "Unknown");
	}
	return buf;
}

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	/* Newest first, as docker. */
	int c = strcmp(strempty(y->info.created), strempty(x->info.created));
	return c ? c : strcmp(strempty(x->info.id), strempty(y->info.id));
}

static json_t *row_json(const struct row *r, int64_t now)
{
	const struct rt_container_info *i = &r->info;
	char status[128], t[64];
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(strempty(i->id)));
	json_object_set_new(o, "name", i->name ? json_string(i->name) : json_null());
	json_object_set_new(o, "image", json_string(strempty(i->image)));
	json_object_set_new(o, "command", json_string(strempty(i->command)));
	json_object_set_new(o, "created", json_string(strempty(i->created)));
	json_object_set_new(o, "state", json_string(state_name(i)));
	json_object_set_new(o, "status", json_string(status_text(r, now, status, sizeof(status))));
	json_object_set_new(o, "shim_alive", json_boolean(i->shim_alive));
	json_object_set_new(o, "pid", json_integer(i->pid));
	json_object_set_new(o, "shim_pid", json_integer(i->shim_pid));
	if (i->shim_alive && i->status == RT_TASK_STOPPED) {
		json_object_set_new(o, "exit_code", json_integer(i->exit_code));
		json_object_set_new(o, "exited_at",
		                    i->exited_at > 0 ? json_string(cli_format_time(i->exited_at, 0,
		                                                                   t, sizeof(t)))
		                                     : json_null());
	} else {
		json_object_set_new(o, "exit_code", json_null());
		json_object_set_new(o, "exited_at", json_null());
	}
	json_object_set_new(o, "ip", i->ip ? json_string(i->ip) : json_null());
	return o;
}

int cmd_ps(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"all", no_argument, NULL, 'a'},
	        {"json", no_argument, NULL, 'J'},
	        {"quiet", no_argument, NULL, 'q'},
	        {0},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	bool all = false, as_json = false, quiet = false;
	struct row *rows = NULL;
	size_t n = 0;
	char **ids = NULL;
	_cleanup_free_ char *state = NULL;
	int64_t now = (int64_t)time(NULL);
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "aq", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			all = true;
			break;
		case 'J':
			as_json = true;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return cli_usage_error("ps", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("ps", "unexpected argument \"%s\"", argv[optind]);

	r = rt_state_dir(ctx->config, ctx->address, &state, &err);
	if (r >= 0)
		r = rt_container_list(state, &ids, &err);
	if (r < 0)
		return cli_fail("ps", "%s", strata_error_message(err));
	for (size_t k = 0; ids[k]; k++)
		n++;
	rows = calloc(n + 1, sizeof(*rows));
	if (!rows) {
		r = -ENOMEM;
		goto out;
	}
	n = 0;
	for (size_t k = 0; ids[k]; k++) {
		struct rt_container *ct = NULL;
		/* A record removed meanwhile (a concurrent rm) is skipped. */
		if (rt_container_load(state, ids[k], &ct, NULL) < 0)
			continue;
		if (rt_container_inspect(ct, &rows[n].info, NULL) >= 0) {
			rows[n].created = parse_rfc3339(rows[n].info.created);
			if (all || as_json || is_running(&rows[n].info))
				n++;
			else
				rt_container_info_done(&rows[n].info);
		}
		rt_container_free(ct);
	}
	qsort(rows, n, sizeof(*rows), cmp_rows);

	if (as_json) {
		_cleanup_json_ json_t *a = json_array();
		for (size_t k = 0; k < n; k++)
			if (all || is_running(&rows[k].info))
				json_array_append_new(a, row_json(&rows[k], now));
		_cleanup_free_ char *s = json_dumps(a, JSON_INDENT(2));
		if (!s) {
			r = -ENOMEM;
			goto out;
		}
		printf("%s\n", s);
	} else if (quiet) {
		for (size_t k = 0; k < n; k++)
			printf("%.12s\n", rows[k].info.id);
	} else {
		printf("%-12s   %-30s %-22s %-24s %-28s %s\n", "CONTAINER ID", "IMAGE", "COMMAND",
		       "CREATED", "STATUS", "NAMES");
		for (size_t k = 0; k < n; k++) {
			const struct rt_container_info *i = &rows[k].info;
			char cmd[32], created[64], status[128];
			const char *command = strempty(i->command);
			if (strlen(command) > 19)
				snprintf(cmd, sizeof(cmd), "\"%.18s…\"", command);
			else
				snprintf(cmd, sizeof(cmd), "\"%s\"", command);
			printf("%-12.12s   %-30s %-22s %-24s %-28s %s\n", strempty(i->id),
			       strempty(i->image), cmd,
			       cli_format_age(rows[k].created, now, created, sizeof(created)),
			       status_text(&rows[k], now, status, sizeof(status)),
			       strempty(i->name));
		}
	}
	r = 0;
out:
	for (size_t k = 0; k < n; k++)
		rt_container_info_done(&rows[k].info);
	free(rows);
	for (size_t k = 0; ids && ids[k]; k++)
		free(ids[k]);
	free(ids);
	if (r < 0)
		return cli_fail("ps", "%s", strerror(-r));
	return EXIT_OK;
}
