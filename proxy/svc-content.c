/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd.services.content.v1.Content on top of content/. Translation
 * only, following containerd's contentserver: List batched 100 infos per
 * message, Read streamed in chunks of at most 1 MiB, Write answering exactly
 * one response per request (STAT, WRITE, COMMIT) with the action echoed and
 * the offset always set.
 *
 * Blobs Strata stored for its own images are private until containerd
 * claims them (design at the top of svc-images.c): List leaves them out,
 * Info and a Write commit claim them, and Delete of a blob a Strata image
 * still names only drops containerd's claim.
 */
#include <string.h>

#include "proxy-internal.h"
#include "content.pb-c.h"
#include "content.h"

typedef Containerd__Services__Content__V1__Info InfoPb;
typedef Containerd__Services__Content__V1__Info__LabelsEntry LabelPb;
typedef Containerd__Services__Content__V1__Status StatusPb;

#define READ_CHUNK (1024 * 1024)

static void timestamp_set(Google__Protobuf__Timestamp *t, const struct timespec *ts)
{
	google__protobuf__timestamp__init(t);
	t->seconds = ts->tv_sec;
	t->nanos = (int32_t)ts->tv_nsec;
}

/* An Info message that owns copies of everything, for batching. */
struct info_box {
	InfoPb pb;
	Google__Protobuf__Timestamp created, updated;
	char digest[STRATA_DIGEST_STRING_MAX];
};

static struct info_box *info_box_free(struct info_box *b)
{
	if (!b)
		return NULL;
	proxy_labels_pb_free((struct proxy_label_pb **)b->pb.labels, b->pb.n_labels);
	free(b);
	return NULL;
}

static struct info_box *info_box_new(const struct content_info *info)
{
	struct info_box *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	containerd__services__content__v1__info__init(&b->pb);
	b->pb.labels = (LabelPb **)proxy_labels_to_pb(
	        &containerd__services__content__v1__info__labels_entry__descriptor,
	        (const struct proxy_label *)info->labels, info->n_labels);
	if (!b->pb.labels)
		return info_box_free(b);
	b->pb.n_labels = info->n_labels;
	(void)strata_digest_format(&info->digest, b->digest);
	b->pb.digest = b->digest;
	b->pb.size = info->size;
	timestamp_set(&b->created, &info->created_at);
	timestamp_set(&b->updated, &info->updated_at);
	b->pb.created_at = &b->created;
	b->pb.updated_at = &b->updated;
	return b;
}

/* Borrow a request's map entries (any LabelsEntry array: one layout, see
 * struct proxy_label_pb) as content_labels (no copies). */
static struct content_label *labels_from_pb(void *entries, size_t n)
{
	return (struct content_label *)proxy_labels_from_pb(entries, n);
}

static int send_empty(struct proxy_call *call)
{
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

	return proxy_call_send(call, &e.base);
}

static int send_info(struct proxy_call *call, const ProtobufCMessageDescriptor *desc,
                     const struct content_info *info)
{
	/* Info and Update responses are both { Info info = 1; }. */
	Containerd__Services__Content__V1__InfoResponse resp =
	        CONTAINERD__SERVICES__CONTENT__V1__INFO_RESPONSE__INIT;
	struct info_box *b = info_box_new(info);
	int r;

	if (!b)
		return -ENOMEM;
	resp.base.descriptor = desc;
	resp.info = &b->pb;
	r = proxy_call_send(call, &resp.base);
	info_box_free(b);
	return r;
}

static int content_svc_info(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__InfoRequest *req = (const void *)request;
	struct content_info info = {0};
	struct strata_digest d;
	int r;

	r = strata_digest_parse(req->digest, &d, ret_err);
	if (r < 0)
		return r;
	r = content_info(userdata, &d, &info, ret_err);
	if (r < 0)
		return r;
	/* containerd may reference what it asked about (its shared-content
	 * writer records a blob it found this way without writing it) */
	r = content_containerd_claim(userdata, &d);
	if (r < 0) {
		content_info_done(&info);
		return strata_error_set_errno(ret_err, r, "claim %s", req->digest);
	}
	r = send_info(call, &containerd__services__content__v1__info_response__descriptor, &info);
	content_info_done(&info);
	return r;
}

