/* SPDX-License-Identifier: MIT
 *
 * client.c -- the token client's public API: connecting to a token server
 * (the socket, the handshake of docs/PROTOCOL.md), the connection's state,
 * and freeing.  The requests and proxies are in client_req.c, the shared
 * I/O thread in client_io.c (see client.h).
 *
 * Design notes:
 *
 *  The handshake runs on the caller's thread, on a non-blocking socket
 *  waited on with poll() until the caller's deadline; only then does the
 *  client join the shared I/O thread.  Handshake frames are encoded and
 *  decoded by the codec; a frame longer than the handshake limit (256
 *  bytes) is -EPROTO before its body is read.
 *
 *  A client with a secret checks the server's proof before it sends its
 *  own (and refuses a server that does not check a secret at all); the
 *  proofs are wiped from the stack once used.
 */
#include "client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- connecting ---- */

static int wait_fd(int fd, short ev, int64_t deadline) {
  for (;;) {
    struct pollfd p = {fd, ev, 0};
    int n = poll(&p, 1, net_poll_ms(deadline));
    if (n > 0)
      return 0;
    if (n == 0)
      return -ETIMEDOUT;
    if (errno != EINTR)
      return -errno;
  }
}

static int write_all(int fd, const uint8_t *p, size_t n, int64_t deadline) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      int r = wait_fd(fd, POLLOUT, deadline);
      if (r < 0)
        return r;
    } else {
      return -errno;
    }
  }
  return 0;
}

static int read_all(int fd, uint8_t *p, size_t n, int64_t deadline) {
  while (n) {
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r == 0) {
      return -ECONNRESET;
    } else if (errno == EAGAIN || errno == EINTR) {
      int e = wait_fd(fd, POLLIN, deadline);
      if (e < 0)
        return e;
    } else {
      return -errno;
    }
  }
  return 0;
}

/* Read one handshake frame: its header (a length above the handshake
 * limit is -EPROTO before the body is read), then type and body into
 * buf (NET_MAX_FRAME_HS bytes). */
static int read_hs_frame(int fd, uint8_t *buf, struct net_frame *f,
                         int64_t deadline) {
  int r = read_all(fd, buf, NET_HDR, deadline);
  if (r < 0)
    return r;
  uint32_t len = get_u32(buf);
  if (len == 0 || len > NET_MAX_FRAME_HS)
    return -EPROTO;
  if ((r = read_all(fd, buf + NET_HDR, len, deadline)) < 0)
    return r;
  return net_frame_next(buf, NET_HDR + len, NET_MAX_FRAME_HS, f, NULL) == 1
             ? 0
             : -EPROTO;
}

/* Send what o holds (one encoded frame), then empty it. */
static int send_hs(int fd, struct net_buf *o, int rc, int64_t deadline) {
  if (rc == 0)
    rc = write_all(fd, o->data + o->off, net_buf_pending(o), deadline);
  if (o->data)
    net_wipe(o->data, o->cap); /* AUTH carries a proof */
  net_buf_free(o);
  return rc;
}

/* Read the answer to a handshake frame whose send returned `sent`.  A
 * server that refuses a connection at once (too many clients, no
 * descriptor left) may close it before our frame arrives: the send then
 * fails with EPIPE or ECONNRESET, but the ERROR frame it sent first is
 * still there to read, and it says why -- a clearer error than "broken
 * pipe".  Returns 0 with a frame, or the error of the send (else the
 * read). */
static int read_reply(int fd, int sent, uint8_t *buf, struct net_frame *f,
                      int64_t deadline) {
  if (sent < 0 && sent != -EPIPE && sent != -ECONNRESET)
    return sent;
  int r = read_hs_frame(fd, buf, f, deadline);
  if (sent < 0 && (r < 0 || f->type != MSG_ERROR))
    return sent;
  return r;
}

