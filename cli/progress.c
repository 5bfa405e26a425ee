/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pull progress and the small formatting helpers of the image commands.
 *
 * The daemon streams a PullProgress message whenever a layer advances; on a
 * terminal we redraw one line per layer in place (cursor up over the block,
 * then each line cleared and rewritten), throttled to 10 redraws a second
 * except when a layer changes state, so slow terminals and ssh sessions are
 * not flooded. Speed is an exponentially weighted average of the byte rate
 * between redraws; the ETA follows from it.
 */
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "progress.h"

#define REDRAW_INTERVAL_MS 100

typedef Strata__Images__V1__LayerProgress LayerPb;

struct layer {
	char *digest;
	int64_t size, done;
	int state;
	/* speed estimate */
	int64_t last_done;
	uint64_t last_ms;
	double rate; /* bytes per second, 0 = unknown yet */
};

struct cli_progress {
	FILE *out;
	enum cli_progress_mode mode;
	struct layer *layers;
	size_t n_layers;
	size_t drawn; /* lines of the block currently on screen (TTY) */
	uint64_t last_draw_ms;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cli_connect(const struct cli_ctx *ctx, const char *cmd, struct proxy_client **ret)
{
	_cleanup_error_ struct strata_error *err = NULL;

	if (proxy_client_connect(ctx->address, ret, &err) < 0)
		return cli_fail(cmd, "%s", strata_error_message(err));
	return 0;
}

int cli_fail_ref(const char *cmd, const char *ref, const struct strata_error *err)
{
	const char *msg = strata_error_message(err);

	if (strstr(msg, ref))
		return cli_fail(cmd, "%s", msg);
	return cli_fail(cmd, "%s: %s", ref, msg);
}

const char *cli_format_size(int64_t bytes, char *buf, size_t n)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	double v = (double)bytes;
	size_t u = 0;

