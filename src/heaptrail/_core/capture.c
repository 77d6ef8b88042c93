/* capture.c - the capture file writer: per-thread buffers flushed as
 * checksummed blocks (format in capture.h), and its test driver. */
#include "capture.h"
#include "codec.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HT_HAVE_ZLIB
#include <zlib.h>
#endif

#define CAP_BLOCK_HEAD 8u    /* body_len:u32 checksum:u32 */
#define CAP_BODY_HEAD 12u    /* thread:u32 time_ns:u64 */
/* A buffer's capacity: a block's worth plus the largest record (a FRAME
 * with two cut strings), so a record appended below the threshold fits. */
#define CAP_BUF_CAP (HT_CAP_BLOCK_BYTES + 2u * HT_CAP_MAX_STR + 256u)

/* codec.h's checksum seeded with the block's word, folded to 32 bits (its
 * low half). */
uint32_t
ht_cap_checksum(uint32_t word, const uint8_t *p, size_t n)
{
    return (uint32_t)ht_checksum(word, p, n);
}

int
ht_cap_have_zlib(void)
{
#ifdef HT_HAVE_ZLIB
    return 1;
#else
    return 0;
#endif
}

/* ---- state ---------------------------------------------------------------- */

typedef struct cap_tbuf {
    ht_buf buf;              /* the block being filled, its heads reserved */
    uint32_t thread;
    uint32_t prev_stack;     /* delta state, restarted with each block: */
    uint64_t alloc_base[HT_CAP_CLASSES];   /* per size class, as pymalloc */
    uint64_t free_base[HT_CAP_CLASSES];    /* keeps a pool per class */
    struct cap_tbuf *next;   /* registry link: protected by cap.lock */
} cap_tbuf;

static struct {
    pthread_mutex_t lock;    /* protects fd writes, error, threads, next_thread */
    int fd;
    /* the file fd was opened on, to tell that fd is still ours: a program
     * that closes every descriptor (os.closerange, daemonizing) may have
     * reused its number for a file of its own (under lock) */
    char *path;
    dev_t dev;
    ino_t ino;
    int error;               /* first errno seen; later blocks are dropped */
    cap_tbuf *threads;       /* every live buffer, so close can flush them */
    uint32_t next_thread;
    uint64_t t0;             /* CLOCK_MONOTONIC ns at open; set before active */
    atomic_int active;
    atomic_uint gen;         /* bumped at open and close: stale TLS detection */
    int serialized;          /* the caller serializes every event call (info) */
    /* serialized mode: the buffer of the last event's thread, flushed when
     * another thread's event comes. Written under lock; read without it. */
    _Atomic(cap_tbuf *) last;
#ifdef HT_HAVE_ZLIB
    int z_ok;                /* deflate ready: blocks are compressed */
    z_stream z;              /* used under lock */
    uint8_t *zbuf;           /* a compressed block: heads + raw_len + stream */
    size_t zcap;
#endif
} cap = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* The calling thread's buffer, valid only while cap_tls_gen == cap.gen:
 * close frees every buffer without touching other threads' TLS. */
/* initial-exec: the extension is loaded by dlopen, whose default model
 * (general-dynamic) calls __tls_get_addr on every event; glibc reserves
 * static TLS room for a few such variables. */
#define CAP_TLS _Thread_local __attribute__((tls_model("initial-exec")))
static CAP_TLS cap_tbuf *cap_tls;
static CAP_TLS unsigned cap_tls_gen;
static pthread_key_t cap_key;        /* only for its destructor (thread exit) */
static int cap_key_ok;               /* pthread_key_create succeeded */
static pthread_once_t cap_key_once = PTHREAD_ONCE_INIT;

static uint64_t
cap_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The test driver's clock (cap_py_write), 0 when the real one runs: block
 * stamps and END then come from the events' own times, so a synthetic
 * capture's duration does not depend on how long writing it took (a slow
 * run under ASan moved the flame graph's timeline under a test). */
static _Atomic uint64_t cap_test_now;

uint64_t
ht_cap_now(void)
{
    uint64_t t = atomic_load_explicit(&cap_test_now, memory_order_relaxed);
    return t ? t : cap_clock() - cap.t0;
}

int
ht_cap_active(void)
{
    return atomic_load_explicit(&cap.active, memory_order_relaxed);
}

/* ---- blocks --------------------------------------------------------------- */

