/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC client benchmark for bench/grpc/run.sh (not part of the daemon).
 *
 *   bench-grpc cycles --socket PATH [--snapshotter NAME] [--namespace NS]
 *                     [--lease ID] [--clients N] [--duration SEC | --cycles N] [--prefix P]
 *       Prepare(key, parent "") + Mounts(key) + Commit(name, key) + Remove(name)
 *       cycles, N threads each with its own connection. --lease creates that
 *       lease first (containerd's Leases service) and sends it as the
 *       containerd-lease header, as containerd's own clients do.
 *   bench-grpc write --socket PATH --file FILE [--namespace NS] [--chunk BYTES]
 *                    [--inflight N] [--repeat N]
 *       Content Write of FILE: STAT, WRITE messages of --chunk bytes (default
 *       1 MiB), COMMIT with the sha256 and total; then Delete. --inflight 1
 *       (the default) waits for each WRITE's answer before the next, as
 *       containerd's remote writer does.
 *
 * Output is one "key=value" line per figure, for the script to parse.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "content.pb-c.h"
#include "snapshots.pb-c.h"
#include "h2c.h"

#define SNAPSHOTS "/containerd.services.snapshots.v1.Snapshots/"
#define CONTENT   "/containerd.services.content.v1.Content/"
#define WARMUP    3

struct opts {
	const char *socket;
	const char *snapshotter;
	const char *ns;
	const char *lease;
	const char *md[8]; /* request metadata pairs, NULL-terminated */
	const char *prefix;
	const char *file;
	unsigned clients;
	double duration;
	unsigned long cycles;
	size_t chunk;
	unsigned inflight;
	unsigned repeat;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- cycles --- */

struct run {
	const struct opts *o;
	pthread_barrier_t ready;
	atomic_bool stop;
	atomic_int failed;
	double start;
};

struct worker {
	struct run *run;
	pthread_t thread;
	unsigned id;
	double *lat; /* seconds per cycle */
	size_t n_lat, cap_lat;
	double end;
	double step_s[4]; /* time in each RPC, summed over the timed cycles */
};

static const char *const step_names[4] = {"prepare", "mounts", "commit", "remove"};

static int one_cycle(struct h2c_conn *c, const struct opts *o, const char *key, const char *name,
                     double step_s[4])
{
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest prep =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
	Containerd__Services__Snapshots__V1__MountsRequest mreq =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_REQUEST__INIT;
	Containerd__Services__Snapshots__V1__CommitSnapshotRequest creq =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest rreq =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	const char *step;
	int r;

	prep.snapshotter = mreq.snapshotter = creq.snapshotter = rreq.snapshotter =
	        (char *)o->snapshotter;
	prep.key = mreq.key = creq.key = (char *)key;
	prep.parent = (char *)"";
	creq.name = rreq.key = (char *)name;

	double t[5];
	t[0] = now_s();
	t[1] = t[2] = t[3] = t[4] = 0;
	step = "Prepare";
	r = h2c_unary(c, SNAPSHOTS "Prepare", &prep.base,
	              &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor,
	              &resp);
	if (r == 0) {
		Containerd__Services__Snapshots__V1__PrepareSnapshotResponse *p = (void *)resp;
		if (p->n_mounts == 0)
			fprintf(stderr, "warning: Prepare returned no mounts\n");
		protobuf_c_message_free_unpacked(resp, NULL);
		t[1] = now_s();
		step = "Mounts";
		r = h2c_unary(c, SNAPSHOTS "Mounts", &mreq.base,
		              &containerd__services__snapshots__v1__mounts_response__descriptor,
		              &resp);
		if (r == 0)
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	if (r == 0) {
		t[2] = now_s();
		step = "Commit";
		r = h2c_unary(c, SNAPSHOTS "Commit", &creq.base, NULL, NULL);
	}
	if (r == 0) {
		t[3] = now_s();
		step = "Remove";
		r = h2c_unary(c, SNAPSHOTS "Remove", &rreq.base, NULL, NULL);
	}
	if (r != 0) {
		fprintf(stderr, "%s %s: %s\n", step, key, h2c_last_error(c));
		return r;
	}
	t[4] = now_s();
	for (int i = 0; step_s && i < 4; i++)
		step_s[i] += t[i + 1] - t[i];
	return 0;
}

static int push_lat(struct worker *w, double v)
{
	if (w->n_lat == w->cap_lat) {
		size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
		double *n = realloc(w->lat, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		w->lat = n;
		w->cap_lat = cap;
	}
	w->lat[w->n_lat++] = v;
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *run = w->run;
	const struct opts *o = run->o;
	struct h2c_conn *c = NULL;
	char key[128], name[128];
	int r;

	r = h2c_connect(o->socket, o->md, &c);
	if (r < 0) {
		fprintf(stderr, "connect %s: %s\n", o->socket, strerror(-r));
		atomic_store(&run->failed, 1);
	}
	for (unsigned i = 0; c && i < WARMUP; i++) {
		snprintf(key, sizeof(key), "%s-%u-w%u-active", o->prefix, w->id, i);
		snprintf(name, sizeof(name), "%s-%u-w%u", o->prefix, w->id, i);
		if (one_cycle(c, o, key, name, NULL) != 0) {
			atomic_store(&run->failed, 1);
			break;
		}
	}
	pthread_barrier_wait(&run->ready);
	pthread_barrier_wait(&run->ready); /* main sets run->start in between */

	for (unsigned long i = 0; c && !atomic_load(&run->failed); i++) {
		if (o->cycles ? i >= o->cycles : atomic_load(&run->stop))
			break;
		snprintf(key, sizeof(key), "%s-%u-%lu-active", o->prefix, w->id, i);
		snprintf(name, sizeof(name), "%s-%u-%lu", o->prefix, w->id, i);
		double t0 = now_s();
		if (one_cycle(c, o, key, name, w->step_s) != 0 || push_lat(w, now_s() - t0) < 0) {
			atomic_store(&run->failed, 1);
			break;
		}
	}
	w->end = now_s();
	h2c_close(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* containerd collects unreferenced snapshots at any time; its clients hold
 * a lease (containerd-lease header) while they work, and so do we. */
static int create_lease(const struct opts *o)
{
	const char *md[] = {"containerd-namespace", o->ns, NULL};
	struct h2c_conn *c = NULL;
	uint8_t req[128];
	size_t len = strlen(o->lease);
	int r;

	if (len > 100)
		return -ENAMETOOLONG;
	req[0] = 0x0a; /* CreateRequest 1: id */
	req[1] = (uint8_t)len;
	memcpy(req + 2, o->lease, len);
	r = h2c_connect(o->socket, o->ns ? md : NULL, &c);
	if (r < 0) {
		fprintf(stderr, "connect %s: %s\n", o->socket, strerror(-r));
		return r;
	}
	r = h2c_unary_raw(c, "/containerd.services.leases.v1.Leases/Create", req, 2 + len);
	if (r == 6) /* AlreadyExists */
		r = 0;
	if (r != 0)
		fprintf(stderr, "create lease %s: %s\n", o->lease, h2c_last_error(c));
	h2c_close(c);
	return r;
}

static int cmd_cycles(const struct opts *o)
{
	struct run run = {.o = o};
	struct worker *ws = calloc(o->clients, sizeof(*ws));
	double end = 0, step_s[4] = {0};
	size_t total = 0;

	if (!ws)
		return 1;
	if (o->lease && create_lease(o) != 0)
		return 1;
	pthread_barrier_init(&run.ready, NULL, o->clients + 1);
	for (unsigned i = 0; i < o->clients; i++) {
		ws[i].run = &run;
		ws[i].id = i;
		if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&run.ready);
	run.start = now_s();
	pthread_barrier_wait(&run.ready);
	if (!o->cycles) {
		struct timespec ts = {(time_t)o->duration,
		                      (long)((o->duration - (double)(time_t)o->duration) * 1e9)};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		atomic_store(&run.stop, true);
	}
	for (unsigned i = 0; i < o->clients; i++) {
		pthread_join(ws[i].thread, NULL);
		total += ws[i].n_lat;
		for (int j = 0; j < 4; j++)
			step_s[j] += ws[i].step_s[j];
		if (ws[i].end > end)
			end = ws[i].end;
	}

	double *all = malloc((total ? total : 1) * sizeof(*all));
	size_t k = 0;
	for (unsigned i = 0; i < o->clients; i++) {
		memcpy(all + k, ws[i].lat, ws[i].n_lat * sizeof(*all));
		k += ws[i].n_lat;
		free(ws[i].lat);
	}
	qsort(all, total, sizeof(*all), cmp_double);
	double secs = end - run.start;
	printf("clients=%u\n", o->clients);
	printf("cycles=%zu\n", total);
	printf("seconds=%.3f\n", secs);
	printf("cycles_per_s=%.1f\n", secs > 0 ? (double)total / secs : 0);
	printf("p50_ms=%.3f\n", percentile(all, total, 0.50) * 1e3);
	printf("p99_ms=%.3f\n", percentile(all, total, 0.99) * 1e3);
	printf("max_ms=%.3f\n", total ? all[total - 1] * 1e3 : 0);
	for (int j = 0; j < 4; j++)
		printf("%s_mean_ms=%.3f\n", step_names[j],
		       total ? step_s[j] / (double)total * 1e3 : 0);
	printf("failed=%d\n", atomic_load(&run.failed));
	free(all);
	free(ws);
	pthread_barrier_destroy(&run.ready);
	return atomic_load(&run.failed) ? 1 : 0;
}

/* --- content write --- */

static size_t put_varint(uint8_t *b, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		b[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b[n++] = (uint8_t)v;
	return n;
}

static int sha256_hex(const uint8_t *p, size_t len, char out[72])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (!EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL))
		return -EIO;
	strcpy(out, "sha256:");
	for (unsigned i = 0; i < 32; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
	return 0;
}

static int write_once(const struct opts *o, const uint8_t *data, size_t size, const char *digest,
                      unsigned attempt, double *ret_secs, double *ret_commit_secs)
{
	Containerd__Services__Content__V1__WriteContentRequest req =
	        CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__INIT;
	Containerd__Services__Content__V1__WriteContentResponse *resp = NULL;
	Containerd__Services__Content__V1__DeleteContentRequest del =
	        CONTAINERD__SERVICES__CONTENT__V1__DELETE_CONTENT_REQUEST__INIT;
	const ProtobufCMessageDescriptor *rd =
	        &containerd__services__content__v1__write_content_response__descriptor;
	struct h2c_conn *c = NULL;
	struct h2c_stream *s = NULL;
	char ref[128];
	size_t off = 0, acked = 0;
	unsigned outstanding = 0;
	int r;

	snprintf(ref, sizeof(ref), "%s-write-%u", o->prefix, attempt);
	r = h2c_connect(o->socket, o->md, &c);
	if (r < 0) {
		fprintf(stderr, "connect %s: %s\n", o->socket, strerror(-r));
		return 1;
	}

	double t0 = now_s();
	r = h2c_stream_open(c, CONTENT "Write", &s);
	req.action = CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__STAT;
	req.ref = ref;
	req.total = (int64_t)size;
	if (r >= 0)
		r = h2c_stream_send(s, &req.base);
	if (r >= 0)
		r = h2c_stream_recv(s, rd, (ProtobufCMessage **)&resp);
	if (r == 1) {
		if (resp->offset != 0) {
			fprintf(stderr, "ingest %s resumes at %" PRId64 "; use a fresh prefix\n",
			        ref, resp->offset);
			r = -EEXIST;
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}

	while (r >= 0 && acked < size) {
		/* keep up to --inflight WRITEs on the wire */
		while (r >= 0 && off < size && outstanding < o->inflight) {
			size_t n = size - off < o->chunk ? size - off : o->chunk;
			uint8_t head[32];
			size_t h = 0;
			head[h++] = 0x08; /* 1: action = WRITE */
			head[h++] = 1;
			if (off > 0) {
				head[h++] = 0x28; /* 5: offset */
				h += put_varint(head + h, off);
			}
			head[h++] = 0x32; /* 6: data */
			h += put_varint(head + h, n);
			r = h2c_stream_send_raw(s, head, h, data + off, n);
			off += n;
			outstanding++;
		}
		if (r >= 0)
			r = h2c_stream_recv(s, rd, (ProtobufCMessage **)&resp);
		if (r == 0) {
			r = -EPIPE;
			break;
		}
		if (r == 1) {
			acked = (size_t)resp->offset;
			outstanding--;
			protobuf_c_message_free_unpacked(&resp->base, NULL);
		}
	}

	double t_commit = now_s();
	if (r >= 0) {
		req.action = CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT;
		req.ref = (char *)"";
		req.total = (int64_t)size;
		req.offset = (int64_t)size;
		req.expected = (char *)digest;
		r = h2c_stream_send(s, &req.base);
	}
	if (r >= 0)
		r = h2c_stream_recv(s, rd, (ProtobufCMessage **)&resp);
	if (r == 1) {
		if (strcmp(resp->digest, digest) != 0 || resp->offset != (int64_t)size) {
			fprintf(stderr, "commit answered %s at %" PRId64 "\n", resp->digest,
			        resp->offset);
			r = -EBADMSG;
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	} else if (r == 0) {
		r = -EPIPE;
	}
	if (r >= 0)
		r = h2c_stream_close_send(s);
	if (s) {
		int f = h2c_stream_finish(s);
		if (r >= 0)
			r = f;
	}
	*ret_secs = now_s() - t0;
	*ret_commit_secs = now_s() - t_commit;
	if (r != 0) {
		fprintf(stderr, "write: %s (%d)\n", h2c_last_error(c), r);
	} else {
		del.digest = (char *)digest;
		if (h2c_unary(c, CONTENT "Delete", &del.base, NULL, NULL) != 0)
			fprintf(stderr, "delete: %s\n", h2c_last_error(c));
	}
	h2c_close(c);
	return r != 0;
}

static int cmd_write(const struct opts *o)
{
	struct stat st;
	char digest[72];
	int fd;

	if (!o->file) {
		fprintf(stderr, "write: --file is required\n");
		return 2;
	}
	fd = open(o->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(o->file);
		return 1;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	double t0 = now_s();
	if (sha256_hex(map, size, digest) < 0)
		return 1;
	double hash_s = now_s() - t0;

	double best = 0, best_commit = 0;
	for (unsigned i = 0; i < o->repeat; i++) {
		double secs = 0, commit_secs = 0;
		if (write_once(o, map, size, digest, i, &secs, &commit_secs) != 0)
			return 1;
		printf("write_s_%u=%.3f\n", i, secs);
		if (best == 0 || secs < best) {
			best = secs;
			best_commit = commit_secs;
		}
	}
	double mb = (double)size / (1024.0 * 1024.0);
	printf("digest=%s\n", digest);
	printf("bytes=%zu\n", size);
	printf("chunk=%zu\n", o->chunk);
	printf("inflight=%u\n", o->inflight);
	printf("client_sha256_s=%.3f\n", hash_s);
	printf("client_sha256_mb_per_s=%.0f\n", mb / hash_s);
	printf("write_s=%.3f\n", best);
	printf("write_mb_per_s=%.0f\n", mb / best);
	/* of the best run: the COMMIT round trip (fsync, link, index) and the
	 * STAT+WRITE part before it */
	printf("commit_s=%.3f\n", best_commit);
	printf("stream_mb_per_s=%.0f\n", mb / (best - best_commit));
	munmap(map, size);
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: bench-grpc cycles --socket PATH [--snapshotter NAME] [--namespace NS]\n"
	      "                         [--lease ID] [--clients N] [--duration SEC | --cycles N] "
	      "[--prefix P]\n"
	      "       bench-grpc write --socket PATH --file FILE [--namespace NS] [--chunk BYTES]\n"
	      "                        [--inflight N] [--repeat N] [--prefix P]\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"snapshotter", required_argument, NULL, 'S'},
	        {"namespace", required_argument, NULL, 'n'},
	        {"lease", required_argument, NULL, 'l'},
	        {"clients", required_argument, NULL, 'c'},
	        {"duration", required_argument, NULL, 'd'},
	        {"cycles", required_argument, NULL, 'N'},
	        {"prefix", required_argument, NULL, 'p'},
	        {"file", required_argument, NULL, 'f'},
	        {"chunk", required_argument, NULL, 'k'},
	        {"inflight", required_argument, NULL, 'i'},
	        {"repeat", required_argument, NULL, 'r'},
	        {"help", no_argument, NULL, 'h'},
	        {},
	};
	static char prefix[64];
	struct opts o = {
	        .snapshotter = "strata",
	        .clients = 1,
	        .duration = 5,
	        .chunk = 1 << 20,
	        .inflight = 1,
	        .repeat = 1,
	};
	int ch;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	snprintf(prefix, sizeof(prefix), "bench-%d-%ld", (int)getpid(), (long)time(NULL));
	o.prefix = prefix;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o.socket = optarg;
			break;
		case 'S':
			o.snapshotter = optarg;
			break;
		case 'n':
			o.ns = optarg;
			break;
		case 'l':
			o.lease = optarg;
			break;
		case 'c':
			o.clients = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			o.duration = strtod(optarg, NULL);
			break;
		case 'N':
			o.cycles = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			o.prefix = optarg;
			break;
		case 'f':
			o.file = optarg;
			break;
		case 'k':
			o.chunk = strtoul(optarg, NULL, 10);
			break;
		case 'i':
			o.inflight = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			o.repeat = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.socket || o.clients == 0 || o.chunk == 0 || o.chunk > 15u * 1024 * 1024 ||
	    o.inflight == 0 || o.inflight > 16 || o.repeat == 0) {
		usage(stderr);
		return 2;
	}
	size_t m = 0;
	if (o.ns) {
		o.md[m++] = "containerd-namespace";
		o.md[m++] = o.ns;
	}
	if (o.lease) {
		o.md[m++] = "containerd-lease";
		o.md[m++] = o.lease;
	}
	o.md[m] = NULL;
	if (strcmp(argv[1], "cycles") == 0)
		return cmd_cycles(&o);
	if (strcmp(argv[1], "write") == 0)
		return cmd_write(&o);
	usage(stderr);
	return 2;
}
