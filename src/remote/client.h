/* SPDX-License-Identifier: MIT
 *
 * client.h -- the token client's own internal header: its structures and
 * the functions its three files call in one another.  Only client*.c
 * include it.  The design notes are in the files:
 *   client.c      public API: connecting (the handshake), error, free
 *   client_io.c   the process's shared I/O thread, sending, heartbeats
 *   client_req.c  requests and replies, proxies, losing the connection
 */
#ifndef CT_REMOTE_CLIENT_H
#define CT_REMOTE_CLIENT_H

#include "net_internal.h"
#include "proxy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* A proxy of this client: the shared proxy layer's record (proxy.h) and
 * the server's handle for it. */
struct cproxy {
  struct ct_proxy base; /* base.tok: the client's reference */
  struct ct_net_client *c;
  uint32_t handle;
};

struct req {
  struct req *next_async; /* client_lose()'s list, once unlinked */
  uint32_t id;
  int result;
  const char *name;     /* GET: the caller's name (valid while linked) */
  ct_token *done;       /* blocking: the waiter's completion token */
  ct_net_done_fn fn;    /* asynchronous: heap request */
  void *arg;
  ct_token *proxy;      /* GET result: a new reference for the caller */
  uint8_t *payload;     /* LIST_REPLY body (net_malloc'd) */
  uint8_t want;         /* the reply type it expects (TOKEN, ACK, ...) */
  size_t plen;
};

struct loop;

struct ct_net_client {
  int fd;
  struct loop *loop; /* set once registered, before the loop can see us */
  uint64_t key;      /* epoll key: slot | generation << 32 (see loop) */
  /* mu guards out, want_out, reqs, proxies/nproxies/capproxies,
   * by_handle, by_token, next_id, dead. */
  pthread_mutex_t mu;
  struct net_buf out;
  bool want_out; /* EPOLLOUT armed */
  /* The pending requests: id -> struct req (net_internal.h's index), so
   * that a reply finds its request in O(1) expected, not by a scan of
   * every pending one (a caller can have any number of asynchronous
   * triggers outstanding). */
  struct net_map reqs;
  /* The proxy records, in creation order (for losing and freeing them),
   * capacity capproxies; records are never removed before
   * ct_net_client_free().  Indexed by the server's handle (a notice finds
   * its proxy in O(1) expected: the scan of every handle this replaced
   * cost O(proxies) per notice, 10^10 steps when 100,000 proxies of one
   * client all fire) and by the proxy token (ct_net_client_trigger()). */
  struct cproxy **proxies;
  size_t nproxies, capproxies;
  struct net_map by_handle, by_token;
  uint32_t next_id;
  bool dead;
  /* error: 0, or why the connection was lost.  Written once (release) by
   * client_lose() before it triggers anything, read (acquire) by anybody. */
  _Atomic int error;
  ct_token *lost;
  bool keep;
  int64_t heartbeat;
  ct_net_log_fn log;
  void *log_arg;
  struct net_buf in; /* I/O thread only */
  int64_t last_rx, last_ping; /* I/O thread only (set before registering) */
  bool gone; /* I/O thread only: lost, and out of the epoll set */
  /* Where the loop's heartbeat heap holds c (client_io.c), SIZE_MAX when
   * it does not; under the loop's g_mu. */
  size_t hb_idx;
};

#define CLOG(c, ...) net_log((c)->log, (c)->log_arg, __VA_ARGS__)

/* client_io.c */
/* Write what c->out holds without blocking; leave the rest to the loop.
 * Under c->mu, any thread. */
NET_HIDDEN void client_flush_locked(ct_net_client *c);
/* Is the caller the I/O thread (where blocking requests would deadlock)? */
NET_HIDDEN bool client_on_io_thread(const ct_net_client *c);
/* Join the process's loop (starting it) / leave it (stopping it with the
 * last client); after detach returns the loop never touches c again. */
NET_HIDDEN int client_loop_attach(ct_net_client *c);
NET_HIDDEN void client_loop_detach(ct_net_client *c);
/* The process's I/O group, sent in every HELLO (PROTOCOL.md): one random
 * non-zero value for all the connections this process's I/O thread reads,
 * a new one in a child after fork(); 0 if no random bytes could be had.
 * Any thread; takes g_mu. */
NET_HIDDEN uint64_t client_group(void);

/* client_req.c */
/* Handle one frame from the server (I/O thread, no lock held): 0, or the
 * error that loses the connection. */
NET_HIDDEN int client_on_frame(ct_net_client *c, const struct net_frame *f);
/* Lose the connection with err: complete every request with it, trigger
 * the lost token and (unless keep) the proxies with `reason`.  Once. */
NET_HIDDEN void client_lose(ct_net_client *c, int err, ct_reason reason);
/* Free the proxy records and the indexes (after the loop has let go of
 * c, and client_lose() has emptied the requests). */
NET_HIDDEN void client_free_proxies(ct_net_client *c);

#endif /* CT_REMOTE_CLIENT_H */
