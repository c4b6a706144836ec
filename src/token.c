/* SPDX-License-Identifier: MIT
 *
 * token.c -- creating, chaining and destroying tokens (triggering is in
 * trigger.c).
 *
 * Design notes: see internal.h for the state word, the claiming rule, the
 * lifetime rules and the lock order.  In this file:
 *
 *  - Triggering and its propagation are in trigger.c.
 *  - A parent's children (the inline link or the array) are managed in
 *    token_kids.h / token_kids.c, whose design notes say how.
 *  - A child on its parent's children holds no counted reference on it
 *    (see "Lifetime" in internal.h): linking and unlinking a child cost
 *    the parent's lock and nothing more, which is the whole of what the
 *    churn of short-lived children pays.  The handshake that keeps such a
 *    parent alive is in ref_put() (its last counted reference is handed
 *    to its children, CT_LOCK_ORPHAN, while it has any: one CAS on its
 *    free lock word, or under its lock) and in unlink_parent() (the last
 *    child of an orphan drops that reference, which frees it).
 *  - Destruction is a loop too: the last unref of a child unlinks it from
 *    its parents, which frees each one that was an orphan with no other
 *    child left (or drops the counted reference of a child born
 *    triggered), and so on up the chain,
 *    through the same work_next field (a dying token is on no trigger work
 *    list, since those hold references).
 *  - Names are in name.c.
 */
#include "internal.h"
#include "token_cache.h"
#include "token_kids.h"

#include <sched.h>
#include <stdio.h>
#include <unistd.h>

/* ---- small helpers ---- */


bool ct__ref_unless_zero(ct_token *t) {
  /* relaxed throughout: the caller reaches t under a lock (a parent's, or
   * the deadline mutex) that orders everything else; the CAS only has to
   * be atomic, so that a count that reached zero never comes back.  An
   * orphan (CT_LOCK_ORPHAN) counts one reference for its children, so it
   * is never at 0 and may be counted again: only 0 means dying. */
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

/* The bytes a token was allocated with, from its state word s (NAMED and
 * the name's length are immutable): the name is read only when it is 255
 * bytes or longer, so that freeing a token touches its header only. */
static inline size_t token_bytes(const ct_token *t, uint32_t s) {
  if (!(s & CT_ST_NAMED))
    return token_size(t->nlinks, 0, false);
  size_t len = s >> CT_ST_NAMELEN_SHIFT;
  if (len == CT_ST_NAMELEN_LONG)
    len = strlen(stored_name(t));
  return token_size(t->nlinks, len, true);
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

/* Copy n bytes (a name and its NUL) from src to dst.  Most names are
 * short, and a call to memcpy() for them costs more than the copy: for 4
 * to 16 bytes, two loads that may overlap and two stores (every byte read
 * lies inside src[0..n), the stores inside dst[0..n)). */
static inline void copy_name(char *dst, const char *src, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, src, 8);
    memcpy(&b, src + n - 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, src, 4);
    memcpy(&b, src + n - 4, 4);
    memcpy(dst, &a, 4);
    memcpy(dst + n - 4, &b, 4);
  } else {
    memcpy(dst, src, n);
  }
}

