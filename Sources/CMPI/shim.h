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
