/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata convert --estargz: runs in this process (content/convert.c); it
 * needs neither the daemon nor the store.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "content.h"

enum {
	OPT_ESTARGZ = 0x100,
	OPT_CHUNK_SIZE,
	OPT_PREFETCH,
	OPT_PLAIN_HTTP,
	OPT_LEVEL,
	OPT_THREADS,
	OPT_JOBS,
	OPT_USER,
};

/* "4194304", "4M", "512K", "1G". */
static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || v == 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* One path per line; blank lines and '#' comments skipped. */
static int read_prefetch(const char *file, char ***ret, size_t *ret_n)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, n = 0;
	char **list = NULL;
	ssize_t len;

	if (!f)
		return -errno;
	while ((len = getline(&line, &cap, f)) >= 0) {
		char *p = line, **a;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
		                   line[len - 1] == ' ' || line[len - 1] == '\t'))
			line[--len] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		a = realloc(list, (n + 1) * sizeof(*a));
		if (!a)
			goto oom;
		list = a;
		if (!(list[n] = strdup(p)))
			goto oom;
		n++;
	}
	*ret = list;
	*ret_n = n;
	return 0;
oom:
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return -ENOMEM;
}

int cmd_convert(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"estargz", no_argument, NULL, OPT_ESTARGZ},
	        {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
	        {"prefetch-files", required_argument, NULL, OPT_PREFETCH},
	        {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
	        {"compression-level", required_argument, NULL, OPT_LEVEL},
	        {"threads", required_argument, NULL, OPT_THREADS},
	        {"jobs", required_argument, NULL, OPT_JOBS},
	        {"user", required_argument, NULL, OPT_USER},
	        {"quiet", no_argument, NULL, 'q'},
	        {0},
	};
	_cleanup_error_ struct strata_error *err = NULL;
	struct content_convert_options o = {0};
	struct content_convert_result res;
	const char *prefetch_file = NULL;
	char **prefetch = NULL, ds[STRATA_DIGEST_STRING_MAX];
	size_t n_prefetch = 0;
	bool estargz = false, quiet = false;
	struct timespec t0, t1;
	int c, r, rc;
	char *end;
	long v;

	(void)ctx;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ESTARGZ:
			estargz = true;
			break;
		case OPT_CHUNK_SIZE:
			if (parse_size(optarg, &o.estargz.chunk_size) < 0)
				return cli_usage_error("convert",
				                       "--chunk-size needs a size such as 4194304 "
				                       "or 4M (got \"%s\")",
				                       optarg);
			break;
		case OPT_PREFETCH:
			prefetch_file = optarg;
			break;
		case OPT_PLAIN_HTTP:
			o.plain_http = true;
			break;
		case OPT_LEVEL:
			v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 1 || v > 12)
				return cli_usage_error(
				        "convert", "--compression-level needs 1-12 (got \"%s\")",
				        optarg);
			o.estargz.level = (int)v;
			break;
		case OPT_THREADS:
		case OPT_JOBS:
			v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 1 || v > 64)
				return cli_usage_error("convert", "%s needs 1-64 (got \"%s\")",
				                       c == OPT_THREADS ? "--threads" : "--jobs",
				                       optarg);
			if (c == OPT_THREADS)
				o.estargz.threads = (unsigned)v;
			else
				o.layer_jobs = (unsigned)v;
			break;
		case OPT_USER:
			if (!*optarg)
				return cli_usage_error("convert", "--user needs USER:PASSWORD");
			o.user = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			if (optopt && optopt < 0x100)
				return cli_usage_error(
				        "convert", "unknown or incomplete option '-%c'", optopt);
			return cli_usage_error("convert", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (!estargz)
		return cli_usage_error("convert", "say which format: --estargz (the only one)");
	if (argc - optind != 2)
		return cli_usage_error("convert", "needs SRC and DST (got %d arguments)",
		                       argc - optind);
	if (prefetch_file) {
		r = read_prefetch(prefetch_file, &prefetch, &n_prefetch);
		if (r < 0)
			return cli_fail("convert", "--prefetch-files %s: %s", prefetch_file,
			                strerror(-r));
		o.estargz.prefetch = (const char *const *)prefetch;
		o.estargz.n_prefetch = n_prefetch;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = content_convert_estargz(argv[optind], argv[optind + 1], &o, &res, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (size_t i = 0; i < n_prefetch; i++)
		free(prefetch[i]);
	free(prefetch);
	if (r < 0) {
		rc = cli_fail("convert", "%s", err ? err->msg : strerror(-r));
		return rc;
	}
	if (quiet) {
		printf("%s\n", strata_digest_format(&res.digest, ds));
		return EXIT_OK;
	}
	printf("converted %s -> %s\n"
	       "  %s %s (%zu platform%s, %zu layer%s)\n"
	       "  layers: %" PRIu64 " -> %" PRIu64 " bytes in %.2f s\n",
	       argv[optind], argv[optind + 1], res.media_type,
	       strata_digest_format(&res.digest, ds), res.n_images, res.n_images == 1 ? "" : "s",
	       res.n_layers, res.n_layers == 1 ? "" : "s", res.in_bytes, res.out_bytes,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return EXIT_OK;
}
