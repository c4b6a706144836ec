/* SPDX-License-Identifier: MIT */
/* external_signal.c -- the reference's "Waiting for an external signal":
 * main hands the token "worker" to do_work() in another thread and blocks
 * in ct_token_wait() until do_work() triggers it to say the work is done.
 * Nothing polls: the waiting thread sleeps in the kernel.
 *
 * Output:
 *   work done
 *   main: worker finished (triggered_token=worker)
 *   main: sum of 1..1000000 is 500000500000
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define N 1000000ull

struct job {
  ct_token *done;         /* triggered by do_work() when it has finished */
  unsigned long long sum; /* the result */
  int result;             /* 0, or the negative errno that made it fail */
};

static void report(const char *what, int err) {
  fprintf(stderr, "external_signal: %s: %s\n", what, ct_strerror(err));
}

/* The work, and then the signal: trigger the token main waits on. */
static void *do_work(void *arg) {
  struct job *job = arg;
  int rc;

  job->sum = 0;
  for (unsigned long long i = 1; i <= N; i++)
    job->sum += i;
  printf("work done\n");

  rc = ct_token_trigger(job->done); /* 1: this call triggered it */
  job->result = rc < 0 ? rc : 0;
  return NULL;
}

int main(void) {
  struct job job = {NULL, 0, 0};
  pthread_t thread;
  ct_token *by;
  int status = EXIT_FAILURE;
  bool waited = false;
  int rc;

  /* token = CancelToken('worker') */
  rc = ct_token_new(&job.done, "worker");
  if (rc < 0) {
    report("ct_token_new(worker)", rc);
    return EXIT_FAILURE;
  }

  /* asyncio.ensure_future(do_work(token)) */
  rc = pthread_create(&thread, NULL, do_work, &job);
  if (rc != 0) {
    report("pthread_create", -rc);
    goto out;
  }

  /* await token.wait(): wait for the work to be completed before
   * proceeding.  (ct_deadline_after() instead of CT_FOREVER would bound
   * the wait; it then returns -ETIMEDOUT if the worker is late.) */
  rc = ct_token_wait(job.done, CT_FOREVER);
  if (rc < 0) {
    report("ct_token_wait(worker)", rc);
  } else {
    by = ct_token_triggered_token(job.done);
    if (by == NULL || ct_token_name(by) == NULL) {
      fprintf(stderr, "external_signal: no triggered token after the wait\n");
    } else {
      printf("main: worker finished (triggered_token=%s)\n", ct_token_name(by));
      waited = true;
    }
  }

  /* The thread itself must still be joined to release it; that also makes
   * job.sum and job.result safe to read. */
  rc = pthread_join(thread, NULL);
  if (rc != 0) {
    report("pthread_join", -rc);
    goto out;
  }
  if (job.result < 0) {
    report("do_work", job.result);
    goto out;
  }
  if (!waited)
    goto out;
  printf("main: sum of 1..%llu is %llu\n", N, job.sum);

  if (fflush(stdout) != 0) {
    perror("external_signal: stdout");
    goto out;
  }
  status = EXIT_SUCCESS;

out:
  ct_token_unref(job.done);
  return status;
}