static void
cap_put_u32_at(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void
cap_block_begin(ht_buf *b, uint32_t thread)
{
    b->len = 0;
    ht_buf_u64(b, 0);        /* body_len, checksum: filled by cap_block_seal */
    ht_buf_u32(b, thread);
    ht_buf_u64(b, 0);        /* time_ns: filled by cap_block_seal */
}

static void
cap_block_stamp(ht_buf *b)
{
    uint64_t t = ht_cap_now();
    cap_put_u32_at(b->data + 12, (uint32_t)t);
    cap_put_u32_at(b->data + 16, (uint32_t)(t >> 32));
}

/* Fills the heads of a stamped block stored as is. */
static void
cap_block_raw_heads(ht_buf *b)
{
    uint32_t word = (uint32_t)(b->len - CAP_BLOCK_HEAD);
    cap_put_u32_at(b->data, word);
    cap_put_u32_at(b->data + 4, ht_cap_checksum(word, b->data + CAP_BLOCK_HEAD, word));
}

static void
cap_block_seal(ht_buf *b)
{
    cap_block_stamp(b);
    cap_block_raw_heads(b);
}

#ifdef HT_HAVE_ZLIB
/* Level 1: most of the gain for a fraction of the time of higher levels
 * (the events are very repetitive). Caller holds cap.lock. */
static int
cap_z_open(void)
{
    memset(&cap.z, 0, sizeof cap.z);
    /* raw deflate (negative window bits): no zlib header or adler32, the
     * block checksum already guards the data */
    if (deflateInit2(&cap.z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    cap.zcap = CAP_BLOCK_HEAD + 4 + deflateBound(&cap.z, CAP_BUF_CAP);
    cap.zbuf = malloc(cap.zcap);
    if (cap.zbuf == NULL) {
        deflateEnd(&cap.z);
        return -1;
    }
    cap.z_ok = 1;
    return 0;
}

static void
cap_z_close(void)
{
    if (!cap.z_ok)
        return;
    deflateEnd(&cap.z);
    free(cap.zbuf);
    cap.zbuf = NULL;
    cap.z_ok = 0;
}

/* Compresses a stamped block into cap.zbuf as a whole compressed block;
 * returns its length, or 0 to store it as is (zlib failed or did not
 * shrink it). Caller holds cap.lock. */
static size_t
cap_z_block(const ht_buf *b)
{
    size_t raw = b->len - CAP_BLOCK_HEAD;
    if (deflateReset(&cap.z) != Z_OK)
        return 0;
    cap.z.next_in = b->data + CAP_BLOCK_HEAD;
    cap.z.avail_in = (uInt)raw;
    cap.z.next_out = cap.zbuf + CAP_BLOCK_HEAD + 4;
    cap.z.avail_out = (uInt)(cap.zcap - CAP_BLOCK_HEAD - 4);
    if (deflate(&cap.z, Z_FINISH) != Z_STREAM_END)
        return 0;
    size_t data = 4 + (size_t)cap.z.total_out;
    if (data >= raw)
        return 0;
    uint32_t word = (uint32_t)data | HT_CAP_COMPRESSED;
    cap_put_u32_at(cap.zbuf + CAP_BLOCK_HEAD, (uint32_t)raw);
    cap_put_u32_at(cap.zbuf, word);
    cap_put_u32_at(cap.zbuf + 4, ht_cap_checksum(word, cap.zbuf + CAP_BLOCK_HEAD, data));
    return CAP_BLOCK_HEAD + data;
}
#endif

static int
cap_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1 when cap.fd still refers to the file it was opened on. */
static int
cap_fd_is_ours(void)
{
    struct stat st;
    return cap.fd >= 0 && fstat(cap.fd, &st) == 0 && st.st_dev == cap.dev && st.st_ino == cap.ino;
}

/* 0 when cap.fd may be written: it is still ours, or the program closed it
 * (and perhaps reused its number) and our file was opened again by its path
 * (appending: every write is a whole block, so its end is a block's end).
 * -1 with cap.error set, fd forgotten, never closed: it may be the program's.
 * One fstat per block. Caller holds cap.lock. */
static int
cap_fd_check_unlocked(void)
{
    if (cap_fd_is_ours())
        return 0;
    struct stat st;
    int fd = cap.path ? open(cap.path, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
    int e = fd < 0 && cap.path ? errno : EBADF;   /* ENOENT: the program removed it */
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == cap.dev && st.st_ino == cap.ino) {
        cap.fd = fd;
        return 0;
    }
    if (fd >= 0) {
        close(fd);
        e = ENOENT;   /* another file by that name: ours was removed */
    }
    cap.fd = -1;
    if (!cap.error)
        cap.error = e;
    return -1;
}

/* Forgets the file: closes fd only when it is still ours. Caller holds cap.lock. */
static int
cap_fd_close_unlocked(void)
{
    int rc = 0;
    if (cap_fd_is_ours())
        rc = close(cap.fd);
    cap.fd = -1;
    free(cap.path);
    cap.path = NULL;
    return rc;
}

/* Writes a sealed block. Caller holds cap.lock. */
static void
cap_write_unlocked(const ht_buf *b)
{
    if (cap.error || cap.fd < 0 || cap_fd_check_unlocked() < 0)
        return;
    if (cap_write_all(cap.fd, b->data, b->len) < 0)
        cap.error = errno ? errno : EIO;
}

/* Writes a stamped block, compressed when that helps. Caller holds cap.lock. */
static void
cap_write_block_unlocked(ht_buf *b)
{
    if (cap.error || cap.fd < 0 || cap_fd_check_unlocked() < 0)
        return;
#ifdef HT_HAVE_ZLIB
    size_t n = cap.z_ok ? cap_z_block(b) : 0;
    if (n > 0) {
        if (cap_write_all(cap.fd, cap.zbuf, n) < 0)
            cap.error = errno ? errno : EIO;
        return;
    }
#endif
    cap_block_raw_heads(b);
    cap_write_unlocked(b);
}

static void
cap_flush_tbuf(cap_tbuf *tb, int locked)
{
    if (tb->buf.error) {            /* a record was cut by a failed grow */
        if (!locked)
            pthread_mutex_lock(&cap.lock);
        if (!cap.error)
            cap.error = ENOMEM;
        if (!locked)
            pthread_mutex_unlock(&cap.lock);
        return;
    }
    if (tb->buf.len <= CAP_BLOCK_HEAD + CAP_BODY_HEAD)
        return;
    cap_block_stamp(&tb->buf);
    if (!locked)
        pthread_mutex_lock(&cap.lock);
    cap_write_block_unlocked(&tb->buf);
    if (!locked)
        pthread_mutex_unlock(&cap.lock);
    cap_block_begin(&tb->buf, tb->thread);
    tb->prev_stack = 0;
    memset(tb->alloc_base, 0, sizeof tb->alloc_base);
    memset(tb->free_base, 0, sizeof tb->free_base);
}

/* ---- per-thread buffers ---------------------------------------------------- */

static void
cap_unlink_unlocked(cap_tbuf *tb)
{
    for (cap_tbuf **pp = &cap.threads; *pp; pp = &(*pp)->next)
        if (*pp == tb) {
            *pp = tb->next;
            return;
        }
}

/* Thread exit: flush this thread's events so they are not lost. Runs while
 * the thread's TLS is still readable. */
static void
cap_thread_exit(void *marker)
{
    HT_UNUSED(marker);
    pthread_mutex_lock(&cap.lock);
    if (cap_tls != NULL && cap_tls_gen == atomic_load(&cap.gen) && atomic_load(&cap.active)) {
        cap_tbuf *tb = cap_tls;
        cap_flush_tbuf(tb, 1);
        cap_unlink_unlocked(tb);
        if (atomic_load(&cap.last) == tb)
            atomic_store(&cap.last, NULL);
        ht_buf_free(&tb->buf);
        free(tb);
    }
    cap_tls = NULL;
    pthread_mutex_unlock(&cap.lock);
}

static void
cap_make_key(void)
{
    cap_key_ok = pthread_key_create(&cap_key, cap_thread_exit) == 0;
}

/* A thread's first event of this capture: creates its buffer. NULL when
 * the capture closed meanwhile or memory ran out (the event is dropped). */
static __attribute__((noinline)) cap_tbuf *
cap_tbuf_create(unsigned gen)
{
    cap_tbuf *tb = calloc(1, sizeof(*tb));
    if (tb == NULL)
        return NULL;
    ht_buf_init(&tb->buf);
    if (ht_buf_reserve(&tb->buf, CAP_BUF_CAP) < 0) {
        free(tb);
        return NULL;
    }
    pthread_once(&cap_key_once, cap_make_key);
    pthread_mutex_lock(&cap.lock);
    if (!atomic_load(&cap.active) || atomic_load(&cap.gen) != gen) {
        pthread_mutex_unlock(&cap.lock);
        ht_buf_free(&tb->buf);
        free(tb);
        return NULL;
    }
    tb->thread = ++cap.next_thread;
    tb->next = cap.threads;
    cap.threads = tb;
    pthread_mutex_unlock(&cap.lock);
    cap_block_begin(&tb->buf, tb->thread);
    cap_tls = tb;
    cap_tls_gen = gen;
    if (cap_key_ok)   /* else the thread's last events wait for close */
        pthread_setspecific(cap_key, (void *)1);
    return tb;
}

/* The calling thread's buffer, created on first use (inline: every event). */
static inline cap_tbuf *
cap_tbuf_get(void)
{
    unsigned gen = atomic_load_explicit(&cap.gen, memory_order_acquire);
    if (HT_LIKELY(cap_tls != NULL && cap_tls_gen == gen))
        return cap_tls;
    return cap_tbuf_create(gen);
}

/* Serialized mode, first event of a thread after another's: the other's
 * buffered events happened before, so they go to the file first. The caller
 * serializes event calls, so that buffer is not being appended to; the lock
 * keeps it from being freed by its thread's exit meanwhile. */
static void
cap_switch(cap_tbuf *tb)
{
    pthread_mutex_lock(&cap.lock);
    cap_tbuf *prev = atomic_load(&cap.last);
    if (prev != NULL && prev != tb)
        cap_flush_tbuf(prev, 1);
    atomic_store(&cap.last, tb);
    pthread_mutex_unlock(&cap.lock);
}

static inline cap_tbuf *
cap_event_buf(void)
{
    if (!atomic_load_explicit(&cap.active, memory_order_relaxed))
        return NULL;
    cap_tbuf *tb = cap_tbuf_get();
    if (tb != NULL && cap.serialized && atomic_load_explicit(&cap.last, memory_order_relaxed) != tb)
        cap_switch(tb);
    return tb;
}

static inline void
cap_maybe_flush(cap_tbuf *tb)
{
    if (tb->buf.len >= HT_CAP_BLOCK_BYTES || tb->buf.error)
        cap_flush_tbuf(tb, 0);
}

static void
cap_put_str(ht_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    ht_buf_blob(b, s, n > HT_CAP_MAX_STR ? HT_CAP_MAX_STR : n);
}

/* ---- events --------------------------------------------------------------- */

/* Room an event record may take: the buffer's capacity keeps this much
 * past HT_CAP_BLOCK_BYTES, where the buffer is flushed after each event. */
#define CAP_EVENT_ROOM 64u

/* Events are written straight into the reserved buffer (no call per
 * field); a buffer without room (a failed flush left it full) drops them. */
static inline void
cap_put_alloc(cap_tbuf *tb, uint64_t addr, uint64_t size, uint32_t stack)
{
    ht_buf *b = &tb->buf;
    if (HT_UNLIKELY(b->cap - b->len < CAP_EVENT_ROOM))
        return;
    unsigned c = ht_cap_class(size);
    int same = stack == tb->prev_stack;
    uint8_t *p = b->data + b->len;
    *p++ = same ? HT_CAP_ALLOC_SAME : HT_CAP_ALLOC;
    p = ht_varint_put(p, size);
    p = ht_varint_put(p, ht_zigzag((int64_t)(addr - tb->alloc_base[c])));
    if (!same)
        p = ht_varint_put(p, ht_zigzag((int64_t)stack - (int64_t)tb->prev_stack));
    b->len = (size_t)(p - b->data);
    tb->alloc_base[c] = addr;
    tb->prev_stack = stack;
}

static inline void
cap_put_free(cap_tbuf *tb, uint64_t addr, uint64_t size)
{
    ht_buf *b = &tb->buf;
    if (HT_UNLIKELY(b->cap - b->len < CAP_EVENT_ROOM))
        return;
    unsigned c = ht_cap_class(size);
    uint8_t *p = b->data + b->len;
    *p++ = (uint8_t)(HT_CAP_FREE + c);
    p = ht_varint_put(p, ht_zigzag((int64_t)(addr - tb->free_base[c])));
    b->len = (size_t)(p - b->data);
    tb->free_base[c] = addr;
}

void
ht_cap_alloc(uint64_t addr, uint64_t size, uint32_t stack)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    cap_put_alloc(tb, addr, size, stack);
    cap_maybe_flush(tb);
}

void
ht_cap_free(uint64_t addr, uint64_t size)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    cap_put_free(tb, addr, size);
    cap_maybe_flush(tb);
}

void
ht_cap_realloc(uint64_t old_addr, uint64_t new_addr, uint64_t size, uint32_t stack)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    if (old_addr != 0)
        cap_put_free(tb, old_addr, 0);
    cap_put_alloc(tb, new_addr, size, stack);
    cap_maybe_flush(tb);
}

