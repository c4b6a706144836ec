/* SPDX-License-Identifier: MIT
 *
 * callback.c -- registering callbacks, running them on trigger, and
 * unregistering them with std::stop_callback's guarantee.
 *
 * Design notes:
 *  - The storage is the caller's (struct ct_callback).  The list head lives
 *    in the token's struct ct_ext, so the first registration on a token
 *    allocates that (once) and may fail with -ENOMEM; later ones allocate
 *    nothing.
 *  - Exactly once: a callback leaves the token's list under the token's
 *    lock, either popped by the thread that processes the trigger (which
 *    then runs it) or removed by ct_callback_unregister() (which then
 *    guarantees it never runs).  The popper pops one callback at a time and
 *    runs it with no lock held, so a callback may call anything, including
 *    unregistering a callback that has not run yet.
 *  - Unregistering a running callback waits for it (futex on cb->state)
 *    unless it runs in this very thread -- the callback unregistering
 *    itself, or an outer callback unregistered from a nested one -- in
 *    which case we set the runner's stack flag `destroyed` so the runner
 *    does not touch the storage after the callback returns (the storage may
 *    be freed by then).  Same idea as libstdc++'s _M_destroyed.
 */
#include "internal.h"

_Static_assert(sizeof(struct ct_cb) <= sizeof(ct_callback),
               "struct ct_callback is too small for struct ct_cb");
_Static_assert(_Alignof(struct ct_cb) <= _Alignof(ct_callback),
               "struct ct_callback is under-aligned");

static inline struct ct_cb *cb_of(ct_callback *c) { return (struct ct_cb *)c; }

/* Zero a registration for reuse: every byte of the caller's struct
 * ct_callback, as the header promises.  The state word is written
 * atomically, last (a second, concurrent unregister -- a caller's bug we
 * still survive -- may be reading it); the other fields are ours alone by
 * then. */
static void cb_clear(struct ct_cb *cb) {
  cb->next = NULL;
  cb->pprev = NULL;
  cb->token = NULL;
  cb->fn = NULL;
  cb->arg = NULL;
  cb->unused_ = 0;
  cb->destroyed = NULL;
  memset(&cb->runner, 0, sizeof cb->runner);
  memset((char *)cb + sizeof *cb, 0, sizeof(ct_callback) - sizeof *cb);
  atomic_store_explicit(&cb->state, CB_IDLE, memory_order_release);
}

int ct_callback_register(ct_callback *c, ct_token *t, ct_callback_fn fn,
                         void *arg) {
  if (!c || !t || !fn)
    return -EINVAL;
  struct ct_cb *cb = cb_of(c);
  /* relaxed: a registration is made by its owner's thread; this only
   * catches a second register of the same storage.  CB_INLINE (the
   * callback ran at registration) holds nothing: unregistering it is
   * optional, so the storage may be registered again as it is. */
  uint32_t st = atomic_load_explicit(&cb->state, memory_order_relaxed);
  if (st != CB_IDLE && st != CB_INLINE)
    return -EINVAL; /* already registered (or not zero-initialised) */
  /* Allocate before writing anything: a failed call has no effect. */
  struct ct_ext *e = ct__ext(t); /* the list head lives there */
  if (!e)
    return -ENOMEM;
  if (st == CB_INLINE)
    cb_clear(cb);
  cb->token = t;
  cb->fn = fn;
  cb->arg = arg;
  cb->destroyed = NULL;

  ct__lock(&t->lock);
  /* The RMW on the state word decides, against the trigger's fetch_or, whether
   * the trigger will see our registration (see internal.h). */
  uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
  if (!(s & CT_ST_INTEREST))
    s = atomic_fetch_or_explicit(&t->state, CT_ST_INTEREST,
                                 memory_order_acq_rel);
  if (s & CT_ST_TRIGGERED) {
    ct__unlock(&t->lock);
    atomic_store_explicit(&cb->state, CB_INLINE, memory_order_relaxed);
    fn(t, arg);
    return 1;
  }
  /* A reference, so the caller may drop its own and unregister later. */
  ct_token_ref(t);
  cb->next = e->callbacks;
  if (cb->next)
    cb->next->pprev = &cb->next;
  cb->pprev = &e->callbacks;
  e->callbacks = cb;
  atomic_store_explicit(&cb->state, CB_LISTED, memory_order_relaxed);
  ct__unlock(&t->lock);
  return 0;
}

/* Run t's callbacks, one at a time; t is triggered and referenced by the
 * caller.  New registrations see TRIGGERED and run inline instead. */
