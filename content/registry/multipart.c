/* SPDX-License-Identifier: Apache-2.0 */
/*
 * multipart/byteranges, the answer to a request for several byte ranges
 * (see registry-internal.h). Lines are CRLF-terminated but a bare LF is
 * accepted; a part's data is read by the length its Content-Range gives,
 * never by looking for the boundary in it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "registry-internal.h"

#define TEXT_MAX (64u << 10)

static char *boundary_of(const char *content_type)
{
	const char *p = content_type, *v;
	size_t n;

	if (!p || strncasecmp(p, "multipart/byteranges", 20) != 0)
		return NULL;
	p += 20;
	for (;;) {
		p = strchr(p, ';');
		if (!p)
			return NULL;
		p += strspn(p + 1, " \t") + 1;
		if (strncasecmp(p, "boundary=", 9) == 0)
			break;
	}
	v = p + 9;
	if (*v == '"') {
		v++;
		n = strcspn(v, "\"");
		if (v[n] != '"')
			return NULL;
	} else {
		n = strcspn(v, " \t;");
	}
	/* RFC 2046: 1 to 70 characters */
	if (n == 0 || n > 70)
		return NULL;
	return strndup(v, n);
}

int registry_multipart_init(struct registry_multipart *mp, const char *content_type,
                            size_t max_part, registry_part_fn fn, void *userdata)
{
	_cleanup_free_ char *b = boundary_of(content_type);

	*mp = (struct registry_multipart){
	        .fn = fn,
	        .userdata = userdata,
	        .max_part = max_part,
	        .part_start = -1,
	};
	if (!b)
		return -EBADMSG;
	if (asprintf(&mp->delim, "--%s", b) < 0) {
		mp->delim = NULL;
		return -ENOMEM;
	}
	mp->delim_len = strlen(mp->delim);
	return 0;
}

void registry_multipart_done(struct registry_multipart *mp)
{
	free(mp->delim);
	free(mp->data);
	*mp = (struct registry_multipart){0};
}

/* "Content-Range: bytes A-B/T" -> A and the length; -EBADMSG otherwise. */
static int content_range(const char *line, int64_t *ret_start, size_t *ret_len)
{
	unsigned long long a, b;
	char c;

	if (strncasecmp(line, "content-range:", 14) != 0)
		return 0;
	line += 14;
	line += strspn(line, " \t");
	if (sscanf(line, "bytes %llu-%llu/%c", &a, &b, &c) != 3 || b < a || b - a >= SIZE_MAX ||
	    a > INT64_MAX)
		return -EBADMSG;
	*ret_start = (int64_t)a;
	*ret_len = (size_t)(b - a + 1);
	return 1;
}

static int on_line(struct registry_multipart *mp)
{
	char *line = mp->line;
	size_t n = mp->line_len;
	int r;

	mp->line_len = 0;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	if (!mp->in_headers) {
		mp->text += n + 2;
		if (mp->text > TEXT_MAX)
			return -EBADMSG;
		if (n >= mp->delim_len && memcmp(line, mp->delim, mp->delim_len) == 0) {
			const char *rest = line + mp->delim_len;
			if (streq(rest, "--")) {
				mp->state = MP_DONE;
			} else if (rest[strspn(rest, " \t")] == '\0') {
				mp->in_headers = true;
				mp->part_start = -1;
				mp->data_want = 0;
			}
		}
		/* anything else: the preamble, or the CRLF that ends a part */
		return 0;
	}
	if (n > 0) {
		size_t len = 0;
		r = content_range(line, &mp->part_start, &len);
		if (r < 0)
			return r;
		if (r > 0)
			mp->data_want = len;
		return 0;
	}
	/* the blank line: the part's data follows */
	mp->in_headers = false;
	if (mp->part_start < 0 || mp->data_want > mp->max_part)
		return -EBADMSG;
	free(mp->data);
	mp->data = malloc(MAX(mp->data_want, (size_t)1));
	if (!mp->data)
		return -ENOMEM;
	mp->data_len = 0;
	mp->state = MP_DATA;
	return 0;
}

int registry_multipart_feed(struct registry_multipart *mp, const void *buf, size_t len)
{
	const uint8_t *p = buf, *end = p + len;
	int r;

	while (p < end) {
		switch (mp->state) {
		case MP_DONE:
			return 0; /* the epilogue */
		case MP_DATA: {
			size_t k = MIN((size_t)(end - p), mp->data_want - mp->data_len);
			memcpy(mp->data + mp->data_len, p, k);
			mp->data_len += k;
			p += k;
			if (mp->data_len == mp->data_want) {
				mp->state = MP_LINE;
				mp->parts++;
				r = mp->fn((uint64_t)mp->part_start, mp->data, mp->data_len,
				           mp->userdata);
				free(mp->data);
				mp->data = NULL;
				if (r < 0)
					return r;
			}
			break;
		}
		case MP_LINE: {
			const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
			size_t k = (size_t)((nl ? nl : end) - p);
			if (mp->line_len + k >= sizeof(mp->line))
				return -EBADMSG;
			memcpy(mp->line + mp->line_len, p, k);
			mp->line_len += k;
			p += k;
			if (nl) {
				p++;
				r = on_line(mp);
				if (r < 0)
					return r;
			}
			break;
		}
		}
	}
	return 0;
}

int registry_multipart_finish(const struct registry_multipart *mp)
{
	return mp->state == MP_DONE ? 0 : -EBADMSG;
}
