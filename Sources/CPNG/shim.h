// libpng. Encoding goes through the simplified API (png_image), which needs no setjmp from Swift.
// Decoding uses the full API, to read every colour type the way Pillow does (the simplified API
// applies gamma, composites alpha and rounds 16-bit samples); its errors longjmp, so that routine
// lives here as a `static inline` function with its own error handler that returns the message
// instead of aborting.
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

/// What `leffa_png_read` returns.
enum {
    /// The picture as Pillow's `Image.open(f).convert("RGB")` / `("L")` sees it (see below).
    LEFFA_PNG_PICTURE = 0,
    /// The stored values of a palette or grayscale PNG: palette indices, not colours.
    LEFFA_PNG_LABELS = 1,
};

/// Decodes a PNG held in memory into 8-bit samples, one or three per pixel.
///
/// LEFFA_PNG_PICTURE: the file's own channels, *channels = 1 for gray and gray + alpha, 3 for RGB,
/// RGBA and palette files (palette entries become their colours). Decoded as Pillow does, which is
/// what the published training code saw: no gamma or colour management (gAMA, cHRM, sRGB and iCCP
/// are ignored), alpha and tRNS are dropped, not composited (convert("RGB") drops them), 1/2/4-bit
/// gray is scaled to 0-255 (x255, x85, x17), 16-bit samples keep their high byte (as Pillow does for
/// every 16-bit type but plain gray, which it clips to 255 instead), Adam7 is de-interlaced.
/// LEFFA_PNG_LABELS: *channels = 1; palette indices or gray values (16-bit: high byte), alpha
/// dropped; RGB files are refused, a label map being one number per pixel.
///
/// header_only: fills the size and channels without decoding (*out stays NULL).
/// Returns 0 with *out malloc'd (height*width*channels bytes, the caller frees it), or 1 with a
/// message in errbuf (256 bytes; nothing to free).
static inline int leffa_png_read(const unsigned char *data, size_t size, int mode, int header_only, unsigned char **out,
                                 int *height, int *width, int *channels, char *errbuf) {
    leffa_png_source src;
    memset(&src, 0, sizeof(src));
    src.data = data; src.size = size;
    *out = NULL; *height = 0; *width = 0; *channels = 0;
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
    if (mode == LEFFA_PNG_LABELS) {
        if (color == PNG_COLOR_TYPE_RGB || color == PNG_COLOR_TYPE_RGB_ALPHA)
            png_error(png, "label map is an RGB image; expected palette or grayscale (one label per pixel)");
        if (depth < 8) png_set_packing(png);
    } else if (color == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
    } else if (depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    // Also cancels the tRNS expansion png_set_palette_to_rgb asks for (libpng drops tRNS then).
    png_set_strip_alpha(png);
    if (depth == 16) png_set_strip_16(png);  // the high byte, as Pillow's ";16B" unpackers
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    *height = (int)h; *width = (int)w; *channels = c;
    if ((c != 1 && c != 3) || png_get_bit_depth(png, info) != 8 || png_get_rowbytes(png, info) != (size_t)w * c)
        png_error(png, "unexpected row layout after conversion to 8-bit samples");
    if (header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return 0;
    }
    size_t stride = (size_t)w * c;
    pixels = (unsigned char *)malloc(stride * h + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (h + 1));
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = pixels;
    return 0;
}
