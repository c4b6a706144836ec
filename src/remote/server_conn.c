/* SPDX-License-Identifier: MIT
 *
 * server_conn.c -- the token server's connections: their buffers, the
 * limits on what a peer may make the server hold, slow peers, and the
 * timeouts swept by the loop.  Loop thread only.
 *
 * Design notes:
 *
 *  Buffers.  A peer is read into the server's shared scratch buffer, and
 *  only the unfinished tail of a frame is kept per connection, so that an
 *  idle connection costs no buffer.  Frames are length checked before they
 *  are buffered (256 bytes before authentication, 16 KiB after).  Output
 *  is one growable buffer per connection, freed when it is drained if it
 *  grew past 64 KiB.
 *
 *  Limits.  Replies count against max_output: a peer that sends requests
 *  but does not read the answers is dropped when they pile up.  Notices
 *  never count (a reading client never loses one); a peer that reads
 *  nothing for stall_timeout while output is pending is dropped.
 *
 *  Slow peers.  Each frame must be finished within frame_timeout of its
 *  first byte, and a frame delivered a few bytes at a time gets its peer
 *  dropped (FRAME_READS_MIN, FRAME_READ_BYTES; the read that completes a
 *  frame counts).  The handshake must end within handshake_timeout.  The
 *  buffer of an unfinished frame is sized by the state's limit: 260 bytes
 *  before READY, so an unauthenticated peer commits at most that.
 *
 *  Bounded work.  Every read is one non-blocking recv() of at most one
 *  frame's limit; a write is send() until EAGAIN of what is queued, which
 *  the limits bound.  Nothing done for one peer waits for that peer.
 *
 *  Closing.  A connection closed while a batch of epoll events is being
 *  handled (its fd is closed at once) is only marked dead and freed after
 *  the batch, since later events of the batch, and the subscriber arrays
 *  being walked, may still point to it.  A connection-level ERROR makes it
 *  linger (CS_CLOSING) for up to a second, so the peer reads the message
 *  instead of a reset.
 */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

static void epoll_set(ct_net_server *s, struct conn *c, bool out) {
  if (c->want_out == out)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                           .data.ptr = c};
  epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

void conn_close(ct_net_server *s, struct conn *c) {
  if (c->dead)
    return;
  c->dead = true;
  close(c->fd); /* also removes it from the epoll set */
  c->fd = -1;
  if (c->is_ready)
    stat_add(&s->st_ready, -1);
  stat_add(&s->st_active, -1);
  /* from s->conns to s->dead */
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  c->prev = NULL;
  c->next = s->dead;
  s->dead = c;
}

void conn_free(ct_net_server *s, struct conn *c) {
  stat_add(&s->st_proxies, -(int64_t)c->nsubs);
  for (size_t i = 0; i < c->nsubs; i++) {
    struct sub *u = c->subs[i];
    struct entry *e = u->e;
    /* eidx is where u sits in e->subs; server_proto.c keeps it so when
     * it reorders the array for a notice. */
    assert(u->eidx < e->nsubs && e->subs[u->eidx] == u);
    struct sub *last = e->subs[--e->nsubs]; /* swap-remove */
    e->subs[u->eidx] = last;
    last->eidx = u->eidx;
    net_free(u);
  }
  net_free(c->subs);
  net_map_free(&c->held);
  net_buf_free(&c->in);
  net_buf_free(&c->out);
  net_free(c);
}

void conn_free_dead(ct_net_server *s) {
  while (s->dead) {
    struct conn *c = s->dead;
    s->dead = c->next;
    conn_free(s, c);
  }
}

void conn_drop(ct_net_server *s, struct conn *c, const char *why) {
  if (c->dead)
    return;
  LOG(s, "dropping client %s: %s", c->peer, why);
  stat_add(&s->st_dropped, 1);
  conn_close(s, c);
}

/* Write what is queued; close on error. */
void conn_flush(ct_net_server *s, struct conn *c) {
  while (net_buf_pending(&c->out)) {
    ssize_t w = send(c->fd, c->out.data + c->out.off, net_buf_pending(&c->out),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      net_buf_consume(&c->out, (size_t)w);
      c->out_since = ct_now(); /* progress */
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->out_since)
        c->out_since = ct_now();
      epoll_set(s, c, true);
      return;
    }
    conn_close(s, c); /* EPIPE, ECONNRESET: the peer has gone */
    return;
  }
  c->out_since = 0;
  epoll_set(s, c, false);
  if (c->out.cap > 65536) /* do not keep a big buffer per idle client */
    net_buf_free(&c->out);
  if (c->state == CS_CLOSING && !c->shut_wr) {
    shutdown(c->fd, SHUT_WR);
    c->shut_wr = true;
  }
}

