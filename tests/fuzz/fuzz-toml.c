/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for common/toml.c. Besides "no crash, no leak, no UB" it
 * checks what callers rely on: a failure always carries a
 * "fuzz: line L, column C: ..." message, and every key and string handed out
 * is valid UTF-8.
 *
 * Not built by meson; see tests/fuzz/README.md for how to run it.
 * Build with -DFUZZ_STANDALONE for a plain binary that parses each file named
 * on the command line (or stdin), to replay a crash without libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = *p < 0x80 ? 1 : *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;

		if (*p >= 0x80 && (*p < 0xC2 || *p > 0xF4))
			abort();
		for (size_t i = 1; i < n; i++)
			if ((p[i] & 0xC0) != 0x80)
				abort();
		p += n;
	}
}

/* Touch every accessor on every node; depth is bounded by the parser. */
static void walk(const struct toml_value *v, unsigned depth)
{
	const char *s;
	int64_t i;
	double d;
	bool b;

	if (depth > 200)
		abort();
	switch (toml_type(v)) {
	case TOML_STRING:
		if (toml_as_string(v, &s) < 0)
			abort();
		check_utf8(s);
		break;
	case TOML_INT:
		if (toml_as_int(v, &i) < 0 || toml_as_float(v, &d) != -EINVAL)
			abort();
		break;
	case TOML_FLOAT:
		if (toml_as_float(v, &d) < 0)
			abort();
		break;
	case TOML_BOOL:
		if (toml_as_bool(v, &b) < 0)
			abort();
		break;
	case TOML_ARRAY:
		for (size_t k = 0; k < toml_count(v); k++)
			walk(toml_at(v, k), depth + 1);
		if (toml_key_at(v, 0) || toml_get(v, "x"))
			abort();
		break;
	case TOML_TABLE:
		for (size_t k = 0; k < toml_count(v); k++) {
			const char *key = toml_key_at(v, k);

			check_utf8(key);
			/* keys are unique, so lookup finds this very entry */
			if (toml_get(v, key) != toml_at(v, k))
				abort();
			walk(toml_at(v, k), depth + 1);
		}
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct toml_value *root = NULL;
	struct strata_error *err = NULL;
	int r;

	r = toml_parse((const char *)data, size, "fuzz", &root, &err);
	if (r < 0) {
		if (root || !err || err->code != r || !err->msg)
			abort();
		if (r == -EINVAL && strncmp(err->msg, "fuzz: line ", 11) != 0)
			abort();
	} else {
		if (!root || err)
			abort();
		walk(root, 0);
	}
	toml_free(root);
	strata_error_free(err);
	return 0;
}

#ifdef FUZZ_STANDALONE
static int run_file(FILE *f)
{
	size_t cap = 1 << 16, len = 0, n;
	uint8_t *buf = malloc(cap);

	if (!buf)
		return 1;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap *= 2);

			if (!nb) {
				free(buf);
				return 1;
			}
			buf = nb;
		}
	}
	(void)LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return run_file(stdin);
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");

		if (!f || run_file(f) != 0) {
			perror(argv[i]);
			return 1;
		}
		fclose(f);
	}
	return 0;
}
#endif
