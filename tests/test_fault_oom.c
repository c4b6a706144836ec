/* SPDX-License-Identifier: MIT
 *
 * test_fault_oom.c -- out of memory at every allocation site of the token
 * server and client in turn, as test_oom.c does for the core.  One counter
 * numbers the allocations of both layers (the core's through
 * ct_set_allocator(), src/remote's through net_set_allocator()); for each
 * scenario we fail allocation 0, then 1, then 2, ... until the scenario
 * runs without meeting the failure.  Every failure must give an error (a
 * negative errno, or on a connection an ERROR frame or a drop), leave
 * nothing allocated once everything is freed, and leave nothing
 * half-linked: the server and its tokens keep working afterwards.
 * The server's connection is driven on this thread (net_server_adopt and
 * net_server_run_once), so the numbering is deterministic.
 */
#include "net_test_util.h"

#include "net_internal.h"

/* Live allocations of src/remote, counted with the shared numbering. */
static _Atomic long net_live;
static void *net_alloc(void *ud, void *ptr, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    atomic_fetch_sub(&net_live, 1);
    free(ptr);
    return NULL;
  }
  long n = atomic_fetch_add(&t_nallocs, 1);
  if (n == atomic_load(&t_fail_at))
    return NULL;
  void *p = realloc(ptr, nsize);
  if (p && !ptr)
    atomic_fetch_add(&net_live, 1);
  return p;
}

static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

typedef int (*scenario_fn)(void *ctx);

/* Run fn with allocation k failing, k = 0, 1, ... until an attempt does
 * not reach allocation k.  After each attempt, nothing may be left. */
static int fail_each(const char *name, scenario_fn fn, void *ctx) {
  int failures = 0;
  for (long k = 0;; k++) {
    long core0 = atomic_load(&t_live_bytes), net0 = atomic_load(&net_live);
    long start = atomic_load(&t_nallocs);
    atomic_store(&t_fail_at, start + k);
    int r = fn(ctx);
    bool reached = atomic_load(&t_nallocs) > start + k;
    atomic_store(&t_fail_at, -1);
    if (r < 0 && r != -ENOMEM && r != -EPROTO && r != -ECONNRESET)
      fail_msg("%s, allocation %ld failing: unexpected %s", name, k,
               ct_err_name(r));
    if (atomic_load(&t_live_bytes) != core0 || atomic_load(&net_live) != net0)
      fail_msg("%s, allocation %ld failing: leaked %ld core bytes, %ld net "
               "blocks", name, k, atomic_load(&t_live_bytes) - core0,
               atomic_load(&net_live) - net0);
    if (!reached) {
      assert_int_equal(r, 0); /* no failure met: it must succeed */
      print_message("%-22s %d allocation failure(s) injected\n", name,
                    failures);
      return failures;
    }
    failures++;
  }
}

struct ctx {
  char dir[64], path[96];
};

/* ct_net_server_new and ct_net_server_add, then free. */
static int sc_server_api(void *p) {
  struct ctx *c = p;
  ct_net_server_options o = {.secret = "k", .secret_len = 1, .log = quiet};
  uid_t u = 0;
  o.allowed_uids = &u;
  o.n_allowed_uids = 1;
  ct_net_server *s;
  int r = ct_net_server_new(&s, c->path, &o);
  if (r < 0)
    return r;
  ct_token *t[20];
  int n = 0;
  for (; n < 20; n++) {
    char name[16];
    snprintf(name, sizeof name, "t%d", n);
    if ((r = ct_token_new(&t[n], name)) < 0)
      break;
    if (n % 3 == 0)
      ct_token_trigger(t[n]);
    if ((r = ct_net_server_add(s, name, t[n])) < 0) {
      ct_token_unref(t[n]);
      break;
    }
  }
  if (r == 0) {
    /* every name added is served, and a failed add left none behind */
    ct_token *dup;
    if (ct_token_new(&dup, "d") == 0) {
      if (ct_net_server_add(s, "t0", dup) != -EEXIST)
        r = -EPROTO;
      ct_token_unref(dup);
    }
  }
  ct_net_server_free(s);
  for (int i = 0; i < n; i++)
    ct_token_unref(t[i]);
  return r;
}

/* A whole conversation on an adopted connection: handshake, GETs of a
 * plain, a triggered and a long-named token, TRIGGER, LIST, PING, then a
 * notice pushed by the owner. */
static void put_frame(uint8_t *buf, size_t *len, uint8_t type,
                      const void *body, size_t n) {
  t_put32(buf + *len, (uint32_t)(1 + n));
  buf[*len + 4] = type;
  memcpy(buf + *len + 5, body, n);
  *len += 5 + n;
}

