/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /metrics: Prometheus text exposition over a minimal HTTP/1.1 server.
 *
 * One thread polls the listening socket and an eventfd (stop). Each
 * connection gets one request and one answer ("Connection: close"), with
 * receive/send timeouts so a client that stalls cannot hold the thread.
 * The exposition is built from snapshotter/ and content/ calls that are
 * thread-safe on their own; nothing here is shared with the gRPC server.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content.h"
#include "metrics.h"
#include "snapshotter.h"

#define LABEL_REMOTE   "containerd.io/snapshot/remote"
#define REQUEST_MAX    8192
#define IO_TIMEOUT_SEC 5
#define CONTENT_TYPE   "text/plain; version=0.0.4; charset=utf-8"

/* --- the cache directory --------------------------------------------------- */

static void du_at(int dfd, uint64_t *bytes, uint64_t *files, unsigned depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;

		if (streq(e->d_name, ".") || streq(e->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < 4) {
			int fd = openat(dirfd(d), e->d_name,
			                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				du_at(fd, bytes, files, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			*bytes += (uint64_t)st.st_size;
			(*files)++;
		}
	}
	closedir(d);
}

int proxy_lazy_cache_usage(struct snap_store *snaps, uint64_t *ret_bytes, uint64_t *ret_files)
{
	const char *sd = snap_store_snapshots_dir(snaps);
	_cleanup_free_ char *dir = NULL;
	uint64_t bytes = 0, files = 0;
	const char *slash;
	int fd;

	/* ROOT/snapshots -> ROOT/cache/chunks (snapshotter/lazy-layer.c) */
	slash = strrchr(sd, '/');
	if (!slash)
		return -EINVAL;
	if (asprintf(&dir, "%.*s/cache/chunks", (int)(slash - sd), sd) < 0)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		du_at(fd, &bytes, &files, 0);
	else if (errno != ENOENT)
		return negative_errno();
	if (ret_bytes)
		*ret_bytes = bytes;
	if (ret_files)
		*ret_files = files;
	return 0;
}

/* --- the exposition -------------------------------------------------------- */

struct layer_sample {
	char *name;
	struct snap_lazy_stats st;
};

struct collect {
	struct snap_store *snaps;
	struct layer_sample *layers;
	size_t n_layers;
	uint64_t by_kind[4];
	uint64_t remote, unmounted;
};

static int collect_one(const struct snap_info *info, void *userdata)
{
	struct collect *c = userdata;
	struct snap_lazy_stats st = {0};
	struct layer_sample *a;

	if ((unsigned)info->kind < ELEMENTSOF(c->by_kind))
		c->by_kind[info->kind]++;
	if (!snap_info_label(info, LABEL_REMOTE))
		return 0;
	c->remote++;
	if (snap_lazy_stats(c->snaps, info->name, &st) < 0) {
		c->unmounted++;
		return 0;
	}
	a = realloc(c->layers, (c->n_layers + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	c->layers = a;
	a[c->n_layers].name = strdup(info->name);
	if (!a[c->n_layers].name)
		return -ENOMEM;
	a[c->n_layers++].st = st;
	return 0;
}

static int count_image(const struct content_image_record *r, void *userdata)
{
	(void)r;
	(*(uint64_t *)userdata)++;
	return 0;
}

/* A label value with \, " and newline escaped. */
static void put_label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

enum field {
	F_BYTES,
	F_REQUESTS,
	F_CHUNKS,
	F_HITS,
	F_MISSES,
	F_VERIFY,
	F_TOC_ENTRIES,
	F_TOC_MEMORY,
	F_BLOB_SIZE,
	F_HEALTHY,
	F_PREFETCH_BYTES,
	F_PREFETCH_TOTAL,
	F_BG_DONE,
	F_BG_TOTAL,
};

static uint64_t field_of(const struct snap_lazy_stats *st, enum field fld)
{
	switch (fld) {
	case F_BYTES:
		return st->bytes_fetched;
	case F_REQUESTS:
		return st->requests;
	case F_CHUNKS:
		return st->chunks_fetched;
	case F_HITS:
		return st->cache_hits;
	case F_MISSES:
		return st->cache_misses;
	case F_VERIFY:
		return st->verify_failures;
	case F_TOC_ENTRIES:
		return st->toc_entries;
	case F_TOC_MEMORY:
		return st->toc_memory;
	case F_BLOB_SIZE:
		return st->blob_size;
	case F_HEALTHY:
		return st->healthy;
	case F_PREFETCH_BYTES:
		return st->prefetch_bytes;
	case F_PREFETCH_TOTAL:
		return st->prefetch_total;
	case F_BG_DONE:
		return st->background_done;
	case F_BG_TOTAL:
		return st->background_total;
	}
	return 0;
}

static const struct {
	const char *name, *type, *help;
	enum field field;
} layer_families[] = {
        {"strata_lazy_bytes_fetched_total", "counter",
         "Bytes a lazy layer fetched from its registry (TOC included).", F_BYTES},
        {"strata_lazy_requests_total", "counter", "HTTP Range requests of a lazy layer.",
         F_REQUESTS},
        {"strata_lazy_chunks_fetched_total", "counter", "Chunks a lazy layer fetched and verified.",
         F_CHUNKS},
        {"strata_lazy_cache_hits_total", "counter", "Chunk reads served by the chunk cache.",
         F_HITS},
        {"strata_lazy_cache_misses_total", "counter", "Chunk reads that had to go to the registry.",
         F_MISSES},
        {"strata_lazy_verify_failures_total", "counter",
         "Chunks whose digest did not match the TOC (reads failed with EIO).", F_VERIFY},
        {"strata_lazy_toc_entries", "gauge", "Entries in a lazy layer's TOC.", F_TOC_ENTRIES},
        {"strata_lazy_toc_memory_bytes", "gauge", "Memory held by a lazy layer's compiled TOC.",
         F_TOC_MEMORY},
        {"strata_lazy_blob_size_bytes", "gauge", "Compressed size of a lazy layer's blob.",
         F_BLOB_SIZE},
        {"strata_lazy_healthy", "gauge", "1 when a lazy layer's registry is reachable.", F_HEALTHY},
        {"strata_lazy_prefetch_fetched_bytes", "gauge",
         "Bytes the prefetch (the range before .prefetch.landmark) fetched from the registry.",
         F_PREFETCH_BYTES},
        {"strata_lazy_prefetch_size_bytes", "gauge",
         "Compressed size of a lazy layer's prefetch range (0: none).", F_PREFETCH_TOTAL},
        {"strata_lazy_background_done_bytes", "gauge",
         "Bytes of the background fetch's range covered so far.", F_BG_DONE},
        {"strata_lazy_background_size_bytes", "gauge",
         "Compressed size of the background fetch's range.", F_BG_TOTAL},
};

/* Prometheus' enum idiom: one series per state, 1 for the current one. */
static void phase_family(FILE *f, const struct collect *c, const char *name, const char *help,
                         bool background)
{
	static const enum snap_lazy_phase phases[] = {SNAP_LAZY_NONE, SNAP_LAZY_PENDING,
	                                              SNAP_LAZY_RUNNING, SNAP_LAZY_DONE,
	                                              SNAP_LAZY_FAILED};

	family(f, name, "gauge", help);
	for (size_t i = 0; i < c->n_layers; i++) {
		enum snap_lazy_phase cur =
		        background ? c->layers[i].st.background : c->layers[i].st.prefetch;

		for (size_t k = 0; k < ELEMENTSOF(phases); k++) {
			fprintf(f, "%s{snapshot=\"", name);
			put_label_value(f, c->layers[i].name);
			fprintf(f, "\",state=\"%s\"} %d\n", snap_lazy_phase_to_string(phases[k]),
			        cur == phases[k]);
		}
	}
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

int proxy_metrics_write(FILE *f, struct snap_store *snaps, struct content_store *content)
{
	struct collect c = {.snaps = snaps};
	uint64_t cache_bytes = 0, cache_files = 0, images = 0;
	int r;

	r = snap_walk(snaps, NULL, 0, collect_one, &c, NULL);
	if (r >= 0 && content)
		r = content_image_walk(content, NULL, 0, count_image, &images, NULL);
	if (r >= 0)
		r = proxy_lazy_cache_usage(snaps, &cache_bytes, &cache_files);
	if (r < 0)
		goto out;

	family(f, "strata_up", "gauge", "1 while the daemon serves.");
	fputs("strata_up 1\n", f);
	family(f, "strata_process_resident_memory_bytes", "gauge",
	       "Resident memory of the daemon.");
	fprintf(f, "strata_process_resident_memory_bytes %" PRIu64 "\n", rss_bytes());
	if (content) {
		family(f, "strata_images", "gauge", "Images in Strata's own image store.");
		fprintf(f, "strata_images %" PRIu64 "\n", images);
	}
	family(f, "strata_snapshots", "gauge", "Snapshots by kind (Strata's and containerd's).");
	for (unsigned k = SNAP_KIND_VIEW; k <= SNAP_KIND_COMMITTED; k++)
		fprintf(f, "strata_snapshots{kind=\"%s\"} %" PRIu64 "\n",
		        snap_kind_to_string((enum snap_kind)k), c.by_kind[k]);
	family(f, "strata_lazy_layers", "gauge", "Remote (lazy) snapshots mounted.");
	fprintf(f, "strata_lazy_layers %zu\n", c.n_layers);
	family(f, "strata_lazy_layers_unmounted", "gauge",
	       "Remote snapshots that could not be mounted (Mounts answer Unavailable).");
	fprintf(f, "strata_lazy_layers_unmounted %" PRIu64 "\n", c.unmounted);
	family(f, "strata_lazy_cache_bytes", "gauge", "Bytes in the shared chunk cache.");
	fprintf(f, "strata_lazy_cache_bytes %" PRIu64 "\n", cache_bytes);
	family(f, "strata_lazy_cache_chunks", "gauge", "Chunks in the shared chunk cache.");
	fprintf(f, "strata_lazy_cache_chunks %" PRIu64 "\n", cache_files);

	for (size_t k = 0; k < ELEMENTSOF(layer_families); k++) {
		if (c.n_layers == 0)
			break;
		family(f, layer_families[k].name, layer_families[k].type, layer_families[k].help);
		for (size_t i = 0; i < c.n_layers; i++) {
			fprintf(f, "%s{snapshot=\"", layer_families[k].name);
			put_label_value(f, c.layers[i].name);
			fprintf(f, "\"} %" PRIu64 "\n",
			        field_of(&c.layers[i].st, layer_families[k].field));
		}
	}
	if (c.n_layers > 0) {
		phase_family(f, &c, "strata_lazy_prefetch_state",
		             "A lazy layer's prefetch (none, pending, running, done, failed).",
		             false);
		phase_family(f, &c, "strata_lazy_background_state",
		             "A lazy layer's background fetch (none, pending, running, done).",
		             true);
	}
	r = ferror(f) ? -EIO : 0;
out:
	for (size_t i = 0; i < c.n_layers; i++)
		free(c.layers[i].name);
	free(c.layers);
	return r;
}

/* --- the HTTP server ------------------------------------------------------- */

/* Owned by its thread once started; stop_fd is how others reach it. */
struct proxy_metrics {
	struct snap_store *snaps;
	struct content_store *content;
	int listen_fd;
	int stop_fd; /* eventfd */
	unsigned port;
	pthread_t thread;
	bool running;
};

static int send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void respond(int fd, const char *status, const char *type, const char *body, size_t len,
                    bool head)
{
	_cleanup_free_ char *hdr = NULL;
	int n;

	n = asprintf(&hdr,
	             "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n",
	             status, type, len);
	if (n < 0) {
		hdr = NULL;
		return;
	}
	if (send_all(fd, hdr, (size_t)n) >= 0 && !head && len > 0)
		(void)send_all(fd, body, len);
}

static void serve_one(struct proxy_metrics *m, int fd)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_SEC};
	char req[REQUEST_MAX + 1];
	size_t len = 0;
	char *method, *target, *save = NULL;
	bool head;

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n = recv(fd, req + len, REQUEST_MAX - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* gone, or stalled past the timeout */
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
		if (len == REQUEST_MAX) {
			static const char msg[] = "request too large\n";
			respond(fd, "431 Request Header Fields Too Large", "text/plain", msg,
			        sizeof(msg) - 1, false);
			return;
		}
	}
	method = strtok_r(req, " \r\n", &save);
	target = method ? strtok_r(NULL, " \r\n", &save) : NULL;
	if (!method || !target) {
		static const char msg[] = "bad request\n";
		respond(fd, "400 Bad Request", "text/plain", msg, sizeof(msg) - 1, false);
		return;
	}
	head = streq(method, "HEAD");
	if (!head && !streq(method, "GET")) {
		static const char msg[] = "only GET\n";
		respond(fd, "405 Method Not Allowed", "text/plain", msg, sizeof(msg) - 1, false);
		return;
	}
	if (strcspn(target, "?") != strlen("/metrics") || strncmp(target, "/metrics", 8) != 0) {
		static const char msg[] = "not found: try /metrics\n";
		respond(fd, "404 Not Found", "text/plain", msg, sizeof(msg) - 1, head);
		return;
	}
	{
		_cleanup_free_ char *body = NULL;
		size_t blen = 0;
		FILE *f = open_memstream(&body, &blen);
		int r;

		if (!f) {
			respond(fd, "500 Internal Server Error", "text/plain", "", 0, head);
			return;
		}
		r = proxy_metrics_write(f, m->snaps, m->content);
		if (fclose(f) != 0 && r >= 0)
			r = -EIO;
		if (r < 0) {
			log_debug_errno(r, "metrics: collect");
			respond(fd, "500 Internal Server Error", "text/plain", "", 0, head);
			return;
		}
		respond(fd, "200 OK", CONTENT_TYPE, body, blen, head);
	}
}

static void *metrics_main(void *userdata)
{
	struct proxy_metrics *m = userdata;

	for (;;) {
		struct pollfd p[2] = {{.fd = m->listen_fd, .events = POLLIN},
		                      {.fd = m->stop_fd, .events = POLLIN}};
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_warn_errno(-errno, "metrics: poll");
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* EAGAIN, ECONNABORTED, EMFILE: try again later */
		serve_one(m, fd);
		(void)shutdown(fd, SHUT_WR);
		close(fd);
	}
}

/* "host:port", "[v6]:port" or ":port" -> host (NULL = any) and port. */
static int split_address(const char *addr, char **ret_host, char **ret_port)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hl;

	if (!colon || !colon[1])
		return -EINVAL;
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	*ret_host = hl ? strndup(h, hl) : NULL;
	*ret_port = strdup(colon + 1);
	if ((hl && !*ret_host) || !*ret_port) {
		free(*ret_host);
		free(*ret_port);
		return -ENOMEM;
	}
	return 0;
}

static int listen_on(const char *address, unsigned *ret_port, struct strata_error **ret_err)
{
	_cleanup_free_ char *host = NULL, *port = NULL;
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int fd = -1, r, e;

	r = split_address(address, &host, &port);
	if (r < 0)
		return strata_error_set(ret_err, r == -ENOMEM ? r : -EINVAL,
		                        "metrics address \"%s\": want HOST:PORT", address);
	e = getaddrinfo(host, port, &hints, &res);
	if (e != 0)
		return strata_error_set(ret_err, -EINVAL, "metrics address \"%s\": %s", address,
		                        gai_strerror(e));
	r = -EADDRNOTAVAIL;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		int one = 1;

		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            a->ai_protocol);
		if (fd < 0) {
			r = negative_errno();
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		r = negative_errno();
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return strata_error_set_errno(ret_err, r, "metrics: listen on %s", address);
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		*ret_port = 0;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			if (ss.ss_family == AF_INET)
				*ret_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
			else if (ss.ss_family == AF_INET6)
				*ret_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	return fd;
}

int proxy_metrics_start(const struct proxy_metrics_config *cfg, struct proxy_metrics **ret,
                        struct strata_error **ret_err)
{
	struct proxy_metrics *m;
	int r;

	if (!cfg || !cfg->address || !cfg->snaps)
		return strata_error_set(ret_err, -EINVAL, "metrics: no address");
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->snaps = cfg->snaps;
	m->content = cfg->content;
	m->stop_fd = -1;
	m->listen_fd = listen_on(cfg->address, &m->port, ret_err);
	if (m->listen_fd < 0) {
		r = m->listen_fd;
		m->listen_fd = -1;
		proxy_metrics_stop(m);
		return r;
	}
	m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->stop_fd < 0) {
		r = negative_errno();
		proxy_metrics_stop(m);
		return strata_error_set_errno(ret_err, r, "metrics: eventfd");
	}
	r = -pthread_create(&m->thread, NULL, metrics_main, m);
	if (r < 0) {
		proxy_metrics_stop(m);
		return strata_error_set_errno(ret_err, r, "metrics: start thread");
	}
	m->running = true;
	log_info("metrics: serving http://%s/metrics", cfg->address);
	*ret = m;
	return 0;
}

unsigned proxy_metrics_port(const struct proxy_metrics *m)
{
	return m ? m->port : 0;
}

struct proxy_metrics *proxy_metrics_stop(struct proxy_metrics *m)
{
	if (!m)
		return NULL;
	if (m->running) {
		uint64_t one = 1;
		(void)!write(m->stop_fd, &one, sizeof(one));
		pthread_join(m->thread, NULL);
	}
	safe_close(m->listen_fd);
	safe_close(m->stop_fd);
	free(m);
	return NULL;
}
