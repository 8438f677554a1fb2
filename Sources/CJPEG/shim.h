// libjpeg-turbo: jpeglib.h needs stdio first; errors longjmp, so decoding goes through a C-side
// error manager that records the message instead of exiting the process.
#pragma once
#include <stdio.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <jpeglib.h>

static inline int leffa_jpeg_lib_version(void) { return JPEG_LIB_VERSION; }
