/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Labels of a blob: a small array sorted by key (few labels per blob, so a
 * sorted array beats a hash table in memory and in the record encoding), and
 * containerd's validation rule.
 */
#include <string.h>

#include "content-internal.h"

void content_labels_free(struct content_label *labels, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(labels[i].key);
		free(labels[i].value);
	}
	free(labels);
}

void content_info_done(struct content_info *info)
{
	if (!info)
		return;
	content_labels_free(info->labels, info->n_labels);
	*info = (struct content_info){0};
}

void content_status_done(struct content_status *st)
{
	if (!st)
		return;
	free(st->ref);
	*st = (struct content_status){0};
}

int content_label_validate(const char *key, const char *value, struct strata_error **ret_err)
{
	size_t kl = strlen(key), vl = value ? strlen(value) : 0;

	if (kl == 0)
		return strata_error_set(ret_err, -EINVAL, "label key must not be empty");
	if (kl + vl > CONTENT_LABEL_MAX)
		return strata_error_set(ret_err, -EINVAL,
		                        "label key and value greater than maximum size (%d bytes), "
		                        "key: %.10s",
		                        CONTENT_LABEL_MAX, key);
	return 0;
}

/* Binary search; returns the index of key or, negated minus one, where it
 * would go. */
static ssize_t label_find(const struct content_info *info, const char *key)
{
	size_t lo = 0, hi = info->n_labels;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(info->labels[mid].key, key);
		if (c == 0)
			return (ssize_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(ssize_t)lo - 1;
}

const char *content_info_label(const struct content_info *info, const char *key)
{
	ssize_t i = label_find(info, key);
	return i >= 0 ? info->labels[i].value : NULL;
}

int content_info_set_label(struct content_info *info, const char *key, const char *value)
{
	ssize_t i = label_find(info, key);
	char *k, *v;

	if (!value) {
		if (i < 0)
			return 0;
		free(info->labels[i].key);
		free(info->labels[i].value);
		memmove(&info->labels[i], &info->labels[i + 1],
		        (info->n_labels - (size_t)i - 1) * sizeof(*info->labels));
		info->n_labels--;
		return 0;
	}
	v = strdup(value);
	if (!v)
		return -ENOMEM;
	if (i >= 0) {
		free(info->labels[i].value);
		info->labels[i].value = v;
		return 0;
	}
	k = strdup(key);
	struct content_label *a = realloc(info->labels, (info->n_labels + 1) * sizeof(*a));
	if (!k || !a) {
		free(k);
		free(v);
		if (a)
			info->labels = a;
		return -ENOMEM;
	}
	info->labels = a;
	i = -i - 1;
	memmove(&a[i + 1], &a[i], (info->n_labels - (size_t)i) * sizeof(*a));
	a[i] = (struct content_label){k, v};
	info->n_labels++;
	return 0;
}

int content_labels_copy(const struct content_label *src, size_t n, struct content_label **ret,
                        size_t *ret_n)
{
	struct content_label *a = NULL;

	*ret = NULL;
	*ret_n = 0;
	if (n == 0)
		return 0;
	a = calloc(n, sizeof(*a));
	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		a[i].key = strdup(src[i].key);
		a[i].value = strdup(src[i].value ? src[i].value : "");
		if (!a[i].key || !a[i].value) {
			content_labels_free(a, n);
			return -ENOMEM;
		}
	}
	*ret = a;
	*ret_n = n;
	return 0;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct content_label *)a)->key,
	              ((const struct content_label *)b)->key);
}

int content_labels_normalize(struct content_label *labels, size_t n, struct strata_error **ret_err)
{
	int r;

	for (size_t i = 0; i < n; i++) {
		r = content_label_validate(labels[i].key, labels[i].value, ret_err);
		if (r < 0)
			return r;
	}
	if (n > 1)
		qsort(labels, n, sizeof(*labels), label_cmp);
	for (size_t i = 1; i < n; i++)
		if (streq(labels[i - 1].key, labels[i].key))
			return strata_error_set(ret_err, -EINVAL, "duplicate label key \"%s\"",
			                        labels[i].key);
	return 0;
}
