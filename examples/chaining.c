/* SPDX-License-Identifier: MIT */
/* chaining.c -- the reference's "Chaining Tokens" doctest, in C.  token_b is
 * triggered when token_a is, but triggering a chained token leaves its
 * parents alone.  The output is the doctest's own transcript, followed by
 * the chained token's name and the token that triggered it.
 *
 * Output:
 *   >>> token_a = CancelToken('token-a')
 *   >>> token_b = CancelToken('token-b').chain(token_a)
 *   >>> token_a.triggered
 *   False
 *   >>> token_b.triggered
 *   False
 *   >>> token_a.trigger()
 *   >>> token_a.triggered
 *   True
 *   >>> token_b.triggered
 *   True
 *   >>> token_b.name
 *   token-b:token-a
 *   >>> token_b.triggered_token.name
 *   token-a
 *   >>> token_c = CancelToken('token-c')
 *   >>> token_d = CancelToken('token-d').chain(token_c)
 *   >>> token_d.trigger()
 *   >>> token_c.triggered
 *   False
 *   >>> token_d.triggered
 *   True
 *   >>> token_d.triggered_token.name
 *   token-d:token-c
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken.h>

#include <stdio.h>
#include <stdlib.h>

static void report(const char *what, int err) {
  fprintf(stderr, "chaining: %s: %s\n", what, ct_strerror(err));
}

/* CancelToken(name).chain(other): a new token named "<name>:<other>",
 * triggered when either is.  The chain holds its own references on both
 * parents, so the temporary token can be dropped at once, as Python drops
 * it. */
static int new_chained(ct_token **out, const char *name, ct_token *other) {
  ct_token *tmp;
  int rc = ct_token_new(&tmp, name);

  if (rc < 0)
    return rc;
  rc = ct_token_chain(out, tmp, other);
  ct_token_unref(tmp);
  return rc;
}

/* Print `>>> <expr>` and then the token's state as Python prints a bool. */
static void show_triggered(const char *expr, const ct_token *t) {
  printf(">>> %s\n%s\n", expr, ct_token_triggered(t) ? "True" : "False");
}

/* Print `>>> <expr>` and then t's name.  Returns 0, -EINVAL (t is NULL,
 * as ct_token_triggered_token() gives for a token not triggered) or -ENOMEM
 * (composing a chained name ran out of memory). */
static int show_name(const char *expr, ct_token *t) {
  const char *name;

  if (t == NULL)
    return -EINVAL;
  name = ct_token_name(t);
  if (name == NULL)
    return -ENOMEM;
  printf(">>> %s\n%s\n", expr, name);
  return 0;
}

/* Print `>>> <expr>` and trigger t, which must not have been triggered. */
static int trigger(const char *expr, ct_token *t) {
  int rc;

  printf(">>> %s\n", expr);
  rc = ct_token_trigger(t);
  if (rc < 0)
    return rc;
  return rc == 1 ? 0 : -EBUSY; /* 0 would mean: already triggered */
}

int main(void) {
  ct_token *token_a = NULL, *token_b = NULL, *token_c = NULL, *token_d = NULL;
  int status = EXIT_FAILURE;
  int rc;

  /* The reference's doctest. */
  printf(">>> token_a = CancelToken('token-a')\n");
  rc = ct_token_new(&token_a, "token-a");
  if (rc < 0) {
    report("ct_token_new(token-a)", rc);
    goto out;
  }
  printf(">>> token_b = CancelToken('token-b').chain(token_a)\n");
  rc = new_chained(&token_b, "token-b", token_a);
  if (rc < 0) {
    report("chain token-b with token-a", rc);
    goto out;
  }
  show_triggered("token_a.triggered", token_a);
  show_triggered("token_b.triggered", token_b);
  rc = trigger("token_a.trigger()", token_a);
  if (rc < 0) {
    report("ct_token_trigger(token-a)", rc);
    goto out;
  }
  show_triggered("token_a.triggered", token_a);
  show_triggered("token_b.triggered", token_b);

  /* The chained name, and which token caused token_b to trigger (borrowed:
   * it lives as long as token_b). */
  rc = show_name("token_b.name", token_b);
  if (rc < 0) {
    report("ct_token_name(token_b)", rc);
    goto out;
  }
  rc = show_name("token_b.triggered_token.name",
                 ct_token_triggered_token(token_b));
  if (rc < 0) {
    report("ct_token_name(triggered_token(token_b))", rc);
    goto out;
  }

  /* "token_b can be triggered independently, not effecting token_a": shown
   * on a fresh pair, since token_a has been triggered for good. */
  printf(">>> token_c = CancelToken('token-c')\n");
  rc = ct_token_new(&token_c, "token-c");
  if (rc < 0) {
    report("ct_token_new(token-c)", rc);
    goto out;
  }
  printf(">>> token_d = CancelToken('token-d').chain(token_c)\n");
  rc = new_chained(&token_d, "token-d", token_c);
  if (rc < 0) {
    report("chain token-d with token-c", rc);
    goto out;
  }
  rc = trigger("token_d.trigger()", token_d);
  if (rc < 0) {
    report("ct_token_trigger(token_d)", rc);
    goto out;
  }
  show_triggered("token_c.triggered", token_c);
  show_triggered("token_d.triggered", token_d);
  rc = show_name("token_d.triggered_token.name",
                 ct_token_triggered_token(token_d));
  if (rc < 0) {
    report("ct_token_name(triggered_token(token_d))", rc);
    goto out;
  }

  if (fflush(stdout) != 0) {
    perror("chaining: stdout");
    goto out;
  }
  status = EXIT_SUCCESS;

out:
  ct_token_unref(token_d);
  ct_token_unref(token_c);
  ct_token_unref(token_b);
  ct_token_unref(token_a);
  return status;
}
