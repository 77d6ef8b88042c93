/* lines.c - the line-by-line memory profiler's engine (design in lines.h). */
#include "lines.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hashtable.h"
#include "proc.h"

int ht_lines_used;
_Thread_local ht_lines_tls ht_lines_me __attribute__((tls_model("initial-exec")));

/* ---- results ------------------------------------------------------------- */

typedef struct ln_row {
    uint64_t occ;     /* times the line started */
    int64_t inc;      /* net bytes: allocated minus freed while it ran */
    uint64_t alloc;   /* bytes allocated while it ran */
    int64_t peak;     /* highest traced memory while it ran */
    int64_t mem;      /* traced memory (or RSS) when it last ended */
    int has;          /* the line ran at least once */
} ln_row;

typedef struct ln_func {
    PyObject *code;   /* strong reference */
    int first;        /* co_firstlineno: rows[0] */
    int nrows;
    ln_row *rows;
} ln_func;

/* Protected by the GIL: the trace function and every entry point hold it. */
static struct {
    ht_table codes;   /* code object address -> index in funcs */
    ln_func *funcs;
    uint32_t nfuncs, capfuncs;
    int rss;          /* Mem usage is RSS instead of traced memory */
    int rss_fd;       /* /proc/self/statm, opened on demand; -1 = not yet */
    uint64_t lost;    /* line charges dropped for lack of memory */
} ln = {.rss_fd = -1};

/* The row of `line` in function f, created on demand; NULL when the line is
 * before the function's first line or memory ran out. */
static ln_row *
ln_row_of(uint32_t f, int line)
{
    ln_func *fn = &ln.funcs[f];
    int i = line - fn->first;
    if (i < 0)
        return NULL;
    if (i >= fn->nrows) {
        int n = fn->nrows ? fn->nrows : 16;
        while (n <= i)
            n *= 2;
        ln_row *r = realloc(fn->rows, (size_t)n * sizeof(ln_row));
        if (r == NULL) {
            ln.lost++;
            return NULL;
        }
        memset(r + fn->nrows, 0, (size_t)(n - fn->nrows) * sizeof(ln_row));
        fn->rows = r;
        fn->nrows = n;
    }
    return &fn->rows[i];
}

/* Resident set size in bytes; 0 when unreadable. */
static int64_t
ln_rss(void)
{
    return (int64_t)ht_proc_self_rss(&ln.rss_fd);
}

/* ---- the per-thread stack of running profiled frames ----------------------- */

typedef struct ln_entry {
    PyFrameObject *frame;  /* borrowed: alive while it runs */
    uint32_t func;
    int line;              /* the line running now, -1 before the first */
    int64_t cur0;          /* counters at the line's start */
    uint64_t alloc0;
    int64_t gmem0;         /* traced memory at the line's start */
    int64_t child_peak;    /* highest cur of profiled callees during the line */
    int64_t life_peak;     /* highest cur over the frame's life (folded up on return) */
    int32_t same;          /* index of the nearest outer entry of the same function
                              (recursion), -1 when none */
} ln_entry;

typedef struct ln_thread {
    ln_entry *stk;
    uint32_t depth, cap;
    uint32_t active;       /* enter() minus leave(): the trace function is set when > 0 */
} ln_thread;

static _Thread_local ln_thread ln_me;

static inline int64_t
ln_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Whether an outer frame of e's function (recursion) is running e's line
 * now: its own charge, when it ends, holds all e's line did. Walks the
 * chain of e's function's frames only: O(1) without recursion. */
static int
ln_outer_on_line(const ln_thread *t, const ln_entry *e)
{
    for (int32_t k = e->same; k >= 0; k = t->stk[k].same)
        if (t->stk[k].line == e->line)
            return 1;
    return 0;
}

/* The line running in e (an entry of t's stack) ended, traced memory being
 * `now`: charge the counters' deltas to it. A recursive call's line whose
 * outer instance still runs is charged by that instance alone: charging
 * both counted the same bytes once per level (rec(3)'s `rec(n-1)` line
 * showed 3+2+1 MiB allocated for 3 MiB). */
static void
ln_end(const ln_thread *t, ln_entry *e, int64_t now)
{
    if (e->line < 0)
        return;
    ht_lines_tls *me = &ht_lines_me;
    int64_t p = ln_max(me->peak, e->child_peak);
    e->life_peak = ln_max(e->life_peak, p);
    ln_row *r = ln_row_of(e->func, e->line);
    if (r == NULL)
        return;
    if (!ln_outer_on_line(t, e)) {
        r->inc += me->cur - e->cur0;
        r->alloc += me->alloc - e->alloc0;
    }
    int64_t pk = e->gmem0 + (p - e->cur0);
    if (!r->has || pk > r->peak)
        r->peak = pk;
    r->mem = ln.rss ? ln_rss() : now;
    r->has = 1;
}

