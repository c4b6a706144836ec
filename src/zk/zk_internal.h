/* SPDX-License-Identifier: MIT
 *
 * zk_internal.h -- the structures shared by the files of the ZooKeeper
 * backend (session.c: the session, its thread and its failures; ops.c:
 * requests with deadlines and retries; record.c: the node formats and
 * name checks; token.c: publish, proxies, triggers).
 *
 * Design notes (the invariants every file relies on):
 *
 *  Locks.  c->mu guards the record list, each record's fields and the
 *  client's flags; c->cv is signalled when the client's thread has work.
 *  c->hlock (a rwlock) guards c->zh: requests hold it for reading while
 *  they issue an asynchronous call (never while they wait for it), the
 *  client's thread holds it for writing to replace an expired handle.
 *  c->opmu/opcv guard the completion fields of every pending request.
 *  Order: hlock before opmu; mu is never held with either, and never while
 *  a token is triggered or a callback unregistered (those run callbacks
 *  that may take mu, via the proxies' forward hook).
 *
 *  Lists only grow.  A record, and a proxy once linked into a record, is
 *  freed only by ct_zk_client_free() after the client's thread has ended.
 *  So a thread that read a list head under mu may walk the list without
 *  mu: `next` pointers are written before the node is published (under
 *  mu) and never change.
 *
 *  Exactly once.  A record's trigger (rec->fired, rec->trig) is set once,
 *  under mu, from what the ensemble holds; the ensemble's atomic create
 *  decides which trigger that is.  Proxies are triggered from it through
 *  ct_proxy_fire(), which is idempotent (a token is triggered once), so two
 *  threads that both read the record and fire it trigger each proxy once.
 *
 *  ZooKeeper's threads.  The watcher and the completions run on the
 *  library's completion thread.  They only take mu or opmu briefly and
 *  signal; they never trigger a token, never issue a synchronous call and
 *  never call zookeeper_close() (which waits for that thread).
 */
#ifndef CT_ZK_INTERNAL_H
#define CT_ZK_INTERNAL_H

#define THREADED
#include <zookeeper/zookeeper.h>

#include "canceltoken_zk.h"
#include "../remote/address.h"
#include "../remote/proxy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define ZKH __attribute__((visibility("hidden")))

/* Child nodes of a token node.  Names parts starting with '@' are refused,
 * so no token path can collide with them. */
#define ZK_OWNER_CHILD "/@owner"
#define ZK_TRIGGER_CHILD "/@trigger"

/* A node's data is at most this long (the formats in record.c). */
#define ZK_DATA_MAX 4096

/* A trigger record, as stored in the @trigger node. */
struct zk_trig {
  int reason;
  int detail;
  long long pid;
  uint64_t nonce; /* one per client and token: recognises our own create */
  char host[256];
  char origin[256];
  char cause[CT_ZK_NAME_MAX + 1];
};

struct zk_rec;
struct ct_zk_client;

/* One proxy: the shared proxy layer's record plus our links. */
struct zk_px {
  struct ct_proxy p; /* first: forward() gets &p and casts back */
  struct zk_px *next;
  struct zk_rec *rec;
};

/* One token path this client knows, as owner, as proxy holder, or both. */
struct zk_rec {
  struct zk_rec *next;
  struct ct_zk_client *c;
  char *name;  /* normalised: no leading '/' */
  char *path;  /* chroot + '/' + name */
  char *opath; /* path + ZK_OWNER_CHILD */
  char *tpath; /* path + ZK_TRIGGER_CHILD */
  char *tok_name; /* the owner's token name (the proxies' name) */
  struct zk_px *px; /* proxies, newest first (see "Lists only grow") */
  /* Published by this client: the owner's token, our hook on it, and
   * whether the trigger being applied to it comes from the record. */
  ct_token *owned;
  ct_callback owned_cb;
  _Atomic bool owned_remote;
  /* Under mu: */
  bool fired;           /* trig holds the recorded trigger */
  struct zk_trig trig;
  bool check_pending;   /* the client's thread must re-read the record */
  bool trig_created;    /* a watch said @trigger was created: read it
                           at once, without an exists first */
  bool fwd_pending;     /* a local trigger waits to be written */
  bool fwd_done;        /* a local trigger was taken for writing */
  bool owner_lost_pending; /* our session that owned it expired */
  int fwd_reason, fwd_detail;
  /* The nonce of every trigger record this client writes for this token
   * (set once, before the record is published; read-only after): a record
   * holding it is this client's, whichever of its attempts created it. */
  uint64_t my_nonce;
  bool ours;            /* under mu: the recorded trigger holds my_nonce */
  bool win_told;        /* under mu: a zk_rec_write() returned 1 for it */
  char fwd_cause[CT_ZK_NAME_MAX + 1];
  int64_t not_before;   /* retry pending work no sooner than this */
};

struct ct_zk_client {
  struct ct_addr addr;
  ct_zk_options opts;
  char *auth;           /* "user:password" or NULL */
  char host[256];
  char origin[256];
  long long pid;
  int64_t asked_timeout_ms; /* after the client-side clamp */
  _Atomic int64_t session_timeout_ns; /* negotiated; relaxed: a figure */
  int64_t unreachable_ns;   /* 0: never */

  pthread_rwlock_t hlock;
  zhandle_t *zh;        /* under hlock */
  _Atomic int64_t session_id; /* of zh; relaxed: compared with ephemeralOwner */

