/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 encoding of one code point, shared by the TOML and filter parsers. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Encode cp into out (1 to 4 bytes) and return the length. Surrogates
 * (U+D800..U+DFFF) and values above U+10FFFF become U+FFFD, as Go's
 * utf8.EncodeRune does; callers that must reject them check first. */
size_t utf8_encode(uint32_t cp, char out[static 4]);
