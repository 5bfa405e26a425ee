/* SPDX-License-Identifier: Apache-2.0 */
/* sha256 digests over OpenSSL EVP (see digest.h). */
#include <string.h>

#include <openssl/evp.h>

#include "digest.h"

struct strata_hasher {
	EVP_MD_CTX *ctx;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int strata_digest_parse(const char *s, struct strata_digest *ret, struct strata_error **ret_err)
{
	const char *colon, *hex;

	if (!s || !*s)
		return strata_error_set(ret_err, -EINVAL, "empty digest");
	colon = strchr(s, ':');
	if (!colon || colon == s)
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid digest \"%s\": missing algorithm", s);
	if ((size_t)(colon - s) != 6 || strncmp(s, "sha256", 6) != 0) {
		/* algorithm := [a-z0-9]+ ([+._-] [a-z0-9]+)* per the OCI spec */
		for (const char *p = s; p < colon; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			      strchr("+._-", *p)))
				return strata_error_set(ret_err, -EINVAL,
				                        "invalid digest \"%s\": bad algorithm", s);
		return strata_error_set(ret_err, -EOPNOTSUPP,
		                        "unsupported digest algorithm \"%.*s\" (only sha256)",
		                        (int)(colon - s), s);
	}
	hex = colon + 1;
	if (strlen(hex) != STRATA_SHA256_HEX_LEN)
		return strata_error_set(ret_err, -EINVAL,
		                        "invalid digest \"%s\": sha256 needs 64 hex characters", s);
	for (size_t i = 0; i < STRATA_SHA256_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return strata_error_set(
			        ret_err, -EINVAL,
			        "invalid digest \"%s\": not lowercase hex at position %zu", s,
			        (size_t)(hex - s) + 2 * i + (hi < 0 ? 0 : 1));
		if (ret)
			ret->sha256[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

char *strata_digest_hex(const struct strata_digest *d, char buf[static STRATA_SHA256_HEX_LEN + 1])
{
	static const char hexd[] = "0123456789abcdef";
	for (size_t i = 0; i < STRATA_SHA256_LEN; i++) {
		buf[2 * i] = hexd[d->sha256[i] >> 4];
		buf[2 * i + 1] = hexd[d->sha256[i] & 0xf];
	}
	buf[STRATA_SHA256_HEX_LEN] = '\0';
	return buf;
}

char *strata_digest_format(const struct strata_digest *d, char buf[static STRATA_DIGEST_STRING_MAX])
{
	memcpy(buf, "sha256:", 7);
	(void)strata_digest_hex(d, buf + 7);
	return buf;
}

int strata_digest_equal(const struct strata_digest *a, const struct strata_digest *b)
{
	return memcmp(a->sha256, b->sha256, STRATA_SHA256_LEN) == 0;
}

int strata_hasher_new(struct strata_hasher **ret)
{
	struct strata_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		(void)strata_hasher_free(h);
		return -ENOMEM;
	}
	*ret = h;
	return 0;
}

int strata_hasher_update(struct strata_hasher *h, const void *buf, size_t len)
{
	if (len == 0)
		return 0;
	return EVP_DigestUpdate(h->ctx, buf, len) == 1 ? 0 : -EIO;
}

int strata_hasher_final(struct strata_hasher *h, struct strata_digest *ret)
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(h->ctx, ret->sha256, &n) != 1 || n != STRATA_SHA256_LEN)
		return -EIO;
	return EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

int strata_hasher_dup(const struct strata_hasher *h, struct strata_hasher **ret)
{
	struct strata_hasher *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ctx = EVP_MD_CTX_new();
	if (!c->ctx || EVP_MD_CTX_copy_ex(c->ctx, h->ctx) != 1) {
		(void)strata_hasher_free(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

struct strata_hasher *strata_hasher_free(struct strata_hasher *h)
{
	if (!h)
		return NULL;
	EVP_MD_CTX_free(h->ctx);
	free(h);
	return NULL;
}

int strata_sha256(const void *buf, size_t len, struct strata_digest *ret)
{
	unsigned int n = 0;
	if (EVP_Digest(buf, len, ret->sha256, &n, EVP_sha256(), NULL) != 1)
		return -EIO;
	return 0;
}

int strata_sha256_fd(int fd, struct strata_digest *ret, uint64_t *ret_size)
{
	_cleanup_(strata_hasher_freep) struct strata_hasher *h = NULL;
	_cleanup_free_ char *buf = NULL;
	const size_t bufsz = 1 << 20;
	uint64_t total = 0;
	int r;

	r = strata_hasher_new(&h);
	if (r < 0)
		return r;
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		r = strata_hasher_update(h, buf, (size_t)n);
		if (r < 0)
			return r;
		total += (uint64_t)n;
	}
	r = strata_hasher_final(h, ret);
	if (r < 0)
		return r;
	if (ret_size)
		*ret_size = total;
	return 0;
}
