/* SPDX-License-Identifier: MIT
 *
 * token.c -- creating, chaining, triggering and destroying tokens.
 *
 * Design notes: see internal.h for the state word, the claiming rule, the
 * lifetime rules and the lock order.  In this file:
 *
 *  - Trigger propagation is a loop over an explicit work list: depth costs
 *    heap, never stack.  It runs in two phases.  Phase 1 claims every
 *    descendant the trigger reaches (which wakes its waiters), and makes
 *    each one's descriptor readable; it runs no user code.  Phase 2 then
 *    runs the callbacks, the triggered token's first.  So when the first
 *    callback runs, every token this trigger reached, at every depth, is
 *    triggered, woken and readable.  A parent's children are claimed while
 *    its lock is held (so none can be freed under us); only children that
 *    have work of their own (INTEREST) are referenced and queued, and only
 *    those with callbacks are kept for phase 2.
 *  - A parent keeps its children in an array (struct ct_kids), or inline
 *    while it has only one.  The array is read sequentially and the
 *    children are prefetched ahead of their claims, so children scattered
 *    in memory cost overlapping misses, not a chain of dependent ones.
 *    Removal leaves a hole (NULL) and touches only the parent and the
 *    removed child: swapping the last entry into the hole would also
 *    write into that entry's child (its slot), one more cache miss per
 *    removal when children are scattered and destroyed in random order.
 *    The trigger skips holes; trailing holes are trimmed at once; an
 *    addition that finds the array full with at least half of it holes
 *    compacts it in place instead of growing it (touching each live
 *    child once, paid for by the removals that made the holes).  An array
 *    of up to KIDS_SHRINK_MAX entries halves (compacted) when a quarter
 *    full, and every array is freed with the last child.  Every
 *    allocation is made with no lock held.
 *  - Destruction is a loop too: the last unref of a child drops its
 *    parents' references, which may free them, and so on up the chain,
 *    through the same work_next field (a dying token is on no trigger work
 *    list, since those hold references).
 *  - Names are in name.c.
 */
#include "internal.h"
#include "token_cache.h"

#include <sched.h>
#include <stdio.h>
#include <unistd.h>

/* ---- small helpers ---- */

static inline void ref_get(ct_token *t) {
  /* relaxed: taking a reference only needs atomicity; the caller already
   * holds one (or the parent's lock), which orders everything else. */
  uint32_t old = atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
  assert(old > 0 && "ct_token_ref on a token after its last unref");
  (void)old;
}

bool ct__ref_unless_zero(ct_token *t) {
  /* relaxed throughout: the caller reaches t under a lock (a parent's, or
   * the deadline mutex) that orders everything else; the CAS only has to
   * be atomic, so that a count that reached zero never comes back. */
  uint32_t r = atomic_load_explicit(&t->refs, memory_order_relaxed);
  do {
    if (r == 0)
      return false; /* dying: its destroyer will unlink it */
  } while (!atomic_compare_exchange_weak_explicit(
      &t->refs, &r, r + 1, memory_order_relaxed, memory_order_relaxed));
  return true;
}

/* Bytes of a token: header, links, then its name or its alias. */
static inline size_t token_size(uint32_t nlinks, size_t namelen, bool named) {
  return sizeof(ct_token) + (size_t)nlinks * sizeof(struct ct_link) +
         (named ? namelen + 1 : nlinks == 1 ? sizeof(ct_token *) : 0);
}

static inline const char *stored_name(const ct_token *t) {
  return ct__stored_name(t);
}

struct ct_ext *ct__ext(ct_token *t) {
  /* acquire: pairs with the release CAS below so the fields are seen
   * initialised. */
  struct ct_ext *e = atomic_load_explicit(&t->ext, memory_order_acquire);
  if (e)
    return e;
  struct ct_ext *n = ct__alloc(sizeof *n);
  if (!n)
    return NULL;
  n->callbacks = NULL;
  atomic_init(&n->fd, -1);
  atomic_init(&n->name, NULL);
  n->name_size = 0;
  n->heap_idx = SIZE_MAX;
  atomic_init(&n->armed, false);
  atomic_init(&n->data, NULL);
  if (atomic_compare_exchange_strong_explicit(&t->ext, &e, n,
                                              memory_order_acq_rel,
                                              memory_order_acquire))
    return n;
  ct__free(n, sizeof *n); /* somebody else won; e is theirs */
  return e;
}

