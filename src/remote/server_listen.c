/* SPDX-License-Identifier: MIT
 *
 * server_listen.c -- the token server's listening socket: creating it
 * (Unix or TCP), accepting connections, and refusing those it cannot take.
 *
 * Design notes:
 *
 *  Stale socket files.  A Unix socket file whose owner does not answer a
 *  connect() (ECONNREFUSED) is a dead server's and is replaced; any other
 *  answer means a live one (-EADDRINUSE).
 *
 *  Running out of descriptors.  When accept() fails with EMFILE/ENFILE the
 *  reserve descriptor is closed to accept and refuse the pending
 *  connection, then reopened (the classic busy loop: a pending connection
 *  keeps the listener readable).  Without a reserve, and for ENOMEM and
 *  ENOBUFS, the listener is paused for 100 ms.
 *
 *  Fairness.  One readable event accepts at most 64 connections, then the
 *  loop serves the connections it has.  Nothing done for one peer takes
 *  unbounded time: a refused peer gets one non-blocking send of its ERROR
 *  frame and at most NET_DRAIN_MAX bytes of its input are discarded (so
 *  that close() is a FIN after our frame rather than a reset) -- a peer
 *  that keeps writing gets a reset, not a stalled server (issue 13).
 *
 *  Probing a socket file is non-blocking too (see listen_unix()): the
 *  header promises that ct_net_server_new() does not block.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

static void pause_listener(ct_net_server *s, int64_t ns) {
  if (!s->listen_paused) {
    epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
    s->listen_paused = true;
  }
  s->listen_resume = ct_now() + ns;
}

void listen_resume_due(ct_net_server *s, int64_t now) {
  if (!s->listen_paused || now < s->listen_resume)
    return;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->lkind};
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) == 0)
    s->listen_paused = false;
  else
    s->listen_resume = now + SEC / 10;
}

/* Refuse fd at once with an error frame, best effort (loop thread: it
 * never blocks, and takes a bounded time whatever the peer does). */
static void refuse_fd(int fd, unsigned code, const char *msg) {
  uint8_t f[NET_HDR + 1 + 6 + 64];
  size_t n = strlen(msg);
  if (n > 64)
    n = 64;
  put_u32(f, (uint32_t)(1 + 6 + n));
  f[4] = MSG_ERROR;
  put_u32(f + 5, 0);
  put_u16(f + 9, (uint16_t)code);
  memcpy(f + 11, msg, n);
  ssize_t w = send(fd, f, NET_HDR + 7 + n, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)w;
  /* Discard what the peer sent already, so close() sends a FIN after our
   * frame rather than a reset that could destroy it in flight. */
  shutdown(fd, SHUT_WR);
  net_drain_some(fd);
  close(fd);
}

static void accept_one(ct_net_server *s, int fd, struct sockaddr_storage *ss,
                       socklen_t slen) {
  stat_add(&s->st_accepted, 1);
  if (s->nconns >= s->o.max_clients) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing a client: %zu connections already", s->nconns);
    refuse_fd(fd, NERR_LIMIT, "too many clients");
    return;
  }
  /* Handshakes in progress: open connections not past READY (st_ready is
   * written by this thread only, so this read is exact). */
  size_t ready = (size_t)atomic_load_explicit(&s->st_ready,
                                              memory_order_relaxed);
  if (s->nconns - ready >= s->o.max_handshakes) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing a client: %zu handshakes in progress already",
        s->nconns - ready);
    refuse_fd(fd, NERR_LIMIT, "too many handshakes in progress");
    return;
  }
  struct conn *c = net_calloc(1, sizeof *c);
  if (!c) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing a client: out of memory");
    refuse_fd(fd, NERR_NO_MEMORY, "server out of memory");
    return;
  }
  c->kind = EV_CONN;
  c->fd = fd;
  c->state = CS_HELLO;
  /* Saturated: any handshake_timeout_ns is accepted, INT64_MAX too (a
   * plain sum wrapped negative and failed every handshake at the next
   * sweep). */
  c->hs_deadline = ct_deadline_after(s->o.handshake_timeout_ns);
  uid_t uid = 0;
  bool uid_ok = true;
  if (s->addr.family == AF_UNIX) {
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
      uid = cred.uid;
      c->peer_pid = cred.pid;
      uid_ok = proto_uid_allowed(s, uid);
      snprintf(c->peer, sizeof c->peer, "uid %u pid %d", (unsigned)cred.uid,
               (int)cred.pid);
    } else {
      uid_ok = false;
      snprintf(c->peer, sizeof c->peer, "(unknown credentials)");
    }
  } else {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    net_addr_format((struct sockaddr *)ss, slen, c->peer, sizeof c->peer);
  }
  group_set_key(s, c); /* by pid until the HELLO names a group */
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    stat_add(&s->st_refused, 1);
    LOG(s, "refusing client %s: epoll_ctl: %s", c->peer, strerror(errno));
    refuse_fd(fd, NERR_NO_MEMORY, "server out of resources");
    net_free(c);
    return;
  }
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  stat_add(&s->st_active, 1);
  if (!uid_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "uid %u is not allowed to connect",
             (unsigned)uid);
    conn_refuse(s, c, NERR_PEER, msg);
  }
}

