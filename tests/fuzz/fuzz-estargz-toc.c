/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for content/estargz.c: the footer parser, the TOC member
 * unwrap (gunzip + tar) and the TOC compiler, all fed from the registry in
 * real life. Besides "no crash, no leak, no UB" it checks the invariants the
 * FUSE layer relies on: a failure always carries a message; a compiled TOC
 * numbers parents before children, has in-range child/chunk/xattr ranges,
 * chunks that tile each file, and names without '/' that are not "." or "..".
 *
 * Not built by meson; see tests/fuzz/README.md for how to run it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The remote half of estargz.c is not fuzzed here; satisfy the linker. */
int64_t content_registry_read_range(struct content_registry_client *c,
                                    const struct content_ref *ref,
                                    const struct strata_digest *digest, uint64_t offset, size_t len,
                                    void *buf, struct strata_error **ret_err)
{
	return -ENOSYS;
}

static void check(const struct content_estargz_toc *toc)
{
	for (uint32_t i = 0; i < toc->n_entries; i++) {
		const struct content_estargz_entry *e = &toc->entries[i];
		const char *n = content_estargz_str(toc, e->name);

		if (i > 0 && e->parent >= i)
			abort();
		if (strchr(n, '/') || (i > 0 && (!n[0] || !strcmp(n, ".") || !strcmp(n, ".."))))
			abort();
		if (e->n_children && (uint64_t)e->first_child + e->n_children > toc->n_entries)
			abort();
		if ((uint64_t)e->first_xattr + e->n_xattrs > toc->n_xattrs)
			abort();
		if ((uint64_t)e->first_chunk + e->n_chunks > toc->n_chunks)
			abort();
		if (e->flags & CONTENT_ESTARGZ_HARDLINK) {
			if (e->link >= toc->n_entries || !S_ISREG(toc->entries[e->link].mode))
				abort();
		}
		uint64_t pos = 0;
		for (uint32_t k = 0; k < e->n_chunks; k++) {
			const struct content_estargz_chunk *c = &toc->chunks[e->first_chunk + k];
			if (c->file_offset != pos || c->end <= c->offset ||
			    c->end > toc->toc_offset)
				abort();
			pos += c->size;
		}
		if (S_ISREG(e->mode) && !(e->flags & CONTENT_ESTARGZ_HARDLINK) && pos != e->size)
			abort();
		_cleanup_free_ char *p = content_estargz_path(toc, i);
		if (!p)
			abort();
		(void)content_estargz_lookup(toc, e->parent, n, strlen(n));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct content_estargz_toc *toc = NULL;
	struct strata_error *err = NULL;
	uint64_t off;
	size_t fs, jl;
	char *json = NULL;
	int r;

	(void)content_estargz_parse_footer(data, size, &off, &fs);
	r = content_estargz_toc_unwrap(data, size, &json, &jl, &err);
	if (r < 0 && !err)
		abort();
	strata_error_free(err);
	err = NULL;
	free(json);

	r = content_estargz_toc_parse(data, size, NULL, 1u << 30, &toc, &err);
	if (r < 0) {
		if (toc || (r != -ENOMEM && !err))
			abort();
	} else {
		check(toc);
	}
	content_estargz_toc_free(toc);
	strata_error_free(err);
	return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = fopen(argv[i], "rb");
		if (!f)
			return 1;
		buf = malloc(64 << 20);
		len = fread(buf, 1, 64 << 20, f);
		fclose(f);
		LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
		free(buf);
	}
	return 0;
}
#endif
