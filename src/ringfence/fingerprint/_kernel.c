/*
 * The fingerprint embedding kernel in one fused pass (CPython extension).
 *
 * Byte for byte the numpy reference in embed.py (`embed_float_reference`,
 * `embed_q8_0_reference`): the carrier of carrier.py (splitmix64 with Stafford's Mix13,
 * one 64-bit word per 64-element block), one changed element per active 8-element group
 * (every `stride`-th group of a block: stride 1 at density 1/8, 2 at 1/16), moved one
 * format step up or down as carrier sign x code bit says, and the exponent guard that leaves
 * zeros, subnormals, inf/NaN and the largest binade alone. Q8_0 moves the int8 quant by one,
 * clipped to [-127, 127].
 *
 * Why compiled: the numpy version makes ~5 passes over every element (BENCHMARKS.md, 0.2x
 * memcpy); this one reads and writes each word once (~0.8x memcpy). The GIL is released
 * around the loop so concurrent downloads use every core.
 *
 * Words are little-endian (the formats' byte order); embed.py only uses this module on
 * little-endian hosts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 64
#define GROUP 8
#define Q8_0_BLOCK 32
#define Q8_0_BYTES 34

enum kind { KIND_BF16 = 0, KIND_F16 = 1, KIND_F32 = 2, KIND_Q8_0 = 3 };

static inline uint64_t carrier_word(uint64_t seed, uint64_t block)
{
    /* output `block` of the splitmix64 stream seeded with `seed` (carrier.stream) */
    uint64_t z = (block + 1) * UINT64_C(0x9E3779B97F4A7C15) + seed;
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* bit g set: group g's changed element steps down (its carrier sign and code bit differ) */
static inline uint32_t down_mask(uint64_t h, const uint8_t *bits, uint64_t length)
{
    uint64_t symbol = ((h >> 32) * length) >> 32; /* Lemire's multiply-shift onto [0, length) */
    uint32_t low = (uint32_t)h;
    /* branch-free: a branch on the (random) code bit mispredicts half the time, 3x slower */
    return ((low >> 24) ^ (0u - (uint32_t)(bits[symbol] != 0))) & 0xFFu;
}

/* one element, branch-free: +step or -step (bit `d`), nothing where the exponent guard says */
#define STEP_ELEMENT(WORD, p, d)                                                               \
    do {                                                                                       \
        WORD w_ = *(p), e_ = (WORD)(w_ & mask);                                                \
        WORD neg_ = (WORD)(0u - (WORD)(d));                                                    \
        WORD keep_ = (WORD)(0u - (WORD)(e_ >= lowest && e_ <= highest));                       \
        *(p) = (WORD)(w_ + ((((WORD)(step ^ neg_)) - neg_) & keep_));                          \
    } while (0)

/*
 * A block the range covers whole is computed 8 elements (one group) at a time in vectors
 * (GCC/Clang vector extensions: SSE2/NEON without intrinsics): a group's change is one of 16
 * patterns (which element, up or down), or the 17th, nothing, for a group idle at the
 * release's density; masked by the exponent guard and added to the words. That is the copy
 * and the mark in one pass (copying idle groups with a memcpy per block measured slower). A
 * block the range cuts goes element by element.
 */
