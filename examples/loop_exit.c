/* SPDX-License-Identifier: MIT */
/* loop_exit.c -- the reference's "Loop exit condition": a worker thread runs
 * `while (!ct_token_triggered(tok)) { one unit of work }` until main
 * triggers its token, then asks the token which token stopped it and why.
 * Checking costs one atomic load, so it can sit in a tight loop.
 *
 * Output:
 *   worker: stopped after at least 1000 units of work
 *   worker: triggered_token=worker reason=trigger
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The worker tells main once it has done this many units, so that the
 * output does not depend on how the threads are scheduled. */
#define WARMUP_UNITS 1000u

struct worker {
  ct_token *stop;      /* the loop runs until this is triggered */
  ct_token *warmed_up; /* triggered by the worker after WARMUP_UNITS units */
  unsigned long units; /* units of work done */
  uint64_t checksum;   /* what the work computes */
  int result;          /* 0, or the negative errno that made it fail */
};

static void report(const char *what, int err) {
  fprintf(stderr, "loop_exit: %s: %s\n", what, ct_strerror(err));
}

/* One unit of work: a step of an FNV-1a hash over the counter. */
static void do_unit_of_work(struct worker *w) {
  w->checksum = (w->checksum ^ w->units) * UINT64_C(0x100000001b3);
  w->units++;
}

/* async def my_task(token): while not token.triggered: ... */
static void *worker_main(void *arg) {
  struct worker *w = arg;

  while (!ct_token_triggered(w->stop)) {
    do_unit_of_work(w);
    if (w->units == WARMUP_UNITS) {
      int rc = ct_token_trigger(w->warmed_up);
      if (rc < 0) {
        w->result = rc;
        return NULL;
      }
    }
  }
  w->result = 0;
  return NULL;
}

int main(void) {
  struct worker w = {NULL, NULL, 0, UINT64_C(0xcbf29ce484222325), 0};
  pthread_t thread;
  ct_token *by;
  ct_reason reason;
  int status = EXIT_FAILURE;
  bool waited = false;
  int rc;

  rc = ct_token_new(&w.stop, "worker");
  if (rc < 0) {
    report("ct_token_new(worker)", rc);
    return EXIT_FAILURE;
  }
  rc = ct_token_new(&w.warmed_up, "warmed-up");
  if (rc < 0) {
    report("ct_token_new(warmed-up)", rc);
    goto out;
  }

  rc = pthread_create(&thread, NULL, worker_main, &w);
  if (rc != 0) {
    report("pthread_create", -rc);
    goto out;
  }

  /* Let the worker do some work first.  On failure we still trigger and
   * join, so that the worker does not outlive its tokens. */
  rc = ct_token_wait(w.warmed_up, CT_FOREVER);
  if (rc < 0)
    report("ct_token_wait(warmed-up)", rc);
  else
    waited = true;

  /* Stop it: the worker sees the flag at its next loop test. */
  rc = ct_token_trigger(w.stop);
  if (rc < 0) {
    /* Only a NULL token fails; the worker would never stop. */
    report("ct_token_trigger(worker)", rc);
    exit(EXIT_FAILURE);
  }

  rc = pthread_join(thread, NULL);
  if (rc != 0) {
    report("pthread_join", -rc);
    goto out;
  }
  if (w.result < 0) {
    report("worker", w.result);
    goto out;
  }
  if (!waited)
    goto out;
  if (w.units < WARMUP_UNITS) {
    fprintf(stderr, "loop_exit: worker stopped after only %lu units\n",
            w.units);
    goto out;
  }
  printf("worker: stopped after at least %u units of work\n", WARMUP_UNITS);

  /* Which token stopped the loop, and why?  Both have their final values
   * once ct_token_triggered() has returned true. */
  by = ct_token_triggered_token(w.stop); /* borrowed: lives as long as w.stop */
  reason = ct_token_reason(w.stop, NULL);
  if (by == NULL || ct_token_name(by) == NULL) {
    fprintf(stderr, "loop_exit: the triggered token has no name\n");
    goto out;
  }
  printf("worker: triggered_token=%s reason=%s\n", ct_token_name(by),
         ct_reason_name(reason));

  if (fflush(stdout) != 0) {
    perror("loop_exit: stdout");
    goto out;
  }
  status = EXIT_SUCCESS;

out:
  ct_token_unref(w.warmed_up);
  ct_token_unref(w.stop);
  return status;
}
