/* graph.h - graph algorithms over a heap snapshot (ht_heap): reverse edges,
 * shortest paths to roots, dominators and retained sizes, strongly connected
 * components, Graphviz output.
 *
 * Every index is built on first use and cached in a structure owned by
 * graph.c that hangs off ht_heap.graph_cache; the heap must never change
 * after the first graph call (snapshots are immutable). Memory: reverse edges
 * 4(n+1)+8m bytes, dominators 20n bytes, components 12n bytes at most.
 *
 * The virtual root: every algorithm that starts "from the roots" starts from
 * one virtual node joining every HT_OBJ_ROOT object. Objects no root reaches
 * (garbage kept with gc_first=False, or objects held only by unreachable
 * containers) are attached to the virtual root as well: first those nobody
 * refers to, then, for what remains (unreachable cycles), the lowest-numbered
 * object of each piece. So every object has an immediate dominator and a
 * retained size; a piece of garbage is retained by its own entry object.
 * References from unreachable objects to live ones are ignored by the
 * dominator tree: garbage does not keep anything alive, so it never changes
 * a live object's retained size.
 */
#ifndef HT_GRAPH_H
#define HT_GRAPH_H

#include "heap.h"

/* Frees h's graph cache (if any) and sets h->graph_cache to NULL. Safe to
 * call on a heap that never had one. The heap's destructor must call it. */
void ht_graph_cache_free(ht_heap *h);

/* Retained size of object i (flat sizes of everything i dominates, i
 * included) into *out, building the dominator tree on first use (for heap's
 * query field `retained`). Returns 0, or -1 with an exception set (out of
 * memory, corrupt heap, i >= h->n). */
int ht_graph_retained(ht_heap *h, uint32_t i, uint64_t *out);

/* Strongly connected components of a plain CSR graph of n nodes (node v's
 * successors are edge_dst[edge_start[v] .. edge_start[v + 1])), by Tarjan's
 * algorithm with an explicit stack (no recursion, any depth). Components are
 * numbered in the order Tarjan completes them (a component is numbered after
 * every component it reaches). Fills out_comp[v] (the component of v) and
 * out_order (every node, each component's members contiguous and the
 * components in number order); either may be NULL; each holds n entries.
 * *out_ncomp gets the number of components. Returns 0, or -1 with
 * MemoryError set. Every edge_dst must be < n. */
int ht_graph_scc(uint32_t n, const uint32_t *edge_start, const uint32_t *edge_dst,
                 uint32_t *out_comp, uint32_t *out_order, uint32_t *out_ncomp);

#endif