void
ht_cap_stack(uint32_t id, uint32_t parent, uint32_t frame)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    ht_buf_u8(&tb->buf, HT_CAP_STACK);
    ht_buf_varint(&tb->buf, id);
    ht_buf_varint(&tb->buf, parent == HT_CAP_NO_STACK ? 0 : (uint64_t)parent + 1);
    ht_buf_varint(&tb->buf, frame);
    cap_maybe_flush(tb);
}

void
ht_cap_frame(uint32_t id, const char *filename, const char *function, uint32_t line)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    ht_buf_u8(&tb->buf, HT_CAP_FRAME);
    ht_buf_varint(&tb->buf, id);
    cap_put_str(&tb->buf, filename);
    cap_put_str(&tb->buf, function);
    ht_buf_varint(&tb->buf, line);
    cap_maybe_flush(tb);
}

void
ht_cap_thread_name(const char *name)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    ht_buf_u8(&tb->buf, HT_CAP_THREAD);
    ht_buf_varint(&tb->buf, tb->thread);
    cap_put_str(&tb->buf, name);
    cap_maybe_flush(tb);
}

void
ht_cap_sample(uint64_t time_ns, uint64_t rss, uint64_t traced)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    ht_buf_u8(&tb->buf, HT_CAP_SAMPLE);
    ht_buf_varint(&tb->buf, time_ns);
    ht_buf_varint(&tb->buf, rss);
    ht_buf_varint(&tb->buf, traced);
    cap_flush_tbuf(tb, 0);
}

