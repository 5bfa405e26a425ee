/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd.services.snapshots.v1.Snapshots on top of snapshotter/. Thin
 * translation between protobuf-c messages and snap_* calls; the semantics
 * (error classes, label update paths, filters) live in snapshotter/. The
 * `snapshotter` field of each request is ignored: any name is accepted.
 *
 * Keys starting with '@' are Strata's own ("@strata/<chainID>", see the top
 * of svc-images.c): containerd's keys never start with '@', and for
 * containerd these snapshots do not exist: List leaves them out and every
 * other call naming one (as key, name or parent) answers NotFound.
 */
#include <string.h>

#include "proxy-internal.h"
#include "snapshots.pb-c.h"
#include "snapshotter.h"

typedef Containerd__Services__Snapshots__V1__Info SnapInfoPb;
typedef Containerd__Services__Snapshots__V1__Info__LabelsEntry SnapLabelPb;
typedef Containerd__Types__Mount MountPb;

static bool strata_internal(const char *key)
{
	return key && key[0] == '@';
}

/* "@strata/ctr/<id>": the active snapshot of a container the strata CLI runs
 * (`strata run`). The CLI prepares it on an image's top layer
 * ("@strata/<chainID>"), mounts, stats and removes it through this service.
 * containerd never names a key starting with '@', so this opens nothing to
 * it; List still leaves these out, so its collector never sees them. */
#define STRATA_CONTAINER_PREFIX "@strata/ctr/"

static bool strata_container(const char *key)
{
	return key && strncmp(key, STRATA_CONTAINER_PREFIX, strlen(STRATA_CONTAINER_PREFIX)) == 0 &&
	       key[strlen(STRATA_CONTAINER_PREFIX)] != '\0' &&
	       !strchr(key + strlen(STRATA_CONTAINER_PREFIX), '/');
}

/* A committed layer of a Strata image: "@strata/sha256:<chainID>". */
static bool strata_layer(const char *key)
{
	return key && strncmp(key, "@strata/sha256:", strlen("@strata/sha256:")) == 0;
}

static int hidden(const char *key, struct strata_error **ret_err)
{
	return strata_error_set(ret_err, -ENOENT, "snapshot %s does not exist", key);
}

/* Borrow a request's map entries (any LabelsEntry array: one layout, see
 * struct proxy_label_pb) as snap_labels (no copies). */
static struct snap_label *labels_from_pb(void *entries, size_t n)
{
	return (struct snap_label *)proxy_labels_from_pb(entries, n);
}

/* A heap Info message with its own copies; free with info_pb_free(). */
static void info_pb_free(SnapInfoPb *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->parent);
	free(p->created_at);
	free(p->updated_at);
	proxy_labels_pb_free((struct proxy_label_pb **)p->labels, p->n_labels);
	free(p);
}

static SnapInfoPb *info_pb_new(const struct snap_info *info)
{
	SnapInfoPb *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	containerd__services__snapshots__v1__info__init(p);
	p->name = strdup(strempty(info->name));
	p->parent = strdup(strempty(info->parent));
	p->kind = (Containerd__Services__Snapshots__V1__Kind)info->kind;
	p->created_at = proxy_timestamp_new(&info->created);
	p->updated_at = proxy_timestamp_new(&info->updated);
	p->labels = (SnapLabelPb **)proxy_labels_to_pb(
	        &containerd__services__snapshots__v1__info__labels_entry__descriptor,
	        (const struct proxy_label *)info->labels, info->n_labels);
	if (p->labels)
		p->n_labels = info->n_labels;
	if (!p->name || !p->parent || !p->created_at || !p->updated_at || !p->labels) {
		info_pb_free(p);
		return NULL;
	}
	return p;
}

/* Send mounts in a Prepare/View/Mounts response (all three share the shape). */
static int send_mounts(struct proxy_call *call, const ProtobufCMessageDescriptor *desc,
                       struct snap_mount *mounts, size_t n)
{
	_cleanup_free_ MountPb *m = calloc(MAX(n, (size_t)1), sizeof(*m));
	_cleanup_free_ MountPb **mp = calloc(MAX(n, (size_t)1), sizeof(*mp));
	/* Prepare, View and Mounts responses are all { repeated Mount mounts = 1; }. */
	Containerd__Services__Snapshots__V1__MountsResponse resp =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_RESPONSE__INIT;

	if (!m || !mp)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		containerd__types__mount__init(&m[i]);
		m[i].type = mounts[i].type;
		m[i].source = mounts[i].source;
		m[i].options = mounts[i].options;
		m[i].n_options = mounts[i].n_options;
		mp[i] = &m[i];
	}
	resp.base.descriptor = desc;
	resp.mounts = mp;
	resp.n_mounts = n;
	return proxy_call_send(call, &resp.base);
}

