/* The per-request arithmetic and encoding of explanations (ranking/explain.py), in one call
 * each: done with numpy, a dozen small array operations per answer cost several times the
 * arithmetic itself, and the explanations were the largest part of a category page's request.
 *
 * Only the CPython C API and the buffer protocol are used (no numpy headers), so the module
 * builds with nothing but a C compiler. explain.py keeps the numpy version of both functions
 * for installs without one, and the tests check that the two agree.
 */
#include "../_arrays.h"

#include <math.h>
#include <stdlib.h>

static int
rows_in_range(const Py_buffer *indices, Py_ssize_t rows, const char *name)
{
    const long long *at = indices->buf;
    for (Py_ssize_t i = 0; i < indices->shape[0]; i++) {
        if (at[i] < 0 || at[i] >= rows) {
            PyErr_Format(PyExc_IndexError, "%s: index %lld out of range", name, at[i]);
            return -1;
        }
    }
    return 0;
}

/* Eight running sums: one sum is a chain of dependent additions, several times slower at
 * this size than independent chains the processor can overlap (and vectorise). */
static double
dot(const double *a, const double *b, Py_ssize_t f)
{
    double sums[8] = {0.0};
    Py_ssize_t j = 0;
    for (; j + 8 <= f; j += 8) {
        for (int lane = 0; lane < 8; lane++) {
            sums[lane] += a[j + lane] * b[j + lane];
        }
    }
    for (; j < f; j++) {
        sums[0] += a[j] * b[j];
    }
    return ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
}

/* rows[at[i]] of a float32 matrix, widened into consecutive rows of out */
static void
gather(const float *rows, const long long *at, Py_ssize_t count, Py_ssize_t f, double *out)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        const float *row = rows + at[i] * f;
        for (Py_ssize_t j = 0; j < f; j++) {
            out[i * f + j] = row[j];
        }
    }
}

/* Solves s x = r in place (s: n x n, r: n x m, both row-major) by Gaussian elimination with
 * partial pivoting; -1 when s is singular. */
static int
solve_in_place(double *s, double *r, Py_ssize_t n, Py_ssize_t m)
{
    for (Py_ssize_t col = 0; col < n; col++) {
        Py_ssize_t pivot = col;
        for (Py_ssize_t row = col + 1; row < n; row++) {
            if (fabs(s[row * n + col]) > fabs(s[pivot * n + col])) {
                pivot = row;
            }
        }
        if (s[pivot * n + col] == 0.0) {
            return -1;
        }
        if (pivot != col) {
            for (Py_ssize_t j = 0; j < n; j++) {
                double swap = s[col * n + j];
                s[col * n + j] = s[pivot * n + j];
                s[pivot * n + j] = swap;
            }
            for (Py_ssize_t j = 0; j < m; j++) {
                double swap = r[col * m + j];
                r[col * m + j] = r[pivot * m + j];
                r[pivot * m + j] = swap;
            }
        }
        for (Py_ssize_t row = col + 1; row < n; row++) {
            double factor = s[row * n + col] / s[col * n + col];
            if (factor == 0.0) {
                continue;
            }
            for (Py_ssize_t j = col; j < n; j++) {
                s[row * n + j] -= factor * s[col * n + j];
            }
            for (Py_ssize_t j = 0; j < m; j++) {
                r[row * m + j] -= factor * r[col * m + j];
            }
        }
    }
    for (Py_ssize_t row = n - 1; row >= 0; row--) {
        for (Py_ssize_t j = 0; j < m; j++) {
            double value = r[row * m + j];
            for (Py_ssize_t k = row + 1; k < n; k++) {
                value -= s[row * n + k] * r[k * m + j];
            }
            r[row * m + j] = value / s[row * n + row];
        }
    }
    return 0;
}

PyDoc_STRVAR(woodbury_doc,
"woodbury_contributions(projected, factors, items, confidence, targets, out)\n\n"
"ALS's exact contributions by the Woodbury form (see explain.als_contributions): with\n"
"Z = projected[items] (rows of Y B^-1), Y_u = factors[items], Y_t = factors[targets],\n"
"K = Z Y_u', M = Z Y_t' and D = diag(confidence - 1), writes\n"
"out[i, j] = confidence[j] * (M - K (I + D K)^-1 D M)[j, i].");