/* Allocate and initialise a token with room for nlinks parent links. */
static ct_token *token_alloc(uint32_t nlinks, const char *name,
                             size_t namelen) {
  bool named = name != NULL;
  /* From this thread's cache of token blocks when it can (token_cache.c). */
  ct_token *t = ct__token_block_alloc(token_size(nlinks, namelen, named));
  if (!t)
    return NULL;
  uint32_t lenbits =
      (uint32_t)(namelen < CT_ST_NAMELEN_LONG ? namelen : CT_ST_NAMELEN_LONG)
      << CT_ST_NAMELEN_SHIFT;
  atomic_init(&t->state, named ? CT_ST_NAMED | lenbits : 0);
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
    copy_name((char *)stored_name(t), name, namelen + 1);
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

/* ---- a parent's children: token_kids.h, token_kids.c ---- */

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
      ct__ref_get(p); /* a triggered token needs no further links */
      l->parent = p;
      continue;
    }
    for (;;) {
      uint32_t f = ct__lock(&p->lock);
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
        ct__unlock_flags(&p->lock, f);
        bool interest;
        ct__claim(c, ct__cause(p), s & CT_ST_CAUSE_MASK, &interest);
        born_triggered = true;
        ct__ref_get(p); /* on no list: a counted reference keeps p alive */
        l->parent = p;
        break;
      }
      uint32_t need = kids_add(p, l, &spare);
      /* p's list is not empty now (KIDS is exact whenever the lock is
       * free: see "Lifetime" in internal.h). */
      ct__unlock_flags(&p->lock, need == 0 ? f | CT_LOCK_KIDS : f);
      if (need == 0) {
        /* On p's list: that keeps p alive, with no counted reference
         * (see "Lifetime" in internal.h). */
        l->parent = p;
        break;
      }
      /* Allocate with no lock held, then try again. */
      if (spare)
        ct__kids_free(spare);
      spare = need < CT_SLOT_NONE ? ct__kids_alloc(need) : NULL;
      if (!spare) {
        /* Links i.. were never made: destroy_one skips them. */
        for (uint32_t j = i; j < c->nlinks; j++)
          c->links[j].parent = NULL;
        return -ENOMEM;
      }
    }
  }
  if (spare)
    ct__kids_free(spare);
  return 0;
}

/* The common case of linking a new token t with one link, to p: p is not
 * triggered and has room for one more child without allocating.  Returns
 * false, having changed nothing but p's INTEREST bit (the lock is taken
 * and dropped), in every other case: link_parents() then does the general
 * work.  This is link_parents() for that case with its loop, its
 * allocation and its born-triggered path left out; the reasoning on
 * INTEREST and TRIGGERED is the one written there (a trigger that sees
 * INTEREST set by us and finds no child of ours is harmless: INTEREST only
 * makes a trigger look). */
static inline bool link_sole_fast(ct_token *t, ct_token *p) {
  struct ct_link *l = &t->links[0];
  struct ct_kids *spare = NULL;
  uint32_t f = ct__lock(&p->lock);
  /* acquire / acq_rel: as in link_parents. */
  uint32_t s = atomic_load_explicit(&p->state, memory_order_acquire);
  if (!(s & CT_ST_INTEREST))
    s = atomic_fetch_or_explicit(&p->state, CT_ST_INTEREST,
                                 memory_order_acq_rel);
  bool done = !(s & CT_ST_TRIGGERED) && kids_add(p, l, &spare) == 0;
  ct__unlock_flags(&p->lock, done ? f | CT_LOCK_KIDS : f); /* as there */
  /* With no spare block kids_add() either added l in place or changed
   * nothing; it has no block for us to free. */
  assert(spare == NULL);
  if (done)
    l->parent = p; /* on p's list: no counted reference (internal.h) */
  return done;
}

/* Finish a new token: link it, or free it if that ran out of memory. */
static int finish_new(ct_token **out, ct_token *t, ct_token *const *parents) {
  if (t->nlinks == 1 && link_sole_fast(t, parents[0])) {
    *out = t;
    return 0;
  }
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
    ct__ref_get(t);
  return t;
}

/* ref_put: drop one counted reference of t (the rare last-reference cases
 * in ref_put_slow).  Returns true if t is now dead (refs 0, no children):
 * the caller destroys it.  The caller holds no token lock: the last
 * counted reference of a token with INTEREST (one that may have children)
 * may take t's lock, and no other.
 *
 * That last one is handed to t's children, if it has any, by the
 * orphaning CAS on t's free lock word (KIDS -> KIDS | ORPHAN), or, when
 * that fails (t's lock is held, or t has no children), decided under t's
 * lock; see "Lifetime" in internal.h for why neither can miss the last
 * child's unlink_parent().  After either, the last child may free t at
 * once.  Then the FUTEX_WAKE of our unlock, if it has to wake somebody,
 * may name a freed address.  That is harmless: a private FUTEX_WAKE reads
 * no memory, and every waiter of this library re-checks its word after
 * waking (as glibc's mutexes, which may be freed by the next owner, rely
 * on too). */
static bool ref_put_slow(ct_token *t);

