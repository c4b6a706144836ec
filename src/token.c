/* SPDX-License-Identifier: MIT
 *
 * token.c -- creating, chaining, triggering and destroying tokens.
 *
 * Design notes: see internal.h for the state word, the claiming rule, the
 * lifetime rules and the lock order.  In this file:
 *
 *  - Trigger propagation is a loop over an explicit work list: depth costs
 *    heap, never stack.  A parent's children are marked while its lock is
 *    held (so none can be freed under us); only children that have work of
 *    their own (INTEREST) are referenced and queued for a second step.
 *  - Destruction is a loop too: the last unref of a child drops its
 *    parents' references, which may free them, and so on up the chain,
 *    through the same work_next field (a dying token is on no trigger work
 *    list, since those hold references).
 *  - Chain names are composed on demand, once, and cached in the chained
 *    token only -- never in its ancestors -- so a chain of depth d costs
 *    O(d) name memory, not O(d^2).
 */
#include "internal.h"

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

static inline size_t token_size(uint32_t nlinks, size_t namelen, bool named) {
  return sizeof(ct_token) + (size_t)nlinks * sizeof(struct ct_link) +
         (named ? namelen + 1 : 0);
}

static inline const char *stored_name(const ct_token *t) {
  return (const char *)&t->links[t->nlinks];
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
  ct_token *t = ct__alloc(token_size(nlinks, namelen, named));
  if (!t)
    return NULL;
  atomic_init(&t->state, named ? CT_ST_NAMED : 0);
  atomic_init(&t->refs, 1);
  atomic_init(&t->lock, 0);
  t->nlinks = nlinks;
  atomic_init(&t->cause, NULL);
  t->children = NULL;
  atomic_init(&t->ext, NULL);
  t->work_next = NULL;
  for (uint32_t i = 0; i < nlinks; i++)
    t->links[i] = (struct ct_link){.child = t};
  if (named)
    memcpy((char *)stored_name(t), name, namelen + 1);
  return t;
}