void
ht_cap_marker(uint64_t time_ns, const char *label)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    ht_buf_u8(&tb->buf, HT_CAP_MARKER);
    ht_buf_varint(&tb->buf, time_ns);
    cap_put_str(&tb->buf, label);
    cap_flush_tbuf(tb, 0);
}

void
ht_cap_flush_thread(void)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb != NULL)
        cap_flush_tbuf(tb, 0);
}

/* ---- open / close ------------------------------------------------------------ */

static int
cap_write_header(int fd, const ht_cap_info *info)
{
    ht_buf b;
    ht_buf_init(&b);
    ht_buf_put(&b, HT_CAP_MAGIC, HT_CAP_MAGIC_LEN);
    ht_buf_u32(&b, HT_CAP_VERSION);
    size_t block = b.len;
    ht_buf_u64(&b, 0);
    ht_buf_u32(&b, 0);
    ht_buf_u64(&b, 0);
    ht_buf_u8(&b, HT_CAP_HEADER);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ht_buf_varint(&b, info->pid);
    ht_buf_varint(&b, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    ht_buf_varint(&b, info->sample_bytes);
    ht_buf_varint(&b, info->interval_ns);
    ht_buf_blob(&b, info->cmdline, info->cmdline ? info->cmdline_len : 0);
    int rc = -1;
    if (b.error) {
        errno = ENOMEM;
        goto done;
    }
    uint32_t word = (uint32_t)(b.len - block - CAP_BLOCK_HEAD);
    cap_put_u32_at(b.data + block, word);
    cap_put_u32_at(b.data + block + 4, ht_cap_checksum(word, b.data + block + CAP_BLOCK_HEAD, word));
    rc = cap_write_all(fd, b.data, b.len);
done:
    ht_buf_free(&b);
    return rc;
}

int
ht_cap_open(const char *path, const ht_cap_info *info)
{
    pthread_mutex_lock(&cap.lock);
    int rc = -1;
    if (atomic_load(&cap.active)) {
        errno = EBUSY;
        goto done;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto done;
    struct stat st;
    char *copy = strdup(path);
    if (copy == NULL || fstat(fd, &st) < 0 || cap_write_header(fd, info) < 0) {
        int e = copy == NULL ? ENOMEM : errno;
        free(copy);
        close(fd);
        errno = e;
        goto done;
    }
#ifdef HT_HAVE_ZLIB
    if (info->compress && cap_z_open() < 0) {
        free(copy);
        close(fd);
        errno = ENOMEM;
        goto done;
    }
#endif
    cap.fd = fd;
    cap.path = copy;
    cap.dev = st.st_dev;
    cap.ino = st.st_ino;
    cap.error = 0;
    cap.next_thread = 0;
    cap.serialized = info->serialized;
    atomic_store(&cap.last, NULL);
    cap.t0 = cap_clock();
    atomic_fetch_add(&cap.gen, 1);
    atomic_store(&cap.active, 1);
    rc = 0;
done:
    pthread_mutex_unlock(&cap.lock);
    return rc;
}

/* Frees every buffer; `flush` writes them first. Caller holds cap.lock. */
static void
cap_release_unlocked(int flush)
{
    cap_tbuf *tb = cap.threads;
    while (tb != NULL) {
        cap_tbuf *next = tb->next;
        if (flush)
            cap_flush_tbuf(tb, 1);
        ht_buf_free(&tb->buf);
        free(tb);
        tb = next;
    }
    cap.threads = NULL;
    atomic_store(&cap.last, NULL);
    atomic_store(&cap.active, 0);
    atomic_fetch_add(&cap.gen, 1);
}

int
ht_cap_close(void)
{
    pthread_mutex_lock(&cap.lock);
    if (!atomic_load(&cap.active)) {
        pthread_mutex_unlock(&cap.lock);
        errno = EINVAL;
        return -1;
    }
    cap_release_unlocked(1);
    ht_buf b;
    ht_buf_init(&b);
    cap_block_begin(&b, 0);
    ht_buf_u8(&b, HT_CAP_END);
    ht_buf_varint(&b, ht_cap_now());
    if (b.error) {
        if (!cap.error)
            cap.error = ENOMEM;
    } else {
        cap_block_seal(&b);
        cap_write_unlocked(&b);
    }
    ht_buf_free(&b);
#ifdef HT_HAVE_ZLIB
    cap_z_close();
#endif
    if (cap_fd_close_unlocked() < 0 && !cap.error)
        cap.error = errno;
    int err = cap.error;
    pthread_mutex_unlock(&cap.lock);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

void
ht_cap_after_fork_child(void)
{
    /* Only this thread exists in the child: no one else holds the lock's
     * state we reset, and the other threads' buffers are plain memory. */
    pthread_mutex_init(&cap.lock, NULL);
    (void)cap_fd_close_unlocked();
#ifdef HT_HAVE_ZLIB
    cap_z_close();
#endif
    cap_release_unlocked(0);
}

/* ==== test driver ========================================================== */

/* Simulates a program killed in the middle of a write: the first `n` bytes
 * of the calling thread's pending block reach the file, nothing else does. */
static void
cap_torn_write(size_t n)
{
    cap_tbuf *tb = cap_event_buf();
    if (tb == NULL)
        return;
    cap_block_seal(&tb->buf);
    pthread_mutex_lock(&cap.lock);
    if (cap.fd >= 0 && cap_fd_check_unlocked() == 0 &&
        cap_write_all(cap.fd, tb->buf.data, n < tb->buf.len ? n : tb->buf.len) < 0)
        cap.error = errno;
    pthread_mutex_unlock(&cap.lock);
    ht_cap_after_fork_child();
}

static uint64_t
cap_u64_item(PyObject *t, Py_ssize_t i)
{
    return PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(t, i));
}

#define CAP_VTHREADS 16

/* Runs one event tuple; 0, or -1 with an exception. `vt` holds the virtual
 * threads' buffers (each one a distinct thread id in the file). */
typedef struct cap_driver {
    cap_tbuf *vt[CAP_VTHREADS];
    int cur;
} cap_driver;

/* The driver's clock moves to the latest time an event gave. */
static void
cap_drive_time(uint64_t t)
{
    if (t > atomic_load_explicit(&cap_test_now, memory_order_relaxed))
        atomic_store_explicit(&cap_test_now, t, memory_order_relaxed);
}

static int
cap_drive_one(PyObject *ev, cap_driver *d)
{
    if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(ev, 0))) {
        PyErr_SetString(PyExc_TypeError, "an event is a tuple starting with its kind");
        return -1;
    }
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(ev, 0));
    Py_ssize_t n = PyTuple_GET_SIZE(ev);
    const char *s1 = NULL, *s2 = NULL;
