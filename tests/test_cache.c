/* SPDX-License-Identifier: MIT
 *
 * test_cache.c -- the rules of the per-thread cache of token blocks
 * (src/token_cache.c): a token freed on another thread goes to the freeing
 * thread's cache; the cache is bounded; an allocator installed after
 * blocks were cached sees every allocation and free, balanced; a thread's
 * exit returns its blocks; a forked child can use the forking thread's
 * cache.  In the ASan build, LeakSanitizer checks that nothing leaked after
 * the threads ended.
 */
#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Hidden in the library; the tests link the static copy. */
size_t ct__token_cache_count(void);

/* The per-class bound of the cache (token_cache.c's CACHE_PER_CLASS). */
#define PER_CLASS 32

#define NTOK 100

struct batch {
  ct_token *root;
  ct_token *kids[NTOK];
  size_t cached_after; /* the worker thread's cache after freeing */
  size_t cached_after_reuse;
};

static void make_kids(struct batch *b) {
  for (int i = 0; i < NTOK; i++)
    ASSERT_OK(ct_token_new_child(&b->kids[i], "request", b->root));
}

/* Make NTOK children of root and free them on this thread, which then
 * caches up to PER_CLASS of their blocks. */
static void fill_cache(ct_token *root) {
  ct_token *c[NTOK];
  for (int i = 0; i < NTOK; i++)
    ASSERT_OK(ct_token_new_child(&c[i], "request", root));
  for (int i = 0; i < NTOK; i++)
    ct_token_unref(c[i]);
}

static void *free_kids(void *arg) {
  struct batch *b = arg;
  size_t before = ct__token_cache_count();
  assert_int_equal(before, 0); /* a new thread starts with an empty cache */
  for (int i = 0; i < NTOK; i++)
    ct_token_unref(b->kids[i]);
  b->cached_after = ct__token_cache_count();
  /* Children made here come from this thread's cache, and work. */
  ct_token *c[PER_CLASS];
  for (int i = 0; i < PER_CLASS; i++)
    ASSERT_OK(ct_token_new_child(&c[i], "request", b->root));
  b->cached_after_reuse = ct__token_cache_count();
  assert_int_equal(ct_token_trigger(b->root), 1);
  for (int i = 0; i < PER_CLASS; i++) {
    assert_true(ct_token_triggered(c[i]));
    ct_token_unref(c[i]);
  }
  return NULL;
}

/* Tokens made on the main thread and freed on another go to the freeing
 * thread's cache, up to the bound; the main thread's cache is untouched. */
static void test_freed_on_other_thread(void **state) {
  (void)state;
  struct batch b;
  ASSERT_OK(ct_token_new(&b.root, "root"));
  make_kids(&b);
  size_t main_before = ct__token_cache_count();
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, free_kids, &b), 0);
  pthread_join(th, NULL);
  assert_int_equal(b.cached_after, PER_CLASS); /* 100 freed, 32 kept */
  assert_int_equal(b.cached_after_reuse, 0);   /* all 32 reused */
  assert_int_equal(ct__token_cache_count(), main_before);
  ct_token_unref(b.root);
#ifdef HAVE_LSAN
  /* The worker's cached blocks were freed at its exit. */
  assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
#endif
}

/* Same thread: create and free reuse the same blocks (LIFO). */
static void test_same_thread_reuse(void **state) {
  (void)state;
  ct_token *root, *a, *b;
  ASSERT_OK(ct_token_new(&root, "root"));
  ASSERT_OK(ct_token_new_child(&a, "request", root));
  void *pa = a;
  ct_token_unref(a);
  size_t n = ct__token_cache_count();
  assert_true(n >= 1);
  ASSERT_OK(ct_token_new_child(&b, "request", root));
  assert_ptr_equal(b, pa);
  assert_int_equal(ct__token_cache_count(), n - 1);
  assert_false(ct_token_triggered(b));
  assert_null(ct_token_data(b));
  assert_string_equal(ct_token_name(b), "request");
  ct_token_unref(b);
  ct_token_unref(root);
}

/* Blocks are cached, then a counting allocator is installed: it sees every
 * allocation and every free (none is served from the cache), balanced. */
static void test_set_allocator_after_cached_blocks(void **state) {
  (void)state;
  ct_token *root, *c[NTOK];
  ASSERT_OK(ct_token_new(&root, "root"));
  fill_cache(root);
  ct_token_unref(root);
  size_t cached = ct__token_cache_count();
  assert_true(cached >= PER_CLASS);

  t_use_counting_allocator();
  long live0 = atomic_load(&t_live_bytes), n0 = atomic_load(&t_nallocs);
  ASSERT_OK(ct_token_new(&root, "root"));
  for (int i = 0; i < NTOK; i++)
    ASSERT_OK(ct_token_new_child(&c[i], "request", root));
  /* Each token was allocated through the hook. */
  assert_true(atomic_load(&t_nallocs) - n0 >= NTOK + 1);
  assert_true(atomic_load(&t_live_bytes) - live0 > 0);
  assert_int_equal(ct__token_cache_count(), cached); /* cache not used */
  for (int i = 0; i < NTOK; i++)
    ct_token_unref(c[i]);
  ct_token_unref(root);
  assert_int_equal(atomic_load(&t_live_bytes), live0); /* balanced */
  assert_int_equal(ct__token_cache_count(), cached);
  ct_set_allocator(NULL, NULL);

  /* With the default back, the cache serves again. */
  ASSERT_OK(ct_token_new(&root, "root"));
  ASSERT_OK(ct_token_new_child(&c[0], "request", root));
  assert_true(ct__token_cache_count() < cached);
  ct_token_unref(c[0]);
  ct_token_unref(root);
}

