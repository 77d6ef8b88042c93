/* proc.c - process memory: the /proc readers (status, statm, smaps_rollup,
 * smaps), pymalloc statistics, glibc mallinfo2 and gc pause timing.
 *
 * Python-visible (wrapped by heaptrail/process.py):
 *   proc_memory(pid) -> Memory         proc_maps(pid) -> [Mapping]
 *   proc_pymalloc() -> Pymalloc         proc_malloc() -> Malloc
 *   gc_pause_callback(phase, info)     gc_pauses() / gc_pauses_reset()
 *
 * The /proc files are read with the GIL released into plain C structs, then
 * turned into Python records: another thread of the patient keeps running
 * while a large smaps (tens of thousands of mappings) is parsed. smaps is
 * read through a fixed-size line buffer, so the memory used beyond the
 * result itself is bounded whatever the process looks like.
 *
 * All sizes are bytes. A field the kernel does not give (a kernel thread has
 * no VmRSS; smaps_rollup of another user's process is refused) is None.
 */
#include "common.h"
#include "codec.h"
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* ---------------------------------------------------------------------- */
/* Record types (struct sequences: tuples with names and a readable repr)  */

static PyTypeObject *ht_proc_MemoryType;
static PyTypeObject *ht_proc_MappingType;
static PyTypeObject *ht_proc_PymallocType;
static PyTypeObject *ht_proc_SizeClassType;
static PyTypeObject *ht_proc_MallocType;

static PyStructSequence_Field ht_proc_memory_fields[] = {
    {"pid", "process id"},
    {"name", "process name (status Name)"},
    {"rss", "resident set size (statm resident), bytes"},
    {"vms", "virtual memory size (statm size), bytes"},
    {"shared", "resident pages backed by files or shmem (statm shared), bytes"},
    {"uss", "unique set size: Private_Clean + Private_Dirty (smaps_rollup), bytes"},
    {"pss", "proportional set size (smaps_rollup Pss), bytes"},
    {"swap", "swapped out (status VmSwap), bytes"},
    {"peak_rss", "peak resident set size (status VmHWM), bytes"},
    {"data", "data + heap segments (status VmData), bytes"},
    {"stack", "main thread stack (status VmStk), bytes"},
    {"threads", "number of threads (status Threads)"},
    {NULL, NULL},
};
static PyStructSequence_Desc ht_proc_memory_desc = {
    "heaptrail.process.Memory",
    "Memory of one process as the kernel sees it; sizes in bytes, None where "
    "the kernel gives no figure (e.g. pss/uss of another user's process).",
    ht_proc_memory_fields, 12,
};

static PyStructSequence_Field ht_proc_mapping_fields[] = {
    {"start", "first address"},
    {"end", "address one past the last"},
    {"perms", "permissions, e.g. 'rw-p' (p private, s shared)"},
    {"offset", "offset in the mapped file"},
    {"path", "mapped file or pseudo-name ('[heap]'), '' when anonymous"},
    {"kind", "heap, stack, anon, file, shm, vdso, vvar, vsyscall or other"},
    {"size", "virtual size, bytes"},
    {"rss", "resident, bytes"},
    {"pss", "proportional set size, bytes"},
    {"shared_clean", "bytes"},
    {"shared_dirty", "bytes"},
    {"private_clean", "bytes"},
    {"private_dirty", "bytes"},
    {"swap", "swapped out, bytes"},
    {NULL, NULL},
};
static PyStructSequence_Desc ht_proc_mapping_desc = {
    "heaptrail.process.Mapping", "One mapping of /proc/PID/smaps; sizes in bytes.",
    ht_proc_mapping_fields, 14,
};

static PyStructSequence_Field ht_proc_pymalloc_fields[] = {
    {"in_use", "True when pymalloc serves the object allocator"},
    {"allocator", "'pymalloc', 'mimalloc' or 'malloc' (any non-pymalloc allocator)"},
    {"arena_size", "bytes per arena"},
    {"pool_size", "bytes per pool"},
    {"arenas", "arenas allocated now"},
    {"arenas_total", "arenas allocated since start"},
    {"arenas_reclaimed", "arenas given back since start"},
    {"arenas_highwater", "most arenas allocated at once"},
    {"pools_used", "pools holding at least one block"},
    {"pools_unused", "empty pools kept in arenas"},
    {"blocks_used", "blocks allocated"},
    {"blocks_free", "free blocks in used pools"},
    {"bytes_used", "bytes in allocated blocks"},
    {"bytes_free", "bytes in free blocks of used pools"},
    {"bytes_unused_pools", "bytes in empty pools"},
    {"bytes_overhead", "bytes lost to pool headers, quantization and arena alignment"},
    {"fragmentation", "bytes_free / (bytes_used + bytes_free): share of used pools that is free"},
    {"classes", "tuple of SizeClass, one per size class"},
    {NULL, NULL},
};
static PyStructSequence_Desc ht_proc_pymalloc_desc = {
    "heaptrail.process.Pymalloc",
    "pymalloc's state, parsed from sys._debugmallocstats(); when pymalloc is "
    "not in use only in_use and allocator are set.",
    ht_proc_pymalloc_fields, 18,
};

static PyStructSequence_Field ht_proc_sizeclass_fields[] = {
    {"index", "size class index"},
    {"block_size", "bytes per block"},
    {"pools", "pools of this class in use"},
    {"blocks_used", "blocks allocated"},
    {"blocks_free", "free blocks in this class's pools"},
    {NULL, NULL},
};
static PyStructSequence_Desc ht_proc_sizeclass_desc = {
    "heaptrail.process.SizeClass", "One pymalloc size class.", ht_proc_sizeclass_fields, 5,
};

static PyStructSequence_Field ht_proc_malloc_fields[] = {
    {"arena", "bytes obtained with sbrk/mmap for the heaps (mallinfo2 arena)"},
    {"in_use", "bytes in allocated chunks (uordblks)"},
    {"free", "bytes in free chunks (fordblks)"},
    {"mmapped", "bytes in chunks mapped on their own (hblkhd)"},
    {"mmapped_chunks", "chunks mapped on their own (hblks)"},
    {"free_chunks", "free chunks (ordblks)"},
    {"fastbin_chunks", "free fastbin chunks (smblks)"},
    {"fastbin_free", "bytes in free fastbin chunks (fsmblks)"},
    {"releasable", "bytes trimmable from the top of the main heap (keepcost)"},
    {NULL, NULL},
};
static PyStructSequence_Desc ht_proc_malloc_desc = {
    "heaptrail.process.Malloc", "glibc malloc statistics (mallinfo2); sizes in bytes.",
    ht_proc_malloc_fields, 9,
};

