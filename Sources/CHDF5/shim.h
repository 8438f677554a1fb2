// HDF5: type and flag macros (which expand to global ids, or need H5open first) as inline functions.
#pragma once
#include <hdf5.h>

static inline hid_t leffa_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t leffa_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t leffa_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t leffa_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t leffa_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t leffa_h5t_c_s1(void) { return H5T_C_S1; }
/// Explicit little-endian file types, so a file's bytes are the same whichever machine wrote it.
static inline hid_t leffa_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t leffa_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
static inline hid_t leffa_h5t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t leffa_h5t_std_u64le(void) { return H5T_STD_U64LE; }
static inline hid_t leffa_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t leffa_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t leffa_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t leffa_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t leffa_h5s_all(void) { return H5S_ALL; }
static inline hid_t leffa_h5e_default(void) { return H5E_DEFAULT; }
static inline unsigned leffa_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned leffa_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned leffa_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned leffa_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline size_t leffa_h5t_variable(void) { return H5T_VARIABLE; }
/// Silence HDF5's own stderr error stack: callers turn failures into errors that name the file and key.
static inline void leffa_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/// Calls `each(name, ctx)` for every link of group `g` in name order, in one pass (looking links
/// up by index instead rebuilds the sorted table on every call: quadratic for big groups).
/// Here because H5Literate and H5L_info_t are versioned macros from HDF5 1.12 on.
typedef int (*leffa_h5_link_name_fn)(const char *name, void *ctx);
struct leffa_h5_link_iter { leffa_h5_link_name_fn each; void *ctx; };
static inline herr_t leffa_h5_link_iter_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g; (void)info;
    struct leffa_h5_link_iter *it = (struct leffa_h5_link_iter *)data;
    return it->each(name, it->ctx);
}
static inline herr_t leffa_h5_link_names(hid_t g, leffa_h5_link_name_fn each, void *ctx) {
    struct leffa_h5_link_iter it = { each, ctx };
    return H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, leffa_h5_link_iter_cb, &it);
}
