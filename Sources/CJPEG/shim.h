// libjpeg-turbo: jpeglib.h needs stdio first; errors longjmp, so decoding and encoding go through
// a C-side error manager that records the message and returns it instead of exiting the process.
// setjmp/longjmp cannot be used from Swift, which is why whole decode/encode routines live here as
// `static inline` functions. Not an image type: callers get malloc'd interleaved 8-bit samples.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

static inline int leffa_jpeg_lib_version(void) { return JPEG_LIB_VERSION; }

/// Error manager: `error_exit` formats the message and longjmps back into the routine that
/// installed it; warnings (corrupt data that libjpeg repairs) are counted, the first one kept,
/// and a premature end of data (a truncated file) is flagged so the caller can refuse it.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    char warning[JMSG_LENGTH_MAX];
    int warnings;
    int truncated;
} leffa_jpeg_error_mgr;

static void leffa_jpeg_error_exit(j_common_ptr cinfo) {
    leffa_jpeg_error_mgr *e = (leffa_jpeg_error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void leffa_jpeg_emit_message(j_common_ptr cinfo, int level) {
    leffa_jpeg_error_mgr *e = (leffa_jpeg_error_mgr *)cinfo->err;
    if (level >= 0) return;  // trace messages
    if (e->warnings == 0) (*cinfo->err->format_message)(cinfo, e->warning);
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    e->warnings++;
    cinfo->err->num_warnings++;
}

static void leffa_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static inline void leffa_jpeg_install(leffa_jpeg_error_mgr *e, struct jpeg_error_mgr **slot) {
    memset(e, 0, sizeof(*e));
    *slot = jpeg_std_error(&e->pub);
    e->pub.error_exit = leffa_jpeg_error_exit;
    e->pub.emit_message = leffa_jpeg_emit_message;
    e->pub.output_message = leffa_jpeg_output_message;
}

static inline void leffa_jpeg_copy(char *dst, size_t cap, const char *src) {
    if (cap == 0) return;
    strncpy(dst, src, cap - 1);
    dst[cap - 1] = 0;
}

/// Pillow's RGB for `n` pixels of libjpeg's JCS_CMYK output (4 bytes a pixel in, 3 out).
/// Pillow reads every 4-component JPEG as Adobe-inverted CMYK (rawmode "CMYK;I": ink = 255 - stored),
/// whether or not the file has an Adobe APP14 marker, then convert("RGB") computes, per channel,
/// nk = 255 - black, out = clip(nk - MULDIV255(ink, nk)) with MULDIV255(a, b) = (t = a*b + 128,
/// ((t >> 8) + t) >> 8) (libImaging/Convert.c, cmyk2rgb). Written out here so it is bit for bit.
static inline void leffa_jpeg_cmyk_to_rgb(const unsigned char *cmyk, unsigned char *rgb, size_t n) {
    for (size_t i = 0; i < n; i++, cmyk += 4, rgb += 3) {
        int nk = cmyk[3];  // 255 - black, black being 255 - stored
        for (int j = 0; j < 3; j++) {
            int t = (255 - cmyk[j]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[j] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

/// Decodes a JPEG held in memory into the file's own channels, the way Pillow's
/// Image.open(f).convert("RGB") does: *channels = 1 for 1-component (grayscale) files, 3 for
/// 3-component ones (YCbCr or RGB, converted by libjpeg) and for 4-component ones (CMYK, or YCCK
/// which libjpeg turns into CMYK), which go through leffa_jpeg_cmyk_to_rgb. Other component counts
/// are refused, as Pillow refuses them.
/// header_only: fill the size and channels without decoding pixels (*out stays NULL).
/// Returns 0 on success with *out malloc'd (height*width*channels bytes, the caller frees it);
/// returns 1 with a message in errbuf otherwise (nothing to free). A truncated file is an error;
/// other repaired corruption is reported through *warnings and warnbuf.
static inline int leffa_jpeg_decode(const unsigned char *data, size_t size, int header_only,
                                    unsigned char **out, int *height, int *width, int *out_channels,
                                    int *warnings, char *warnbuf, char *errbuf, size_t bufcap) {
    struct jpeg_decompress_struct cinfo;
    leffa_jpeg_error_mgr err;
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile cmyk_row = NULL;
    *out = NULL; *height = 0; *width = 0; *out_channels = 0; *warnings = 0;
    if (warnbuf && bufcap) warnbuf[0] = 0;
    leffa_jpeg_install(&err, &cinfo.err);
    if (setjmp(err.jump)) {
        leffa_jpeg_copy(errbuf, bufcap, err.message);
        jpeg_destroy_decompress(&cinfo);
        free(pixels); free(cmyk_row);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int components = cinfo.num_components;
    if (components != 1 && components != 3 && components != 4) {
        snprintf(err.message, sizeof(err.message), "%d colour components are unsupported (expected 1 gray, 3 colour or 4 CMYK)", components);
        leffa_jpeg_copy(errbuf, bufcap, err.message);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    int want = components == 1 ? 1 : 3;
    cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
    *height = (int)cinfo.image_height; *width = (int)cinfo.image_width; *out_channels = want;
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_components != (components == 4 ? 4 : want)) {
        leffa_jpeg_copy(errbuf, bufcap, "unexpected number of output components");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    size_t stride = (size_t)cinfo.output_width * (size_t)want;
    pixels = (unsigned char *)malloc(stride * cinfo.output_height + 1);
    if (components == 4) cmyk_row = (unsigned char *)malloc((size_t)cinfo.output_width * 4 + 1);
    if (!pixels || (components == 4 && !cmyk_row)) {
        leffa_jpeg_copy(errbuf, bufcap, "out of memory");
        jpeg_destroy_decompress(&cinfo);
        free(pixels); free(cmyk_row);
        return 1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *dst = pixels + stride * cinfo.output_scanline;
        JSAMPROW row = components == 4 ? cmyk_row : dst;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (components == 4) leffa_jpeg_cmyk_to_rgb(cmyk_row, dst, cinfo.output_width);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    *warnings = err.warnings;
    if (warnbuf) leffa_jpeg_copy(warnbuf, bufcap, err.warning);
    if (err.truncated) {
        leffa_jpeg_copy(errbuf, bufcap, "premature end of JPEG data (truncated file)");
        free(pixels);
        return 1;
    }
    *out = pixels;
    return 0;
}

/// Encodes 8-bit interleaved samples as a baseline JPEG at `quality` (1–100): channels 1 (gray),
/// 3 (RGB, stored as YCbCr with libjpeg's default 4:2:0 chroma) or 4 (CMYK samples written as
/// given, stored as CMYK or, with `ycck`, YCCK). `adobe` writes the APP14 marker (libjpeg needs it to
/// tell YCCK from CMYK, so YCCK always gets it). Returns 0 with *out malloc'd (*outsize bytes, the
/// caller frees it), or 1 with a message in errbuf.
static inline int leffa_jpeg_encode_as(const unsigned char *pixels, int height, int width, int channels, int quality,
                                       int ycck, int adobe, unsigned char **out, unsigned long *outsize,
                                       char *errbuf, size_t bufcap) {
    struct jpeg_compress_struct cinfo;
    leffa_jpeg_error_mgr err;
    *out = NULL; *outsize = 0;
    leffa_jpeg_install(&err, &cinfo.err);
    if (setjmp(err.jump)) {
        leffa_jpeg_copy(errbuf, bufcap, err.message);
        jpeg_destroy_compress(&cinfo);
        free(*out); *out = NULL; *outsize = 0;
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, out, outsize);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : channels == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    if (channels == 4) {
        jpeg_set_colorspace(&cinfo, ycck ? JCS_YCCK : JCS_CMYK);
        cinfo.write_Adobe_marker = (ycck || adobe) ? TRUE : FALSE;
    }
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + stride * cinfo.next_scanline);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 0;
}

/// Gray (channels 1) or RGB (channels 3) pictures: leffa_jpeg_encode_as without the CMYK options.
static inline int leffa_jpeg_encode(const unsigned char *pixels, int height, int width, int channels, int quality,
                                    unsigned char **out, unsigned long *outsize, char *errbuf, size_t bufcap) {
    return leffa_jpeg_encode_as(pixels, height, width, channels, quality, 0, 0, out, outsize, errbuf, bufcap);
}
