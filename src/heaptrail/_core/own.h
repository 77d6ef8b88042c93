/* own.h - heaptrail's own objects, which a heap snapshot leaves out.
 *
 * The seeds are what heaptrail knows to be its own: its modules (and their
 * __dict__s), the frames of its code that run while the snapshot is taken
 * (the caller's; `heaptrail snapshot` also runs below the program), the
 * seeds tuple itself and the call's arguments. The walk records none of
 * them and drops every edge to them (sys.modules' entry, the program's
 * `import heaptrail`).
 *
 * What the seeds hold is heaptrail's as well, unless the program holds it
 * too; so are the modules heaptrail imported for itself (argparse for the
 * command line), though sys.modules lists them: the walk records one when
 * the program refers to it or to its __dict__. ht_own_find lists the gc-tracked objects the seeds reach, without
 * entering the program's modules, their __dict__s, sys.modules, builtins or
 * the program's frames. The walk does not record those objects when it
 * finds them in the collector's lists, only when a recorded object refers
 * to them (a function the program imported from heaptrail, a class whose
 * instance the program keeps). What is left out is then what only
 * heaptrail holds, and what only heaptrail and C code hold.
 *
 * ht_own_find also lists the references these objects hold, as (from, to)
 * address pairs: the walk takes a reference from an object it left out for
 * one from outside the graph (a gc root) unless it subtracts them.
 *
 * It runs no Python code and keeps no reference: the addresses are good
 * while nothing runs that could free an object (the walk's own rule). */
#ifndef HT_OWN_H
#define HT_OWN_H

#include "common.h"

typedef struct {
    uint64_t *seeds;   /* left out outright */
    size_t nseeds, seedcap;
    uint64_t *held;    /* gc-tracked objects the seeds reach (seeds not included) */
    size_t nheld, heldcap;
    uint64_t *refs;    /* (from, to) pairs: every reference of a seed or a held object */
    size_t nrefs, refcap;
} ht_own;

/* Fills o (zeroed by the caller) from seeds (a tuple of modules, frames,
 * any objects, which is a seed too; or NULL), extra (one more seed, or
 * NULL) and imports (a tuple of the modules heaptrail imported for itself,
 * or NULL: held, with what they hold, though sys.modules lists them; the
 * walk records one only when the program refers to it). The empty tuple is
 * never a seed (everyone shares it). 0, or -1 with MemoryError set (o is
 * then safe to free). */
int ht_own_find(ht_own *o, PyObject *seeds, PyObject *extra, PyObject *imports);

void ht_own_free(ht_own *o);

#endif
