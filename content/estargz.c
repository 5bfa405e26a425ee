/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The eStargz reader (see estargz.h): footer, TOC unwrap and verification,
 * and the compiler from TOC JSON to the compact breadth-first form. The JSON
 * is read in one streaming pass (estargz-json.c) into flat records that only
 * live inside content_estargz_toc_parse().
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libdeflate.h>
#include <zlib.h>

#include "common.h"
#include "estargz-json.h"
#include "estargz.h"
#include "tar-internal.h"

/* The first read of a remote blob: its tail, sized so that one request
 * usually brings the footer and the whole TOC member. The member is the
 * gzipped JSON index (a record per file and per chunk); measured on Debian
 * and python layers it is 0.45-0.6% of the blob, so 1/128 (0.78%) covers it
 * with a margin while reading at most ~0.3% of the blob beyond it (the
 * last files' chunks), which the "bytes fetched before first output" budget
 * of a lazy pull can afford. Never below 64 KiB (small layers: one request
 * as before), never above 1 MiB (a bigger TOC is rare: the second request
 * reads the rest of it, sized exactly). */
#define TAIL_READ      (64u << 10)
#define TAIL_READ_MAX  (1u << 20)
#define TAIL_READ_PART 128
#define PATH_MAX_      4096
#define DEPTH_MAX      512
#define TOC_MEMBER_MAX (64u << 20) /* compressed TOC member */

/* --- footer --------------------------------------------------------------- */

static int parse_hex16(const uint8_t *p, uint64_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		int c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -EMEDIUMTYPE;
		v = (v << 4) | (uint64_t)d;
	}
	*ret = v;
	return 0;
}

/* gzip header with FEXTRA and XLEN = xlen, then the extra field at p + 12,
 * then an empty stored block and 8 zero bytes. */
static bool footer_frame_ok(const uint8_t *p, size_t size, unsigned xlen)
{
	static const uint8_t tail[13] = {0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};

	if (p[0] != 0x1f || p[1] != 0x8b || p[2] != 0x08 || !(p[3] & 0x04))
		return false;
	if ((unsigned)(p[10] | p[11] << 8) != xlen)
		return false;
	return memcmp(p + size - 13, tail, 13) == 0;
}

int content_estargz_parse_footer(const void *tail, size_t len, uint64_t *ret_toc_offset,
                                 size_t *ret_footer_size)
{
	const uint8_t *b = tail;

	if (len >= CONTENT_ESTARGZ_FOOTER_SIZE) {
		const uint8_t *p = b + len - CONTENT_ESTARGZ_FOOTER_SIZE;
		if (footer_frame_ok(p, CONTENT_ESTARGZ_FOOTER_SIZE, 26) && p[12] == 'S' &&
		    p[13] == 'G' && (p[14] | p[15] << 8) == 22 &&
		    memcmp(p + 32, "STARGZ", 6) == 0 && parse_hex16(p + 16, ret_toc_offset) == 0) {
			*ret_footer_size = CONTENT_ESTARGZ_FOOTER_SIZE;
			return 0;
		}
	}
	if (len >= CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE) {
		const uint8_t *p = b + len - CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE;
		if (footer_frame_ok(p, CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE, 22) &&
		    memcmp(p + 28, "STARGZ", 6) == 0 && parse_hex16(p + 12, ret_toc_offset) == 0) {
			*ret_footer_size = CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE;
			return 0;
		}
	}
	return -EMEDIUMTYPE;
}

/* --- gzip ----------------------------------------------------------------- */

/* A gzip member's uncompressed size, from its trailer (ISIZE). */
static size_t gzip_isize(const uint8_t *p, size_t len)
{
	return (size_t)p[len - 4] | (size_t)p[len - 3] << 8 | (size_t)p[len - 2] << 16 |
	       (size_t)p[len - 1] << 24;
}

/* in as exactly one gzip member of isize bytes, into out, in one libdeflate
 * pass (2-3x faster than zlib here; it wants room for the whole member): 1
 * when in is not that. */
static int inflate_exact(const void *in, size_t len, void *out, size_t isize)
{
	/* small (~32 KiB) and cheap next to a member's inflate */
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t in_used = 0, out_got = 0;
	enum libdeflate_result res;

	if (!d)
		return -ENOMEM;
	res = libdeflate_gzip_decompress_ex(d, in, len, out, isize, &in_used, &out_got);
	libdeflate_free_decompressor(d);
	return res == LIBDEFLATE_SUCCESS && in_used == len && out_got == isize ? 0 : 1;
}

/* One gzip member holding at least want bytes, in one pass: 1 when in is
 * not exactly one such member, and zlib's streaming loop should do it. */
static int inflate_member(const void *in, size_t len, void *out, size_t want)
{
	_cleanup_free_ uint8_t *tmp = NULL;
	size_t isize;
	int r;

	if (len < 18)
		return 1;
	isize = gzip_isize(in, len);
	/* the rest of a member past the file's bytes is tar padding and the
	 * headers of the entries that follow: bounded, or not one member */
	if (isize < want || isize - want > (16u << 20))
		return 1;
	if (isize > want) {
		tmp = malloc(isize);
		if (!tmp)
			return -ENOMEM;
	}
	r = inflate_exact(in, len, tmp ? tmp : out, isize);
	if (r == 0 && tmp)
		memcpy(out, tmp, want);
	return r;
}

int content_estargz_inflate(const void *in, size_t len, void *out, size_t want)
{
	z_stream z = {0};
	int rc;

	if (want == 0)
		return 0;
	if (len > UINT32_MAX || want > UINT32_MAX)
		return -EFBIG;
	rc = inflate_member(in, len, out, want);
	if (rc <= 0)
		return rc;
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)want;
	for (;;) {
		rc = inflate(&z, Z_NO_FLUSH);
		if (z.avail_out == 0)
			break;
		if (rc == Z_STREAM_END) {
			/* eStargz is a concatenation of members: go on with the next */
			if (z.avail_in == 0 || inflateReset(&z) != Z_OK)
				break;
			continue;
		}
		if (rc != Z_OK)
			break;
	}
	rc = z.avail_out == 0 ? 0 : -EBADMSG;
	inflateEnd(&z);
	return rc;
}

