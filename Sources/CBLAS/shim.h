// OpenBLAS: sgemm for matmul/conv, thread control so BLAS and our pool agree on core counts,
// and what the CPU offers, so the kernels OpenBLAS picked can be checked against it.
#pragma once
#include <cblas.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static inline void leffa_blas_set_threads(int n) { openblas_set_num_threads(n); }
static inline int leffa_blas_get_threads(void) { return openblas_get_num_threads(); }
static inline const char *leffa_blas_config(void) { return openblas_get_config(); }
static inline const char *leffa_blas_core(void) { return openblas_get_corename(); }

/// 2: AVX-512 (F, CD, BW, DQ, VL) usable; 1: AVX2 + FMA usable; 0: neither, or not x86-64.
/// "Usable" means the CPU has it and the OS saves its registers (XCR0), as OpenBLAS checks.
static inline int leffa_cpu_vector_level(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6) != 0x6) return 0;                        // SSE and AVX state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((b >> 5) & 1)) return 0;                           // AVX2
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 28) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
    if (avx512 && (xlo & 0xe0) == 0xe0) return 2;            // opmask and ZMM state
    return 1;
#else
    return 0;
#endif
}