static int check_name(const char *name, size_t *len) {
  if (!name)
    return -EINVAL;
  *len = strlen(name);
  if (*len == 0 || *len > CT_NAME_MAX || !ct__utf8_valid(name, *len))
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

/* Process t, which the caller has claimed and holds a reference on: mark
 * its children (queueing those with work of their own on *work), make its
 * descriptor readable, then run its callbacks with no lock held. */
static void process(ct_token *t, ct_token **work) {
  /* We claimed t (or the thread that handed it to us did, and published
   * cause before that), so cause is set. */
  ct_token *src = atomic_load_explicit(&t->cause, memory_order_acquire);
  assert(src != NULL);
  /* acquire (cheap, and keeps the reasoning local): the reason and detail
   * were written by the claim's CAS, before cause. */
  uint32_t bits =
      atomic_load_explicit(&t->state, memory_order_acquire) & CT_ST_CAUSE_MASK;

  ct__lock(&t->lock);
  /* Children are claimed in batches: first a walk of plain loads that
   * gathers a batch and prefetches each child's header for writing, then
   * the atomics.  Locked instructions stall later loads, so claiming as we
   * walk would take the cache misses of scattered children one at a time;
   * batching lets them overlap.  Every child stays valid while we hold t's
   * lock: it must unlink itself, under this lock, before it is freed. */
  enum { BATCH = 16 };
  ct_token *batch[BATCH];
  struct ct_link *l = t->children;
  while (l) {
    size_t n = 0;
    for (; l && n < BATCH; l = l->next) {
      batch[n] = l->child;
      __builtin_prefetch(batch[n], 1);
      n++;
    }
    for (size_t i = 0; i < n; i++) {
      ct_token *c = batch[i];
      bool interest;
      if (ct__claim(c, src, bits, &interest) && interest &&
          ct__ref_unless_zero(c)) {
        c->work_next = *work;
        *work = c;
      }
    }
  }
  /* acquire: pairs with the release CAS that published ext. */
  struct ct_ext *e = atomic_load_explicit(&t->ext, memory_order_acquire);
  /* relaxed: the fd is stored under this lock, which we hold. */
  int fd = e ? atomic_load_explicit(&e->fd, memory_order_relaxed) : -1;
  if (fd >= 0)
    ct__eventfd_signal(fd);
  ct__unlock(&t->lock);

  ct__run_callbacks(t);
}

/* Process t, claimed by the caller who also holds a reference on it for
 * us (dropped here), and everything its trigger reaches. */
void ct__drain(ct_token *t) {
  ct_token *work = t;
  t->work_next = NULL;
  while (work) {
    ct_token *x = work;
    work = x->work_next;
    x->work_next = NULL;
    process(x, &work);
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

/* ---- creation and chaining ---- */

/* Link child c (fully initialised, refs == 1, not yet returned to anybody)
 * under its parents.  Cannot fail. */
static void link_parents(ct_token *c, ct_token *const *parents) {
  bool born_triggered = false;
  for (uint32_t i = 0; i < c->nlinks; i++) {
    ct_token *p = parents[i];
    struct ct_link *l = &c->links[i];
    ref_get(p);
    l->parent = p;
    if (born_triggered)
      continue; /* a triggered token needs no further links */
    ct__lock(&p->lock);
    /* Under p's lock.  INTEREST is set with an RMW on the state word, so
     * p's trigger either sees it (and then walks p->children under this
     * lock, after us) or we see TRIGGERED here.  Skip the RMW when INTEREST
     * is already set: it was set under this lock, so our plain load is
     * ordered after it, and a trigger whose fetch_or we miss will take the
     * lock after us and find the link. */
    uint32_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    if (!(s & CT_ST_INTEREST))
      s = atomic_fetch_or_explicit(&p->state, CT_ST_INTEREST,
                                   memory_order_acq_rel);
    if (s & CT_ST_TRIGGERED) {
      ct__unlock(&p->lock);
      bool interest;
      ct__claim(c, ct__cause(p),
            s & CT_ST_CAUSE_MASK, &interest);
      born_triggered = true;
      continue;
    }
    l->next = p->children;
    if (l->next)
      l->next->pprev = &l->next;
    l->pprev = &p->children;
    p->children = l;
    ct__unlock(&p->lock);
  }
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
  link_parents(t, &parent);
  *out = t;
  return 0;
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
  link_parents(t, parents);
  *out = t;
  return 0;
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

static void destroy_one(ct_token *t, ct_token **dying) {
  assert(t->children == NULL && "a live child holds a reference on us");
  for (uint32_t i = 0; i < t->nlinks; i++) {
    struct ct_link *l = &t->links[i];
    ct_token *p = l->parent;
    if (!p)
      continue;
    /* Under p's lock: unlinking a neighbour rewrites our pprev.  A link
     * that was never put on the list (the child was born triggered) has
     * pprev NULL for ever. */
    ct__lock(&p->lock);
    if (l->pprev) {
      *l->pprev = l->next;
      if (l->next)
        l->next->pprev = l->pprev;
    }
    ct__unlock(&p->lock);
    /* acq_rel: release our uses of p to its destroyer; acquire if we are
     * the destroyer. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
      p->work_next = *dying;
      *dying = p;
    }
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
  ct__free(t, token_size(t->nlinks, len, (s & CT_ST_NAMED) != 0));
}

void ct_token_unref(ct_token *t) {
  if (!t)
    return;
  /* acq_rel: the release half orders our last uses before the free; the
   * acquire half, in the thread that frees, sees everyone else's. */
  uint32_t old = atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
  assert(old > 0 && "ct_token_unref on a token after its last unref");
  if (old != 1)
    return;
  ct_token *dying = t;
  t->work_next = NULL;
  while (dying) {
    ct_token *x = dying;
    dying = x->work_next;
    destroy_one(x, &dying);
  }
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

/* ---- names ---- */

struct sbuf {
  char *p;
  size_t len, cap;
  bool full;
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
  if (b->full)
    return;
  if (b->len + n > CT_NAME_MAX) {
    n = CT_NAME_MAX - b->len;
    b->full = true;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

/* Compose the name of a chained token without recursion: a stack of
 * tokens to emit, where NULL stands for a ':' separator. */
static char *compose_name(ct_token *t, size_t *size) {
  struct sbuf b = {NULL, 0, CT_NAME_MAX + 4, false};
  size_t cap = 64, top = 0;
  ct_token **stack = ct__alloc(cap * sizeof *stack);
  b.p = ct__alloc(b.cap);
  if (!stack || !b.p)
    goto oom;
  stack[top++] = t;
  while (top > 0 && !b.full) {
    ct_token *x = stack[--top];
    if (!x) {
      sb_put(&b, ":", 1);
      continue;
    }
    /* relaxed: NAMED is immutable; acquire on ext and name below pairs
     * with the release CASes that published them. */
    uint32_t s = atomic_load_explicit(&x->state, memory_order_relaxed);
    if (s & CT_ST_NAMED) {
      const char *nm = stored_name(x);
      sb_put(&b, nm, strlen(nm));
      continue;
    }
    struct ct_ext *e = atomic_load_explicit(&x->ext, memory_order_acquire);
    char *cached = e ? atomic_load_explicit(&e->name, memory_order_acquire)
                     : NULL;
    if (cached && x != t) {
      sb_put(&b, cached, strlen(cached));
      continue;
    }
    /* Push parents last-first with separators between them. */
    size_t need = top + 2 * (size_t)x->nlinks;
    if (need > cap) {
      size_t ncap = cap;
      while (ncap < need)
        ncap *= 2;
      ct_token **ns = ct__alloc(ncap * sizeof *ns);
      if (!ns)
        goto oom;
      memcpy(ns, stack, top * sizeof *stack);
      ct__free(stack, cap * sizeof *stack);
      stack = ns;
      cap = ncap;
    }
    for (uint32_t i = x->nlinks; i-- > 0;) {
      stack[top++] = x->links[i].parent;
      if (i > 0)
        stack[top++] = NULL;
    }
  }
  if (b.full) {
    /* Cut at a character boundary: every name is valid UTF-8.  Find the
     * last character's lead byte and drop it if its sequence was cut. */
    b.len = CT_NAME_MAX;
    size_t i = b.len;
    while (i > 0 && ((unsigned char)b.p[i - 1] & 0xc0) == 0x80)
      i--;
    if (i > 0) {
      unsigned char lead = (unsigned char)b.p[i - 1];
      size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
      if (b.len - (i - 1) < need)
        b.len = i - 1;
    }
    memcpy(b.p + b.len, "...", 3);
    b.len += 3;
  }
  b.p[b.len] = '\0';
  ct__free(stack, cap * sizeof *stack);
  *size = b.cap;
  return b.p;
oom:
  ct__free(stack, cap * sizeof *stack);
  ct__free(b.p, b.cap);
  return NULL;
}

const char *ct_token_name(ct_token *t) {
  if (!t)
    return NULL;
  uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
  if (s & CT_ST_NAMED)
    return stored_name(t);
  struct ct_ext *e = ct__ext(t);
  if (!e)
    return NULL;
  char *nm = atomic_load_explicit(&e->name, memory_order_acquire);
  if (nm)
    return nm;
  size_t size;
  char *mine = compose_name(t, &size);
  if (!mine)
    return NULL;
  /* Shrink to fit: most names are short, the buffer is CT_NAME_MAX. */
  size_t len = strlen(mine);
  char *fit = ct__alloc(len + 1);
  if (fit) {
    memcpy(fit, mine, len + 1);
    ct__free(mine, size);
    mine = fit;
    size = len + 1;
  }
  /* The first composer publishes (release) and owns the size field; the
   * size is written before the CAS and read only by the destroyer. */
  char *expected = NULL;
  if (atomic_compare_exchange_strong_explicit(&e->name, &expected, mine,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
    e->name_size = size;
    return mine;
  }
  ct__free(mine, size);
  return expected;
}

int ct_token_message(ct_token *t, char *buf, size_t len) {
  if (!t || (!buf && len > 0))
    return -EINVAL;
  ct_token *cause = ct_token_triggered_token(t);
  if (!cause)
    return -EAGAIN;
  const char *nm = ct_token_name(cause);
  if (!nm)
    return -ENOMEM;
  int n = snprintf(buf, len, "Cancellation requested by %s token", nm);
  return n < 0 ? -EOVERFLOW : n;
}
