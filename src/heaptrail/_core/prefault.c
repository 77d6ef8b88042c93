/* prefault.c - pages faulted in ahead of a writer (see prefault.h). */
#define _GNU_SOURCE 1
#include "prefault.h"

#include <stdint.h>
#include <stdlib.h>

#include "bigmem.h"

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#define HT_PF_SUPPORTED 1
#else
#define HT_PF_SUPPORTED 0
#endif

#define HT_PF_STEP ((size_t)64 << 10)     /* bytes faulted in per hold of the lock */
#define HT_PF_AHEAD_MIN ((size_t)1 << 20) /* bytes kept ahead of the writer, at least */
#define HT_PF_IDLE_NS 100000L             /* nothing to do: look again after this */

static size_t ht_pf_started; /* helpers started in this process (tests) */

size_t
ht_pf_starts(void)
{
    return ht_pf_started;
}

#if HT_PF_SUPPORTED
typedef struct {
    char *data;      /* the array (NULL: not watched) */
    size_t bytes;    /* room from data to the end of its mapping */
    char *map;       /* the mapping it lives in, and its length (0: none) */
    size_t maplen;
    size_t done;     /* bytes of data faulted in */
    int counter;     /* the writer's fill counter for it ... */
    size_t elt;      /* ... counting elements of this many bytes */
} ht_pf_array;

struct ht_pf {
    pthread_t thread;                /* set once, before the helper runs */
    pid_t pid;                       /* the process that started it (see ht_pf_here) */
    size_t page;                     /* the page size: set once */
    int lock;                        /* protects arrays[] and last (see ht_pf_lock) */
    int want;                        /* the writer waits for the lock: atomic */
    ht_pf_array arrays[HT_PF_ARRAYS];
    int last;                        /* the array the helper worked on last */
    size_t count[HT_PF_COUNTERS];    /* the writer's progress: atomic, relaxed */
    int stop;                        /* set by ht_pf_stop: atomic */
};

/* Whether pf's helper is a thread of this process. Code the walk runs (a
 * guarded attribute read, a key's __eq__) could fork: the child has no
 * helper, and a lock the helper held at the fork stays held there. */
static int
ht_pf_here(const ht_pf *pf)
{
    return pf->pid == getpid();
}

/* Faults in the page of p as a write would, without changing a byte: a
 * compare-and-swap of zero with zero writes only where the word is zero,
 * atomically, so a value the writer stored there first stays, and one it
 * stores after lands. (madvise(MADV_POPULATE_WRITE) does the same in one
 * call, but holds the process's mmap lock throughout: every mmap the walk
 * made meanwhile slept on it, and on a virtual machine each such sleep
 * cost milliseconds. A page fault takes only its mapping's own lock.) */
static inline void
ht_pf_touch(uint64_t *p)
{
    uint64_t zero = 0;
    __atomic_compare_exchange_n(p, &zero, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* Where array a should be faulted in from and to (bytes of data), given
 * the writer's progress: to <= from when there is nothing to do. */
static void
ht_pf_window(ht_pf *pf, const ht_pf_array *a, size_t *from, size_t *to)
{
    size_t fill = __atomic_load_n(&pf->count[a->counter], __ATOMIC_RELAXED);
    fill = fill > a->bytes / a->elt ? a->bytes : fill * a->elt;
    size_t ahead = fill / 8 + HT_PF_AHEAD_MIN;
    size_t want = a->bytes - fill < ahead ? a->bytes : fill + ahead;
    /* what the writer passed it faulted in itself */
    *from = a->done > fill ? a->done : fill;
    if (want <= *from)
        *to = *from;
    else
        *to = want - *from > HT_PF_STEP ? *from + HT_PF_STEP : want;
}

/* One step of work on the next array that needs it; 1 if there was one.
 * The caller holds the lock. */
static int
ht_pf_step(ht_pf *pf)
{
    /* round robin: the writer fills them all at once */
    for (int j = 1; j <= HT_PF_ARRAYS; j++) {
        int k = (pf->last + j) % HT_PF_ARRAYS;
        ht_pf_array *a = &pf->arrays[k];
        if (a->data == NULL || a->maplen == 0)
            continue;
        size_t from, to;
        ht_pf_window(pf, a, &from, &to);
        if (to <= from)
            continue;
        /* whole pages, within the mapping: the first may be the one the
         * writer is at (the compare-and-swap cannot harm it) */
        uintptr_t lo = (uintptr_t)(a->data + from) & ~(uintptr_t)(pf->page - 1);
        uintptr_t hi = ((uintptr_t)(a->data + to) + pf->page - 1) & ~(uintptr_t)(pf->page - 1);
        uintptr_t end = (uintptr_t)(a->map + a->maplen);
        if (hi > end)
            hi = end;
        for (uintptr_t q = lo; q < hi; q += pf->page)
            ht_pf_touch((uint64_t *)q);
        a->done = to;
        pf->last = k;
        return 1;
    }
    return 0;
}

static void
ht_pf_pause(unsigned *spins)
{
    /* a yield now and then: the other thread may be waiting for this CPU
     * (a cgroup with fewer CPUs than the affinity mask says) */
    if (++*spins % 256 == 0)
        sched_yield();
#if defined(__x86_64__) || defined(__i386__)
    else
        __builtin_ia32_pause();
#endif
}

/* The lock, taken by either thread. */
static void
ht_pf_acquire(ht_pf *pf)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(&pf->lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&pf->lock, __ATOMIC_RELAXED))
            ht_pf_pause(&spins);
}