/* One whole gzip member of at most max bytes, sized by its trailer: 1 when
 * in is not that, for zlib. */
static int inflate_one(const void *in, size_t len, size_t max, uint8_t **ret, size_t *ret_len)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t isize;
	int r;

	if (len < 18)
		return 1;
	isize = gzip_isize(in, len);
	if (isize == 0 || isize > max)
		return 1;
	buf = malloc(isize);
	if (!buf)
		return -ENOMEM;
	r = inflate_exact(in, len, buf, isize);
	if (r != 0)
		return r;
	*ret = TAKE_PTR(buf);
	*ret_len = isize;
	return 0;
}

/* Inflate a whole (bounded) member set: for the TOC. The TOC is one member
 * of a few MB of JSON on the first Prepare's path: libdeflate takes it in
 * 2-3 ms where zlib's loop took 8 (measured, python image base layer). */
static int inflate_all(const void *in, size_t len, size_t max, uint8_t **ret, size_t *ret_len)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t cap = MAX(len * 4, (size_t)65536), n = 0;
	z_stream z = {0};
	int rc, r = 0;

	r = inflate_one(in, len, max, ret, ret_len);
	if (r <= 0)
		return r;
	r = 0;
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	buf = malloc(cap);
	if (!buf) {
		inflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	for (;;) {
		if (n == cap) {
			uint8_t *nb;
			if (cap >= max) {
				r = -EFBIG;
				break;
			}
			cap = MIN(cap * 2, max);
			nb = realloc(buf, cap);
			if (!nb) {
				r = -ENOMEM;
				break;
			}
			buf = nb;
		}
		z.next_out = buf + n;
		z.avail_out = (uInt)(cap - n);
		rc = inflate(&z, Z_NO_FLUSH);
		n = cap - z.avail_out;
		if (rc == Z_STREAM_END) {
			if (z.avail_in == 0)
				break;
			/* the footer member follows the TOC member when present */
			if (inflateReset(&z) != Z_OK) {
				r = -EBADMSG;
				break;
			}
			continue;
		}
		if (rc == Z_BUF_ERROR && z.avail_out > 0) {
			r = -EBADMSG; /* input ended mid-stream */
			break;
		}
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			r = -EBADMSG;
			break;
		}
	}
	inflateEnd(&z);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

int content_tar_number(const uint8_t *p, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (p[0] & 0x80) { /* base-256 */
		if (p[0] & 0x40)
			return -EBADMSG; /* negative */
		v = p[0] & 0x3f;
		for (i = 1; i < n; i++) {
			if (v >> 55)
				return -EBADMSG;
			v = (v << 8) | p[i];
		}
		*ret = v;
		return 0;
	}
	while (i < n && p[i] == ' ')
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v >> 60)
			return -EBADMSG;
		v = (v << 3) | (uint64_t)(p[i] - '0');
	}
	if (i < n && p[i] != 0 && p[i] != ' ')
		return -EBADMSG;
	*ret = v;
	return 0;
}

int content_estargz_toc_unwrap(const void *member, size_t len, char **ret_json,
                               size_t *ret_json_len, struct strata_error **ret_err)
{
	_cleanup_free_ uint8_t *tar = NULL;
	size_t tar_len = 0;
	uint64_t size;
	char *json;
	int r;

	r = inflate_all(member, len, CONTENT_ESTARGZ_TOC_MAX + 4096, &tar, &tar_len);
	if (r == -EFBIG)
		return strata_error_set(ret_err, r, "eStargz TOC larger than %u bytes",
		                        CONTENT_ESTARGZ_TOC_MAX);
	if (r < 0)
		return strata_error_set(ret_err, r, "eStargz TOC: corrupt or truncated gzip");
	if (tar_len < 512 || strncmp((const char *)tar, "stargz.index.json", 100) != 0)
		return strata_error_set(ret_err, -EBADMSG,
		                        "eStargz TOC: no stargz.index.json tar entry");
	r = content_tar_number(tar + 124, 12, &size);
	if (r < 0 || size > CONTENT_ESTARGZ_TOC_MAX || size > tar_len - 512)
		return strata_error_set(ret_err, -EBADMSG, "eStargz TOC: truncated tar entry");
	json = malloc(size + 1);
	if (!json)
		return -ENOMEM;
	memcpy(json, tar + 512, size);
	json[size] = '\0';
	*ret_json = json;
	*ret_json_len = size;
	return 0;
}

/* --- compiling the TOC ---------------------------------------------------- */

enum ntype {
	NT_DIR,
	NT_REG,
	NT_SYMLINK,
	NT_HARDLINK,
	NT_CHAR,
	NT_BLOCK,
	NT_FIFO,
};

/* A node while compiling: one per distinct path. */
struct tnode {
	char *path;                 /* normalised, owned; "" for the root */
	const struct toc_rawent *j; /* NULL: an implicit directory */
	uint32_t seq;               /* TOC order, the later duplicate wins */
	uint8_t type;
	bool implicit, opaque, whiteout;
	uint32_t parent; /* tnode index (after sorting by path) */
	uint32_t depth;
	uint32_t final;
	uint32_t first_tchunk, n_tchunks;
	uint32_t nlink_extra;
};

struct tchunk {
	uint32_t node_seq; /* the seq of the reg entry it belongs to */
	uint32_t ord;      /* TOC order */
	const struct toc_rawent *j;
};

struct strtab {
	char *buf;
	size_t len, cap;
};

