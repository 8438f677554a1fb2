// OpenBLAS: sgemm for matmul/conv, thread control so BLAS and our pool agree on core counts.
#pragma once
#include <cblas.h>

static inline void leffa_blas_set_threads(int n) { openblas_set_num_threads(n); }
static inline int leffa_blas_get_threads(void) { return openblas_get_num_threads(); }
static inline const char *leffa_blas_config(void) { return openblas_get_config(); }
