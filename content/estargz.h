/* SPDX-License-Identifier: Apache-2.0 */
/*
 * eStargz reader: footer, TOC and chunk decoding for lazily pulled layers
 * (format: ../shared/reference/lazy-pull.md; producer: stargz-snapshotter's
 * estargz package, ctr-remote). Re-exported through content/content.h.
 *
 * The TOC JSON is parsed once and compiled into a compact, immutable form:
 * flat arrays of fixed-size entries, chunks and xattrs plus one string table.
 * No JSON tree and no per-file heap object is kept. Entries are numbered in
 * breadth-first order with the children of each directory contiguous and
 * sorted by name, so the numbering depends only on the TOC (an entry's index
 * + 1 is its FUSE inode number, stable across restarts) and a lookup is a
 * binary search in the parent's child range. Index 0 is the root directory.
 *
 * What the compiler does with the tar-level details, so that a lazy layer
 * stacks under overlayfs exactly like an unpacked one:
 *   - names are normalised ("./a/b/" -> "a/b"); ".." or a name that leaves
 *     the layer rejects the whole TOC (-EINVAL);
 *   - missing parent directories are created (0755, root-owned);
 *   - ".wh.NAME" becomes a 0/0 character device NAME (overlay whiteout),
 *     ".wh..wh..opq" sets CONTENT_ESTARGZ_OPAQUE on its directory;
 *   - hardlinks are entries flagged CONTENT_ESTARGZ_HARDLINK whose `link` is
 *     the target's index; the target's nlink counts them;
 *   - ".prefetch.landmark" / ".no.prefetch.landmark" are hidden; the former
 *     sets prefetch_end (everything before its offset is prioritised).
 *
 * Thread-safety: a compiled TOC is immutable and may be shared freely.
 * Errors: -EMEDIUMTYPE "not eStargz" (no footer), -EBADMSG corrupt or
 * unverifiable data (digest mismatch, truncated gzip/tar, bad JSON),
 * -EINVAL hostile or inconsistent TOC, -EFBIG over the size bounds,
 * -EOPNOTSUPP registry ignores Range (from the registry client).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "registry.h"

#define CONTENT_ESTARGZ_FOOTER_SIZE        51
#define CONTENT_ESTARGZ_LEGACY_FOOTER_SIZE 47
#define CONTENT_ESTARGZ_TOC_DIGEST_LABEL   "containerd.io/snapshot/stargz/toc.digest"
/* Bounds on what a registry can make us allocate. */
#define CONTENT_ESTARGZ_TOC_MAX     (256u << 20) /* uncompressed TOC JSON */
#define CONTENT_ESTARGZ_ENTRIES_MAX (1u << 24)

enum {
	CONTENT_ESTARGZ_OPAQUE = 1u << 0,   /* dir: trusted.overlay.opaque=y */
	CONTENT_ESTARGZ_HARDLINK = 1u << 1, /* `link` is the target entry */
	CONTENT_ESTARGZ_WHITEOUT = 1u << 2, /* a converted .wh. entry */
};

#define CONTENT_ESTARGZ_NONE UINT32_MAX

/* 88 bytes. mode carries S_IFMT. */
struct content_estargz_entry {
	uint32_t parent; /* root: 0 */
	uint32_t name;   /* string table offset of the NUL-terminated base name */
	uint32_t link;   /* symlink: string offset of the target; hardlink: entry */
	uint32_t first_child, n_children;
	uint32_t first_chunk, n_chunks;
	uint32_t first_xattr, n_xattrs;
	uint32_t mode;
	uint32_t uid, gid;
	uint32_t nlink;
	uint32_t dev_major, dev_minor;
	uint32_t flags;
	uint32_t mtime_nsec;
	uint32_t pad;
	int64_t mtime_sec;
	uint64_t size;
};

/* One verified unit of file data: bytes [file_offset, file_offset + size)
 * of its file are bytes [inner_offset, inner_offset + size) of the
 * decompressed gzip stream that starts at blob offset `offset` and ends
 * before `end` (the next member start). */
