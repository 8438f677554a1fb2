// HDF5: type and flag macros (which expand to global ids, or need H5open first) as inline functions.
#pragma once
#include <hdf5.h>

static inline hid_t leffa_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t leffa_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t leffa_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t leffa_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t leffa_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t leffa_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t leffa_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t leffa_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t leffa_h5s_all(void) { return H5S_ALL; }
static inline unsigned leffa_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned leffa_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned leffa_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned leffa_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline size_t leffa_h5t_variable(void) { return H5T_VARIABLE; }
/// Silence HDF5's own stderr error stack: callers turn failures into errors that name the file and key.
static inline void leffa_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
