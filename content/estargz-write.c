/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The eStargz encoder (see estargz.h, content_estargz_build): an
 * uncompressed tar in memory -> an eStargz blob in memory.
 *
 * The source tar is parsed once into entries that point into it. The output
 * tar reuses each entry's original header blocks byte for byte (pax and GNU
 * extension headers included), so nothing of the metadata is lost when a
 * client unpacks the blob normally; only the order may change (prefetch
 * files first) and the landmark and TOC entries are added.
 *
 * The output is planned as a list of gzip members, each a list of pieces
 * (ranges of the source tar or of small buffers we own): a member starts at
 * each chunk of a non-empty regular file's payload, and the tar headers that
 * follow a payload ride in that payload's member, as stargz does. Members
 * are independent gzip streams, so they are compressed in parallel by a
 * small pool of threads (libdeflate, one compressor per thread), together
 * with the diff ID (sha256 of the whole uncompressed stream, one job) and
 * the digests of chunked files. Offsets are known once every member is
 * compressed; then the TOC is written, compressed, and the blob assembled.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libdeflate.h>

#include "common.h"
#include "estargz.h"
#include "tar-internal.h"

#define BLOCK            512
#define DEFAULT_CHUNK    (4u << 20)
#define DEFAULT_LEVEL    9
#define TOC_NAME         "stargz.index.json"
#define LANDMARK         ".prefetch.landmark"
#define NO_LANDMARK      ".no.prefetch.landmark"
#define LANDMARK_CONTENT 0x0f
#define NAME_MAX_        4096

static const uint8_t zeros[2 * BLOCK];

/* --- the source tar -------------------------------------------------------- */

struct xattr {
	char *name;
	const uint8_t *value; /* into the source tar */
	size_t len;
};

struct entry {
	size_t hdr_off;  /* first header block, extension headers included */
	size_t data_off; /* payload */
	size_t end;      /* after the payload's padding */
	uint64_t size;   /* payload bytes (regular files) */
	char *name;      /* normalised: "a/b", "" for the root */
	char *link;      /* symlink target (raw) or hardlink target (normalised) */
	char type;       /* '0' '1' '2' '3' '4' '5' '6' */
	uint32_t mode;
	uint64_t uid, gid;
	char uname[33], gname[33];
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint32_t dev_major, dev_minor;
	struct xattr *xattrs;
	size_t n_xattrs;
	/* output */
	uint32_t first_member, n_chunks; /* members holding the payload's chunks */
	struct strata_digest digest;     /* whole file */
	bool moved;                      /* placed among the prefetch files */
};

struct tarfile {
	const uint8_t *buf;
	size_t len;
	struct entry *entries;
	size_t n, cap;
};

static void tarfile_done(struct tarfile *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->entries[i].name);
		free(t->entries[i].link);
		for (size_t k = 0; k < t->entries[i].n_xattrs; k++)
			free(t->entries[i].xattrs[k].name);
		free(t->entries[i].xattrs);
	}
	free(t->entries);
}

static bool block_is_zero(const uint8_t *p)
{
	return p[0] == 0 && memcmp(p, p + 1, BLOCK - 1) == 0;
}

static bool header_checksum_ok(const uint8_t *h)
{
	uint64_t want = 0;
	unsigned u = 0;
	int s = 0;
	size_t i = 148;

	while (i < 156 && h[i] == ' ')
		i++;
	for (; i < 156 && h[i] >= '0' && h[i] <= '7'; i++)
		want = want * 8 + (uint64_t)(h[i] - '0');
	for (i = 0; i < BLOCK; i++) {
		uint8_t b = (i >= 148 && i < 156) ? ' ' : h[i];
		u += b;
		s += (int8_t)b;
	}
	return want == u || (int64_t)want == (int64_t)s;
}

/* "./a//b/" -> "a/b", "./" -> ""; ".." is refused. */
static int clean_name(const char *name, size_t len, char **ret)
{
	char *out, *o;
	const char *p = name, *end = name + len;

	if (len > NAME_MAX_)
		return -ENAMETOOLONG;
	out = o = malloc(len + 1);
	if (!out)
		return -ENOMEM;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t)(end - p));
		size_t n;

		if (!e)
			e = end;
		n = (size_t)(e - p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			free(out);
			return -EINVAL;
		}
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (o != out)
				*o++ = '/';
			memcpy(o, p, n);
			o += n;
		}
		p = e < end ? e + 1 : e;
	}
	*o = '\0';
	if (memchr(name, '\0', len)) {
		free(out);
		return -EINVAL;
	}
	*ret = out;
	return 0;
}

static size_t field_len(const uint8_t *p, size_t max)
{
	const uint8_t *z = memchr(p, '\0', max);
	return z ? (size_t)(z - p) : max;
}

struct pending {
	/* from pax 'x' and GNU 'L'/'K' headers, for the next entry */
	const uint8_t *path, *linkpath, *uname, *gname;
	size_t path_len, linkpath_len, uname_len, gname_len;
	bool has_size, has_uid, has_gid, has_mtime;
	uint64_t size, uid, gid;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	struct xattr *xattrs;
	size_t n_xattrs;
};

static void pending_done(struct pending *p)
{
	for (size_t i = 0; i < p->n_xattrs; i++)
		free(p->xattrs[i].name);
	free(p->xattrs);
	*p = (struct pending){0};
}