static PyObject *
woodbury_contributions(PyObject *self, PyObject *args)
{
    PyObject *objects[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &objects[0], &objects[1], &objects[2], &objects[3],
                          &objects[4], &objects[5])) {
        return NULL;
    }
    Py_buffer projected = {0}, factors = {0}, items = {0}, confidence = {0}, targets = {0},
              out = {0};
    Py_buffer *views[6] = {&projected, &factors, &items, &confidence, &targets, &out};
    const int kinds[6] = {ARRAY_F32, ARRAY_F32, ARRAY_I64, ARRAY_F64, ARRAY_I64, ARRAY_F64};
    const int dims[6] = {2, 2, 1, 1, 1, 2};
    const char *names[6] = {"projected", "factors", "items", "confidence", "targets", "out"};
    int held = 0;
    PyObject *result = NULL;
    double *work = NULL;
    for (; held < 6; held++) {
        if (array_buffer(objects[held], views[held], kinds[held], dims[held], held == 5,
                         names[held]) < 0) {
            goto done;
        }
    }
    Py_ssize_t rows = factors.shape[0], f = factors.shape[1];
    Py_ssize_t n = items.shape[0], t = targets.shape[0];
    if (projected.shape[0] != rows || projected.shape[1] != f || confidence.shape[0] != n ||
        out.shape[0] != t || out.shape[1] != n) {
        PyErr_SetString(PyExc_ValueError, "woodbury_contributions: shapes do not match");
        goto done;
    }
    if (rows_in_range(&items, rows, "items") < 0 ||
        rows_in_range(&targets, rows, "targets") < 0) {
        goto done;
    }
    size_t cells = (size_t)(n * n * 2 + n * t * 2 + (2 * n + t) * f);
    work = PyMem_Malloc((cells ? cells : 1) * sizeof(double));
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *k = work, *system = work + n * n, *m = system + n * n, *x = m + n * t;
    double *z_u = x + n * t, *y_u = z_u + n * f, *y_t = y_u + n * f;
    const long long *past = items.buf, *wanted = targets.buf;
    const double *c = confidence.buf;
    double *written = out.buf;
    int singular = 0;
    Py_BEGIN_ALLOW_THREADS
    gather(projected.buf, past, n, f, z_u);
    gather(factors.buf, past, n, f, y_u);
    gather(factors.buf, wanted, t, f, y_t);
    for (Py_ssize_t a = 0; a < n; a++) {
        /* K = Y_u B^-1 Y_u' is symmetric: half of it is computed */
        for (Py_ssize_t b = a; b < n; b++) {
            k[a * n + b] = k[b * n + a] = dot(z_u + a * f, y_u + b * f, f);
        }
        for (Py_ssize_t i = 0; i < t; i++) {
            m[a * t + i] = dot(z_u + a * f, y_t + i * f, f);
        }
    }
    for (Py_ssize_t a = 0; a < n; a++) {
        double d = c[a] - 1.0;
        for (Py_ssize_t b = 0; b < n; b++) {
            system[a * n + b] = (a == b ? 1.0 : 0.0) + d * k[a * n + b];
        }
        for (Py_ssize_t i = 0; i < t; i++) {
            x[a * t + i] = d * m[a * t + i];
        }
    }
    if (solve_in_place(system, x, n, t) < 0) {
        singular = 1;
    }
    else {
        for (Py_ssize_t a = 0; a < n; a++) {
            for (Py_ssize_t i = 0; i < t; i++) {
                double value = m[a * t + i];
                for (Py_ssize_t b = 0; b < n; b++) {
                    value -= k[a * n + b] * x[b * t + i];
                }
                written[i * n + a] = value * c[a];
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (singular) {
        /* explain.py answers this one through numpy's solver */
        PyErr_SetString(PyExc_ArithmeticError, "woodbury_contributions: singular system");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(work);
    for (int i = 0; i < held; i++) {
        PyBuffer_Release(views[i]);
    }
    return result;
}

/* A growing byte buffer for one answer's fields. */
typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Text;

static int
append(Text *text, const char *bytes, Py_ssize_t size)
{
    if (text->size + size > text->capacity) {
        Py_ssize_t capacity = (text->capacity + size) * 2;
        char *grown = PyMem_Realloc(text->data, capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->size, bytes, size);
    text->size += size;
    return 0;
}

/* numpy's round(value, decimals) (times 10^decimals, to nearest even, divided back), written
 * as orjson writes a float: the shortest repr, null for what JSON cannot hold. */
static int
append_rounded(Text *text, double value, int decimals)
{
    double scale = decimals == 4 ? 1e4 : 1e1;
    double rounded = rint(value * scale) / scale;
    if (!isfinite(rounded)) { /* a huge value overflows when scaled, as in numpy */
        return append(text, "null", 4);
    }
    char *repr = PyOS_double_to_string(rounded, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (repr == NULL) {
        return -1;
    }
    int failed = append(text, repr, (Py_ssize_t)strlen(repr));
    PyMem_Free(repr);
    return failed;
}

PyDoc_STRVAR(because_doc,
"because_fields(contributions, similarity, items, top_k, fragments, fragment_of)\n\n"
"For each target (a row of contributions and similarity, one column per past item in\n"
"items), the bytes ',\"reason\":\"history\",\"because\":[...]' naming its top_k past items by\n"
"positive contribution (ties: the earlier column), each as the item's fragment from\n"
"fragments (a dict of item index to bytes; fragment_of(index) on a miss) followed by its\n"
"similarity (4 decimals) and its share of the row's positive contributions (percent, 1\n"
"decimal). Items whose contribution is not positive are left out.");

static PyObject *
because_fields(PyObject *self, PyObject *args)
{
    PyObject *contributions_object, *similarity_object, *items_object, *fragments, *fragment_of;
    Py_ssize_t top_k;
    if (!PyArg_ParseTuple(args, "OOOnO!O", &contributions_object, &similarity_object,
                          &items_object, &top_k, &PyDict_Type, &fragments, &fragment_of)) {
        return NULL;
    }
    Py_buffer contributions = {0}, similarity = {0}, items = {0};
    PyObject *result = NULL;
    Py_ssize_t *chosen = NULL;
    Text text = {NULL, 0, 0};
    const int reals = ARRAY_F32 | ARRAY_F64;
    if (array_buffer(contributions_object, &contributions, reals, 2, 0, "contributions") < 0) {
        return NULL;
    }
    if (array_buffer(similarity_object, &similarity, reals, 2, 0, "similarity") < 0) {
        PyBuffer_Release(&contributions);
        return NULL;
    }
    if (array_buffer(items_object, &items, ARRAY_I64, 1, 0, "items") < 0) {
        PyBuffer_Release(&contributions);
        PyBuffer_Release(&similarity);
        return NULL;
    }
    Py_ssize_t t = contributions.shape[0], n = contributions.shape[1];
    if (similarity.shape[0] != t || similarity.shape[1] != n || items.shape[0] != n ||
        top_k < 0) {
        PyErr_SetString(PyExc_ValueError, "because_fields: shapes do not match");
        goto done;
    }
    if (top_k > n) {
        top_k = n;
    }
    chosen = PyMem_Malloc((top_k ? top_k : 1) * sizeof(Py_ssize_t));
    result = PyList_New(t);
    if (chosen == NULL || result == NULL) {
        Py_CLEAR(result);
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    const long long *past = items.buf;
    static const char opening[] = ",\"reason\":\"history\",\"because\":[";
    for (Py_ssize_t i = 0; i < t; i++) {
        double total = 0.0;
        for (Py_ssize_t j = 0; j < n; j++) {
            double value = array_real(&contributions, i * n + j);
            total += value > 0.0 ? value : 0.0;
        }
        /* selection by repeated maximum: top_k is small, and a strict comparison scanning
         * left to right keeps a stable sort's order among ties */
        Py_ssize_t kept = 0;
        for (; kept < top_k; kept++) {
            Py_ssize_t best = -1;
            double best_value = 0.0;
            for (Py_ssize_t j = 0; j < n; j++) {
                double value = array_real(&contributions, i * n + j);
                int taken = 0;
                for (Py_ssize_t q = 0; q < kept; q++) {
                    taken |= chosen[q] == j;
                }
                if (!taken && value > best_value) {
                    best = j;
                    best_value = value;
                }
            }
            if (best < 0) {
                break;
            }
            chosen[kept] = best;
        }
        text.size = 0;
        if (append(&text, opening, sizeof(opening) - 1) < 0) {
            goto failed;
        }
        for (Py_ssize_t q = 0; q < kept; q++) {
            Py_ssize_t j = chosen[q];
            PyObject *key = PyLong_FromLongLong(past[j]);
            if (key == NULL) {
                goto failed;
            }
            PyObject *fragment = PyDict_GetItemWithError(fragments, key);
            Py_XINCREF(fragment);
            if (fragment == NULL && !PyErr_Occurred()) {
                fragment = PyObject_CallOneArg(fragment_of, key);
            }
            Py_DECREF(key);
            if (fragment == NULL) {
                goto failed;
            }
            char *bytes;
            Py_ssize_t size;
            int unreadable = PyBytes_AsStringAndSize(fragment, &bytes, &size) < 0;
            int failed_append = unreadable || (q > 0 && append(&text, ",", 1) < 0) ||
                                append(&text, bytes, size) < 0;
            Py_DECREF(fragment);
            if (failed_append) {
                goto failed;
            }
            double share = 100.0 * array_real(&contributions, i * n + j) / total;
            if (append(&text, ",\"similarity\":", 14) < 0 ||
                append_rounded(&text, array_real(&similarity, i * n + j), 4) < 0 ||
                append(&text, ",\"contribution_pct\":", 20) < 0 ||
                append_rounded(&text, share, 1) < 0 || append(&text, "}", 1) < 0) {
                goto failed;
            }
        }
        if (append(&text, "]", 1) < 0) {
            goto failed;
        }
        PyObject *field = PyBytes_FromStringAndSize(text.data, text.size);
        if (field == NULL) {
            goto failed;
        }
        PyList_SET_ITEM(result, i, field);
    }
    goto done;
failed:
    Py_CLEAR(result);
done:
    PyMem_Free(text.data);
    PyMem_Free(chosen);
    PyBuffer_Release(&contributions);
    PyBuffer_Release(&similarity);
    PyBuffer_Release(&items);
    return result;
}

static PyMethodDef methods[] = {
    {"woodbury_contributions", woodbury_contributions, METH_VARARGS, woodbury_doc},
    {"because_fields", because_fields, METH_VARARGS, because_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_reasons",
    "The per-request arithmetic and encoding of explanations (see ranking/explain.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__reasons(void)
{
    return PyModule_Create(&module);
}
