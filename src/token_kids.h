/* SPDX-License-Identifier: MIT
 *
 * token_kids.h -- a parent's children: the inline link or the array of
 * links (struct ct_kids, internal.h) that a trigger walks.  Internal: used
 * by token.c, whose lock and lifetime rules apply (internal.h).  The hot
 * operations (add, remove) are inline here; the rare ones (allocation,
 * compaction, shrinking) are in token_kids.c.
 *
 * Design notes:
 *
 *  - A parent keeps its children in an array (struct ct_kids), or inline
 *    while it has only one.  The array is read sequentially by the trigger
 *    and the children are prefetched ahead of their claims (token.c), so
 *    children scattered in memory cost overlapping misses, not a chain of
 *    dependent ones.
 *  - Removal leaves a hole (NULL) and touches only the parent and the
 *    removed child: swapping the last entry into the hole would also
 *    write into that entry's child (its slot), one more cache miss per
 *    removal when children are scattered and destroyed in random order.
 *    The trigger skips holes; trailing holes are trimmed at once; an
 *    addition that finds the array full with at least half of it holes
 *    compacts it in place instead of growing it (touching each live child
 *    once, paid for by the removals that made the holes).  An array of up
 *    to KIDS_SHRINK_MAX entries halves (compacted) when a quarter full,
 *    and every array is freed with the last child.
 *  - Once the parent is triggered, its trigger detaches the array (see
 *    "Detached" at struct ct_kids, internal.h): removals of detached
 *    links then touch only the header, and a detached array is neither
 *    compacted nor shrunk.
 *  - Arrays of CT_KIDS_MAP_MIN bytes and more are mapped, not malloc'd
 *    (see "Mapped" there).
 *  - Every function here except kids_alloc(), kids_free() and
 *    kids_maybe_shrink() is called with the parent's lock held; no
 *    allocation (or mapping) is ever made under it (kids_add() asks its
 *    caller for a block instead).
 *  - Whether a child in this list holds a reference on its parent is
 *    token.c's business (it does not: see "Lifetime" in internal.h).
 */
#ifndef CT_TOKEN_KIDS_H
#define CT_TOKEN_KIDS_H

#include "internal.h"

/* Arrays up to this many entries halve when a quarter full; larger ones
 * are kept until the last child goes.  Allocating and freeing blocks of 64
 * KiB and more while a million children are freed makes glibc consolidate
 * its fast bins each time: measured, it made destroying those children,
 * and a deep chain after them, several times slower. */
#define KIDS_SHRINK_MAX 4096u

/* Arrays of at least this many bytes are mapped (see "Mapped" at struct
 * ct_kids in internal.h): glibc's initial mmap threshold, so that every
 * array that glibc would map in a fresh process is mapped, whatever its
 * threshold has become since.  Such arrays (16,382 entries and more) are
 * above KIDS_SHRINK_MAX: they are never shrunk, only freed. */
#define CT_KIDS_MAP_MIN (128u * 1024u)

static inline size_t kids_size(uint32_t cap) {
  return sizeof(struct ct_kids) + (size_t)cap * sizeof(struct ct_link *);
}

CT_HIDDEN struct ct_kids *ct__kids_alloc(uint32_t cap);
/* Free an array from ct__kids_alloc() (NULL: nothing). */
CT_HIDDEN void ct__kids_free(struct ct_kids *a);
CT_HIDDEN void ct__kids_compact(struct ct_kids *b, const struct ct_kids *a);
CT_HIDDEN void ct__kids_maybe_shrink(ct_token *p, uint32_t cap_seen);

static inline void kids_put(struct ct_kids *a, uint32_t i, struct ct_link *l) {
  a->link[i] = l;
  l->slot = i;
}

/* Add link l to p's children; p's lock is held.  *spare is a block the
 * caller allocated with no lock held (or NULL).  Returns 0 when l was
 * added; then *spare is whatever block the caller must free (the spare if
 * unused, or the array it replaced).  Otherwise returns the capacity of
 * the block needed, and changes nothing. */
static inline uint32_t kids_add(ct_token *p, struct ct_link *l,
                                struct ct_kids **spare) {
  uintptr_t k = p->kids;
  if (!k) {
    p->kids = (uintptr_t)l;
    l->slot = CT_SLOT_ONE;
    return 0;
  }
  struct ct_kids *a = (k & 1) ? (struct ct_kids *)(k - 1) : NULL;
  /* Only an untriggered parent gets children on its list (link_parents
   * checks TRIGGERED under this lock), and only its trigger detaches. */
  assert(!a || !(a->flags & CT_KIDS_DETACHED));
  if (a && a->n == a->cap && a->live <= a->cap / 2)
    ct__kids_compact(a, a); /* at least half holes: reuse them, not grow */
  if (a && a->n < a->cap) {
    kids_put(a, a->n++, l);
    a->live++;
    return 0;
  }
  /* Doubling; past 2^30 entries, a size no allocation can meet. */
  uint32_t need = !a ? 4 : a->cap <= (1u << 30) ? a->cap * 2 : UINT32_MAX;
  struct ct_kids *b = *spare;
  if (!b || b->cap < need)
    return need;
  if (a) {
    /* Fewer than half are holes: copied as they are, so that no child's
     * slot changes and no child is touched. */
    memcpy(b->link, a->link, a->n * sizeof(struct ct_link *));
    b->n = a->n;
    b->live = a->live;
  } else {
    kids_put(b, 0, (struct ct_link *)k);
    b->n = 1;
    b->live = 1;
  }
  kids_put(b, b->n++, l);
  b->live++;
  p->kids = (uintptr_t)b | 1;
  *spare = a;
  return 0;
}

/* Remove link l, which is on p's children, from them; p's lock is held.
 * Returns a block for the caller to free once the lock is dropped (the
 * array, when l was the last child), or NULL. */
static inline struct ct_kids *kids_remove(ct_token *p, struct ct_link *l) {
  uint32_t i = l->slot;
  l->slot = CT_SLOT_NONE;
  if (i == CT_SLOT_ONE) {
    assert(p->kids == (uintptr_t)l);
    p->kids = 0;
    return NULL;
  }
  struct ct_kids *a = (struct ct_kids *)(p->kids - 1);
  if (i == CT_SLOT_GONE) {
    /* Detached by p's trigger: only the count is left to change, in the
     * array's header (our entry is stale); the last one out frees the
     * array. */
    assert((p->kids & 1) && (a->flags & CT_KIDS_DETACHED) && a->live > 0);
    if (--a->live == 0) {
      p->kids = 0;
      return a;
    }
    return NULL;
  }
  assert(i < a->n && a->link[i] == l);
  /* A hole: no other child is touched (see the design notes). */
  a->link[i] = NULL;
  if (--a->live == 0) {
    p->kids = 0;
    return a;
  }
  /* Trim trailing holes, so that n stays the end of the last live entry
   * (each hole is trimmed once: amortised O(1)).  An array is never a mix
   * of CT_SLOT_GONE links and indexed ones: a one-pass claim marks every
   * entry gone (those children take the branch above, never this loop)
   * and a batched claim marks none, so live > 0 means a non-NULL entry
   * below n. */
  while (a->link[a->n - 1] == NULL)
    a->n--;
  return NULL;
}

#endif /* CT_TOKEN_KIDS_H */
