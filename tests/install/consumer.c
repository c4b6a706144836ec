/* SPDX-License-Identifier: MIT
 *
 * consumer.c -- a program outside the tree that uses the installed
 * libraries the way an application does: the core (a token, a chained
 * child, the message), the token server and client (canceltoken_net: it
 * serves a token on the Unix socket given as argv[1] and connects to it as
 * a client, getting a proxy), and the libuv adapter (a watcher of the proxy
 * on a real loop).  The loop asks the server, over the socket, to trigger
 * the token; the server triggers it, pushes the notice, the proxy fires,
 * and the watcher's callback runs on the loop thread.
 *
 * scripts/test-install.sh builds it twice against an installed prefix,
 * with pkg-config and with find_package(canceltoken COMPONENTS net uv),
 * and compares its output with consumer.expected.
 */
#include <canceltoken.h>
#include <canceltoken_net.h>
#include <canceltoken_uv.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                           \
  do {                                                                        \
    int r_ = (call);                                                          \
    if (r_ < 0) {                                                             \
      fprintf(stderr, "%s: %s\n", #call, ct_strerror(r_));                    \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

static ct_net_client *cli;
static ct_token *proxy, *step;
static ct_uv_watch_t watch;
static uv_timer_t kick;

static void on_fired(ct_uv_watch_t *w, ct_token *t) {
  char msg[256];
  ct_token_message(step, msg, sizeof msg);
  printf("watcher: %s fired (%s) on the loop thread\n", ct_token_name(t),
         ct_reason_name(ct_token_reason(t, NULL)));
  printf("child: %s\n", msg);
  ct_uv_watch_close(w, NULL);
  uv_close((uv_handle_t *)&kick, NULL);
}

/* On the loop thread: ask the owner to trigger, and wait for its answer. */
static void on_kick(uv_timer_t *t) {
  (void)t;
  int r = ct_net_client_trigger(cli, proxy, CT_REASON_TRIGGER, 0,
                                ct_deadline_after(INT64_C(10000000000)));
  printf("client: trigger -> %d\n", r);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: consumer SOCKET-PATH\n");
    return 64;
  }
  printf("libcanceltoken %s, header %d.%d.%d: %s\n", ct_version_string(),
         CT_VERSION_MAJOR, CT_VERSION_MINOR, CT_VERSION_PATCH,
         ct_version() == CT_VERSION_HEX ? "same" : "DIFFERENT");

  /* The owner: one token served at argv[1]. */
  ct_token *job;
  ct_net_server *srv;
  CHECK(ct_token_new(&job, "job"));
  CHECK(ct_net_server_new(&srv, argv[1], NULL));
  CHECK(ct_net_server_add(srv, "job", job));
  CHECK(ct_net_server_start(srv));

  /* The client: a proxy of it, and a local child of the proxy. */
  char err[256] = "";
  int64_t deadline = ct_deadline_after(INT64_C(10000000000));
  int r = ct_net_client_connect(&cli, argv[1], NULL, err, sizeof err, deadline);
  if (r < 0) {
    fprintf(stderr, "connect: %s\n", *err ? err : ct_strerror(r));
    return 1;
  }
  CHECK(ct_net_client_get(cli, &proxy, "job", deadline));
  CHECK(ct_token_new_child(&step, "step", proxy));
  printf("proxy %s: %s\n", ct_token_name(proxy),
         ct_token_triggered(proxy) ? "triggered" : "not triggered");

  /* The loop: a watcher of the proxy, and a timer that asks for the
   * trigger once the loop runs. */
  uv_loop_t *loop = uv_default_loop();
  CHECK(ct_uv_watch_init(loop, &watch, proxy));
  CHECK(ct_uv_watch_start(&watch, on_fired));
  CHECK(uv_timer_init(loop, &kick));
  CHECK(uv_timer_start(&kick, on_kick, 0, 0));
  uv_run(loop, UV_RUN_DEFAULT);
  printf("owner's token: %s\n",
         ct_token_triggered(job) ? "triggered" : "not triggered");

  CHECK(uv_loop_close(loop));
  ct_token_unref(step);
  ct_token_unref(proxy);
  ct_net_client_free(cli);
  ct_net_server_free(srv);
  ct_token_unref(job);
  printf("done\n");
  return 0;
}
