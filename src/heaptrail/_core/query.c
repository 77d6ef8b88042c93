/* query.c - the snapshot query language (grammar in query.h). */
#include "query.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define HT_Q_MAX_NODES 256
#define HT_Q_MAX_DEPTH 64
#define HT_Q_MAX_TEXT 1024

enum { QF_TYPE, QF_SIZE, QF_LEN, QF_ADDRESS, QF_VALUE, QF_NAME, QF_MODULE, QF_REFERRERS, QF_RETAINED };
enum { QO_EQ, QO_NE, QO_LT, QO_LE, QO_GT, QO_GE, QO_CONTAINS, QO_STARTSWITH };
enum { QN_AND, QN_OR, QN_NOT, QN_CMP };

static const struct {
    const char *name;
    int is_text;
} ht_q_fields[] = {
    {"type", 1}, {"size", 0}, {"len", 0}, {"address", 0}, {"value", 1},
    {"name", 1}, {"module", 1}, {"referrers", 0}, {"retained", 0},
};
#define HT_Q_NFIELDS (sizeof ht_q_fields / sizeof ht_q_fields[0])

typedef struct {
    int kind;      /* QN_* */
    int a, b;      /* children (AND/OR: both, NOT: a) */
    int field, op; /* QN_CMP */
    int64_t num;
    char *text;    /* malloc'd literal for text fields */
    size_t text_len;
} ht_q_node;

typedef struct {
    const char *src;
    size_t pos;
    ht_q_node nodes[HT_Q_MAX_NODES];
    int count;
    int depth;
    int uses_referrers, uses_retained;
} ht_q;

/* Characters (not bytes: the query is UTF-8) before byte offset pos, as
 * Python counts them in the query string. */
static size_t
ht_q_chars(const ht_q *q, size_t pos)
{
    size_t n = 0;
    for (size_t k = 0; k < pos; k++)
        n += ((unsigned char)q->src[k] & 0xC0) != 0x80;
    return n;
}

static int
ht_q_fail(ht_q *q, const char *what, size_t pos)
{
    ht_error("query: %s at position %zu", what, ht_q_chars(q, pos));
    return -1;
}

static void
ht_q_space(ht_q *q)
{
    while (q->src[q->pos] && isspace((unsigned char)q->src[q->pos]))
        q->pos++;
}

/* Consumes keyword kw if it is the next word; 1 when consumed. */
static int
ht_q_word(ht_q *q, const char *kw)
{
    ht_q_space(q);
    size_t n = strlen(kw);
    const char *p = q->src + q->pos;
    if (strncmp(p, kw, n) == 0 && !isalnum((unsigned char)p[n]) && p[n] != '_') {
        q->pos += n;
        return 1;
    }
    return 0;
}

static int
ht_q_new(ht_q *q, int kind)
{
    if (q->count >= HT_Q_MAX_NODES)
        return ht_q_fail(q, "too many conditions", q->pos);
    ht_q_node *nd = &q->nodes[q->count];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    return q->count++;
}

static int ht_q_expr(ht_q *q);

static int
ht_q_op(ht_q *q)
{
    ht_q_space(q);
    const char *p = q->src + q->pos;
    static const struct { const char *s; int op; } ops[] = {
        {"==", QO_EQ}, {"!=", QO_NE}, {"<=", QO_LE}, {">=", QO_GE}, {"<", QO_LT}, {">", QO_GT},
        {"=", QO_EQ},
    };
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        size_t n = strlen(ops[k].s);
        if (strncmp(p, ops[k].s, n) == 0) {
            q->pos += n;
            return ops[k].op;
        }
    }
    if (ht_q_word(q, "contains"))
        return QO_CONTAINS;
    if (ht_q_word(q, "startswith"))
        return QO_STARTSWITH;
    return ht_q_fail(q, "expected an operator (== != < <= > >= contains startswith)", q->pos);
}