/* Allocate and initialise a token with room for nlinks parent links. */
static ct_token *token_alloc(uint32_t nlinks, const char *name,
                             size_t namelen) {
  bool named = name != NULL;
  /* From this thread's cache of token blocks when it can (token_cache.c). */
  ct_token *t = ct__token_block_alloc(token_size(nlinks, namelen, named));
  if (!t)
    return NULL;
  atomic_init(&t->state, named ? CT_ST_NAMED : 0);
  atomic_init(&t->refs, 1);
  atomic_init(&t->lock, 0);
  t->nlinks = nlinks;
  atomic_init(&t->cause, NULL);
  t->kids = 0;
  atomic_init(&t->ext, NULL);
  t->work_next = NULL;
  for (uint32_t i = 0; i < nlinks; i++)
    t->links[i] = (struct ct_link){.slot = CT_SLOT_NONE, .self = i};
  if (named)
    memcpy((char *)stored_name(t), name, namelen + 1);
  return t;
}

static int check_name(const char *name, size_t *len) {
  if (!name)
    return -EINVAL;
  /* One pass for the common case, a short ASCII name (a name per request
   * is on the churn path): its length and "no byte >= 0x80" together;
   * anything else gets the full UTF-8 check. */
  size_t n = 0;
  unsigned char high = 0;
  for (; name[n] && n <= CT_NAME_MAX; n++)
    high |= (unsigned char)name[n];
  *len = n;
  if (n == 0 || n > CT_NAME_MAX)
    return -EINVAL;
  if ((high & 0x80) && !ct__utf8_valid(name, n))
    return -EINVAL;
  return 0;
}

/* ---- claiming and propagation ---- */

/* Try to trigger t on behalf of src with the given state bits (TRIGGERED,
 * reason, detail).  Returns true if this call won; then *interest says
 * whether t has children, callbacks or a descriptor to process. */
bool ct__claim(ct_token *t, ct_token *src, uint32_t bits, bool *interest) {
  /* The claim is the CAS that sets TRIGGERED (with the reason and detail)
   * in the state word, so a caller that loses it finds the token triggered
   * already: no trigger call returns before its token reads as triggered.
   * acq_rel on success: ordered after the registrations' RMWs on this word
   * (INTEREST, WAITERS), and publishing to anyone who then sees TRIGGERED. */
  uint32_t old = atomic_load_explicit(&t->state, memory_order_relaxed);
  do {
    if (old & CT_ST_TRIGGERED)
      return false;
  } while (!atomic_compare_exchange_weak_explicit(
      &t->state, &old, old | bits, memory_order_acq_rel, memory_order_relaxed));
  /* release: cause is stored right after the claim; ct__cause() waits out
   * the few instructions in between. */
  atomic_store_explicit(&t->cause, src, memory_order_release);
  if (old & CT_ST_WAITERS)
    ct__futex_wake(&t->state, INT_MAX);
  *interest = (old & CT_ST_INTEREST) != 0;
  return true;
}

ct_token *ct__cause(const ct_token *t) {
  /* Only called once TRIGGERED has been seen.  The claimer stores cause a
   * few instructions after its CAS; should it be preempted in between, we
   * yield rather than burn its CPU. */
  ct_token *c;
  for (unsigned spins = 0;
       !(c = atomic_load_explicit(&((ct_token *)t)->cause,
                                  memory_order_acquire));
       spins++) {
    if (spins < 64)
      ct__cpu_relax();
    else
      sched_yield();
  }
  return c;
}