static int strtab_add(struct strtab *t, const void *s, size_t n, uint32_t *ret)
{
	if (t->len + n + 1 > UINT32_MAX)
		return -EFBIG;
	if (t->len + n + 1 > t->cap) {
		size_t cap = MAX(t->cap * 2, t->len + n + 1 + 4096);
		char *b = realloc(t->buf, cap);
		if (!b)
			return -ENOMEM;
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->buf[t->len + n] = '\0';
	*ret = (uint32_t)t->len;
	t->len += n + 1;
	return 0;
}

struct compiler {
	struct tnode *nodes;
	size_t n, cap;
	struct tchunk *tchunks;
	size_t n_tchunks, cap_tchunks;
	struct strtab strs;
	struct strata_error **ret_err;
	uint64_t prefetch_end;
};

static void compiler_done(struct compiler *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->nodes[i].path);
	free(c->nodes);
	free(c->tchunks);
	free(c->strs.buf);
}

/* "./a//b/" -> "a/b"; ".." anywhere is hostile: -EINVAL. */
static int normalize(const char *name, char **ret)
{
	size_t len = strlen(name);
	char *out, *o;
	const char *p = name;

	if (len > PATH_MAX_)
		return -EINVAL;
	out = o = malloc(len + 1);
	if (!out)
		return -ENOMEM;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);

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
		p = *e ? e + 1 : e;
	}
	*o = '\0';
	*ret = out;
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static struct tnode *add_node(struct compiler *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct tnode *a = realloc(c->nodes, cap * sizeof(*a));
		if (!a)
			return NULL;
		c->nodes = a;
		c->cap = cap;
	}
	c->nodes[c->n] = (struct tnode){0};
	return &c->nodes[c->n++];
}

static int type_from_string(const char *s)
{
	static const char *const names[] = {
	        [NT_DIR] = "dir",           [NT_REG] = "reg",   [NT_SYMLINK] = "symlink",
	        [NT_HARDLINK] = "hardlink", [NT_CHAR] = "char", [NT_BLOCK] = "block",
	        [NT_FIFO] = "fifo",
	};
	if (!s)
		return -1;
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (streq(s, names[i]))
			return (int)i;
	return -1;
}

static int cmp_node_path(const void *a, const void *b)
{
	const struct tnode *x = a, *y = b;
	int r = strcmp(x->path, y->path);

	if (r)
		return r;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int64_t find_path_n(const struct compiler *c, size_t n, const char *path)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(c->nodes[mid].path, path);
		if (r == 0)
			return (int64_t)mid;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int64_t find_path(const struct compiler *c, const char *path)
{
	return find_path_n(c, c->n, path);
}

static int bad(struct compiler *c, int code, const char *fmt, const char *name)
{
	return strata_error_set(c->ret_err, code, fmt, name);
}

/* Pass 1: read the entries into nodes and chunk references. */
static int collect(struct compiler *c, const struct toc_raw *raw)
{
	uint32_t seq = 0;
	int64_t last_reg_seq = -1;
	const char *last_reg_path = NULL;
	int r;

	for (size_t i = 0; i < raw->n_entries; i++) {
		const struct toc_rawent *e = &raw->entries[i];
		const char *name = e->name, *ts = e->type;
		_cleanup_free_ char *path = NULL;
		struct tnode *n;
		int t;

		if (!e->object || !name || !ts)
			return strata_error_set(c->ret_err, -EBADMSG,
			                        "eStargz TOC entry %zu: no name or type", i);
		r = normalize(name, &path);
		if (r == -EINVAL)
			return bad(c, r, "eStargz TOC entry \"%s\": path leaves the layer", name);
		if (r < 0)
			return r;
		if (streq(ts, "chunk")) {
			if (last_reg_seq < 0 || !streq(last_reg_path, path))
				return bad(c, -EBADMSG,
				           "eStargz TOC chunk \"%s\" does not follow its file",
				           name);
			if (c->n_tchunks == c->cap_tchunks) {
				size_t cap = c->cap_tchunks ? c->cap_tchunks * 2 : 256;
				struct tchunk *a = realloc(c->tchunks, cap * sizeof(*a));
				if (!a)
					return -ENOMEM;
				c->tchunks = a;
				c->cap_tchunks = cap;
			}
			c->tchunks[c->n_tchunks++] = (struct tchunk){
			        .node_seq = (uint32_t)last_reg_seq, .ord = (uint32_t)i, .j = e};
			continue;
		}
		t = type_from_string(ts);
		if (t < 0)
			return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": unknown type", name);
		if (c->n >= CONTENT_ESTARGZ_ENTRIES_MAX)
			return strata_error_set(c->ret_err, -EFBIG,
			                        "eStargz TOC: too many entries");
		if (streq(path, ".prefetch.landmark")) {
			c->prefetch_end = e->offset > 0 ? (uint64_t)e->offset : 0;
			last_reg_seq = -1;
			continue;
		}
		if (streq(path, ".no.prefetch.landmark")) {
			last_reg_seq = -1;
			continue;
		}
		n = add_node(c);
		if (!n)
			return -ENOMEM;
		n->seq = seq++;
		n->j = e;
		n->type = (uint8_t)t;
		char *b = path + (base_name(path) - path);
		if (streq(b, ".wh..wh..opq")) {
			/* marks its directory; kept as a node only to find it */
			n->opaque = true;
		} else if (strncmp(b, ".wh.", 4) == 0) {
			size_t rest = strlen(b) - 4;
			memmove(b, b + 4, rest + 1);
			if (!b[0] || streq(b, ".") || streq(b, ".."))
				return bad(c, -EINVAL, "eStargz TOC entry \"%s\": bad whiteout",
				           name);
			n->whiteout = true;
			n->type = NT_CHAR;
		}
		if (!path[0] && t != NT_DIR)
			return bad(c, -EINVAL, "eStargz TOC entry \"%s\": root is not a directory",
			           name);
		n->path = TAKE_PTR(path);
		if (t == NT_REG && !n->whiteout && !n->opaque) {
			last_reg_seq = n->seq;
			last_reg_path = n->path;
		} else {
			last_reg_seq = -1;
		}
	}
	return 0;
}