/* ---------------------------------------------------------------------- */
/* Arguments                                                               */

/* Converts the pid argument (None = this process) into *pid. Returns 0, or
 * -1 with an error set for anything but a positive int. */
static int
ht_proc_pid_arg(PyObject *arg, long *pid)
{
    if (arg == NULL || arg == Py_None) {
        *pid = (long)getpid();
        return 0;
    }
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        ht_error("pid must be an integer, not %.100s", Py_TYPE(arg)->tp_name);
        return -1;
    }
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(arg, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (!overflow && v <= 0)) {
        ht_error("pid must be a positive integer, not %R", arg);
        return -1;
    }
    if (overflow || v > 0x7fffffffL) {   /* Linux pids stay below 2**22 */
        ht_error("pid must be at most 2147483647, not %R", arg);
        return -1;
    }
    *pid = v;
    return 0;
}

/* True when s begins with prefix. */
static int
ht_proc_starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Sets field i of a record to v, or to None when v < 0 ("unknown"). A failed
 * int leaves the field NULL: callers check every field once at the end. */
static void
ht_proc_set_opt(PyObject *rec, Py_ssize_t i, int64_t v)
{
    PyObject *o;
    if (v < 0) {
        o = Py_None;
        Py_INCREF(o);
    } else {
        o = PyLong_FromLongLong(v);
    }
    PyStructSequence_SetItem(rec, i, o);
}

#if defined(__linux__)

/* ---------------------------------------------------------------------- */
/* A bounded line reader over a /proc file                                 */

#define HT_PROC_LINE_BUF 65536

/* Lines longer than the buffer (a path cannot be: PATH_MAX is 4096) are cut
 * to the buffer's size and the rest is skipped, so memory stays bounded. */
typedef struct ht_proc_lines {
    int fd;
    char *buf;
    size_t start, end;   /* unread bytes are buf[start..end) */
    int eof;
    int skipping;        /* dropping the tail of an over-long line */
    int err;             /* errno of a failed read, else 0 */
} ht_proc_lines;

/* Opens path; returns 0 or an errno value (nothing to close then). */
static int
ht_proc_lines_open(ht_proc_lines *lr, const char *path)
{
    memset(lr, 0, sizeof(*lr));
    lr->buf = malloc(HT_PROC_LINE_BUF);
    if (lr->buf == NULL)
        return ENOMEM;
    lr->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (lr->fd < 0) {
        int e = errno;
        free(lr->buf);
        lr->buf = NULL;
        return e;
    }
    return 0;
}

static void
ht_proc_lines_close(ht_proc_lines *lr)
{
    if (lr->fd >= 0)
        close(lr->fd);
    free(lr->buf);
    lr->fd = -1;
    lr->buf = NULL;
}

/* Reads more into the buffer after moving the unread bytes to its front.
 * Returns bytes read, 0 at end of file, -1 on error (lr->err set). */
static ssize_t
ht_proc_lines_fill(ht_proc_lines *lr)
{
    if (lr->start > 0) {
        memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
        lr->end -= lr->start;
        lr->start = 0;
    }
    for (;;) {
        ssize_t n = read(lr->fd, lr->buf + lr->end, HT_PROC_LINE_BUF - 1 - lr->end);
        if (n >= 0) {
            lr->end += (size_t)n;
            if (n == 0)
                lr->eof = 1;
            return n;
        }
        if (errno != EINTR) {
            lr->err = errno;
            return -1;
        }
    }
}

/* Returns the next line, NUL-terminated without its newline, or NULL at the
 * end of the file or on a read error (lr->err). The line stays valid until
 * the next call. */
static char *
ht_proc_lines_next(ht_proc_lines *lr)
{
    for (;;) {
        char *s = lr->buf + lr->start;
        char *nl = memchr(s, '\n', lr->end - lr->start);
        if (nl != NULL) {
            *nl = '\0';
            lr->start = (size_t)(nl - lr->buf) + 1;
            if (lr->skipping) {
                lr->skipping = 0;
                continue;
            }
            return s;
        }
        if (lr->end - lr->start >= HT_PROC_LINE_BUF - 1) {
            /* over-long line: hand out what fits, drop the rest */
            lr->buf[HT_PROC_LINE_BUF - 1] = '\0';
            lr->start = lr->end = 0;
            int was_skipping = lr->skipping;
            lr->skipping = 1;
            if (!was_skipping)
                return lr->buf;
            continue;
        }
        if (lr->eof) {
            if (lr->end == lr->start || lr->skipping)
                return NULL;
            lr->buf[lr->end] = '\0';   /* last line without a newline */
            lr->start = lr->end;
            return s;
        }
        if (ht_proc_lines_fill(lr) < 0)
            return NULL;
    }
}

/* _proc_read_lines(path) -> [bytes]: every line as the reader hands it out
 * (over-long ones cut to the buffer). For tests of the reader only. */
static PyObject *
ht_proc_read_lines_py(PyObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s:_proc_read_lines", &path))
        return NULL;
    ht_proc_lines lr;
    int e = ht_proc_lines_open(&lr, path);
    if (e) {
        errno = e;
        return ht_error_os(path);
    }
    PyObject *list = PyList_New(0);
    char *line;
    while (list != NULL && (line = ht_proc_lines_next(&lr)) != NULL) {
        PyObject *b = PyBytes_FromString(line);
        if (b == NULL || PyList_Append(list, b) < 0)
            Py_CLEAR(list);
        Py_XDECREF(b);
    }
    if (list != NULL && lr.err) {
        errno = lr.err;
        Py_CLEAR(list);
        ht_error_os(path);
    }
    ht_proc_lines_close(&lr);
    return list;
}

/* ---------------------------------------------------------------------- */
/* Field parsing                                                           */

/* Splits "Key:   123 kB" into key (NUL-terminated in place) and value in
 * bytes (kB scaled). Returns the key, or NULL when the line is not a key
 * line. */
static const char *
ht_proc_kv(char *line, uint64_t *value)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return NULL;
    for (char *c = line; c < colon; c++)
        if (*c == ' ')
            return NULL;   /* a header line such as "7f..-7f.. r--p ..." */
    *colon = '\0';
    char *p = colon + 1;
    while (*p == ' ' || *p == '\t')
        p++;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    while (*end == ' ')
        end++;
    if (end[0] == 'k' && end[1] == 'B')
        v *= 1024;
    *value = (uint64_t)v;
    return line;
}

/* ---------------------------------------------------------------------- */
/* smaps: one row per mapping                                              */

