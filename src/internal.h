/* SPDX-License-Identifier: MIT
 *
 * internal.h -- the token's layout and the primitives every source file of
 * the core shares: the futex lock, the allocator, reference counts.
 *
 * Design notes (read these before touching token.c, callback.c, wait.c or
 * deadline.c):
 *
 *  State word.  Every token starts with one 32-bit atomic word, `state`:
 *    bit 0  TRIGGERED  set once, by the claiming CAS (see Claiming); never
 *                      cleared.  ct_token_triggered() reads it.
 *    bit 1  WAITERS    some thread sleeps (or slept) in a futex on `state`:
 *                      the trigger must FUTEX_WAKE.  Sticky.
 *    bit 2  INTEREST   the token has, or had, children, callbacks or a
 *                      descriptor: the trigger must take the token's lock and
 *                      look.  Set under the lock with an RMW on this same
 *                      word, so that "registered before the trigger" and
 *                      "saw the trigger" are decided by the single total
 *                      order of RMWs on one location -- no Dekker-style
 *                      store/load race is possible.
 *    bit 3  PROXY      ct_token_mark_proxy() was called.
 *    bit 4  NAMED      the token stores its own name (immutable).
 *    bit 5  OWNS_CAUSE `cause` was given by ct_token_trigger_with_cause()
 *                      and t holds a reference on it (set with TRIGGERED).
 *    bits 8..15        reason, bits 16..23 detail; written by the same
 *                      CAS that sets TRIGGERED.
 *    bits 24..31       NAMED: the name's length, or 255 for 255 bytes and
 *                      more (then strlen); immutable, set at creation, so
 *                      that freeing a token need not read its name.
 *
 *  Claiming.  A token is triggered by whoever wins the CAS that sets
 *  TRIGGERED, reason and detail in the state word; a trigger that loses it
 *  therefore finds TRIGGERED already set, and no trigger call returns before
 *  its token reads as triggered.  The winner stores `cause` (release) right
 *  after; a reader that has seen TRIGGERED reads cause through ct__cause(),
 *  which waits out those few instructions.
 *  Exactly one thread claims each token, so exactly one thread processes it:
 *  wakes its waiters, marks its children, writes its descriptor and runs its
 *  callbacks.  Propagation to descendants uses an explicit work list threaded
 *  through `work_next` (no recursion): a token is put on a work list only by
 *  the thread that claimed it, so one link field suffices.  It runs in two
 *  phases (token.c): phase 1 claims, wakes and writes descriptors for every
 *  token the trigger reaches and runs no user code; phase 2 runs the
 *  callbacks of the tokens phase 1 kept (those that had callbacks), on a
 *  second list through the same `work_next`, free again once a token has
 *  left the work list.
 *
 *  Lifetime.  Ancestors outlive descendants, so that `cause` (the token
 *  itself, an ancestor, or a token the trigger handed a reference to:
 *  OWNS_CAUSE) and a child's parent pointers stay valid.  What keeps a
 *  parent alive is either a counted reference (`refs`: its owners', its
 *  callbacks', a trigger's, a child's that was born triggered and so is
 *  on no list) or a child on its children list (`kids`: one inline link,
 *  or an array, struct ct_kids).  A child on that list holds NO counted
 *  reference: linking and unlinking it cost the parent's lock only.
 *  The handshake between the two lives in the token's lock word (below,
 *  "Locks"), whose bits above the lock state are two flags:
 *    CT_LOCK_KIDS    the children list is not empty;
 *    CT_LOCK_ORPHAN  the token is an orphan: its last counted reference
 *                    went while it had children, and `refs` counts one
 *                    more than its holders, the one its children own.
 *  Both are changed only by the lock's holder, in the value its unlock
 *  writes (so they are exact whenever the lock is free), and by the one
 *  lock-free step of the handshake, which needs the lock free:
 *   - refs is a plain count.  The last counted reference of a token that
 *     has (or had) children, i.e. with INTEREST, is dropped (ref_put in
 *     token.c) by a CAS of the free lock word from KIDS to KIDS | ORPHAN:
 *     "the lock is free and the list is not empty" is decided and the
 *     reference handed to the children in one RMW, and refs is not
 *     touched: it stays at 1 (or more, if a walker counted one
 *     meanwhile), and walkers keep seeing a live token.  If that CAS
 *     fails (the lock is held, or the list is empty) the drop takes the
 *     lock and decides under it: count 1 and children -> ORPHAN (in the
 *     unlock's value), count 1 and none -> a CAS of refs from 1 to 0
 *     (dead), else a decrement.
 *   - An orphan is alive: ct__ref_unless_zero() and ct_token_ref() may
 *     count references on it again; their drops are plain decrements
 *     until the children's one is all that is left.
 *   - A child leaving its parent's list (under the parent's lock) that
 *     leaves it empty clears KIDS, and if ORPHAN was set clears it and
 *     drops the children's reference (a decrement of refs): if that was
 *     the last, it frees the parent after the unlock; if not, a walker
 *     holds one, and its drop (the list is empty now) frees it.
 *   Why no handshake is lost: the orphaning CAS and every critical
 *   section are RMWs on the one lock word, so they are totally ordered;
 *   the CAS succeeds only between critical sections, when KIDS says
 *   exactly whether the list is empty, and every critical section after
 *   it sees ORPHAN (ORPHAN implies KIDS).  The orphaner touches the token
 *   no more after its CAS: from then on only the last child may free it.
 *   The CAS is a release, and the last child's lock an acquire RMW on the
 *   same word, later in its modification order: so the orphaner's uses
 *   of the token happen before that free.
 *   So refs == 0 means dead, final, with an empty list, as before.
 *  Detaching (struct ct_kids, "Detached"; trigger.c).  A parent's trigger
 *  replaces its array's entries by a count: under the parent's lock it
 *  marks the array detached and (one-pass claims) writes CT_SLOT_GONE in
 *  every link it claims, and each of those children later leaves, under
 *  the same lock, by a decrement of that count instead of a write to its
 *  entry.
 *  Nothing else changes for the lifetime rules: the same links keep the
 *  parent alive, as a list that is not empty while the count is not 0
 *  (KIDS), the last one to leave empties it (kids_emptied: KIDS, ORPHAN,
 *  the children's reference), and the orphaning CAS sees the same flags.
 *  Every write of the detach and every read of a slot, of the count and
 *  of the flags is made under the parent's lock, so none can see half a
 *  detach.  A child that was dying meanwhile (count at zero, waiting for
 *  the lock to unlink itself) finds CT_SLOT_GONE after a one-pass claim
 *  and decrements like the others, or, after a batched claim (which
 *  detaches nothing), its own index and clears its entry; a shrink that
 *  had looked at the array before the detach finds it detached under the
 *  lock and leaves it.
 *  A token with no INTEREST never had children, so its count is plain.
 *  A child whose count reaches zero removes itself under the parent's lock
 *  before it is freed, so anyone reading the children under that lock may
 *  touch every child there.
 *  Such a walker takes a reference with ct__ref_unless_zero() if it must use
 *  the child after dropping the lock; a child at zero is dying, and since
 *  its children, callbacks and waiters would all keep it alive, it has
 *  nothing left to process.
 *  The last unref of a sole child with no ext and no INTEREST (token.c)
 *  drops the count to zero without an RMW: it reads the count (acquire),
 *  re-checks it under the parent's lock and stores 0 in the same locked
 *  section as the unlink.  That is sound only because a token with no ext
 *  can gain a reference only under its parent's lock (the walkers above).
 *  INVARIANT for future code: whoever takes a reference with
 *  ct__ref_unless_zero() without holding the parent's lock must first give
 *  the token an ext, as the deadline heap does.
 *
 *  Locks.  Each token has a 4-byte futex lock guarding its children (and
 *  every child link's `slot`), its callbacks list and the creation of its
 *  descriptor.  Its word holds the lock state in bits 0..1 (0 free, 1
 *  held, 2 held with sleepers) and the two lifetime flags above it
 *  (CT_LOCK_KIDS, CT_LOCK_ORPHAN): ct__lock() keeps the flags and returns
 *  them, ct__unlock() writes them back unchanged, and ct__unlock_flags()
 *  writes the ones token.c computed under the lock.  No allocation is
 *  made under it: a children array is allocated unlocked and installed
 *  under the lock.  LOCK ORDER: no
 *  thread ever holds two token locks at once.  The deadline heap's mutex is
 *  never held together with a token lock either.  Callbacks run with no
 *  lock held.  Hence no lock-order deadlock is possible inside the library.
 */
