/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common/: the bottom layer every module builds on. It owns the error
 * convention, logging, cleanup helpers, digests, confined path helpers, JSON
 * and TOML reading, and the process's LMDB environment with group commit.
 * It depends on nothing else in Strata.
 */
#pragma once

#include "macro.h"
#include "error.h"
#include "log.h"
#include "digest.h"
#include "path.h"
#include "json.h"
#include "toml.h"
#include "meta.h"
#include "filter.h"