#define NEED(k) do { if (n != (k)) { PyErr_Format(PyExc_TypeError, "%s takes %d fields", kind, (k) - 1); return -1; } } while (0)
    if (strcmp(kind, "alloc") == 0) {
        NEED(4);
        PyObject *st = PyTuple_GET_ITEM(ev, 3);
        ht_cap_alloc(cap_u64_item(ev, 1), cap_u64_item(ev, 2),
                     st == Py_None ? HT_CAP_NO_STACK : (uint32_t)PyLong_AsUnsignedLongMask(st));
    } else if (strcmp(kind, "free") == 0) {
        if (n != 2)
            NEED(3);   /* ("free", addr) or ("free", addr, size) */
        ht_cap_free(cap_u64_item(ev, 1), n == 3 ? cap_u64_item(ev, 2) : 0);
    } else if (strcmp(kind, "realloc") == 0) {
        NEED(5);
        ht_cap_realloc(cap_u64_item(ev, 1), cap_u64_item(ev, 2), cap_u64_item(ev, 3),
                       (uint32_t)cap_u64_item(ev, 4));
    } else if (strcmp(kind, "stack") == 0) {
        NEED(4);
        PyObject *parent = PyTuple_GET_ITEM(ev, 2);
        ht_cap_stack((uint32_t)cap_u64_item(ev, 1),
                     parent == Py_None ? HT_CAP_NO_STACK : (uint32_t)PyLong_AsUnsignedLongMask(parent),
                     (uint32_t)cap_u64_item(ev, 3));
    } else if (strcmp(kind, "frame") == 0) {
        NEED(5);
        if ((s1 = PyUnicode_AsUTF8(PyTuple_GET_ITEM(ev, 2))) == NULL ||
            (s2 = PyUnicode_AsUTF8(PyTuple_GET_ITEM(ev, 3))) == NULL)
            return -1;
        ht_cap_frame((uint32_t)cap_u64_item(ev, 1), s1, s2, (uint32_t)cap_u64_item(ev, 4));
    } else if (strcmp(kind, "thread") == 0) {
        NEED(2);
        if ((s1 = PyUnicode_AsUTF8(PyTuple_GET_ITEM(ev, 1))) == NULL)
            return -1;
        ht_cap_thread_name(s1);
    } else if (strcmp(kind, "sample") == 0) {
        NEED(4);
        ht_cap_sample(cap_u64_item(ev, 1), cap_u64_item(ev, 2), cap_u64_item(ev, 3));
        cap_drive_time(cap_u64_item(ev, 1));
    } else if (strcmp(kind, "marker") == 0) {
        NEED(3);
        if ((s1 = PyUnicode_AsUTF8(PyTuple_GET_ITEM(ev, 2))) == NULL)
            return -1;
        ht_cap_marker(cap_u64_item(ev, 1), s1);
        cap_drive_time(cap_u64_item(ev, 1));
    } else if (strcmp(kind, "flush") == 0) {
        NEED(1);
        ht_cap_flush_thread();
    } else if (strcmp(kind, "switch") == 0) {
        /* become virtual thread k: its own buffer, as a real thread has */
        NEED(2);
        uint64_t k = cap_u64_item(ev, 1);
        if (k >= CAP_VTHREADS) {
            PyErr_SetString(PyExc_ValueError, "virtual thread out of range");
            return -1;
        }
        unsigned gen = atomic_load(&cap.gen);
        d->vt[d->cur] = (cap_tls != NULL && cap_tls_gen == gen) ? cap_tls : NULL;
        cap_tls = d->vt[k];   /* NULL: the next event creates its buffer */
        cap_tls_gen = cap_tls ? gen : 0;
        d->cur = (int)k;
    } else if (strcmp(kind, "torn") == 0) {
        NEED(2);
        cap_torn_write((size_t)cap_u64_item(ev, 1));
    } else {
        PyErr_Format(PyExc_ValueError, "unknown event kind %s", kind);
        return -1;
    }