void ct__eventfd_signal(int fd) {
  uint64_t one = 1;
  /* The counter cannot overflow (at most a few writes per token) and the
   * descriptor is non-blocking; a failed write would leave the descriptor
   * readable anyway, since any earlier write already made it so. */
  ssize_t r = write(fd, &one, sizeof one);
  (void)r;
}

/* Claim child c of a token being processed; queue it on *work if it has
 * work of its own. */
static inline void claim_child(ct_token *c, ct_token *src, uint32_t bits,
                               ct_token **work) {
  bool interest;
  if (ct__claim(c, src, bits, &interest) && interest &&
      ct__ref_unless_zero(c)) {
    c->work_next = *work;
    *work = c;
  }
}

/* Phase 1 for t, which the caller has claimed and holds a reference on:
 * claim its children (queueing those with work of their own on *work) and
 * make its descriptor readable.  Runs no user code.  Returns whether t has
 * callbacks to run in phase 2 (decided under t's lock: any callback
 * registered after the claim sees TRIGGERED and runs at once instead). */
static bool process(ct_token *t, ct_token **work) {
  /* We claimed t (or the thread that handed it to us did, and published
   * cause before that), so cause is set. */
  ct_token *src = atomic_load_explicit(&t->cause, memory_order_acquire);
  assert(src != NULL);
  /* acquire (cheap, and keeps the reasoning local): the reason and detail
   * were written by the claim's CAS, before cause. */
  uint32_t bits =
      atomic_load_explicit(&t->state, memory_order_acquire) & CT_ST_CAUSE_MASK;

  ct__lock(&t->lock);
  /* Every child stays valid while we hold t's lock: it must unlink itself,
   * under this lock, before it is freed. */
  uintptr_t k = t->kids;
  if (k & 1) {
    /* The array is read in order; each child is prefetched (for writing:
     * the claim is a CAS on its state word) PREFETCH entries before its
     * claim, so up to that many cache misses are in flight at once.
     * Locked instructions stall later loads, so without the prefetch each
     * scattered child would cost one full miss after another.  What is
     * prefetched is the link and the token header just before it (the
     * header of the token itself when the link is its first, as for every
     * ct_token_new_child(); a wrong guess only wastes the prefetch). */
    enum { PREFETCH = 16 };
    struct ct_kids *a = (struct ct_kids *)(k - 1);
    uint32_t n = a->n;
    struct ct_link **v = a->link;
    const size_t hdr = offsetof(struct ct_token, links);
    /* Holes (NULL: removed children, see kids_remove) are skipped. */
    for (uint32_t i = 0; i < n && i < PREFETCH; i++) {
      if (v[i]) {
        __builtin_prefetch(v[i]);
        __builtin_prefetch((char *)v[i] - hdr, 1);
      }
    }
    for (uint32_t i = 0; i < n; i++) {
      if (i + PREFETCH < n && v[i + PREFETCH]) {
        __builtin_prefetch(v[i + PREFETCH]);
        __builtin_prefetch((char *)v[i + PREFETCH] - hdr, 1);
      }
      if (v[i])
        claim_child(ct__link_child(v[i]), src, bits, work);
    }
  } else if (k) {
    claim_child(ct__link_child((struct ct_link *)k), src, bits, work);
  }
  /* acquire: pairs with the release CAS that published ext. */
  struct ct_ext *e = atomic_load_explicit(&t->ext, memory_order_acquire);
  /* Makes the descriptor readable, never one inherited through fork()
   * (see wait.c).  relaxed: the callbacks list is written under this
   * lock, which we hold. */
  if (e)
    ct__fd_signal_locked(e);
  bool cbs = e && e->callbacks;
  ct__unlock(&t->lock);
  return cbs;
}

/* Process t, claimed by the caller who also holds a reference on it for
 * us (dropped here), and everything its trigger reaches: phase 1 for every
 * token reached, then phase 2 (callbacks), t's first, then the others in
 * the order phase 1 reached them.  The tokens kept for phase 2 stay
 * referenced, on a FIFO threaded through work_next (free again once a
 * token has left the work list: only its claimer ever links it). */
