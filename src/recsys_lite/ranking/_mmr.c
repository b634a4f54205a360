/* Maximal marginal relevance (ranking/diversity.py) in one call: with numpy, each of the k
 * picks costs a few small array operations, and their overhead, not the arithmetic, was most
 * of diversifying a page. Only the CPython C API and the buffer protocol are used. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static int
buffer_of(PyObject *object, Py_buffer *view, char code, Py_ssize_t itemsize, int ndim,
          int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) < 0) {
        return -1;
    }
    const char *format = view->format ? view->format : "B";
    char found = format[strlen(format) - 1];
    int integer = code == 'q' && (found == 'q' || found == 'l');
    if (view->ndim != ndim || view->itemsize != itemsize || !(found == code || integer)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %d-d array of '%c'", name,
                     ndim, code);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(mmr_doc,
"mmr(scores, vectors, lam, out)\n\n"
"Writes into out (int64, k = len(out) <= n) the positions of the k picks, in order: each\n"
"the candidate maximising lam * relevance - (1 - lam) * (largest cosine to the items picked\n"
"so far), ties to the earlier position; relevance is scores (float32 or float64, (n,))\n"
"rescaled to [0, 1] as diversity._rescaled does; vectors: float32 (n, f) unit vectors.");

static PyObject *
mmr(PyObject *self, PyObject *args)
{
    PyObject *scores_object, *vectors_object, *out_object;
    double lam;
    if (!PyArg_ParseTuple(args, "OOdO", &scores_object, &vectors_object, &lam, &out_object)) {
        return NULL;
    }
    Py_buffer relevance = {0}, vectors = {0}, out = {0};
    PyObject *result = NULL;
    double *work = NULL;
    if (PyObject_GetBuffer(scores_object, &relevance, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return NULL;
    }
    const char *format = relevance.format ? relevance.format : "B";
    char code = format[strlen(format) - 1];
    if (relevance.ndim != 1 || !((code == 'f' && relevance.itemsize == 4) ||
                                 (code == 'd' && relevance.itemsize == 8))) {
        PyErr_SetString(PyExc_TypeError, "scores: expected a C-contiguous 1-d float array");
        PyBuffer_Release(&relevance);
        return NULL;
    }
    if (buffer_of(vectors_object, &vectors, 'f', 4, 2, 0, "vectors") < 0) {
        PyBuffer_Release(&relevance);
        return NULL;
    }
    if (buffer_of(out_object, &out, 'q', 8, 1, 1, "out") < 0) {
        PyBuffer_Release(&relevance);
        PyBuffer_Release(&vectors);
        return NULL;
    }
    Py_ssize_t n = relevance.shape[0], f = vectors.shape[1], k = out.shape[0];
    if (vectors.shape[0] != n || k > n) {
        PyErr_SetString(PyExc_ValueError, "mmr: shapes do not match");
        goto done;
    }
    work = PyMem_Malloc((n ? 2 * n : 1) * sizeof(double));
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *value = work, *closest = work + n;
    const float *unit = vectors.buf;
    long long *picked_out = out.buf;
    double spread = 1.0 - lam;
    /* relevance in [0, 1] within the pool, as diversity._rescaled computes it */
    double low = INFINITY, high = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        value[i] = code == 'f' ? (double)((const float *)relevance.buf)[i]
                               : ((const double *)relevance.buf)[i];
        low = value[i] < low ? value[i] : low;
        high = value[i] > high ? value[i] : high;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double rescaled = high - low <= 0 ? 1.0 : (value[i] - low) / (high - low);
        value[i] = lam * rescaled;
        closest[i] = 0.0;
    }
    for (Py_ssize_t pick = 0; pick < k; pick++) {
        Py_ssize_t best = -1;
        double best_value = -INFINITY;
        for (Py_ssize_t i = 0; i < n; i++) {
            double candidate = value[i] - closest[i];
            if (value[i] != -INFINITY && (best < 0 || candidate > best_value)) {
                best = i;
                best_value = candidate;
            }
        }
        picked_out[pick] = best;
        value[best] = -INFINITY;
        const float *chosen = unit + best * f;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (value[i] == -INFINITY) {
                continue;
            }
            const float *other = unit + i * f;
            float sums[8] = {0.0f};
            Py_ssize_t j = 0;
            for (; j + 8 <= f; j += 8) {
                for (int lane = 0; lane < 8; lane++) {
                    sums[lane] += chosen[j + lane] * other[j + lane];
                }
            }
            for (; j < f; j++) {
                sums[0] += chosen[j] * other[j];
            }
            float cosine = ((sums[0] + sums[1]) + (sums[2] + sums[3])) +
                           ((sums[4] + sums[5]) + (sums[6] + sums[7]));
            double weighted = spread * (double)cosine;
            if (weighted > closest[i]) {
                closest[i] = weighted;
            }
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(work);
    PyBuffer_Release(&relevance);
    PyBuffer_Release(&vectors);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"mmr", mmr, METH_VARARGS, mmr_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mmr", "Maximal marginal relevance (see ranking/diversity.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__mmr(void)
{
    return PyModule_Create(&module);
}