enum {
    HT_KIND_HEAP, HT_KIND_STACK, HT_KIND_ANON, HT_KIND_FILE, HT_KIND_SHM,
    HT_KIND_VDSO, HT_KIND_VVAR, HT_KIND_VSYSCALL, HT_KIND_OTHER, HT_KIND_COUNT
};
static const char *const ht_proc_kind_names[HT_KIND_COUNT] = {
    "heap", "stack", "anon", "file", "shm", "vdso", "vvar", "vsyscall", "other",
};
static PyObject *ht_proc_kind_str[HT_KIND_COUNT];   /* interned, made at init */

typedef struct ht_proc_map {
    uint64_t start, end, offset;
    uint64_t rss, pss, shared_clean, shared_dirty, private_clean, private_dirty, swap;
    size_t path_off, path_len;   /* into ht_proc_maplist.paths */
    char perms[5];
    uint8_t kind;
} ht_proc_map;

typedef struct ht_proc_maplist {
    ht_proc_map *rows;
    size_t n, cap;
    ht_buf paths;
    int nomem;
} ht_proc_maplist;

/* What a mapping is, from its path and permissions. */
static uint8_t
ht_proc_kind_of(const char *path, const char *perms)
{
    int shared = perms[3] == 's';
    if (path[0] == '\0')
        return shared ? HT_KIND_SHM : HT_KIND_ANON;
    if (path[0] == '[') {
        if (strcmp(path, "[heap]") == 0)
            return HT_KIND_HEAP;
        if (ht_proc_starts(path, "[stack"))
            return HT_KIND_STACK;
        if (strcmp(path, "[vdso]") == 0)
            return HT_KIND_VDSO;
        if (ht_proc_starts(path, "[vvar"))
            return HT_KIND_VVAR;
        if (strcmp(path, "[vsyscall]") == 0)
            return HT_KIND_VSYSCALL;
        if (ht_proc_starts(path, "[anon_shmem:"))
            return HT_KIND_SHM;
        if (ht_proc_starts(path, "[anon:"))
            return HT_KIND_ANON;
        return HT_KIND_OTHER;
    }
    if (ht_proc_starts(path, "/dev/shm/") || ht_proc_starts(path, "/SYSV") ||
        ht_proc_starts(path, "/memfd:") || (shared && ht_proc_starts(path, "/dev/zero")))
        return HT_KIND_SHM;
    return HT_KIND_FILE;
}

/* Parses a header line "start-end perms offset dev inode   path" into a new
 * row. Returns 1 when it was a header, 0 when not, -1 when out of memory. */
static int
ht_proc_map_header(ht_proc_maplist *ml, char *line)
{
    char *p = line, *end;
    unsigned long long start = strtoull(p, &end, 16);
    if (end == p || *end != '-')
        return 0;
    p = end + 1;
    unsigned long long stop = strtoull(p, &end, 16);
    if (end == p || *end != ' ' || stop < start)
        return 0;
    p = end + 1;
    ht_proc_map row;
    memset(&row, 0, sizeof(row));
    size_t i = 0;
    while (i < 4 && p[i] != '\0' && p[i] != ' ')
        row.perms[i] = p[i], i++;
    p += i;
    row.start = start;
    row.end = stop;
    row.offset = strtoull(p, &end, 16);
    p = end;
    for (int field = 0; field < 2; field++) {   /* dev, inode */
        while (*p == ' ')
            p++;
        while (*p != '\0' && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    row.kind = ht_proc_kind_of(p, row.perms);
    row.path_off = ml->paths.len;
    row.path_len = strlen(p);
    ht_buf_put(&ml->paths, p, row.path_len);
    if (ml->paths.error)
        return -1;
    if (ml->n == ml->cap) {
        size_t cap = ml->cap ? ml->cap * 2 : 256;
        ht_proc_map *rows = realloc(ml->rows, cap * sizeof(*rows));
        if (rows == NULL)
            return -1;
        ml->rows = rows;
        ml->cap = cap;
    }
    ml->rows[ml->n++] = row;
    return 1;
}

/* Adds a "Key: N kB" line to the current row. */
static void
ht_proc_map_field(ht_proc_map *row, const char *key, uint64_t v)
{
    switch (key[0]) {
    case 'R': if (strcmp(key, "Rss") == 0) row->rss = v; break;
    case 'P':
        if (strcmp(key, "Pss") == 0) row->pss = v;
        else if (strcmp(key, "Private_Clean") == 0) row->private_clean = v;
        else if (strcmp(key, "Private_Dirty") == 0) row->private_dirty = v;
        break;
    case 'S':
        if (strcmp(key, "Shared_Clean") == 0) row->shared_clean = v;
        else if (strcmp(key, "Shared_Dirty") == 0) row->shared_dirty = v;
        else if (strcmp(key, "Swap") == 0) row->swap = v;
        break;
    default: break;
    }
}

static void
ht_proc_maplist_free(ht_proc_maplist *ml)
{
    free(ml->rows);
    ht_buf_free(&ml->paths);
    memset(ml, 0, sizeof(*ml));
}

/* Reads /proc/PID/smaps into ml. Runs without the GIL. Returns 0 or an
 * errno value. */
static int
ht_proc_read_smaps(long pid, ht_proc_maplist *ml)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/smaps", pid);
    ht_proc_lines lr;
    int e = ht_proc_lines_open(&lr, path);
    if (e)
        return e;
    char *line;
    while ((line = ht_proc_lines_next(&lr)) != NULL) {
        uint64_t v;
        const char *key = ht_proc_kv(line, &v);
        if (key != NULL) {
            if (ml->n > 0)
                ht_proc_map_field(&ml->rows[ml->n - 1], key, v);
            continue;
        }
        if (ht_proc_map_header(ml, line) < 0) {
            e = ENOMEM;
            break;
        }
    }
    if (e == 0)
        e = lr.err;
    ht_proc_lines_close(&lr);
    return e;
}

/* ---------------------------------------------------------------------- */
/* status, statm, smaps_rollup                                             */

/* The figures of Memory, in its field order after pid; -1 means "the kernel
 * gave no figure" (None in Python). */
enum {
    HT_MEM_RSS, HT_MEM_VMS, HT_MEM_SHARED, HT_MEM_USS, HT_MEM_PSS, HT_MEM_SWAP,
    HT_MEM_PEAK_RSS, HT_MEM_DATA, HT_MEM_STACK, HT_MEM_THREADS, HT_MEM_COUNT
};
typedef struct ht_proc_mem {
    int64_t v[HT_MEM_COUNT];
    long tgid;       /* status Tgid: the process a thread id belongs to; 0 unknown */
    char name[64];   /* status Name: at most 15 bytes (TASK_COMM_LEN), escaped */
} ht_proc_mem;

/* Reads status into m (every figure unknown first). 0 or an errno value. */
static int
ht_proc_read_status(long pid, ht_proc_mem *m)
{
    for (int i = 0; i < HT_MEM_COUNT; i++)
        m->v[i] = -1;
    m->tgid = 0;
    m->name[0] = '\0';
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    ht_proc_lines lr;
    int e = ht_proc_lines_open(&lr, path);
    if (e)
        return e;
    char *line;
    while ((line = ht_proc_lines_next(&lr)) != NULL) {
        if (ht_proc_starts(line, "Name:\t")) {
            snprintf(m->name, sizeof(m->name), "%s", line + 6);
            continue;
        }
        uint64_t v;
        const char *key = ht_proc_kv(line, &v);
        if (key == NULL)
            continue;
        if (strcmp(key, "Tgid") == 0) m->tgid = (long)v;
        else if (strcmp(key, "VmSwap") == 0) m->v[HT_MEM_SWAP] = (int64_t)v;
        else if (strcmp(key, "VmHWM") == 0) m->v[HT_MEM_PEAK_RSS] = (int64_t)v;
        else if (strcmp(key, "VmData") == 0) m->v[HT_MEM_DATA] = (int64_t)v;
        else if (strcmp(key, "VmStk") == 0) m->v[HT_MEM_STACK] = (int64_t)v;
        else if (strcmp(key, "Threads") == 0) m->v[HT_MEM_THREADS] = (int64_t)v;
    }
    e = lr.err;
    ht_proc_lines_close(&lr);
    return e;
}

/* The cached statm descriptors, by number: the process that opened each and
 * the file it is. A descriptor kept across fork still reads the parent's
 * figures (/proc/self was resolved at open), so a child opens its own; the
 * inherited copy is closed only while it is still that file (the program
 * may have closed it and opened something else under its number). A
 * descriptor past the table is not kept. */
#define HT_PROC_RSS_FDS 1024
static struct {
    pid_t pid;
    dev_t dev;
    ino_t ino;
} ht_proc_rss_fds[HT_PROC_RSS_FDS];

/* The cached descriptor *cache if this process opened it, else -1 (the
 * inherited one closed when it is still ours to close). */
static int
ht_proc_rss_cached(int *cache, pid_t me)
{
    int fd = *cache;
    if (fd < 0 || fd >= HT_PROC_RSS_FDS || ht_proc_rss_fds[fd].pid == me)
        return fd;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_dev == ht_proc_rss_fds[fd].dev &&
        st.st_ino == ht_proc_rss_fds[fd].ino)
        close(fd);
    *cache = -1;
    return -1;
}