void ct__drain(ct_token *t) {
  ct_token *work = t, *later = NULL, **tail = &later;
  t->work_next = NULL;
  while (work) {
    ct_token *x = work;
    work = x->work_next;
    x->work_next = NULL;
    if (process(x, &work)) {
      *tail = x;
      tail = &x->work_next;
    } else {
      /* No user code can run here: a token with no callbacks frees
       * nothing but memory, descriptors and references. */
      ct_token_unref(x);
    }
  }
  while (later) {
    ct_token *x = later;
    later = x->work_next;
    x->work_next = NULL;
    ct__run_callbacks(x);
    ct_token_unref(x);
  }
}

static int reason_bits(ct_reason reason, int detail, uint32_t *bits) {
  if (reason == CT_REASON_NONE || (unsigned)reason > 255 || detail < 0 ||
      detail > 255)
    return -EINVAL;
  *bits = CT_ST_TRIGGERED | (uint32_t)reason << CT_ST_REASON_SHIFT |
          (uint32_t)detail << CT_ST_DETAIL_SHIFT;
  return 0;
}

int ct_token_trigger_reason(ct_token *t, ct_reason reason, int detail) {
  uint32_t bits;
  if (!t || reason_bits(reason, detail, &bits) < 0)
    return -EINVAL;
  bool interest;
  if (!ct__claim(t, t, bits, &interest))
    return 0;
  if (interest) {
    /* Our own reference: a callback may drop the caller's last one. */
    ref_get(t);
    ct__drain(t);
  }
  return 1;
}

int ct_token_trigger_with_cause(ct_token *t, ct_token *cause,
                                ct_reason reason, int detail) {
  uint32_t bits;
  if (!t || !cause || reason_bits(reason, detail, &bits) < 0)
    return -EINVAL;
  if (cause == t)
    return ct_token_trigger_reason(t, reason, detail);
  /* t keeps cause alive (OWNS_CAUSE tells destroy_one to drop it); take
   * the reference before the claim publishes the pointer. */
  ref_get(cause);
  bool interest;
  if (!ct__claim(t, cause, bits | CT_ST_OWNS_CAUSE, &interest)) {
    ct_token_unref(cause);
    return 0;
  }
  if (interest) {
    ref_get(t);
    ct__drain(t);
  }
  return 1;
}

int ct_token_trigger(ct_token *t) {
  return ct_token_trigger_reason(t, CT_REASON_TRIGGER, 0);
}

/* ---- a parent's children ---- */

static inline size_t kids_size(uint32_t cap) {
  return sizeof(struct ct_kids) + (size_t)cap * sizeof(struct ct_link *);
}

static struct ct_kids *kids_alloc(uint32_t cap) {
  struct ct_kids *a = ct__alloc(kids_size(cap));
  if (a) {
    a->n = 0;
    a->cap = cap;
    a->live = 0;
    a->unused_ = 0;
  }
  return a;
}

static inline void kids_put(struct ct_kids *a, uint32_t i, struct ct_link *l) {
  a->link[i] = l;
  l->slot = i;
}

/* Copy a's live entries, in order and without holes, to the start of b
 * (which may be a itself: entries only move down), telling each moved link
 * its new slot.  The caller holds the parent's lock, so none of those
 * children can be freed meanwhile (each must unlink itself under it). */
