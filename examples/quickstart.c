/* SPDX-License-Identifier: MIT */
/* quickstart.c -- the reference's Quick Start, with a thread in place of an
 * asyncio task: the task blocks in ct_token_wait() until main triggers the
 * "demo" token.  A second token, "started", tells main that the task is
 * running, because a token is also a handy one-shot event.
 *
 * Output:
 *   started task
 *   task cancelled
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct task {
  ct_token *token;   /* cancels the task; main keeps the reference */
  ct_token *started; /* triggered by the task once it runs */
  int result;        /* 0, or the negative errno that made the task fail */
};

static void report(const char *what, int err) {
  fprintf(stderr, "quickstart: %s: %s\n", what, ct_strerror(err));
}

/* The reference's some_task(token). */
static void *some_task(void *arg) {
  struct task *task = arg;
  int rc;

  printf("started task\n");

  /* Let main go on.  This is what the reference's asyncio.sleep(0.01)
   * hopes for, made certain. */
  rc = ct_token_trigger(task->started);
  if (rc < 0) {
    task->result = rc;
    return NULL;
  }

  /* await token.wait(): sleep until the token is triggered. */
  rc = ct_token_wait(task->token, CT_FOREVER);
  if (rc < 0) {
    task->result = rc;
    return NULL;
  }

  printf("task cancelled\n");
  task->result = 0;
  return NULL;
}

int main(void) {
  struct task task = {NULL, NULL, 0};
  pthread_t thread;
  int status = EXIT_FAILURE;
  bool waited = false;
  int rc;

  rc = ct_token_new(&task.token, "demo");
  if (rc < 0) {
    report("ct_token_new(demo)", rc);
    return EXIT_FAILURE;
  }
  rc = ct_token_new(&task.started, "started");
  if (rc < 0) {
    report("ct_token_new(started)", rc);
    goto out;
  }

  /* asyncio.ensure_future(some_task(token)) */
  rc = pthread_create(&thread, NULL, some_task, &task);
  if (rc != 0) {
    report("pthread_create", -rc);
    goto out;
  }

  /* Wait until the task has started.  If this fails we still trigger and
   * join below, so that the task does not outlive its tokens. */
  rc = ct_token_wait(task.started, CT_FOREVER);
  if (rc < 0)
    report("ct_token_wait(started)", rc);
  else
    waited = true;

  /* token.trigger(): wakes the task.  1 means this call triggered it. */
  rc = ct_token_trigger(task.token);
  if (rc < 0) {
    /* Only a NULL token fails; the task would never wake, so leave
     * without joining it. */
    report("ct_token_trigger(demo)", rc);
    exit(EXIT_FAILURE);
  }

  /* Wait for the task to finish (the reference's second sleep). */
  rc = pthread_join(thread, NULL);
  if (rc != 0) {
    report("pthread_join", -rc);
    goto out;
  }
  if (task.result < 0) {
    report("some_task", task.result);
    goto out;
  }
  if (fflush(stdout) != 0) {
    perror("quickstart: stdout");
    goto out;
  }
  if (waited)
    status = EXIT_SUCCESS;

out:
  ct_token_unref(task.started); /* NULL is fine */
  ct_token_unref(task.token);
  return status;
}