#define DEFINE_FLOAT_KERNEL(NAME, WORD, VEC)                                                   \
    typedef WORD VEC __attribute__((vector_size(8 * sizeof(WORD))));                           \
    static void NAME(const WORD *src, WORD *dst, int64_t first, int64_t count, uint64_t seed,  \
                     const uint8_t *bits, uint64_t length, int stride, WORD step, WORD mask,   \
                     WORD lowest, WORD highest)                                                \
    {                                                                                          \
        int64_t end = first + count;                                                           \
        int64_t b0 = first / BLOCK, b1 = (end + BLOCK - 1) / BLOCK;                            \
        VEC patterns[2 * GROUP + 1], maskv, lowv, highv; /* the last: an idle group */         \
        for (int i = 0; i < GROUP; i++) {                                                      \
            maskv[i] = mask;                                                                   \
            lowv[i] = lowest;                                                                  \
            highv[i] = highest;                                                                \
            patterns[2 * GROUP][i] = 0;                                                        \
            for (int o = 0; o < GROUP; o++) {                                                  \
                patterns[2 * o][i] = i == o ? step : 0;                                        \
                patterns[2 * o + 1][i] = i == o ? (WORD)(0u - step) : 0;                       \
            }                                                                                  \
        }                                                                                      \
        for (int64_t b = b0; b < b1; b++) {                                                    \
            uint64_t h = carrier_word(seed, (uint64_t)b);                                      \
            uint32_t low = (uint32_t)h, down = down_mask(h, bits, length);                     \
            int64_t base = b * BLOCK;                                                          \
            if (base >= first && base + BLOCK <= end) {                                        \
                const WORD *s = src + (base - first);                                          \
                WORD *d = dst + (base - first);                                                \
                for (int g = 0; g < BLOCK / GROUP; g++) {                                      \
                    VEC v, e;                                                                  \
                    memcpy(&v, s + GROUP * g, sizeof v);                                       \
                    e = v & maskv;                                                             \
                    VEC keep = (VEC)((e >= lowv) & (e <= highv));                              \
                    unsigned code = g % stride ? 2 * GROUP                                     \
                                               : 2 * ((low >> (3 * g)) & 7u) + ((down >> g) & 1u); \
                    v += patterns[code] & keep;                                                \
                    memcpy(d + GROUP * g, &v, sizeof v);                                       \
                }                                                                              \
                continue;                                                                      \
            }                                                                                  \
            int64_t lo = base > first ? base : first;                                          \
            int64_t hi = base + BLOCK < end ? base + BLOCK : end;                              \
            if (dst != src)                                                                    \
                memcpy(dst + (lo - first), src + (lo - first), (size_t)(hi - lo) * sizeof(WORD)); \
            for (int g = 0; g < BLOCK / GROUP; g += stride) {                                  \
                int64_t e = base + GROUP * g + ((low >> (3 * g)) & 7u);                        \
                if (e >= first && e < end)                                                     \
                    STEP_ELEMENT(WORD, dst + (e - first), (down >> g) & 1u);                   \
            }                                                                                  \
        }                                                                                      \
    }

DEFINE_FLOAT_KERNEL(embed16, uint16_t, words16)
DEFINE_FLOAT_KERNEL(embed32, uint32_t, words32)

static void embed_q8_0(const uint8_t *src, uint8_t *dst, int64_t first_block, int64_t n_blocks,
                       uint64_t seed, const uint8_t *bits, uint64_t length, int stride)
{
    int64_t first = first_block * Q8_0_BLOCK, end = first + n_blocks * Q8_0_BLOCK;
    if (dst != src)
        memcpy(dst, src, (size_t)(n_blocks * Q8_0_BYTES));
    for (int64_t b = first / BLOCK; b < (end + BLOCK - 1) / BLOCK; b++) {
        uint64_t h = carrier_word(seed, (uint64_t)b);
        uint32_t low = (uint32_t)h, down = down_mask(h, bits, length);
        for (int g = 0; g < BLOCK / GROUP; g += stride) {
            int64_t e = b * BLOCK + GROUP * g + ((low >> (3 * g)) & 7u);
            if (e < first || e >= end)
                continue;
            int64_t k = e - first;
            int64_t offset = k / Q8_0_BLOCK * Q8_0_BYTES + 2 + k % Q8_0_BLOCK;
            int q = (int8_t)dst[offset] + ((down >> g) & 1u ? -1 : 1);
            q = q < -127 ? -127 : (q > 127 ? 127 : q);
            dst[offset] = (uint8_t)(int8_t)q;
        }
    }
}