static int send_empty(struct proxy_call *call)
{
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

	return proxy_call_send(call, &e.base);
}

static int snapshots_prepare(struct proxy_call *call, const ProtobufCMessage *request,
                             void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__PrepareSnapshotRequest *req =
	        (const void *)request;
	_cleanup_free_ struct snap_label *labels = labels_from_pb(req->labels, req->n_labels);
	struct snap_mount *mounts = NULL;
	size_t n = 0;
	int r;

	if (strata_container(req->key)) {
		if (strata_internal(req->parent) && !strata_layer(req->parent))
			return hidden(req->parent, ret_err);
	} else if (strata_internal(req->key) || strata_internal(req->parent)) {
		return hidden(strata_internal(req->key) ? req->key : req->parent, ret_err);
	}
	if (!labels)
		return -ENOMEM;
	r = snap_prepare(userdata, req->key, req->parent, labels, req->n_labels, &mounts, &n,
	                 ret_err);
	if (r < 0)
		return r;
	r = send_mounts(call,
	                &containerd__services__snapshots__v1__prepare_snapshot_response__descriptor,
	                mounts, n);
	snap_mounts_free(mounts, n);
	return r;
}

static int snapshots_view(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                          struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__ViewSnapshotRequest *req = (const void *)request;
	_cleanup_free_ struct snap_label *labels = labels_from_pb(req->labels, req->n_labels);
	struct snap_mount *mounts = NULL;
	size_t n = 0;
	int r;

	if (strata_internal(req->key) || strata_internal(req->parent))
		return hidden(strata_internal(req->key) ? req->key : req->parent, ret_err);
	if (!labels)
		return -ENOMEM;
	r = snap_view(userdata, req->key, req->parent, labels, req->n_labels, &mounts, &n, ret_err);
	if (r < 0)
		return r;
	r = send_mounts(call,
	                &containerd__services__snapshots__v1__view_snapshot_response__descriptor,
	                mounts, n);
	snap_mounts_free(mounts, n);
	return r;
}

static int snapshots_mounts(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__MountsRequest *req = (const void *)request;
	struct snap_mount *mounts = NULL;
	size_t n = 0;
	int r;

	if (strata_internal(req->key) && !strata_container(req->key))
		return hidden(req->key, ret_err);
	r = snap_mounts(userdata, req->key, &mounts, &n, ret_err);
	if (r < 0)
		return r;
	r = send_mounts(call, &containerd__services__snapshots__v1__mounts_response__descriptor,
	                mounts, n);
	snap_mounts_free(mounts, n);
	return r;
}

static int snapshots_commit(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__CommitSnapshotRequest *req =
	        (const void *)request;
	_cleanup_free_ struct snap_label *labels = labels_from_pb(req->labels, req->n_labels);
	int r;

	if (strata_internal(req->key) || strata_internal(req->name))
		return hidden(strata_internal(req->key) ? req->key : req->name, ret_err);
	if (!labels)
		return -ENOMEM;
	r = snap_commit(userdata, req->name, req->key, labels, req->n_labels, ret_err);
	if (r < 0)
		return r;
	return send_empty(call);
}

static int snapshots_remove(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__RemoveSnapshotRequest *req =
	        (const void *)request;
	int r;

	if (strata_internal(req->key) && !strata_container(req->key))
		return hidden(req->key, ret_err);
	r = snap_remove(userdata, req->key, ret_err);
	if (r < 0)
		return r;
	return send_empty(call);
}

static int send_info(struct proxy_call *call, const ProtobufCMessageDescriptor *desc,
                     const struct snap_info *info)
{
	/* Stat and Update responses are both { Info info = 1; }. */
	Containerd__Services__Snapshots__V1__StatSnapshotResponse resp =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_RESPONSE__INIT;
	int r;

	resp.base.descriptor = desc;
	resp.info = info_pb_new(info);
	if (!resp.info)
		return -ENOMEM;
	r = proxy_call_send(call, &resp.base);
	info_pb_free(resp.info);
	return r;
}

static int snapshots_stat(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                          struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__StatSnapshotRequest *req = (const void *)request;
	struct snap_info info = {0};
	int r;

	if (strata_internal(req->key) && !strata_container(req->key))
		return hidden(req->key, ret_err);
	r = snap_stat(userdata, req->key, &info, ret_err);
	if (r < 0)
		return r;
	r = send_info(call,
	              &containerd__services__snapshots__v1__stat_snapshot_response__descriptor,
	              &info);
	snap_info_done(&info);
	return r;
}