#ifndef CT_INTERNAL_H
#define CT_INTERNAL_H

#include "canceltoken.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CT_ST_TRIGGERED 0x01u
#define CT_ST_WAITERS 0x02u
#define CT_ST_INTEREST 0x04u
#define CT_ST_PROXY 0x08u
#define CT_ST_NAMED 0x10u
#define CT_ST_OWNS_CAUSE 0x20u /* cause is not an ancestor: t holds a ref */
#define CT_ST_REASON_SHIFT 8
#define CT_ST_DETAIL_SHIFT 16
#define CT_ST_CAUSE_MASK 0x00ffff01u /* TRIGGERED | reason | detail */
#define CT_ST_NAMELEN_SHIFT 24
#define CT_ST_NAMELEN_LONG 255u /* the length is 255 or more: strlen */

/* The lock word (see "Locks" and "Lifetime" above): the lock state in
 * bits 0..1, then the two lifetime flags. */
#define CT_LOCK_STATE 0x3u
#define CT_LOCK_KIDS 0x4u
#define CT_LOCK_ORPHAN 0x8u
/* At most this many counted references at once (ct_token_ref's header). */
#define CT_REFS_MAX 0x7fffffffu

#define CT_HIDDEN __attribute__((visibility("hidden")))
#define CT_LIKELY(x) __builtin_expect(!!(x), 1)
#define CT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- futex lock: 0 free, 1 held, 2 held with sleepers (Drepper's
 * "Futexes Are Tricky", mutex #2) in bits 0..1, flags above them (see
 * "Locks").  4 bytes instead of pthread's 40, which matters at a million
 * tokens. */