/* An ERROR frame in the handshake: its errno, with its message. */
static int hs_error(const struct net_frame *f, char *err, size_t errlen) {
  struct net_error m;
  if (net_dec_error(f->body, f->len, &m) < 0) {
    net_seterr(err, errlen, "malformed error frame from the server");
    return -EPROTO;
  }
  net_seterr(err, errlen, "server refused the connection: %.*s",
             (int)m.msg_len, m.msg);
  return net_err_to_errno(m.code);
}

/* Check the server's proof and compute ours (a client with a secret). */
static int prove(const ct_net_client_options *o, const uint8_t *cnonce,
                 const struct net_welcome *w, uint8_t proof[NET_PROOF],
                 char *err, size_t errlen) {
  bool server_secret = w->flags & NET_WELCOME_SECRET;
  if (server_secret && !o->secret_len) {
    net_seterr(err, errlen, "the server requires a secret and none was given");
    return -EACCES;
  }
  if (!o->secret_len)
    return 0;
  if (!server_secret) {
    net_seterr(err, errlen, "the server does not check a secret, but one "
                            "was given: refusing an unauthenticated server");
    return -EACCES;
  }
  uint8_t want[NET_PROOF];
  if (net_proof(o->secret, o->secret_len, true, cnonce, w->nonce, want) < 0) {
    net_seterr(err, errlen, "cannot compute a proof");
    return -ENOMEM;
  }
  bool ok = net_proof_equal(want, w->proof);
  net_wipe(want, sizeof want);
  if (!ok) {
    net_seterr(err, errlen, "the server failed to prove it knows the "
                            "secret (wrong secret?)");
    return -EACCES;
  }
  if (net_proof(o->secret, o->secret_len, false, cnonce, w->nonce, proof) <
      0) {
    net_seterr(err, errlen, "cannot compute a proof");
    return -ENOMEM;
  }
  return 0;
}

static int handshake(int fd, const ct_net_client_options *o, char *err,
                     size_t errlen, int64_t deadline) {
  uint8_t cnonce[NET_NONCE];
  if (net_random(cnonce, NET_NONCE) < 0) {
    net_seterr(err, errlen, "no random bytes for a nonce");
    return -EIO;
  }
  struct net_buf out = {0};
  int r = send_hs(fd, &out,
                  net_enc_hello_group(&out, NET_VERSION_MIN, NET_VERSION_MAX,
                                      cnonce, client_group()),
                  deadline);
  if (r == -ENOMEM)
    return r;
  uint8_t b[NET_HDR + NET_MAX_FRAME_HS];
  struct net_frame f;
  r = read_reply(fd, r, b, &f, deadline);
  if (r < 0) {
    net_seterr(err, errlen, "handshake: %s%s", strerror(-r),
               r == -EPROTO ? " (not a cancel-token server?)" : "");
    return r;
  }
  if (f.type == MSG_ERROR)
    return hs_error(&f, err, errlen);
  struct net_welcome w;
  if (f.type != MSG_WELCOME || net_dec_welcome(f.body, f.len, &w) < 0) {
    net_seterr(err, errlen, "not a cancel-token server (bad WELCOME)");
    return -EPROTO;
  }
  if (w.version < NET_VERSION_MIN || w.version > NET_VERSION_MAX) {
    net_seterr(err, errlen,
               "server chose protocol version %u; this client speaks %u..%u",
               (unsigned)w.version, NET_VERSION_MIN, NET_VERSION_MAX);
    return -EPROTONOSUPPORT;
  }
  uint8_t proof[NET_PROOF] = {0};
  if ((r = prove(o, cnonce, &w, proof, err, errlen)) < 0)
    return r;
  r = send_hs(fd, &out, net_enc_auth(&out, proof), deadline);
  net_wipe(proof, sizeof proof);
  if (r == -ENOMEM)
    return r;
  r = read_reply(fd, r, b, &f, deadline);
  if (r < 0) {
    net_seterr(err, errlen, "handshake: %s", strerror(-r));
    return r;
  }
  if (f.type == MSG_ERROR)
    return hs_error(&f, err, errlen);
  uint32_t max_frame;
  if (f.type != MSG_READY || net_dec_ready(f.body, f.len, &max_frame) < 0) {
    net_seterr(err, errlen, "not a cancel-token server (bad READY)");
    return -EPROTO;
  }
  return 0;
}

