/* SPDX-License-Identifier: MIT
 *
 * test_race.c -- races across threads: trigger against chain against unref
 * against register and unregister against wait.  Each test repeats many
 * short rounds and checks the invariants after every round:
 *   - every descendant of a triggered token is triggered, and its
 *     triggered_token is an ancestor that really was triggered;
 *   - every callback ran exactly once, or was unregistered first (then
 *     never ran);
 *   - no waiter stays blocked after its token is triggered (a hang fails
 *     through the ctest time limit).
 * Run it under ThreadSanitizer and AddressSanitizer to catch the rest.
 * CT_RACE_ROUNDS scales the number of rounds (default 1).
 */
#include "test_util.h"

#include <sched.h>

static int scale(void) {
  const char *s = getenv("CT_RACE_ROUNDS");
  int n = s ? atoi(s) : 1;
  return n > 0 ? n : 1;
}

static unsigned rnd(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return *seed >> 8;
}

static void count_cb(ct_token *t, void *arg) {
  (void)t;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* ---- trigger against chain (and registration on the new children) ---- */

enum { KIDS = 200 };
struct chainer {
  ct_token *root, *local;
  ct_token *kids[KIDS];
  ct_callback cbs[KIDS];
  _Atomic int ran[KIDS];
  int reg[KIDS];
  _Atomic int *go;
};

static void *chainer_main(void *arg) {
  struct chainer *c = arg;
  while (!atomic_load(c->go))
    ;
  for (int i = 0; i < KIDS; i++) {
    int r = (i % 2) ? ct_token_chain(&c->kids[i], c->local, c->root)
                    : ct_token_new_child(&c->kids[i], "k", c->root);
    if (r != 0)
      abort();
    c->reg[i] = ct_callback_register(&c->cbs[i], c->kids[i], count_cb,
                                     &c->ran[i]);
  }
  return NULL;
}

static void *trigger_main(void *arg) {
  ct_token **t = arg;
  _Atomic int *go = (_Atomic int *)t[1];
  while (!atomic_load(go))
    ;
  for (int i = 0; i < 50; i++)
    sched_yield(); /* land somewhere in the middle of the chaining */
  ct_token_trigger(t[0]);
  return NULL;
}

static void test_trigger_vs_chain(void **state) {
  (void)state;
  int rounds = 100 * scale();
  for (int round = 0; round < rounds; round++) {
    _Atomic int go = 0;
    ct_token *root;
    ASSERT_OK(ct_token_new(&root, "root"));
    struct chainer *c = calloc(2, sizeof *c);
    for (int k = 0; k < 2; k++) {
      c[k].root = root;
      c[k].go = &go;
      ASSERT_OK(ct_token_new(&c[k].local, "local"));
    }
    pthread_t th[3];
    void *targ[2] = {root, (void *)&go};
    pthread_create(&th[0], NULL, chainer_main, &c[0]);
    pthread_create(&th[1], NULL, chainer_main, &c[1]);
    pthread_create(&th[2], NULL, trigger_main, targ);
    atomic_store(&go, 1);
    for (int i = 0; i < 3; i++)
      pthread_join(th[i], NULL);
    for (int k = 0; k < 2; k++) {
      for (int i = 0; i < KIDS; i++) {
        ct_token *kid = c[k].kids[i];
        assert_true(ct_token_triggered(kid));
        assert_ptr_equal(ct_token_triggered_token(kid), root);
        assert_int_equal(ct_token_reason(kid, NULL), CT_REASON_TRIGGER);
        assert_int_equal(c[k].ran[i], 1); /* inline (1) or by trigger (0) */
        assert_true(c[k].reg[i] == 0 || c[k].reg[i] == 1);
        ASSERT_ERR(ct_callback_unregister(&c[k].cbs[i]), 1);
        ct_token_unref(kid);
      }
      assert_false(ct_token_triggered(c[k].local));
      ct_token_unref(c[k].local);
    }
    free(c);
    ct_token_unref(root);
  }
}

/* ---- trigger against unref: children die while the parent fans out ---- */

struct dier {
  ct_token **kids;
  int n;
  _Atomic int *go;
};

static void *dier_main(void *arg) {
  struct dier *d = arg;
  while (!atomic_load(d->go))
    ;
  for (int i = 0; i < d->n; i++)
    ct_token_unref(d->kids[i]);
  return NULL;
}

static void test_trigger_vs_unref(void **state) {
  (void)state;
  int rounds = 100 * scale();
  enum { N = 2000 };
  for (int round = 0; round < rounds; round++) {
    _Atomic int go = 0;
    ct_token *root;
    ASSERT_OK(ct_token_new(&root, "root"));
    ct_token **kids = malloc(N * sizeof *kids);
    ct_callback *cbs = calloc(N, sizeof *cbs);
    _Atomic int ran = 0;
    for (int i = 0; i < N; i++) {
      ASSERT_OK(ct_token_new_child(&kids[i], "k", root));
      if (i % 4 == 0) /* some children have work: they get queued */
        ASSERT_OK(ct_callback_register(&cbs[i], kids[i], count_cb, &ran));
    }
    struct dier d = {kids, N, &go};
    pthread_t th;
    void *targ[2] = {root, (void *)&go};
    pthread_create(&th, NULL, dier_main, &d);
    pthread_t tt;
    pthread_create(&tt, NULL, trigger_main, targ);
    atomic_store(&go, 1);
    pthread_join(th, NULL);
    pthread_join(tt, NULL);
    /* registrations kept those children alive: all ran exactly once */
    for (int i = 0; i < N; i += 4)
      ASSERT_ERR(ct_callback_unregister(&cbs[i]), 1);
    assert_int_equal(ran, N / 4);
    free(kids);
    free(cbs);
    ct_token_unref(root);
  }
}

/* ---- register and unregister against trigger ---- */

struct regger {
  ct_token *t;
  _Atomic int *go;
  int bad;
};

static void *regger_main(void *arg) {
  struct regger *g = arg;
  while (!atomic_load(g->go))
    ;
  for (int i = 0; i < 300; i++) {
    ct_callback cb = {0};
    _Atomic int ran = 0;
    int r = ct_callback_register(&cb, g->t, count_cb, &ran);
    int u = ct_callback_unregister(&cb);
    int seen = atomic_load(&ran);
    /* After unregister returns, nothing runs any more. */
    if (r == 1 && (u != 1 || seen != 1))
      g->bad++;
    if (r == 0 && u == 0 && seen != 0)
      g->bad++;
    if (r == 0 && u == 1 && seen != 1)
      g->bad++;
    if (r < 0)
      g->bad++;
  }
  return NULL;
}

static void test_register_unregister_vs_trigger(void **state) {
  (void)state;
  int rounds = 200 * scale();
  for (int round = 0; round < rounds; round++) {
    _Atomic int go = 0;
    ct_token *t;
    ASSERT_OK(ct_token_new(&t, "t"));
    struct regger g[2] = {{t, &go, 0}, {t, &go, 0}};
    pthread_t th[3];
    void *targ[2] = {t, (void *)&go};
    pthread_create(&th[0], NULL, regger_main, &g[0]);
    pthread_create(&th[1], NULL, regger_main, &g[1]);
    pthread_create(&th[2], NULL, trigger_main, targ);
    atomic_store(&go, 1);
    for (int i = 0; i < 3; i++)
      pthread_join(th[i], NULL);
    assert_int_equal(g[0].bad + g[1].bad, 0);
    ct_token_unref(t);
  }
}

/* ---- concurrent triggers of two parents of one child ---- */

struct racer {
  ct_token *t;
  _Atomic int *go;
  int won;
};

static void *racer_main(void *arg) {
  struct racer *r = arg;
  while (!atomic_load(r->go))
    ;
  r->won = ct_token_trigger(r->t);
  return NULL;
}

static void test_concurrent_triggers_first_wins(void **state) {
  (void)state;
  int rounds = 300 * scale();
  for (int round = 0; round < rounds; round++) {
    _Atomic int go = 0;
    ct_token *a, *b, *c;
    ct_callback cb = {0};
    _Atomic int ran = 0;
    ASSERT_OK(ct_token_new(&a, "a"));
    ASSERT_OK(ct_token_new(&b, "b"));
    ASSERT_OK(ct_token_chain(&c, a, b));
    ASSERT_OK(ct_callback_register(&cb, c, count_cb, &ran));
    struct racer r[4] = {{a, &go, 0}, {b, &go, 0}, {c, &go, 0}, {a, &go, 0}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
      pthread_create(&th[i], NULL, racer_main, &r[i]);
    atomic_store(&go, 1);
    for (int i = 0; i < 4; i++)
      pthread_join(th[i], NULL);
    assert_int_equal(r[0].won + r[3].won, 1); /* a: exactly one winner */
    assert_int_equal(r[1].won, 1);
    ct_token *cause = ct_token_triggered_token(c);
    assert_true(cause == a || cause == b || cause == c);
    assert_true(ct_token_triggered(cause));
    assert_int_equal(ran, 1);
    ASSERT_ERR(ct_callback_unregister(&cb), 1);
    ct_token_unref(c);
    ct_token_unref(a);
    ct_token_unref(b);
  }
}

/* ---- waiters on descendants against a trigger and children dying ---- */

static void *forever_waiter(void *arg) {
  ct_token *t = arg;
  if (ct_token_wait(t, CT_FOREVER) != 0)
    abort();
  ct_token_unref(t); /* drop the waiter's own reference */
  return NULL;
}

static void test_waiters_never_left_blocked(void **state) {
  (void)state;
  int rounds = 100 * scale();
  for (int round = 0; round < rounds; round++) {
    ct_token *root, *mid;
    ASSERT_OK(ct_token_new(&root, "root"));
    ASSERT_OK(ct_token_new_child(&mid, "mid", root));
    enum { W = 6 };
    pthread_t th[W];
    for (int i = 0; i < W; i++) {
      ct_token *leaf;
      ASSERT_OK(ct_token_new_child(&leaf, "leaf", i % 2 ? mid : root));
      pthread_create(&th[i], NULL, forever_waiter, leaf); /* takes leaf */
    }
    ct_token_unref(mid); /* the leaves keep it */
    ct_token_trigger(root);
    for (int i = 0; i < W; i++)
      pthread_join(th[i], NULL);
    ct_token_unref(root);
  }
}

/* ---- mixed random stress with invariant checks ---- */

enum { ROOTS = 4, LIVE = 24 };
struct slot {
  ct_token *t;
  ct_token *parents[3];
  int nparents;
  ct_callback cb;
  _Atomic int ran;
  int registered; /* 0 no, 1 listed/ran-later, 2 ran inline */
};
struct stresser {
  ct_token **roots;
  unsigned seed;
  int ops;
  int bad;
  struct slot s[LIVE];
};

/* End a slot's registration and drop its tokens.  Checked here, while
 * other threads still trigger: unregister's result equals the number of
 * runs, and a triggered token's triggered_token is itself or the cause of
 * one of its parents (which is triggered). */
static void slot_end(struct stresser *st, struct slot *s) {
  if (s->registered) {
    int u = ct_callback_unregister(&s->cb);
    if (u < 0 || atomic_load(&s->ran) != u)
      st->bad++;
  }
  if (ct_token_triggered(s->t)) {
    ct_token *cause = ct_token_triggered_token(s->t);
    int ok = cause == s->t;
    for (int i = 0; i < s->nparents; i++)
      ok |= cause == ct_token_triggered_token(s->parents[i]);
    if (!ok || !ct_token_triggered(cause))
      st->bad++;
  }
  ct_token_unref(s->t);
  for (int i = 0; i < s->nparents; i++)
    ct_token_unref(s->parents[i]);
  memset(s, 0, sizeof *s);
}

/* At quiescence (all threads joined, so every trigger call has returned):
 * a token with a triggered parent is triggered. */
static int slot_quiescent_bad(struct slot *s) {
  int bad = 0;
  for (int i = 0; i < s->nparents; i++)
    if (ct_token_triggered(s->parents[i]) && !ct_token_triggered(s->t))
      bad++;
  return bad;
}

static void *stress_main(void *arg) {
  struct stresser *st = arg;
  for (int op = 0; op < st->ops; op++) {
    struct slot *s = &st->s[rnd(&st->seed) % LIVE];
    unsigned what = rnd(&st->seed) % 100;
    if (!s->t) {
      s->nparents = 1 + (int)(rnd(&st->seed) % 3);
      for (int i = 0; i < s->nparents; i++) {
        int use_live = rnd(&st->seed) % 3 == 0;
        struct slot *o = &st->s[rnd(&st->seed) % LIVE];
        s->parents[i] = use_live && o->t && o != s ? o->t
                                                   : st->roots[rnd(&st->seed) % ROOTS];
      }
      if (ct_token_chain_n(&s->t, s->parents, (size_t)s->nparents) != 0)
        st->bad++;
      if (what < 50) {
        int r = ct_callback_register(&s->cb, s->t, count_cb, &s->ran);
        s->registered = r == 0 ? 1 : r == 1 ? 2 : 0;
      }
      if (what % 7 == 0)
        ct_token_set_deadline(s->t, ct_deadline_after((int64_t)(what % 3) * MS));
      /* our own references, so slot_end may unref parents that are
       * other slots' tokens */
      for (int i = 0; i < s->nparents; i++)
        ct_token_ref(s->parents[i]);
    } else if (what < 5) {
      ct_token_trigger(st->roots[rnd(&st->seed) % ROOTS]);
    } else if (what < 15) {
      ct_token_trigger(s->t);
    } else if (what < 25) {
      int r = ct_token_wait(s->t, ct_deadline_after(MS / 10));
      if (r == 0 && !ct_token_triggered(s->t))
        st->bad++;
    } else if (what < 30) {
      (void)ct_token_name(s->t);
    } else {
      slot_end(st, s);
    }
  }
  return NULL; /* live slots are checked and ended by the main thread */
}

static void test_random_stress(void **state) {
  (void)state;
  int rounds = 20 * scale();
  for (int round = 0; round < rounds; round++) {
    ct_token *roots[ROOTS];
    for (int i = 0; i < ROOTS; i++)
      ASSERT_OK(ct_token_new(&roots[i], "root"));
    enum { T = 4 };
    struct stresser *st = calloc(T, sizeof *st);
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
      st[i].roots = roots;
      st[i].seed = (unsigned)(round * 7919 + i * 104729 + 1);
      st[i].ops = 20000;
      pthread_create(&th[i], NULL, stress_main, &st[i]);
    }
    int bad = 0;
    for (int i = 0; i < T; i++)
      pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++)
      for (int k = 0; k < LIVE; k++)
        if (st[i].s[k].t)
          bad += slot_quiescent_bad(&st[i].s[k]);
    for (int i = 0; i < T; i++) {
      for (int k = 0; k < LIVE; k++)
        if (st[i].s[k].t)
          slot_end(&st[i], &st[i].s[k]);
      bad += st[i].bad;
    }
    assert_int_equal(bad, 0);
    free(st);
    for (int i = 0; i < ROOTS; i++)
      ct_token_unref(roots[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trigger_vs_chain),
      cmocka_unit_test(test_trigger_vs_unref),
      cmocka_unit_test(test_register_unregister_vs_trigger),
      cmocka_unit_test(test_concurrent_triggers_first_wins),
      cmocka_unit_test(test_waiters_never_left_blocked),
      cmocka_unit_test(test_random_stress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