/* Thread exit: a key destructor created after the library's runs after
 * the library's (glibc runs them in key order) and finds the exiting
 * thread's cache empty. */
static pthread_key_t probe_key;
static _Atomic long probe_seen = -1;

static void probe(void *arg) {
  (void)arg;
  atomic_store(&probe_seen, (long)ct__token_cache_count());
}

static void *cache_then_exit(void *arg) {
  ct_token *root = arg;
  fill_cache(root);
  assert_int_equal(ct__token_cache_count(), PER_CLASS);
  pthread_setspecific(probe_key, (void *)1);
  return NULL;
}

static void test_thread_exit_returns_blocks(void **state) {
  (void)state;
  ct_token *root;
  ASSERT_OK(ct_token_new(&root, "root"));
  /* The library's key exists once any thread has cached a block (the
   * tests above did, on this thread); ours comes after it. */
  ct_token *c;
  ASSERT_OK(ct_token_new_child(&c, "request", root));
  ct_token_unref(c);
  assert_int_equal(pthread_key_create(&probe_key, probe), 0);
  for (int k = 0; k < 4; k++) {
    atomic_store(&probe_seen, -1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cache_then_exit, root), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&probe_seen), 0);
  }
  pthread_key_delete(probe_key);
  ct_token_unref(root);
#ifdef HAVE_LSAN
  assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
#endif
}

/* A forked child inherits the forking thread's cache and can use it. */
static void test_fork_uses_cache(void **state) {
  (void)state;
  ct_token *root, *c[NTOK];
  ASSERT_OK(ct_token_new(&root, "root"));
  fill_cache(root);
  size_t cached = ct__token_cache_count();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int bad = ct__token_cache_count() != cached;
    for (int i = 0; i < NTOK; i++)
      bad |= ct_token_new_child(&c[i], "request", root) != 0;
    bad |= ct_token_trigger(root) != 1;
    for (int i = 0; i < NTOK; i++) {
      bad |= !ct_token_triggered(c[i]);
      ct_token_unref(c[i]);
    }
    _exit(bad ? 1 : 0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_false(ct_token_triggered(root)); /* the child's trigger was its own */
  ct_token_unref(root);
}

/* The last unref of a child with one parent takes the count from 1 to 0
 * under the parent's lock without an RMW; a trigger of the parent that
 * walks its children takes references under that lock.  Children with a
 * grandchild had INTEREST, so the walker references them: run both at
 * once, many times (the sanitizer builds check the memory and the
 * ordering), and check that the trigger reached every child it could. */
struct race {
  ct_token *parent;
  _Atomic int go;
  int born_triggered_ok;
};

static void *churn_under(void *arg) {
  struct race *r = arg;
  while (!atomic_load(&r->go))
    ;
  r->born_triggered_ok = 1;
  for (int i = 0; i < 2000; i++) {
    ct_token *c, *g;
    bool trig = ct_token_triggered(r->parent);
    ASSERT_OK(ct_token_new_child(&c, "request", r->parent));
    ASSERT_OK(ct_token_new_child(&g, "sub", c));
    ct_token_unref(g);
    /* A child made after the parent read as triggered is born triggered
     * (one made before may still be waiting for the trigger's walk). */
    if (trig && !ct_token_triggered(c))
      r->born_triggered_ok = 0;
    ct_token_unref(c);
  }
  return NULL;
}

static void test_sole_unref_against_trigger(void **state) {
  (void)state;
  for (int round = 0; round < 50; round++) {
    struct race r = {.go = 0};
    ASSERT_OK(ct_token_new(&r.parent, "parent"));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, churn_under, &r), 0);
    atomic_store(&r.go, 1);
    for (volatile int spin = 0; spin < round * 2000; spin++)
      ;
    assert_int_equal(ct_token_trigger(r.parent), 1);
    pthread_join(th, NULL);
    assert_true(r.born_triggered_ok);
    ct_token_unref(r.parent);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_freed_on_other_thread),
      cmocka_unit_test(test_same_thread_reuse),
      cmocka_unit_test(test_set_allocator_after_cached_blocks),
      cmocka_unit_test(test_thread_exit_returns_blocks),
      cmocka_unit_test(test_fork_uses_cache),
      cmocka_unit_test(test_sole_unref_against_trigger),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
