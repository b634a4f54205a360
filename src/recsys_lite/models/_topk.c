/* The k best of a filtered request's eligible items (models/retrieval.py, exact_eligible) in
 * one pass: numpy needed a partition, a sort, a search for the excluded items and a finiteness
 * mask, each a call with its own overhead, around a product that is itself only a few
 * microseconds. Only the CPython C API and the buffer protocol are used. */
#include "../_arrays.h"

#include <math.h>

/* a before b in the answer: the higher score, or the earlier position on a tie */
static inline int
before(const float *scores, Py_ssize_t a, Py_ssize_t b)
{
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
}

/* restores the heap property downwards from slot (the root holds the worst kept position) */
static void
sift_down(Py_ssize_t *heap, Py_ssize_t size, Py_ssize_t slot, const float *scores)
{
    for (;;) {
        Py_ssize_t worst = slot, left = 2 * slot + 1, right = left + 1;
        if (left < size && before(scores, heap[worst], heap[left])) {
            worst = left;
        }
        if (right < size && before(scores, heap[worst], heap[right])) {
            worst = right;
        }
        if (worst == slot) {
            return;
        }
        Py_ssize_t swap = heap[slot];
        heap[slot] = heap[worst];
        heap[worst] = swap;
        slot = worst;
    }
}

PyDoc_STRVAR(top_positions_doc,
"top_positions(scores, indices, excluded, out) -> int\n\n"
"The positions into scores (float32, one per item of indices, int64 ascending) of the best\n"
"scores, best first (ties: the earlier position), leaving out non-finite scores and the\n"
"items in excluded (int64, ascending); writes up to len(out) of them into out (int64) and\n"
"returns how many.");

static PyObject *
top_positions(PyObject *self, PyObject *args)
{
    PyObject *objects[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objects[0], &objects[1], &objects[2], &objects[3])) {
        return NULL;
    }
    Py_buffer scores = {0}, indices = {0}, excluded = {0}, out = {0};
    Py_buffer *views[4] = {&scores, &indices, &excluded, &out};
    const int kinds[4] = {ARRAY_F32, ARRAY_I64, ARRAY_I64, ARRAY_I64};
    const char *names[4] = {"scores", "indices", "excluded", "out"};
    int held = 0;
    PyObject *result = NULL;
    for (; held < 4; held++) {
        if (array_buffer(objects[held], views[held], kinds[held], 1, held == 3, names[held]) <
            0) {
            goto done;
        }
    }
    Py_ssize_t n = scores.shape[0], k = out.shape[0], n_excluded = excluded.shape[0];
    if (indices.shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "top_positions: scores and indices differ in length");
        goto done;
    }
    const float *score = scores.buf;
    const long long *item = indices.buf, *blocked = excluded.buf;
    Py_ssize_t *heap = out.buf; /* Py_ssize_t and int64 are one size on the platforms built */
    Py_ssize_t size = 0, next_blocked = 0;
    for (Py_ssize_t position = 0; position < n; position++) {
        /* both lists ascend: one walk finds every excluded item */
        while (next_blocked < n_excluded && blocked[next_blocked] < item[position]) {
            next_blocked++;
        }
        if (next_blocked < n_excluded && blocked[next_blocked] == item[position]) {
            continue;
        }
        if (!isfinite(score[position]) || k == 0) {
            continue;
        }
        if (size < k) {
            /* sift up: the worst kept position stays at the root */
            Py_ssize_t slot = size++;
            heap[slot] = position;
            while (slot > 0) {
                Py_ssize_t parent = (slot - 1) / 2;
                if (!before(score, heap[parent], heap[slot])) {
                    break;
                }
                Py_ssize_t swap = heap[slot];
                heap[slot] = heap[parent];
                heap[parent] = swap;
                slot = parent;
            }
        }
        else if (before(score, position, heap[0])) {
            heap[0] = position;
            sift_down(heap, size, 0, score);
        }
    }
    /* heap sort in place: the worst goes to the end each time, leaving the best first */
    for (Py_ssize_t end = size - 1; end > 0; end--) {
        Py_ssize_t swap = heap[0];
        heap[0] = heap[end];
        heap[end] = swap;
        sift_down(heap, end, 0, score);
    }
    result = PyLong_FromSsize_t(size);
done:
    for (int i = 0; i < held; i++) {
        PyBuffer_Release(views[i]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"top_positions", top_positions, METH_VARARGS, top_positions_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_topk", "Top-k of filtered retrieval (see models/retrieval.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__topk(void)
{
    _Static_assert(sizeof(Py_ssize_t) == sizeof(long long), "int64 positions");
    return PyModule_Create(&module);
}
