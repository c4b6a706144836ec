/* SPDX-License-Identifier: MIT
 *
 * token_kids.c -- the rare operations on a parent's children array:
 * allocating it (mapping the large ones), freeing it, compacting it,
 * shrinking it.  The design notes are in token_kids.h.
 */
#include "internal.h"
#include "token_cache.h"
#include "token_kids.h"

#include <sys/mman.h>
#include <unistd.h>

/* The length of the mapping of an array of cap entries. */
static size_t map_len(uint32_t cap) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  return (kids_size(cap) + pg - 1) / pg * pg;
}

struct ct_kids *ct__kids_alloc(uint32_t cap) {
  struct ct_kids *a;
  uint32_t flags = 0;
  /* Large arrays are their own mapping (see "Mapped" at struct ct_kids in
   * internal.h), but only under the default allocator: with a hook
   * installed (ct_set_allocator) every array goes to the hook, so that a
   * counting or failing allocator sees each one. */
  if (kids_size(cap) >= CT_KIDS_MAP_MIN && ct__alloc_is_default()) {
    void *m = mmap(NULL, map_len(cap), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    a = m == MAP_FAILED ? NULL : m;
    flags = CT_KIDS_MAPPED;
  } else {
    a = ct__alloc(kids_size(cap));
  }
  if (a) {
    a->n = 0;
    a->cap = cap;
    a->live = 0;
    a->flags = flags;
  }
  return a;
}

void ct__kids_free(struct ct_kids *a) {
  if (!a)
    return;
  if (a->flags & CT_KIDS_MAPPED) {
    /* Cannot fail: the whole mapping we made, unmapped once. */
    (void)munmap(a, map_len(a->cap));
    return;
  }
  ct__free(a, kids_size(a->cap));
}

/* Copy a's live entries, in order and without holes, to the start of b
 * (which may be a itself: entries only move down), telling each moved link
 * its new slot.  The caller holds the parent's lock, so none of those
 * children can be freed meanwhile (each must unlink itself under it). */
void ct__kids_compact(struct ct_kids *b, const struct ct_kids *a) {
  uint32_t j = 0, n = a->n;
  for (uint32_t i = 0; i < n; i++) {
    struct ct_link *l = a->link[i];
    if (l) {
      if (b != a || i != j)
        kids_put(b, j, l);
      j++;
    }
  }
  assert(j == a->live);
  b->n = j;
  b->live = j;
}

/* Shrink p's array to half if it is at most a quarter full; called with no
 * lock held, after a removal, by a caller that holds a reference on p.
 * The block is allocated outside the lock; if the array changed meanwhile,
 * it is re-checked and the loser freed. */
void ct__kids_maybe_shrink(ct_token *p, uint32_t cap_seen) {
  uint32_t cap = cap_seen / 2;
  struct ct_kids *b = ct__kids_alloc(cap);
  if (!b)
    return; /* keep the larger array: nothing is lost */
  ct__lock(&p->lock);
  uintptr_t k = p->kids;
  struct ct_kids *a = (k & 1) ? (struct ct_kids *)(k - 1) : NULL;
  /* A detached array (p was triggered meanwhile) is left as it is: its
   * entries are stale, and it goes with its last child. */
  if (a && !(a->flags & CT_KIDS_DETACHED) && a->cap == cap_seen &&
      a->live <= cap / 2) {
    ct__kids_compact(b, a); /* the live entries fit: live <= cap / 2 */
    p->kids = (uintptr_t)b | 1;
    b = a; /* free the old one */
  }
  ct__unlock(&p->lock);
  ct__kids_free(b);
}