/* Opens /proc/self/statm, recording it when it is to be kept in *cache. */
static int
ht_proc_rss_open(int *cache, pid_t me)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (cache == NULL || fd < 0)
        return fd;
    if (fd < HT_PROC_RSS_FDS && fstat(fd, &st) == 0) {
        ht_proc_rss_fds[fd].pid = me;
        ht_proc_rss_fds[fd].dev = st.st_dev;
        ht_proc_rss_fds[fd].ino = st.st_ino;
        *cache = fd;
    }
    return fd;
}

uint64_t
ht_proc_self_rss(int *cache)
{
    pid_t me = getpid();
    int fd = cache != NULL ? ht_proc_rss_cached(cache, me) : -1;
    if (fd < 0)
        fd = ht_proc_rss_open(cache, me);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (cache == NULL || *cache != fd)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* statm: "size resident shared text lib data dt", in pages. */
static int
ht_proc_read_statm(long pid, ht_proc_mem *m)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/statm", pid);
    ht_proc_lines lr;
    int e = ht_proc_lines_open(&lr, path);
    if (e)
        return e;
    char *line = ht_proc_lines_next(&lr);
    unsigned long long size, resident, shared;
    if (line != NULL && sscanf(line, "%llu %llu %llu", &size, &resident, &shared) == 3) {
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        m->v[HT_MEM_VMS] = (int64_t)(size * page);
        m->v[HT_MEM_RSS] = (int64_t)(resident * page);
        m->v[HT_MEM_SHARED] = (int64_t)(shared * page);
    }
    e = lr.err;
    ht_proc_lines_close(&lr);
    return e;
}

/* smaps_rollup: the sums of smaps in one line each (Linux >= 4.14). An empty
 * file (a kernel thread, a zombie) leaves pss/uss unknown. */
static int
ht_proc_read_rollup(long pid, ht_proc_mem *m)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", pid);
    ht_proc_lines lr;
    int e = ht_proc_lines_open(&lr, path);
    if (e)
        return e;
    ht_proc_map sum;
    memset(&sum, 0, sizeof(sum));
    int seen = 0;
    char *line;
    while ((line = ht_proc_lines_next(&lr)) != NULL) {
        uint64_t v;
        const char *key = ht_proc_kv(line, &v);
        if (key != NULL) {
            ht_proc_map_field(&sum, key, v);
            seen = 1;
        }
    }
    e = lr.err;
    ht_proc_lines_close(&lr);
    if (e == 0 && seen) {
        m->v[HT_MEM_PSS] = (int64_t)sum.pss;
        m->v[HT_MEM_USS] = (int64_t)(sum.private_clean + sum.private_dirty);
    }
    return e;
}

/* Older kernels have no smaps_rollup: sum smaps instead. */
static int
ht_proc_rollup_from_smaps(long pid, ht_proc_mem *m)
{
    ht_proc_maplist ml;
    memset(&ml, 0, sizeof(ml));
    ht_buf_init(&ml.paths);
    int e = ht_proc_read_smaps(pid, &ml);
    if (e == 0 && ml.n > 0) {
        m->v[HT_MEM_PSS] = m->v[HT_MEM_USS] = 0;
        for (size_t i = 0; i < ml.n; i++) {
            m->v[HT_MEM_PSS] += (int64_t)ml.rows[i].pss;
            m->v[HT_MEM_USS] += (int64_t)(ml.rows[i].private_clean + ml.rows[i].private_dirty);
        }
    }
    ht_proc_maplist_free(&ml);
    return e;
}

/* True when pid names a thread other than its process's main thread: Linux
 * answers /proc/TID/... for every thread id, hidden from the listing of /proc
 * but there, with the thread's name and its process's memory. */
static int
ht_proc_is_thread(long pid, const ht_proc_mem *m)
{
    return m->tgid > 0 && m->tgid != pid;
}

/* Reads every figure of Memory. Runs without the GIL. Returns 0, or an errno
 * value with *failed naming the file that failed. */