static int connect_one(const struct net_addr *a, char *err, size_t errlen,
                       int64_t deadline) {
  int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    net_seterr(err, errlen, "socket: %s", strerror(errno));
    return -errno;
  }
  int r = 0;
  if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
    if (errno == EINPROGRESS) {
      r = wait_fd(fd, POLLOUT, deadline);
      int e = 0;
      socklen_t el = sizeof e;
      if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e)
        r = -e;
    } else {
      r = -errno;
    }
  }
  if (r < 0) {
    close(fd);
    return r;
  }
  if (a->family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

int ct_net_client_connect(ct_net_client **out, const char *address,
                          const ct_net_client_options *opts, char *errbuf,
                          size_t errlen, int64_t deadline) {
  if (errbuf && errlen)
    errbuf[0] = '\0';
  ct_net_client_options o;
  static const size_t sizes[] = {CT_NET_CLIENT_OPTIONS_SIZE_1};
  if (net_options_copy(&o, sizeof o, opts, sizes, 1) < 0) {
    net_seterr(errbuf, errlen, "options of an unknown size %zu (this "
               "library's is %zu)", opts->size, sizes[0]);
    return -EINVAL;
  }
  if (!out || !address || !net_valid_deadline(deadline) ||
      (o.secret_len && !o.secret) || o.heartbeat_ns < 0) {
    net_seterr(errbuf, errlen, "invalid argument");
    return -EINVAL;
  }
  *out = NULL;
  struct net_addr a;
  int fd = -ENOENT;
  for (int i = 0;; i++) {
    int r = net_resolve_address(address, &a, i, errbuf, errlen);
    if (r < 0) {
      if (i == 0)
        return r;
      break; /* no more addresses: fd holds the last failure */
    }
    fd = connect_one(&a, errbuf, errlen, deadline);
    if (fd >= 0 || fd == -ETIMEDOUT)
      break;
  }
  if (fd < 0) {
    if (errbuf && errlen && !errbuf[0])
      net_seterr(errbuf, errlen, "cannot connect to %s: %s", address,
                 strerror(-fd));
    return fd;
  }
  int r = handshake(fd, &o, errbuf, errlen, deadline);
  if (r < 0) {
    close(fd);
    return r;
  }
  ct_net_client *c = net_calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return -ENOMEM;
  }
  c->fd = fd;
  pthread_mutex_init(&c->mu, NULL);
  c->keep = o.keep_proxies_on_loss;
  c->heartbeat = o.heartbeat_ns;
  c->log = o.log;
  c->log_arg = o.log_arg;
  c->last_rx = c->last_ping = ct_now();
  if ((r = ct_token_new(&c->lost, "owner-lost")) < 0)
    goto fail;
  if ((r = client_loop_attach(c)) < 0)
    goto fail;
  *out = c;
  return 0;
fail:
  net_seterr(errbuf, errlen, "%s", strerror(-r));
  ct_net_client_free(c);
  return r;
}

ct_token *ct_net_client_lost_token(ct_net_client *c) {
  return c ? c->lost : NULL;
}

int ct_net_client_error(const ct_net_client *c) {
  if (!c)
    return -EINVAL;
  return atomic_load_explicit(&((ct_net_client *)c)->error,
                              memory_order_acquire);
}

void ct_net_client_free(ct_net_client *c) {
  if (!c)
    return;
  if (c->loop)
    client_loop_detach(c);
  if (c->lost)
    client_lose(c, -ESHUTDOWN, CT_REASON_OWNER_LOST);
  client_free_proxies(c);
  if (c->fd >= 0)
    close(c->fd);
  ct_token_unref(c->lost);
  net_buf_free(&c->in);
  net_buf_free(&c->out);
  pthread_mutex_destroy(&c->mu);
  net_free(c);
}
