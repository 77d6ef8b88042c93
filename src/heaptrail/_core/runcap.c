/* runcap.c - `heaptrail run`: tracer events into the capture writer, stack
 * and frame definitions on first use, the memory sampler thread, fork. */
#include "runcap.h"
#include "capture.h"
#include "hashtable.h"
#include "proc.h"
#include "stacks.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RC_DUE 1u      /* the sampler asks for a sample and a flush */
#define RC_CHILD 2u    /* a forked child must open FILE.<pid> */
#define RC_STR_MAX HT_CAP_MAX_STR

int ht_runcap_on;

/* GIL-protected, except where said. */
static struct {
    char *base;               /* the capture's path: children write base.<pid> */
    int follow;               /* follow forks */
    uint64_t sample_bytes, interval_ns;
    char *cmdline;
    size_t cmdline_len;
    uint64_t current;         /* traced bytes now (sum of the events written) */
    uint8_t *emitted;         /* bitmap: stack node ids already written */
    uint32_t emitted_bits;
    ht_table frame_index;     /* hash(code, line) -> frame id, checked on hit */
    PyObject **frame_code;    /* borrowed: the tracer's nodes hold the code objects */
    uint32_t *frame_line;
    uint32_t nframes, capframes;
    PyObject *base_code;      /* strong: heaptrail's frame that runs the program
                                 (stacks are cut below it), or NULL */
    /* sampler thread: mu protects stop and running */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running, stop;
    PyThreadState *ts;        /* the sampler's, for its rare GIL visits */
} rc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_uint rc_slow;      /* RC_DUE | RC_CHILD */
static atomic_ullong rc_rss;     /* latest RSS read by the sampler */
static atomic_int rc_stopping;   /* the sampler must not write any more */

/* ---- frames and stacks ---------------------------------------------------- */

/* UTF-8 of a str without allocating through Python: compact ASCII strings
 * are used in place, others encoded into buf (lone surrogates become '?').
 * Returns a NUL-terminated string (cut at RC_STR_MAX bytes). */