typedef _Atomic uint32_t ct_lock;

CT_HIDDEN uint32_t ct__lock_slow(ct_lock *l);
CT_HIDDEN long ct__futex_wait(_Atomic uint32_t *addr, uint32_t val,
                              int64_t deadline);
CT_HIDDEN void ct__futex_wake(_Atomic uint32_t *addr, int n);

/* Take the lock; returns the flags the word held (bits 2 and up). */
static inline uint32_t ct__lock(ct_lock *l) {
  /* relaxed load: only a guess of the flags, which the CAS checks.
   * acquire on the CAS: everything the previous holder wrote before
   * releasing (and an orphaning CAS's writer before it, see "Lifetime")
   * is visible to us. */
  uint32_t c = atomic_load_explicit(l, memory_order_relaxed) & ~CT_LOCK_STATE;
  if (CT_LIKELY(atomic_compare_exchange_strong_explicit(
          l, &c, c | 1, memory_order_acquire, memory_order_relaxed)))
    return c;
  return ct__lock_slow(l);
}

/* ct__lock() for a caller that knows which flags the word most likely
 * holds (f): no load first.  Returns the flags it really held. */
static inline uint32_t ct__lock_expect(ct_lock *l, uint32_t f) {
  uint32_t c = f;
  /* acquire: as in ct__lock().  A wrong guess only costs the slow path. */
  if (CT_LIKELY(atomic_compare_exchange_strong_explicit(
          l, &c, f | 1, memory_order_acquire, memory_order_relaxed)))
    return f;
  return ct__lock_slow(l);
}

/* Drop the lock, leaving flags f (bits 2 and up) in the word. */
static inline void ct__unlock_flags(ct_lock *l, uint32_t f) {
  /* release: publishes our writes to the next holder (and, with ORPHAN,
   * to the last child that frees the token).  A 2 means somebody sleeps
   * (or is about to: it set 2 before sleeping, and FUTEX_WAIT rechecks
   * the value), so wake one. */
  if (atomic_exchange_explicit(l, f, memory_order_release) & 2)
    ct__futex_wake(l, 1); /* the state is 0, 1 or 2: bit 1 is "2" */
}

/* Drop the lock, leaving its flags as they are. */
static inline void ct__unlock(ct_lock *l) {
  /* relaxed: while we hold the lock nobody else changes the flags (the
   * orphaning CAS needs the lock free), so this load reads them exactly;
   * sleepers change only the state bits, which the exchange reads. */
  ct__unlock_flags(l, atomic_load_explicit(l, memory_order_relaxed) &
                          ~CT_LOCK_STATE);
}

