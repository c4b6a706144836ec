/* SPDX-License-Identifier: MIT
 *
 * trigger.c -- triggering a token and propagating the trigger to its
 * descendants (ct_token_trigger*, and the claim that ct_token_trigger_async
 * and a child born triggered use too).
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
 *  - The claim of a children array also marks it detached, and the
 *    one-pass claim detaches each link (CT_SLOT_GONE, see "Detached" at
 *    struct ct_kids in internal.h) on lines the claim touches anyway.
 */
#include "internal.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

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

/* Claiming the children of a kids array.  Every claim is a locked CAS on a
 * child's state word, and a locked instruction waits for every earlier
 * load and makes later loads wait for it: with scattered children, one
 * demand miss per claim would be paid in full, one after another.  So what
 * a claim touches -- the link (its `self` gives the child) and the child's
 * header -- is asked for well before, in one of two ways:
 *
 *  - Children linked by their first link (ct_token_new_child(),
 *    ct_token_chain_n() with one parent: the usual case) have their header
 *    just before the link, at an address known from the link pointer
 *    alone: one pass, prefetching the link and that header PREFETCH
 *    children ahead (claim_array_first).
 *  - Otherwise (a two-parent chain is linked under its second parent by
 *    its second link: a.chain(b) in Python, under b) the header's address
 *    needs the link's `self` first (a guess from the link pointer alone
 *    lands on the header's line only some of the time), and the link and
 *    the header are on two lines.  Then the children go in batches of
 *    BATCH in three overlapping stages (claim_array_batched): while batch
 *    k is claimed, the links of batch k+1 are read and their children's
 *    headers prefetched at their exact addresses, and the links of batch
 *    k+2 are prefetched.  The link reads of a batch are plain loads with
 *    no locked instruction between them, which the CPU overlaps.
 *
 * Which way is decided by the first child's link (any mix is claimed
 * correctly either way; only the speed differs).  Measured (CPU time of
 * the trigger, 100,000 children, interleaved runs): for two-parent chains
 * made as Python's benchmark makes them the batches took 15-25% less time
 * than the one pass (batches of 8 about 6% less than of 16; of 4 and of 32
 * more); for first-link children over a scattered heap the one pass was
 * faster (the batches about 25% slower: their link reads then stand
 * between the claims). */
enum { PREFETCH = 16, BATCH = 8 };

/* Prefetch the link l and the header of its token if l is its first,
 * both for writing (the claim is a CAS on the header's state word, and
 * the link is detached: its slot written; a first link shares the
 * header's line or the next one). */
static inline void prefetch_first(const struct ct_link *l) {
  __builtin_prefetch(l, 1);
  __builtin_prefetch((const char *)l - offsetof(struct ct_token, links), 1);
}

/* Detach link l from the array being claimed (see "Detached" at struct
 * ct_kids, internal.h); the caller holds the parent's lock, which guards
 * the slot. */
static inline void detach(struct ct_link *l) { l->slot = CT_SLOT_GONE; }

static void claim_array_first(struct ct_link *const *v, uint32_t n,
                              ct_token *src, uint32_t bits, ct_token **work) {
  /* Holes (NULL: removed children, see kids_remove) are skipped. */
  for (uint32_t i = 0; i < n && i < PREFETCH; i++)
    if (v[i])
      prefetch_first(v[i]);
  for (uint32_t i = 0; i < n; i++) {
    if (i + PREFETCH < n && v[i + PREFETCH])
      prefetch_first(v[i + PREFETCH]);
    if (v[i]) {
      detach(v[i]);
      claim_child(ct__link_child(v[i]), src, bits, work);
    }
  }
}

/* Prefetch the links v[from..from+BATCH) (those below n; holes skipped).
 * They are read, not detached: a later link usually lies on a line of
 * its own, and writing its slot would dirty one more line a child
 * (measured: 8-14% more trigger time for 100,000 two-parent chains), so
 * these children leave through their entries, as before the trigger. */
static inline void prefetch_links(struct ct_link *const *v, uint32_t from,
                                  uint32_t n) {
  uint32_t end = n - from > BATCH ? from + BATCH : n;
  for (uint32_t i = from; i < end; i++)
    if (v[i])
      __builtin_prefetch(v[i]);
}

/* The tokens of links v[from..from+BATCH) (those below n) into out, NULL
 * for holes, each one's header prefetched for writing (the claim is a CAS
 * on its state word).  Returns how many were written. */
static inline uint32_t resolve_batch(struct ct_link *const *v, uint32_t from,
                                     uint32_t n, ct_token **out) {
  uint32_t m = n - from > BATCH ? BATCH : n - from;
  for (uint32_t j = 0; j < m; j++) {
    struct ct_link *l = v[from + j];
    out[j] = l ? ct__link_child(l) : NULL;
    if (out[j])
      __builtin_prefetch(out[j], 1);
  }
  return m;
}

static void claim_array_batched(struct ct_link *const *v, uint32_t n,
                                ct_token *src, uint32_t bits,
                                ct_token **work) {
  ct_token *cur[BATCH], *next[BATCH];
  prefetch_links(v, 0, n);
  if (n > BATCH)
    prefetch_links(v, BATCH, n);
  uint32_t m = resolve_batch(v, 0, n, cur);
  for (uint32_t i = 0; i < n; i += BATCH) {
    uint32_t mnext = 0;
    if (n - i > BATCH) {
      if (n - i > 2 * BATCH)
        prefetch_links(v, i + 2 * BATCH, n);
      mnext = resolve_batch(v, i + BATCH, n, next);
    }
    for (uint32_t j = 0; j < m; j++)
      if (cur[j])
        claim_child(cur[j], src, bits, work);
    memcpy(cur, next, mnext * sizeof next[0]);
    m = mnext;
  }
}

/* Claim the n children of kids array v (the caller holds their parent's
 * lock, which keeps every one of them valid). */
static void claim_array(struct ct_link *const *v, uint32_t n, ct_token *src,
                        uint32_t bits, ct_token **work) {
  uint32_t i = 0;
  while (i < n && !v[i])
    i++;
  if (i < n && v[i]->self != 0)
    claim_array_batched(v + i, n - i, src, bits, work);
  else
    claim_array_first(v + i, n - i, src, bits, work);
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
    struct ct_kids *a = (struct ct_kids *)(k - 1);
    /* Each token is processed once, by its claimer; no array is detached
     * before its token's trigger. */
    assert(!(a->flags & CT_KIDS_DETACHED));
    claim_array(a->link, a->n, src, bits, work);
    /* The array is never walked again (children linked from now on are
     * born triggered): the links the one-pass claim detached
     * (CT_SLOT_GONE) leave by a decrement of live alone, their entries
     * stale from now on (see "Detached" at struct ct_kids, internal.h). */
    a->flags |= CT_KIDS_DETACHED;
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
    ct__ref_get(t);
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
  ct__ref_get(cause);
  bool interest;
  if (!ct__claim(t, cause, bits | CT_ST_OWNS_CAUSE, &interest)) {
    ct_token_unref(cause);
    return 0;
  }
  if (interest) {
    ct__ref_get(t);
    ct__drain(t);
  }
  return 1;
}

int ct_token_trigger(ct_token *t) {
  return ct_token_trigger_reason(t, CT_REASON_TRIGGER, 0);
}
