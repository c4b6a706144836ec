/* SPDX-License-Identifier: MIT */
/* epoll_server.c -- cancellation in a plain epoll loop, no library but this
 * one: a TCP echo server on 127.0.0.1 whose shutdown token is triggered by
 * Ctrl-C (SIGINT) or SIGTERM through ct_signal_hook().  The token's
 * descriptor, ct_token_fd(), sits in the epoll set beside the program's own
 * sockets; when it becomes readable the loop ends and the server closes
 * what is still open.  A second Ctrl-C kills it at once (CT_SIGNAL_ONCE),
 * should the shutdown ever hang.
 *
 * Try it:  ./epoll_server   then   nc 127.0.0.1 <port>   then   Ctrl-C.
 * Its test is epoll_client.c, which drives it and checks what it says.
 *
 * Output (the port varies):
 *   listening on 127.0.0.1:<port>
 *   connection 1 accepted
 *   ...
 *   connection 1 closed after <n> bytes
 *   shutdown: Cancellation requested by shutdown token (signal 2)
 *   closing connection 2 after <n> bytes
 *   echoed <n> bytes over 2 connections
 */
#define _GNU_SOURCE

#include <canceltoken_os.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64

struct conn {
  int fd; /* -1: free slot */
  int id;
  long bytes; /* echoed so far */
};

static struct conn conns[MAX_CONNS];
static long total_bytes;
static int nconns;

static void report(const char *what, int err) {
  fprintf(stderr, "epoll_server: %s: %s\n", what, ct_strerror(err));
}

/* A listening socket on 127.0.0.1 and a port the kernel picks. */
static int listen_loopback(int *port) {
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

static void close_conn(struct conn *c, const char *how) {
  printf("%s connection %d after %ld bytes\n", how, c->id, c->bytes);
  close(c->fd); /* also removes it from the epoll set */
  c->fd = -1;
}

/* Accept every pending connection. */
static int accept_all(int ep, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    struct conn *c = NULL;
    for (int i = 0; i < MAX_CONNS && !c; i++)
      if (conns[i].fd < 0)
        c = &conns[i];
    if (!c) {
      close(fd); /* full: refuse it */
      continue;
    }
    *c = (struct conn){fd, ++nconns, 0};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      int err = -errno;
      close(fd);
      c->fd = -1;
      return err;
    }
    printf("connection %d accepted\n", c->id);
  }
}

/* Echo what has arrived on c; close it at end of stream. */
static void echo(struct conn *c) {
  char buf[4096];
  ssize_t n = read(c->fd, buf, sizeof buf);
  if (n < 0 && errno == EINTR)
    return; /* epoll reports it again */
  if (n <= 0) {
    close_conn(c, n == 0 ? "closed" : "error on");
    return;
  }
  /* A blocking socket: the write completes unless the peer goes away. */
  if (write(c->fd, buf, (size_t)n) != n) {
    close_conn(c, "error on");
    return;
  }
  c->bytes += n;
  total_bytes += n;
}

int main(void) {
  ct_token *shutdown = NULL;
  int lfd = -1, ep = -1, tfd, port = 0, rc;
  int status = EXIT_FAILURE;
  char message[128];
  bool hooked_int = false, hooked_term = false;

  for (int i = 0; i < MAX_CONNS; i++)
    conns[i].fd = -1;

  rc = ct_token_new(&shutdown, "shutdown");
  if (rc < 0) {
    report("ct_token_new", rc);
    return EXIT_FAILURE;
  }
  /* Ctrl-C or SIGTERM triggers the token; the handler does nothing else. */
  if ((rc = ct_signal_hook(SIGINT, shutdown, CT_SIGNAL_ONCE)) < 0) {
    report("ct_signal_hook(SIGINT)", rc);
    goto out;
  }
  hooked_int = true;
  if ((rc = ct_signal_hook(SIGTERM, shutdown, 0)) < 0) {
    report("ct_signal_hook(SIGTERM)", rc);
    goto out;
  }
  hooked_term = true;

  /* The token's descriptor: readable once the token is triggered.  It
   * belongs to the token: poll it, never read, write or close it. */
  tfd = ct_token_fd(shutdown);
  if (tfd < 0) {
    report("ct_token_fd", tfd);
    goto out;
  }
  lfd = listen_loopback(&port);
  if (lfd < 0) {
    report("listen", lfd);
    goto out;
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    report("epoll_create1", -errno);
    goto out;
  }
  /* data.ptr: NULL for the token, &lfd for the listener, else a conn. */
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &lfd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) {
    report("epoll_ctl", -errno);
    goto out;
  }
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);

  /* The loop.  Checking the token itself, as well, costs one atomic load. */
  while (!ct_token_triggered(shutdown)) {
    struct epoll_event events[16];
    int n = epoll_wait(ep, events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) /* the signal itself: epoll_wait never restarts */
        continue;
      report("epoll_wait", -errno);
      goto out;
    }
    for (int i = 0; i < n; i++) {
      void *who = events[i].data.ptr;
      if (who == NULL) {
        continue; /* the token: the loop condition sees it */
      } else if (who == &lfd) {
        if ((rc = accept_all(ep, lfd)) < 0) {
          report("accept", rc);
          goto out;
        }
      } else {
        echo(who); /* a connection: one event per descriptor per batch */
      }
    }
    fflush(stdout);
  }

  /* Why we stopped: "Cancellation requested by shutdown token", and the
   * signal's number as the reason's detail. */
  int signo = 0;
  if (ct_token_reason(shutdown, &signo) != CT_REASON_SIGNAL)
    signo = 0;
  rc = ct_token_message(shutdown, message, sizeof message);
  if (rc < 0) {
    report("ct_token_message", rc);
    goto out;
  }
  printf("shutdown: %s (signal %d)\n", message, signo);
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i].fd >= 0)
      close_conn(&conns[i], "closing");
  printf("echoed %ld bytes over %d connections\n", total_bytes, nconns);
  if (fflush(stdout) != 0) {
    perror("epoll_server: stdout");
    goto out;
  }
  status = EXIT_SUCCESS;

out:
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i].fd >= 0)
      close(conns[i].fd);
  if (ep >= 0)
    close(ep);
  if (lfd >= 0)
    close(lfd);
  /* The previous dispositions come back; the hooks' references go. */
  if (hooked_term)
    ct_signal_unhook(SIGTERM);
  if (hooked_int)
    ct_signal_unhook(SIGINT);
  ct_token_unref(shutdown); /* also closes tfd */
  return status;
}