static int snapshots_update(struct proxy_call *call, const ProtobufCMessage *request,
                            void *userdata, struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__UpdateSnapshotRequest *req =
	        (const void *)request;
	_cleanup_free_ struct snap_label *labels = NULL;
	struct snap_info in = {0}, out = {0};
	const char *const *paths = NULL;
	size_t n_paths = 0;
	int r;

	if (!req->info)
		return strata_error_set(ret_err, -EINVAL, "update without info");
	if (strata_internal(req->info->name))
		return hidden(req->info->name, ret_err);
	labels = labels_from_pb(req->info->labels, req->info->n_labels);
	if (!labels)
		return -ENOMEM;
	in.name = req->info->name;
	in.parent = req->info->parent;
	in.kind = (enum snap_kind)req->info->kind;
	in.labels = labels;
	in.n_labels = req->info->n_labels;
	if (req->update_mask) {
		paths = (const char *const *)req->update_mask->paths;
		n_paths = req->update_mask->n_paths;
	}
	r = snap_update(userdata, &in, paths, n_paths, &out, ret_err);
	if (r < 0)
		return r;
	r = send_info(call,
	              &containerd__services__snapshots__v1__update_snapshot_response__descriptor,
	              &out);
	snap_info_done(&out);
	return r;
}

static void list_item_free(ProtobufCMessage *item)
{
	info_pb_free((SnapInfoPb *)item);
}

static int list_one(const struct snap_info *info, void *userdata)
{
	if (strata_internal(info->name))
		return 0;
	return proxy_list_add(userdata, (ProtobufCMessage *)info_pb_new(info));
}

static int snapshots_list(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                          struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__ListSnapshotsRequest *req =
	        (const void *)request;
	struct proxy_list_batch b = {
	        .call = call,
	        .desc = &containerd__services__snapshots__v1__list_snapshots_response__descriptor,
	        .free_item = list_item_free,
	};
	int r;

	r = snap_walk(userdata, (const char *const *)req->filters, req->n_filters, list_one, &b,
	              ret_err);
	if (r >= 0)
		r = proxy_list_flush(&b);
	proxy_list_done(&b);
	return r;
}

static int snapshots_usage(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                           struct strata_error **ret_err)
{
	const Containerd__Services__Snapshots__V1__UsageRequest *req = (const void *)request;
	Containerd__Services__Snapshots__V1__UsageResponse resp =
	        CONTAINERD__SERVICES__SNAPSHOTS__V1__USAGE_RESPONSE__INIT;
	struct snap_usage u = {0};
	int r;

	if (strata_internal(req->key))
		return hidden(req->key, ret_err);
	r = snap_usage(userdata, req->key, &u, ret_err);
	if (r < 0)
		return r;
	resp.size = u.size;
	resp.inodes = u.inodes;
	return proxy_call_send(call, &resp.base);
}

static int snapshots_cleanup(struct proxy_call *call, const ProtobufCMessage *request,
                             void *userdata, struct strata_error **ret_err)
{
	int r = snap_cleanup(userdata, ret_err);

	if (r < 0)
		return r;
	return send_empty(call);
}

static const struct proxy_method snapshots_methods[] = {
        {"Prepare", PROXY_UNARY,
         &containerd__services__snapshots__v1__prepare_snapshot_request__descriptor,
         snapshots_prepare},
        {"View", PROXY_UNARY,
         &containerd__services__snapshots__v1__view_snapshot_request__descriptor, snapshots_view},
        {"Mounts", PROXY_UNARY, &containerd__services__snapshots__v1__mounts_request__descriptor,
         snapshots_mounts},
        {"Commit", PROXY_UNARY,
         &containerd__services__snapshots__v1__commit_snapshot_request__descriptor,
         snapshots_commit},
        {"Remove", PROXY_UNARY,
         &containerd__services__snapshots__v1__remove_snapshot_request__descriptor,
         snapshots_remove},
        {"Stat", PROXY_UNARY,
         &containerd__services__snapshots__v1__stat_snapshot_request__descriptor, snapshots_stat},
        {"Update", PROXY_UNARY,
         &containerd__services__snapshots__v1__update_snapshot_request__descriptor,
         snapshots_update},
        {"List", PROXY_SERVER_STREAM,
         &containerd__services__snapshots__v1__list_snapshots_request__descriptor, snapshots_list},
        {"Usage", PROXY_UNARY, &containerd__services__snapshots__v1__usage_request__descriptor,
         snapshots_usage},
        {"Cleanup", PROXY_UNARY, &containerd__services__snapshots__v1__cleanup_request__descriptor,
         snapshots_cleanup},
};

int proxy_snapshots_register(struct proxy_server *server, struct snap_store *store,
                             struct strata_error **ret_err)
{
	return proxy_server_register_service(server, "containerd.services.snapshots.v1.Snapshots",
	                                     snapshots_methods, ELEMENTSOF(snapshots_methods),
	                                     store, ret_err);
}