static int parse_pax_time(const uint8_t *v, size_t n, int64_t *ret_sec, uint32_t *ret_nsec)
{
	int64_t sec = 0;
	uint32_t nsec = 0, scale = 100000000;
	bool neg = false;
	size_t i = 0;

	if (i < n && v[i] == '-') {
		neg = true;
		i++;
	}
	for (; i < n && v[i] >= '0' && v[i] <= '9'; i++)
		sec = sec * 10 + (v[i] - '0');
	if (i < n && v[i] == '.')
		for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
			nsec += (uint32_t)(v[i] - '0') * scale;
			scale /= 10;
		}
	if (neg) {
		sec = -sec;
		if (nsec) {
			sec--;
			nsec = 1000000000u - nsec;
		}
	}
	*ret_sec = sec;
	*ret_nsec = nsec;
	return 0;
}

static int parse_pax(const uint8_t *p, size_t len, struct pending *pd,
                     struct strata_error **ret_err)
{
	size_t off = 0;

	while (off < len) {
		size_t rl = 0, i = off;
		const uint8_t *rec, *eq, *key, *val;
		size_t klen, vlen;

		while (i < len && p[i] >= '0' && p[i] <= '9' && rl < (1u << 30))
			rl = rl * 10 + (size_t)(p[i++] - '0');
		if (i >= len || p[i] != ' ' || rl == 0 || rl > len - off) {
			if (rl == 0 && p[off] == 0)
				break; /* NUL padding */
			return strata_error_set(ret_err, -EBADMSG, "corrupt pax header");
		}
		rec = p + off;
		key = p + i + 1;
		eq = memchr(key, '=', (size_t)(rec + rl - key));
		if (!eq || rec[rl - 1] != '\n')
			return strata_error_set(ret_err, -EBADMSG, "corrupt pax record");
		klen = (size_t)(eq - key);
		val = eq + 1;
		vlen = (size_t)(rec + rl - 1 - val);
#define KEY(s) (klen == strlen(s) && memcmp(key, s, klen) == 0)
		if (KEY("path")) {
			pd->path = val;
			pd->path_len = vlen;
		} else if (KEY("linkpath")) {
			pd->linkpath = val;
			pd->linkpath_len = vlen;
		} else if (KEY("uname")) {
			pd->uname = val;
			pd->uname_len = vlen;
		} else if (KEY("gname")) {
			pd->gname = val;
			pd->gname_len = vlen;
		} else if (KEY("size") || KEY("uid") || KEY("gid")) {
			uint64_t v = 0;
			for (size_t k = 0; k < vlen; k++) {
				if (val[k] < '0' || val[k] > '9' || v > (UINT64_MAX / 10))
					return strata_error_set(ret_err, -EBADMSG,
					                        "bad pax number");
				v = v * 10 + (uint64_t)(val[k] - '0');
			}
			if (KEY("size")) {
				pd->size = v;
				pd->has_size = true;
			} else if (KEY("uid")) {
				pd->uid = v;
				pd->has_uid = true;
			} else {
				pd->gid = v;
				pd->has_gid = true;
			}
		} else if (KEY("mtime")) {
			parse_pax_time(val, vlen, &pd->mtime_sec, &pd->mtime_nsec);
			pd->has_mtime = true;
		} else if (klen > 13 && memcmp(key, "SCHILY.xattr.", 13) == 0) {
			struct xattr *a = realloc(pd->xattrs, (pd->n_xattrs + 1) * sizeof(*a));
			if (!a)
				return -ENOMEM;
			pd->xattrs = a;
			a = &a[pd->n_xattrs];
			a->name = strndup((const char *)key + 13, klen - 13);
			if (!a->name)
				return -ENOMEM;
			a->value = val;
			a->len = vlen;
			pd->n_xattrs++;
		} else if (klen > 11 && memcmp(key, "GNU.sparse.", 11) == 0) {
			return strata_error_set(ret_err, -EOPNOTSUPP,
			                        "sparse tar entries are not supported");
		}
#undef KEY
		off += rl;
	}
	return 0;
}

static struct entry *add_entry(struct tarfile *t)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		struct entry *a = realloc(t->entries, cap * sizeof(*a));
		if (!a)
			return NULL;
		t->entries = a;
		t->cap = cap;
	}
	t->entries[t->n] = (struct entry){0};
	return &t->entries[t->n++];
}

