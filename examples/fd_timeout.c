/* SPDX-License-Identifier: MIT */
/* fd_timeout.c -- waiting on a descriptor with a timeout and a token, the C
 * form of the reference's cancellable_wait(): ct_wait_fd() and ct_poll() end
 * when the descriptor is ready, the deadline passes or the token is
 * triggered.  An event loop with its own poll() can add ct_token_fd(tok) to
 * its set instead.
 *
 * Output:
 *   poll(): nothing ready
 *   ct_wait_fd: timed out (ETIMEDOUT)
 *   ct_poll: readable, read 'x'
 *   ct_wait_fd: cancelled: Cancellation requested by fd-demo token
 *   poll(): token descriptor readable, pipe empty
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MS 1000000 /* nanoseconds */

static void report(const char *what, int err) {
  fprintf(stderr, "fd_timeout: %s: %s\n", what, ct_strerror(err));
}

/* A call returned something else than the example expects. */
static void unexpected(const char *what, const char *expected, int got) {
  if (got < 0)
    fprintf(stderr, "fd_timeout: %s: expected %s, got %s\n", what, expected,
            ct_strerror(got));
  else
    fprintf(stderr, "fd_timeout: %s: expected %s, got %d\n", what, expected,
            got);
}

struct canceller {
  ct_token *tok; /* borrowed from main, which joins before dropping it */
  int result;    /* what ct_token_trigger() returned */
};

/* Another thread cancels the wait. */
static void *canceller_main(void *arg) {
  struct canceller *c = arg;

  c->result = ct_token_trigger(c->tok);
  return NULL;
}

/* poll(2) for an event loop: restarted when a signal interrupts it.
 * Returns the count of ready entries or a negative errno. */
static int plain_poll(struct pollfd *fds, nfds_t n, int timeout_ms) {
  int rc;

  do
    rc = poll(fds, n, timeout_ms);
  while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : rc;
}

int main(void) {
  ct_token *tok = NULL;
  int pipefd[2] = {-1, -1};
  struct canceller canceller = {NULL, 0};
  struct pollfd fds[2];
  pthread_t thread;
  char message[128];
  char byte;
  int tok_fd;
  int status = EXIT_FAILURE;
  int rc;

  rc = ct_token_new(&tok, "fd-demo");
  if (rc < 0) {
    report("ct_token_new(fd-demo)", rc);
    return EXIT_FAILURE;
  }
  if (pipe(pipefd) != 0) {
    report("pipe", -errno);
    goto out;
  }

  /* The token's own descriptor, for code that runs its own poll() loop.
   * It belongs to the token: never read, write or close it. */
  tok_fd = ct_token_fd(tok);
  if (tok_fd < 0) {
    report("ct_token_fd", tok_fd);
    goto out;
  }
  fds[0] = (struct pollfd){.fd = pipefd[0], .events = POLLIN};
  fds[1] = (struct pollfd){.fd = tok_fd, .events = POLLIN};

  /* 0. Nothing has happened yet: a poll() that does not block finds
   *    neither descriptor ready. */
  rc = plain_poll(fds, 2, 0);
  if (rc != 0) {
    unexpected("poll()", "nothing ready", rc);
    goto out;
  }
  printf("poll(): nothing ready\n");

  /* 1. Nobody writes to the pipe, so the deadline passes first:
   *    cancellable_wait(..., timeout=0.05) raising TimeoutError. */
  rc = ct_wait_fd(tok, pipefd[0], POLLIN, ct_deadline_after(50 * MS));
  if (rc != -ETIMEDOUT) {
    unexpected("ct_wait_fd", "ETIMEDOUT", rc);
    goto out;
  }
  printf("ct_wait_fd: timed out (%s)\n", ct_err_name(rc));

  /* 2. With data in the pipe the wait ends at once.  ct_poll() takes a
   *    whole set, as poll(2) does, and fills in revents. */
  if (write(pipefd[1], "x", 1) != 1) {
    report("write", -errno);
    goto out;
  }
  fds[0].revents = 0;
  rc = ct_poll(tok, &fds[0], 1, CT_FOREVER);
  if (rc < 0) {
    report("ct_poll", rc);
    goto out;
  }
  if (rc != 1 || !(fds[0].revents & POLLIN)) {
    fprintf(stderr, "fd_timeout: ct_poll: expected the pipe readable\n");
    goto out;
  }
  if (read(pipefd[0], &byte, 1) != 1) {
    report("read", -errno);
    goto out;
  }
  printf("ct_poll: readable, read '%c'\n", byte);

  /* 3. The pipe is empty again and another thread triggers the token: the
   *    wait ends with -ECANCELED, whether the trigger comes before the wait
   *    starts or during it. */
  canceller.tok = tok;
  rc = pthread_create(&thread, NULL, canceller_main, &canceller);
  if (rc != 0) {
    report("pthread_create", -rc);
    goto out;
  }
  rc = ct_wait_fd(tok, pipefd[0], POLLIN, CT_FOREVER);
  {
    int jrc = pthread_join(thread, NULL);
    if (jrc != 0) {
      report("pthread_join", -jrc);
      goto out;
    }
  }
  if (canceller.result != 1) {
    unexpected("ct_token_trigger", "1", canceller.result);
    goto out;
  }
  if (rc != -ECANCELED) {
    unexpected("ct_wait_fd", "ECANCELED", rc);
    goto out;
  }
  /* OperationCancelled's message. */
  rc = ct_token_message(tok, message, sizeof message);
  if (rc < 0) {
    report("ct_token_message", rc);
    goto out;
  }
  if ((size_t)rc >= sizeof message) {
    fprintf(stderr, "fd_timeout: message truncated\n");
    goto out;
  }
  printf("ct_wait_fd: cancelled: %s\n", message);

  /* 4. The token's descriptor is readable now, and stays so. */
  rc = plain_poll(fds, 2, -1);
  if (rc < 0) {
    report("poll", rc);
    goto out;
  }
  if (!(fds[1].revents & POLLIN) || fds[0].revents != 0) {
    fprintf(stderr, "fd_timeout: poll(): expected only the token ready\n");
    goto out;
  }
  printf("poll(): token descriptor readable, pipe empty\n");

  if (fflush(stdout) != 0) {
    perror("fd_timeout: stdout");
    goto out;
  }
  status = EXIT_SUCCESS;

out:
  if (pipefd[0] >= 0)
    close(pipefd[0]);
  if (pipefd[1] >= 0)
    close(pipefd[1]);
  ct_token_unref(tok); /* also closes tok_fd */
  return status;
}