/* Pass 2: sort by path, drop duplicates (later wins), apply opaque markers,
 * add missing parents. */
static int build_tree(struct compiler *c)
{
	size_t o = 0, before;

	/* the root always exists */
	{
		struct tnode *n = add_node(c);
		if (!n || !(n->path = strdup("")))
			return -ENOMEM;
		n->implicit = true;
		n->type = NT_DIR;
		n->seq = UINT32_MAX;
	}
	qsort(c->nodes, c->n, sizeof(*c->nodes), cmp_node_path);
	/* one node per path: the last real one, else the implicit one */
	for (size_t i = 0; i < c->n;) {
		size_t k = i, keep = i;
		while (k < c->n && streq(c->nodes[k].path, c->nodes[i].path)) {
			if (!c->nodes[k].implicit)
				keep = k;
			k++;
		}
		for (size_t m = i; m < k; m++)
			if (m != keep)
				free(c->nodes[m].path);
		c->nodes[o++] = c->nodes[keep];
		i = k;
	}
	c->n = o;

	/* missing ancestors, appended then merged */
	before = c->n;
	for (size_t i = 0; i < before; i++) {
		_cleanup_free_ char *p = strdup(c->nodes[i].path);
		char *s;

		if (!p)
			return -ENOMEM;
		while ((s = strrchr(p, '/'))) {
			*s = '\0';
			if (find_path_n(c, before, p) >= 0)
				break;
			/* may already be among the appended ones */
			bool have = false;
			for (size_t k = before; k < c->n; k++)
				if (streq(c->nodes[k].path, p)) {
					have = true;
					break;
				}
			if (have)
				break;
			struct tnode *n = add_node(c);
			if (!n || !(n->path = strdup(p)))
				return -ENOMEM;
			n->implicit = true;
			n->type = NT_DIR;
			n->seq = UINT32_MAX;
		}
	}
	if (c->n != before)
		qsort(c->nodes, c->n, sizeof(*c->nodes), cmp_node_path);
	return 0;
}

static int link_parents(struct compiler *c)
{
	for (size_t i = 0; i < c->n; i++) {
		struct tnode *n = &c->nodes[i];
		_cleanup_free_ char *p = NULL;
		char *s;
		int64_t pi;

		if (!n->path[0]) {
			n->parent = (uint32_t)i;
			n->depth = 0;
			continue;
		}
		p = strdup(n->path);
		if (!p)
			return -ENOMEM;
		s = strrchr(p, '/');
		if (s)
			*s = '\0';
		else
			p[0] = '\0';
		pi = find_path(c, p);
		if (pi < 0 || c->nodes[pi].type != NT_DIR || c->nodes[pi].whiteout)
			return bad(c, -EINVAL,
			           "eStargz TOC entry \"%s\": parent is not a directory", n->path);
		n->parent = (uint32_t)pi;
	}
	/* depth: parents sort before children (prefix), so one pass suffices */
	for (size_t i = 0; i < c->n; i++) {
		uint32_t d = 0;
		for (const char *s = c->nodes[i].path; *s; s++)
			d += *s == '/';
		c->nodes[i].depth = c->nodes[i].path[0] ? d + 1 : 0;
		if (c->nodes[i].depth > DEPTH_MAX)
			return bad(c, -EINVAL, "eStargz TOC entry \"%s\": nested too deep",
			           c->nodes[i].path);
	}
	return 0;
}

static int cmp_bfs(const void *a, const void *b, void *userdata)
{
	const struct compiler *c = userdata;
	const struct tnode *x = &c->nodes[*(const uint32_t *)a],
	                   *y = &c->nodes[*(const uint32_t *)b];

	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	if (x->depth > 0) {
		uint32_t px = c->nodes[x->parent].final, py = c->nodes[y->parent].final;
		if (px != py)
			return px < py ? -1 : 1;
	}
	return strcmp(base_name(x->path), base_name(y->path));
}

static int cmp_depth(const void *a, const void *b, void *userdata)
{
	const struct compiler *c = userdata;
	uint32_t x = c->nodes[*(const uint32_t *)a].depth, y = c->nodes[*(const uint32_t *)b].depth;
	return x < y ? -1 : x > y;
}

/* n decimal digits at s: their value, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian): count whole 400-year
 * eras of 146097 days from 0000-03-01, then the years, months (from March,
 * so that February's length comes last) and days within the era. */
static int64_t days_since_epoch(int64_t y, int m, int d)
{
	int64_t era, yoe, doy;

	if (m <= 2)
		y--;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* RFC 3339 as Go writes it: "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)".
 * A TOC has a modtime per entry: no sscanf/timegm (they were 8% of the
 * compile of a 6675-entry TOC). */
static int parse_time(const char *s, int64_t *ret_sec, uint32_t *ret_nsec)
{
	int y, mo, d, h, mi, sec;
	long nsec = 0, off = 0;
	const char *p;

	*ret_sec = 0;
	*ret_nsec = 0;
	if (!s)
		return 0;
	if (strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	y = digits(s, 4);
	mo = digits(s + 5, 2);
	d = digits(s + 8, 2);
	h = digits(s + 11, 2);
	mi = digits(s + 14, 2);
	sec = digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    sec < 0 || sec > 60)
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		long scale = 100000000;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			nsec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == '+' || *p == '-') {
		int oh = digits(p + 1, 2), om = p[3] == ':' ? digits(p + 4, 2) : -1;
		if (oh < 0 || om < 0 || p[6] != '\0')
			return -EINVAL;
		off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
	} else if ((*p != 'Z' && *p != 'z') || p[1] != '\0') {
		return -EINVAL;
	}
	*ret_sec = days_since_epoch(y, mo, d) * 86400 + h * 3600L + mi * 60L + sec - off;
	*ret_nsec = (uint32_t)nsec;
	return 0;
}