struct content_estargz_chunk {
	uint64_t offset, end;
	uint64_t inner_offset;
	uint64_t file_offset;
	uint64_t size;
	uint32_t entry;
	uint32_t pad;
	struct strata_digest digest; /* sha256 of the uncompressed bytes */
};

struct content_estargz_xattr {
	uint32_t name;  /* string offset, NUL-terminated */
	uint32_t value; /* string offset */
	uint32_t value_len;
};

struct content_estargz_toc {
	struct content_estargz_entry *entries;
	uint32_t n_entries;
	struct content_estargz_chunk *chunks; /* per file contiguous, by file offset */
	uint32_t n_chunks;
	uint32_t *by_offset; /* chunk indices sorted by (offset, inner_offset) */
	struct content_estargz_xattr *xattrs;
	uint32_t n_xattrs;
	char *strings;
	size_t strings_len;
	uint64_t toc_offset;   /* blob offset of the TOC's gzip member */
	uint64_t prefetch_end; /* 0: no prefetch landmark */
	uint64_t total_size;   /* sum of regular file sizes */
};

/*
 * Find the footer at the end of `tail` (the last len bytes of the blob):
 * the 51-byte one, else the legacy 47-byte one. -EMEDIUMTYPE when neither.
 */
int content_estargz_parse_footer(const void *tail, size_t len, uint64_t *ret_toc_offset,
                                 size_t *ret_footer_size);

/*
 * The TOC's gzip member (tar header + JSON + tar end) -> the JSON bytes
 * (malloc'd, NUL-terminated). -EBADMSG when truncated or not a tar with
 * stargz.index.json first.
 */
int content_estargz_toc_unwrap(const void *member, size_t len, char **ret_json,
                               size_t *ret_json_len, struct strata_error **ret_err);

/*
 * Compile the TOC JSON. expected (NULL: not checked) must equal sha256 of
 * json, else -EBADMSG. toc_offset bounds the chunk offsets.
 */
int content_estargz_toc_parse(const void *json, size_t len, const struct strata_digest *expected,
                              uint64_t toc_offset, struct content_estargz_toc **ret,
                              struct strata_error **ret_err);
struct content_estargz_toc *content_estargz_toc_free(struct content_estargz_toc *toc);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct content_estargz_toc *, content_estargz_toc_free)

/* Bytes held by a compiled TOC (for the memory figures). */
size_t content_estargz_toc_memory(const struct content_estargz_toc *toc);

static inline const char *content_estargz_str(const struct content_estargz_toc *toc, uint32_t off)
{
	return toc->strings + off;
}

/* The child `name` (len bytes) of directory `dir`: its index, or -ENOENT. */
int64_t content_estargz_lookup(const struct content_estargz_toc *toc, uint32_t dir,
                               const char *name, size_t len);
/* The entry whose attributes and data an entry stands for (hardlinks). */
uint32_t content_estargz_resolve(const struct content_estargz_toc *toc, uint32_t idx);
/* The index of the chunk of regular file `idx` that holds file offset off,
 * or CONTENT_ESTARGZ_NONE past the end. */
uint32_t content_estargz_chunk_at(const struct content_estargz_toc *toc, uint32_t idx,
                                  uint64_t off);
/* "a/b/c" for entry idx (malloc'd; "" for the root); for log lines. */
char *content_estargz_path(const struct content_estargz_toc *toc, uint32_t idx);

/*
 * Inflate the concatenated gzip members in `in` until `want` bytes came out
 * (or the input ends: then -EBADMSG). out must hold want bytes.
 */
int content_estargz_inflate(const void *in, size_t len, void *out, size_t want);

/*
 * Everything between the blob and a compiled TOC, over the registry: one
 * Range read of the blob's tail (64 KiB, which usually holds the footer and
 * the whole TOC), a second one for the rest of the TOC when it is larger,
 * then unwrap, verify against toc_digest (NULL = unverified, the caller's
 * explicit choice) and compile. ret_json (may be NULL) receives the verified
 * JSON, for keeping a local copy. ret_fetched adds the bytes read.
 */
