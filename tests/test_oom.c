/* SPDX-License-Identifier: MIT
 *
 * test_oom.c -- out of memory at every allocation site in turn.  For each
 * operation we fail allocation 0, then 1, then 2, ... until the operation
 * succeeds.  Every failure must return -ENOMEM (or NULL where documented),
 * leave no memory behind and leave the tokens involved working.
 */
#include "test_util.h"

#include <unistd.h>

/* Run op with allocation number k (counted from now) failing, for k = 0,
 * 1, ... until it succeeds.  Returns how many failures were injected. */
typedef int (*op_fn)(void *ctx);
static int fail_each_allocation(op_fn op, void (*undo)(void *), void *ctx) {
  int failures = 0;
  for (long k = 0;; k++) {
    long base = atomic_load(&t_live_bytes);
    atomic_store(&t_fail_at, atomic_load(&t_nallocs) + k);
    int r = op(ctx);
    atomic_store(&t_fail_at, -1);
    if (r == -ENOMEM) {
      failures++;
      assert_int_equal(atomic_load(&t_live_bytes), base); /* nothing leaked */
      continue;
    }
    assert_true(r >= 0);
    if (undo)
      undo(ctx);
    return failures;
  }
}

struct ctx {
  ct_token *a, *b, *out;
  int fds[2];
};

static int op_new(void *p) { return ct_token_new(&((struct ctx *)p)->out, "n"); }
static int op_child(void *p) {
  struct ctx *c = p;
  return ct_token_new_child(&c->out, "child", c->a);
}
static int op_chain(void *p) {
  struct ctx *c = p;
  return ct_token_chain(&c->out, c->a, c->b);
}
static int op_chain_n(void *p) {
  struct ctx *c = p;
  ct_token *ps[3] = {c->a, c->b, c->a};
  return ct_token_chain_n(&c->out, ps, 3);
}
static int op_deadline(void *p) {
  struct ctx *c = p;
  int r = ct_token_new(&c->out, "d");
  if (r < 0)
    return r;
  r = ct_token_set_deadline(c->out, ct_deadline_after(3600 * 1000 * MS));
  if (r < 0)
    ct_token_unref(c->out);
  return r;
}
static int op_new_deadline(void *p) {
  struct ctx *c = p;
  return ct_token_new_deadline(&c->out, "nd", ct_deadline_after(3600 * 1000 * MS));
}
static int op_fd(void *p) {
  struct ctx *c = p;
  int r = ct_token_new(&c->out, "fd");
  if (r < 0)
    return r;
  r = ct_token_fd(c->out);
  if (r < 0)
    ct_token_unref(c->out);
  return r;
}
static int op_name(void *p) {
  struct ctx *c = p;
  int r = ct_token_chain(&c->out, c->a, c->b);
  if (r < 0)
    return r;
  if (!ct_token_name(c->out)) {
    ct_token_unref(c->out);
    return -ENOMEM;
  }
  return 0;
}
static int op_message(void *p) {
  struct ctx *c = p;
  int r = ct_token_chain(&c->out, c->a, c->b);
  if (r < 0)
    return r;
  ct_token_trigger(c->out);
  char buf[64];
  r = ct_token_message(c->out, buf, sizeof buf);
  if (r < 0) {
    ct_token_unref(c->out);
    return r;
  }
  return strcmp(buf, "Cancellation requested by a:b token") == 0 ? 0 : -EPROTO;
}
static int op_poll_many(void *p) {
  struct ctx *c = p;
  int r = ct_token_new(&c->out, "poll");
  if (r < 0)
    return r;
  struct pollfd pf[40];
  for (int i = 0; i < 40; i++)
    pf[i] = (struct pollfd){c->fds[0], POLLIN, 0};
  r = ct_poll(c->out, pf, 40, 0);
  if (r == -ENOMEM) {
    ct_token_unref(c->out);
    return r;
  }
  return r == 40 ? 0 : -EPROTO;
}

static void nop_cb(ct_token *t, void *arg) {
  (void)t;
  (void)arg;
}
static int op_register(void *p) {
  struct ctx *c = p;
  int r = ct_token_new(&c->out, "cb");
  if (r < 0)
    return r;
  ct_callback cb = {0};
  r = ct_callback_register(&cb, c->out, nop_cb, NULL);
  if (r < 0) {
    ct_token_unref(c->out);
    return r;
  }
  return ct_callback_unregister(&cb) == 0 ? 0 : -EPROTO;
}

static void undo_out(void *p) {
  struct ctx *c = p;
  ct_token_unref(c->out);
  c->out = NULL;
}

static void test_every_allocation_site(void **state) {
  (void)state;
  struct ctx c = {0};
  ASSERT_OK(ct_token_new(&c.a, "a"));
  ASSERT_OK(ct_token_new(&c.b, "b"));
  assert_int_equal(pipe(c.fds), 0);
  assert_int_equal(write(c.fds[1], "x", 1), 1);
  struct {
    const char *name;
    op_fn op;
  } ops[] = {{"new", op_new},           {"new_child", op_child},
             {"chain", op_chain},       {"chain_n", op_chain_n},
             {"deadline", op_deadline}, {"new_deadline", op_new_deadline},
             {"fd", op_fd},             {"name", op_name},
             {"message", op_message},   {"poll", op_poll_many},
             {"register", op_register}};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    int failures = fail_each_allocation(ops[i].op, undo_out, &c);
    print_message("%-12s %d allocation failure(s) injected\n", ops[i].name,
                  failures);
    assert_true(failures >= 1);
  }
  /* The parents were never left half-linked: a trigger reaches only the
   * children that exist, and destroys cleanly. */
  ct_token *kid;
  ASSERT_OK(ct_token_new_child(&kid, "kid", c.a));
  assert_int_equal(ct_token_trigger(c.a), 1);
  assert_true(ct_token_triggered(kid));
  assert_false(ct_token_triggered(c.b));
  ct_token_unref(kid);
  ct_token_unref(c.a);
  ct_token_unref(c.b);
  close(c.fds[0]);
  close(c.fds[1]);
}

/* Names composed lazily: a failure leaves nothing cached, and the next
 * call composes it. */
static void test_name_retry_after_oom(void **state) {
  (void)state;
  ct_token *a, *b, *c;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_token_chain(&c, a, b));
  atomic_store(&t_fail_at, atomic_load(&t_nallocs));
  assert_null(ct_token_name(c));
  atomic_store(&t_fail_at, -1);
  assert_string_equal(ct_token_name(c), "a:b");
  ct_token_unref(c);
  ct_token_unref(a);
  ct_token_unref(b);
}

int main(void) {
  t_use_counting_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_allocation_site),
      cmocka_unit_test(test_name_retry_after_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