/* Line `line` starts in e; `count` says whether it is an occurrence (a
 * resumed generator continues its line: not a new occurrence). */
static void
ln_begin(ln_entry *e, int line, int count, int64_t now)
{
    ht_lines_tls *me = &ht_lines_me;
    e->line = line;
    e->cur0 = me->cur;
    e->alloc0 = me->alloc;
    e->gmem0 = now;
    e->child_peak = INT64_MIN;
    me->peak = me->cur;
    if (count) {
        ln_row *r = ln_row_of(e->func, line);
        if (r != NULL)
            r->occ++;
    }
}

static void
ln_push(ln_thread *t, PyFrameObject *frame, uint32_t f)
{
    if (t->depth == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 16;
        ln_entry *s = realloc(t->stk, cap * sizeof(ln_entry));
        if (s == NULL) {
            ln.lost++;
            return;  /* this frame is not profiled; its events are ignored */
        }
        t->stk = s;
        t->cap = cap;
    }
    ht_lines_tls *me = &ht_lines_me;
    if (t->depth != 0) {  /* the caller's line peak so far */
        ln_entry *up = &t->stk[t->depth - 1];
        up->child_peak = ln_max(up->child_peak, me->peak);
    }
    ln_entry *e = &t->stk[t->depth++];
    e->frame = frame;
    e->func = f;
    e->line = -1;
    e->life_peak = me->cur;
    e->same = -1;
    for (uint32_t k = t->depth - 1; k-- > 0;)
        if (t->stk[k].func == f) {
            e->same = (int32_t)k;
            break;
        }
    int line = PyFrame_GetLineNumber(frame);
    /* a fresh call stands on its first line (memory_profiler shows the
     * decorator's line with one occurrence); a resumed generator or
     * coroutine goes on with the line it yielded in */
    ln_begin(e, line, line == ln.funcs[f].first, (int64_t)ht_tracer_current());
}

static void
ln_pop(ln_thread *t)
{
    ln_entry *e = &t->stk[--t->depth];
    ln_end(t, e, (int64_t)ht_tracer_current());
    if (t->depth != 0) {
        ln_entry *up = &t->stk[t->depth - 1];
        up->child_peak = ln_max(up->child_peak, e->life_peak);
    }
    ht_lines_me.peak = ht_lines_me.cur;
}

/* The trace function: cheap for everything that is not a profiled frame. */
static int
ln_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    ln_thread *t = &ln_me;
    switch (what) {
    case PyTrace_CALL: {
        PyCodeObject *co = PyFrame_GetCode(frame);
        uint64_t *v = ht_table_find(&ln.codes, (uint64_t)(uintptr_t)co);
        Py_DECREF(co);
        if (v != NULL)
            ln_push(t, frame, (uint32_t)*v);
        break;
    }
    case PyTrace_LINE:
        if (t->depth != 0 && t->stk[t->depth - 1].frame == frame) {
            ln_entry *e = &t->stk[t->depth - 1];
            int64_t now = (int64_t)ht_tracer_current();
            ln_end(t, e, now);
            ln_begin(e, PyFrame_GetLineNumber(frame), 1, now);
        }
        break;
    case PyTrace_RETURN:
        if (t->depth != 0 && t->stk[t->depth - 1].frame == frame)
            ln_pop(t);
        break;
    default:
        break;
    }
    return 0;
}

/* ---- Python entry points ------------------------------------------------------ */

static PyObject *
ln_py_register(PyObject *self, PyObject *code)
{
    if (!PyCode_Check(code))
        return ht_error("profile needs a function's code object, not %s", Py_TYPE(code)->tp_name);
    uint64_t key = (uint64_t)(uintptr_t)code;
    if (ln.codes.keys == NULL && ht_table_init(&ln.codes, 16, 1) < 0)
        return PyErr_NoMemory();
    if (ht_table_find(&ln.codes, key) != NULL)
        Py_RETURN_NONE;
    if (ln.nfuncs == ln.capfuncs) {
        uint32_t cap = ln.capfuncs ? ln.capfuncs * 2 : 16;
        ln_func *f = realloc(ln.funcs, cap * sizeof(ln_func));
        if (f == NULL)
            return PyErr_NoMemory();
        ln.funcs = f;
        ln.capfuncs = cap;
    }
    PyObject *fl = PyObject_GetAttrString(code, "co_firstlineno");
    if (fl == NULL)
        return NULL;
    long first = PyLong_AsLong(fl);
    Py_DECREF(fl);
    if (first == -1 && PyErr_Occurred())
        return NULL;
    if (ht_table_put(&ln.codes, key, ln.nfuncs) < 0)
        return PyErr_NoMemory();
    Py_INCREF(code);
    ln.funcs[ln.nfuncs++] = (ln_func){code, (int)first, 0, NULL};
    Py_RETURN_NONE;
}