static int
ht_proc_read_memory(long pid, ht_proc_mem *m, const char **failed)
{
    int e;
    *failed = "status";
    if ((e = ht_proc_read_status(pid, m)) != 0)
        return e;
    if (ht_proc_is_thread(pid, m))
        return 0;
    *failed = "statm";
    if ((e = ht_proc_read_statm(pid, m)) != 0)
        return e;
    *failed = "smaps_rollup";
    e = ht_proc_read_rollup(pid, m);
    if (e == ENOENT && access("/proc/self/smaps_rollup", F_OK) != 0)
        e = ht_proc_rollup_from_smaps(pid, m);
    /* Refused (another user's process) or no address space (a zombie, a
     * kernel thread: ESRCH, while status was there a moment ago): pss and
     * uss stay unknown rather than failing the whole record. */
    if (e == EACCES || e == EPERM || e == ESRCH)
        e = 0;
    return e;
}

/* Turns a failed /proc read into the user's error. Returns NULL. */
static PyObject *
ht_proc_fail(long pid, const char *file, int e)
{
    if (e == ENOENT || e == ESRCH)
        return ht_error("no process with pid %ld", pid);
    if (e == EACCES || e == EPERM)
        return ht_error("permission denied reading /proc/%ld/%s (a process of another user?)",
                        pid, file);
    if (e == ENOMEM)
        return PyErr_NoMemory();
    char path[80];
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
    errno = e;
    return ht_error_os(path);
}

/* A thread id given as a pid. Returns NULL. */
static PyObject *
ht_proc_thread_error(long pid, const ht_proc_mem *m)
{
    return ht_error("pid %ld is a thread of process %ld, not a process", pid, m->tgid);
}

static PyObject *
ht_proc_memory(PyObject *self, PyObject *args)
{
    PyObject *arg = Py_None;
    long pid;
    if (!PyArg_ParseTuple(args, "|O:proc_memory", &arg) || ht_proc_pid_arg(arg, &pid) < 0)
        return NULL;
    ht_proc_mem m;
    const char *failed = NULL;
    int e;
    Py_BEGIN_ALLOW_THREADS
    e = ht_proc_read_memory(pid, &m, &failed);
    Py_END_ALLOW_THREADS
    if (e)
        return ht_proc_fail(pid, failed, e);
    if (ht_proc_is_thread(pid, &m))
        return ht_proc_thread_error(pid, &m);
    PyObject *rec = PyStructSequence_New(ht_proc_MemoryType);
    if (rec == NULL)
        return NULL;
    ht_proc_set_opt(rec, 0, pid);
    PyStructSequence_SetItem(rec, 1, PyUnicode_DecodeFSDefault(m.name));
    for (Py_ssize_t i = 0; i < HT_MEM_COUNT; i++)
        ht_proc_set_opt(rec, i + 2, m.v[i]);
    for (Py_ssize_t i = 0; i < HT_MEM_COUNT + 2; i++)
        if (PyStructSequence_GetItem(rec, i) == NULL) {   /* a failed PyLong */
            Py_DECREF(rec);
            return NULL;
        }
    return rec;
}

/* Builds one Mapping record; returns a new reference or NULL. */
static PyObject *
ht_proc_map_record(const ht_proc_maplist *ml, const ht_proc_map *r)
{
    PyObject *rec = PyStructSequence_New(ht_proc_MappingType);
    if (rec == NULL)
        return NULL;
    const char *path = (const char *)ml->paths.data + r->path_off;
    PyObject *items[14] = {
        PyLong_FromUnsignedLongLong(r->start),
        PyLong_FromUnsignedLongLong(r->end),
        PyUnicode_FromString(r->perms),
        PyLong_FromUnsignedLongLong(r->offset),
        PyUnicode_DecodeFSDefaultAndSize(r->path_len ? path : "", (Py_ssize_t)r->path_len),
        ht_proc_kind_str[r->kind],
        PyLong_FromUnsignedLongLong(r->end - r->start),
        PyLong_FromUnsignedLongLong(r->rss),
        PyLong_FromUnsignedLongLong(r->pss),
        PyLong_FromUnsignedLongLong(r->shared_clean),
        PyLong_FromUnsignedLongLong(r->shared_dirty),
        PyLong_FromUnsignedLongLong(r->private_clean),
        PyLong_FromUnsignedLongLong(r->private_dirty),
        PyLong_FromUnsignedLongLong(r->swap),
    };
    Py_INCREF(items[5]);
    int ok = 1;
    for (Py_ssize_t i = 0; i < 14; i++) {
        if (items[i] == NULL)
            ok = 0;
        PyStructSequence_SetItem(rec, i, items[i]);   /* steals; NULL is kept as NULL */
    }
    if (!ok) {
        Py_DECREF(rec);
        return NULL;
    }
    return rec;
}

static PyObject *
ht_proc_maps(PyObject *self, PyObject *args)
{
    PyObject *arg = Py_None;
    long pid;
    if (!PyArg_ParseTuple(args, "|O:proc_maps", &arg) || ht_proc_pid_arg(arg, &pid) < 0)
        return NULL;
    ht_proc_maplist ml;
    memset(&ml, 0, sizeof(ml));
    ht_buf_init(&ml.paths);
    ht_proc_mem m;
    int e, thread = 0;
    const char *failed = "status";
    Py_BEGIN_ALLOW_THREADS
    e = ht_proc_read_status(pid, &m);   /* is pid a process? */
    if (e == 0 && !(thread = ht_proc_is_thread(pid, &m))) {
        failed = "smaps";
        e = ht_proc_read_smaps(pid, &ml);
    }
    Py_END_ALLOW_THREADS
    PyObject *list = NULL;
    if (e) {
        ht_proc_fail(pid, failed, e);
        goto cleanup;
    }
    if (thread) {
        ht_proc_thread_error(pid, &m);
        goto cleanup;
    }
    list = PyList_New((Py_ssize_t)ml.n);
    if (list == NULL)
        goto cleanup;
    for (size_t i = 0; i < ml.n; i++) {
        PyObject *rec = ht_proc_map_record(&ml, &ml.rows[i]);
        if (rec == NULL) {
            Py_CLEAR(list);
            goto cleanup;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, rec);
    }
cleanup:
    ht_proc_maplist_free(&ml);
    return list;
}

#else /* not Linux */

/* Checks the pid argument as on Linux, then says why there is no answer. */
static PyObject *
ht_proc_not_linux(PyObject *args)
{
    PyObject *arg = Py_None;
    long pid;
    if (!PyArg_ParseTuple(args, "|O", &arg) || ht_proc_pid_arg(arg, &pid) < 0)
        return NULL;
    return ht_error("process memory needs Linux's /proc (this platform has none)");
}