static int content_svc_update(struct proxy_call *call, const ProtobufCMessage *request,
                              void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__UpdateRequest *req = (const void *)request;
	_cleanup_free_ struct content_label *labels = NULL;
	struct content_info in = {0}, out = {0};
	const char *const *paths = NULL;
	size_t n_paths = 0;
	int r;

	if (!req->info)
		return strata_error_set(ret_err, -EINVAL, "update without info");
	r = strata_digest_parse(req->info->digest, &in.digest, ret_err);
	if (r < 0)
		return r;
	labels = labels_from_pb(req->info->labels, req->info->n_labels);
	if (!labels)
		return -ENOMEM;
	in.labels = labels;
	in.n_labels = req->info->n_labels;
	if (req->update_mask) {
		paths = (const char *const *)req->update_mask->paths;
		n_paths = req->update_mask->n_paths;
	}
	r = content_update(userdata, &in, paths, n_paths, &out, ret_err);
	if (r < 0)
		return r;
	r = send_info(call, &containerd__services__content__v1__update_response__descriptor, &out);
	content_info_done(&out);
	return r;
}

struct list_batch {
	struct proxy_list_batch b;
	struct content_store *store;
};

/* The batch holds &box->pb, the first member of its box. */
static void list_item_free(ProtobufCMessage *item)
{
	info_box_free((struct info_box *)item);
}

static int list_one(const struct content_info *info, void *userdata)
{
	struct list_batch *l = userdata;
	int r = content_mark_is_private(l->store, &info->digest);
	struct info_box *box;

	if (r != 0)
		return r > 0 ? 0 : r; /* Strata's own: invisible to containerd */
	box = info_box_new(info);
	return proxy_list_add(&l->b, box ? &box->pb.base : NULL);
}

static int content_svc_list(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__ListContentRequest *req = (const void *)request;
	struct list_batch l = {
	        .b = {.call = call,
	              .desc = &containerd__services__content__v1__list_content_response__descriptor,
	              .free_item = list_item_free},
	        .store = userdata,
	};
	int r;

	r = content_walk(userdata, (const char *const *)req->filters, req->n_filters, list_one, &l,
	                 ret_err);
	if (r >= 0)
		r = proxy_list_flush(&l.b);
	proxy_list_done(&l.b);
	return r;
}

static int content_svc_delete(struct proxy_call *call, const ProtobufCMessage *request,
                              void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__DeleteContentRequest *req = (const void *)request;
	struct strata_digest d;
	int r;

	r = strata_digest_parse(req->digest, &d, ret_err);
	if (r < 0)
		return r;
	r = content_containerd_delete(userdata, &d, ret_err);
	if (r < 0)
		return r;
	return send_empty(call);
}

static int content_svc_read(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__ReadContentRequest *req = (const void *)request;
	_cleanup_(content_reader_freep) struct content_reader *rd = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	struct strata_digest d;
	int64_t off, end, size;
	int r;

	r = strata_digest_parse(req->digest, &d, ret_err);
	if (r < 0)
		return r;
	r = content_reader_open(userdata, &d, &rd, ret_err);
	if (r < 0)
		return r;
	size = content_reader_size(rd);
	if (req->offset < 0 || req->offset > size)
		return strata_error_set(ret_err, -ERANGE, "read offset %lld beyond size %lld",
		                        (long long)req->offset, (long long)size);
	off = req->offset;
	end = req->size > 0 ? MIN(size, off + req->size) : size;
	buf = malloc(READ_CHUNK);
	if (!buf)
		return -ENOMEM;

	while (off < end) {
		Containerd__Services__Content__V1__ReadContentResponse resp =
		        CONTAINERD__SERVICES__CONTENT__V1__READ_CONTENT_RESPONSE__INIT;
		ssize_t n = content_reader_pread(rd, buf,
		                                 (size_t)MIN((int64_t)READ_CHUNK, end - off), off);

		if (n < 0)
			return strata_error_set_errno(ret_err, (int)n, "read %s", req->digest);
		if (n == 0)
			break;
		resp.offset = off;
		resp.data.data = buf;
		resp.data.len = (size_t)n;
		r = proxy_call_send(call, &resp.base);
		if (r < 0)
			return r; /* cancelled: the client has what it wanted */
		off += n;
	}
	return 0;
}

static StatusPb *status_pb_fill(StatusPb *p, Google__Protobuf__Timestamp ts[2],
                                char expected[STRATA_DIGEST_STRING_MAX],
                                const struct content_status *st)
{
	containerd__services__content__v1__status__init(p);
	timestamp_set(&ts[0], &st->started_at);
	timestamp_set(&ts[1], &st->updated_at);
	p->started_at = &ts[0];
	p->updated_at = &ts[1];
	p->ref = st->ref;
	p->offset = st->offset;
	p->total = st->total;
	expected[0] = '\0';
	if (st->have_expected)
		(void)strata_digest_format(&st->expected, expected);
	p->expected = expected;
	return p;
}