/* ---- the token ---- */
struct ct_link {          /* one parent edge of a child, inside the child */
  ct_token *parent;       /* holds a reference; NULL: never linked (a
                             creation that failed with -ENOMEM) */
  uint32_t slot;          /* where the parent keeps us (guarded by
                             parent->lock): an index in its kids array,
                             CT_SLOT_ONE (its only child, kept inline),
                             CT_SLOT_NONE (on no list: born triggered) or
                             CT_SLOT_GONE (counted in a detached array's
                             live, see struct ct_kids) */
  uint32_t self;          /* our index in the child's links; immutable */
};
#define CT_SLOT_ONE UINT32_MAX
#define CT_SLOT_NONE (UINT32_MAX - 1)
#define CT_SLOT_GONE (UINT32_MAX - 2)

/* A parent's children, when it has (or had) more than one at a time: an
 * array of their links (8 bytes a child; a child may appear several times,
 * one link each).  The trigger reads it sequentially and prefetches each
 * child ahead of claiming it, so the cache misses of children scattered in
 * memory overlap instead of forming a chain.  A removal leaves a hole
 * (NULL) instead of moving another child's link into it, so that it
 * touches only the parent and the removed child; readers skip holes, and
 * the array is compacted when an addition finds it full with at least
 * half of it holes (token.c).
 *
 * Detached.  Once a parent is triggered its array is never walked again
 * (a child linked later is born triggered, on no list), so the trigger
 * that claims the children marks it CT_KIDS_DETACHED, and, when it
 * claims them in one pass (children linked by their first link, which
 * shares its child's header line or the next one), writes CT_SLOT_GONE
 * in each link it claims (trigger.c, under the parent's lock).  A
 * CT_SLOT_GONE child leaving then only decrements live (the parent's
 * header line, not its entry: with children destroyed in random order,
 * that entry was a cache miss of its own), and its entry is stale from
 * then on; a child that kept its slot (claimed in batches) leaves
 * through its entry as before.  The last one frees the array.  A
 * detached array is never walked, compacted or shrunk again.  For the
 * lifetime rules (internal.h) it is a children list like any other:
 * not empty while live > 0, and KIDS says so.
 *
 * Mapped.  An array of CT_KIDS_MAP_MIN bytes or more, while the default
 * allocator is installed, is its own anonymous mapping (token_kids.c),
 * not a malloc() block: glibc serves such a request from the heap once
 * its dynamic mmap threshold has risen, and freeing a heap block that
 * large makes it coalesce every free small chunk first
 * (malloc_consolidate), which after a million children freed in random
 * order took about 300 ms inside the free of the last child. */
struct ct_kids {
  uint32_t n;     /* entries used, holes included: link[0..n-1] */
  uint32_t cap;   /* entries allocated */
  uint32_t live;  /* entries that are not holes (0 < live <= n), the
                     stale entries of CT_SLOT_GONE links included */
  uint32_t flags; /* CT_KIDS_*; guarded by the parent's lock */
  struct ct_link *link[];
};
#define CT_KIDS_DETACHED 0x1u /* see "Detached" above */
#define CT_KIDS_MAPPED 0x2u   /* from mmap(): ct__kids_free() unmaps it */

struct ct_ext; /* rarely used parts, allocated on demand: see token.c */

struct ct_token {
  _Atomic uint32_t state; /* MUST stay first: ct_token_triggered() reads it */
  _Atomic uint32_t refs;         /* counted references (+1 for the
                                    children of an orphan): see Lifetime */
  ct_lock lock;                  /* and the KIDS, ORPHAN flags */
  uint32_t nlinks;               /* immutable */
  _Atomic(ct_token *) cause;     /* stored once, by the claimer */
  uintptr_t kids;                /* guarded by lock: 0 none; a struct ct_link *
                                    (bit 0 clear) for an only child; a
                                    struct ct_kids * | 1 otherwise (maybe
                                    detached: see struct ct_kids) */
  _Atomic(struct ct_ext *) ext;  /* set once by CAS, freed at destroy */
  ct_token *work_next;           /* owned by the holder of the work item */
  struct ct_link links[];        /* nlinks, then the name if NAMED, or,
                                    unnamed with one link, the alias (see
                                    name.c) */
};

/* The bytes after a token's links: its own name (NAMED), or, for an
 * unnamed token with one parent, its alias: the nearest ancestor along
 * single-parent unnamed links that has a name of its own or several
 * parents.  Such a token's name IS its alias's name, so naming skips the
 * whole single-parent stretch in one step (see name.c).  Immutable. */
/* The token a link belongs to: links[] sits at the end of the token. */
static inline ct_token *ct__link_child(const struct ct_link *l) {
  return (ct_token *)(void *)((char *)(l - l->self) -
                              offsetof(struct ct_token, links));
}