static int
ht_q_text(ht_q *q, ht_q_node *nd)
{
    char quote = q->src[q->pos];
    size_t start = q->pos++;
    char *buf = malloc(HT_Q_MAX_TEXT);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t n = 0;
    for (;;) {
        char c = q->src[q->pos];
        if (c == 0) {
            free(buf);
            return ht_q_fail(q, "unterminated string", start);
        }
        q->pos++;
        if (c == quote)
            break;
        if (c == '\\' && q->src[q->pos])
            c = q->src[q->pos++];
        if (n >= HT_Q_MAX_TEXT) {
            free(buf);
            return ht_q_fail(q, "string too long", start);
        }
        buf[n++] = c;
    }
    nd->text = buf;
    nd->text_len = n;
    return 0;
}

static int
ht_q_number(ht_q *q, ht_q_node *nd)
{
    const char *p = q->src + q->pos;
    const char *digits = p + (*p == '-');
    /* decimal, or hex after 0x: strtoll's base 0 read a leading zero as
     * octal ("size == 0100" meant 64, "size == 08" was refused) */
    int base = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') ? 16 : 10;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, base);
    if (end != p && errno == ERANGE)
        return ht_q_fail(q, "number out of range", q->pos);
    if (end == p || errno || isalnum((unsigned char)*end) || *end == '_' || *end == '.')
        return ht_q_fail(q, "expected a value (a number or a 'quoted string')", q->pos);
    nd->num = v;
    q->pos += (size_t)(end - p);
    return 0;
}

static int
ht_q_compare(ht_q *q)
{
    ht_q_space(q);
    size_t fpos = q->pos;
    size_t n = 0;
    while (isalnum((unsigned char)q->src[q->pos + n]) || q->src[q->pos + n] == '_')
        n++;
    if (n == 0) {
        if (q->src[q->pos] == 0)
            return ht_q_fail(q, "expected a field name, got the end of the query", fpos);
        return ht_q_fail(q, "expected a field name", fpos);
    }
    int field = -1;
    for (size_t k = 0; k < HT_Q_NFIELDS; k++)
        if (strlen(ht_q_fields[k].name) == n && strncmp(q->src + q->pos, ht_q_fields[k].name, n) == 0)
            field = (int)k;
    if (field < 0) {
        char name[41];
        size_t k = n > 40 ? 40 : n;
        memcpy(name, q->src + q->pos, k);
        name[k] = 0;
        ht_error("query: unknown field '%s' at position %zu (fields: type size len address value "
                 "name module referrers retained)", name, ht_q_chars(q, fpos));
        return -1;
    }
    q->pos += n;
    int op = ht_q_op(q);
    if (op < 0)
        return -1;
    int id = ht_q_new(q, QN_CMP);
    if (id < 0)
        return -1;
    ht_q_node *nd = &q->nodes[id];
    nd->field = field;
    nd->op = op;
    ht_q_space(q);
    size_t vpos = q->pos;
    char c = q->src[q->pos];
    int is_text = ht_q_fields[field].is_text;
    if (c == '\'' || c == '"') {
        if (!is_text)
            return ht_q_fail(q, "this field needs a number", vpos);
        if (ht_q_text(q, nd) < 0)
            return -1;
    } else if (c == '-' || isdigit((unsigned char)c)) {
        if (is_text)
            return ht_q_fail(q, "this field needs a 'quoted string'", vpos);
        if (ht_q_number(q, nd) < 0)
            return -1;
    } else {
        return ht_q_fail(q, "expected a value (a number or a 'quoted string')", vpos);
    }
    if (is_text && op != QO_EQ && op != QO_NE && op != QO_CONTAINS && op != QO_STARTSWITH)
        return ht_q_fail(q, "text fields compare with == != contains startswith", vpos);
    if (!is_text && (op == QO_CONTAINS || op == QO_STARTSWITH))
        return ht_q_fail(q, "number fields compare with == != < <= > >=", vpos);
    if (field == QF_REFERRERS)
        q->uses_referrers = 1;
    if (field == QF_RETAINED)
        q->uses_retained = 1;
    return id;
}