static inline bool ref_put(ct_token *t) {
  /* The common case inline: not the last counted reference.  acquire on
   * the reads: a 1 we read was left by another holder's release, and what
   * it did to t before (INTEREST, a child linked) must be visible to the
   * choice of path in ref_put_slow().  release on the CAS: orders our uses
   * of t before the drop of the last one. */
  uint32_t r = atomic_load_explicit(&t->refs, memory_order_acquire);
  if (CT_LIKELY(r > 1) &&
      atomic_compare_exchange_strong_explicit(&t->refs, &r, r - 1,
                                              memory_order_release,
                                              memory_order_acquire))
    return false;
  return ref_put_slow(t);
}

__attribute__((noinline)) static bool ref_put_slow(ct_token *t) {
  uint32_t r = atomic_load_explicit(&t->refs, memory_order_acquire);
  for (;;) {
    assert(r > 0 && "ct_token_unref on a token after its last unref");
    if (r == 1)
      break;
    /* release / acquire: as in ref_put(). */
    if (atomic_compare_exchange_weak_explicit(&t->refs, &r, r - 1,
                                              memory_order_release,
                                              memory_order_acquire))
      return false;
  }
  /* We hold the only counted reference.  t is not an orphan (an orphan's
   * count has one more, its children's).  acquire: see above. */
  uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
  if (!(s & CT_ST_INTEREST)) {
    /* t never had a child (INTEREST is set, under t's lock, before the
     * first is linked, by a holder of a reference), so no child keeps it:
     * a plain count.  A reference counted since our read (a walker's)
     * just makes us not the last.  acq_rel: release our uses of t;
     * acquire everyone's if we free it. */
    uint32_t old =
        atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
    assert(old > 0 && "ct_token_unref on a token after its last unref");
    return old == 1;
  }
  /* The orphaning CAS: succeeds only if t's lock is free and t has
   * children (KIDS, exact while the lock is free), and hands our
   * reference to them, refs unchanged; a walker that counts one
   * meanwhile just adds to it.  release: our uses of t happen before the
   * free by the last child, whose lock acquires this word.  relaxed on
   * failure: we then take the lock, which acquires.  After it we touch t
   * no more. */
  uint32_t k = CT_LOCK_KIDS;
  if (CT_LIKELY(atomic_compare_exchange_strong_explicit(
          &t->lock, &k, CT_LOCK_KIDS | CT_LOCK_ORPHAN, memory_order_release,
          memory_order_relaxed)))
    return false;
  uint32_t f = ct__lock(&t->lock);
  /* Under t's lock: t->kids cannot change, the flags are ours to write
   * (KIDS matches the list), and only walkers counting references
   * (ct__ref_unless_zero) and holders dropping theirs change refs. */
  assert(!(f & CT_LOCK_ORPHAN) && "a holder's reference on an orphan");
  assert(!(f & CT_LOCK_KIDS) == !t->kids);
  bool dead = false;
  r = atomic_load_explicit(&t->refs, memory_order_acquire);
  for (;;) {
    assert(r > 0 && "ct_token_unref on a token after its last unref");
    if (r == 1 && t->kids) {
      /* Children left: ours becomes theirs (ORPHAN, written by the
       * unlock, whose release orders our uses before the free). */
      f |= CT_LOCK_ORPHAN;
      break;
    }
    /* acq_rel: release our uses; acquire everyone's if we reach 0 (we
     * free t).  A failure means a walker counted a reference: retry. */
    if (atomic_compare_exchange_weak_explicit(&t->refs, &r, r - 1,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
      dead = r == 1;
      break;
    }
  }
  ct__unlock_flags(&t->lock, f);
  return dead;
}

/* Under p's lock, with the flags f ct__lock() returned: p's list has just
 * become empty.  Returns the flags to unlock with, and sets *dead if p is
 * to be freed (after the unlock): an orphan's children's reference is
 * ours to drop now.  acq_rel: acquire every holder's uses of p (their
 * release decrements, the orphaner's release on the lock word, which our
 * lock acquired) before we free it.  If the count does not reach 0, a
 * walker counted a reference meanwhile: its ref_put() finds the list
 * empty and frees p. */
static inline uint32_t kids_emptied(ct_token *p, uint32_t f, bool *dead) {
  if (f & CT_LOCK_ORPHAN)
    *dead = atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1;
  return f & ~(CT_LOCK_KIDS | CT_LOCK_ORPHAN);
}

/* Remove t's link l from its parent p, which may put p on *dying: p is
 * freed with its last child when it is an orphan, and a child born
 * triggered (on no list) drops the counted reference it holds instead.
 * With locked, the caller already holds p's lock, which ct__lock()
 * returned flags f for (and it is dropped here); otherwise it is taken. */
static void unlink_parent(ct_token *p, struct ct_link *l, bool locked,
                          uint32_t f, ct_token **dying) {
  /* Under p's lock: p's trigger reads its children under it, and the
   * slot (where p keeps l) is guarded by it. */
  uint32_t cap = 0, n = 0;
  bool dead = false;
  if (!locked)
    f = ct__lock(&p->lock);
  if (CT_UNLIKELY(l->slot == CT_SLOT_NONE)) {
    /* Born triggered: never on p's list, holds a counted reference. */
    ct__unlock_flags(&p->lock, f);
    if (ref_put(p)) {
      p->work_next = *dying;
      *dying = p;
    }
    return;
  }
  struct ct_kids *gone = kids_remove(p, l);
  if (p->kids & 1) {
    struct ct_kids *a = (struct ct_kids *)(p->kids - 1);
    cap = a->cap;
    n = a->live;
    /* A detached array (p is triggered) is never shrunk: see kids_remove. */
    if (!(a->flags & CT_KIDS_DETACHED) && cap >= 64 &&
        cap <= KIDS_SHRINK_MAX && n <= cap / 4)
      ct__ref_get(p); /* keeps p for kids_maybe_shrink(), after the unlock */
    else
      cap = 0;
  } else if (!p->kids) {
    /* We were p's last child: if p is an orphan (its last counted
     * reference went while it had children, see ref_put) it dies with
     * us. */
    f = kids_emptied(p, f, &dead);
  }
  /* If p is not dead, it may be freed by another thread as soon as we
   * unlock (see ref_put on the FUTEX_WAKE after the unlock): we touch it
   * no more unless we hold a reference (cap != 0). */
  ct__unlock_flags(&p->lock, f);
  if (gone)
    ct__kids_free(gone);
  if (cap) {
    ct__kids_maybe_shrink(p, cap);
    dead = ref_put(p);
  }
  if (dead) {
    p->work_next = *dying;
    *dying = p;
  }
}

/* Free t, whose count is zero, unlinking it from its parents first
 * (links[first..]: the caller has done the ones before). */
static void destroy_one(ct_token *t, ct_token **dying, uint32_t first) {
  assert(t->kids == 0 && "a live child keeps us alive");
  /* relaxed: a check only.  Dead means an empty list, so KIDS and ORPHAN
   * were cleared by whoever emptied it, and nobody holds the lock. */
  assert(atomic_load_explicit(&t->lock, memory_order_relaxed) == 0 &&
         "a token freed with its lock held or its flags set");
  for (uint32_t i = first; i < t->nlinks; i++) {
    struct ct_link *l = &t->links[i];
    if (l->parent)
      unlink_parent(l->parent, l, false, 0, dying);
  }
  /* The last reference is gone: the acq_rel decrement that got us here
   * ordered every other thread's writes before these loads, so the orders
   * below only have to be atomic. */
  uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
  if (st & CT_ST_OWNS_CAUSE) {
    ct_token *c = atomic_load_explicit(&t->cause, memory_order_relaxed);
    if (ref_put(c)) {
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
  ct__token_block_free(t, token_bytes(t, st));
}

/* Free every token on the list (destroying one may add its parents). */
static void destroy_list(ct_token *dying) {
  while (dying) {
    ct_token *x = dying;
    dying = x->work_next;
    destroy_one(x, &dying, 0);
  }
}

/* The last reference of a child with one parent, no ext and no INTEREST
 * (so no children either), dropped without an RMW on its count (the
 * churn path: create a child, destroy it).  Holding the only reference,
 * we know that nobody else can take one except a trigger of the parent
 * walking its children, which does so (ct__ref_unless_zero) under the
 * parent's lock only: with no ext there is no deadline-heap entry, the
 * other place that finds tokens without a reference.  So, under the
 * parent's lock, a count still at 1 is ours alone and may go to 0 with a
 * plain store; the unlink is made in the same critical section.  Returns
 * false, changing nothing, if the count was not 1 by then (a walker took
 * a reference) or t has INTEREST by then: the caller drops it with
 * ref_put(). */
static bool unref_sole_child(ct_token *t, uint32_t s0) {
  struct ct_link *l = &t->links[0];
  ct_token *p = l->parent;
  /* Hints only (a prefetch never faults nor changes anything): when t
   * goes back to malloc, free() reads the chunk headers just before and
   * just after t's block.  With children scattered in memory and
   * destroyed in random order those lines are misses of their own, taken
   * one after the other past our unlock; started here they overlap with
   * the miss on t itself and the write to t's slot in p's array. */
  /* s0, the caller's load of t's state: NAMED and the name's length are
   * immutable. */
  size_t bytes = token_bytes(t, s0);
  __builtin_prefetch((const char *)t - sizeof(size_t));
  __builtin_prefetch((const char *)t + bytes);
  /* A guess, checked by the CAS: t is usually on p's list (then KIDS is
   * set, and p is not an orphan unless its owners have gone), so expect
   * just KIDS.  When t is not on the list (born triggered) or p is an
   * orphan, the guess is wrong and ct__lock_slow() takes the lock with
   * the flags it finds. */
  uint32_t f = ct__lock_expect(&p->lock, CT_LOCK_KIDS);
  /* acquire: a walker that took a reference and has dropped it since did
   * so with a release decrement outside the lock; reading its 1 orders
   * its uses of t before our free, and (with the acquire load of state)
   * anything another holder did before dropping its reference, such as
   * linking a child to t, which sets INTEREST first. */
  uint32_t s;
  if (atomic_load_explicit(&t->refs, memory_order_acquire) != 1 ||
      ((s = atomic_load_explicit(&t->state, memory_order_acquire)) &
       CT_ST_INTEREST)) {
    ct__unlock_flags(&p->lock, f);
    return false;
  }
  /* relaxed: every reader that could still find t reads the count under
   * this lock (ct__ref_unless_zero in process()), after our unlock's
   * release; t is off p's children before the lock is dropped. */
  atomic_store_explicit(&t->refs, 0, memory_order_relaxed);
  ct_token *dying = NULL;
  if (CT_LIKELY(l->slot == CT_SLOT_ONE)) {
    /* unlink_parent() for p's only child, inline (the churn path): the
     * list is empty after it; the orphan check is the one written there. */
    assert(p->kids == (uintptr_t)l);
    p->kids = 0;
    l->slot = CT_SLOT_NONE;
    bool dead = false;
    /* f is KIDS alone unless p is an orphan (or the guess missed). */
    ct__unlock_flags(&p->lock, CT_LIKELY(f == CT_LOCK_KIDS)
                                   ? 0
                                   : kids_emptied(p, f, &dead));
    if (dead) {
      p->work_next = NULL;
      dying = p;
    }
  } else {
    unlink_parent(p, l, true, f, &dying); /* drops p's lock */
  }
  /* s is final: nobody can claim t any more (a claim needs a reference,
   * and ours is the only one, or p's lock while t is on its list, or an
   * ext for the deadline thread), so OWNS_CAUSE is as we read it. */
  if (CT_UNLIKELY(s & CT_ST_OWNS_CAUSE)) {
    destroy_one(t, &dying, 1);
  } else {
    /* No ext (checked by the caller), no other link, no cause to drop:
     * only the block is left. */
    assert(t->kids == 0 && "a live child keeps us alive");
    ct__token_block_free(t, bytes);
  }
  if (dying)
    destroy_list(dying);
  return true;
}

void ct_token_unref(ct_token *t) {
  if (!t)
    return;
  /* acquire: if it reads 1 (ours), the decrements of every earlier holder
   * (release) are ordered before what unref_sole_child() does.  Plain
   * loads first cost nothing next to the RMW they can save; INTEREST is
   * re-checked under the parent's lock. */
  uint32_t s;
  if (atomic_load_explicit(&t->refs, memory_order_acquire) == 1 &&
      t->nlinks == 1 && t->links[0].parent &&
      !((s = atomic_load_explicit(&t->state, memory_order_relaxed)) &
        CT_ST_INTEREST) &&
      /* acquire: pairs with the release CAS that published ext (only a
       * holder of a reference creates it, and we hold the only one). */
      !atomic_load_explicit(&t->ext, memory_order_acquire) &&
      unref_sole_child(t, s))
    return;
  if (!ref_put(t))
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