static PyObject *
ht_proc_memory(PyObject *self, PyObject *args)
{
    return ht_proc_not_linux(args);
}

static PyObject *
ht_proc_maps(PyObject *self, PyObject *args)
{
    return ht_proc_not_linux(args);
}

#endif /* __linux__ */

/* ---------------------------------------------------------------------- */
/* pymalloc: sys._debugmallocstats() captured from fd 2 and parsed          */

/* There is no public C API for pymalloc's internals; the public way is
 * sys._debugmallocstats(), which prints to C stderr. We point fd 2 at an
 * anonymous file for the length of the call (a file, not a pipe: a pipe
 * would block once its buffer filled, with nobody reading), restore it, and
 * parse the text. The GIL is held throughout, so no Python thread can write
 * to stderr meanwhile; a C thread that writes to fd 2 in that window would
 * have its text swallowed. */

#define HT_PYM_MAX_CLASSES 256
#define HT_PYM_MAX_TEXT (4u << 20)

typedef struct ht_pym_class {
    uint64_t pools, used, avail;
    int seen;
} ht_pym_class;

typedef struct ht_pym {
    int in_use, mimalloc;
    unsigned threshold, nclasses;
    ht_pym_class cls[HT_PYM_MAX_CLASSES];
    uint64_t arena_size, pool_size, arenas, arenas_total, arenas_reclaimed, arenas_highwater;
    uint64_t pools_unused, bytes_used, bytes_free, bytes_unused_pools, overhead;
} ht_pym;

static int
ht_pym_tmpfd(void)
{
#if defined(__linux__) && defined(MFD_CLOEXEC)
    int fd = memfd_create("heaptrail-mallocstats", MFD_CLOEXEC);
    if (fd >= 0)
        return fd;
#endif
    FILE *f = tmpfile();
    if (f == NULL)
        return -1;
    int copy = dup(fileno(f));   /* the file lives on while copy is open */
    fclose(f);
    return copy;
}

/* Calls sys._debugmallocstats() with fd 2 redirected to fd. Returns 0 or -1
 * with an exception set; fd 2 is restored either way. */
static int
ht_pym_call_redirected(int fd)
{
    PyObject *fn = PySys_GetObject("_debugmallocstats");   /* borrowed */
    if (fn == NULL) {
        ht_error("this Python has no sys._debugmallocstats()");
        return -1;
    }
    fflush(stderr);
    int saved = dup(2);   /* -1 when fd 2 was closed: close it again after */
    if (dup2(fd, 2) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (saved >= 0)
            close(saved);
        return -1;
    }
    PyObject *r = PyObject_CallNoArgs(fn);
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    } else {
        close(2);
    }
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Reads what was written to fd (at most HT_PYM_MAX_TEXT bytes, the pymalloc
 * part comes first) into a NUL-terminated malloc'd string, or NULL with an
 * exception set. */
static char *
ht_pym_slurp(int fd)
{
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    size_t n = (size_t)size > HT_PYM_MAX_TEXT ? HT_PYM_MAX_TEXT : (size_t)size;
    char *text = malloc(n + 1);
    if (text == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, text + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    text[got] = '\0';
    return text;
}

/* "  1,234,567" after the '=' of a line -> 1234567 (commas are the printer's
 * thousands separators). */
static uint64_t
ht_pym_number_after_eq(const char *line)
{
    const char *p = strchr(line, '=');
    uint64_t v = 0;
    if (p == NULL)
        return 0;
    for (p++; *p; p++) {
        if (*p >= '0' && *p <= '9')
            v = v * 10 + (uint64_t)(*p - '0');
        else if (*p != ',' && *p != ' ')
            break;
    }
    return v;
}

/* One row of the class table: "    3     64          50    12593    157". */
static int
ht_pym_class_row(ht_pym *s, const char *line)
{
    unsigned idx, size;
    unsigned long long pools, used, avail;
    if (sscanf(line, "%u %u %llu %llu %llu", &idx, &size, &pools, &used, &avail) != 5)
        return 0;
    if (idx >= s->nclasses || idx >= HT_PYM_MAX_CLASSES)
        return 0;
    s->cls[idx].pools = pools;
    s->cls[idx].used = used;
    s->cls[idx].avail = avail;
    s->cls[idx].seen = 1;
    return 1;
}

/* The summary lines after the class table. */
static void
ht_pym_summary_line(ht_pym *s, const char *line)
{
    unsigned long long a, b;
    if (ht_proc_starts(line, "# arenas allocated total"))
        s->arenas_total = ht_pym_number_after_eq(line);
    else if (ht_proc_starts(line, "# arenas reclaimed"))
        s->arenas_reclaimed = ht_pym_number_after_eq(line);
    else if (ht_proc_starts(line, "# arenas highwater mark"))
        s->arenas_highwater = ht_pym_number_after_eq(line);
    else if (ht_proc_starts(line, "# arenas allocated current"))
        s->arenas = ht_pym_number_after_eq(line);
    else if (ht_proc_starts(line, "# bytes in allocated blocks"))
        s->bytes_used = ht_pym_number_after_eq(line);
    else if (ht_proc_starts(line, "# bytes in available blocks"))
        s->bytes_free = ht_pym_number_after_eq(line);
    else if (ht_proc_starts(line, "# bytes lost to pool headers") ||
             ht_proc_starts(line, "# bytes lost to quantization") ||
             ht_proc_starts(line, "# bytes lost to arena alignment"))
        s->overhead += ht_pym_number_after_eq(line);
    else if (sscanf(line, "%llu arenas * %llu bytes/arena", &a, &b) == 2)
        s->arena_size = b;
    else if (sscanf(line, "%llu unused pools * %llu bytes", &a, &b) == 2) {
        s->pools_unused = a;
        s->pool_size = b;
        s->bytes_unused_pools = ht_pym_number_after_eq(line);
    }
}

/* Parses the text of _debugmallocstats. The pymalloc section starts with
 * "Small block threshold = T, in N size classes." followed by the class
 * table; mimalloc (3.13) prints the same first words but no table, and
 * PYTHONMALLOC=malloc prints no section at all. */
static void
ht_pym_parse(ht_pym *s, char *text)
{
    int in_table = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned t, n;
        if (sscanf(line, "Small block threshold = %u, in %u size classes", &t, &n) == 2) {
            s->threshold = t;
            s->nclasses = n > HT_PYM_MAX_CLASSES ? HT_PYM_MAX_CLASSES : n;
        } else if (ht_proc_starts(line, "Medium block threshold")) {
            s->mimalloc = 1;
        } else if (ht_proc_starts(line, "class") && strstr(line, "num pools") && s->nclasses) {
            s->in_use = in_table = 1;
        } else if (in_table && ht_proc_starts(line, "-----")) {
            continue;
        } else if (in_table && ht_pym_class_row(s, line)) {
            continue;
        } else if (s->in_use) {
            in_table = 0;
            ht_pym_summary_line(s, line);
        }
    }
}

