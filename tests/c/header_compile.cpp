// SPDX-License-Identifier: MIT OR Apache-2.0
// blkio.h used from C++11: the same checks as header_compile.c (see there).
#include "header_compile.c"