bool conn_room(ct_net_server *s, struct conn *c, size_t size, bool notice) {
  if (c->dead)
    return false;
  if (!notice && net_buf_pending(&c->out) + size > s->o.max_output) {
    conn_drop(s, c, "output buffer full (the peer does not read)");
    return false;
  }
  return true;
}

void conn_queued(ct_net_server *s, struct conn *c, int rc) {
  if (rc < 0)
    conn_drop(s, c, "out of memory for its output");
  else
    conn_flush(s, c);
}

/* Send an ERROR.  req 0 is a connection-level error: the connection then
 * lingers (CS_CLOSING) until the peer closes or a second passes, so that
 * the peer reads the message instead of a reset. */
void conn_error(ct_net_server *s, struct conn *c, uint32_t req, unsigned code,
                const char *msg) {
  size_t n = strlen(msg);
  if (!conn_room(s, c, NET_HDR + 7 + (n < NET_MAX_MSG ? n : NET_MAX_MSG),
                 req == 0))
    return;
  if (net_enc_error(&c->out, req, code, msg, n) < 0) {
    conn_drop(s, c, "out of memory for its output");
    return;
  }
  if (req == 0) {
    c->state = CS_CLOSING;
    c->close_deadline = ct_now() + CLOSE_LINGER_NS;
    net_buf_free(&c->in);
    c->partial_since = 0;
  }
  conn_flush(s, c);
}

/* A protocol violation: tell the peer, log, and drop it. */
void conn_fail(ct_net_server *s, struct conn *c, unsigned code,
               const char *why) {
  LOG(s, "dropping client %s: %s", c->peer, why);
  stat_add(&s->st_dropped, 1);
  conn_error(s, c, 0, code, why);
}

void conn_refuse(ct_net_server *s, struct conn *c, unsigned code,
                 const char *why) {
  LOG(s, "refusing client %s: %s", c->peer, why);
  stat_add(&s->st_refused, 1);
  conn_error(s, c, 0, code, why);
}

void conn_shutdown(ct_net_server *s, struct conn *c) {
  if (c->state != CS_CLOSING) {
    /* Exempt from max_output, as a notice is: it is the last frame. */
    static const char msg[] = "server stopping";
    if (net_enc_error(&c->out, 0, NERR_SHUTDOWN, msg, sizeof msg - 1) == 0)
      conn_flush(s, c); /* non-blocking: what does not fit is lost */
  }
  if (!c->dead) {
    shutdown(c->fd, SHUT_WR);
    net_drain_some(c->fd); /* so that close() is a FIN, not a reset */
    conn_close(s, c);
  }
}

/* ---- reading ---- */

/* The end of the input (EOF).  A peer that half-closes in the middle of a
 * frame, or before the handshake is done, has cut it short: MALFORMED,
 * as the threat model says, and not a silent close (issue 13, 19). */
static void conn_eof(ct_net_server *s, struct conn *c) {
  if (c->in.len) {
    conn_fail(s, c, NERR_MALFORMED,
              "closed the connection in the middle of a frame");
    return;
  }
  if (c->state != CS_READY) {
    conn_fail(s, c, NERR_MALFORMED,
              "closed the connection during the handshake");
    return;
  }
  conn_close(s, c);
}

/* Was the frame that took `reads` reads for `size` bytes sent a few bytes
 * at a time?  "More than FRAME_READS_MIN reads, averaging under
 * FRAME_READ_BYTES a read" (PROTOCOL.md), counted with the read that
 * completes it: a frame finished on its 9th small read is one (issue 13,
 * 16: it used to pass). */
static bool too_slow(uint32_t reads, size_t size) {
  return reads > FRAME_READS_MIN && size < (size_t)reads * FRAME_READ_BYTES;
}