static PyObject *
ht_pym_classes(const ht_pym *s)
{
    PyObject *t = PyTuple_New((Py_ssize_t)s->nclasses);
    if (t == NULL)
        return NULL;
    unsigned step = s->nclasses ? s->threshold / s->nclasses : 0;
    for (unsigned i = 0; i < s->nclasses; i++) {
        PyObject *rec = PyStructSequence_New(ht_proc_SizeClassType);
        if (rec == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, rec);
        ht_proc_set_opt(rec, 0, i);
        ht_proc_set_opt(rec, 1, (int64_t)(i + 1) * step);
        ht_proc_set_opt(rec, 2, (int64_t)s->cls[i].pools);
        ht_proc_set_opt(rec, 3, (int64_t)s->cls[i].used);
        ht_proc_set_opt(rec, 4, (int64_t)s->cls[i].avail);
        for (Py_ssize_t k = 0; k < 5; k++)
            if (PyStructSequence_GetItem(rec, k) == NULL) {
                Py_DECREF(t);
                return NULL;
            }
    }
    return t;
}

/* Fills a Pymalloc record from the parsed state; returns it or NULL. */
static PyObject *
ht_pym_record(const ht_pym *s)
{
    PyObject *rec = PyStructSequence_New(ht_proc_PymallocType);
    if (rec == NULL)
        return NULL;
    PyObject *in_use = s->in_use ? Py_True : Py_False;
    Py_INCREF(in_use);
    PyStructSequence_SetItem(rec, 0, in_use);
    PyStructSequence_SetItem(rec, 1, PyUnicode_FromString(
        s->in_use ? "pymalloc" : s->mimalloc ? "mimalloc" : "malloc"));
    uint64_t pools = 0, used = 0, avail = 0;
    for (unsigned i = 0; i < s->nclasses; i++) {
        pools += s->cls[i].pools;
        used += s->cls[i].used;
        avail += s->cls[i].avail;
    }
    int64_t v[14] = {
        (int64_t)s->arena_size, (int64_t)s->pool_size, (int64_t)s->arenas,
        (int64_t)s->arenas_total, (int64_t)s->arenas_reclaimed, (int64_t)s->arenas_highwater,
        (int64_t)pools, (int64_t)s->pools_unused, (int64_t)used, (int64_t)avail,
        (int64_t)s->bytes_used, (int64_t)s->bytes_free, (int64_t)s->bytes_unused_pools,
        (int64_t)s->overhead,
    };
    for (Py_ssize_t i = 0; i < 14; i++)
        ht_proc_set_opt(rec, i + 2, s->in_use ? v[i] : -1);
    uint64_t pooled = s->bytes_used + s->bytes_free;
    PyObject *frag = s->in_use ? PyFloat_FromDouble(pooled ? (double)s->bytes_free / (double)pooled : 0.0)
                               : (Py_INCREF(Py_None), Py_None);
    PyStructSequence_SetItem(rec, 16, frag);
    PyObject *classes = s->in_use ? ht_pym_classes(s) : (Py_INCREF(Py_None), Py_None);
    PyStructSequence_SetItem(rec, 17, classes);
    for (Py_ssize_t i = 0; i < 18; i++)
        if (PyStructSequence_GetItem(rec, i) == NULL) {
            Py_DECREF(rec);
            return NULL;
        }
    return rec;
}

static PyObject *
ht_proc_pymalloc(PyObject *self, PyObject *noargs)
{
    PyObject *result = NULL;
    char *text = NULL;
    ht_pym *s = calloc(1, sizeof(ht_pym));
    if (s == NULL)
        return PyErr_NoMemory();
    int fd = ht_pym_tmpfd();
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto cleanup;
    }
    if (ht_pym_call_redirected(fd) < 0)
        goto cleanup;
    if ((text = ht_pym_slurp(fd)) == NULL)
        goto cleanup;
    ht_pym_parse(s, text);
    result = ht_pym_record(s);
cleanup:
    if (fd >= 0)
        close(fd);
    free(text);
    free(s);
    return result;
}

/* _pymalloc_parse(text) -> Pymalloc: the parser alone, so tests can feed it
 * other Pythons' output and damaged text. */
static PyObject *
ht_proc_pymalloc_parse_py(PyObject *self, PyObject *args)
{
    const char *text;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "s#:_pymalloc_parse", &text, &n))
        return NULL;
    PyObject *result = NULL;
    ht_pym *s = calloc(1, sizeof(ht_pym));
    char *copy = malloc((size_t)n + 1);   /* the parser cuts lines in place */
    if (s == NULL || copy == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    memcpy(copy, text, (size_t)n);
    copy[n] = '\0';
    ht_pym_parse(s, copy);
    result = ht_pym_record(s);
cleanup:
    free(copy);
    free(s);
    return result;
}

/* ---------------------------------------------------------------------- */
/* glibc malloc                                                            */

static PyObject *
ht_proc_malloc(PyObject *self, PyObject *noargs)
{
#if defined(__GLIBC__)
#if __GLIBC_PREREQ(2, 33)
#define HT_HAVE_MALLINFO2 1
#endif
#endif
#if defined(HT_HAVE_MALLINFO2)
    struct mallinfo2 mi = mallinfo2();
    PyObject *rec = PyStructSequence_New(ht_proc_MallocType);
    if (rec == NULL)
        return NULL;
    size_t v[9] = {mi.arena, mi.uordblks, mi.fordblks, mi.hblkhd, mi.hblks,
                   mi.ordblks, mi.smblks, mi.fsmblks, mi.keepcost};
    int ok = 1;
    for (Py_ssize_t i = 0; i < 9; i++) {
        PyObject *o = PyLong_FromSize_t(v[i]);
        if (o == NULL)
            ok = 0;
        PyStructSequence_SetItem(rec, i, o);
    }
    if (!ok) {
        Py_DECREF(rec);
        return NULL;
    }
    return rec;
#else
    return ht_error("malloc statistics need glibc 2.33 or later (mallinfo2)");
#endif
}

/* ---------------------------------------------------------------------- */
/* gc pause timing                                                         */