static int tar_parse(struct tarfile *t, struct strata_error **ret_err)
{
	_cleanup_(pending_done) struct pending pd = {0};
	size_t off = 0, hdr_start = SIZE_MAX;
	int r;

	if (t->len < BLOCK)
		return strata_error_set(ret_err, -EBADMSG, "not a tar archive (%zu bytes)", t->len);
	while (off + BLOCK <= t->len) {
		const uint8_t *h = t->buf + off;
		uint64_t size, v;
		size_t data, padded;
		char type;

		if (block_is_zero(h))
			break; /* end of archive */
		if (!header_checksum_ok(h))
			return strata_error_set(ret_err, -EBADMSG,
			                        off == 0 ? "not a tar archive (bad header checksum)"
			                                 : "corrupt tar header at offset %zu",
			                        off);
		if (hdr_start == SIZE_MAX)
			hdr_start = off;
		type = (char)h[156];
		r = content_tar_number(h + 124, 12, &size);
		if (r < 0)
			return strata_error_set(ret_err, r, "corrupt tar header at offset %zu",
			                        off);
		if (pd.has_size && type != 'x' && type != 'g' && type != 'L' && type != 'K')
			size = pd.size;
		data = off + BLOCK;
		if (size > t->len - data)
			return strata_error_set(ret_err, -EBADMSG,
			                        "truncated tar: entry at offset %zu needs %" PRIu64
			                        " bytes",
			                        off, size);
		padded = (size_t)((size + BLOCK - 1) / BLOCK * BLOCK);
		if (padded > t->len - data)
			padded = t->len - data;

		switch (type) {
		case 'x':
			r = parse_pax(t->buf + data, (size_t)size, &pd, ret_err);
			if (r < 0)
				return strata_error_prefix(ret_err, r, "tar offset %zu", off);
			off = data + padded;
			continue;
		case 'g': /* global pax: kept in the stream, applies to nobody here */
			off = data + padded;
			continue;
		case 'L':
			pd.path = t->buf + data;
			pd.path_len = field_len(pd.path, (size_t)size);
			off = data + padded;
			continue;
		case 'K':
			pd.linkpath = t->buf + data;
			pd.linkpath_len = field_len(pd.linkpath, (size_t)size);
			off = data + padded;
			continue;
		case '0':
		case '\0':
		case '7':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
			break;
		case 'S':
			return strata_error_set(ret_err, -EOPNOTSUPP,
			                        "sparse tar entries are not supported");
		default:
			return strata_error_set(ret_err, -EOPNOTSUPP,
			                        "unsupported tar entry type '%c' at offset %zu",
			                        type >= 0x20 && type < 0x7f ? type : '?', off);
		}

		struct entry *e = add_entry(t);
		if (!e)
			return -ENOMEM;
		e->hdr_off = hdr_start;
		e->data_off = data;
		e->type = (type == '\0' || type == '7') ? '0' : type;
		/* only regular files have a payload in the stream */
		e->size = e->type == '0' ? size : 0;
		if (e->type != '0' && size > 0)
			padded = (size_t)((size + BLOCK - 1) / BLOCK * BLOCK); /* skip it */
		e->end = data + padded;
		hdr_start = SIZE_MAX;

		/* name: pax/GNU long name, else ustar prefix + name */
		if (pd.path) {
			r = clean_name((const char *)pd.path, pd.path_len, &e->name);
		} else {
			char full[256 + 1];
			size_t nl = field_len(h, 100), pl = 0;
			if (memcmp(h + 257, "ustar\0", 6) == 0)
				pl = field_len(h + 345, 155);
			if (pl)
				memcpy(full, h + 345, pl), full[pl++] = '/';
			memcpy(full + pl, h, nl);
			r = clean_name(full, pl + nl, &e->name);
		}
		if (r == -EINVAL)
			return strata_error_set(ret_err, r, "tar entry at offset %zu: bad name",
			                        off);
		if (r < 0)
			return r;
		if (e->type == '1' || e->type == '2') {
			const char *ln =
			        pd.linkpath ? (const char *)pd.linkpath : (const char *)h + 157;
			size_t ll = pd.linkpath ? pd.linkpath_len : field_len(h + 157, 100);
			if (e->type == '1')
				r = clean_name(ln, ll, &e->link);
			else
				r = (e->link = strndup(ln, ll)) ? 0 : -ENOMEM;
			if (r == -EINVAL)
				return strata_error_set(
				        ret_err, r, "tar entry \"%s\": bad link target", e->name);
			if (r < 0)
				return r;
		}
		if (streq(e->name, TOC_NAME) || streq(e->name, LANDMARK) ||
		    streq(e->name, NO_LANDMARK)) {
			/* an eStargz source: its TOC and landmark are made anew */
			free(e->name);
			free(e->link);
			t->n--;
			pending_done(&pd);
			off = data + padded;
			continue;
		}
		if (content_tar_number(h + 100, 8, &v) < 0)
			return strata_error_set(ret_err, -EBADMSG, "tar entry \"%s\": bad mode",
			                        e->name);
		e->mode = (uint32_t)(v & 07777);
		e->uid = pd.has_uid ? pd.uid : (content_tar_number(h + 108, 8, &v) < 0 ? 0 : v);
		e->gid = pd.has_gid ? pd.gid : (content_tar_number(h + 116, 8, &v) < 0 ? 0 : v);
		if (pd.has_mtime) {
			e->mtime_sec = pd.mtime_sec;
			e->mtime_nsec = pd.mtime_nsec;
		} else {
			e->mtime_sec = content_tar_number(h + 136, 12, &v) < 0 ? 0 : (int64_t)v;
		}
		if (pd.uname)
			snprintf(e->uname, sizeof(e->uname), "%.*s", (int)MIN(pd.uname_len, 32u),
			         pd.uname);
		else
			snprintf(e->uname, sizeof(e->uname), "%.*s", (int)field_len(h + 265, 32),
			         h + 265);
		if (pd.gname)
			snprintf(e->gname, sizeof(e->gname), "%.*s", (int)MIN(pd.gname_len, 32u),
			         pd.gname);
		else
			snprintf(e->gname, sizeof(e->gname), "%.*s", (int)field_len(h + 297, 32),
			         h + 297);
		if (e->type == '3' || e->type == '4') {
			e->dev_major = content_tar_number(h + 329, 8, &v) < 0 ? 0 : (uint32_t)v;
			e->dev_minor = content_tar_number(h + 337, 8, &v) < 0 ? 0 : (uint32_t)v;
		}
		e->xattrs = TAKE_PTR(pd.xattrs);
		e->n_xattrs = pd.n_xattrs;
		pd.n_xattrs = 0;
		pending_done(&pd);
		off = e->end;
	}
	if (hdr_start != SIZE_MAX)
		return strata_error_set(ret_err, -EBADMSG,
		                        "truncated tar: extension header at "
		                        "the end");
	if (off + BLOCK > t->len && off != t->len)
		return strata_error_set(ret_err, -EBADMSG, "truncated tar");
	return 0;
}