static int b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Standard base64 (Go's encoding/json []byte), padding optional. */
static int b64decode(const char *s, uint8_t **ret, size_t *ret_len)
{
	size_t len = strlen(s), n = 0;
	uint8_t *out = malloc(len / 4 * 3 + 3);
	uint32_t acc = 0;
	int bits = 0;

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		int v;
		if (s[i] == '=')
			break;
		v = b64val((unsigned char)s[i]);
		if (v < 0) {
			free(out);
			return -EBADMSG;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	*ret = out;
	*ret_len = n;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_by_offset(const void *a, const void *b, void *userdata)
{
	const struct content_estargz_chunk *ch = userdata;
	const struct content_estargz_chunk *x = &ch[*(const uint32_t *)a],
	                                   *y = &ch[*(const uint32_t *)b];

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->inner_offset < y->inner_offset ? -1 : x->inner_offset > y->inner_offset;
}

static int cmp_seq(const void *a, const void *b)
{
	const struct tchunk *x = a, *y = b;
	return x->node_seq < y->node_seq ? -1 : x->node_seq > y->node_seq;
}

static int cmp_seq_ord(const void *a, const void *b)
{
	const struct tchunk *x = a, *y = b;
	int r = cmp_seq(a, b);
	return r ? r : x->ord < y->ord ? -1 : x->ord > y->ord;
}

/* Chunks of the reg node n (its own entry first, then "chunk" entries), in
 * TOC order. */
static int add_chunk(struct compiler *c, struct content_estargz_toc *toc, size_t *cap,
                     const struct tnode *n, const struct toc_rawent *j, uint32_t entry,
                     uint64_t file_size)
{
	struct content_estargz_chunk *ch;
	const char *dg = j->chunk_digest;
	int64_t off = j->offset, inner = j->inner_offset, coff = j->chunk_offset,
	        csize = j->chunk_size;

	if (toc->n_chunks == *cap) {
		size_t nc = *cap ? *cap * 2 : 256;
		struct content_estargz_chunk *a = realloc(toc->chunks, nc * sizeof(*a));
		if (!a)
			return -ENOMEM;
		toc->chunks = a;
		*cap = nc;
	}
	if (off < 0 || inner < 0 || coff < 0 || csize < 0 || (uint64_t)coff > file_size)
		return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": bad chunk offsets", n->path);
	if (csize == 0)
		csize = (int64_t)(file_size - (uint64_t)coff);
	if ((uint64_t)csize > file_size - (uint64_t)coff)
		return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": chunk past end of file",
		           n->path);
	ch = &toc->chunks[toc->n_chunks];
	*ch = (struct content_estargz_chunk){
	        .offset = (uint64_t)off,
	        .inner_offset = (uint64_t)inner,
	        .file_offset = (uint64_t)coff,
	        .size = (uint64_t)csize,
	        .entry = entry,
	};
	if (!dg || strata_digest_parse(dg, &ch->digest, NULL) < 0)
		return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": missing or bad chunkDigest",
		           n->path);
	if (ch->offset >= toc->toc_offset)
		return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": chunk offset past the TOC",
		           n->path);
	toc->n_chunks++;
	return 0;
}

