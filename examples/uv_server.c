/* SPDX-License-Identifier: MIT */
/* uv_server.c -- a loopback TCP echo server on libuv that stops cleanly when
 * its token is triggered, here by SIGINT.  One token, "server", is the
 * whole shutdown story:
 *
 *  - SIGINT arrives through libuv's uv_signal_t, whose callback (on the
 *    loop thread) triggers the token with reason CT_REASON_SIGNAL.
 *  - A ct_uv_watch_t on the token closes the listener and the signal
 *    handle, then itself.
 *  - Every connection's read is bound to the token with ct_uv_read_start(),
 *    so an idle client does not keep the server up: its read ends with
 *    UV_ECANCELED and the connection closes.
 *  - When nothing is left, uv_run() returns and uv_loop_close() succeeds:
 *    every handle was closed.
 *
 * The token could as well be triggered from another thread, by a deadline,
 * or by a parent token: the server would stop the same way.
 *
 * Usage: uv_server [PORT]   (default 0: an ephemeral port, printed)
 *
 * Output, for one client that sends a line and waits, then SIGINT:
 *   listening on 127.0.0.1:PORT
 *   connection 1 opened
 *   SIGINT: triggering the server token
 *   shutdown: Cancellation requested by server token (reason: signal 2)
 *   connection 1 closed: operation canceled
 *   stopped cleanly
 */
#define _POSIX_C_SOURCE 200809L

#include <canceltoken_uv.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct server {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_signal_t sigint;
  ct_uv_watch_t shutdown;
  ct_token *token; /* "server": triggered to stop everything */
  int next_id;
};

struct conn {
  uv_tcp_t tcp;
  ct_uv_read_t read; /* bound to the server's token */
  struct server *server;
  int id;
};

struct echo_req {
  uv_write_t req;
  char data[]; /* a copy of what was read */
};

static void report(const char *what, int err) {
  fprintf(stderr, "uv_server: %s: %s\n", what, uv_strerror(err));
}

static void conn_closed(uv_handle_t *h) {
  free(h->data); /* struct conn, whose first member is h */
}

static void on_alloc(ct_uv_read_t *op, size_t size, uv_buf_t *buf) {
  (void)op;
  buf->base = malloc(size);
  buf->len = buf->base != NULL ? size : 0; /* 0: libuv reports UV_ENOBUFS */
}

static void on_written(uv_write_t *req, int status) {
  /* UV_ECANCELED if the connection closed with the write pending. */
  if (status < 0 && status != UV_ECANCELED)
    report("write", status);
  free(req); /* struct echo_req, whose first member is req */
}

static void on_read(ct_uv_read_t *op, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = op->data;
  if (nread > 0) {
    struct echo_req *w = malloc(sizeof *w + (size_t)nread);
    if (w != NULL) {
      uv_buf_t out;
      int rc;
      memcpy(w->data, buf->base, (size_t)nread);
      out = uv_buf_init(w->data, (unsigned int)nread);
      rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &out, 1, on_written);
      if (rc < 0) {
        report("uv_write", rc);
        free(w);
      }
    }
  } else if (nread < 0) {
    /* The final call: the end of the stream, an error, or the server's
     * token (UV_ECANCELED).  Reading has stopped; close the connection. */
    printf("connection %d closed: %s\n", c->id,
           nread == UV_EOF ? "end of stream" : uv_strerror((int)nread));
    c->tcp.data = c;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
  }
  free(buf->base);
}

static void on_connection(uv_stream_t *listener, int status) {
  struct server *s = listener->data;
  struct conn *c;
  int rc;

  if (status < 0) {
    report("listen", status);
    return;
  }
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return; /* the connection stays in the backlog; libuv retries */
  rc = uv_tcp_init(&s->loop, &c->tcp);
  if (rc < 0) {
    report("uv_tcp_init", rc);
    free(c);
    return;
  }
  c->tcp.data = c;
  c->server = s;
  c->id = ++s->next_id;
  rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (rc == 0) {
    printf("connection %d opened\n", c->id);
    c->read.data = c;
    rc = ct_uv_read_start(&c->read, (uv_stream_t *)&c->tcp, s->token,
                          CT_FOREVER, on_alloc, on_read);
  }
  if (rc < 0) {
    report("accept", rc);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
  }
}

/* SIGINT, on the loop thread: trigger the token; everything else follows. */
static void on_sigint(uv_signal_t *h, int signum) {
  struct server *s = h->data;
  printf("SIGINT: triggering the server token\n");
  ct_token_trigger_reason(s->token, CT_REASON_SIGNAL, signum);
}

static void on_shutdown(ct_uv_watch_t *w, ct_token *t) {
  struct server *s = w->data;
  char msg[128];
  int detail = 0;
  ct_reason reason = ct_token_reason(t, &detail);

  if (ct_token_message(t, msg, sizeof msg) < 0)
    snprintf(msg, sizeof msg, "(no message)");
  if (reason == CT_REASON_SIGNAL)
    printf("shutdown: %s (reason: signal %d)\n", msg, detail);
  else
    printf("shutdown: %s\n", msg);
  uv_close((uv_handle_t *)&s->listener, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  ct_uv_watch_close(w, NULL);
}

int main(int argc, char **argv) {
  struct server s;
  struct sockaddr_in addr;
  int len = sizeof addr;
  int port = argc > 1 ? atoi(argv[1]) : 0;
  bool failed = false;
  int rc;

  /* Lines reach a pipe as soon as they are printed. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  memset(&s, 0, sizeof s);
  if (port < 0 || port > 65535) {
    fprintf(stderr, "usage: uv_server [PORT]\n");
    return EXIT_FAILURE;
  }
  rc = ct_token_new(&s.token, "server");
  if (rc < 0) {
    report("ct_token_new", rc);
    return EXIT_FAILURE;
  }
  rc = uv_loop_init(&s.loop);
  if (rc < 0) {
    report("uv_loop_init", rc);
    ct_token_unref(s.token);
    return EXIT_FAILURE;
  }

  /* Every handle is initialised before anything can fail, so that one
   * trigger of the token shuts down whatever state we are in. */
  if ((rc = ct_uv_watch_init(&s.loop, &s.shutdown, s.token)) < 0 ||
      (rc = uv_tcp_init(&s.loop, &s.listener)) < 0 ||
      (rc = uv_signal_init(&s.loop, &s.sigint)) < 0) {
    report("init", rc);
    return EXIT_FAILURE; /* the process ends: nothing to tidy */
  }
  s.shutdown.data = &s;
  s.listener.data = &s;
  s.sigint.data = &s;

  if ((rc = ct_uv_watch_start(&s.shutdown, on_shutdown)) < 0 ||
      (rc = uv_signal_start(&s.sigint, on_sigint, SIGINT)) < 0 ||
      (rc = uv_ip4_addr("127.0.0.1", port, &addr)) < 0 ||
      (rc = uv_tcp_bind(&s.listener, (struct sockaddr *)&addr, 0)) < 0 ||
      (rc = uv_listen((uv_stream_t *)&s.listener, 64, on_connection)) < 0 ||
      (rc = uv_tcp_getsockname(&s.listener, (struct sockaddr *)&addr, &len)) <
          0) {
    report("start", rc);
    failed = true;
    ct_token_trigger(s.token); /* shut down what was started */
  } else {
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  }

  uv_run(&s.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&s.loop);
  ct_token_unref(s.token);
  if (rc < 0) {
    report("uv_loop_close", rc); /* a handle was left open */
    return EXIT_FAILURE;
  }
  if (failed)
    return EXIT_FAILURE;
  printf("stopped cleanly\n");
  return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
