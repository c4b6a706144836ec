/* SPDX-License-Identifier: MIT
 *
 * token.c -- tokens in the ensemble: publishing an owner's token, proxies
 * attached by path, the first-wins trigger record and how it is applied.
 *
 * Node layout (under the chroot, for the token "jobs/1234"):
 *   /jobs                 persistent parent, created by the owner if missing
 *   /jobs/1234            the token node, persistent, "ct-token/1" data
 *   /jobs/1234/@owner     ephemeral: lives as long as the owner's session
 *   /jobs/1234/@trigger   persistent: THE trigger record, created once
 *
 * Design notes:
 *
 *  Who arbitrates.  The ensemble: exactly one create of @trigger succeeds.
 *  Every writer (an owner's local trigger, a proxy's, ct_zk_trigger(), a
 *  client that saw @owner vanish) creates it; whoever gets ZNODEEXISTS
 *  reads it instead.  Everybody then applies what they read, never what
 *  they wrote, except the one writer whose create succeeded.
 *
 *  Retries.  A create that fails with a lost connection, or whose
 *  deadline passed first, may or may not have been applied.  Every record
 *  this client writes for a token carries the same nonce (rec->my_nonce,
 *  random, one per client and token), so whoever reads the record later
 *  (a retry that finds the node, a watch, a later ct_zk_trigger()) knows
 *  whether it is this client's: rec_set() counts it in records_won, and
 *  rec_claim() hands "won" (1) to the first zk_rec_write() that asks.  So
 *  "won" is reported at most once across the fleet, and no trigger is
 *  reported twice or lost.
 *
 *  What is written.  An owner's token is written with whatever reason it
 *  fired with, backend-only ones included (it fired because its parent, a
 *  proxy, lost its owner or the ensemble: the fleet must learn that it
 *  fired).  A proxy's own backend-only triggers stay local (the proxy
 *  layer does not forward them): they are this client's view, not news
 *  about the token.
 *
 *  Applying.  rec->trig is set once (under c->mu) from the ensemble; then
 *  every proxy of the record is fired through the shared proxy layer
 *  (ct_proxy_fire, idempotent) and the owner's token, if we published it,
 *  is triggered with owned_remote set so our hook does not write it back.
 *  Applying runs user callbacks, so it happens with no lock held, on the
 *  thread that learned the record (the client's thread, or the caller of
 *  ct_zk_get()/ct_zk_trigger()).
 *
 *  Local triggers.  The proxy layer calls zk_forward() (any thread, inside
 *  a token callback): it only marks the record (fwd_pending, under mu) and
 *  wakes the client's thread, which writes it.  The owner's token gets the
 *  same treatment through owned_fired().  One forward per record: the
 *  first local trigger is the only one that can matter.
 */
#include "zk_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_NS 50000000

/* --- requests retried across lost connections, until the deadline --- */

int zk_retry_wait(struct ct_zk_client *c, int64_t deadline) {
  if (!zk_backoff(c, RETRY_NS, deadline))
    return (deadline >= 0 && ct_now() >= deadline) ? -ETIMEDOUT
                                                    : -ECONNRESET;
  return 0;
}

int zk_get_retry(struct ct_zk_client *c, const char *path,
                 struct zk_result *r, int64_t deadline) {
  for (;;) {
    int rc = zk_op_get(c, path, r, deadline);
    if (rc == 0 && !zk_retryable(r->zrc))
      return 0;
    if (rc < 0 && rc != -ECONNRESET)
      return rc;
    if ((rc = zk_retry_wait(c, deadline)) < 0)
      return rc;
  }
}

static int exists_retry(struct ct_zk_client *c, const char *path, bool watch,
                        struct zk_result *r, int64_t deadline) {
  for (;;) {
    int rc = zk_op_exists(c, path, watch, r, deadline);
    if (rc == 0 && !zk_retryable(r->zrc))
      return 0;
    if (rc < 0 && rc != -ECONNRESET)
      return rc;
    if ((rc = zk_retry_wait(c, deadline)) < 0)
      return rc;
  }
}

/* --- records --- */

char *zk_cat(const char *a, const char *b, const char *d) {
  size_t la = strlen(a), lb = strlen(b), ld = strlen(d);
  char *s = malloc(la + lb + ld + 1);
  if (s) {
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, d, ld + 1);
  }
  return s;
}