static int fill_entry(struct compiler *c, const struct toc_raw *raw,
                      struct content_estargz_toc *toc, const struct tnode *n, uint32_t idx,
                      size_t *chunk_cap, size_t *xattr_cap)
{
	struct content_estargz_entry *e = &toc->entries[idx];
	static const uint32_t fmt[] = {
	        [NT_DIR] = S_IFDIR,      [NT_REG] = S_IFREG,  [NT_SYMLINK] = S_IFLNK,
	        [NT_HARDLINK] = S_IFREG, [NT_CHAR] = S_IFCHR, [NT_BLOCK] = S_IFBLK,
	        [NT_FIFO] = S_IFIFO};
	const struct toc_rawent *j = n->j;
	int r;

	r = strtab_add(&c->strs, base_name(n->path), strlen(base_name(n->path)), &e->name);
	if (r < 0)
		return r;
	e->parent = c->nodes[n->parent].final;
	e->first_child = e->first_chunk = e->first_xattr = 0;
	e->link = CONTENT_ESTARGZ_NONE;
	e->nlink = 1;
	if (!j) { /* implicit directory */
		e->mode = S_IFDIR | 0755;
		return 0;
	}
	e->mode = fmt[n->type] | ((uint32_t)j->mode & 07777);
	e->uid = (uint32_t)j->uid;
	e->gid = (uint32_t)j->gid;
	if (parse_time(j->modtime, &e->mtime_sec, &e->mtime_nsec) < 0)
		return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": bad modtime", n->path);
	if (n->whiteout) {
		e->mode = S_IFCHR;
		e->flags |= CONTENT_ESTARGZ_WHITEOUT;
		e->uid = e->gid = 0;
		return 0;
	}
	if (n->type == NT_CHAR || n->type == NT_BLOCK) {
		e->dev_major = (uint32_t)j->dev_major;
		e->dev_minor = (uint32_t)j->dev_minor;
	}
	if (n->type == NT_SYMLINK) {
		const char *t = j->link_name;
		if (!t || !t[0] || strlen(t) > PATH_MAX_)
			return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": bad symlink target",
			           n->path);
		r = strtab_add(&c->strs, t, strlen(t), &e->link);
		if (r < 0)
			return r;
		e->size = strlen(t);
	}
	if (n->type == NT_REG) {
		int64_t sz = j->size;
		if (sz < 0)
			return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": bad size", n->path);
		e->size = (uint64_t)sz;
		toc->total_size += e->size;
		e->first_chunk = toc->n_chunks;
		if (sz > 0) {
			struct tchunk key = {.node_seq = n->seq};
			struct tchunk *tc;
			r = add_chunk(c, toc, chunk_cap, n, j, idx, e->size);
			if (r < 0)
				return r;
			/* bsearch/qsort must not see a NULL array, even empty */
			tc = c->n_tchunks
			             ? bsearch(&key, c->tchunks, c->n_tchunks, sizeof(key), cmp_seq)
			             : NULL;
			/* bsearch finds any match: back up to the first */
			while (tc && tc > c->tchunks && tc[-1].node_seq == n->seq)
				tc--;
			for (; tc && tc < c->tchunks + c->n_tchunks && tc->node_seq == n->seq;
			     tc++) {
				r = add_chunk(c, toc, chunk_cap, n, tc->j, idx, e->size);
				if (r < 0)
					return r;
			}
			/* chunks must tile the file */
			uint64_t pos = 0;
			for (uint32_t k = e->first_chunk; k < toc->n_chunks; k++) {
				if (toc->chunks[k].file_offset != pos)
					return bad(c, -EBADMSG,
					           "eStargz TOC entry \"%s\": chunks do not cover "
					           "the file",
					           n->path);
				pos += toc->chunks[k].size;
			}
			if (pos != e->size)
				return bad(c, -EBADMSG,
				           "eStargz TOC entry \"%s\": chunks do not cover the file",
				           n->path);
		}
		e->n_chunks = toc->n_chunks - e->first_chunk;
	}
	e->first_xattr = toc->n_xattrs;
	if (j->bad_xattr)
		return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": bad xattr", n->path);
	for (uint32_t xi = 0; xi < j->n_xattrs; xi++) {
		const char *k = raw->xattrs[j->first_xattr + xi].key;
		_cleanup_free_ uint8_t *val = NULL;
		size_t vl = 0;
		struct content_estargz_xattr *x;

		if (b64decode(raw->xattrs[j->first_xattr + xi].value, &val, &vl) < 0 ||
		    vl > 65536 || !k[0] || strlen(k) > 255)
			return bad(c, -EBADMSG, "eStargz TOC entry \"%s\": bad xattr", n->path);
		if (toc->n_xattrs == *xattr_cap) {
			size_t nc = *xattr_cap ? *xattr_cap * 2 : 64;
			struct content_estargz_xattr *a = realloc(toc->xattrs, nc * sizeof(*a));
			if (!a)
				return -ENOMEM;
			toc->xattrs = a;
			*xattr_cap = nc;
		}
		x = &toc->xattrs[toc->n_xattrs];
		r = strtab_add(&c->strs, k, strlen(k), &x->name);
		if (r == 0)
			r = strtab_add(&c->strs, val, vl, &x->value);
		if (r < 0)
			return r;
		x->value_len = (uint32_t)vl;
		toc->n_xattrs++;
	}
	e->n_xattrs = toc->n_xattrs - e->first_xattr;
	return 0;
}

static int compile(struct compiler *c, const struct toc_raw *raw, uint64_t toc_offset,
                   struct content_estargz_toc **ret)
{
	_cleanup_(content_estargz_toc_freep) struct content_estargz_toc *toc = NULL;
	_cleanup_free_ uint32_t *order = NULL;
	_cleanup_free_ uint64_t *offs = NULL;
	size_t chunk_cap = 0, xattr_cap = 0, n_offs = 0;
	int r;

	if (!raw->has_entries)
		return strata_error_set(c->ret_err, -EBADMSG, "eStargz TOC: no \"entries\" array");
	if (raw->version != 1)
		return strata_error_set(c->ret_err, -EBADMSG, "eStargz TOC: unsupported version");
	r = collect(c, raw);
	if (r < 0)
		return r;
	if (c->n_tchunks > 0)
		qsort(c->tchunks, c->n_tchunks, sizeof(*c->tchunks), cmp_seq_ord);
	r = build_tree(c);
	if (r < 0)
		return r;
	r = link_parents(c);
	if (r < 0)
		return r;

	/* breadth-first numbering, depth by depth */
	order = malloc(c->n * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++)
		order[i] = (uint32_t)i;
	qsort_r(order, c->n, sizeof(*order), cmp_depth, c);
	for (size_t i = 0; i < c->n;) {
		size_t k = i;
		while (k < c->n && c->nodes[order[k]].depth == c->nodes[order[i]].depth)
			k++;
		qsort_r(order + i, k - i, sizeof(*order), cmp_bfs, c);
		for (size_t m = i; m < k; m++)
			c->nodes[order[m]].final = (uint32_t)m;
		i = k;
	}