static PyObject *
ln_py_enter(PyObject *self, PyObject *noargs)
{
    ln_thread *t = &ln_me;
    ht_lines_used = 1;
    (void)ht_tracer_current();
    if (t->active++ == 0)
        PyEval_SetTrace(ln_trace, NULL);
    Py_RETURN_NONE;
}

static PyObject *
ln_py_leave(PyObject *self, PyObject *noargs)
{
    ln_thread *t = &ln_me;
    if (t->active == 0 || --t->active != 0)
        Py_RETURN_NONE;
    /* frames left on the stack (the trace function was replaced, a frame
     * that never returned): charge their current lines and forget them */
    while (t->depth != 0)
        ln_pop(t);
    free(t->stk);
    t->stk = NULL;
    t->cap = 0;
    PyEval_SetTrace(NULL, NULL);
    Py_RETURN_NONE;
}

/* (code, first_line, [(line, occurrences, increment, allocated, peak, mem), ...]) */
static PyObject *
ln_func_result(ln_func *fn)
{
    PyObject *rows = PyList_New(0);
    if (rows == NULL)
        return NULL;
    for (int i = 0; i < fn->nrows; i++) {
        ln_row *r = &fn->rows[i];
        if (!r->has && r->occ == 0)
            continue;
        PyObject *row = Py_BuildValue("(iKLKLL)", fn->first + i, (unsigned long long)r->occ,
                                      (long long)r->inc, (unsigned long long)r->alloc,
                                      (long long)(r->has ? r->peak : 0), (long long)(r->has ? r->mem : 0));
        if (row == NULL || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(rows);
            return NULL;
        }
        Py_DECREF(row);
    }
    return Py_BuildValue("(OiN)", fn->code, fn->first, rows);
}

static PyObject *
ln_py_results(PyObject *self, PyObject *noargs)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (uint32_t f = 0; f < ln.nfuncs; f++) {
        PyObject *one = ln_func_result(&ln.funcs[f]);
        if (one == NULL || PyList_Append(out, one) < 0) {
            Py_XDECREF(one);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(one);
    }
    return out;
}

/* reset(code=None): forget the rows of one function, or of all. */
static PyObject *
ln_py_reset(PyObject *self, PyObject *args)
{
    PyObject *code = Py_None;
    if (!PyArg_ParseTuple(args, "|O:_lines_reset", &code))
        return NULL;
    for (uint32_t f = 0; f < ln.nfuncs; f++) {
        ln_func *fn = &ln.funcs[f];
        if ((code == Py_None || code == fn->code) && fn->rows != NULL)
            memset(fn->rows, 0, (size_t)fn->nrows * sizeof(ln_row));
    }
    Py_RETURN_NONE;
}

static PyObject *
ln_py_set_rss(PyObject *self, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    if (on < 0)
        return NULL;
    ln.rss = on;
    Py_RETURN_NONE;
}

/* counters(reset_peak=False) -> (cur, alloc, peak, traced_now) of this
 * thread; reset_peak starts a new high-water mark at cur (for %memit). */
static PyObject *
ln_py_counters(PyObject *self, PyObject *args)
{
    int reset = 0;
    if (!PyArg_ParseTuple(args, "|p:_lines_counters", &reset))
        return NULL;
    ht_lines_used = 1;
    uint64_t now = ht_tracer_current();  /* settles the tracer first */
    ht_lines_tls *me = &ht_lines_me;
    if (reset)
        me->peak = me->cur;
    return Py_BuildValue("(LKLK)", (long long)me->cur, (unsigned long long)me->alloc,
                         (long long)me->peak, (unsigned long long)now);
}

static PyObject *
ln_py_rss(PyObject *self, PyObject *noargs)
{
    return PyLong_FromLongLong(ln_rss());
}

static PyMethodDef ln_methods[] = {
    {"_lines_register", ln_py_register, METH_O, "profile this code object's lines"},
    {"_lines_enter", ln_py_enter, METH_NOARGS, "a profiled function starts on this thread"},
    {"_lines_leave", ln_py_leave, METH_NOARGS, "a profiled function ended on this thread"},
    {"_lines_results", ln_py_results, METH_NOARGS, "rows of every profiled function"},
    {"_lines_reset", ln_py_reset, METH_VARARGS, "forget rows (of one code object or all)"},
    {"_lines_set_rss", ln_py_set_rss, METH_O, "Mem usage from RSS instead of traced memory"},
    {"_lines_counters", ln_py_counters, METH_VARARGS, "this thread's (cur, alloc, peak, traced)"},
    {"_lines_rss", ln_py_rss, METH_NOARGS, "resident set size in bytes"},
    {NULL, NULL, 0, NULL},
};

int
ht_lines_init(PyObject *m)
{
    return PyModule_AddFunctions(m, ln_methods);
}