	if (bytes < 1000) {
		snprintf(buf, n, "%lld B", (long long)bytes);
		return buf;
	}
	while (v >= 1000 && u + 1 < ELEMENTSOF(units)) {
		v /= 1000;
		u++;
	}
	/* Three significant digits, like docker's HumanSize. */
	snprintf(buf, n, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

const char *cli_format_age(int64_t then_sec, int64_t now_sec, char *buf, size_t n)
{
	int64_t d = now_sec - then_sec;
	static const struct {
		int64_t secs;
		const char *one, *many;
	} steps[] = {
	        {365 * 86400, "About a year", "years"}, {30 * 86400, "About a month", "months"},
	        {7 * 86400, "About a week", "weeks"},   {86400, "About a day", "days"},
	        {3600, "About an hour", "hours"},       {60, "About a minute", "minutes"},
	};

	if (then_sec <= 0) {
		snprintf(buf, n, "N/A");
		return buf;
	}
	if (d < 1) {
		snprintf(buf, n, "Less than a second ago");
		return buf;
	}
	for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
		int64_t k = d / steps[i].secs;
		if (k >= 2) {
			snprintf(buf, n, "%lld %s ago", (long long)k, steps[i].many);
			return buf;
		}
		if (k == 1) {
			snprintf(buf, n, "%s ago", steps[i].one);
			return buf;
		}
	}
	snprintf(buf, n, "%lld second%s ago", (long long)d, d == 1 ? "" : "s");
	return buf;
}

const char *cli_format_time(int64_t sec, int32_t nsec, char *buf, size_t n)
{
	time_t t = (time_t)sec;
	struct tm tm;
	char date[32];

	if (!gmtime_r(&t, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(date, sizeof(date), "1970-01-01T00:00:00");
	if (nsec > 0)
		snprintf(buf, n, "%s.%09dZ", date, (int)nsec);
	else
		snprintf(buf, n, "%sZ", date);
	return buf;
}

const char *cli_short_digest(const char *digest, char *buf, size_t n)
{
	const char *hex = digest && strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : NULL;

	if (!hex)
		return strempty(digest);
	snprintf(buf, n, "%.12s", hex);
	return buf;
}

struct cli_progress *cli_progress_new(FILE *out, enum cli_progress_mode mode)
{
	struct cli_progress *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->out = out;
	p->mode = mode;
	return p;
}

struct cli_progress *cli_progress_free(struct cli_progress *p)
{
	if (!p)
		return NULL;
	for (size_t i = 0; i < p->n_layers; i++)
		free(p->layers[i].digest);
	free(p->layers);
	free(p);
	return NULL;
}

size_t cli_progress_layers(const struct cli_progress *p)
{
	return p->n_layers;
}

static struct layer *find_layer(struct cli_progress *p, const char *digest)
{
	struct layer *l;

	for (size_t i = 0; i < p->n_layers; i++)
		if (streq(p->layers[i].digest, digest))
			return &p->layers[i];
	l = realloc(p->layers, (p->n_layers + 1) * sizeof(*l));
	if (!l)
		return NULL;
	p->layers = l;
	l = &p->layers[p->n_layers];
	*l = (struct layer){.digest = strdup(digest), .state = -1};
	if (!l->digest)
		return NULL;
	p->n_layers++;
	return l;
}

static const char *state_name(int state)
{
	switch (state) {
	case STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__WAITING:
		return "waiting";
	case STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__DOWNLOADING:
		return "downloading";
	case STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__EXTRACTING:
		return "extracting";
	case STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__DONE:
		return "done";
	case STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__EXISTS:
		return "already exists";
	case STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__LAZY:
		return "lazy (fetched on demand)";
	default:
		return "unknown";
	}
}

static unsigned term_width(FILE *out)
{
	struct winsize ws;

	if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
		return ws.ws_col;
	return 80;
}

/* One line for a layer, never wider than the terminal (a wrapped line would
 * break the cursor-up arithmetic). */
static void render_layer(const struct layer *l, unsigned width, char *line, size_t n)
{
	char sd[16], done[16], size[16], rate[48] = "", eta[48] = "";
	const char *d = cli_short_digest(l->digest, sd, sizeof(sd));

	if (l->state != STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__DOWNLOADING) {
		if (l->size > 0)
			snprintf(line, n, "%-12s %s (%s)", d, state_name(l->state),
			         cli_format_size(l->size, size, sizeof(size)));
		else
			snprintf(line, n, "%-12s %s", d, state_name(l->state));
		return;
	}
	(void)cli_format_size(l->done, done, sizeof(done));
	(void)cli_format_size(l->size, size, sizeof(size));
	if (l->rate > 0) {
		char r[16];
		snprintf(rate, sizeof(rate), "%s/s",
		         cli_format_size((int64_t)l->rate, r, sizeof(r)));
		if (l->size > l->done) {
			int64_t s = (int64_t)((double)(l->size - l->done) / l->rate + 0.5);
			if (s >= 3600)
				snprintf(eta, sizeof(eta), "ETA %lldh%02lldm",
				         (long long)(s / 3600), (long long)(s / 60 % 60));
			else if (s >= 60)
				snprintf(eta, sizeof(eta), "ETA %lldm%02llds", (long long)(s / 60),
				         (long long)(s % 60));
			else
				snprintf(eta, sizeof(eta), "ETA %llds", (long long)s);
		}
	}
	/* "digest [bar] done / size  rate  eta": the bar takes what is left. */
	char tail[160];
	snprintf(tail, sizeof(tail), " %9s / %-9s %11s %-10s", done, size, rate, eta);
	int bar = (int)width - 1 - 12 - 3 - (int)strlen(tail);
	if (bar > 50)
		bar = 50;
	if (bar < 10 || l->size <= 0) {
		snprintf(line, n, "%-12s%s", d, tail);
		return;
	}
	char barbuf[64];
	int fill = (int)((double)bar * (double)MIN(l->done, l->size) / (double)l->size);
	for (int i = 0; i < bar; i++)
		barbuf[i] = i < fill ? '=' : i == fill ? '>' : ' ';
	barbuf[bar] = '\0';
	snprintf(line, n, "%-12s [%s]%s", d, barbuf, tail);
}

static void redraw(struct cli_progress *p)
{
	unsigned width = term_width(p->out);
	char line[512];

	if (p->drawn > 0)
		fprintf(p->out, "\033[%zuA", p->drawn);
	for (size_t i = 0; i < p->n_layers; i++) {
		render_layer(&p->layers[i], width, line, sizeof(line));
		if (strlen(line) >= width)
			line[width - 1] = '\0';
		fprintf(p->out, "\r\033[2K%s\n", line);
	}
	p->drawn = p->n_layers;
	(void)fflush(p->out);
	p->last_draw_ms = mono_ms();
}

static void update_rate(struct layer *l, int64_t done, uint64_t now)
{
	if (l->last_ms == 0 || done < l->last_done) {
		l->last_ms = now;
		l->last_done = done;
		return;
	}
	/* Sample at most every 250 ms, so the rate does not jitter between
	 * back-to-back messages. */
	if (now - l->last_ms < 250)
		return;
	double inst = (double)(done - l->last_done) * 1000.0 / (double)(now - l->last_ms);
	l->rate = l->rate > 0 ? 0.7 * l->rate + 0.3 * inst : inst;
	l->last_ms = now;
	l->last_done = done;
}

void cli_progress_update(struct cli_progress *p, const Strata__Images__V1__PullProgress *msg)
{
	uint64_t now = mono_ms();
	bool changed = false;

	if (p->mode == CLI_PROGRESS_QUIET)
		return;
	if (msg->message && *msg->message) {
		if (p->mode == CLI_PROGRESS_TTY && p->drawn > 0) {
			/* The line goes above the block, which is redrawn below it. */
			fprintf(p->out, "\033[%zuA\r\033[2K", p->drawn);
			p->drawn = 0;
			changed = true;
		}
		fprintf(p->out, "%s\n", msg->message);
	}
	for (size_t i = 0; i < msg->n_layers; i++) {
		const LayerPb *lp = msg->layers[i];
		struct layer *l = find_layer(p, lp->digest);

		if (!l)
			continue;
		l->size = lp->size;
		l->done = lp->done;
		if (lp->state == STRATA__IMAGES__V1__LAYER_PROGRESS__STATE__DOWNLOADING)
			update_rate(l, lp->done, now);
		if ((int)lp->state == l->state)
			continue;
		l->state = (int)lp->state;
		changed = true;
		if (p->mode == CLI_PROGRESS_PLAIN) {
			char size[16];
			if (l->size > 0)
				fprintf(p->out, "%s: %s (%s)\n", l->digest, state_name(l->state),
				        cli_format_size(l->size, size, sizeof(size)));
			else
				fprintf(p->out, "%s: %s\n", l->digest, state_name(l->state));
		}
	}
	if (p->mode == CLI_PROGRESS_PLAIN) {
		(void)fflush(p->out);
		return;
	}
	if (changed || p->drawn != p->n_layers || now - p->last_draw_ms >= REDRAW_INTERVAL_MS)
		redraw(p);
}

void cli_progress_finish(struct cli_progress *p)
{
	if (p->mode == CLI_PROGRESS_TTY && p->n_layers > 0)
		redraw(p);
	(void)fflush(p->out);
}
