// Attention's outer product with AVX-512: up to 12 rows × 32 columns of C in 24 ZMM registers, per
// step 12 broadcasts of A and two vector loads of B for 24 fused multiply-adds (the AVX2 kernel
// holds 6 × 16 in twelve YMM). Only these functions are built for AVX-512 (the target attribute),
// so nothing else in the program can run an AVX-512 instruction on a CPU without it.
// The contraction runs in index order with one FMA per term, as in the Swift kernel, so a C
// element's bits are the same on either path.
#include "avx512_kernels.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define WIDE __attribute__((target("avx512f,fma"), always_inline)) static inline

/// C[r][panel p's 16 columns] for r < NR and p < NP (1 or 2): B's panel p starts at b + p·bps,
/// C's at c + p·cps. NR and NP are constants after inlining, so the loops unroll into NR·NP
/// registers; two panels share each broadcast of A (12 × 32 runs ~18 % faster than 12 × 16).
WIDE void panels(const int NR, const int NP, long len, const float *a, long ars, long axs,
                 const float *b, long bxs, long bps, float *c, long crs, long cps, int accumulate) {
    __m512 acc[12][2];
    for (int r = 0; r < NR; r++)
        for (int p = 0; p < NP; p++)
            acc[r][p] = accumulate ? _mm512_loadu_ps(c + r * crs + p * cps) : _mm512_setzero_ps();
    for (long x = 0; x < len; x++) {
        const float *bx = b + x * bxs, *ax = a + x * axs;
        __m512 b0 = _mm512_loadu_ps(bx), b1 = NP > 1 ? _mm512_loadu_ps(bx + bps) : b0;
        for (int r = 0; r < NR; r++) {
            __m512 s = _mm512_set1_ps(ax[r * ars]);
            acc[r][0] = _mm512_fmadd_ps(s, b0, acc[r][0]);
            if (NP > 1) acc[r][1] = _mm512_fmadd_ps(s, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int p = 0; p < NP; p++) _mm512_storeu_ps(c + r * crs + p * cps, acc[r][p]);
}

/// 8 columns (the last of a row whose width is 8 mod 16), in YMM registers.
WIDE void columns8(const int NR, long len, const float *a, long ars, long axs,
                   const float *b, long bxs, float *c, long crs, int accumulate) {
    __m256 acc[12];
    for (int r = 0; r < NR; r++) acc[r] = accumulate ? _mm256_loadu_ps(c + r * crs) : _mm256_setzero_ps();
    for (long x = 0; x < len; x++) {
        __m256 bv = _mm256_loadu_ps(b + x * bxs);
        const float *ax = a + x * axs;
        for (int r = 0; r < NR; r++) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(ax[r * ars]), bv, acc[r]);
    }
    for (int r = 0; r < NR; r++) _mm256_storeu_ps(c + r * crs, acc[r]);
}

#define CASES(F) \
    switch (nr) { \
    case 12: F(12); break; case 11: F(11); break; case 10: F(10); break; case 9: F(9); break; \
    case 8: F(8); break; case 7: F(7); break; case 6: F(6); break; case 5: F(5); break; \
    case 4: F(4); break; case 3: F(3); break; case 2: F(2); break; default: F(1); break; }

/// Rows nr (1…12) of C, all columns: panels two at a time, then one, then 8 columns.
WIDE void rowBlock(int nr, long width, long len, const float *a, long ars, long axs,
                   const float *b, long bxs, long bps, float *c, long crs, long cps, int accumulate) {
    long count = width / 16, p = 0;
    for (; p + 2 <= count; p += 2) {
#define PAIR(N) panels(N, 2, len, a, ars, axs, b + p * bps, bxs, bps, c + p * cps, crs, cps, accumulate)
        CASES(PAIR)
    }
    if (p < count) {
#define ONE(N) panels(N, 1, len, a, ars, axs, b + p * bps, bxs, bps, c + p * cps, crs, cps, accumulate)
        CASES(ONE)
    }
    if (width % 16) {
#define LAST8(N) columns8(N, len, a, ars, axs, b + count * bps, bxs, c + count * cps, crs, accumulate)
        CASES(LAST8)
    }
}

/// Rows split into the fewest blocks of at most 12, as even as possible (40 rows: 4 × 10), so no
/// block computes rows it does not store.
__attribute__((target("avx512f,fma")))
void leffa_outer_product_avx512(
    long rows, long width, long len, const float *a, long ars, long axs,
    const float *b, long bxs, long bps, float *c, long crs, long cps, int accumulate) {
    long blocks = (rows + 11) / 12, r = 0;
    for (long k = 0; k < blocks; k++) {
        int nr = (int)(rows / blocks + (k < rows % blocks ? 1 : 0));
        rowBlock(nr, width, len, a + r * ars, ars, axs, b, bxs, bps, c + r * crs, crs, cps, accumulate);
        r += nr;
    }
}
#endif