static void kids_compact(struct ct_kids *b, const struct ct_kids *a) {
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

/* Add link l to p's children; p's lock is held.  *spare is a block the
 * caller allocated with no lock held (or NULL).  Returns 0 when l was
 * added; then *spare is whatever block the caller must free (the spare if
 * unused, or the array it replaced).  Otherwise returns the capacity of
 * the block needed, and changes nothing. */
static uint32_t kids_add(ct_token *p, struct ct_link *l,
                         struct ct_kids **spare) {
  uintptr_t k = p->kids;
  if (!k) {
    p->kids = (uintptr_t)l;
    l->slot = CT_SLOT_ONE;
    return 0;
  }
  struct ct_kids *a = (k & 1) ? (struct ct_kids *)(k - 1) : NULL;
  if (a && a->n == a->cap && a->live <= a->cap / 2)
    kids_compact(a, a); /* at least half holes: reuse them, not grow */
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

/* Remove link l from p's children; p's lock is held.  Returns a block for
 * the caller to free once the lock is dropped (the array, when l was the
 * last child), or NULL. */
static struct ct_kids *kids_remove(ct_token *p, struct ct_link *l) {
  uint32_t i = l->slot;
  l->slot = CT_SLOT_NONE;
  if (i == CT_SLOT_NONE)
    return NULL;
  if (i == CT_SLOT_ONE) {
    assert(p->kids == (uintptr_t)l);
    p->kids = 0;
    return NULL;
  }
  struct ct_kids *a = (struct ct_kids *)(p->kids - 1);
  assert(i < a->n && a->link[i] == l);
  /* A hole: no other child is touched (see the design notes). */
  a->link[i] = NULL;
  if (--a->live == 0) {
    p->kids = 0;
    return a;
  }
  /* Trim trailing holes, so that n stays the end of the last live entry
   * (each hole is trimmed once: amortised O(1)). */
  while (a->link[a->n - 1] == NULL)
    a->n--;
  return NULL;
}

/* Arrays up to this many entries halve when a quarter full; larger ones
 * are kept until the last child goes.  Allocating and freeing blocks of 64
 * KiB and more while a million children are freed makes glibc consolidate
 * its fast bins each time: measured, it made destroying those children,
 * and a deep chain after them, several times slower. */
#define KIDS_SHRINK_MAX 4096u

/* Shrink p's array to half if it is at most a quarter full; called with no
 * lock held, after a removal.  The block is allocated outside the lock;
 * if the array changed meanwhile, it is re-checked and the loser freed. */
static void kids_maybe_shrink(ct_token *p, uint32_t cap_seen) {
  uint32_t cap = cap_seen / 2;
  struct ct_kids *b = kids_alloc(cap);
  if (!b)
    return; /* keep the larger array: nothing is lost */
  ct__lock(&p->lock);
  uintptr_t k = p->kids;
  struct ct_kids *a = (k & 1) ? (struct ct_kids *)(k - 1) : NULL;
  if (a && a->cap == cap_seen && a->live <= cap / 2) {
    kids_compact(b, a); /* the live entries fit: live <= cap / 2 */
    p->kids = (uintptr_t)b | 1;
    b = a; /* free the old one */
  }
  ct__unlock(&p->lock);
  ct__free(b, kids_size(b->cap));
}

/* ---- creation and chaining ---- */

/* Compute the alias of a new unnamed token whose one parent is p. */
static ct_token *alias_for(ct_token *p) {
  /* relaxed: NAMED is immutable, set before p was handed out. */
  uint32_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
  if (!(s & CT_ST_NAMED) && p->nlinks == 1)
    return ct__alias(p);
  return p;
}

/* Link child c (fully initialised, refs == 1, not yet returned to anybody)
 * under its parents.  Returns 0, or -ENOMEM with c unlinked from every
 * parent again and ready to be freed with ct_token_unref(). */
static int link_parents(ct_token *c, ct_token *const *parents) {
  bool born_triggered = false;
  struct ct_kids *spare = NULL;
  for (uint32_t i = 0; i < c->nlinks; i++) {
    ct_token *p = parents[i];
    struct ct_link *l = &c->links[i];
    if (born_triggered) {
      ref_get(p); /* a triggered token needs no further links */
      l->parent = p;
      continue;
    }
    for (;;) {
      ct__lock(&p->lock);
      /* Under p's lock.  INTEREST is set with an RMW on the state word, so
       * p's trigger either sees it (and then reads p's children under
       * this lock, after us) or we see TRIGGERED here.  Skip the RMW when
       * INTEREST is already set: it was set under this lock, so our plain
       * load is ordered after it, and a trigger whose fetch_or we miss
       * will take the lock after us and find the link. */
      uint32_t s = atomic_load_explicit(&p->state, memory_order_acquire);
      if (!(s & CT_ST_INTEREST))
        s = atomic_fetch_or_explicit(&p->state, CT_ST_INTEREST,
                                     memory_order_acq_rel);
      if (s & CT_ST_TRIGGERED) {
        ct__unlock(&p->lock);
        bool interest;
        ct__claim(c, ct__cause(p), s & CT_ST_CAUSE_MASK, &interest);
        born_triggered = true;
        break;
      }
      uint32_t need = kids_add(p, l, &spare);
      ct__unlock(&p->lock);
      if (need == 0)
        break;
      /* Allocate with no lock held, then try again. */
      if (spare)
        ct__free(spare, kids_size(spare->cap));
      spare = need < CT_SLOT_NONE ? kids_alloc(need) : NULL;
      if (!spare) {
        /* Links i.. were never made: destroy_one skips them. */
        for (uint32_t j = i; j < c->nlinks; j++)
          c->links[j].parent = NULL;
        return -ENOMEM;
      }
    }
    ref_get(p);
    l->parent = p;
  }
  if (spare)
    ct__free(spare, kids_size(spare->cap));
  return 0;
}

/* Finish a new token: link it, or free it if that ran out of memory. */
static int finish_new(ct_token **out, ct_token *t, ct_token *const *parents) {
  if (link_parents(t, parents) < 0) {
    ct_token_unref(t);
    return -ENOMEM;
  }
  *out = t;
  return 0;
}

int ct_token_new(ct_token **out, const char *name) {
  size_t len;
  if (!out)
    return -EINVAL;
  int r = check_name(name, &len);
  if (r < 0)
    return r;
  ct_token *t = token_alloc(0, name, len);
  if (!t)
    return -ENOMEM;
  *out = t;
  return 0;
}

int ct_token_new_child(ct_token **out, const char *name, ct_token *parent) {
  size_t len;
  if (!out || !parent)
    return -EINVAL;
  int r = check_name(name, &len);
  if (r < 0)
    return r;
  ct_token *t = token_alloc(1, name, len);
  if (!t)
    return -ENOMEM;
  return finish_new(out, t, &parent);
}

int ct_token_chain_n(ct_token **out, ct_token *const *parents, size_t n) {
  if (!out || !parents || n == 0 || n > CT_CHAIN_MAX)
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!parents[i])
      return -EINVAL;
  ct_token *t = token_alloc((uint32_t)n, NULL, 0);
  if (!t)
    return -ENOMEM;
  if (n == 1) /* the alias (see internal.h); immutable from here on */
    *(ct_token **)(void *)&t->links[1] = alias_for(parents[0]);
  return finish_new(out, t, parents);
}

int ct_token_chain(ct_token **out, ct_token *a, ct_token *b) {
  if (!out || !a || !b)
    return -EINVAL;
  if (ct_token_is_proxy(a))
    return -ENOTSUP;
  ct_token *p[2] = {a, b};
  return ct_token_chain_n(out, p, 2);
}

int ct_token_mark_proxy(ct_token *t) {
  if (!t)
    return -EINVAL;
  /* relaxed: a flag read only by later chain calls, which the caller
   * orders after this one. */
  atomic_fetch_or_explicit(&t->state, CT_ST_PROXY, memory_order_relaxed);
  return 0;
}

bool ct_token_is_proxy(const ct_token *t) {
  /* relaxed: PROXY is a flag, set before the token is handed out. */
  return t && (atomic_load_explicit(&t->state, memory_order_relaxed) &
               CT_ST_PROXY);
}

int ct_token_set_data(ct_token *t, void *data) {
  if (!t)
    return -EINVAL;
  struct ct_ext *e = ct__ext(t);
  if (!e)
    return -ENOMEM;
  /* release/acquire: whatever data points to is visible to the reader. */
  atomic_store_explicit(&e->data, data, memory_order_release);
  return 0;
}

void *ct_token_data(const ct_token *t) {
  if (!t)
    return NULL;
  struct ct_ext *e =
      atomic_load_explicit(&((ct_token *)t)->ext, memory_order_acquire);
  return e ? atomic_load_explicit(&e->data, memory_order_acquire) : NULL;
}

/* ---- references and destruction ---- */

ct_token *ct_token_ref(ct_token *t) {
  if (t)
    ref_get(t);
  return t;
}

/* Remove t's link l from its parent p and drop t's reference on p (which
 * may put p on *dying).  With locked, the caller already holds p's lock
 * (and it is dropped here); otherwise it is taken. */
static void unlink_parent(ct_token *p, struct ct_link *l, bool locked,
                          ct_token **dying) {
  /* Under p's lock: p's trigger reads its children under it, and a
   * removal may move a sibling's entry. */
  uint32_t cap = 0, n = 0;
  if (!locked)
    ct__lock(&p->lock);
  struct ct_kids *gone = kids_remove(p, l);
  if (p->kids & 1) {
    struct ct_kids *a = (struct ct_kids *)(p->kids - 1);
    cap = a->cap;
    n = a->live;
  }
  ct__unlock(&p->lock);
  if (gone)
    ct__free(gone, kids_size(gone->cap));
  else if (cap >= 64 && cap <= KIDS_SHRINK_MAX && n <= cap / 4)
    kids_maybe_shrink(p, cap); /* we still hold our reference on p */
  /* acq_rel: release our uses of p to its destroyer; acquire if we are
   * the destroyer. */
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
    p->work_next = *dying;
    *dying = p;
  }
}