static const char *
rc_utf8(PyObject *s, char *buf)
{
    if (s == NULL || !PyUnicode_Check(s))
        return "?";
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_COMPACT_ASCII(s) && n < RC_STR_MAX)
        return (const char *)PyUnicode_DATA(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    size_t k = 0;
    for (Py_ssize_t i = 0; i < n && k + 4 < RC_STR_MAX; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80)
            buf[k++] = (char)c;
        else if (c < 0x800) {
            buf[k++] = (char)(0xC0 | (c >> 6));
            buf[k++] = (char)(0x80 | (c & 0x3F));
        } else if (c >= 0xD800 && c < 0xE000)
            buf[k++] = '?';
        else if (c < 0x10000) {
            buf[k++] = (char)(0xE0 | (c >> 12));
            buf[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[k++] = (char)(0x80 | (c & 0x3F));
        } else {
            buf[k++] = (char)(0xF0 | (c >> 18));
            buf[k++] = (char)(0x80 | ((c >> 12) & 0x3F));
            buf[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    buf[k] = 0;
    return buf;
}

/* The frame id of (code, line), written to the file when new; HT_CAP_NO_STACK
 * when out of memory. */
static uint32_t
rc_frame(PyObject *code, uint32_t line)
{
    uint64_t key = ht_hash64((uint64_t)(uintptr_t)code * 0x9e3779b97f4a7c15ULL ^ line);
    for (;;) {
        key = key ? key : 1;
        uint64_t *v = ht_table_find(&rc.frame_index, key);
        if (v == NULL)
            break;
        if (rc.frame_code[*v] == code && rc.frame_line[*v] == line)
            return (uint32_t)*v;
        key++;   /* a true 64-bit collision: next key */
    }
    if (rc.nframes == rc.capframes) {
        uint32_t cap = rc.capframes ? rc.capframes * 2 : 256;
        PyObject **c = realloc(rc.frame_code, cap * sizeof(PyObject *));
        if (c == NULL)
            return HT_CAP_NO_STACK;
        rc.frame_code = c;
        uint32_t *l = realloc(rc.frame_line, cap * sizeof(uint32_t));
        if (l == NULL)
            return HT_CAP_NO_STACK;
        rc.frame_line = l;
        rc.capframes = cap;
    }
    uint32_t id = rc.nframes;
    if (ht_table_put(&rc.frame_index, key, id) < 0)
        return HT_CAP_NO_STACK;
    rc.frame_code[id] = code;
    rc.frame_line[id] = line;
    rc.nframes++;
    /* co_filename and co_qualname are read from the code object: getattr
     * would allocate (and we are inside an allocator hook) */
    PyCodeObject *co = (PyCodeObject *)code;
    static char fbuf[RC_STR_MAX + 1], qbuf[RC_STR_MAX + 1];
    ht_cap_frame(id, rc_utf8(co->co_filename, fbuf), rc_utf8(co->co_qualname, qbuf), line);
    return id;
}

static inline int
rc_is_emitted(uint32_t n)
{
    return n < rc.emitted_bits && (rc.emitted[n >> 3] >> (n & 7)) & 1;
}

/* Marks node n written; 0, or -1 when the bitmap cannot grow (the node is
 * then written again at its next use: readers accept a repeated definition). */
static int
rc_mark(uint32_t n)
{
    if (n >= rc.emitted_bits) {
        uint64_t bits = rc.emitted_bits ? rc.emitted_bits : 4096;
        while (bits <= n)
            bits *= 2;
        if (bits > ((uint64_t)1 << 31))
            return -1;
        uint8_t *e = realloc(rc.emitted, (size_t)(bits / 8));
        if (e == NULL)
            return -1;
        memset(e + rc.emitted_bits / 8, 0, (size_t)(bits / 8 - rc.emitted_bits / 8));
        rc.emitted = e;
        rc.emitted_bits = (uint32_t)bits;
    }
    rc.emitted[n >> 3] |= (uint8_t)(1u << (n & 7));
    return 0;
}

/* Writes node n and its callers up to the first one already written. */
static void
rc_emit_stack(uint32_t n)
{
    while (n != HT_NONE && !rc_is_emitted(n)) {
        PyObject *code = ht_stk_code(n);
        int line = PyCode_Addr2Line((PyCodeObject *)code, ht_stk_lasti(n));
        uint32_t frame = rc_frame(code, line > 0 ? (uint32_t)line : 0);
        if (frame == HT_CAP_NO_STACK)
            return;
        uint32_t parent = ht_stk_parent(n);
        /* the program's outermost frame is called by heaptrail's runner:
         * its stacks start there, not in heaptrail's own frames */
        if (parent != HT_NONE && rc.base_code != NULL && ht_stk_code(parent) == rc.base_code)
            parent = HT_CAP_NO_STACK;
        ht_cap_stack(n, parent, frame);
        (void)rc_mark(n);
        n = parent;
    }
}

/* ---- the sampler thread --------------------------------------------------------- */

static void rc_slow_path(void);

/* No thread allocated for a whole interval (sleep, blocking I/O, a long C
 * call): the sampler takes the GIL itself, writes the sample and so flushes
 * every pending event (serialized writer: the last thread's buffer goes
 * first). Rare by construction: a program that allocates answers the flag. */
static void
rc_idle_visit(void)
{
    if (rc.ts == NULL)
        return;
    PyEval_RestoreThread(rc.ts);
    if (!atomic_load(&rc_stopping) && ht_runcap_on && atomic_load(&rc_slow)) {
        static _Thread_local int named;   /* this sampler thread, in this file */
        rc_slow_path();
        if (!named && ht_runcap_on) {
            ht_cap_thread_name("heaptrail sampler");
            named = 1;
        }
    }
    PyEval_SaveThread();
}

static void *
rc_sampler_main(void *arg)
{
    HT_UNUSED(arg);
    pthread_mutex_lock(&rc.mu);
    while (!rc.stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + rc.interval_ns;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (!rc.stop && pthread_cond_timedwait(&rc.cv, &rc.mu, &ts) != ETIMEDOUT)
            ;
        if (rc.stop)
            break;
        pthread_mutex_unlock(&rc.mu);
        atomic_store_explicit(&rc_rss, ht_proc_self_rss(NULL), memory_order_relaxed);
        unsigned was = atomic_fetch_or_explicit(&rc_slow, RC_DUE, memory_order_acq_rel);
        if (was & RC_DUE)      /* last interval's request is still unanswered */
            rc_idle_visit();
        pthread_mutex_lock(&rc.mu);
    }
    pthread_mutex_unlock(&rc.mu);
    return NULL;
}

static void
rc_forget_ts(void)
{
    if (rc.ts != NULL) {
        PyThreadState_Clear(rc.ts);
        PyThreadState_Delete(rc.ts);
        rc.ts = NULL;
    }
}

/* Starts the sampler (GIL held, capture open). 0, or -1 with errno. */
static int
rc_sampler_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rc.cv, &ca);
    pthread_condattr_destroy(&ca);
    rc.stop = 0;
    atomic_store(&rc_stopping, 0);
    /* the sampler's own thread state, made now (GIL held, outside any hook) */
    if (rc.ts == NULL && (rc.ts = PyThreadState_New(PyInterpreterState_Get())) == NULL) {
        errno = ENOMEM;
        return -1;
    }
    /* signals stay with the program's threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&rc.thread, NULL, rc_sampler_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        rc_forget_ts();
        errno = err;
        return -1;
    }
    rc.running = 1;
    return 0;
}

static void
rc_sampler_stop(void)
{
    if (!rc.running)
        return;
    atomic_store(&rc_stopping, 1);
    pthread_mutex_lock(&rc.mu);
    rc.stop = 1;
    pthread_cond_signal(&rc.cv);
    pthread_mutex_unlock(&rc.mu);
    /* the sampler may be waiting for the GIL (an idle visit): let it pass */
    Py_BEGIN_ALLOW_THREADS
    pthread_join(rc.thread, NULL);
    Py_END_ALLOW_THREADS
    rc.running = 0;
    rc_forget_ts();
}

/* ---- events ---------------------------------------------------------------------- */

static int
rc_open_file(const char *path)
{
    ht_cap_info info = {(uint64_t)getpid(), rc.sample_bytes, rc.interval_ns, rc.cmdline,
                        rc.cmdline_len, 1, 1};
    if (ht_cap_open(path, &info) < 0)
        return -1;
    ht_cap_sample(ht_cap_now(), ht_proc_self_rss(NULL), rc.current);
    return 0;
}

/* The sampler's request, or a forked child's first event. GIL held. */
static void
rc_slow_path(void)
{
    unsigned s = atomic_exchange_explicit(&rc_slow, 0, memory_order_acquire);
    if (s & RC_CHILD) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s.%ld", rc.base, (long)getpid());
        if (n <= 0 || (size_t)n >= sizeof path || rc_open_file(path) < 0) {
            ht_runcap_on = 0;   /* the child runs on, uncaptured */
            return;
        }
    }
    if (s & RC_DUE)
        ht_cap_sample(ht_cap_now(), atomic_load_explicit(&rc_rss, memory_order_relaxed), rc.current);
}