int content_estargz_open_remote(struct content_registry_client *c, const struct content_ref *ref,
                                const struct strata_digest *blob, uint64_t blob_size,
                                const struct strata_digest *toc_digest,
                                struct content_estargz_toc **ret, char **ret_json,
                                size_t *ret_json_len, uint64_t *ret_fetched,
                                struct strata_error **ret_err);

/* --- the encoder (estargz-write.c; `strata convert`) ------------------------ */

#define CONTENT_ESTARGZ_UNCOMPRESSED_SIZE_LABEL "io.containers.estargz.uncompressed-size"

struct content_estargz_build_options {
	int level;                   /* gzip level 1-12 (libdeflate; 12 is its best); 0 = 9 */
	uint64_t chunk_size;         /* bytes of file data per gzip member; 0 = 4 MiB */
	const char *const *prefetch; /* paths placed first, before .prefetch.landmark */
	size_t n_prefetch;
	unsigned threads; /* compression threads; 0 = online CPUs */
};

/* A built eStargz layer, held in memory. */
struct content_estargz_blob {
	uint8_t *data; /* the blob (malloc'd) */
	size_t len;
	struct strata_digest digest;     /* sha256 of the blob */
	struct strata_digest diff_id;    /* sha256 of the uncompressed tar */
	struct strata_digest toc_digest; /* sha256 of the TOC JSON */
	uint64_t uncompressed_size;
	uint64_t toc_offset;
	size_t n_entries; /* tar entries of the source */
};

/*
 * Re-encode an uncompressed tar as eStargz: the source's header blocks are
 * kept byte for byte (so a normal unpack sees the same metadata), regular
 * files start gzip members and are split every chunk_size bytes, the listed
 * prefetch paths (with their parent directories and hardlink targets) come
 * first, then the landmark, then the TOC and the 51-byte footer. The source
 * must stay valid during the call. -EBADMSG not a tar / corrupt or truncated
 * tar, -EINVAL duplicate entries or a hardlink to a missing file,
 * -EOPNOTSUPP sparse files or unknown entry types; with a message.
 */
int content_estargz_build(const void *tar, size_t tar_len,
                          const struct content_estargz_build_options *opts,
                          struct content_estargz_blob *ret, struct strata_error **ret_err);
void content_estargz_blob_done(struct content_estargz_blob *b);

/* The 51-byte footer pointing at the TOC member at toc_offset. */
void content_estargz_footer(uint64_t toc_offset, uint8_t out[CONTENT_ESTARGZ_FOOTER_SIZE]);

/* --- image conversion (convert.c; `strata convert --estargz`) ----------------- */

struct content_convert_options {
	struct content_estargz_build_options estargz;
	unsigned layer_jobs;   /* layers converted at once; 0 = 2 */
	bool plain_http;       /* as for pull; implied for localhost/127.0.0.1 */
	const char *user;      /* "user:password" for both registries, or NULL */
	const char *hosts_dir; /* certs.d, or NULL */
};

struct content_convert_result {
	struct strata_digest digest; /* of the written manifest or index */
	int64_t size;
	const char *media_type; /* static */
	size_t n_images;        /* platform manifests converted */
	size_t n_layers;        /* distinct layers converted */
	uint64_t in_bytes;      /* source layer bytes read */
	uint64_t out_bytes;     /* eStargz layer bytes produced */
};

/*
 * Convert the image at src (a registry reference or "oci:DIR[:TAG]"; every
 * platform of an index) to eStargz and write it to dst (same forms; a
 * layout's tag defaults to "latest"). All conversion happens before the
 * first write; a registry gets blobs, then child manifests, then the
 * tagged manifest or index. -EOPNOTSUPP unsupported media types (zstd,
 * foreign layers, nested indexes), -EBADMSG corrupt layers, plus the
 * encoder's and the registry client's errors; with a message.
 */
int content_convert_estargz(const char *src, const char *dst,
                            const struct content_convert_options *o,
                            struct content_convert_result *ret, struct strata_error **ret_err);