#undef NEED
    return PyErr_Occurred() ? -1 : 0;
}

/* _capture_write(path, events, close=True, pid=0, cmdline=b"", sample_bytes=0,
 * interval_ns=0) -> None. Test driver: runs the writer API over a list of
 * event tuples. close=False leaves the capture open with events still in
 * the buffers (then os.kill(SIGKILL) or _capture_abandon()). */
static PyObject *
cap_py_write(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "events", "close", "pid", "cmdline", "sample_bytes",
                             "interval_ns", "serialized", "compress", NULL};
    PyObject *path_obj, *events;
    int do_close = 1, serialized = 0, compress = 1;
    unsigned long long pid = 0, sample_bytes = 0, interval_ns = 0;
    const char *cmdline = "";
    Py_ssize_t cmdline_len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O|pKy#KKpp:_capture_write", kwlist,
                                     PyUnicode_FSConverter, &path_obj, &events, &do_close, &pid,
                                     &cmdline, &cmdline_len, &sample_bytes, &interval_ns, &serialized,
                                     &compress))
        return NULL;
    PyObject *seq = PySequence_Fast(events, "events must be a sequence");
    if (seq == NULL) {
        Py_DECREF(path_obj);
        return NULL;
    }
    ht_cap_info info = {pid, sample_bytes, interval_ns, cmdline, (size_t)cmdline_len, serialized,
                        compress};
    PyObject *result = NULL;
    if (ht_cap_open(PyBytes_AS_STRING(path_obj), &info) < 0) {
        ht_error_os(PyBytes_AS_STRING(path_obj));
        goto cleanup;
    }
    cap_driver d = {{0}, 0};
    atomic_store_explicit(&cap_test_now, 1, memory_order_relaxed); /* until an event gives one */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++)
        if (cap_drive_one(PySequence_Fast_GET_ITEM(seq, i), &d) < 0) {
            if (ht_cap_active())
                ht_cap_close();
            goto cleanup;
        }
    if (do_close && ht_cap_active() && ht_cap_close() < 0) {
        ht_error_os(PyBytes_AS_STRING(path_obj));
        goto cleanup;
    }
    result = Py_NewRef(Py_None);