static int content_svc_status(struct proxy_call *call, const ProtobufCMessage *request,
                              void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__StatusRequest *req = (const void *)request;
	Containerd__Services__Content__V1__StatusResponse resp =
	        CONTAINERD__SERVICES__CONTENT__V1__STATUS_RESPONSE__INIT;
	struct content_status st = {0};
	Google__Protobuf__Timestamp ts[2];
	char expected[STRATA_DIGEST_STRING_MAX];
	StatusPb pb;
	int r;

	r = content_status(userdata, req->ref, &st, ret_err);
	if (r < 0)
		return r;
	resp.status = status_pb_fill(&pb, ts, expected, &st);
	r = proxy_call_send(call, &resp.base);
	content_status_done(&st);
	return r;
}

struct status_list {
	struct content_status *items;
	size_t n, cap;
};

static int status_collect(const struct content_status *st, void *userdata)
{
	struct status_list *l = userdata;
	struct content_status *c;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		c = realloc(l->items, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		l->items = c;
		l->cap = cap;
	}
	c = &l->items[l->n];
	*c = *st;
	c->ref = strdup(st->ref);
	if (!c->ref)
		return -ENOMEM;
	l->n++;
	return 0;
}

static int content_svc_list_statuses(struct proxy_call *call, const ProtobufCMessage *request,
                                     void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__ListStatusesRequest *req = (const void *)request;
	Containerd__Services__Content__V1__ListStatusesResponse resp =
	        CONTAINERD__SERVICES__CONTENT__V1__LIST_STATUSES_RESPONSE__INIT;
	struct status_list l = {0};
	StatusPb *pbs = NULL, **ptrs = NULL;
	Google__Protobuf__Timestamp *ts = NULL;
	char(*expected)[STRATA_DIGEST_STRING_MAX] = NULL;
	int r;

	r = content_list_statuses(userdata, (const char *const *)req->filters, req->n_filters,
	                          status_collect, &l, ret_err);
	if (r < 0)
		goto out;
	pbs = calloc(MAX(l.n, (size_t)1), sizeof(*pbs));
	ptrs = calloc(MAX(l.n, (size_t)1), sizeof(*ptrs));
	ts = calloc(MAX(l.n, (size_t)1) * 2, sizeof(*ts));
	expected = calloc(MAX(l.n, (size_t)1), sizeof(*expected));
	if (!pbs || !ptrs || !ts || !expected) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++)
		ptrs[i] = status_pb_fill(&pbs[i], &ts[2 * i], expected[i], &l.items[i]);
	resp.statuses = ptrs;
	resp.n_statuses = l.n;
	r = proxy_call_send(call, &resp.base);
out:
	for (size_t i = 0; i < l.n; i++)
		content_status_done(&l.items[i]);
	free(l.items);
	free(pbs);
	free(ptrs);
	free(ts);
	free(expected);
	return r;
}

static int content_svc_abort(struct proxy_call *call, const ProtobufCMessage *request,
                             void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Content__V1__AbortRequest *req = (const void *)request;
	int r = content_abort(userdata, req->ref, ret_err);

	if (r < 0)
		return r;
	return send_empty(call);
}

/* WriteContentRequest.data: decoded in place (proxy_call_recv_msg). */
#define WRITE_DATA_FIELD 6

/*
 * One Write request: act on it and answer. Returns 1 after a commit.
 *
 * A WRITE's bytes are staged (content_writer_stage: hashed here while the
 * writer's flusher copies them into the ingest file), answered, and then
 * flushed (waiting for that copy) before the next request is read: the copy
 * overlaps the hashing and the answer's trip to the client. The answer claims
 * nothing the client could lose: the offset and digest it reports are what
 * the ingest holds once the flush succeeds, nothing is durable before COMMIT
 * anyway (the ingest is not fsync'd until then, as in containerd's local
 * store), and a failed flush ends the stream with that error before any later
 * request is acted on, the ingest rolled back to the bytes actually written
 * (a resumed writer asks Status and continues from there).
 */