static int sc_connection(void *p) {
  struct ctx *c = p;
  ct_net_server_options o = {.log = quiet};
  ct_net_server *s;
  int r = ct_net_server_new(&s, c->path, &o);
  if (r < 0)
    return r;
  ct_token *a = NULL, *b = NULL, *ch = NULL;
  if ((r = ct_token_new(&a, "a")) < 0 || (r = ct_token_new(&b, "b")) < 0 ||
      (r = ct_token_new_child(&ch, "ch", a)) < 0 ||
      (r = ct_net_server_add(s, "a", a)) < 0 ||
      (r = ct_net_server_add(s, "b", b)) < 0 ||
      (r = ct_net_server_add(s, "ch", ch)) < 0)
    goto out;
  ct_token_trigger(b);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    r = -errno;
    goto out;
  }
  net_server_adopt(s, sv[0]);
  static uint8_t in[8192];
  size_t len = 0;
  uint8_t hello[40] = {'C', 'T', 'N', 'T', 0, 1, 0, 1}, proof[32] = {0};
  put_frame(in, &len, 0x01, hello, sizeof hello);
  put_frame(in, &len, 0x03, proof, sizeof proof);
  uint8_t get[8] = {0, 0, 0, 1, 'a'};
  put_frame(in, &len, 0x10, get, 5);
  get[3] = 2, get[4] = 'b';
  put_frame(in, &len, 0x10, get, 5);
  get[3] = 3, get[4] = 'c', get[5] = 'h';
  put_frame(in, &len, 0x10, get, 6);
  uint8_t trig[10] = {0, 0, 0, 4, 0, 0, 0, 2, 1, 0}; /* handle 2: ch */
  put_frame(in, &len, 0x12, trig, sizeof trig);
  uint8_t lst[8] = {0, 0, 0, 5, 0, 0, 0, 0};
  put_frame(in, &len, 0x15, lst, sizeof lst);
  uint8_t ping[4] = {0, 0, 0, 6};
  put_frame(in, &len, 0x17, ping, sizeof ping);
  ssize_t w = send(sv[1], in, len, MSG_NOSIGNAL);
  (void)w;
  for (int i = 0; i < 100 && net_server_run_once(s, 0) > 0; i++)
    ;
  ct_token_trigger(a); /* a notice pushed to the subscriber */
  for (int i = 0; i < 100 && net_server_run_once(s, 0) > 0; i++)
    ;
  /* What came back: with no failure, every reply and the notice. */
  static uint8_t outb[65536];
  size_t got = 0;
  for (;;) {
    ssize_t n = recv(sv[1], outb + got, sizeof outb - got, MSG_DONTWAIT);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  int frames = 0, notices = 0, errors = 0;
  for (size_t pos = 0; got - pos >= 5;) {
    uint32_t fl = t_get32(outb + pos);
    if (fl < 1 || got - pos - 4 < fl)
      break;
    frames++;
    notices += outb[pos + 4] == 0x14;
    errors += outb[pos + 4] == 0x05;
    pos += 4 + fl;
  }
  close(sv[1]);
  for (int i = 0; i < 100 && net_server_run_once(s, 0) > 0; i++)
    ;
  ct_net_server_stats st;
  ct_net_server_get_stats(s, &st);
  if (st.active != 0 || st.proxies != 0)
    fail_msg("connection left behind: active %llu proxies %llu",
             (unsigned long long)st.active, (unsigned long long)st.proxies);
  /* WELCOME READY TOKEN*3 NOTIFY(ch) ACK LIST_REPLY PONG NOTIFY(a) */
  if (r == 0 && errors == 0 && (frames != 10 || notices != 2))
    r = -ECONNRESET; /* dropped (out of memory for it): an error */
  if (errors > 0)
    r = -ENOMEM; /* ERROR NO_MEMORY */
out:
  ct_net_server_free(s);
  ct_token_unref(ch);
  ct_token_unref(a);
  ct_token_unref(b);
  return r;
}

static void test_server_every_allocation(void **state) {
  (void)state;
  struct ctx c;
  t_sock_path(c.dir, c.path);
  assert_true(fail_each("server new/add/free", sc_server_api, &c) >= 5);
  assert_true(fail_each("server connection", sc_connection, &c) >= 5);
  t_rmdir(c.dir, c.path);
}

/* The client against a server in another process (whose allocations are
 * not counted): connect, GET, TRIGGER, LIST, free.  Its I/O thread
 * allocates too, so the numbering is not quite deterministic; the rules
 * are the same. */
static void count_list(void *arg, const ct_net_token_info *info) {
  (void)info;
  (*(int *)arg)++;
}

static int sc_client(void *p) {
  const char *addr = p;
  ct_net_client *c;
  int r = ct_net_client_connect(&c, addr, NULL, NULL, 0, LONG_DEADLINE());
  if (r < 0)
    return r;
  ct_token *px = NULL;
  int n = 0;
  if ((r = ct_net_client_get(c, &px, "a", LONG_DEADLINE())) == 0 &&
      (r = ct_net_client_trigger(c, px, CT_REASON_TRIGGER, 0,
                                 LONG_DEADLINE())) >= 0 &&
      (r = ct_net_client_list(c, count_list, &n, LONG_DEADLINE())) >= 0)
    r = n == 1 && ct_token_triggered(px) ? 0 : -EPROTO;
  int e = ct_net_client_error(c);
  if (r < 0 && e < 0 && e != -ESHUTDOWN)
    r = e == -ENOMEM ? -ENOMEM : -ECONNRESET; /* the I/O thread's failure */
  ct_net_client_free(c);
  ct_token_unref(px);
  return r;
}

static void test_client_every_allocation(void **state) {
  (void)state;
  char dir[64], path[96], addr[256];
  t_sock_path(dir, path);
  struct child srv;
  char *argv[] = {NET_PEER, "serve", path, "a", NULL};
  t_start_server(&srv, argv, addr);
  assert_true(fail_each("client", sc_client, addr) >= 5);
  close(srv.in);
  srv.in = -1;
  assert_int_equal(t_wait_child(&srv), 0);
  t_rmdir(dir, path);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  t_use_counting_allocator();
  net_set_allocator(net_alloc, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_every_allocation),
      cmocka_unit_test(test_client_every_allocation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
