/* SPDX-License-Identifier: MIT
 *
 * test_net_cli.c -- the cancel-token command end to end: serve in the
 * background, wait in another process, status, trigger, run, with the
 * documented exit statuses (0 triggered, 1 timed out, 2 owner lost, 3
 * error, 64 usage; run: the command's own), and the secret from a file or
 * the environment.
 */
#include "net_test_util.h"

static int run_cli(char *const argv[], char *out, size_t cap) {
  struct child ch;
  t_spawn(&ch, argv);
  close(ch.in);
  ch.in = -1;
  size_t len = 0;
  char line[1024];
  if (out)
    out[0] = '\0';
  while (t_read_line(&ch, line, sizeof line, LONG_DEADLINE()))
    if (out && len + strlen(line) + 2 < cap)
      len += (size_t)snprintf(out + len, cap - len, "%s\n", line);
  return t_wait_child(&ch);
}

static void start_serve(struct child *srv, char *const argv[],
                        char addr[256]) {
  t_spawn(srv, argv);
  char line[300];
  assert_true(t_read_line(srv, line, sizeof line, LONG_DEADLINE()));
  assert_memory_equal(line, "listening on ", 13);
  assert_true(snprintf(addr, 256, "%s", line + 13) < 256);
}

static void test_help_and_usage(void **state) {
  (void)state;
  char out[8192];
  const char *cmds[] = {"serve", "trigger", "wait", "status", "run"};
  for (int i = 0; i < 5; i++) {
    char *argv[] = {CANCEL_TOKEN_CLI, (char *)cmds[i], "--help", NULL};
    assert_int_equal(run_cli(argv, out, sizeof out), 0);
    assert_non_null(strstr(out, "Exit status"));
  }
  char *bad[] = {CANCEL_TOKEN_CLI, "frobnicate", "/tmp/x", NULL};
  assert_int_equal(run_cli(bad, NULL, 0), 64);
  char *nosecret[] = {CANCEL_TOKEN_CLI, "trigger", "/tmp/x", "a", "--secret",
                      "hunter2", NULL};
  assert_int_equal(run_cli(nosecret, NULL, 0), 64); /* never on the cmdline */
  char *noaddr[] = {CANCEL_TOKEN_CLI, "wait", NULL};
  assert_int_equal(run_cli(noaddr, NULL, 0), 64);
}

static void test_serve_wait_trigger_status(void **state) {
  (void)state;
  char dir[64], path[96], addr[256], line[512], out[4096];
  t_sock_path(dir, path);
  struct child srv, waiter;
  char *sargv[] = {CANCEL_TOKEN_CLI, "serve", path, "a", "b", NULL};
  start_serve(&srv, sargv, addr);
  assert_string_equal(addr, path);

  char *wargv[] = {CANCEL_TOKEN_CLI, "wait", addr, "a", NULL};
  t_spawn(&waiter, wargv);
  char *sta[] = {CANCEL_TOKEN_CLI, "status", addr, NULL};
  assert_int_equal(run_cli(sta, out, sizeof out), 0);
  assert_string_equal(out, "a\tnot-triggered\nb\tnot-triggered\n");

  char *tra[] = {CANCEL_TOKEN_CLI, "trigger", addr, "a", NULL};
  assert_int_equal(run_cli(tra, out, sizeof out), 0);
  assert_string_equal(out, "a: triggered\n");
  assert_int_equal(run_cli(tra, out, sizeof out), 0);
  assert_string_equal(out, "a: already triggered\n");
  assert_true(t_read_line(&waiter, line, sizeof line, LONG_DEADLINE()));
  assert_string_equal(line, "a: triggered by a (trigger)");
  assert_int_equal(t_wait_child(&waiter), 0);

  char *stb[] = {CANCEL_TOKEN_CLI, "status", addr, "a", NULL};
  assert_int_equal(run_cli(stb, out, sizeof out), 0);
  assert_string_equal(out, "a\ttriggered\ttrigger\ta\n");

  char *tmo[] = {CANCEL_TOKEN_CLI, "wait", addr, "b", "--timeout", "0.05",
                 NULL};
  assert_int_equal(run_cli(tmo, NULL, 0), 1); /* timed out */
  char *nf[] = {CANCEL_TOKEN_CLI, "wait", addr, "zzz", NULL};
  assert_int_equal(run_cli(nf, NULL, 0), 3); /* error: no such token */

  kill(srv.pid, SIGKILL);
  assert_int_equal(t_wait_child(&srv), 128 + SIGKILL);
  char *dead[] = {CANCEL_TOKEN_CLI, "status", addr, NULL};
  assert_int_equal(run_cli(dead, NULL, 0), 3); /* nobody listens */
  t_rmdir(dir, path);
}

/* kill -9 of the server while "cancel-token wait" holds its proxy: exit 2
 * (owner lost).  The server is a net_peer here, whose statistics tell when
 * it has registered the waiter's proxy; a GET of the test's own then tells
 * that the reply has gone out (below). */