/* Free t, whose count is zero, unlinking it from its parents first
 * (links[first..]: the caller has done the ones before). */
static void destroy_one(ct_token *t, ct_token **dying, uint32_t first) {
  assert(t->kids == 0 && "a live child holds a reference on us");
  for (uint32_t i = first; i < t->nlinks; i++) {
    struct ct_link *l = &t->links[i];
    if (l->parent)
      unlink_parent(l->parent, l, false, dying);
  }
  /* The last reference is gone: the acq_rel decrement that got us here
   * ordered every other thread's writes before these loads, so the orders
   * below only have to be atomic. */
  uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
  if (st & CT_ST_OWNS_CAUSE) {
    ct_token *c = atomic_load_explicit(&t->cause, memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
      c->work_next = *dying;
      *dying = c;
    }
  }
  struct ct_ext *e = atomic_load_explicit(&t->ext, memory_order_acquire);
  if (e) {
    /* relaxed: set_deadline happened before our last unref (acq_rel). */
    if (atomic_load_explicit(&e->armed, memory_order_relaxed))
      ct__deadline_remove(t, e);
    assert(e->callbacks == NULL && "a registration holds a reference on us");
    int fd = atomic_load_explicit(&e->fd, memory_order_relaxed);
    if (fd >= 0)
      close(fd);
    char *nm = atomic_load_explicit(&e->name, memory_order_acquire);
    ct__free(nm, e->name_size);
    ct__free(e, sizeof *e);
  }
  uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
  size_t len = (s & CT_ST_NAMED) ? strlen(stored_name(t)) : 0;
  ct__token_block_free(t, token_size(t->nlinks, len, (s & CT_ST_NAMED) != 0));
}

