// Attention's register-tiled outer product for CPUs with AVX-512 (see outer_product.c).
#pragma once

/// C (rows × width) (+)= A · B, as `outerProduct` in LeffaTensor's AttentionKernels.swift:
/// C[r][w] = (accumulate ? C[r][w] : 0) + Σ_{x < len} A[r·ars + x·axs] · B[x·bxs + w], each
/// term one fused multiply-add in x order, so the bits equal the AVX2 kernel's. `width` is a
/// multiple of 8, in panels of 16 columns: panel p of B starts at b + p·bps and of C at c + p·cps
/// (16 and 16 for plain matrices), and a last 8 columns at panel `width / 16`.
/// Call only when `leffa_cpu_vector_level()` is 2: the function is built for AVX-512.
void leffa_outer_product_avx512(
    long rows, long width, long len, const float *a, long ars, long axs,
    const float *b, long bxs, long bps, float *c, long crs, long cps, int accumulate);