void
ht_runcap_alloc_event(const void *p, uint64_t bytes, uint32_t stack)
{
    if (atomic_load_explicit(&rc_slow, memory_order_relaxed))
        rc_slow_path();
    if (!ht_runcap_on)
        return;
    if (stack != HT_NONE && !rc_is_emitted(stack))
        rc_emit_stack(stack);
    rc.current += bytes;
    ht_cap_alloc((uint64_t)(uintptr_t)p, bytes, stack);
}

void
ht_runcap_free_event(const void *p, uint64_t bytes)
{
    if (atomic_load_explicit(&rc_slow, memory_order_relaxed))
        rc_slow_path();
    if (!ht_runcap_on)
        return;
    rc.current -= bytes;
    ht_cap_free((uint64_t)(uintptr_t)p, bytes);
}

/* ---- start / stop / fork ------------------------------------------------------------ */

static void
rc_forget_tables(void)
{
    free(rc.emitted);
    rc.emitted = NULL;
    rc.emitted_bits = 0;
    ht_table_clear(&rc.frame_index);
    rc.nframes = 0;
}

static void
rc_free_state(void)
{
    rc_forget_tables();
    ht_table_free(&rc.frame_index);
    free(rc.frame_code);
    free(rc.frame_line);
    rc.frame_code = NULL;
    rc.frame_line = NULL;
    rc.capframes = 0;
    free(rc.base);
    free(rc.cmdline);
    rc.base = rc.cmdline = NULL;
    rc.cmdline_len = 0;
    rc.current = 0;
}