  pthread_mutex_t opmu; /* completion fields of pending requests */
  pthread_cond_t opcv;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct zk_rec *recs;  /* newest first; see "Lists only grow" */
  bool stop;
  bool connected;       /* the current handle is connected */
  bool ever_connected;  /* the current handle has been connected */
  bool expired;         /* the current handle's session expired */
  bool recheck_all;     /* reconnected: re-read every record */
  int64_t down_since;   /* when the connection was lost (0: connected) */
  bool unreach_fired;   /* the tolerance ran out during this outage */
  bool have_thread;
  pthread_t thread;

  /* Counters (relaxed: monitoring figures, no ordering with anything). */
  _Atomic uint64_t n_sessions, n_reconnects, n_retries, n_won, n_unreach;
};

/* --- session.c --- */
ZKH void zk_log(struct ct_zk_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ZKH bool zk_on_client_thread(struct ct_zk_client *c);
ZKH void zk_kick(struct ct_zk_client *c); /* signal cv; caller holds mu */

/* --- ops.c: one request, waited for until the deadline --- */
struct zk_result {
  int zrc;                  /* ZooKeeper's code (ZOK, ZNONODE, ...) */
  struct Stat stat;
  int len;                  /* data length, -1 for none */
  char data[ZK_DATA_MAX + 1]; /* NUL-terminated copy */
  /* zk_op_children: the names, each NUL-terminated, one after another;
   * malloc'd, the caller frees it (NULL when none or out of memory,
   * then nkids is -1 for the latter). */
  char *kids;
  int nkids;
};
/* Each returns 0 when the request completed (its code is in r->zrc), or
 * -ETIMEDOUT (deadline), -ECONNRESET (no usable handle now), -ENOMEM. */
ZKH int zk_op_exists(struct ct_zk_client *c, const char *path, bool watch,
                     struct zk_result *r, int64_t deadline);
ZKH int zk_op_get(struct ct_zk_client *c, const char *path,
                  struct zk_result *r, int64_t deadline);
ZKH int zk_op_create(struct ct_zk_client *c, const char *path,
                     const char *data, int len, int flags,
                     struct zk_result *r, int64_t deadline);
ZKH int zk_op_children(struct ct_zk_client *c, const char *path,
                       struct zk_result *r, int64_t deadline);
/* Create two nodes atomically (zoo_amulti): the token node and its owner. */
ZKH int zk_op_create2(struct ct_zk_client *c, const char *p1, const char *d1,
                      int l1, int f1, const char *p2, const char *d2, int l2,
                      int f2, struct zk_result *r, int64_t deadline);
/* ZooKeeper code to a negative errno. */
ZKH int zk_errno(int zrc);
/* Is this code worth retrying on the same or a later session? */
ZKH bool zk_retryable(int zrc);
/* Sleep until min(now + ns, deadline); false if the deadline passed. */
ZKH bool zk_backoff(struct ct_zk_client *c, int64_t ns, int64_t deadline);

/* --- record.c --- */
ZKH int zk_name_check(const char *name, const char **norm);
/* s[0..n) (a token name, or a chroot without its leading '/') as
 * ZooKeeper's own path rules and ours allow: 0, -EINVAL, or -ENAMETOOLONG
 * (a part over 255 bytes, token names only).  token: parts may not start
 * with '@'. */
ZKH int zk_path_check(const char *s, size_t n, bool token);
ZKH int zk_trig_encode(const struct zk_trig *t, char *buf, size_t len);
ZKH int zk_trig_parse(struct zk_trig *t, const char *buf, int len);
ZKH int zk_token_encode(const char *tok_name, char *buf, size_t len);
ZKH int zk_token_parse(const char *buf, int len, char *name, size_t nlen);
ZKH int zk_owner_encode(struct ct_zk_client *c, char *buf, size_t len);
ZKH void zk_owner_parse(const char *buf, int len, char *host, size_t hlen,
                        long long *pid);
ZKH int zk_auth_load(const ct_zk_options *o, char **out, char *err,
                     size_t errlen);
ZKH uint64_t zk_nonce(void);
ZKH void zk_copy_cut(char *dst, size_t cap, const char *src);

/* --- token.c, shared with query.c --- */
/* Back off after a lost connection: 0, or -ETIMEDOUT (deadline passed),
 * -ECONNRESET (stopping, or the client's thread must attend to the
 * session). */
ZKH int zk_retry_wait(struct ct_zk_client *c, int64_t deadline);
/* zk_op_get retried across lost connections until the deadline. */
ZKH int zk_get_retry(struct ct_zk_client *c, const char *path,
                     struct zk_result *r, int64_t deadline);
/* a + b + d, malloc'd (NULL: out of memory). */
ZKH char *zk_cat(const char *a, const char *b, const char *d);
/* -EINVAL (NULL c, bad deadline), -EDEADLK (the client's thread), or 0. */
ZKH int zk_common_checks(struct ct_zk_client *c, int64_t deadline);

/* --- token.c, used by the client's thread --- */
/* Re-read rec's record (arming the watches) and apply it.  0 or an error
 * (retryable ones leave rec to be retried). */
ZKH int zk_rec_check(struct ct_zk_client *c, struct zk_rec *rec,
                     int64_t deadline);
/* Write a trigger (first-wins), learn the winner, apply it.  Returns 1
 * (ours won), 0 (another), or a negative errno. */
ZKH int zk_rec_write(struct ct_zk_client *c, struct zk_rec *rec, int reason,
                     int detail, const char *cause, int64_t deadline);
/* Trigger every proxy of every record locally with `reason`. */
ZKH void zk_lose_all(struct ct_zk_client *c, ct_reason reason);
ZKH void zk_rec_free_all(struct ct_zk_client *c);

#endif /* CT_ZK_INTERNAL_H */