/* Free every token on the list (destroying one may add its parents). */
static void destroy_list(ct_token *dying) {
  while (dying) {
    ct_token *x = dying;
    dying = x->work_next;
    destroy_one(x, &dying, 0);
  }
}

/* The last reference of a child with one parent and no ext, dropped
 * without an RMW on its count (the churn path: create a child, destroy
 * it).  Holding the only reference, we know that nobody else can take one
 * except a trigger of the parent walking its children, which does so
 * (ct__ref_unless_zero) under the parent's lock only: with no ext there is
 * no deadline-heap entry, the other place that finds tokens without a
 * reference.  So, under the parent's lock, a count still at 1 is ours
 * alone and may go to 0 with a plain store; the unlink is made in the same
 * critical section.  Returns false, changing nothing, if the count was not
 * 1 by then (a walker took a reference): the caller decrements as usual. */
static bool unref_sole_child(ct_token *t) {
  struct ct_link *l = &t->links[0];
  ct_token *p = l->parent;
  ct__lock(&p->lock);
  /* acquire: a walker that took a reference and has dropped it since did
   * so with an acq_rel decrement outside the lock; reading its 1 orders
   * its uses of t before our free. */
  if (atomic_load_explicit(&t->refs, memory_order_acquire) != 1) {
    ct__unlock(&p->lock);
    return false;
  }
  /* relaxed: every reader that could still find t reads the count under
   * this lock (ct__ref_unless_zero in process()), after our unlock's
   * release; t is off p's children before the lock is dropped. */
  atomic_store_explicit(&t->refs, 0, memory_order_relaxed);
  ct_token *dying = NULL;
  unlink_parent(p, l, true, &dying); /* drops p's lock */
  /* relaxed: our acquire load of the count ordered every earlier write. */
  uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
  if (CT_UNLIKELY(s & CT_ST_OWNS_CAUSE)) {
    destroy_one(t, &dying, 1);
  } else {
    /* No ext (checked by the caller), no other link, no cause to drop:
     * only the block is left. */
    assert(t->kids == 0 && "a live child holds a reference on us");
    size_t len = (s & CT_ST_NAMED) ? strlen(stored_name(t)) : 0;
    ct__token_block_free(t, token_size(1, len, (s & CT_ST_NAMED) != 0));
  }
  if (dying)
    destroy_list(dying);
  return true;
}