cleanup:
    atomic_store_explicit(&cap_test_now, 0, memory_order_relaxed);
    Py_DECREF(seq);
    Py_DECREF(path_obj);
    return result;
}

/* _capture_abandon(): drop an open capture as a killed program would (the
 * buffered events are lost, END is never written). */
static PyObject *
cap_py_abandon(PyObject *self, PyObject *unused)
{
    if (ht_cap_active())
        ht_cap_after_fork_child();
    Py_RETURN_NONE;
}

/* Writes n synthetic events: allocations of 16..4111 bytes 48 bytes apart
 * from `base`, over `stacks` stacks (defined first when `define`), each
 * freed `live` allocations later. Returns the bytes allocated. */
static uint64_t
cap_synthetic(uint64_t n, unsigned live, unsigned stacks, uint64_t base, int define)
{
    char name[32];
    for (unsigned i = 0; define && i < stacks; i++) {
        snprintf(name, sizeof name, "function_%u", i);
        ht_cap_frame(i, "/src/bench/module.py", name, 10 + i);
        ht_cap_stack(i, i == 0 ? HT_CAP_NO_STACK : i / 2, i);
    }
    uint64_t x = 88172645463325252ULL ^ base, total = 0;
    for (uint64_t e = 0, i = 0; e < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;     /* xorshift: sizes and stacks */
        ht_cap_alloc(base + 48 * i, 16 + (x & 4095), (uint32_t)((x >> 12) % stacks));
        total += 16 + (x & 4095);
        e++;
        if (i >= live && e < n) {
            ht_cap_free(base + 48 * (i - live), 0);
            e++;
        }
    }
    return total;
}

