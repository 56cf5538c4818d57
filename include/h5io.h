/* h5io.h — small HDF5 helpers every file-writing module shares: file access
 * (MPI-IO when MPI runs), collective transfer, scalar attributes, strings.
 *
 * Conventions: attributes and dataset creation are collective metadata
 * operations (every rank calls them with the same values); h5io_write_*
 * write rank 0's data collectively (other ranks select nothing).
 */
#ifndef YOTO_H5IO_H
#define YOTO_H5IO_H

#include <hdf5.h>
#include <stdbool.h>

/* Turns off HDF5's automatic error-stack printing: yoto reports its own
 * messages (file, dataset, what was expected). YOTO_HDF5_DEBUG=1 keeps it. */
void h5io_quiet(void);
/* Silences HDF5's error printing for a stretch of code, then restores what
 * was there (for probing files whose failures yoto reports itself). */
typedef struct {
    H5E_auto2_t fn;
    void *data;
} h5io_errors;
void h5io_errors_off(h5io_errors *saved);
void h5io_errors_restore(const h5io_errors *saved);

/* File access: MPI-IO over every rank (dist_h5_fapl_mpio) when parallel and
 * MPI runs, else the default (sec2) driver; every file yoto opens through
 * MPI-IO gets its property list here. Caller closes. H5I_INVALID_HID (< 0)
 * when HDF5 refuses. */
hid_t h5io_fapl(bool parallel);
/* Collective data transfer when MPI runs (else default). Caller closes. */
hid_t h5io_dxpl(void);

/* Open MPI 4.1's OMPIO writes "<path>.locktest.<rank>" into a 256-byte
 * buffer when it opens a file (sharedfp/lockedfile), and so aborts every
 * rank on a longer MPI-IO path. Paths opened through MPI-IO stay within
 * this (room for 5-digit ranks). */
#define H5IO_MPIIO_PATH_MAX 240
/* YT_OK, or YT_ERR_USAGE naming `what` and path when MPI runs and the path
 * is too long for an MPI-IO open. Same answer on every rank for the same path. */
int h5io_check_mpiio_path(const char *path, const char *what);

int h5io_attr_set_long(hid_t obj, const char *name, long v);
int h5io_attr_set_string(hid_t obj, const char *name, const char *v);
/* Readers return YT_OK or YT_ERR_USAGE (missing or wrong type); no message. */
int h5io_attr_get_long(hid_t obj, const char *name, long *v);
/* Longest fixed-length string the readers below allocate for (a damaged
 * file's type may claim any size); longer ones read as NULL. */
#define H5IO_STRING_MAX ((size_t)64 << 20)
/* malloc'd string (fixed or variable length), or NULL */
char *h5io_attr_get_string(hid_t obj, const char *name);

/* A scalar fixed-length UTF-8 string dataset (parallel HDF5 cannot write
 * variable-length data; h5py reads it as bytes). */
int h5io_write_string(hid_t loc, const char *name, const char *text);
char *h5io_read_string(hid_t loc, const char *name); /* malloc'd, or NULL */
/* true when path (a/b/c) exists below loc, every link on the way included */
bool h5io_exists(hid_t loc, const char *path);

/* "uint8", "float64", "string", "compound", ... for messages */
void h5io_type_text(hid_t type, char *buf, size_t size);
/* "[60000, 28, 28, 1]" */
void h5io_dims_text(int ndim, const hsize_t *dims, char *buf, size_t size);

#endif
