// libpng. Pictures go through the simplified API (png_image), which needs no setjmp from Swift.
// Label maps (palette indices or raw gray values, e.g. human parsing maps) need the full API,
// whose errors longjmp, so that one routine lives here as a `static inline` function with its own
// error handler that returns the message instead of aborting.
#pragma once
#include <png.h>
#include <stdlib.h>
#include <string.h>

static inline png_uint_32 leffa_png_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline png_uint_32 leffa_png_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline png_uint_32 leffa_png_format_rgba(void) { return PNG_FORMAT_RGBA; }
static inline png_uint_32 leffa_png_format_rgb_colormap(void) { return PNG_FORMAT_RGB_COLORMAP; }
static inline png_uint_32 leffa_png_format_flag_color(void) { return PNG_FORMAT_FLAG_COLOR; }
static inline png_uint_32 leffa_png_format_flag_alpha(void) { return PNG_FORMAT_FLAG_ALPHA; }
static inline png_uint_32 leffa_png_format_flag_colormap(void) { return PNG_FORMAT_FLAG_COLORMAP; }
static inline png_uint_32 leffa_png_image_version(void) { return PNG_IMAGE_VERSION; }
static inline int leffa_png_image_failed(const png_image *img) { return PNG_IMAGE_FAILED(*img); }
static inline const char *leffa_png_version(void) { return PNG_LIBPNG_VER_STRING; }

typedef struct {
    const unsigned char *data;
    size_t size, pos;
    char message[256];
} leffa_png_source;

static void leffa_png_read_memory(png_structp png, png_bytep out, size_t n) {
    leffa_png_source *src = (leffa_png_source *)png_get_io_ptr(png);
    if (src->pos + n > src->size) png_error(png, "unexpected end of PNG data (truncated file)");
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

static void leffa_png_error(png_structp png, png_const_charp msg) {
    leffa_png_source *src = (leffa_png_source *)png_get_error_ptr(png);
    strncpy(src->message, msg, sizeof(src->message) - 1);
    src->message[sizeof(src->message) - 1] = 0;
    png_longjmp(png, 1);
}

static void leffa_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

/// Reads the stored sample values of a palette or grayscale PNG, one byte per pixel: palette
/// indices (not colours) for palette images, the gray value otherwise (16-bit gray keeps the high
/// byte, alpha is dropped). RGB images are refused: a label map is one number per pixel.
/// Returns 0 with *out malloc'd (height*width bytes, the caller frees it) and *is_palette set,
/// or 1 with a message in errbuf (256 bytes).
static inline int leffa_png_read_labels(const unsigned char *data, size_t size, unsigned char **out,
                                        int *height, int *width, int *is_palette, char *errbuf) {
    leffa_png_source src;
    memset(&src, 0, sizeof(src));
    src.data = data; src.size = size;
    *out = NULL; *height = 0; *width = 0; *is_palette = 0;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) { strcpy(errbuf, "not a PNG file (bad signature)"); return 1; }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, leffa_png_error, leffa_png_warning);
    if (!png) { strcpy(errbuf, "cannot create PNG reader"); return 1; }
    png_infop info = png_create_info_struct(png);
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); strcpy(errbuf, "cannot create PNG info"); return 1; }
    if (setjmp(png_jmpbuf(png))) {
        strncpy(errbuf, src.message, 255); errbuf[255] = 0;
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels); free(rows);
        return 1;
    }
    png_set_read_fn(png, &src, leffa_png_read_memory);
    png_read_info(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (color == PNG_COLOR_TYPE_RGB || color == PNG_COLOR_TYPE_RGB_ALPHA)
        png_error(png, "label map is an RGB image; expected palette or grayscale (one label per pixel)");
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (depth == 16) png_set_strip_16(png);
    if (depth < 8) png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != w) png_error(png, "unexpected row size for a label map");
    pixels = (unsigned char *)malloc((size_t)w * h + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (h + 1));
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = pixels; *height = (int)h; *width = (int)w; *is_palette = (color == PNG_COLOR_TYPE_PALETTE);
    return 0;
}
