/* Maximal marginal relevance (ranking/diversity.py) in one call: with numpy, each of the k
 * picks costs a few small array operations, and their overhead, not the arithmetic, was most
 * of diversifying a page. Only the CPython C API and the buffer protocol are used. */
#include "../_arrays.h"

#include <math.h>

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
    if (array_buffer(scores_object, &relevance, ARRAY_F32 | ARRAY_F64, 1, 0, "scores") < 0) {
        return NULL;
    }
    if (array_buffer(vectors_object, &vectors, ARRAY_F32, 2, 0, "vectors") < 0) {
        PyBuffer_Release(&relevance);
        return NULL;
    }
    if (array_buffer(out_object, &out, ARRAY_I64, 1, 1, "out") < 0) {
        PyBuffer_Release(&relevance);
        PyBuffer_Release(&vectors);
        return NULL;
    }
    Py_ssize_t n = relevance.shape[0], f = vectors.shape[1], k = out.shape[0];
    if (vectors.shape[0] != n || k > n) {
        PyErr_SetString(PyExc_ValueError, "mmr: shapes do not match");
        goto done;
    }
    work = PyMem_Malloc((n ? 2 * n : 1) * sizeof(double) + (n ? n : 1));
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *value = work, *closest = work + n;
    /* picked apart from the values: a value may be anything, -inf and NaN included */
    unsigned char *taken = (unsigned char *)(closest + n);
    memset(taken, 0, n);
    const float *unit = vectors.buf;
    long long *picked_out = out.buf;
    double spread = 1.0 - lam;
    /* relevance in [0, 1] within the pool, as diversity._rescaled computes it */
    double low = INFINITY, high = -INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        value[i] = array_real(&relevance, i);
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
            if (!taken[i] && (best < 0 || candidate > best_value)) {
                best = i;
                best_value = candidate;
            }
        }
        /* k <= n: some candidate is always left */
        picked_out[pick] = best;
        taken[best] = 1;
        const float *chosen = unit + best * f;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (taken[i]) {
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