/* Installed in gc.callbacks by heaptrail.process.track_gc_pauses(). The gc
 * calls it with ("start", info) before and ("stop", info) after each
 * collection, always with the GIL held: the GIL protects this state. The
 * callback only reads a monotonic clock and adds: no allocation. */
static struct {
    int started;              /* a "start" was seen and no "stop" yet */
    struct timespec t0;
    uint64_t count[3], total_ns[3], max_ns[3], last_ns[3];
} ht_gcp;

static PyObject *ht_gcp_generation_key;   /* interned "generation" */

static PyObject *
ht_proc_gc_pause_callback(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]))
        return ht_error("gc_pause_callback(phase, info) takes a phase string and a dict");
    if (PyUnicode_CompareWithASCIIString(args[0], "start") == 0) {
        clock_gettime(CLOCK_MONOTONIC, &ht_gcp.t0);
        ht_gcp.started = 1;
        Py_RETURN_NONE;
    }
    if (!ht_gcp.started || PyUnicode_CompareWithASCIIString(args[0], "stop") != 0)
        Py_RETURN_NONE;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ht_gcp.started = 0;
    long gen = 2;
    if (PyDict_Check(args[1])) {
        PyObject *g = PyDict_GetItemWithError(args[1], ht_gcp_generation_key);
        if (g == NULL && PyErr_Occurred())
            return NULL;
        if (g != NULL && PyLong_Check(g))
            gen = PyLong_AsLong(g);
        if (gen == -1 && PyErr_Occurred())
            return NULL;
    }
    if (gen < 0 || gen > 2)
        Py_RETURN_NONE;
    int64_t ns = (int64_t)(t1.tv_sec - ht_gcp.t0.tv_sec) * 1000000000 +
                 (t1.tv_nsec - ht_gcp.t0.tv_nsec);
    uint64_t d = ns > 0 ? (uint64_t)ns : 0;
    ht_gcp.count[gen]++;
    ht_gcp.total_ns[gen] += d;
    ht_gcp.last_ns[gen] = d;
    if (d > ht_gcp.max_ns[gen])
        ht_gcp.max_ns[gen] = d;
    Py_RETURN_NONE;
}

/* gc_pauses() -> ((count, total_s, max_s, last_s) for each generation) */
static PyObject *
ht_proc_gc_pauses(PyObject *self, PyObject *noargs)
{
    PyObject *t = PyTuple_New(3);
    if (t == NULL)
        return NULL;
    for (int g = 0; g < 3; g++) {
        PyObject *row = Py_BuildValue("(Kddd)", (unsigned long long)ht_gcp.count[g],
                                      ht_gcp.total_ns[g] / 1e9, ht_gcp.max_ns[g] / 1e9,
                                      ht_gcp.last_ns[g] / 1e9);
        if (row == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, g, row);
    }
    return t;
}

static PyObject *
ht_proc_gc_pauses_reset(PyObject *self, PyObject *noargs)
{
    memset(&ht_gcp, 0, sizeof(ht_gcp));
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------- */
/* Module registration                                                     */

static PyMethodDef ht_proc_methods[] = {
    {"proc_memory", ht_proc_memory, METH_VARARGS,
     "proc_memory(pid=None) -> Memory: /proc status, statm and smaps_rollup of a process."},
    {"proc_maps", ht_proc_maps, METH_VARARGS,
     "proc_maps(pid=None) -> list of Mapping: /proc/PID/smaps, one row per mapping."},
    {"proc_pymalloc", ht_proc_pymalloc, METH_NOARGS,
     "proc_pymalloc() -> Pymalloc: this process's pymalloc state."},
    {"proc_malloc", ht_proc_malloc, METH_NOARGS,
     "proc_malloc() -> Malloc: this process's glibc mallinfo2()."},
    {"gc_pause_callback", (PyCFunction)(void (*)(void))ht_proc_gc_pause_callback, METH_FASTCALL,
     "gc_pause_callback(phase, info): a gc.callbacks entry that times collections."},
    {"gc_pauses", ht_proc_gc_pauses, METH_NOARGS,
     "gc_pauses() -> per generation (count, total_s, max_s, last_s)."},
    {"gc_pauses_reset", ht_proc_gc_pauses_reset, METH_NOARGS, "Zeroes the gc pause figures."},
    {"_pymalloc_parse", ht_proc_pymalloc_parse_py, METH_VARARGS,
     "_pymalloc_parse(text) -> Pymalloc: the _debugmallocstats parser, for tests."},
#if defined(__linux__)
    {"_proc_read_lines", ht_proc_read_lines_py, METH_VARARGS,
     "_proc_read_lines(path) -> [bytes]: the /proc line reader, for tests."},
#endif
    {NULL, NULL, 0, NULL},
};

/* Creates a struct sequence type once and adds it to the module under its
 * short name. Returns 0 or -1. */
static int
ht_proc_add_type(PyObject *m, PyTypeObject **slot, PyStructSequence_Desc *desc)
{
    if (*slot == NULL) {
        *slot = PyStructSequence_NewType(desc);
        if (*slot == NULL)
            return -1;
    }
    const char *dot = strrchr(desc->name, '.');
    Py_INCREF(*slot);
    if (PyModule_AddObject(m, dot ? dot + 1 : desc->name, (PyObject *)*slot) < 0) {
        Py_DECREF(*slot);
        return -1;
    }
    return 0;
}

int
ht_proc_init(PyObject *m)
{
    if (ht_proc_add_type(m, &ht_proc_MemoryType, &ht_proc_memory_desc) < 0 ||
        ht_proc_add_type(m, &ht_proc_MappingType, &ht_proc_mapping_desc) < 0 ||
        ht_proc_add_type(m, &ht_proc_PymallocType, &ht_proc_pymalloc_desc) < 0 ||
        ht_proc_add_type(m, &ht_proc_SizeClassType, &ht_proc_sizeclass_desc) < 0 ||
        ht_proc_add_type(m, &ht_proc_MallocType, &ht_proc_malloc_desc) < 0)
        return -1;
#if defined(__linux__)
    for (int k = 0; k < HT_KIND_COUNT; k++) {
        if (ht_proc_kind_str[k] == NULL) {
            ht_proc_kind_str[k] = PyUnicode_InternFromString(ht_proc_kind_names[k]);
            if (ht_proc_kind_str[k] == NULL)
                return -1;
        }
    }
#endif
    if (ht_gcp_generation_key == NULL) {
        ht_gcp_generation_key = PyUnicode_InternFromString("generation");
        if (ht_gcp_generation_key == NULL)
            return -1;
    }
    return PyModule_AddFunctions(m, ht_proc_methods);
}