static void conn_read(ct_net_server *s, struct conn *c) {
  if (c->state == CS_CLOSING) { /* discard until the peer closes */
    ssize_t r = recv(c->fd, s->scratch, NET_HDR + NET_MAX_FRAME,
                     MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
      conn_close(s, c);
    return;
  }
  /* The state's limit sizes both the read and the buffer of an
   * unfinished frame: before READY, 256 bytes of frame, not 16 KiB
   * (issue 13, 17: 32 KiB per unauthenticated peer). */
  uint32_t max = c->state == CS_READY ? NET_MAX_FRAME : NET_MAX_FRAME_HS;
  size_t lim = NET_HDR + max;
  uint8_t *base;
  ssize_t r;
  size_t have;
  if (c->in.len == 0) {
    base = s->scratch;
    r = recv(c->fd, base, lim, MSG_DONTWAIT);
    have = r > 0 ? (size_t)r : 0;
  } else {
    if (c->in.cap < lim &&
        net_buf_reserve(&c->in, lim - c->in.len) < 0) {
      conn_drop(s, c, "out of memory for its input");
      return;
    }
    base = c->in.data;
    size_t room = c->in.len < lim ? lim - c->in.len : 0;
    r = room ? recv(c->fd, base + c->in.len, room, MSG_DONTWAIT) : 0;
    have = c->in.len + (r > 0 ? (size_t)r : 0);
  }
  if (r < 0) {
    if (errno == EAGAIN || errno == EINTR)
      return;
    conn_close(s, c); /* reset: the client died, nothing to report */
    return;
  }
  if (r == 0) {
    conn_eof(s, c);
    return;
  }
  /* This read counts for the frame in progress, if one is. */
  uint32_t reads = c->in.len ? c->frame_reads + 1 : 1;
  size_t pos = 0;
  for (;;) {
    max = c->state == CS_READY ? NET_MAX_FRAME : NET_MAX_FRAME_HS;
    struct net_frame f;
    uint32_t len = 0;
    int k = net_frame_next(base + pos, have - pos, max, &f, &len);
    if (k == 0)
      break;
    if (k < 0) {
      char msg[96];
      snprintf(msg, sizeof msg, "frame of %u bytes (limit %u)", len, max);
      conn_fail(s, c, len ? NERR_TOO_BIG : NERR_MALFORMED, msg);
      return;
    }
    if (pos == 0 && too_slow(reads, f.size)) {
      conn_fail(s, c, NERR_TIMEOUT, "sends its frames a few bytes at a time");
      return;
    }
    proto_frame(s, c, &f);
    pos += f.size;
    if (c->dead || c->state == CS_CLOSING)
      return;
  }
  size_t left = have - pos;
  if (left == 0) {
    net_buf_free(&c->in);
    c->partial_since = 0;
    c->frame_reads = 0;
    return;
  }
  if (base == s->scratch) {
    if (net_buf_append(&c->in, base + pos, left) < 0) {
      conn_drop(s, c, "out of memory for its input");
      return;
    }
  } else {
    memmove(c->in.data, base + pos, left);
    c->in.len = left;
  }
  if (pos > 0 || !c->partial_since) { /* a new unfinished frame */
    c->partial_since = ct_now();
    reads = 1;
  }
  c->frame_reads = reads;
  if (too_slow(reads, left))
    conn_fail(s, c, NERR_TIMEOUT, "sends its frames a few bytes at a time");
}

void conn_event(ct_net_server *s, struct conn *c, uint32_t events) {
  if (c->dead)
    return;
  if (events & EPOLLOUT)
    conn_flush(s, c);
  if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
    conn_read(s, c);
}

/* ---- timeouts ---- */

void conn_sweep(ct_net_server *s, int64_t now) {
  for (struct conn *c = s->conns, *next; c; c = next) {
    next = c->next; /* c may move to the dead list */
    if (c->state == CS_CLOSING) {
      if (now >= c->close_deadline)
        conn_close(s, c);
    } else if (c->state != CS_READY && now >= c->hs_deadline) {
      conn_fail(s, c, NERR_TIMEOUT, "handshake not completed in time");
    } else if (c->partial_since &&
               now - c->partial_since >= s->o.frame_timeout_ns) {
      conn_fail(s, c, NERR_TIMEOUT, "frame not completed in time");
    } else if (c->out_since && now - c->out_since >= s->o.stall_timeout_ns) {
      conn_drop(s, c, "it stopped reading");
    }
  }
}