	toc = calloc(1, sizeof(*toc));
	if (!toc)
		return -ENOMEM;
	toc->toc_offset = toc_offset;
	toc->prefetch_end = MIN(c->prefetch_end, toc_offset);
	toc->n_entries = (uint32_t)c->n;
	toc->entries = calloc(c->n, sizeof(*toc->entries));
	if (!toc->entries)
		return -ENOMEM;
	for (size_t m = 0; m < c->n; m++) {
		r = fill_entry(c, raw, toc, &c->nodes[order[m]], (uint32_t)m, &chunk_cap,
		               &xattr_cap);
		if (r < 0)
			return r;
	}
	/* children ranges, directory link counts, opaque markers, hardlinks */
	for (uint32_t m = 1; m < toc->n_entries; m++) {
		struct content_estargz_entry *p = &toc->entries[toc->entries[m].parent];
		if (p->n_children == 0)
			p->first_child = m;
		p->n_children++;
	}
	for (uint32_t m = 0; m < toc->n_entries; m++) {
		struct content_estargz_entry *e = &toc->entries[m];
		if (S_ISDIR(e->mode)) {
			e->nlink = 2;
			for (uint32_t k = 0; k < e->n_children; k++)
				if (S_ISDIR(toc->entries[e->first_child + k].mode))
					e->nlink++;
		}
	}
	for (size_t m = 0; m < c->n; m++) {
		const struct tnode *n = &c->nodes[order[m]];
		struct content_estargz_entry *e = &toc->entries[m];

		if (n->opaque) {
			/* the marker hides itself: its name stays but is skipped by
			 * lookup/readdir through the flag on a zero mode */
			toc->entries[e->parent].flags |= CONTENT_ESTARGZ_OPAQUE;
			e->mode = 0;
			continue;
		}
		if (n->type == NT_HARDLINK && !n->whiteout) {
			_cleanup_free_ char *t = NULL;
			const char *ln = n->j->link_name;
			int64_t ti;

			if (!ln || normalize(ln, &t) < 0)
				return bad(c, -EINVAL,
				           "eStargz TOC entry \"%s\": bad hardlink target",
				           n->path);
			ti = find_path(c, t);
			if (ti < 0 || c->nodes[ti].type != NT_REG || c->nodes[ti].whiteout)
				return bad(c, -EINVAL,
				           "eStargz TOC entry \"%s\": hardlink target missing or "
				           "not a "
				           "regular file",
				           n->path);
			e->flags |= CONTENT_ESTARGZ_HARDLINK;
			e->link = c->nodes[ti].final;
			toc->entries[e->link].nlink++;
		}
	}

	/* compressed extents: each member ends where the next one starts */
	offs = malloc((toc->n_chunks + 1) * sizeof(*offs));
	toc->by_offset = malloc(MAX(toc->n_chunks, 1u) * sizeof(*toc->by_offset));
	if (!offs || !toc->by_offset)
		return -ENOMEM;
	for (uint32_t k = 0; k < toc->n_chunks; k++)
		offs[n_offs++] = toc->chunks[k].offset;
	offs[n_offs++] = toc_offset;
	qsort(offs, n_offs, sizeof(*offs), cmp_u64);
	for (uint32_t k = 0; k < toc->n_chunks; k++) {
		struct content_estargz_chunk *ch = &toc->chunks[k];
		uint64_t *p = bsearch(&ch->offset, offs, n_offs, sizeof(*offs), cmp_u64);
		while (p && p + 1 < offs + n_offs && p[1] == ch->offset)
			p++;
		ch->end = p && p + 1 < offs + n_offs ? p[1] : toc_offset;
		toc->by_offset[k] = k;
	}
	qsort_r(toc->by_offset, toc->n_chunks, sizeof(*toc->by_offset), cmp_by_offset, toc->chunks);

	/* shrink to fit: this is what stays in memory per layer */
	if (toc->n_chunks) {
		void *a = realloc(toc->chunks, toc->n_chunks * sizeof(*toc->chunks));
		if (a)
			toc->chunks = a;
	}
	toc->strings = realloc(c->strs.buf, MAX(c->strs.len, (size_t)1));
	if (!toc->strings) {
		toc->strings = c->strs.buf;
	}
	c->strs.buf = NULL;
	toc->strings_len = c->strs.len;
	*ret = TAKE_PTR(toc);
	return 0;
}

int content_estargz_toc_parse(const void *json, size_t len, const struct strata_digest *expected,
                              uint64_t toc_offset, struct content_estargz_toc **ret,
                              struct strata_error **ret_err)
{
	struct compiler c = {.ret_err = ret_err};
	struct toc_raw raw;
	int r;

	if (len > CONTENT_ESTARGZ_TOC_MAX)
		return strata_error_set(ret_err, -EFBIG, "eStargz TOC larger than %u bytes",
		                        CONTENT_ESTARGZ_TOC_MAX);
	if (expected) {
		struct strata_digest got;
		char a[STRATA_DIGEST_STRING_MAX], b[STRATA_DIGEST_STRING_MAX];

		r = strata_sha256(json, len, &got);
		if (r < 0)
			return r;
		if (!strata_digest_equal(&got, expected))
			return strata_error_set(
			        ret_err, -EBADMSG,
			        "eStargz TOC digest %s does not match toc.digest %s",
			        strata_digest_format(&got, a), strata_digest_format(expected, b));
	}
	r = toc_raw_read(json, len, &raw, ret_err);
	if (r == 0) {
		r = compile(&c, &raw, toc_offset, ret);
		if (r < 0 && r != -ENOMEM)
			(void)strata_error_prefix(ret_err, r, "compile eStargz TOC");
	}
	toc_raw_done(&raw);
	compiler_done(&c);
	return r;
}

struct content_estargz_toc *content_estargz_toc_free(struct content_estargz_toc *toc)
{
	if (!toc)
		return NULL;
	free(toc->entries);
	free(toc->chunks);
	free(toc->by_offset);
	free(toc->xattrs);
	free(toc->strings);
	free(toc);
	return NULL;
}

size_t content_estargz_toc_memory(const struct content_estargz_toc *toc)
{
	return sizeof(*toc) + toc->n_entries * sizeof(*toc->entries) +
	       toc->n_chunks * (sizeof(*toc->chunks) + sizeof(uint32_t)) +
	       toc->n_xattrs * sizeof(*toc->xattrs) + toc->strings_len;
}

/* --- lookups -------------------------------------------------------------- */