static int
ht_q_unary(ht_q *q)
{
    if (++q->depth > HT_Q_MAX_DEPTH)
        return ht_q_fail(q, "nested too deeply", q->pos);
    int r;
    if (ht_q_word(q, "not")) {
        int a = ht_q_unary(q);
        if (a < 0)
            return -1;
        r = ht_q_new(q, QN_NOT);
        if (r >= 0)
            q->nodes[r].a = a;
    } else {
        ht_q_space(q);
        if (q->src[q->pos] == '(') {
            q->pos++;
            r = ht_q_expr(q);
            if (r < 0)
                return -1;
            ht_q_space(q);
            if (q->src[q->pos] != ')')
                return ht_q_fail(q, "expected ')'", q->pos);
            q->pos++;
        } else {
            r = ht_q_compare(q);
        }
    }
    q->depth--;
    return r;
}

static int
ht_q_binary(ht_q *q, int kind)
{
    int left = kind == QN_OR ? ht_q_binary(q, QN_AND) : ht_q_unary(q);
    while (left >= 0 && ht_q_word(q, kind == QN_OR ? "or" : "and")) {
        int right = kind == QN_OR ? ht_q_binary(q, QN_AND) : ht_q_unary(q);
        if (right < 0)
            return -1;
        int nd = ht_q_new(q, kind);
        if (nd < 0)
            return -1;
        q->nodes[nd].a = left;
        q->nodes[nd].b = right;
        left = nd;
    }
    return left;
}

static int
ht_q_expr(ht_q *q)
{
    return ht_q_binary(q, QN_OR);
}

/* ---- evaluation ------------------------------------------------------------ */

typedef struct {
    ht_heap *h;
    uint32_t *referrers;
    int failed;
} ht_q_env;

static int
ht_q_text_match(int op, const char *s, size_t n, const ht_q_node *nd)
{
    if (s == NULL)
        return op == QO_NE;
    switch (op) {
    case QO_EQ:
        return n == nd->text_len && memcmp(s, nd->text, n) == 0;
    case QO_NE:
        return !(n == nd->text_len && memcmp(s, nd->text, n) == 0);
    case QO_STARTSWITH:
        return n >= nd->text_len && memcmp(s, nd->text, nd->text_len) == 0;
    case QO_CONTAINS:
        if (nd->text_len == 0)
            return 1;
        for (size_t k = 0; k + nd->text_len <= n; k++)
            if (memcmp(s + k, nd->text, nd->text_len) == 0)
                return 1;
        return 0;
    }
    return 0;
}

static int
ht_q_num_match(int op, int64_t v, int64_t lit)
{
    switch (op) {
    case QO_EQ: return v == lit;
    case QO_NE: return v != lit;
    case QO_LT: return v < lit;
    case QO_LE: return v <= lit;
    case QO_GT: return v > lit;
    case QO_GE: return v >= lit;
    }
    return 0;
}

