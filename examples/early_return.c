/* SPDX-License-Identifier: MIT */
/* early_return.c -- the C form of raise_if_triggered(): functions that
 * return int give -ECANCELED back to their callers once the token is
 * triggered, with CT_RETURN_IF_TRIGGERED() as a guard at the top of a
 * function and ct_token_check() inside a loop.  The caller then turns the
 * token into the reference's exception message with ct_token_message().
 *
 * Output:
 *   message before trigger: EAGAIN
 *   run 1: step 1
 *   run 1: step 2
 *   run 1: step 3
 *   run 1: finished 3 steps
 *   run 2: step 1
 *   run 2: step 2
 *   run 2: cancel requested
 *   run 2: ECANCELED
 *   run 3: ECANCELED
 *   Cancellation requested by demo token
 *   ECANCELED: operation cancelled: the token was triggered
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken.h>

#include <stdio.h>
#include <stdlib.h>

static void report(const char *what, int err) {
  fprintf(stderr, "early_return: %s: %s\n", what, ct_strerror(err));
}

/* Run a job of `nsteps` steps.  Returns the number of steps done, or a
 * negative errno: -ECANCELED when tok is triggered before the job ends.
 *
 * To keep the output the same on every run, the job triggers tok itself
 * after step `cancel_after` (0: never).  In a real program another thread,
 * a deadline or a signal handler would do that. */
static int run_job(ct_token *tok, int run, int nsteps, int cancel_after) {
  /* Do not even start if the job has been cancelled. */
  CT_RETURN_IF_TRIGGERED(tok);

  for (int step = 1; step <= nsteps; step++) {
    /* while True: token.raise_if_triggered(); ... */
    int rc = ct_token_check(tok);
    if (rc < 0)
      return rc; /* -ECANCELED */

    printf("run %d: step %d\n", run, step);

    if (step == cancel_after) {
      printf("run %d: cancel requested\n", run);
      rc = ct_token_trigger(tok);
      if (rc < 0)
        return rc;
    }
  }
  return nsteps;
}

/* Run the job and say how it ended.  Returns 0 when run_job() did what it
 * should: finish (expect_cancel false) or stop with -ECANCELED. */
static int run_and_report(ct_token *tok, int run, int cancel_after,
                          bool expect_cancel) {
  int rc = run_job(tok, run, 3, cancel_after);

  if (rc >= 0) {
    printf("run %d: finished %d steps\n", run, rc);
  } else if (rc == -ECANCELED) {
    printf("run %d: %s\n", run, ct_err_name(rc));
  } else {
    report("run_job", rc); /* a real error, not a cancellation */
    return -1;
  }
  if ((rc == -ECANCELED) != expect_cancel) {
    fprintf(stderr, "early_return: run %d should have %s\n", run,
            expect_cancel ? "been cancelled" : "finished");
    return -1;
  }
  return 0;
}

int main(void) {
  ct_token *tok = NULL;
  char *message = NULL;
  int status = EXIT_FAILURE;
  int len, rc;

  rc = ct_token_new(&tok, "demo");
  if (rc < 0) {
    report("ct_token_new(demo)", rc);
    return EXIT_FAILURE;
  }

  /* There is no message until the token is triggered. */
  rc = ct_token_message(tok, NULL, 0);
  if (rc != -EAGAIN) {
    fprintf(stderr, "early_return: ct_token_message before trigger: "
                    "expected EAGAIN, got %d\n", rc);
    goto out;
  }
  printf("message before trigger: %s\n", ct_err_name(rc));

  if (run_and_report(tok, 1, 0, false) < 0) /* runs to the end */
    goto out;
  if (run_and_report(tok, 2, 2, true) < 0) /* ct_token_check() stops it */
    goto out;
  if (run_and_report(tok, 3, 0, true) < 0) /* CT_RETURN_IF_TRIGGERED() */
    goto out;

  /* The reference's str(OperationCancelled): size the message first, as
   * with snprintf(), then fetch it. */
  len = ct_token_message(tok, NULL, 0);
  if (len < 0) {
    report("ct_token_message", len);
    goto out;
  }
  message = malloc((size_t)len + 1);
  if (message == NULL) {
    report("malloc", -ENOMEM);
    goto out;
  }
  rc = ct_token_message(tok, message, (size_t)len + 1);
  if (rc < 0) {
    report("ct_token_message", rc);
    goto out;
  }
  if (rc != len) {
    fprintf(stderr, "early_return: ct_token_message: length %d, then %d\n",
            len, rc);
    goto out;
  }
  printf("%s\n", message);
  printf("%s: %s\n", ct_err_name(-ECANCELED), ct_strerror(-ECANCELED));

  if (fflush(stdout) != 0) {
    perror("early_return: stdout");
    goto out;
  }
  status = EXIT_SUCCESS;

out:
  free(message);
  ct_token_unref(tok);
  return status;
}