/* --- planning the output --------------------------------------------------- */

struct piece {
	const uint8_t *p;
	size_t len;
};

struct member {
	uint32_t first_piece, n_pieces;
	uint64_t raw_len;
	uint32_t entry; /* the entry whose chunk starts it, or UINT32_MAX */
	uint64_t chunk; /* that chunk's size (its first piece) */
	uint8_t *out;   /* compressed */
	size_t out_len;
	uint64_t offset; /* in the blob */
	struct strata_digest chunk_digest;
};

struct plan {
	struct piece *pieces;
	size_t n_pieces, cap_pieces;
	struct member *members;
	size_t n_members, cap_members;
	uint32_t *order; /* entry indices in output order */
	size_t n_order;
	uint8_t landmark[2 * BLOCK]; /* header + content block */
	struct entry landmark_entry;
};

static void plan_done(struct plan *p)
{
	for (size_t i = 0; i < p->n_members; i++)
		free(p->members[i].out);
	free(p->members);
	free(p->pieces);
	free(p->order);
}

static int add_piece(struct plan *p, const void *ptr, size_t len)
{
	struct member *m;

	if (len == 0)
		return 0;
	if (p->n_pieces == p->cap_pieces) {
		size_t cap = p->cap_pieces ? p->cap_pieces * 2 : 4096;
		struct piece *a = realloc(p->pieces, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		p->pieces = a;
		p->cap_pieces = cap;
	}
	m = &p->members[p->n_members - 1];
	/* merge with the previous piece when contiguous */
	if (m->n_pieces > 0) {
		struct piece *last = &p->pieces[p->n_pieces - 1];
		if (last->p + last->len == (const uint8_t *)ptr) {
			last->len += len;
			m->raw_len += len;
			return 0;
		}
	}
	p->pieces[p->n_pieces++] = (struct piece){ptr, len};
	m->n_pieces++;
	m->raw_len += len;
	return 0;
}

static int open_member(struct plan *p, uint32_t entry, uint64_t chunk)
{
	if (p->n_members == p->cap_members) {
		size_t cap = p->cap_members ? p->cap_members * 2 : 1024;
		struct member *a = realloc(p->members, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		p->members = a;
		p->cap_members = cap;
	}
	p->members[p->n_members++] = (struct member){
	        .first_piece = (uint32_t)p->n_pieces, .entry = entry, .chunk = chunk};
	return 0;
}

static void octal(uint8_t *f, size_t n, uint64_t v)
{
	/* n - 1 digits and a NUL */
	f[n - 1] = 0;
	for (size_t i = n - 1; i-- > 0;) {
		f[i] = (uint8_t)('0' + (v & 7));
		v >>= 3;
	}
}

/* A ustar header for a regular file we add (landmarks, the TOC). */
static void make_header(uint8_t h[BLOCK], const char *name, uint64_t size, uint32_t mode)
{
	unsigned sum = 0;

	memset(h, 0, BLOCK);
	memcpy(h, name, strlen(name));
	octal(h + 100, 8, mode);
	octal(h + 108, 8, 0);
	octal(h + 116, 8, 0);
	octal(h + 124, 12, size);
	octal(h + 136, 12, 0);
	h[156] = '0';
	memcpy(h + 257,
	       "ustar\0"
	       "00",
	       8);
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < BLOCK; i++)
		sum += h[i];
	octal(h + 148, 7, sum);
	h[155] = ' ';
}

static int cmp_entry_name(const void *a, const void *b, void *userdata)
{
	const struct entry *e = userdata;
	return strcmp(e[*(const uint32_t *)a].name, e[*(const uint32_t *)b].name);
}

static int64_t find_sorted(const struct tarfile *t, const uint32_t *sorted, const char *name)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(t->entries[sorted[mid]].name, name);
		if (r == 0)
			return sorted[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Move entry i (its parents and hardlink target first) to the prefetch
 * part of the order. */
static void move_prefetch(struct tarfile *t, const uint32_t *sorted, struct plan *p, uint32_t i,
                          unsigned depth)
{
	struct entry *e = &t->entries[i];

	if (e->moved || depth > 256)
		return;
	if (e->name[0]) {
		_cleanup_free_ char *parent = strdup(e->name);
		char *s = parent ? strrchr(parent, '/') : NULL;
		int64_t pi;
		if (parent) {
			if (s)
				*s = '\0';
			else
				parent[0] = '\0';
			pi = find_sorted(t, sorted, parent);
			if (pi >= 0)
				move_prefetch(t, sorted, p, (uint32_t)pi, depth + 1);
		}
	}
	if (e->type == '1') {
		int64_t ti = find_sorted(t, sorted, e->link);
		if (ti >= 0)
			move_prefetch(t, sorted, p, (uint32_t)ti, depth + 1);
	}
	e->moved = true;
	p->order[p->n_order++] = i;
}

static int make_plan(struct tarfile *t, const struct content_estargz_build_options *o,
                     struct plan *p, struct strata_error **ret_err)
{
	_cleanup_free_ uint32_t *sorted = NULL;
	uint64_t chunk = o->chunk_size ? o->chunk_size : DEFAULT_CHUNK;
	bool any_prefetch = false;
	int r;

	sorted = malloc(MAX(t->n, (size_t)1) * sizeof(*sorted));
	p->order = malloc((t->n + 1) * sizeof(*p->order));
	if (!sorted || !p->order)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		sorted[i] = (uint32_t)i;
	qsort_r(sorted, t->n, sizeof(*sorted), cmp_entry_name, t->entries);
	for (size_t i = 1; i < t->n; i++)
		if (streq(t->entries[sorted[i]].name, t->entries[sorted[i - 1]].name))
			return strata_error_set(
			        ret_err, -EINVAL,
			        "duplicate tar entry \"%s\" (not supported by "
			        "eStargz)",
			        t->entries[sorted[i]].name[0] ? t->entries[sorted[i]].name : "./");
	for (size_t i = 0; i < t->n; i++) {
		struct entry *e = &t->entries[i];
		if (e->type == '1' && find_sorted(t, sorted, e->link) < 0)
			return strata_error_set(
			        ret_err, -EINVAL,
			        "tar entry \"%s\": hardlink target \"%s\" is not in "
			        "the layer",
			        e->name, e->link);
	}

	for (size_t k = 0; k < o->n_prefetch; k++) {
		_cleanup_free_ char *n = NULL;
		int64_t i;
		r = clean_name(o->prefetch[k], strlen(o->prefetch[k]), &n);
		if (r < 0)
			continue;
		i = find_sorted(t, sorted, n);
		if (i < 0) {
			log_debug("estargz: prefetch path \"%s\" is not in this layer", n);
			continue;
		}
		move_prefetch(t, sorted, p, (uint32_t)i, 0);
		any_prefetch = true;
	}

	/* the landmark: after the prefetch files, else first */
	make_header(p->landmark, any_prefetch ? LANDMARK : NO_LANDMARK, 1, 0644);
	p->landmark[BLOCK] = LANDMARK_CONTENT;
	p->landmark_entry = (struct entry){
	        .name = (char *)(any_prefetch ? LANDMARK : NO_LANDMARK),
	        .type = '0',
	        .size = 1,
	        .mode = 0644,
	};
	p->order[p->n_order++] = UINT32_MAX;
	for (size_t i = 0; i < t->n; i++)
		if (!t->entries[i].moved)
			p->order[p->n_order++] = (uint32_t)i;

	/* members */
	r = open_member(p, UINT32_MAX, 0);
	if (r < 0)
		return r;
	for (size_t k = 0; k < p->n_order; k++) {
		uint32_t i = p->order[k];
		struct entry *e = i == UINT32_MAX ? &p->landmark_entry : &t->entries[i];
		const uint8_t *hdr, *data;
		size_t hdr_len, pad;

		if (i == UINT32_MAX) {
			hdr = p->landmark;
			hdr_len = BLOCK;
			data = p->landmark + BLOCK;
		} else {
			hdr = t->buf + e->hdr_off;
			hdr_len = e->data_off - e->hdr_off;
			data = t->buf + e->data_off;
		}
		r = add_piece(p, hdr, hdr_len);
		if (r < 0)
			return r;
		if (e->type != '0' || e->size == 0) {
			/* a non-file payload (rare: hardlinks with size) is skipped */
			continue;
		}
		e->first_member = (uint32_t)p->n_members;
		e->n_chunks = 0;
		for (uint64_t done = 0; done < e->size;) {
			uint64_t n = MIN(chunk, e->size - done);
			r = open_member(p, i, n);
			if (r < 0)
				return r;
			r = add_piece(p, data + done, (size_t)n);
			if (r < 0)
				return r;
			done += n;
			e->n_chunks++;
		}
		pad = (size_t)((BLOCK - e->size % BLOCK) % BLOCK);
		/* the source's own padding keeps payload and next header contiguous */
		if (i != UINT32_MAX && e->end - e->data_off - e->size >= pad)
			r = add_piece(p, data + e->size, pad);
		else
			r = add_piece(p, zeros, pad);
		if (r < 0)
			return r;
	}
	return 0;
}

/* --- parallel work ---------------------------------------------------------- */

struct job {
	uint32_t kind; /* JOB_* */
	uint32_t index;
};

enum { JOB_DIFFID, JOB_MEMBER, JOB_FILE_DIGEST };

struct work {
	struct tarfile *t;
	struct plan *p;
	struct job *jobs;
	size_t n_jobs;
	atomic_size_t next;
	atomic_int err;
	int level;
	struct strata_hasher *diff; /* JOB_DIFFID's, continued by the caller */
};

static int compress_member(struct work *w, struct libdeflate_compressor *c, uint8_t **scratch,
                           size_t *scratch_cap, struct member *m)
{
	const struct piece *pc = &w->p->pieces[m->first_piece];
	const uint8_t *in;
	size_t bound, n;
	uint8_t *out, *shrunk;
	int r;

	if (m->entry != UINT32_MAX) {
		r = strata_sha256(pc[0].p, (size_t)m->chunk, &m->chunk_digest);
		if (r < 0)
			return r;
	}
	if (m->n_pieces == 1) {
		in = pc[0].p;
	} else {
		if (*scratch_cap < m->raw_len) {
			free(*scratch);
			*scratch_cap = (size_t)m->raw_len;
			*scratch = malloc(*scratch_cap);
			if (!*scratch) {
				*scratch_cap = 0;
				return -ENOMEM;
			}
		}
		n = 0;
		for (uint32_t k = 0; k < m->n_pieces; k++) {
			memcpy(*scratch + n, pc[k].p, pc[k].len);
			n += pc[k].len;
		}
		in = *scratch;
	}
	bound = libdeflate_gzip_compress_bound(c, (size_t)m->raw_len);
	out = malloc(bound);
	if (!out)
		return -ENOMEM;
	n = libdeflate_gzip_compress(c, in, (size_t)m->raw_len, out, bound);
	if (n == 0) {
		free(out);
		return -EIO;
	}
	shrunk = realloc(out, n);
	m->out = shrunk ? shrunk : out;
	m->out_len = n;
	return 0;
}

static int hash_file(struct work *w, struct entry *e)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL;
	int r = strata_hasher_new(&h);

	if (r < 0)
		return r;
	r = strata_hasher_update(h, w->t->buf + e->data_off, (size_t)e->size);
	if (r < 0)
		return r;
	return strata_hasher_final(h, &e->digest);
}

static int hash_stream(struct work *w)
{
	int r = 0;

	for (size_t i = 0; i < w->p->n_pieces && r >= 0; i++)
		r = strata_hasher_update(w->diff, w->p->pieces[i].p, w->p->pieces[i].len);
	return r;
}

static void *worker(void *userdata)
{
	struct work *w = userdata;
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(w->level);
	_cleanup_free_ uint8_t *scratch = NULL;
	size_t scratch_cap = 0;

	if (!c) {
		int zero = 0;
		atomic_compare_exchange_strong(&w->err, &zero, -ENOMEM);
		return NULL;
	}
	for (;;) {
		size_t i = atomic_fetch_add(&w->next, 1);
		int r = 0;

		if (i >= w->n_jobs || atomic_load(&w->err) != 0)
			break;
		switch (w->jobs[i].kind) {
		case JOB_DIFFID:
			r = hash_stream(w);
			break;
		case JOB_MEMBER:
			r = compress_member(w, c, &scratch, &scratch_cap,
			                    &w->p->members[w->jobs[i].index]);
			break;
		case JOB_FILE_DIGEST:
			r = hash_file(w, &w->t->entries[w->jobs[i].index]);
			break;
		}
		if (r < 0) {
			int zero = 0;
			atomic_compare_exchange_strong(&w->err, &zero, r);
			break;
		}
	}
	libdeflate_free_compressor(c);
	return NULL;
}

static int run_jobs(struct work *w, unsigned threads)
{
	pthread_t tids[64];
	unsigned n = 0;

	if (threads == 0)
		threads = 1;
	threads = MIN(threads, (unsigned)ELEMENTSOF(tids));
	if (threads > w->n_jobs)
		threads = (unsigned)MAX(w->n_jobs, (size_t)1);
	/* this thread works too */
	for (unsigned i = 1; i < threads; i++) {
		if (pthread_create(&tids[n], NULL, worker, w) != 0)
			break;
		n++;
	}
	worker(w);
	for (unsigned i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	return atomic_load(&w->err);
}

/* --- the TOC ------------------------------------------------------------------ */

struct sbuf {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void sb_grow(struct sbuf *s, size_t n)
{
	if (s->oom || s->len + n + 1 <= s->cap)
		return;
	size_t cap = MAX(s->cap * 2, s->len + n + 1 + 65536);
	char *b = realloc(s->buf, cap);
	if (!b) {
		s->oom = true;
		return;
	}
	s->buf = b;
	s->cap = cap;
}

static void sb_add(struct sbuf *s, const char *p, size_t n)
{
	sb_grow(s, n);
	if (s->oom)
		return;
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
}

static void sb_str(struct sbuf *s, const char *p)
{
	sb_add(s, p, strlen(p));
}

_printf_(2, 3) static void sb_fmt(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	sb_grow(s, 128);
	if (s->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		s->oom = true;
		return;
	}
	if ((size_t)n >= s->cap - s->len) {
		sb_grow(s, (size_t)n);
		if (s->oom)
			return;
		va_start(ap, fmt);
		vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
		va_end(ap);
	}
	s->len += (size_t)n;
}

static void sb_json_str(struct sbuf *s, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;

	sb_add(s, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		sb_add(s, p + start, i - start);
		start = i + 1;
		if (ch == '"')
			sb_add(s, "\\\"", 2);
		else if (ch == '\\')
			sb_add(s, "\\\\", 2);
		else if (ch == '\n')
			sb_add(s, "\\n", 2);
		else if (ch == '\t')
			sb_add(s, "\\t", 2);
		else {
			char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
			sb_add(s, u, 6);
		}
	}
	sb_add(s, p + start, n - start);
	sb_add(s, "\"", 1);
}

static void sb_b64(struct sbuf *s, const uint8_t *p, size_t n)
{
	static const char tab[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char q[4];

	sb_add(s, "\"", 1);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		sb_add(s, q, 4);
	}
	sb_add(s, "\"", 1);
}

static void sb_digest(struct sbuf *s, const char *key, const struct strata_digest *d)
{
	char buf[STRATA_DIGEST_STRING_MAX];
	sb_fmt(s, ",\"%s\":\"%s\"", key, strata_digest_format(d, buf));
}

static const char *toc_type(char t)
{
	switch (t) {
	case '0':
		return "reg";
	case '1':
		return "hardlink";
	case '2':
		return "symlink";
	case '3':
		return "char";
	case '4':
		return "block";
	case '5':
		return "dir";
	default:
		return "fifo";
	}
}

static void toc_entry(struct sbuf *s, const struct plan *p, const struct entry *e, bool *first)
{
	if (!*first)
		sb_add(s, ",", 1);
	*first = false;
	sb_str(s, "{\"name\":");
	if (e->name[0])
		sb_json_str(s, e->name, strlen(e->name));
	else
		sb_str(s, "\"./\"");
	sb_fmt(s, ",\"type\":\"%s\"", toc_type(e->type));
	if (e->type == '0' && e->size)
		sb_fmt(s, ",\"size\":%" PRIu64, e->size);
	if (e->mtime_sec != 0) {
		struct tm tm;
		time_t t = (time_t)e->mtime_sec;
		char ts[64];
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		if (e->mtime_nsec)
			sb_fmt(s, ",\"modtime\":\"%s.%09" PRIu32 "Z\"", ts, e->mtime_nsec);
		else
			sb_fmt(s, ",\"modtime\":\"%sZ\"", ts);
	}
	if (e->link) {
		sb_str(s, ",\"linkName\":");
		sb_json_str(s, e->link, strlen(e->link));
	}
	if (e->mode)
		sb_fmt(s, ",\"mode\":%" PRIu32, e->mode);
	if (e->uid)
		sb_fmt(s, ",\"uid\":%" PRIu64, e->uid);
	if (e->gid)
		sb_fmt(s, ",\"gid\":%" PRIu64, e->gid);
	if (e->uname[0]) {
		sb_str(s, ",\"userName\":");
		sb_json_str(s, e->uname, strlen(e->uname));
	}
	if (e->gname[0]) {
		sb_str(s, ",\"groupName\":");
		sb_json_str(s, e->gname, strlen(e->gname));
	}
	if (e->type == '3' || e->type == '4') {
		if (e->dev_major)
			sb_fmt(s, ",\"devMajor\":%" PRIu32, e->dev_major);
		if (e->dev_minor)
			sb_fmt(s, ",\"devMinor\":%" PRIu32, e->dev_minor);
	}
	if (e->n_xattrs) {
		sb_str(s, ",\"xattrs\":{");
		for (size_t k = 0; k < e->n_xattrs; k++) {
			if (k)
				sb_add(s, ",", 1);
			sb_json_str(s, e->xattrs[k].name, strlen(e->xattrs[k].name));
			sb_add(s, ":", 1);
			sb_b64(s, e->xattrs[k].value, e->xattrs[k].len);
		}
		sb_add(s, "}", 1);
	}
	if (e->type != '0') {
		sb_add(s, "}", 1);
		return;
	}
	if (e->size == 0) {
		static const struct strata_digest empty = {
		        .sha256 = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
		                   0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
		                   0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}};
		sb_digest(s, "digest", &empty);
		sb_add(s, "}", 1);
		return;
	}
	for (uint32_t k = 0; k < e->n_chunks; k++) {
		const struct member *m = &p->members[e->first_member + k];
		uint64_t coff = 0;
		for (uint32_t q = 0; q < k; q++)
			coff += p->members[e->first_member + q].chunk;
		if (k > 0) {
			sb_str(s, ",{\"name\":");
			sb_json_str(s, e->name, strlen(e->name));
			sb_str(s, ",\"type\":\"chunk\"");
		}
		sb_fmt(s, ",\"offset\":%" PRIu64, m->offset);
		if (k == 0)
			sb_digest(s, "digest", e->n_chunks == 1 ? &m->chunk_digest : &e->digest);
		if (coff)
			sb_fmt(s, ",\"chunkOffset\":%" PRIu64, coff);
		if (k + 1 < e->n_chunks)
			sb_fmt(s, ",\"chunkSize\":%" PRIu64, m->chunk);
		sb_digest(s, "chunkDigest", &m->chunk_digest);
		sb_add(s, "}", 1);
	}
}

static int toc_build(const struct tarfile *t, const struct plan *p, char **ret, size_t *ret_len)
{
	struct sbuf s = {0};
	bool first = true;

	sb_str(&s, "{\"version\":1,\"entries\":[");
	for (size_t k = 0; k < p->n_order; k++) {
		uint32_t i = p->order[k];
		toc_entry(&s, p, i == UINT32_MAX ? &p->landmark_entry : &t->entries[i], &first);
	}
	sb_str(&s, "]}");
	if (s.oom) {
		free(s.buf);
		return -ENOMEM;
	}
	*ret = s.buf;
	*ret_len = s.len;
	return 0;
}

/* --- the footer --------------------------------------------------------------- */

void content_estargz_footer(uint64_t toc_offset, uint8_t out[CONTENT_ESTARGZ_FOOTER_SIZE])
{
	static const uint8_t head[16] = {0x1f, 0x8b, 0x08, 0x04, 0,   0,   0,  0,
	                                 0,    0xff, 26,   0,    'S', 'G', 22, 0};
	static const uint8_t tail[13] = {0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
	char hex[17];

	memcpy(out, head, sizeof(head));
	snprintf(hex, sizeof(hex), "%016" PRIx64, toc_offset);
	memcpy(out + 16, hex, 16);
	memcpy(out + 32, "STARGZ", 6);
	memcpy(out + 38, tail, sizeof(tail));
}

/* --- the build ---------------------------------------------------------------- */

void content_estargz_blob_done(struct content_estargz_blob *b)
{
	if (!b)
		return;
	free(b->data);
	*b = (struct content_estargz_blob){0};
}

static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)MIN(n, 64L) : 1u;
}

int content_estargz_build(const void *tar, size_t tar_len,
                          const struct content_estargz_build_options *opts,
                          struct content_estargz_blob *ret, struct strata_error **ret_err)
{
	static const struct content_estargz_build_options defaults = {0};
	const struct content_estargz_build_options *o = opts ? opts : &defaults;
	struct tarfile t = {.buf = tar, .len = tar_len};
	struct plan p = {0};
	struct work w = {0};
	_cleanup_free_ struct job *jobs = NULL;
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ uint8_t *toc_raw = NULL, *toc_gz = NULL;
	struct libdeflate_compressor *c = NULL;
	size_t json_len = 0, n_jobs = 0, toc_raw_len, toc_gz_len = 0, bound;
	uint64_t off = 0, raw_total = 0;
	int level = o->level > 0 ? o->level : DEFAULT_LEVEL;
	uint8_t *blob = NULL;
	int r;

	*ret = (struct content_estargz_blob){0};
	if (level > 12)
		return strata_error_set(ret_err, -EINVAL, "compression level %d out of range 1-12",
		                        level);
	r = tar_parse(&t, ret_err);
	if (r < 0)
		goto out;
	r = make_plan(&t, o, &p, ret_err);
	if (r < 0)
		goto out;

	jobs = malloc((1 + p.n_members + t.n) * sizeof(*jobs));
	if (!jobs) {
		r = -ENOMEM;
		goto out;
	}
	jobs[n_jobs++] = (struct job){JOB_DIFFID, 0};
	for (size_t i = 0; i < t.n; i++)
		if (t.entries[i].n_chunks > 1)
			jobs[n_jobs++] = (struct job){JOB_FILE_DIGEST, (uint32_t)i};
	for (size_t i = 0; i < p.n_members; i++)
		jobs[n_jobs++] = (struct job){JOB_MEMBER, (uint32_t)i};
	w = (struct work){.t = &t, .p = &p, .jobs = jobs, .n_jobs = n_jobs, .level = level};
	r = strata_hasher_new(&w.diff);
	if (r < 0)
		goto out;
	r = run_jobs(&w, o->threads ? o->threads : default_threads());
	if (r < 0) {
		r = strata_error_set(ret_err, r, "eStargz: compressing the layer failed");
		goto out;
	}
	for (size_t i = 0; i < p.n_members; i++) {
		p.members[i].offset = off;
		off += p.members[i].out_len;
		raw_total += p.members[i].raw_len;
	}

	/* the TOC member: header + JSON + padding + end of archive */
	r = toc_build(&t, &p, &json, &json_len);
	if (r < 0)
		goto out;
	toc_raw_len = BLOCK + (json_len + BLOCK - 1) / BLOCK * BLOCK + 2 * BLOCK;
	toc_raw = calloc(1, toc_raw_len);
	if (!toc_raw) {
		r = -ENOMEM;
		goto out;
	}
	make_header(toc_raw, TOC_NAME, json_len, 0644);
	memcpy(toc_raw + BLOCK, json, json_len);
	c = libdeflate_alloc_compressor(level);
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	bound = libdeflate_gzip_compress_bound(c, toc_raw_len);
	toc_gz = malloc(bound);
	if (!toc_gz) {
		r = -ENOMEM;
		goto out;
	}
	toc_gz_len = libdeflate_gzip_compress(c, toc_raw, toc_raw_len, toc_gz, bound);
	if (toc_gz_len == 0) {
		r = -EIO;
		goto out;
	}

	r = strata_hasher_update(w.diff, toc_raw, toc_raw_len);
	if (r >= 0)
		r = strata_hasher_final(w.diff, &ret->diff_id);
	if (r >= 0)
		r = strata_sha256(json, json_len, &ret->toc_digest);
	if (r < 0)
		goto out;

	ret->toc_offset = off;
	ret->len = (size_t)off + toc_gz_len + CONTENT_ESTARGZ_FOOTER_SIZE;
	ret->uncompressed_size = raw_total + toc_raw_len;
	blob = malloc(ret->len);
	if (!blob) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < p.n_members; i++) {
		memcpy(blob + p.members[i].offset, p.members[i].out, p.members[i].out_len);
		free(p.members[i].out);
		p.members[i].out = NULL;
	}
	memcpy(blob + off, toc_gz, toc_gz_len);
	content_estargz_footer(off, blob + off + toc_gz_len);
	r = strata_sha256(blob, ret->len, &ret->digest);
	if (r < 0)
		goto out;
	ret->data = TAKE_PTR(blob);
	ret->n_entries = t.n;
	r = 0;
out:
	free(blob);
	if (c)
		libdeflate_free_compressor(c);
	strata_hasher_free(w.diff);
	plan_done(&p);
	tarfile_done(&t);
	if (r < 0) {
		free(ret->data);
		*ret = (struct content_estargz_blob){0};
	}
	return r;
}