void ct__run_callbacks(ct_token *t) {
  struct ct_ext *e = atomic_load_explicit(&t->ext, memory_order_acquire);
  if (!e)
    return; /* no registration ever: it would have created ext */
  for (;;) {
    bool destroyed = false;
    ct__lock(&t->lock);
    struct ct_cb *cb = e->callbacks;
    if (!cb) {
      ct__unlock(&t->lock);
      return;
    }
    e->callbacks = cb->next;
    if (cb->next)
      cb->next->pprev = &e->callbacks;
    cb->pprev = NULL;
    cb->runner = pthread_self();
    cb->destroyed = &destroyed;
    /* relaxed: readers of RUNNING either hold the lock (unregister) or only
     * wait for it to change. */
    atomic_store_explicit(&cb->state, CB_RUNNING, memory_order_relaxed);
    ct_callback_fn fn = cb->fn;
    void *arg = cb->arg;
    ct__unlock(&t->lock);

    fn(t, arg);

    if (destroyed)
      continue; /* unregistered from inside: cb may be gone */
    /* Clear the stack pointer under the lock: an unregister in another
     * thread reads it under the lock. */
    ct__lock(&t->lock);
    cb->destroyed = NULL;
    ct__unlock(&t->lock);
    /* release: the callback's effects happen before the unregistering
     * thread returns.  After this store cb may be freed at any moment, so
     * we only use its address for the wake (see ct__futex_wake). */
    uint32_t old =
        atomic_exchange_explicit(&cb->state, CB_DONE, memory_order_release);
    if (old & CB_WAITING)
      ct__futex_wake(&cb->state, INT_MAX);
  }
}

int ct_callback_unregister(ct_callback *c) {
  if (!c)
    return -EINVAL;
  struct ct_cb *cb = cb_of(c);
  /* acquire: pairs with the runner's release exchange to DONE, so a
   * callback that has run is seen with its effects. */
  uint32_t s = atomic_load_explicit(&cb->state, memory_order_acquire);
  if (s == CB_IDLE)
    return -EINVAL;
  if (s == CB_INLINE) {
    cb_clear(cb);
    return 1;
  }
  ct_token *t = cb->token; /* kept alive by the registration's reference */
  int ran = 1;
  ct__lock(&t->lock);
  s = atomic_load_explicit(&cb->state, memory_order_acquire);
  if (s == CB_LISTED) {
    *cb->pprev = cb->next;
    if (cb->next)
      cb->next->pprev = cb->pprev;
    ran = 0;
  } else if ((s & ~(uint32_t)CB_WAITING) == CB_RUNNING &&
             pthread_equal(cb->runner, pthread_self())) {
    /* Running in this thread, further up the stack: tell the runner not
     * to touch cb again.  The registration ends here, so publish IDLE and
     * wake anybody who (wrongly, it is a second unregister) waits for the
     * run to finish: they see IDLE and return -EINVAL instead of sleeping
     * for ever.  acq_rel: the exchange is the last write to cb we make
     * before the caller may free it. */
    if (cb->destroyed)
      *cb->destroyed = true;
    uint32_t old =
        atomic_exchange_explicit(&cb->state, CB_IDLE, memory_order_acq_rel);
    ct__unlock(&t->lock);
    if (old & CB_WAITING)
      ct__futex_wake(&cb->state, INT_MAX);
    cb_clear(cb);
    ct_token_unref(t);
    return 1;
  } else if ((s & ~(uint32_t)CB_WAITING) == CB_RUNNING) {
    ct__unlock(&t->lock);
    /* Wait for the runner in another thread to finish.  acquire: pairs
     * with the runner's release exchange to DONE, so the callback's effects
     * are visible when we return. */
    for (;;) {
      s = atomic_load_explicit(&cb->state, memory_order_acquire);
      if (s == CB_DONE)
        break;
      if (s == CB_IDLE)
        return -EINVAL; /* ended meanwhile by the callback itself */
      if (!(s & CB_WAITING) &&
          !atomic_compare_exchange_weak_explicit(&cb->state, &s,
                                                 s | CB_WAITING,
                                                 memory_order_acquire,
                                                 memory_order_acquire))
        continue;
      ct__futex_wait(&cb->state, CB_RUNNING | CB_WAITING, CT_FOREVER);
    }
    ct__lock(&t->lock);
  }
  ct__unlock(&t->lock);
  cb_clear(cb);
  ct_token_unref(t);
  return ran;
}
