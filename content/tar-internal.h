/* SPDX-License-Identifier: Apache-2.0 */
/* Tar header helpers shared by the eStargz reader and writer (content/). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Parse a tar numeric field of n bytes: octal digits (leading spaces,
 * terminated by NUL or space) or GNU base-256 (high bit set; negative
 * values refused). -EBADMSG for anything else or an overflow. */
int content_tar_number(const uint8_t *p, size_t n, uint64_t *ret);