static void
rc_atfork_child(void)
{
    if (!ht_runcap_on)
        return;
    /* only this thread exists here: the sampler is gone, its lock may have
     * been held by it */
    pthread_mutex_init(&rc.mu, NULL);
    rc.running = 0;
    rc.ts = NULL;   /* CPython deletes the other threads' states in the child */
    ht_cap_after_fork_child();
    rc_forget_tables();
    rc.current = 0;   /* the tracer drops the parent's records in the child too */
    if (rc.follow)
        atomic_store(&rc_slow, RC_CHILD);
    else {
        atomic_store(&rc_slow, 0);
        ht_runcap_on = 0;
    }
}

/* _runcap_start(path, interval_ns, sample_bytes, follow, cmdline, thread_name) */
static PyObject *
rc_py_start(PyObject *self, PyObject *args)
{
    PyObject *path_obj;
    unsigned long long interval_ns, sample_bytes;
    int follow;
    const char *cmdline, *tname;
    Py_ssize_t cmdline_len;
    if (!PyArg_ParseTuple(args, "O&KKpy#s:_runcap_start", PyUnicode_FSConverter, &path_obj,
                          &interval_ns, &sample_bytes, &follow, &cmdline, &cmdline_len, &tname))
        return NULL;
    PyObject *res = NULL;
    const char *path = PyBytes_AS_STRING(path_obj);
    if (ht_runcap_on || ht_cap_active()) {
        ht_error("a capture is already running in this process");
        goto done;
    }
    if (interval_ns < 1000000) {
        ht_error("the sampling interval must be at least 1 ms");
        goto done;
    }
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(NULL, NULL, rc_atfork_child) != 0) {
            ht_error("cannot register the capture's fork handler");
            goto done;
        }
        atfork_done = 1;
    }
    rc.base = strdup(path);
    rc.cmdline = malloc(cmdline_len ? (size_t)cmdline_len : 1);
    if (rc.base == NULL || rc.cmdline == NULL ||
        (rc.frame_index.keys == NULL && ht_table_init(&rc.frame_index, 256, 1) < 0)) {
        rc_free_state();
        PyErr_NoMemory();
        goto done;
    }
    memcpy(rc.cmdline, cmdline, (size_t)cmdline_len);
    rc.cmdline_len = (size_t)cmdline_len;
    rc.follow = follow;
    rc.interval_ns = interval_ns;
    rc.sample_bytes = sample_bytes;
    rc.current = 0;
    atomic_store(&rc_slow, 0);
    if (rc_open_file(path) < 0) {
        ht_error_os(path);
        rc_free_state();
        goto done;
    }
    ht_cap_thread_name(tname);
    if (rc_sampler_start() < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        ht_cap_close();
        rc_free_state();
        goto done;
    }
    ht_runcap_on = 1;
    res = Py_NewRef(Py_None);