static int
ht_q_cmp(ht_q_env *env, const ht_q_node *nd, uint32_t i)
{
    ht_heap *h = env->h;
    size_t n = 0;
    const char *s = NULL;
    int64_t v = 0;
    switch (nd->field) {
    case QF_TYPE: {
        s = ht_heap_type_name(h, i, &n);
        if (nd->op == QO_EQ || nd->op == QO_NE) {
            const char *last = s;
            for (size_t k = 0; k < n; k++)
                if (s[k] == '.')
                    last = s + k + 1;
            int eq = ht_q_text_match(QO_EQ, s, n, nd) ||
                     (last != s && ht_q_text_match(QO_EQ, last, n - (size_t)(last - s), nd));
            return nd->op == QO_EQ ? eq : !eq;
        }
        return ht_q_text_match(nd->op, s, n, nd);
    }
    case QF_VALUE:
        /* a name is no value: value == 'append' found builtin methods, and
         * value contains 'x' code objects, frames and generators */
        if (ht_heap_is_name(h, i))
            return nd->op == QO_NE;
        s = ht_heap_string(h, h->value[i], &n);
        return ht_q_text_match(nd->op, s, n, nd);
    case QF_NAME: {
        /* a value is no name: name == '2' found enum members (int values);
         * a frame answers to both with its function's name */
        size_t tl;
        const char *tn = ht_heap_type_name(h, i, &tl);
        int frame = (h->flags[i] & HT_OBJ_FRAME) || (tl == 5 && memcmp(tn, "frame", 5) == 0);
        s = frame || ht_heap_is_name(h, i) ? ht_heap_string(h, h->value[i], &n) : NULL;
        if (s != NULL && (nd->op == QO_EQ || nd->op == QO_NE) && !(h->flags[i] & HT_OBJ_MODULE)) {
            /* a class ("app.Session") or function ("f.<locals>.g") also
             * answers to its last dotted part, as type == does */
            size_t tail = n;
            while (tail > 0 && s[tail - 1] != '.')
                tail--;
            int eq = ht_q_text_match(QO_EQ, s, n, nd) ||
                     (tail > 0 && ht_q_text_match(QO_EQ, s + tail, n - tail, nd));
            return nd->op == QO_EQ ? eq : !eq;
        }
        return ht_q_text_match(nd->op, s, n, nd);
    }
    case QF_MODULE: {
        /* a frame's own is its thread's name (heap.h), no module */
        uint32_t m = (h->flags[i] & HT_OBJ_FRAME) ? HT_NONE : h->module[i];
        if (m == HT_NONE && h->type[i] != HT_NONE)
            m = h->module[h->type[i]];
        s = ht_heap_string(h, m, &n);
        return ht_q_text_match(nd->op, s, n, nd);
    }
    case QF_SIZE:
        v = (int64_t)h->size[i];
        break;
    case QF_LEN:
        if (h->len[i] < 0)
            return 0;
        v = h->len[i];
        break;
    case QF_ADDRESS:
        v = (int64_t)h->addr[i];
        break;
    case QF_REFERRERS:
        v = env->referrers[i];
        break;
    case QF_RETAINED: {
        uint64_t r = 0;
        if (ht_graph_retained(h, i, &r) < 0) {
            env->failed = 1;
            return 0;
        }
        v = (int64_t)r;
        break;
    }
    }
    return ht_q_num_match(nd->op, v, nd->num);
}

static int
ht_q_eval(ht_q_env *env, const ht_q *q, int id, uint32_t i)
{
    const ht_q_node *nd = &q->nodes[id];
    switch (nd->kind) {
    case QN_AND:
        return ht_q_eval(env, q, nd->a, i) && ht_q_eval(env, q, nd->b, i);
    case QN_OR:
        return ht_q_eval(env, q, nd->a, i) || ht_q_eval(env, q, nd->b, i);
    case QN_NOT:
        return !ht_q_eval(env, q, nd->a, i);
    default:
        return ht_q_cmp(env, nd, i);
    }
}

PyObject *
ht_query_run(ht_heap *h, const char *expr, Py_ssize_t limit)
{
    ht_q *q = calloc(1, sizeof(ht_q));
    if (q == NULL)
        return PyErr_NoMemory();
    q->src = expr;
    PyObject *out = NULL;
    ht_q_env env = {h, NULL, 0};
    int root = ht_q_expr(q);
    if (root < 0)
        goto done;
    ht_q_space(q);
    if (q->src[q->pos]) {
        ht_q_fail(q, "unexpected text (expected 'and', 'or' or the end)", q->pos);
        goto done;
    }
    if (q->uses_referrers && (env.referrers = ht_heap_referrer_counts(h)) == NULL)
        goto done;
    out = PyList_New(0);
    for (uint32_t i = 0; out && i < h->n && (limit < 0 || PyList_GET_SIZE(out) < limit); i++) {
        int hit = ht_q_eval(&env, q, root, i);
        if (env.failed) {
            Py_CLEAR(out);
            break;
        }
        if (!hit)
            continue;
        if (env.failed || ht_heap_append_record(h, i, out) < 0)
            Py_CLEAR(out);
    }
    if (env.failed || (out == NULL && !PyErr_Occurred()))
        Py_CLEAR(out);
done:
    for (int k = 0; k < q->count; k++)
        free(q->nodes[k].text);
    free(env.referrers);
    free(q);
    return out;
}
