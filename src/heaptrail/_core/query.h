/* query.h - the snapshot query language: a recursive-descent parser into a
 * small node array, evaluated over every object of a heap.
 *
 *   expr   := and ('or' and)*
 *   and    := unary ('and' unary)*
 *   unary  := 'not' unary | '(' expr ')' | field op literal
 *   field  := type | size | len | address | value | name | module
 *           | referrers | retained
 *   op     := == | != | < | <= | > | >= | contains | startswith
 *   literal:= integer (decimal or 0x hex, optional '-') | 'text' | "text"
 *             (backslash escapes the next character)
 *
 * Fields: type (qualified type name; == also matches the last dotted part,
 * so type == 'Session' finds app.Session), size (flat bytes), len (-1 when
 * the object has none: comparisons on it are then false), address, value
 * (short value of str/bytes/int/float and their subclasses), name (name of
 * a module, class, function, builtin, code, generator: never a value,
 * ht_heap_is_name; a frame answers to both with its function's name; == and
 * != also match a class's or function's last dotted
 * part, so name == 'Session' finds app.Session), module (defining module of a class or function, else of
 * the object's type), referrers (number of references to it), retained
 * (retained size, from graph.c's dominator tree; computed on first use).
 * String fields take ==, !=, contains, startswith; number fields take every
 * comparison. Errors raise heaptrail.HeaptrailError "query: ... at position N"
 * (N counts characters from 0).
 */
#ifndef HT_QUERY_H
#define HT_QUERY_H

#include "heap.h"

/* Records (address, type, size, len, value) of the objects matching expr,
 * at most limit of them (limit < 0: all), as a new list; NULL with an
 * exception set on a bad query or out of memory. */
PyObject *ht_query_run(ht_heap *h, const char *expr, Py_ssize_t limit);

#endif
