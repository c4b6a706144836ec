/* SPDX-License-Identifier: MIT
 *
 * server.h -- the token server's own internal header: its structures and
 * the functions its four files call in one another.  Only server*.c
 * include it.  The design notes of the whole server are in server.c; each
 * file's notes say what it adds:
 *   server.c         public API, the name table, the loop, teardown
 *   server_conn.c    connections: buffers, limits, slow peers, timeouts
 *   server_proto.c   the protocol handlers and the notices
 *   server_listen.c  listening sockets, accepting and refusing
 *   server_fanout.c  one notice to many, sent from more than one thread
 */
#ifndef CT_REMOTE_SERVER_H
#define CT_REMOTE_SERVER_H

#include "net_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#define SWEEP_MS 200
#define FRAME_READS_MIN 8    /* a frame may take this many reads ... */
#define FRAME_READ_BYTES 8   /* ... after that each must average this */
#define CLOSE_LINGER_NS (INT64_C(1000000000))
#define SEC (INT64_C(1000000000))

enum ev_kind { EV_LISTEN = 1, EV_WAKE = 2, EV_CONN = 3 };
enum conn_state { CS_HELLO, CS_AUTH, CS_READY, CS_CLOSING };

struct entry;
struct conn;

/* One subscription: connection c holds a proxy of entry e.  It sits in
 * both c->subs and e->subs[eidx]; loop thread only.  gkey: c's
 * group_key(), copied when the subscription is made (a connection's key is
 * set at accept and at HELLO, both before it can subscribe, and never
 * changes after), so that grouping a notice's sends reads the subscription
 * records alone, not the connections too (server_proto.c). */
struct sub {
  struct conn *c;
  struct entry *e;
  size_t eidx;
  uint32_t gkey;
};

struct conn {
  int kind; /* EV_CONN; MUST be first (epoll data points here) */
  int fd;
  int state;
  bool dead;     /* closed; freed after the current batch */
  bool want_out; /* EPOLLOUT is armed */
  bool shut_wr;  /* CS_CLOSING: shutdown(SHUT_WR) done */
  bool is_ready; /* counted in stats.ready */
  uint32_t frame_reads;  /* reads spent on the unfinished frame */
  uint8_t cnonce[NET_NONCE], snonce[NET_NONCE];
  struct net_buf in, out;
  struct sub **subs; /* in subscription order; freed with the connection */
  size_t nsubs, capsubs;
  /* The handles this connection got from GET, the ones it may TRIGGER:
   * handle -> its struct sub, or -> HELD_GRANTED for a token that was
   * already triggered when it got it (so not subscribed).  An index
   * (net_internal.h), so that a GET or TRIGGER checks it in O(1)
   * expected, not in a scan of every subscription (up to
   * max_proxies_per_client, which the server's owner may set to
   * anything) and every grant (one per triggered token it asked for,
   * bounded only by the tokens served). */
  struct net_map held;
  int64_t hs_deadline;   /* handshake must end by then */
  int64_t partial_since; /* an unfinished frame started then (0: none) */
  int64_t out_since;     /* output pending and no progress since (0) */
  int64_t close_deadline;
  /* Unix sockets: the peer's process (SO_PEERCRED at accept); 0 for TCP.
   * group: the I/O group the client named in its HELLO (PROTOCOL.md), 0
   * if it named none.  A notice's sends are grouped by the group, else by
   * the pid (server_proto.c, group_key()). */
  pid_t peer_pid;
  uint64_t group;
  uint32_t gkey; /* group_set_key(): the sort key of group or pid */
  struct conn *prev, *next; /* s->conns, or s->dead once dead */
  char peer[96];
};

struct entry {
  struct ct_net_server *s;
  ct_token *tok;        /* the server's reference */
  char *name;
  size_t name_len;
  uint32_t id;          /* the handle: index in s->entries */
  ct_callback cb;       /* entry_fired */
  bool queued;          /* on s->fired (or was); guarded by s->mu */
  bool published;       /* in entries[] and the hash; guarded by s->mu */
  bool fired_early;     /* hook ran before publication; guarded by s->mu */
  struct entry *fired_next; /* guarded by s->mu */
  struct entry *hnext;  /* hash chain; guarded by s->mu */
  bool notified;        /* notice sent; loop thread only */
  struct sub **subs;    /* loop thread only */
  size_t nsubs, capsubs;
};

struct ct_net_server {
  /* mu guards: entries, nentries, capentries, hash, hashcap, fired,
   * closed (see LOCK ORDER in server.c). */
  pthread_mutex_t mu;
  struct entry **entries;
  size_t nentries, capentries;
  struct entry **hash;
  size_t hashcap;
  struct entry *fired;
  bool closed;
  uint64_t group_salt; /* random, set at creation, then immutable */

  int ep, lfd, wake_fd, reserve_fd;
  int lkind, wkind; /* epoll data of the listener and the eventfd */
  bool listen_paused;
  int64_t listen_resume;
  struct net_addr addr;
  char addrstr[320];
  bool own_path; /* we created the socket file: unlink it at the end */
  dev_t path_dev;
  ino_t path_ino;

  ct_net_server_options o;
  uint8_t *secret;