void ct_token_unref(ct_token *t) {
  if (!t)
    return;
  /* acquire: if it reads 1 (ours), the decrements of every earlier holder
   * (acq_rel) are ordered before what unref_sole_child() does.  A plain
   * load first costs nothing next to the RMW it can save. */
  if (atomic_load_explicit(&t->refs, memory_order_acquire) == 1 &&
      t->nlinks == 1 && t->links[0].parent &&
      /* acquire: pairs with the release CAS that published ext (only a
       * holder of a reference creates it, and we hold the only one). */
      !atomic_load_explicit(&t->ext, memory_order_acquire) &&
      unref_sole_child(t))
    return;
  /* acq_rel: the release half orders our last uses before the free; the
   * acquire half, in the thread that frees, sees everyone else's. */
  uint32_t old = atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
  assert(old > 0 && "ct_token_unref on a token after its last unref");
  if (old != 1)
    return;
  t->work_next = NULL;
  destroy_list(t);
}

/* ---- queries ---- */

int ct_token_check(const ct_token *t) {
  if (!t)
    return -EINVAL;
  return ct_token_triggered(t) ? -ECANCELED : 0;
}

ct_token *ct_token_triggered_token(const ct_token *t) {
  if (!ct_token_triggered(t))
    return NULL;
  return ct__cause(t);
}

ct_reason ct_token_reason(const ct_token *t, int *detail) {
  /* acquire, as ct_token_triggered(): reason and detail live in the same
   * word as TRIGGERED, written by the one claiming CAS. */
  uint32_t s =
      t ? atomic_load_explicit(&((ct_token *)t)->state, memory_order_acquire)
        : 0;
  if (!(s & CT_ST_TRIGGERED)) {
    if (detail)
      *detail = 0;
    return CT_REASON_NONE;
  }
  if (detail)
    *detail = (int)((s >> CT_ST_DETAIL_SHIFT) & 0xff);
  return (ct_reason)((s >> CT_ST_REASON_SHIFT) & 0xff);
}

