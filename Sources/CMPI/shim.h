// OpenMPI: handles that are macros in mpi.h (and so invisible to Swift) as inline functions.
#pragma once
#include <mpi.h>

static inline MPI_Comm leffa_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype leffa_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype leffa_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype leffa_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype leffa_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op leffa_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op leffa_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op leffa_mpi_min(void) { return MPI_MIN; }
static inline MPI_Request leffa_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *leffa_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int leffa_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int leffa_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int leffa_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int leffa_mpi_success(void) { return MPI_SUCCESS; }

// Used by LeffaDistributed (communicators, in-place collectives, error strings).
static inline MPI_Comm leffa_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Info leffa_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int leffa_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline void *leffa_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Datatype leffa_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype leffa_mpi_int(void) { return MPI_INT; }
static inline MPI_Errhandler leffa_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int leffa_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int leffa_mpi_thread_single(void) { return MPI_THREAD_SINGLE; }

// Used by SharedGradients (MPI-3 shared-memory windows).
static inline int leffa_mpi_mode_nocheck(void) { return MPI_MODE_NOCHECK; }
static inline MPI_Win leffa_mpi_win_null(void) { return MPI_WIN_NULL; }
