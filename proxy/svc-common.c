/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protobuf helpers the services share: label maps (containerd's
 * map<string,string> labels, a repeated LabelsEntry on the wire) in both
 * directions, timestamps, and List's batching of infos into streamed
 * responses.
 */
#include <stddef.h>
#include <string.h>

#include "proxy-internal.h"
#include "content.pb-c.h"
#include "snapshots.pb-c.h"
#include "images.pb-c.h"
#include "content.h"
#include "snapshotter.h"

/* The casts between these types in the services rely on these. */
#define SAME_LAYOUT(a, b, f1, f2)                                                      \
	_Static_assert(sizeof(a) == sizeof(b) && offsetof(a, f1) == offsetof(b, f1) && \
	                       offsetof(a, f2) == offsetof(b, f2),                     \
	               #a " and " #b " differ")
SAME_LAYOUT(struct proxy_label, struct content_label, key, value);
SAME_LAYOUT(struct proxy_label, struct snap_label, key, value);
SAME_LAYOUT(struct proxy_label_pb, Containerd__Services__Content__V1__Info__LabelsEntry, key,
            value);
SAME_LAYOUT(struct proxy_label_pb,
            Containerd__Services__Content__V1__WriteContentRequest__LabelsEntry, key, value);
SAME_LAYOUT(struct proxy_label_pb, Containerd__Services__Snapshots__V1__Info__LabelsEntry, key,
            value);
SAME_LAYOUT(struct proxy_label_pb,
            Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry, key, value);
SAME_LAYOUT(struct proxy_label_pb,
            Containerd__Services__Snapshots__V1__ViewSnapshotRequest__LabelsEntry, key, value);
SAME_LAYOUT(struct proxy_label_pb,
            Containerd__Services__Snapshots__V1__CommitSnapshotRequest__LabelsEntry, key, value);
SAME_LAYOUT(struct proxy_label_pb, Strata__Images__V1__Image__LabelsEntry, key, value);
SAME_LAYOUT(struct proxy_label_pb, Strata__Images__V1__Snapshot__LabelsEntry, key, value);
#define LIST_LAYOUT(b)                                                                           \
	_Static_assert(sizeof(struct proxy_list_pb) == sizeof(b) &&                              \
	                       offsetof(struct proxy_list_pb, n_items) == offsetof(b, n_info) && \
	                       offsetof(struct proxy_list_pb, items) == offsetof(b, info),       \
	               #b " is no { repeated Info info = 1; }")
LIST_LAYOUT(Containerd__Services__Content__V1__ListContentResponse);
LIST_LAYOUT(Containerd__Services__Snapshots__V1__ListSnapshotsResponse);

void proxy_labels_pb_free(struct proxy_label_pb **entries, size_t n)
{
	if (!entries)
		return;
	for (size_t i = 0; i < n && entries[i]; i++) {
		free(entries[i]->key);
		free(entries[i]->value);
		free(entries[i]);
	}
	free(entries);
}

struct proxy_label_pb **proxy_labels_to_pb(const ProtobufCMessageDescriptor *entry_desc,
                                           const struct proxy_label *labels, size_t n)
{
	/* Never NULL for n == 0: NULL means out of memory. */
	struct proxy_label_pb **entries = calloc(MAX(n, (size_t)1), sizeof(*entries));

	if (!entries)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		struct proxy_label_pb *e = malloc(sizeof(*e));

		if (!e)
			goto fail;
		protobuf_c_message_init(entry_desc, e);
		entries[i] = e;
		e->key = strdup(labels[i].key);
		e->value = strdup(labels[i].value);
		if (!e->key || !e->value)
			goto fail;
	}
	return entries;
fail:
	proxy_labels_pb_free(entries, n);
	return NULL;
}

struct proxy_label *proxy_labels_from_pb(struct proxy_label_pb *const *entries, size_t n)
{
	struct proxy_label *l = calloc(MAX(n, (size_t)1), sizeof(*l));

	if (!l)
		return NULL;
	for (size_t i = 0; i < n; i++)
		l[i] = (struct proxy_label){.key = entries[i]->key, .value = entries[i]->value};
	return l;
}

Google__Protobuf__Timestamp *proxy_timestamp_new(const struct timespec *ts)
{
	Google__Protobuf__Timestamp *t = malloc(sizeof(*t));

	if (!t)
		return NULL;
	google__protobuf__timestamp__init(t);
	t->seconds = ts->tv_sec;
	t->nanos = (int32_t)ts->tv_nsec;
	return t;
}

int proxy_list_flush(struct proxy_list_batch *b)
{
	struct proxy_list_pb resp = {
	        .base = PROTOBUF_C_MESSAGE_INIT(b->desc),
	        .n_items = b->n,
	        .items = b->items,
	};
	int r;

	if (b->n == 0)
		return 0;
	r = proxy_call_send(b->call, &resp.base);
	proxy_list_done(b);
	return r;
}

int proxy_list_add(struct proxy_list_batch *b, ProtobufCMessage *item)
{
	if (!item)
		return -ENOMEM;
	b->items[b->n] = item;
	if (++b->n == PROXY_LIST_BATCH)
		return proxy_list_flush(b);
	return 0;
}

void proxy_list_done(struct proxy_list_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		b->free_item(b->items[i]);
	b->n = 0;
}