static void rec_free(struct zk_rec *r) {
  free(r->name);
  free(r->path);
  free(r->opath);
  free(r->tpath);
  free(r->tok_name);
  free(r);
}

/* The record of `name`, created with tok_name if new.  Returns it, or NULL
 * (out of memory). */
static struct zk_rec *rec_get(struct ct_zk_client *c, const char *name,
                              const char *tok_name) {
  pthread_mutex_lock(&c->mu);
  for (struct zk_rec *r = c->recs; r; r = r->next)
    if (strcmp(r->name, name) == 0) {
      pthread_mutex_unlock(&c->mu);
      return r;
    }
  pthread_mutex_unlock(&c->mu);
  struct zk_rec *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->c = c;
  n->name = strdup(name);
  n->path = zk_cat(c->addr.zk_chroot, "/", name);
  n->opath = n->path ? zk_cat(n->path, ZK_OWNER_CHILD, "") : NULL;
  n->tpath = n->path ? zk_cat(n->path, ZK_TRIGGER_CHILD, "") : NULL;
  n->tok_name = strdup(tok_name);
  n->my_nonce = zk_nonce();
  atomic_init(&n->owned_remote, false);
  if (!n->name || !n->path || !n->opath || !n->tpath || !n->tok_name) {
    rec_free(n);
    return NULL;
  }
  pthread_mutex_lock(&c->mu);
  for (struct zk_rec *r = c->recs; r; r = r->next)
    if (strcmp(r->name, name) == 0) { /* another thread was quicker */
      pthread_mutex_unlock(&c->mu);
      rec_free(n);
      return r;
    }
  n->next = c->recs; /* written before the node is published */
  c->recs = n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* Apply rec's recorded trigger to its proxies and owned token. */
static void rec_apply(struct ct_zk_client *c, struct zk_rec *rec) {
  /* A copy: callbacks run below may re-enter (a callback may ct_zk_get()
   * on a user thread), and rec->trig must not be read without mu. */
  int reason, detail;
  char *cause = malloc(CT_ZK_NAME_MAX + 1);
  pthread_mutex_lock(&c->mu);
  if (!rec->fired) {
    pthread_mutex_unlock(&c->mu);
    free(cause);
    return;
  }
  reason = rec->trig.reason;
  detail = rec->trig.detail;
  if (cause)
    memcpy(cause, rec->trig.cause, CT_ZK_NAME_MAX + 1);
  struct zk_px *px = rec->px;
  ct_token *owned = rec->owned;
  pthread_mutex_unlock(&c->mu);
  size_t cl = cause ? strlen(cause) : 0; /* no memory: no stand-in name */
  for (; px; px = px->next)
    ct_proxy_fire(&px->p, (ct_reason)reason, detail, cause, cl);
  free(cause);
  if (owned && !ct_token_triggered(owned)) {
    /* release: our hook on the owned token reads it with acquire inside
     * the trigger below, and then does not write the record back */
    atomic_store_explicit(&rec->owned_remote, true, memory_order_release);
    ct_token_trigger_reason(owned, (ct_reason)reason, detail);
  }
}

/* Set rec's trigger from the ensemble (first call wins; later ones agree
 * with it anyway, since the node is written once). */
static void rec_set(struct ct_zk_client *c, struct zk_rec *rec,
                    const struct zk_trig *t) {
  pthread_mutex_lock(&c->mu);
  if (!rec->fired) {
    rec->trig = *t;
    rec->fired = true;
    if (t->nonce == rec->my_nonce) { /* one of this client's attempts */
      rec->ours = true;
      atomic_fetch_add_explicit(&c->n_won, 1, memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&c->mu);
}

/* 1 for the first caller to learn that the recorded trigger is this
 * client's (so that "won" is reported at most once, even when the attempt
 * that created it returned -ETIMEDOUT), else 0. */
static int rec_claim(struct ct_zk_client *c, struct zk_rec *rec) {
  pthread_mutex_lock(&c->mu);
  int won = rec->fired && rec->ours && !rec->win_told;
  if (won)
    rec->win_told = true;
  pthread_mutex_unlock(&c->mu);
  return won;
}

/* Read @trigger and apply it.  1: applied; 0: no record (after all). */
static int rec_read(struct ct_zk_client *c, struct zk_rec *rec,
                    struct zk_trig *t, int64_t deadline) {
  struct zk_result *r = malloc(sizeof *r);
  if (!r)
    return -ENOMEM;
  int rc = zk_get_retry(c, rec->tpath, r, deadline);
  if (rc == 0) {
    if (r->zrc == ZNONODE)
      rc = 0;
    else if (r->zrc != ZOK)
      rc = zk_errno(r->zrc);
    else if ((rc = zk_trig_parse(t, r->data, r->len)) == 0)
      rc = 1;
  }
  free(r);
  if (rc == 1) {
    rec_set(c, rec, t);
    rec_apply(c, rec);
  }
  return rc;
}

static bool rec_fired(struct ct_zk_client *c, struct zk_rec *rec) {
  pthread_mutex_lock(&c->mu);
  bool f = rec->fired;
  pthread_mutex_unlock(&c->mu);
  return f;
}

static void lose_rec(struct zk_rec *rec, ct_reason reason) {
  struct ct_zk_client *c = rec->c;
  pthread_mutex_lock(&c->mu);
  struct zk_px *px = rec->px;
  pthread_mutex_unlock(&c->mu);
  for (; px; px = px->next)
    ct_proxy_lose(&px->p, reason);
}

int zk_rec_write(struct ct_zk_client *c, struct zk_rec *rec, int reason,
                 int detail, const char *cause, int64_t deadline) {
  if (rec_fired(c, rec)) {
    rec_apply(c, rec);
    return rec_claim(c, rec);
  }
  struct zk_trig *t = calloc(2, sizeof *t);
  char *buf = malloc(ZK_DATA_MAX);
  struct zk_result *r = malloc(sizeof *r);
  int rc = -ENOMEM;
  if (!t || !buf || !r)
    goto out;
  t->reason = reason;
  t->detail = detail;
  t->pid = c->pid;
  t->nonce = rec->my_nonce; /* the same for every attempt: see rec_claim */
  memcpy(t->host, c->host, sizeof t->host);
  memcpy(t->origin, c->origin, sizeof t->origin);
  zk_copy_cut(t->cause, sizeof t->cause, cause ? cause : "");
  int n = zk_trig_encode(t, buf, ZK_DATA_MAX);
  if (n < 0) {
    rc = n;
    goto out;
  }
  for (;;) {
    rc = zk_op_create(c, rec->tpath, buf, n, ZOO_PERSISTENT, r, deadline);
    if (rc == 0 && r->zrc == ZOK) {
      rec_set(c, rec, t); /* counts it in records_won */
      rec_apply(c, rec);
      rc = rec_claim(c, rec);
      break;
    }
    if (rc == 0 && r->zrc == ZNODEEXISTS) {
      /* Somebody's record -- perhaps our own earlier attempt. */
      rc = rec_read(c, rec, &t[1], deadline);
      if (rc == 1) /* ours (an earlier attempt, before the connection
                    * dropped or the deadline passed) or another's */
        rc = rec_claim(c, rec);
      else if (rc == 0)
        rc = -EPROTO; /* it existed and then did not: removed by hand */
      break;
    }
    if (rc == 0 && !zk_retryable(r->zrc)) {
      rc = zk_errno(r->zrc); /* ZNONODE: the token node is gone */
      break;
    }
    if (rc < 0 && rc != -ECONNRESET)
      break;
    if ((rc = zk_retry_wait(c, deadline)) < 0)
      break;
  }
out:
  free(t);
  free(buf);
  free(r);
  return rc;
}

int zk_rec_check(struct ct_zk_client *c, struct zk_rec *rec,
                 int64_t deadline) {
  if (rec_fired(c, rec)) {
    rec_apply(c, rec); /* for proxies attached since */
    return 0;
  }
  struct zk_result *r = malloc(sizeof *r);
  struct zk_trig *t = malloc(sizeof *t);
  int rc = -ENOMEM;
  if (!r || !t)
    goto out;
  /* Woken by the creation of @trigger: read it straight away (the usual
   * path of a trigger, one round trip instead of two).  The record never
   * changes once written, so no watch is needed on it any more. */
  pthread_mutex_lock(&c->mu);
  bool created = rec->trig_created;
  rec->trig_created = false;
  pthread_mutex_unlock(&c->mu);
  if (created) {
    rc = rec_read(c, rec, t, deadline);
    if (rc != 0) { /* applied (1), or an error to retry */
      if (rc < 0) {
        pthread_mutex_lock(&c->mu);
        rec->trig_created = true;
        pthread_mutex_unlock(&c->mu);
      }
      rc = rc < 0 ? rc : 0;
      goto out;
    }
  }
  for (int round = 0; round < 3; round++) {
    /* Arms a watch on @trigger whether or not it exists. */
    rc = exists_retry(c, rec->tpath, true, r, deadline);
    if (rc < 0)
      break;
    if (r->zrc == ZOK) {
      rc = rec_read(c, rec, t, deadline);
      if (rc == 0)
        continue; /* vanished between exists and get: look again */
      rc = rc < 0 ? rc : 0;
      break;
    }
    if (r->zrc != ZNONODE) {
      rc = zk_errno(r->zrc);
      break;
    }
    rc = 0;
    if (rec->owned)
      break; /* our own @owner: it lives as long as our session */
    rc = exists_retry(c, rec->opath, true, r, deadline);
    if (rc < 0 || r->zrc == ZOK)
      break;
    if (r->zrc != ZNONODE) {
      rc = zk_errno(r->zrc);
      break;
    }
    /* The owner's session has ended and nothing is recorded: record
     * "owner lost", first-wins (a trigger recorded meanwhile wins). */
    rc = zk_rec_write(c, rec, CT_REASON_OWNER_LOST, 0, rec->tok_name,
                      deadline);
    if (rc == -EACCES) {
      /* An ACL'd token and no (or other) credentials: we cannot record
       * it, but the owner is gone all the same. */
      lose_rec(rec, CT_REASON_OWNER_LOST);
      rc = 0;
    }
    rc = rc < 0 ? rc : 0;
    break;
  }
out:
  free(r);
  free(t);
  return rc;
}

void zk_lose_all(struct ct_zk_client *c, ct_reason reason) {
  pthread_mutex_lock(&c->mu);
  struct zk_rec *rec = c->recs;
  pthread_mutex_unlock(&c->mu);
  for (; rec; rec = rec->next)
    lose_rec(rec, reason);
}

void zk_rec_free_all(struct ct_zk_client *c) {
  struct zk_rec *rec = c->recs;
  c->recs = NULL;
  while (rec) {
    struct zk_rec *next = rec->next;
    struct zk_px *px = rec->px;
    while (px) {
      struct zk_px *pn = px->next;
      ct_proxy_fini(&px->p);
      free(px);
      px = pn;
    }
    if (rec->owned) {
      ct_callback_unregister(&rec->owned_cb);
      ct_token_unref(rec->owned);
    }
    rec_free(rec);
    rec = next;
  }
}

/* --- local triggers --- */

static void queue_forward(struct zk_rec *rec, ct_reason reason, int detail,
                          const char *cause) {
  struct ct_zk_client *c = rec->c;
  pthread_mutex_lock(&c->mu);
  if (!rec->fired && !rec->fwd_done) {
    rec->fwd_done = true;
    rec->fwd_pending = true;
    rec->fwd_reason = (int)reason;
    rec->fwd_detail = detail;
    zk_copy_cut(rec->fwd_cause, sizeof rec->fwd_cause, cause ? cause : "");
    rec->not_before = 0;
    zk_kick(c);
  }
  pthread_mutex_unlock(&c->mu);
}

/* The shared proxy layer's forward hook (any thread, in a callback). */
static void zk_forward(struct ct_proxy *p, ct_reason reason, int detail) {
  struct zk_px *px = (struct zk_px *)(void *)p; /* p is px's first member */
  queue_forward(px->rec, reason, detail, ct_token_name(p->tok));
}

/* Our hook on a published token. */
static void owned_fired(ct_token *t, void *arg) {
  struct zk_rec *rec = arg;
  /* acquire: pairs with the release store in rec_apply() */
  if (atomic_load_explicit(&rec->owned_remote, memory_order_acquire))
    return;
  /* Every local trigger of a published token is recorded as it is, with
   * a backend-only reason too (owner lost, unreachable, shutdown: t is the
   * child of a proxy that fired with it, or the application gave it):
   * the token really fired, and dropping it would leave the fleet waiting
   * on a token its owner holds triggered.  The cause names the token that
   * fired (that parent), so proxies report it as triggered_token. */
  int detail = 0;
  ct_reason reason = ct_token_reason(t, &detail);
  if (reason == CT_REASON_NONE)
    reason = CT_REASON_TRIGGER;
  queue_forward(rec, reason, detail,
                ct_token_name(ct_token_triggered_token(t)));
}

/* --- public --- */

int zk_common_checks(struct ct_zk_client *c, int64_t deadline) {
  if (!c || deadline < -1)
    return -EINVAL;
  if (zk_on_client_thread(c))
    return -EDEADLK;
  return 0;
}

static int ensure_parents(struct ct_zk_client *c, const char *path,
                          int64_t deadline) {
  struct zk_result *r = malloc(sizeof *r);
  char *pre = strdup(path);
  int rc = (!r || !pre) ? -ENOMEM : 0;
  for (char *s = pre ? strchr(pre + 1, '/') : NULL; rc == 0 && s;
       s = strchr(s + 1, '/')) {
    *s = '\0';
    rc = exists_retry(c, pre, false, r, deadline);
    if (rc == 0 && r->zrc == ZNONODE) {
      for (;;) {
        rc = zk_op_create(c, pre, "", 0, ZOO_PERSISTENT, r, deadline);
        if (rc == 0 && zk_retryable(r->zrc))
          rc = -ECONNRESET;
        if (rc != -ECONNRESET || (rc = zk_retry_wait(c, deadline)) < 0)
          break;
      }
      if (rc == 0 && r->zrc != ZOK && r->zrc != ZNODEEXISTS)
        rc = zk_errno(r->zrc);
    } else if (rc == 0 && r->zrc != ZOK) {
      rc = zk_errno(r->zrc);
    }
    *s = '/';
  }
  free(pre);
  free(r);
  return rc;
}

int ct_zk_publish(ct_zk_client *c, const char *name, ct_token *t,
                  int64_t deadline) {
  int rc = zk_common_checks(c, deadline);
  if (rc < 0)
    return rc;
  const char *norm;
  if (!t || (rc = zk_name_check(name, &norm)) < 0)
    return t ? rc : -EINVAL;
  const char *tok_name = ct_token_name(t);
  if (!tok_name)
    return -ENOMEM;
  if (strlen(tok_name) > CT_ZK_NAME_MAX)
    return -ENAMETOOLONG;
  /* A failed publish must leave no trace in this client: the record of
   * `name` (which names the proxies that ct_zk_get() makes) is looked up
   * or made only once the nodes are ours. */
  bool taken = false;
  pthread_mutex_lock(&c->mu);
  for (struct zk_rec *x = c->recs; x; x = x->next)
    if (strcmp(x->name, norm) == 0)
      taken = x->owned != NULL;
  pthread_mutex_unlock(&c->mu);
  if (taken)
    return -EEXIST;
  char *path = zk_cat(c->addr.zk_chroot, "/", norm);
  char *opath = path ? zk_cat(path, ZK_OWNER_CHILD, "") : NULL;
  char *tdata = malloc(ZK_DATA_MAX), *odata = malloc(ZK_DATA_MAX);
  struct zk_result *r = malloc(sizeof *r);
  int tn = -ENOMEM, on = -ENOMEM;
  if (tdata && odata && r && path && opath) {
    tn = zk_token_encode(tok_name, tdata, ZK_DATA_MAX);
    on = zk_owner_encode(c, odata, ZK_DATA_MAX);
  }
  rc = tn < 0 ? tn : on < 0 ? on : 0;
  if (rc == 0)
    rc = ensure_parents(c, path, deadline);
  while (rc == 0) {
    rc = zk_op_create2(c, path, tdata, tn, ZOO_PERSISTENT, opath,
                       odata, on, ZOO_EPHEMERAL, r, deadline);
    if (rc == 0 && r->zrc == ZOK)
      break;
    if (rc == 0 && r->zrc == ZNODEEXISTS) {
      /* Ours, if an earlier attempt was applied before the connection
       * dropped: then @owner is an ephemeral of this very session. */
      rc = exists_retry(c, opath, false, r, deadline);
      if (rc == 0)
        rc = (r->zrc == ZOK &&
              r->stat.ephemeralOwner ==
                  atomic_load_explicit(&c->session_id, memory_order_relaxed))
                 ? 0
                 : -EEXIST;
      break;
    }
    if (rc == 0 && !zk_retryable(r->zrc)) {
      rc = zk_errno(r->zrc);
      break;
    }
    if (rc < 0 && rc != -ECONNRESET)
      break;
    rc = zk_retry_wait(c, deadline);
  }
  free(tdata);
  free(odata);
  free(r);
  free(path);
  free(opath);
  if (rc < 0)
    return rc;
  /* The nodes are ours.  A record made by an earlier ct_zk_get() of this
   * name keeps the token name it read from the node: the node we made
   * carries ours, and a record is only made from a node that existed. */
  struct zk_rec *rec = rec_get(c, norm, tok_name);
  if (!rec) {
    zk_log(c, "%s: published, but out of memory to follow it", norm);
    return -ENOMEM;
  }
  pthread_mutex_lock(&c->mu);
  if (rec->owned) { /* two publishes of one name raced in this process */
    pthread_mutex_unlock(&c->mu);
    return -EEXIST;
  }
  rec->owned = ct_token_ref(t);
  pthread_mutex_unlock(&c->mu);
  /* Runs owned_fired() at once if t is triggered already (it then queues
   * the forward).  -ENOMEM leaves t published without our hook: its local
   * triggers would not be written; say so rather than pretend. */
  rc = ct_callback_register(&rec->owned_cb, t, owned_fired, rec);
  if (rc < 0) {
    zk_log(c, "%s: published, but its local triggers cannot be forwarded "
              "(out of memory)", norm);
    return rc;
  }
  /* Arm the watch on @trigger; the client's thread retries on failure. */
  if (zk_rec_check(c, rec, deadline) < 0) {
    pthread_mutex_lock(&c->mu);
    rec->check_pending = true;
    zk_kick(c);
    pthread_mutex_unlock(&c->mu);
  }
  return 0;
}

int ct_zk_get(ct_zk_client *c, ct_token **out, const char *name,
              int64_t deadline) {
  int rc = zk_common_checks(c, deadline);
  if (rc < 0)
    return rc;
  if (!out)
    return -EINVAL;
  *out = NULL;
  const char *norm;
  if ((rc = zk_name_check(name, &norm)) < 0)
    return rc;
  char *path = zk_cat(c->addr.zk_chroot, "/", norm);
  struct zk_result *r = malloc(sizeof *r);
  char *tok_name = malloc(CT_ZK_NAME_MAX + 1);
  if (!path || !r || !tok_name) {
    rc = -ENOMEM;
    goto out;
  }
  rc = zk_get_retry(c, path, r, deadline);
  if (rc == 0 && r->zrc != ZOK)
    rc = zk_errno(r->zrc); /* ZNONODE: -ENOENT */
  if (rc == 0)
    rc = zk_token_parse(r->data, r->len, tok_name, CT_ZK_NAME_MAX + 1);
  if (rc < 0)
    goto out;
  struct zk_rec *rec = rec_get(c, norm, tok_name);
  struct zk_px *px = rec ? calloc(1, sizeof *px) : NULL;
  if (!px) {
    rc = -ENOMEM;
    goto out;
  }
  if ((rc = ct_proxy_init(&px->p, rec->tok_name, zk_forward)) < 0) {
    free(px);
    goto out;
  }
  px->rec = rec;
  pthread_mutex_lock(&c->mu);
  px->next = rec->px; /* written before the proxy is published */
  rec->px = px;
  pthread_mutex_unlock(&c->mu);
  /* Linked before the check, so a trigger recorded at any moment from now
   * on reaches it (through this check or the watch's). */
  rc = zk_rec_check(c, rec, deadline);
  if (rc < 0) {
    /* The proxy stays linked (never handed out); the thread retries. */
    pthread_mutex_lock(&c->mu);
    rec->check_pending = true;
    zk_kick(c);
    pthread_mutex_unlock(&c->mu);
    goto out;
  }
  *out = ct_token_ref(px->p.tok);
out:
  free(path);
  free(r);
  free(tok_name);
  return rc;
}

int ct_zk_trigger(ct_zk_client *c, ct_token *tok, ct_reason reason,
                  int detail, int64_t deadline) {
  int rc = zk_common_checks(c, deadline);
  if (rc < 0)
    return rc;
  if (!tok || !ct_proxy_reason_sendable(reason) || detail < 0 ||
      detail > 255)
    return -EINVAL;
  struct zk_rec *found = NULL;
  pthread_mutex_lock(&c->mu);
  for (struct zk_rec *rec = c->recs; rec && !found; rec = rec->next) {
    if (rec->owned == tok)
      found = rec;
    for (struct zk_px *px = rec->px; px && !found; px = px->next)
      if (px->p.tok == tok)
        found = rec;
  }
  pthread_mutex_unlock(&c->mu);
  if (!found)
    return -EINVAL;
  const char *cause = ct_token_name(tok);
  return zk_rec_write(c, found, (int)reason, detail, cause, deadline);
}