static void test_wait_owner_lost_exit_2(void **state) {
  (void)state;
  char dir[64], path[96], addr[256], line[300];
  t_sock_path(dir, path);
  struct child srv, waiter;
  char *sargv[] = {NET_PEER, "serve", path, "x", NULL};
  t_start_server(&srv, sargv, addr);
  char *wargv[] = {CANCEL_TOKEN_CLI, "wait", addr, "x", NULL};
  t_spawn(&waiter, wargv);
  int64_t deadline = LONG_DEADLINE();
  for (;;) { /* until the server counts the waiter's proxy */
    t_send_line(&srv, "stats");
    assert_true(t_read_line(&srv, line, sizeof line, deadline));
    if (strstr(line, " proxies=1"))
      break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  /* The count goes up inside the server's GET handler, before its reply
   * is sent: a kill right now could land before the reply, and the
   * command would rightly report a lost connection (exit 3), not an owner
   * lost (seen once under TSan on a loaded machine).  A GET of our own
   * is handled by the same loop thread after that handler has sent its
   * reply, so once ours is answered the waiter's reply is in its socket,
   * which it reads before the end of the connection. */
  ct_net_client *c;
  ct_token *p;
  ASSERT_OK(ct_net_client_connect(&c, addr, NULL, NULL, 0, deadline));
  ASSERT_OK(ct_net_client_get(c, &p, "x", deadline));
  kill(srv.pid, SIGKILL);
  assert_int_equal(t_wait_child(&srv), 128 + SIGKILL);
  assert_int_equal(t_wait_child(&waiter), 2); /* owner lost */
  ct_token_unref(p);
  ct_net_client_free(c);
  t_rmdir(dir, path);
}

/* SIGTERM stops "cancel-token serve" cleanly: exit 0, socket removed. */
static void test_serve_stops_on_sigterm(void **state) {
  (void)state;
  char dir[64], path[96], addr[256];
  t_sock_path(dir, path);
  struct child srv;
  char *sargv[] = {CANCEL_TOKEN_CLI, "serve", path, "x", NULL};
  start_serve(&srv, sargv, addr);
  kill(srv.pid, SIGTERM);
  assert_int_equal(t_wait_child(&srv), 0);
  struct stat sb;
  assert_int_equal(stat(path, &sb), -1);
  t_rmdir(dir, path);
}

static void test_secret_file_and_env(void **state) {
  (void)state;
  char dir[64], path[96], addr[256], secret_file[128], wrong_file[128];
  t_sock_path(dir, path);
  snprintf(secret_file, sizeof secret_file, "%s/secret", dir);
  snprintf(wrong_file, sizeof wrong_file, "%s/wrong", dir);
  FILE *f = fopen(secret_file, "w");
  fputs("s3cr3t-value\n", f); /* the newline is ignored */
  fclose(f);
  f = fopen(wrong_file, "w");
  fputs("nope\n", f);
  fclose(f);
  struct child srv;
  setenv("CANCEL_TOKEN_SECRET", "s3cr3t-value", 1);
  char *sargv[] = {CANCEL_TOKEN_CLI, "serve", "127.0.0.1:0", "t", NULL};
  start_serve(&srv, sargv, addr);
  unsetenv("CANCEL_TOKEN_SECRET");
  char *none[] = {CANCEL_TOKEN_CLI, "status", addr, NULL};
  assert_int_equal(run_cli(none, NULL, 0), 3);
  char *wrong[] = {CANCEL_TOKEN_CLI, "status", addr, "--secret-file",
                   wrong_file, NULL};
  assert_int_equal(run_cli(wrong, NULL, 0), 3);
  char *good[] = {CANCEL_TOKEN_CLI, "trigger", addr, "t", "--secret-file",
                  secret_file, NULL};
  assert_int_equal(run_cli(good, NULL, 0), 0);
  kill(srv.pid, SIGINT);
  assert_int_equal(t_wait_child(&srv), 0);
  unlink(secret_file);
  unlink(wrong_file);
  t_rmdir(dir, path);
}

static void test_run_under_token(void **state) {
  (void)state;
  char dir[64], path[96], addr[256], line[300];
  t_sock_path(dir, path);
  struct child srv, run;
  char *sargv[] = {CANCEL_TOKEN_CLI, "serve", path, "job", "other", NULL};
  start_serve(&srv, sargv, addr);
  /* ends by itself: its own status */
  char *seven[] = {CANCEL_TOKEN_CLI, "run", addr, "other", "--", "sh", "-c",
                   "exit 7", NULL};
  assert_int_equal(run_cli(seven, NULL, 0), 7);
  char *missing[] = {CANCEL_TOKEN_CLI, "run", addr, "other", "--",
                     "/nonexistent/cmd", NULL};
  assert_int_equal(run_cli(missing, NULL, 0), 127);
  /* stopped when the token fires: SIGTERM, so 128 + 15 */
  char *rargv[] = {CANCEL_TOKEN_CLI, "run", addr, "job", "--grace", "10",
                   "--", "sh", "-c", "echo started; exec sleep 1000", NULL};
  t_spawn(&run, rargv);
  assert_true(t_read_line(&run, line, sizeof line, LONG_DEADLINE()));
  assert_string_equal(line, "started");
  char *tr[] = {CANCEL_TOKEN_CLI, "trigger", addr, "job", NULL};
  assert_int_equal(run_cli(tr, NULL, 0), 0);
  assert_int_equal(t_wait_child(&run), 128 + SIGTERM);
  /* already triggered: not started */
  assert_int_equal(run_cli(rargv, NULL, 0), 125);
  kill(srv.pid, SIGTERM);
  assert_int_equal(t_wait_child(&srv), 0);
  t_rmdir(dir, path);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_usage),
      cmocka_unit_test(test_serve_wait_trigger_status),
      cmocka_unit_test(test_wait_owner_lost_exit_2),
      cmocka_unit_test(test_serve_stops_on_sigterm),
      cmocka_unit_test(test_secret_file_and_env),
      cmocka_unit_test(test_run_under_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
