/* SPDX-License-Identifier: Apache-2.0 */
/*
 * strata pull: a client of the daemon's strata.images.v1.Images/Pull. The
 * daemon resolves, downloads and unpacks; we only show the progress it
 * streams and the final image.
 */
#include <getopt.h>
#include <string.h>
#include <termios.h>
#include <time.h>

#include "progress.h"

struct pull_state {
	struct cli_progress *progress;
	Strata__Images__V1__Image *image; /* a copy of the final message's image */
};

static int on_progress(const ProtobufCMessage *msg, void *userdata, struct strata_error **ret_err)
{
	const Strata__Images__V1__PullProgress *pp = (const void *)msg;
	struct pull_state *st = userdata;

	(void)ret_err;
	cli_progress_update(st->progress, pp);
	if (pp->image) {
		/* The message is freed after we return: keep a private copy. */
		size_t len = protobuf_c_message_get_packed_size(&pp->image->base);
		_cleanup_free_ uint8_t *buf = malloc(len ? len : 1);

		if (!buf)
			return -ENOMEM;
		(void)protobuf_c_message_pack(&pp->image->base, buf);
		if (st->image)
			protobuf_c_message_free_unpacked(&st->image->base, NULL);
		st->image = strata__images__v1__image__unpack(NULL, len, buf);
		if (!st->image)
			return -ENOMEM;
	}
	return 0;
}

/* Read a password from the terminal without echo. Only when stdin is one:
 * a password must never come from a pipe by accident. */
static int prompt_password(const char *user, char **ret)
{
	struct termios old, noecho;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &old) < 0)
		return -ENOTTY;
	noecho = old;
	noecho.c_lflag &= ~(tcflag_t)ECHO;
	noecho.c_lflag |= ECHONL;
	fprintf(stderr, "Password for %s: ", user);
	(void)fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) < 0)
		return negative_errno();
	n = getline(&line, &cap, stdin);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	if (n < 0) {
		free(line);
		return -EIO;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	*ret = line;
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

int cmd_pull(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_PLAIN_HTTP = 0x100, OPT_PLATFORM, OPT_LAZY, OPT_NO_LAZY, OPT_USER };
	static const struct option opts[] = {
	        {"plain-http", no_argument, NULL, OPT_PLAIN_HTTP},
	        {"platform", required_argument, NULL, OPT_PLATFORM},
	        {"lazy", no_argument, NULL, OPT_LAZY},
	        {"no-lazy", no_argument, NULL, OPT_NO_LAZY},
	        {"user", required_argument, NULL, OPT_USER},
	        {"quiet", no_argument, NULL, 'q'},
	        {0},
	};
	Strata__Images__V1__PullRequest req = STRATA__IMAGES__V1__PULL_REQUEST__INIT;
	_cleanup_(proxy_client_freep) struct proxy_client *client = NULL;
	_cleanup_(cli_progress_freep) struct cli_progress *progress = NULL;
	_cleanup_error_ struct strata_error *err = NULL;
	_cleanup_free_ char *password = NULL;
	const char *user = NULL;
	bool quiet = false, lazy = false, no_lazy = false;
	struct pull_state st = {0};
	char *userpass = NULL;
	struct timespec t0, t1;
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
		switch (c) {
		case OPT_PLAIN_HTTP:
			req.plain_http = true;
			break;
		case OPT_PLATFORM:
			if (!*optarg)
				return cli_usage_error(
				        "pull", "--platform needs a value (os/arch[/variant])");
			req.platform = optarg;
			break;
		case OPT_LAZY:
			lazy = true;
			break;
		case OPT_NO_LAZY:
			no_lazy = true;
			break;
		case OPT_USER:
			if (!*optarg)
				return cli_usage_error("pull", "--user needs USER[:PASSWORD]");
			user = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			if (optopt && optopt < 0x100)
				return cli_usage_error("pull", "unknown or incomplete option '-%c'",
				                       optopt);
			return cli_usage_error("pull", "unknown or incomplete option '%s'",
			                       argv[optind - 1]);
		}
	}
	if (lazy && no_lazy)
		return cli_usage_error("pull", "--lazy and --no-lazy exclude each other");
	if (optind >= argc)
		return cli_usage_error("pull", "missing image reference");
	if (argc - optind > 1)
		return cli_usage_error("pull", "one image reference at a time (got \"%s\" too)",
		                       argv[optind + 1]);
	req.ref = argv[optind];
	if (!*req.ref)
		return cli_usage_error("pull", "empty image reference");
	req.lazy = lazy      ? STRATA__IMAGES__V1__LAZY_MODE__LAZY_ALWAYS
	           : no_lazy ? STRATA__IMAGES__V1__LAZY_MODE__LAZY_NEVER
	                     : STRATA__IMAGES__V1__LAZY_MODE__LAZY_AUTO;

	if (user && !strchr(user, ':')) {
		r = prompt_password(user, &password);
		if (r == -ENOTTY)
			return cli_usage_error("pull",
			                       "--user %s has no password and stdin is not a "
			                       "terminal to ask for one: use --user USER:PASSWORD",
			                       user);
		if (r < 0)
			return cli_fail("pull", "read the password: %s", strerror(-r));
		if (asprintf(&userpass, "%s:%s", user, password) < 0)
			return cli_fail("pull", "out of memory");
		explicit_bzero(password, strlen(password));
		req.user = userpass;
	} else if (user) {
		req.user = (char *)user;
	}

	r = cli_connect(ctx, "pull", &client);
	if (r != 0) {
		free_secret(userpass);
		return r;
	}

	progress = cli_progress_new(stdout, quiet                   ? CLI_PROGRESS_QUIET
	                                    : isatty(STDOUT_FILENO) ? CLI_PROGRESS_TTY
	                                                            : CLI_PROGRESS_PLAIN);
	if (!progress) {
		free_secret(userpass);
		return cli_fail("pull", "out of memory");
	}
	st.progress = progress;
	(void)clock_gettime(CLOCK_MONOTONIC, &t0);
	r = proxy_client_stream(client, "/strata.images.v1.Images/Pull", &req.base,
	                        &strata__images__v1__pull_progress__descriptor, on_progress, &st, 0,
	                        &err);
	free_secret(userpass);
	(void)clock_gettime(CLOCK_MONOTONIC, &t1);
	cli_progress_finish(progress);
	if (r >= 0 && !st.image)
		r = strata_error_set(&err, -EPROTO, "the daemon finished without the pulled image");
	if (r < 0) {
		if (st.image)
			protobuf_c_message_free_unpacked(&st.image->base, NULL);
		/* The daemon's message starts "pull REF: "; "strata: pull: " says
		 * the verb already. */
		if (err && strncmp(strata_error_message(err), "pull ", 5) == 0 &&
		    strstr(strata_error_message(err), req.ref))
			return cli_fail("pull", "%s", strata_error_message(err) + 5);
		return cli_fail_ref("pull", req.ref, err);
	}

	if (quiet) {
		printf("%s@%s\n", st.image->name, st.image->digest);
	} else {
		char size[16];
		double secs =
		        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		size_t layers = st.image->n_chain_ids ? st.image->n_chain_ids
		                                      : cli_progress_layers(progress);

		printf("pulled %s (%s), %zu layer%s, %s in %.1f s\n", st.image->name,
		       st.image->digest, layers, layers == 1 ? "" : "s",
		       cli_format_size(st.image->size, size, sizeof(size)), secs);
	}
	protobuf_c_message_free_unpacked(&st.image->base, NULL);
	return EXIT_OK;
}
