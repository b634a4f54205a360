/* numpy arrays as the C extensions read them: through the buffer protocol, checked for
 * C-contiguity, number of dimensions and element type, so the extensions need no numpy
 * headers to build. Included by models/_topk.c, ranking/_mmr.c and ranking/_reasons.c. */
#ifndef RECSYS_LITE_ARRAYS_H
#define RECSYS_LITE_ARRAYS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* element types an argument may have, or-ed together */
#define ARRAY_F32 1
#define ARRAY_F64 2
#define ARRAY_I64 4

static int
array_kind(const Py_buffer *view)
{
    const char *format = view->format ? view->format : "B";
    size_t length = strlen(format);
    /* native byte order only: '>f4' read as floats here would be garbage */
    int native = length == 1 || (length == 2 && (format[0] == '@' || format[0] == '=' ||
                                                  (format[0] == '<' && PY_LITTLE_ENDIAN)));
    if (!native) {
        return 0;
    }
    char code = format[length - 1];
    if (code == 'f' && view->itemsize == 4) {
        return ARRAY_F32;
    }
    if (code == 'd' && view->itemsize == 8) {
        return ARRAY_F64;
    }
    if ((code == 'l' || code == 'q') && view->itemsize == 8) {
        return ARRAY_I64;
    }
    return 0;
}

/* The array's buffer, or -1 with a TypeError naming the argument. */
static int
array_buffer(PyObject *object, Py_buffer *view, int kinds, int ndim, int writable,
             const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) < 0) {
        return -1;
    }
    if (view->ndim != ndim || !(array_kind(view) & kinds)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %d-d array of %s%s%s", name,
                     ndim, kinds & ARRAY_F32 ? "float32 " : "",
                     kinds & ARRAY_F64 ? "float64 " : "", kinds & ARRAY_I64 ? "int64" : "");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* element at of a float32 or float64 buffer, as a double */
static inline double
array_real(const Py_buffer *view, Py_ssize_t at)
{
    return view->itemsize == 4 ? (double)((const float *)view->buf)[at]
                               : ((const double *)view->buf)[at];
}

#endif
