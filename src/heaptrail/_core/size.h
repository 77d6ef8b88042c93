/* size.h - flat size of one object, as the allocator sees it: what
 * sys.getsizeof reports (its __sizeof__ plus the pre-header: the gc header of
 * gc types and, for classes with a managed __dict__/weakref, the two pointers
 * in front of the object). Deep size walks live in size.c; the heap walk
 * (heap.c) uses ht_size_flat for every object it records.
 *
 * How a flat size is found (per type, decided once and cached, keyed by the
 * type's address and checked against its tp_version_tag so a changed or a
 * re-allocated type is decided again):
 *   - str, int, list: computed in C from the public struct fields, no call;
 *   - types that inherit object.__sizeof__ (float, tuple, bytes, None,
 *     instances of Python classes ...): tp_basicsize + Py_SIZE * tp_itemsize;
 *   - types whose __sizeof__ is a C method (dict, set, bytearray,
 *     array.array, big ints, 3.13 instances with inline values ...): its C
 *     function is called directly, without the method-call machinery;
 *   - types with a Python-level __sizeof__ override: that method is called,
 *     exactly as sys.getsizeof does.
 *
 * Deep size (size.c, heaptrail.deepsize): every distinct object reachable
 * from the roots through tp_traverse, counted once by identity, walked with
 * an explicit stack (C recursion bounded to a few levels, whatever the
 * depth of the structure). "Shared" objects are neither counted
 * nor traversed unless shared=True: modules, type objects (classes,
 * metaclasses, builtin types), Python functions, builtin functions and
 * methods, code objects, and the descriptors that live in classes
 * (method/wrapper/getset/member/classmethod descriptors). A root is always
 * counted and traversed, whatever its type. memoryview is counted flat and not
 * traversed: its buffer belongs to another object. A dict's str keys, which
 * its tp_traverse leaves out, are visited explicitly. An object with a
 * reference count of 1 is reached only through its one referrer, so the plain
 * walk gives it no entry in the seen table (but for a dict's exact str keys,
 * which the walk visits twice when the dict's traversal shows them too).
 */
#ifndef HT_SIZE_H
#define HT_SIZE_H

#include "common.h"

/* Returns the flat size of op in bytes, or -1 with an exception set (only
 * possible for types whose own __sizeof__ fails or returns a bad value, or
 * one so large that the header added to it passes PY_SSIZE_T_MAX:
 * OverflowError; heaptrail.sizeof gives that figure, as sys.getsizeof does).
 * Never calls Python code for builtin types; calls __sizeof__ only for types
 * that override it in Python (or whose metaclass customizes attribute
 * lookup). Must be called with the GIL held. */
Py_ssize_t ht_size_flat(PyObject *op);

/* How a type's objects are sized: size.c decides a rule per type and caches
 * it; a caller that sizes many objects of few types (the heap walk) keeps
 * copies and sizes with them, sparing the cache lookup per object. */
enum {
    HT_SZ_BASIC,  /* inherits object.__sizeof__: basicsize + Py_SIZE * itemsize */
    HT_SZ_STR,    /* exact str: from its public header fields */
    HT_SZ_INT,    /* exact int: from its digit count */
    HT_SZ_LIST,   /* exact list: basicsize + allocated slots */
    HT_SZ_CFUNC,  /* __sizeof__ is a C method: its function is called directly */
    HT_SZ_PYCALL, /* __sizeof__ overridden in Python: op.__sizeof__() */
};

typedef struct ht_size_rule {
    PyTypeObject *tp;
    unsigned int version;  /* tp_version_tag when decided (0: never trusted) */
    uint8_t kind;          /* HT_SZ_* */
    uint8_t shared;        /* module, type, function, code ... (see size.h) */
    uint8_t traverse;      /* referents are walked with tp_traverse */
    uint8_t gc_per_object; /* tp_is_gc: only some objects are gc objects */
    uint8_t pre_static0;   /* 3.13: static type objects get no pre-header */
    Py_ssize_t pre;        /* pre-header bytes sys.getsizeof adds */
    PyCFunction fn;        /* the C __sizeof__ (CFUNC, and fallback of STR/INT) */
} ht_size_rule;

/* Copies tp's rule into *r, deciding and caching it when needed (the
 * __sizeof__ lookup goes through tp's metaclass, which may run code). 0, or
 * -1 with an exception set. */
int ht_size_rule_of(PyTypeObject *tp, ht_size_rule *r);

/* The flat size of op by its type's rule r, or -1 with an exception set.
 * Runs Python code only for HT_SZ_PYCALL rules. */
Py_ssize_t ht_size_flat_with(PyObject *op, const ht_size_rule *r);

#endif
