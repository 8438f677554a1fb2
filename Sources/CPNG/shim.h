// libpng through its simplified API (png_image), which needs no setjmp from Swift.
#pragma once
#include <png.h>

static inline png_uint_32 leffa_png_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline png_uint_32 leffa_png_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline png_uint_32 leffa_png_image_version(void) { return PNG_IMAGE_VERSION; }
static inline int leffa_png_image_failed(const png_image *img) { return PNG_IMAGE_FAILED(*img); }
static inline const char *leffa_png_version(void) { return PNG_LIBPNG_VER_STRING; }
