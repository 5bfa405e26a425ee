/* SPDX-License-Identifier: Apache-2.0 */
/* Small pieces of the gRPC-over-HTTP/2 text protocol: grpc-message percent
 * encoding and grpc-timeout parsing (grpc/doc/PROTOCOL-HTTP2.md). */
#include <string.h>
#include <time.h>

#include "proxy-internal.h"

uint64_t proxy_now_usec(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Bytes outside 0x20-0x7E and '%' itself become %XX, so any UTF-8 message
 * survives as an HTTP/2 header value. */
char *proxy_percent_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1), *p = out;

	if (!out)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c >= 0x20 && *c <= 0x7e && *c != '%') {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 0xf];
		}
	}
	*p = '\0';
	return out;
}

/* "TimeoutValue TimeoutUnit": at most 8 ASCII digits, then one of H M S m u n. */
int proxy_parse_timeout(const char *s, uint64_t *ret_usec)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; s[n] >= '0' && s[n] <= '9'; n++)
		v = v * 10 + (uint64_t)(s[n] - '0');
	if (n == 0 || n > 8 || s[n] == '\0' || s[n + 1] != '\0')
		return -EINVAL;
	switch (s[n]) {
	case 'H':
		v *= 3600ull * 1000000u;
		break;
	case 'M':
		v *= 60ull * 1000000u;
		break;
	case 'S':
		v *= 1000000u;
		break;
	case 'm':
		v *= 1000u;
		break;
	case 'u':
		break;
	case 'n':
		v = (v + 999) / 1000;
		break;
	default:
		return -EINVAL;
	}
	*ret_usec = v;
	return 0;
}