void listen_accept(ct_net_server *s) {
  for (int i = 0; i < 64; i++) { /* then let the others have a turn */
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    int fd = accept4(s->lfd, (struct sockaddr *)&ss, &slen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(s, fd, &ss, slen);
      continue;
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED || e == EPROTO)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK)
      return;
    int64_t now = ct_now();
    bool say = now - s->last_emfile_log > SEC;
    if (say)
      s->last_emfile_log = now;
    if ((e == EMFILE || e == ENFILE) && s->reserve_fd >= 0) {
      /* Free one descriptor to take the connection off the queue, and
       * refuse it: else the listener stays readable and we spin. */
      close(s->reserve_fd);
      s->reserve_fd = -1;
      fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        stat_add(&s->st_accepted, 1);
        stat_add(&s->st_refused, 1);
        refuse_fd(fd, NERR_LIMIT, "server out of file descriptors");
      }
      s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (say)
        LOG(s, "accept: %s; refusing new clients", strerror(e));
      if (s->reserve_fd < 0)
        pause_listener(s, SEC / 10);
      return;
    }
    if (say)
      LOG(s, "accept: %s; pausing for 100 ms", strerror(e));
    pause_listener(s, SEC / 10); /* ENOMEM, ENOBUFS, EMFILE w/o reserve */
    return;
  }
}

void listen_adopt(ct_net_server *s, int fd) {
  net_set_nonblock(fd); /* as accept4(SOCK_NONBLOCK) would have made it */
  struct sockaddr_storage ss;
  socklen_t slen = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &slen) < 0) {
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    slen = sizeof(sa_family_t);
  }
  accept_one(s, fd, &ss, slen);
}

/* ---- creation ---- */

static int listen_unix(ct_net_server *s) {
  const char *path = s->addr.path;
  for (int attempt = 0;; attempt++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      return -errno;
    if (bind(fd, (struct sockaddr *)&s->addr.ss, s->addr.len) == 0) {
      /* Before listen(), nobody can connect: tighten the mode now. */
      struct stat st;
      if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
        int e = -errno;
        close(fd);
        unlink(path);
        return e;
      }
      s->own_path = true;
      s->path_dev = st.st_dev;
      s->path_ino = st.st_ino;
      if (listen(fd, SOMAXCONN) < 0) {
        int e = -errno;
        close(fd);
        unlink(path);
        s->own_path = false;
        return e;
      }
      s->lfd = fd;
      return 0;
    }
    int e = errno;
    close(fd);
    if (e != EADDRINUSE || attempt > 0)
      return -e;
    /* A socket file nobody listens on is a dead server's: replace it. */
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
      return -EADDRINUSE;
    /* Non-blocking: a live server that does not accept (stopped, hung,
     * its backlog full) makes a blocking connect() wait for ever; here it
     * is EAGAIN, which is "alive" like any answer but ECONNREFUSED. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
      return -errno;
    int cr = connect(probe, (struct sockaddr *)&s->addr.ss, s->addr.len);
    int ce = errno;
    close(probe);
    if (cr == 0 || ce != ECONNREFUSED)
      return -EADDRINUSE;
    unlink(path);
  }
}

static int listen_tcp(ct_net_server *s) {
  int fd = socket(s->addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                  0);
  if (fd < 0)
    return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (s->addr.family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&s->addr.ss, s->addr.len) < 0 ||
      listen(fd, SOMAXCONN) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  s->lfd = fd;
  return 0;
}

int listen_open(ct_net_server *s) {
  return s->addr.family == AF_UNIX ? listen_unix(s) : listen_tcp(s);
}
