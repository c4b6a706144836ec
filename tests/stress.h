/* SPDX-License-Identifier: MIT
 *
 * stress.h -- what the two files of the random stress share: test_stress.c
 * (the main thread: epochs, the quiescent checks, main) and stress_ops.c
 * (the workers' and waiters' random operations).  The state of one epoch
 * is defined in test_stress.c; the design notes (epochs, invariants,
 * lifetimes) are at the top of that file.  Not a header for anything else.
 */
#ifndef CT_STRESS_H
#define CT_STRESS_H

#include "test_util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum {
  MAXREC = 2048,
  MAXEDGE = 4 * MAXREC,
  MAXPAR = 4,
  EPOCH_MS = 100,
  FD_RECS = 64,   /* only the first records get descriptors: bounded fds */
  MAXTHREADS = 64
};
#define FAIL_NS (INT64_C(60) * 1000 * MS) /* failure-only deadline */

/* ---- failures from any thread ---- */

extern _Atomic int nfail;
extern char first_fail[256];
extern pthread_mutex_t fail_mu;

#define BAD(...)                                                              \
  do {                                                                        \
    if (atomic_fetch_add(&nfail, 1) == 0) {                                   \
      pthread_mutex_lock(&fail_mu);                                           \
      snprintf(first_fail, sizeof first_fail, __VA_ARGS__);                   \
      pthread_mutex_unlock(&fail_mu);                                         \
    }                                                                         \
  } while (0)

/* ---- the registry of one epoch ---- */

struct rec {
  pthread_mutex_t mu; /* guards t */
  ct_token *t;        /* the registry's reference; NULL once released */
  ct_token *ptr;      /* the same pointer, kept after release */
  int np, par[MAXPAR];
  uint64_t done_seq;      /* creation returned before this point */
  _Atomic int child_head; /* edges to children, -1: none */
  _Atomic bool direct;    /* a trigger was aimed at it (set before) */
  _Atomic bool deadline;  /* a deadline was aimed at it (set before) */
  _Atomic bool hasfd;     /* ct_token_fd() was called on it */
  _Atomic bool ready;     /* filled in (release) */
};
struct edge {
  int child, next;
};

extern struct rec recs[MAXREC];
extern struct edge edges[MAXEDGE];
extern _Atomic int nrec, nedge;
extern _Atomic uint64_t seq;
extern _Atomic int epoch_stop;
extern ct_token *epoch_full; /* triggered when the registry is full */

/* ---- callbacks ---- */

struct reg {
  ct_callback cb;
  ct_token *t; /* borrowed: the registration's own reference keeps it */
  int rec;
  _Atomic int ran;
  int result; /* of unregister; -1 while registered */
  bool tracking;
  bool holds; /* register returned 0: the registration holds a reference */
  struct reg *next;
};

extern _Atomic int dl_pending; /* tracking callbacks not yet run */
extern _Atomic int64_t dl_max;  /* the latest deadline set this epoch */
extern pthread_mutex_t dl_mu;
extern pthread_cond_t dl_cv;

/* ---- per-thread state ---- */

enum op {
  OP_NEW, OP_CHILD, OP_CHAIN, OP_CHAIN_N, OP_TRIGGER, OP_DEADLINE, OP_WAIT,
  OP_FD, OP_REGISTER, OP_UNREGISTER, OP_RELEASE, OP_NAME, OP_DEEP, OP_FORK,
  OP_SIGNAL_DEADLINE, NOPS
};
extern const char *const op_names[NOPS];

struct worker {
  pthread_t th;
  uint64_t rng;
  uint64_t ops[NOPS];
  struct reg *regs; /* registered, or unregistered and kept to check */
  struct reg *done; /* unregistered: checked and freed at the epoch end */
  /* waiters */
  pthread_mutex_t wm; /* guards cur */
  ct_token *cur;      /* the waiter's reference while it waits */
  int cur_rec;
  uint64_t waits;
};
extern struct worker workers[MAXTHREADS], waiters[MAXTHREADS];

/* Parking: threads wait here between epochs. */
extern pthread_mutex_t park_mu;
extern pthread_cond_t park_cv, parked_cv;
extern int parked_workers, parked_waiters, epoch_no; /* under park_mu */
extern _Atomic int quit;

/* stress_ops.c: the threads' bodies (started by test_stress.c). */
void *worker_main(void *arg);
void *waiter_main(void *arg);

#endif