done:
    Py_DECREF(path_obj);
    return res;
}

/* _runcap_stop() -> None: final sample, END, file closed. The tracer may
 * keep running (the caller stops it next). */
static PyObject *
rc_py_stop(PyObject *self, PyObject *unused)
{
    if (!ht_runcap_on) {
        rc_sampler_stop();
        Py_RETURN_NONE;
    }
    unsigned s = atomic_exchange(&rc_slow, 0);
    ht_runcap_on = 0;
    rc_sampler_stop();
    int rc_err = 0;
    if (!(s & RC_CHILD) && ht_cap_active()) {   /* RC_CHILD: the child's file was never opened */
        ht_cap_sample(ht_cap_now(), ht_proc_self_rss(NULL), rc.current);
        rc_err = ht_cap_close();
    }
    int e = errno;
    char *base = rc.base ? strdup(rc.base) : NULL;
    rc_free_state();
    if (rc_err < 0) {
        errno = e;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, base ? base : "capture");
        free(base);
        return NULL;
    }
    free(base);
    Py_RETURN_NONE;
}

/* _runcap_after_fork() -> bool: in a forked child (from os.register_at_fork):
 * restarts the sampler when the capture follows the fork. True when this
 * child is captured. */
static PyObject *
rc_py_after_fork(PyObject *self, PyObject *unused)
{
    if (!ht_runcap_on)
        Py_RETURN_FALSE;
    if (!rc.running && rc_sampler_start() < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

static PyObject *
rc_py_active(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(ht_runcap_on);
}

/* _runcap_marker(label): a marker on the timeline (GIL held). */
static PyObject *
rc_py_marker(PyObject *self, PyObject *args)
{
    const char *label;
    if (!PyArg_ParseTuple(args, "s:_runcap_marker", &label))
        return NULL;
    if (ht_runcap_on) {
        if (atomic_load(&rc_slow))
            rc_slow_path();
        if (ht_runcap_on)
            ht_cap_marker(ht_cap_now(), label);
    }
    Py_RETURN_NONE;
}

static PyObject *
rc_py_thread_name(PyObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:_runcap_thread_name", &name))
        return NULL;
    if (ht_runcap_on) {
        if (atomic_load(&rc_slow))
            rc_slow_path();
        if (ht_runcap_on)
            ht_cap_thread_name(name);
    }
    Py_RETURN_NONE;
}

/* _runcap_set_base(code or None): stacks written from now on stop below the
 * frames of `code` (the runner's function that execs the program). */
static PyObject *
rc_py_set_base(PyObject *self, PyObject *code)
{
    if (code != Py_None && !PyCode_Check(code))
        return PyErr_Format(PyExc_TypeError, "expected a code object or None");
    Py_XSETREF(rc.base_code, code == Py_None ? NULL : Py_NewRef(code));
    Py_RETURN_NONE;
}

static PyMethodDef rc_methods[] = {
    {"_runcap_set_base", rc_py_set_base, METH_O,
     "_runcap_set_base(code): stacks are written from the program's frames up, not heaptrail's."},
    {"_runcap_start", rc_py_start, METH_VARARGS,
     "_runcap_start(path, interval_ns, sample_bytes, follow, cmdline, thread_name): open the capture."},
    {"_runcap_stop", rc_py_stop, METH_NOARGS, "Final sample, END, close the capture."},
    {"_runcap_after_fork", rc_py_after_fork, METH_NOARGS, "In a forked child: restart the sampler."},
    {"_runcap_active", rc_py_active, METH_NOARGS, "True while a capture is open in this process."},
    {"_runcap_marker", rc_py_marker, METH_VARARGS, "Writes a marker into the open capture."},
    {"_runcap_thread_name", rc_py_thread_name, METH_VARARGS, "Names the calling thread in the capture."},
    {NULL, NULL, 0, NULL},
};

int
ht_runcap_init(PyObject *m)
{
    return PyModule_AddFunctions(m, rc_methods);
}