static int write_step(struct proxy_call *call, struct content_store *store,
                      struct content_writer *w,
                      const Containerd__Services__Content__V1__WriteContentRequest *req,
                      int64_t *total, struct strata_error **ret_err)
{
	Containerd__Services__Content__V1__WriteContentResponse resp =
	        CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_RESPONSE__INIT;
	Google__Protobuf__Timestamp started, updated;
	char digest[STRATA_DIGEST_STRING_MAX];
	struct content_status st = {0};
	struct strata_digest d;
	int r;

	if (req->total > 0)
		*total = req->total;

	if (req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__WRITE ||
	    req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT) {
		/* Offset 0 with data already written truncates, like containerd. */
		r = content_writer_status(w, &st);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "write status");
		if (req->data.len > 0 || (req->offset == 0 && st.offset > 0)) {
			if (req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__WRITE)
				r = content_writer_stage(w, req->offset, req->data.data,
				                         req->data.len, ret_err);
			else
				r = content_writer_write(w, req->offset, req->data.data,
				                         req->data.len, ret_err);
			if (r < 0)
				return r;
		}
	}
	/* The offset and times come from before a commit, after which the
	 * writer only closes. */
	r = content_writer_status(w, &st);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "write status");
	resp.action = req->action;
	resp.offset = st.offset;
	timestamp_set(&started, &st.started_at);
	timestamp_set(&updated, &st.updated_at);
	resp.started_at = &started;
	resp.updated_at = &updated;

	if (req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT) {
		_cleanup_free_ struct content_label *labels =
		        labels_from_pb(req->labels, req->n_labels);
		struct strata_digest expected;
		bool have_expected = req->expected && *req->expected;

		if (!labels)
			return -ENOMEM;
		if (have_expected) {
			r = strata_digest_parse(req->expected, &expected, ret_err);
			if (r < 0)
				return r;
		}
		struct strata_digest written;

		r = content_writer_digest(w, &written);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "write digest");
		r = content_writer_commit(w, *total, have_expected ? &expected : NULL, labels,
		                          req->n_labels, &d, ret_err);
		/* containerd records the blob on success and on AlreadyExists */
		if (r >= 0 || r == -EEXIST) {
			int c = content_containerd_claim(store, &written);
			if (c < 0 && r >= 0)
				return strata_error_set_errno(ret_err, c, "claim content");
		}
		if (r < 0)
			return r;
	} else {
		r = content_writer_digest(w, &d);
		if (r < 0)
			return strata_error_set_errno(ret_err, r, "write digest");
	}
	resp.total = *total;
	resp.digest = strata_digest_format(&d, digest);
	r = proxy_call_send(call, &resp.base);
	if (r < 0)
		return r;
	return req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT;
}

static int content_svc_write(struct proxy_call *call, const ProtobufCMessage *request,
                             void *userdata, struct strata_error **ret_err)
{
	_cleanup_(content_writer_closep) struct content_writer *w = NULL;
	int64_t total = 0;
	int r;

	for (;;) {
		Containerd__Services__Content__V1__WriteContentRequest *req;
		struct proxy_msg m;

		/* The 1 MiB chunks are used from the receive buffer, not copied. */
		r = proxy_call_recv_msg(call, WRITE_DATA_FIELD, &m);
		if (r <= 0)
			return r; /* half-close keeps the ingest for resuming */
		req = (Containerd__Services__Content__V1__WriteContentRequest *)m.msg;
		if (!w) {
			struct strata_digest expected;
			bool have_expected = req->expected && *req->expected;

			if (!req->ref || !*req->ref)
				r = strata_error_set(ret_err, -EINVAL,
				                     "first message must have a reference");
			if (r >= 0 && have_expected)
				r = strata_digest_parse(req->expected, &expected, ret_err);
			total = req->total;
			if (r >= 0)
				r = content_writer_open(userdata, req->ref, req->total,
				                        have_expected ? &expected : NULL, &w,
				                        ret_err);
		}
		if (r >= 0)
			r = write_step(call, userdata, w, req, &total, ret_err);
		if (w) {
			/* Whatever happened, the staged chunk's bytes (in m) are
			 * written before m goes. */
			int f = content_writer_flush(w, r >= 0 ? ret_err : NULL);
			if (f < 0 && r >= 0)
				r = f;
		}
		proxy_msg_done(&m);
		if (r != 0)
			return r < 0 ? r : 0;
	}
}

static const struct proxy_method content_methods[] = {
        {"Info", PROXY_UNARY, &containerd__services__content__v1__info_request__descriptor,
         content_svc_info},
        {"Update", PROXY_UNARY, &containerd__services__content__v1__update_request__descriptor,
         content_svc_update},
        {"List", PROXY_SERVER_STREAM,
         &containerd__services__content__v1__list_content_request__descriptor, content_svc_list},
        {"Delete", PROXY_UNARY,
         &containerd__services__content__v1__delete_content_request__descriptor,
         content_svc_delete},
        {"Read", PROXY_SERVER_STREAM,
         &containerd__services__content__v1__read_content_request__descriptor, content_svc_read},
        {"Status", PROXY_UNARY, &containerd__services__content__v1__status_request__descriptor,
         content_svc_status},
        {"ListStatuses", PROXY_UNARY,
         &containerd__services__content__v1__list_statuses_request__descriptor,
         content_svc_list_statuses},
        {"Write", PROXY_BIDI_STREAM,
         &containerd__services__content__v1__write_content_request__descriptor, content_svc_write},
        {"Abort", PROXY_UNARY, &containerd__services__content__v1__abort_request__descriptor,
         content_svc_abort},
};

int proxy_content_register(struct proxy_server *server, struct content_store *store,
                           struct strata_error **ret_err)
{
	return proxy_server_register_service(server, "containerd.services.content.v1.Content",
	                                     content_methods, ELEMENTSOF(content_methods), store,
	                                     ret_err);
}