static inline const char *ct__stored_name(const ct_token *t) {
  return (const char *)&t->links[t->nlinks];
}
static inline ct_token *ct__alias(const ct_token *t) {
  return *(ct_token *const *)(const void *)&t->links[t->nlinks];
}

/* The parts of a token that most tokens never use, allocated on first use:
 * keeping them out of struct ct_token keeps a child with a short name in a
 * 96-byte malloc chunk. */
struct ct_ext {
  struct ct_cb *callbacks; /* guarded by the token's lock */
  _Atomic int fd;         /* eventfd or -1; created under the token's lock,
                             read without it once set */
  _Atomic uint32_t fd_gen; /* fork generation fd was made in (wait.c):
                              another one means inherited through fork() */
  _Atomic(char *) name;   /* composed chain name, set once by CAS */
  size_t name_size;       /* bytes allocated for name */
  size_t heap_idx;        /* deadline heap slot or SIZE_MAX; guarded by the
                             deadline mutex */
  _Atomic(void *) data;  /* ct_token_set_data() */
  _Atomic bool armed;     /* a deadline was ever set: destroy must look in
                             the heap (set once, under the deadline mutex) */
};

/* The internal form of struct ct_callback. */
struct ct_cb {
  struct ct_cb *next;
  struct ct_cb **pprev;       /* guarded by token->lock */
  ct_token *token;
  ct_callback_fn fn;
  void *arg;
  _Atomic uint32_t state;     /* CB_* below */
  uint32_t unused_;
  bool *destroyed;            /* runner's stack flag; guarded by token->lock */
  pthread_t runner;           /* guarded by token->lock */
};

enum {
  CB_IDLE = 0,    /* never registered, or unregistered (storage is zeroed) */
  CB_LISTED = 1,  /* on the token's list, holds a reference */
  CB_RUNNING = 2, /* popped; fn runs in thread `runner` */
  CB_DONE = 3,    /* fn returned; reference still held */
  CB_INLINE = 4,  /* ran at registration; no reference held */
  CB_WAITING = 8  /* flag on CB_RUNNING: somebody sleeps until it ends */
};

/* ---- allocation (one hook, for failure injection) ---- */
CT_HIDDEN void *ct__alloc(size_t n);
CT_HIDDEN void ct__free(void *p, size_t n);

/* ---- shared helpers ---- */
CT_HIDDEN bool ct__valid_deadline(int64_t deadline);
CT_HIDDEN bool ct__utf8_valid(const char *s, size_t n);
CT_HIDDEN struct ct_ext *ct__ext(ct_token *t);
CT_HIDDEN bool ct__ref_unless_zero(ct_token *t);
CT_HIDDEN void ct__run_callbacks(ct_token *t);
CT_HIDDEN void ct__deadline_remove(ct_token *t, struct ct_ext *ext);
CT_HIDDEN void ct__eventfd_signal(int fd);
/* Make t's descriptor readable, if it has one of this process (adopting an
 * inherited one first, see wait.c).  Caller holds t's lock. */
CT_HIDDEN void ct__fd_signal_locked(struct ct_ext *e);
CT_HIDDEN bool ct__claim(ct_token *t, ct_token *src, uint32_t bits,
                         bool *interest);
CT_HIDDEN void ct__drain(ct_token *t);
CT_HIDDEN ct_token *ct__cause(const ct_token *t);
CT_HIDDEN int ct__thread_start(void *(*fn)(void *));

/* Take one more counted reference on t. */
static inline void ct__ref_get(ct_token *t) {
  /* relaxed: taking a reference only needs atomicity; the caller already
   * holds one (or the parent's lock), which orders everything else. */
  uint32_t old = atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
  assert(old > 0 && "ct_token_ref on a token after its last unref");
#ifndef NDEBUG
  /* The header promises 2^31 - 1 references at most.  An orphan's count
   * has one more than its holders, its children's (see Lifetime), which
   * is not one of them.  relaxed: a check only; it is exact whenever the
   * flag does not change during this call (an orphaning or a last child
   * at that very moment can move the limit by one). */
  uint32_t orphan = (atomic_load_explicit(&t->lock, memory_order_relaxed) &
                     CT_LOCK_ORPHAN)
                        ? 1u
                        : 0u;
  assert(old - orphan < CT_REFS_MAX &&
         "more than 2^31 - 1 references on one token");
#endif
  (void)old;
}

static inline void ct__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif /* CT_INTERNAL_H */