int64_t content_estargz_lookup(const struct content_estargz_toc *toc, uint32_t dir,
                               const char *name, size_t len)
{
	const struct content_estargz_entry *d;
	uint32_t lo, hi;

	if (dir >= toc->n_entries)
		return -ENOENT;
	d = &toc->entries[dir];
	lo = d->first_child;
	hi = d->first_child + d->n_children;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const char *n = toc->strings + toc->entries[mid].name;
		int r = strncmp(n, name, len);
		if (r == 0 && n[len] != '\0')
			r = 1;
		if (r == 0)
			return toc->entries[mid].mode == 0 ? -ENOENT : (int64_t)mid;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

uint32_t content_estargz_resolve(const struct content_estargz_toc *toc, uint32_t idx)
{
	if (idx < toc->n_entries && (toc->entries[idx].flags & CONTENT_ESTARGZ_HARDLINK))
		return toc->entries[idx].link;
	return idx;
}

uint32_t content_estargz_chunk_at(const struct content_estargz_toc *toc, uint32_t idx, uint64_t off)
{
	const struct content_estargz_entry *e = &toc->entries[idx];
	uint32_t lo = e->first_chunk, hi = e->first_chunk + e->n_chunks;

	if (off >= e->size)
		return CONTENT_ESTARGZ_NONE;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct content_estargz_chunk *ch = &toc->chunks[mid];
		if (off < ch->file_offset)
			hi = mid;
		else if (off >= ch->file_offset + ch->size)
			lo = mid + 1;
		else
			return mid;
	}
	return CONTENT_ESTARGZ_NONE;
}

char *content_estargz_path(const struct content_estargz_toc *toc, uint32_t idx)
{
	uint32_t chain[DEPTH_MAX + 2];
	size_t n = 0, len = 0;
	char *out, *p;

	while (idx != 0 && idx < toc->n_entries && n < ELEMENTSOF(chain)) {
		chain[n++] = idx;
		len += strlen(toc->strings + toc->entries[idx].name) + 1;
		idx = toc->entries[idx].parent;
	}
	out = p = malloc(len + 1);
	if (!out)
		return NULL;
	*p = '\0';
	while (n > 0) {
		if (p != out)
			*p++ = '/';
		p = stpcpy(p, toc->strings + toc->entries[chain[--n]].name);
	}
	return out;
}

/* --- over the registry ------------------------------------------------------ */

int content_estargz_open_remote(struct content_registry_client *c, const struct content_ref *ref,
                                const struct strata_digest *blob, uint64_t blob_size,
                                const struct strata_digest *toc_digest,
                                struct content_estargz_toc **ret, char **ret_json,
                                size_t *ret_json_len, uint64_t *ret_fetched,
                                struct strata_error **ret_err)
{
	_cleanup_free_ uint8_t *tail = NULL, *member = NULL;
	_cleanup_free_ char *json = NULL;
	uint64_t want = MAX(blob_size / TAIL_READ_PART, (uint64_t)TAIL_READ);
	uint64_t capped = MIN(want, (uint64_t)TAIL_READ_MAX);
	size_t tail_len = (size_t)MIN(capped, blob_size), footer_size, json_len;
	uint64_t tail_start = blob_size - tail_len, toc_offset, member_len;
	char ds[STRATA_DIGEST_STRING_MAX];
	double t[4];
	int64_t n;
	int r, requests = 1;

	t[0] = log_now_ms();
	strata_digest_format(blob, ds);
	if (blob_size < CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE)
		return strata_error_set(ret_err, -EMEDIUMTYPE,
		                        "layer %s is not eStargz (too small for a footer)", ds);
	tail = malloc(tail_len);
	if (!tail)
		return -ENOMEM;
	n = content_registry_read_range(c, ref, blob, tail_start, tail_len, tail, ret_err);
	if (n < 0)
		return (int)n;
	if (ret_fetched)
		*ret_fetched += (uint64_t)n;
	if ((size_t)n != tail_len)
		return strata_error_set(ret_err, -EBADMSG,
		                        "layer %s: short read of the blob's tail (%" PRId64
		                        " of %zu bytes)",
		                        ds, n, tail_len);
	r = content_estargz_parse_footer(tail, tail_len, &toc_offset, &footer_size);
	if (r < 0)
		return strata_error_set(ret_err, r, "layer %s is not eStargz (no footer)", ds);
	if (toc_offset >= blob_size - footer_size)
		return strata_error_set(ret_err, -EBADMSG, "layer %s: footer points past the blob",
		                        ds);
	member_len = blob_size - footer_size - toc_offset;
	if (member_len > TOC_MEMBER_MAX)
		return strata_error_set(ret_err, -EFBIG, "layer %s: TOC of %" PRIu64 " bytes", ds,
		                        member_len);
	member = malloc(member_len);
	if (!member)
		return -ENOMEM;
	if (toc_offset >= tail_start) {
		memcpy(member, tail + (toc_offset - tail_start), member_len);
	} else {
		size_t head = (size_t)(tail_start - toc_offset);
		n = content_registry_read_range(c, ref, blob, toc_offset, head, member, ret_err);
		if (n < 0)
			return (int)n;
		if (ret_fetched)
			*ret_fetched += (uint64_t)n;
		if ((size_t)n != head)
			return strata_error_set(ret_err, -EBADMSG, "layer %s: short TOC read", ds);
		memcpy(member + head, tail, member_len - head);
		requests++;
	}
	t[1] = log_now_ms();
	r = content_estargz_toc_unwrap(member, member_len, &json, &json_len, ret_err);
	t[2] = log_now_ms();
	if (r == 0)
		r = content_estargz_toc_parse(json, json_len, toc_digest, toc_offset, ret, ret_err);
	if (r < 0)
		return strata_error_prefix(ret_err, r, "layer %s", ds);
	t[3] = log_now_ms();
	log_debug("layer %s: TOC member of %" PRIu64 " bytes in %d request(s) of %zu+ bytes: "
	          "read %.1f ms, unwrap %.1f ms (%zu bytes of JSON), parse %.1f ms",
	          ds, member_len, requests, tail_len, t[1] - t[0], t[2] - t[1], json_len,
	          t[3] - t[2]);
	if (ret_json) {
		*ret_json = TAKE_PTR(json);
		*ret_json_len = json_len;
	}
	return 0;
}
