/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI content digests. Strata stores and verifies sha256 only (what every
 * registry and containerd produce); "sha512:" and other algorithms are parsed
 * far enough to give a clear "unsupported digest algorithm" error.
 *
 * struct strata_hasher streams bytes through OpenSSL's EVP sha256 so a blob is
 * verified while it is written, never by re-reading it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define STRATA_SHA256_LEN     32
#define STRATA_SHA256_HEX_LEN 64
/* "sha256:" + 64 hex + NUL */
#define STRATA_DIGEST_STRING_MAX 72

struct strata_digest {
	uint8_t sha256[STRATA_SHA256_LEN];
};

/* Parse "sha256:<64 lowercase hex>". -EINVAL (with a message naming the
 * problem) for anything else, -EOPNOTSUPP for a well-formed other algorithm. */
int strata_digest_parse(const char *s, struct strata_digest *ret, struct strata_error **ret_err);
/* Format as "sha256:<hex>" into buf (at least STRATA_DIGEST_STRING_MAX). */
char *strata_digest_format(const struct strata_digest *d,
                           char buf[static STRATA_DIGEST_STRING_MAX]);
/* Lowercase hex of the sha256 only, NUL-terminated (65 bytes). */
char *strata_digest_hex(const struct strata_digest *d, char buf[static STRATA_SHA256_HEX_LEN + 1]);
int strata_digest_equal(const struct strata_digest *a, const struct strata_digest *b);

struct strata_hasher; /* opaque; not thread-safe: one owner at a time */

int strata_hasher_new(struct strata_hasher **ret);
int strata_hasher_update(struct strata_hasher *h, const void *buf, size_t len);
/* Finish and reset: the hasher can be reused for a new stream afterwards. */
int strata_hasher_final(struct strata_hasher *h, struct strata_digest *ret);
/* Copy the running state (e.g. to resume an ingest). */
int strata_hasher_dup(const struct strata_hasher *h, struct strata_hasher **ret);
struct strata_hasher *strata_hasher_free(struct strata_hasher *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct strata_hasher *, strata_hasher_free)

/* One-shot helpers. */
int strata_sha256(const void *buf, size_t len, struct strata_digest *ret);
/* Hash an fd from its current offset to EOF; *ret_size gets the byte count. */
int strata_sha256_fd(int fd, struct strata_digest *ret, uint64_t *ret_size);