/* _capture_bench_write(path, n_events, live=1024, stacks=500) -> None.
 * Benchmark driver: n synthetic events through the writer API without a
 * Python object per event. */
static PyObject *
cap_py_bench_write(PyObject *self, PyObject *args)
{
    PyObject *path_obj;
    unsigned long long n;
    unsigned int live = 1024, stacks = 500;
    if (!PyArg_ParseTuple(args, "O&K|II:_capture_bench_write", PyUnicode_FSConverter, &path_obj, &n,
                          &live, &stacks))
        return NULL;
    if (live == 0 || stacks == 0) {
        Py_DECREF(path_obj);
        return ht_error("live and stacks must be positive");
    }
    ht_cap_info info = {(uint64_t)getpid(), 0, 0, "bench", 5, 0, 1};
    int rc = ht_cap_open(PyBytes_AS_STRING(path_obj), &info);
    if (rc == 0) {
        Py_BEGIN_ALLOW_THREADS
        cap_synthetic(n, live, stacks, 0x7f0000000000ULL, 1);
        rc = ht_cap_close();
        Py_END_ALLOW_THREADS
    }
    PyObject *res = rc < 0 ? ht_error_os(PyBytes_AS_STRING(path_obj)) : Py_NewRef(Py_None);
    Py_DECREF(path_obj);
    return res;
}

/* _capture_thread_events(n, base, stacks, name) -> bytes allocated: from the
 * calling thread, into the open capture, with the GIL released (several
 * Python threads at once exercise the writer's per-thread buffers). Stack
 * ids < stacks must have been defined by the caller. */
static PyObject *
cap_py_thread_events(PyObject *self, PyObject *args)
{
    unsigned long long n, base;
    unsigned int stacks;
    const char *name;
    if (!PyArg_ParseTuple(args, "KKIs:_capture_thread_events", &n, &base, &stacks, &name))
        return NULL;
    if (stacks == 0)
        return ht_error("stacks must be positive");
    uint64_t total;
    Py_BEGIN_ALLOW_THREADS
    ht_cap_thread_name(name);
    total = cap_synthetic(n, 64, stacks, base, 0);
    Py_END_ALLOW_THREADS
    return PyLong_FromUnsignedLongLong(total);
}

/* _capture_close() -> None: closes the open capture (flushing every thread). */
static PyObject *
cap_py_close(PyObject *self, PyObject *unused)
{
    if (ht_cap_close() < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* _capture_zlib() -> bool: does this build compress (and read compressed) blocks? */
static PyObject *
cap_py_zlib(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(ht_cap_have_zlib());
}

static PyMethodDef cap_methods[] = {
    {"_capture_zlib", cap_py_zlib, METH_NOARGS, "Does this build compress capture blocks?"},
    {"_capture_bench_write", cap_py_bench_write, METH_VARARGS,
     "Benchmark driver: writes n synthetic events through the writer API."},
    {"_capture_write", (PyCFunction)(void (*)(void))cap_py_write, METH_VARARGS | METH_KEYWORDS,
     "Test driver: writes a capture from a list of event tuples."},
    {"_capture_thread_events", cap_py_thread_events, METH_VARARGS,
     "Test driver: synthetic events from the calling thread, GIL released."},
    {"_capture_close", cap_py_close, METH_NOARGS, "Test driver: closes the open capture."},
    {"_capture_abandon", cap_py_abandon, METH_NOARGS,
     "Test driver: drops the open capture without flushing (a killed program)."},
    {NULL, NULL, 0, NULL},
};

int
ht_capture_init(PyObject *m)
{
    return PyModule_AddFunctions(m, cap_methods);
}