  /* stop_req: set by ct_net_server_stop() (any thread, signal handlers),
   * read by the loop.  seq_cst store/load: it is paired with the eventfd
   * write/read, which already orders it; no other data rides on it. */
  _Atomic int stop_req;
  /* 0 never ran, 1 running, 2 finished: CAS from 0 makes "runs once". */
  _Atomic int run_state;
  bool thread_started;
  pthread_t thread;

  struct conn *conns, *dead; /* loop thread only */
  size_t nconns;
  uint8_t *scratch;
  int64_t next_sweep, last_emfile_log;

  struct fanout *fanout; /* server_fanout.c; loop thread only */
  bool fanout_failed;

  /* Statistics: relaxed atomics, written by the loop, read by anybody. */
  _Atomic uint64_t st_accepted, st_active, st_ready, st_dropped, st_refused,
      st_proxies;
};

static inline void stat_add(_Atomic uint64_t *v, int64_t d) {
  /* relaxed: a counter; no other memory is published through it. */
  atomic_fetch_add_explicit(v, (uint64_t)d, memory_order_relaxed);
}

#define LOG(s, ...) net_log((s)->o.log, (s)->o.log_arg, __VA_ARGS__)

/* server.c */
NET_HIDDEN struct entry *srv_lookup(ct_net_server *s, const char *name,
                                    size_t n);
NET_HIDDEN struct entry *srv_entry_by_id(ct_net_server *s, uint32_t id);

/* server_conn.c (loop thread only) */
NET_HIDDEN void conn_close(ct_net_server *s, struct conn *c);
NET_HIDDEN void conn_free(ct_net_server *s, struct conn *c);
NET_HIDDEN void conn_free_dead(ct_net_server *s);
NET_HIDDEN void conn_drop(ct_net_server *s, struct conn *c, const char *why);
NET_HIDDEN void conn_flush(ct_net_server *s, struct conn *c);
/* May a frame of `size` bytes be queued?  Replies count against
 * max_output (the peer is dropped, false, when it is exceeded); notices
 * never do.  False on a dead connection. */
NET_HIDDEN bool conn_room(ct_net_server *s, struct conn *c, size_t size,
                          bool notice);
/* After an encoder appended to c->out: drop on -ENOMEM, else flush. */
NET_HIDDEN void conn_queued(ct_net_server *s, struct conn *c, int rc);
NET_HIDDEN void conn_error(ct_net_server *s, struct conn *c, uint32_t req,
                           unsigned code, const char *msg);
NET_HIDDEN void conn_fail(ct_net_server *s, struct conn *c, unsigned code,
                          const char *why);
NET_HIDDEN void conn_refuse(ct_net_server *s, struct conn *c, unsigned code,
                            const char *why);
/* The server stops: send ERROR SHUTDOWN (best effort, without blocking)
 * and close. */
NET_HIDDEN void conn_shutdown(ct_net_server *s, struct conn *c);
NET_HIDDEN void conn_event(ct_net_server *s, struct conn *c, uint32_t events);
NET_HIDDEN void conn_sweep(ct_net_server *s, int64_t now);

/* The key by which a notice's sends are grouped (server_proto.c;
 * server_fanout.c splits the sends between threads at changes of it),
 * set by group_set_key() below. */
static inline uint32_t group_key(const struct conn *c) { return c->gkey; }

/* Set c's key from its group or, naming none (an older client), its pid
 * (0, so one key for all of them, over TCP), mixed with the server's
 * secret salt so that the order of the groups in a notice is the server's
 * choice: a client cannot pick a group that sorts first (the
 * multiplication alone is invertible).  Fibonacci hashing: the high half
 * of the product depends on every bit.  Two groups that hash alike (or a
 * group and a pid) are merely sorted together, which costs nothing but
 * the grouping's gain.  Loop thread, at accept and at HELLO. */
static inline void group_set_key(const struct ct_net_server *s,
                                 struct conn *c) {
  uint64_t v = c->group ? c->group
                        : UINT64_C(1) << 63 | (uint32_t)c->peer_pid;
  c->gkey = (uint32_t)(((v ^ s->group_salt) * UINT64_C(0x9e3779b97f4a7c15)) >>
                       32);
}

/* server_proto.c (loop thread only) */
NET_HIDDEN void proto_frame(ct_net_server *s, struct conn *c,
                            const struct net_frame *f);
NET_HIDDEN void proto_process_fired(ct_net_server *s);
NET_HIDDEN bool proto_uid_allowed(ct_net_server *s, uid_t uid);

/* server_fanout.c (loop thread only) */
/* Send notice m to the n subscribers from more than one thread; false if
 * it did nothing (too few, or no helper), and the caller sends alone. */
NET_HIDDEN bool fanout_notice(ct_net_server *s, struct sub **subs, size_t n,
                              const struct net_notify *m);
/* Join the helpers (the server stops). */
NET_HIDDEN void fanout_stop(ct_net_server *s);

/* server_listen.c */
NET_HIDDEN int listen_open(ct_net_server *s);
NET_HIDDEN void listen_accept(ct_net_server *s);
NET_HIDDEN void listen_adopt(ct_net_server *s, int fd);
NET_HIDDEN void listen_resume_due(ct_net_server *s, int64_t now);

#endif /* CT_REMOTE_SERVER_H */
