/* SPDX-License-Identifier: MIT
 *
 * deadline.c -- tokens that trigger themselves at a monotonic time.  One
 * library thread, started on first use, sleeps until the earliest deadline
 * in a binary min-heap; there is no thread and no descriptor per token.
 *
 * Design notes:
 *  - The heap holds no references.  A token's last unref removes its entry
 *    (ct__deadline_remove, under the heap mutex) before the token is freed.
 *    The timer thread pops due entries under the mutex and keeps only those
 *    it can reference (ref_unless_zero); the others are being destroyed.
 *    So a forgotten deadline never keeps a token alive -- the leak Go's
 *    context.WithTimeout has without cancel().
 *  - LOCK ORDER: the heap mutex is never held with a token lock.  Tokens
 *    are triggered and unreferenced after the mutex is released, since
 *    either may run callbacks or free tokens (which takes the mutex).
 *  - ext->heap_idx is guarded by the heap mutex.
 *  - fork(): the child gets no timer thread.  An atfork handler resets the
 *    mutex and marks the thread as not running, and the child restarts it
 *    on its next ct_token_set_deadline(); deadlines armed before the fork
 *    fire in the child only from then on.
 */
#include "internal.h"

#include <time.h>

struct entry {
  int64_t when;
  ct_token *t;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond; /* CLOCK_MONOTONIC; set up once in init() */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct entry *heap; /* guarded by mu */
static size_t heap_len, heap_cap;
static bool thread_running; /* guarded by mu */
/* When the timer thread will next look at the heap by itself: a new
 * deadline earlier than this must wake it; a later one need not (it will
 * see it when it recomputes).  INT64_MAX while it waits with no timeout.
 * Guarded by mu. */
static int64_t sleeping_until = INT64_MAX;

static struct ct_ext *ext_of(ct_token *t) {
  return atomic_load_explicit(&t->ext, memory_order_acquire);
}

static void heap_set(size_t i, struct entry e) {
  heap[i] = e;
  ext_of(e.t)->heap_idx = i;
}

static void sift_up(size_t i) {
  struct entry e = heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap[parent].when <= e.when)
      break;
    heap_set(i, heap[parent]);
    i = parent;
  }
  heap_set(i, e);
}

static void sift_down(size_t i) {
  struct entry e = heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= heap_len)
      break;
    if (c + 1 < heap_len && heap[c + 1].when < heap[c].when)
      c++;
    if (e.when <= heap[c].when)
      break;
    heap_set(i, heap[c]);
    i = c;
  }
  heap_set(i, e);
}

/* Remove slot i; the caller holds mu. */
static void heap_remove_at(size_t i) {
  ext_of(heap[i].t)->heap_idx = SIZE_MAX;
  heap_len--;
  if (i == heap_len)
    return;
  heap_set(i, heap[heap_len]);
  if (i > 0 && heap[i].when < heap[(i - 1) / 2].when)
    sift_up(i);
  else
    sift_down(i);
}

static void *timer_main(void *arg) {
  (void)arg;
  enum { BATCH = 64 };
  ct_token *due[BATCH];
  pthread_mutex_lock(&mu);
  for (;;) {
    if (heap_len == 0) {
      sleeping_until = INT64_MAX;
      pthread_cond_wait(&cond, &mu);
      continue;
    }
    int64_t when = heap[0].when, now = ct_now();
    if (when > now) {
      struct timespec ts = {when / 1000000000, when % 1000000000};
      sleeping_until = when;
      pthread_cond_timedwait(&cond, &mu, &ts);
      continue;
    }
    sleeping_until = INT64_MIN; /* awake and working: nobody need signal */
    size_t n = 0;
    while (n < BATCH && heap_len > 0 && heap[0].when <= now) {
      ct_token *t = heap[0].t;
      heap_remove_at(0);
      if (ct__ref_unless_zero(t))
        due[n++] = t;
    }
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < n; i++) {
      ct_token_trigger_reason(due[i], CT_REASON_DEADLINE, 0);
      ct_token_unref(due[i]);
    }
    pthread_mutex_lock(&mu);
  }
  return NULL;
}

static void init_cond(void) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&cond, &a);
  pthread_condattr_destroy(&a);
}

static void atfork_child(void) {
  /* The parent's timer thread may have been waiting on cond at the fork:
   * the child inherits a waiter that does not exist.  Start afresh. */
  pthread_mutex_init(&mu, NULL);
  init_cond();
  thread_running = false;
  sleeping_until = INT64_MAX;
}

static void init(void) {
  init_cond();
  pthread_atfork(NULL, NULL, atfork_child);
}

/* Start the timer thread if it is not running; the caller holds mu. */
static int ensure_thread(void) {
  if (thread_running)
    return 0;
  int r = ct__thread_start(timer_main);
  if (r != 0)
    return -EAGAIN;
  thread_running = true;
  return 0;
}

int ct_token_set_deadline(ct_token *t, int64_t deadline) {
  if (!t || deadline < 0)
    return -EINVAL;
  if (ct_token_triggered(t))
    return 0;
  if (deadline <= ct_now())
    return ct_token_trigger_reason(t, CT_REASON_DEADLINE, 0);
  struct ct_ext *e = ct__ext(t);
  if (!e)
    return -ENOMEM;
  pthread_once(&once, init);
  pthread_mutex_lock(&mu);
  int r = ensure_thread();
  if (r < 0)
    goto out;
  if (e->heap_idx != SIZE_MAX) {
    size_t i = e->heap_idx;
    if (deadline < heap[i].when) { /* the earlier deadline stays */
      heap[i].when = deadline;
      sift_up(i);
    }
  } else {
    if (heap_len == heap_cap) {
      size_t ncap = heap_cap ? 2 * heap_cap : 64;
      struct entry *nh = ct__alloc(ncap * sizeof *nh);
      if (!nh) {
        r = -ENOMEM;
        goto out;
      }
      if (heap_len)
        memcpy(nh, heap, heap_len * sizeof *nh);
      ct__free(heap, heap_cap * sizeof *heap);
      heap = nh;
      heap_cap = ncap;
    }
    atomic_store_explicit(&e->armed, true, memory_order_relaxed);
    heap[heap_len] = (struct entry){deadline, t};
    e->heap_idx = heap_len++;
    sift_up(heap_len - 1);
  }
  /* Wake the thread only if it would otherwise sleep past this deadline:
   * a token per request with a long timeout then costs no wake-up. */
  if (deadline < sleeping_until) {
    sleeping_until = deadline;
    pthread_cond_signal(&cond);
  }
out:
  pthread_mutex_unlock(&mu);
  return r;
}

int ct_token_new_deadline(ct_token **out, const char *name,
                          int64_t deadline) {
  ct_token *t;
  /* CT_FOREVER is negative too: a token that never fires is ct_token_new(). */
  if (!out || deadline < 0)
    return -EINVAL;
  int r = ct_token_new(&t, name);
  if (r < 0)
    return r;
  r = ct_token_set_deadline(t, deadline);
  if (r < 0) {
    ct_token_unref(t);
    return r;
  }
  *out = t;
  return 0;
}

void ct__deadline_remove(ct_token *t, struct ct_ext *e) {
  (void)t;
  pthread_mutex_lock(&mu);
  if (e->heap_idx != SIZE_MAX)
    heap_remove_at(e->heap_idx);
  pthread_mutex_unlock(&mu);
}
