/* SPDX-License-Identifier: MIT
 *
 * token_kids.c -- the rare operations on a parent's children array:
 * allocating it, compacting it, shrinking it.  The design notes are in
 * token_kids.h.
 */
#include "internal.h"
#include "token_kids.h"

struct ct_kids *ct__kids_alloc(uint32_t cap) {
  struct ct_kids *a = ct__alloc(kids_size(cap));
  if (a) {
    a->n = 0;
    a->cap = cap;
    a->live = 0;
    a->unused_ = 0;
  }
  return a;
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
  if (a && a->cap == cap_seen && a->live <= cap / 2) {
    ct__kids_compact(b, a); /* the live entries fit: live <= cap / 2 */
    p->kids = (uintptr_t)b | 1;
    b = a; /* free the old one */
  }
  ct__unlock(&p->lock);
  ct__free(b, kids_size(b->cap));
}