static void *
ht_pf_main(void *arg)
{
    ht_pf *pf = arg;
    while (!__atomic_load_n(&pf->stop, __ATOMIC_RELAXED)) {
        int worked = 0;
        /* the writer first, when it waits for the lock */
        if (!__atomic_load_n(&pf->want, __ATOMIC_RELAXED)) {
            ht_pf_acquire(pf);
            worked = ht_pf_step(pf);
            __atomic_store_n(&pf->lock, 0, __ATOMIC_RELEASE);
        }
        if (!worked) {
            struct timespec ts = {0, HT_PF_IDLE_NS};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* Whether this thread may run on two CPUs or more: on one, the helper would
 * only take turns with the writer. */
static int
ht_pf_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    return CPU_COUNT(&set) >= 2;
}
#endif

int
ht_pf_possible(void)
{
#if HT_PF_SUPPORTED
    return ht_pf_cpus();
#else
    return 0;
#endif
}

ht_pf *
ht_pf_start(void)
{
#if HT_PF_SUPPORTED
    if (!ht_pf_cpus())
        return NULL;
    ht_pf *pf = calloc(1, sizeof(ht_pf));
    if (pf == NULL)
        return NULL;
    long page = sysconf(_SC_PAGESIZE);
    pf->page = page > 0 ? (size_t)page : 4096;
    pf->pid = getpid();
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) {
        free(pf);
        return NULL;
    }
    /* it needs little stack; where 64 KiB is under the system's minimum
     * the default stays, which is only more address space */
    (void)pthread_attr_setstacksize(&attr, (size_t)64 << 10);
    /* it inherits a mask that blocks every signal: they stay the program's
     * threads' business */
    sigset_t all, old;
    sigfillset(&all);
    int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
    int ok = masked && pthread_create(&pf->thread, &attr, ht_pf_main, pf) == 0;
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (!ok) {
        free(pf);
        return NULL;
    }
    ht_pf_started++;
    return pf;
#else
    return NULL;
#endif
}

void
ht_pf_stop(ht_pf *pf)
{
    if (pf == NULL)
        return;
#if HT_PF_SUPPORTED
    if (ht_pf_here(pf)) {
        __atomic_store_n(&pf->stop, 1, __ATOMIC_RELAXED);
        (void)pthread_join(pf->thread, NULL); /* fails only for a thread not joinable: ours is */
    }
#endif
    free(pf);
}

/* A spin lock, not a mutex: the writer must not sleep waiting for it. On a
 * virtual machine a thread that sleeps may lose its CPU to the host, and
 * waking it took milliseconds: with a mutex, a third of the snapshots were
 * 50% slower (measured: the walk blocked 40-70 times each). The helper
 * holds it for one step (HT_PF_STEP bytes faulted in, tens of
 * microseconds) and takes no new one while the writer waits (want). */
void
ht_pf_lock(ht_pf *pf)
{
#if HT_PF_SUPPORTED
    if (pf == NULL || !ht_pf_here(pf))
        return;
    __atomic_store_n(&pf->want, 1, __ATOMIC_RELAXED);
    ht_pf_acquire(pf); /* want stays set until ht_pf_unlock */
#else
    (void)pf;
#endif
}

void
ht_pf_unlock(ht_pf *pf)
{
#if HT_PF_SUPPORTED
    if (pf && ht_pf_here(pf)) {
        __atomic_store_n(&pf->want, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&pf->lock, 0, __ATOMIC_RELEASE);
    }
#else
    (void)pf;
#endif
}

void
ht_pf_set(ht_pf *pf, int k, void *data, int counter, size_t elt)
{
#if HT_PF_SUPPORTED
    if (pf == NULL || k < 0 || k >= HT_PF_ARRAYS || counter < 0 || counter >= HT_PF_COUNTERS ||
        elt == 0)
        return;
    ht_pf_array *a = &pf->arrays[k];
    /* an array moved by mremap keeps its pages: done stays (one copied to
     * a new mapping has lost them: only speed is lost) */
    if (data == NULL || a->data == NULL)
        a->done = 0;
    a->data = data;
    a->maplen = ht_big_mapping(data, &a->map);
    /* all of the mapping: a reserved block grows into it in place */
    a->bytes = a->maplen ? (size_t)(a->map + a->maplen - (char *)data) : 0;
    a->counter = counter;
    a->elt = elt;
#else
    (void)pf;
    (void)k;
    (void)data;
    (void)counter;
    (void)elt;
#endif
}

void
ht_pf_count(ht_pf *pf, int counter, size_t value)
{
#if HT_PF_SUPPORTED
    if (pf && counter >= 0 && counter < HT_PF_COUNTERS)
        __atomic_store_n(&pf->count[counter], value, __ATOMIC_RELAXED);
#else
    (void)pf;
    (void)counter;
    (void)value;
#endif
}