/* run the kernel of `kind` from src to dst (may be the same memory) without the GIL */
static int run(int kind, const void *src, void *dst, Py_ssize_t nbytes, int64_t first,
               uint64_t seed, const uint8_t *bits, Py_ssize_t length, int stride)
{
    Py_ssize_t unit = kind == KIND_F32 ? 4 : (kind == KIND_Q8_0 ? Q8_0_BYTES : 2);
    if (kind < KIND_BF16 || kind > KIND_Q8_0) {
        PyErr_SetString(PyExc_ValueError, "unknown kind");
        return -1;
    }
    if (nbytes % unit) {
        PyErr_SetString(PyExc_ValueError, "buffer is not a whole number of units");
        return -1;
    }
    if (first < 0 || first > (INT64_MAX / BLOCK) / 2) {
        PyErr_SetString(PyExc_ValueError, "first unit out of range");
        return -1;
    }
    if (stride != 1 && stride != 2 && stride != 4 && stride != 8) {
        PyErr_SetString(PyExc_ValueError, "stride must be 1, 2, 4 or 8 (density 1/8 .. 1/64)");
        return -1;
    }
    if (length < 1 || (uint64_t)length > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "the codeword needs 1 .. 2^32 - 1 symbols");
        return -1;
    }
    int64_t count = nbytes / unit;
    if (count == 0)
        return 0;
    Py_BEGIN_ALLOW_THREADS
    switch (kind) {
    case KIND_BF16:
        embed16(src, dst, first, count, seed, bits, (uint64_t)length, stride, 1, 0x7F80, 0x0080, 0x7E80);
        break;
    case KIND_F16:
        embed16(src, dst, first, count, seed, bits, (uint64_t)length, stride, 8, 0x7C00, 0x0400, 0x7400);
        break;
    case KIND_F32:
        embed32(src, dst, first, count, seed, bits, (uint64_t)length, stride, 1u << 16,
                0x7F800000u, 0x00800000u, 0x7E800000u);
        break;
    default:
        embed_q8_0(src, dst, first, count, seed, bits, (uint64_t)length, stride);
    }
    Py_END_ALLOW_THREADS
    return 0;
}

static int parse_seed(PyObject *obj, uint64_t *seed)
{
    *seed = (uint64_t)PyLong_AsUnsignedLongLongMask(obj);
    return !(*seed == (uint64_t)-1 && PyErr_Occurred());
}

PyDoc_STRVAR(embed_doc,
             "embed(kind, src, out, first, seed, bits, stride=1)\n--\n\n"
             "Fingerprint units [first, first + n) of a tensor from `src` into `out` (raw bytes; "
             "they may be the same buffer). kind: 0 BF16, 1 F16, 2 F32, 3 Q8_0 (first in "
             "blocks); bits: the codeword, one byte (0/1) per symbol; stride: every how many "
             "groups of a block one is active (1: density 1/8, 2: 1/16).");

static PyObject *embed(PyObject *self, PyObject *args)
{
    int kind;
    Py_buffer src, out, bits;
    long long first;
    PyObject *seed_obj;
    uint64_t seed;
    int stride = 1;
    if (!PyArg_ParseTuple(args, "iy*w*LOy*|i", &kind, &src, &out, &first, &seed_obj, &bits,
                          &stride))
        return NULL;
    int rc = -1;
    if (out.len != src.len)
        PyErr_SetString(PyExc_ValueError, "src and out differ in size");
    else if (parse_seed(seed_obj, &seed))
        rc = run(kind, src.buf, out.buf, src.len, (int64_t)first, seed, bits.buf, bits.len,
                 stride);
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    PyBuffer_Release(&bits);
    if (rc)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(embed_bytes_doc,
             "embed_bytes(kind, src, first, seed, bits, stride=1) -> bytes\n--\n\n"
             "Like embed, into a new bytes object (no further copy for the caller).");

static PyObject *embed_bytes(PyObject *self, PyObject *args)
{
    int kind;
    Py_buffer src, bits;
    long long first;
    PyObject *seed_obj, *result = NULL;
    uint64_t seed;
    int stride = 1;
    if (!PyArg_ParseTuple(args, "iy*LOy*|i", &kind, &src, &first, &seed_obj, &bits, &stride))
        return NULL;
    if (parse_seed(seed_obj, &seed)) {
        result = PyBytes_FromStringAndSize(NULL, src.len);
        if (result != NULL && run(kind, src.buf, PyBytes_AS_STRING(result), src.len,
                                  (int64_t)first, seed, bits.buf, bits.len, stride)) {
            Py_CLEAR(result);
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&bits);
    return result;
}

static PyMethodDef methods[] = {
    {"embed", embed, METH_VARARGS, embed_doc},
    {"embed_bytes", embed_bytes, METH_VARARGS, embed_bytes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "ringfence.fingerprint._kernel",
    "The fingerprint embedding kernel, compiled (see embed.py for the numpy reference).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BF16", KIND_BF16) || PyModule_AddIntConstant(m, "F16", KIND_F16)
        || PyModule_AddIntConstant(m, "F32", KIND_F32)
        || PyModule_AddIntConstant(m, "Q8_0", KIND_Q8_0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
