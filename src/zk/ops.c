/* SPDX-License-Identifier: MIT
 *
 * ops.c -- ZooKeeper requests that honour a deadline.  The library's
 * synchronous calls wait as long as the library likes (and deadlock on its
 * completion thread); these issue the asynchronous call and wait for its
 * completion on a condition variable until the caller's deadline.
 *
 * Design notes:
 *
 *  A request outlives a caller that gave up.  Each pending request is a
 *  heap block with two references, the caller's and the completion's; the
 *  last one to let go (both under c->opmu) frees it.  So a caller that
 *  times out returns at once and the completion, when it comes (it always
 *  does: with the answer, or with ZCONNECTIONLOSS/ZCLOSING when the handle
 *  drops or is closed), writes into a block that still exists.
 *
 *  The handle is read under c->hlock (shared) only while the call is
 *  issued; the client's thread takes it exclusively to replace the handle.
 *  A NULL handle (being replaced) is -ECONNRESET, which callers retry.
 */
#include "zk_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct zk_req {
  int refs; /* under opmu */
  bool done;
  struct zk_result res;
  /* zoo_amulti's operations and results must live until it completes. */
  zoo_op_t ops[2];
  zoo_op_result_t mres[2];
};

int zk_errno(int zrc) {
  switch (zrc) {
  case ZOK:
    return 0;
  case ZNONODE:
    return -ENOENT;
  case ZNODEEXISTS:
    return -EEXIST;
  case ZNOAUTH:
  case ZAUTHFAILED:
  case ZINVALIDACL:
    return -EACCES;
  case ZBADARGUMENTS:
    return -EINVAL;
  case ZCONNECTIONLOSS:
  case ZOPERATIONTIMEOUT:
  case ZSESSIONEXPIRED:
  case ZSESSIONMOVED:
  case ZINVALIDSTATE:
  case ZCLOSING:
  case ZTHROTTLEDOP:
    return -ECONNRESET;
  case ZMARSHALLINGERROR:
  case ZSYSTEMERROR:
    return -ENOMEM;
  default:
    return -EPROTO;
  }
}

bool zk_retryable(int zrc) { return zk_errno(zrc) == -ECONNRESET; }

static void timespec_at(struct timespec *ts, int64_t deadline) {
  ts->tv_sec = (time_t)(deadline / 1000000000);
  ts->tv_nsec = (long)(deadline % 1000000000);
}

bool zk_backoff(struct ct_zk_client *c, int64_t ns, int64_t deadline) {
  int64_t now = ct_now();
  if (deadline >= 0 && now >= deadline)
    return false;
  int64_t until = now + ns;
  if (deadline >= 0 && deadline < until)
    until = deadline;
  struct timespec ts;
  timespec_at(&ts, until);
  pthread_mutex_lock(&c->mu);
  /* Woken early only by a stop; either way the caller re-checks. */
  /* The client's thread also gives up on an expired session, which only
   * it can replace, and on a lost connection, so that it keeps counting
   * the unreachable tolerance (other callers wait until their deadline). */
  bool mine = zk_on_client_thread(c);
  while (!c->stop && !(mine && (c->expired || !c->connected)) &&
         ct_now() < until)
    if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT)
      break;
  bool stop = c->stop || (mine && (c->expired || !c->connected));
  pthread_mutex_unlock(&c->mu);
  atomic_fetch_add_explicit(&c->n_retries, 1, memory_order_relaxed);
  return !stop;
}

static struct zk_req *req_new(void) {
  struct zk_req *q = calloc(1, sizeof *q);
  if (q) {
    q->refs = 2;
    q->res.len = -1;
  }
  return q;
}

/* Drop one reference; opmu held. */
static void req_put_locked(struct zk_req *q) {
  if (--q->refs == 0) {
    free(q->res.kids); /* NULL unless a caller gave up on a listing */
    free(q);
  }
}

static void req_complete(struct ct_zk_client *c, struct zk_req *q, int zrc,
                         const struct Stat *st, const char *data, int len) {
  pthread_mutex_lock(&c->opmu);
  q->res.zrc = zrc;
  if (st)
    q->res.stat = *st;
  if (data && len >= 0) {
    if (len > ZK_DATA_MAX)
      len = ZK_DATA_MAX; /* our formats are shorter; a foreign node is cut */
    memcpy(q->res.data, data, (size_t)len);
    q->res.data[len] = '\0';
    q->res.len = len;
  }
  q->done = true;
  pthread_cond_broadcast(&c->opcv);
  req_put_locked(q);
  pthread_mutex_unlock(&c->opmu);
}

/* The completions get (c, q) through a small pair. */
struct zk_pair {
  struct ct_zk_client *c;
  struct zk_req *q;
};

static void stat_done(int rc, const struct Stat *st, const void *data) {
  struct zk_pair *pr = (struct zk_pair *)data;
  req_complete(pr->c, pr->q, rc, rc == ZOK ? st : NULL, NULL, -1);
  free(pr);
}

static void data_done(int rc, const char *value, int len,
                      const struct Stat *st, const void *data) {
  struct zk_pair *pr = (struct zk_pair *)data;
  req_complete(pr->c, pr->q, rc, rc == ZOK ? st : NULL,
               rc == ZOK ? value : NULL, rc == ZOK ? len : -1);
  free(pr);
}

static void string_done(int rc, const char *value, const void *data) {
  (void)value;
  struct zk_pair *pr = (struct zk_pair *)data;
  req_complete(pr->c, pr->q, rc, NULL, NULL, -1);
  free(pr);
}

static void children_done(int rc, const struct String_vector *sv,
                          const void *data) {
  struct zk_pair *pr = (struct zk_pair *)data;
  char *kids = NULL;
  int n = 0;
  if (rc == ZOK && sv && sv->count > 0) {
    size_t total = 0;
    for (int i = 0; i < sv->count; i++)
      total += strlen(sv->data[i]) + 1;
    kids = malloc(total);
    if (kids) {
      char *p = kids;
      for (int i = 0; i < sv->count; i++) {
        size_t l = strlen(sv->data[i]) + 1;
        memcpy(p, sv->data[i], l);
        p += l;
      }
      n = sv->count;
    } else {
      n = -1;
    }
  }
  pthread_mutex_lock(&pr->c->opmu);
  pr->q->res.kids = kids;
  pr->q->res.nkids = n;
  pthread_mutex_unlock(&pr->c->opmu);
  req_complete(pr->c, pr->q, rc, NULL, NULL, -1);
  free(pr);
}

static void multi_done(int rc, const void *data) {
  struct zk_pair *pr = (struct zk_pair *)data;
  /* A failed multi reports ZRUNTIMEINCONSISTENCY for the operations after
   * the one that failed; report the first real error. */
  int zrc = rc;
  if (rc != ZOK)
    for (int i = 0; i < 2; i++)
      if (pr->q->mres[i].err != ZOK &&
          pr->q->mres[i].err != ZRUNTIMEINCONSISTENCY) {
        zrc = pr->q->mres[i].err;
        break;
      }
  req_complete(pr->c, pr->q, zrc, NULL, NULL, -1);
  free(pr);
}

/* The watcher given to every watched request (session.c). */
void zk_watcher(zhandle_t *zh, int type, int state, const char *path,
                void *ctx);

enum op_kind { OP_EXISTS, OP_EXISTS_W, OP_GET, OP_CREATE, OP_MULTI,
               OP_CHILDREN };

struct op_args {
  enum op_kind kind;
  const char *path;
  const char *data;
  int len;
  int flags;
  const char *p2;
  const char *d2;
  int l2;
  int f2;
};

static int run(struct ct_zk_client *c, const struct op_args *a,
               struct zk_result *r, int64_t deadline) {
  struct zk_req *q = req_new();
  struct zk_pair *pr = malloc(sizeof *pr);
  if (!q || !pr) {
    free(q);
    free(pr);
    return -ENOMEM;
  }
  pr->c = c;
  pr->q = q;
  pthread_rwlock_rdlock(&c->hlock);
  zhandle_t *zh = c->zh;
  /* With credentials: full rights for the holders of the same ones
   * ("auth" = every identity this session authenticated as), read for
   * anybody, so that proxies need no credentials to watch.  Constant data:
   * the library only reads it. */
  static struct ACL auth_acl[2] = {
      {0x1f /* ZOO_PERM_ALL */, {(char *)"auth", (char *)""}},
      {0x01 /* ZOO_PERM_READ */, {(char *)"world", (char *)"anyone"}}};
  static struct ACL_vector auth_vec = {2, auth_acl};
  struct ACL_vector *acl = c->auth ? &auth_vec : &ZOO_OPEN_ACL_UNSAFE;
  int zrc = ZINVALIDSTATE;
  if (zh) {
    switch (a->kind) {
    case OP_EXISTS:
    case OP_EXISTS_W:
      zrc = zoo_awexists(zh, a->path, a->kind == OP_EXISTS_W ? zk_watcher : NULL,
                         c, stat_done, pr);
      break;
    case OP_GET:
      zrc = zoo_aget(zh, a->path, 0, data_done, pr);
      break;
    case OP_CHILDREN:
      zrc = zoo_aget_children(zh, a->path, 0, children_done, pr);
      break;
    case OP_CREATE:
      zrc = zoo_acreate(zh, a->path, a->data, a->len, acl, a->flags,
                        string_done, pr);
      break;
    case OP_MULTI:
      zoo_create_op_init(&q->ops[0], a->path, a->data, a->len, acl, a->flags,
                         NULL, 0);
      zoo_create_op_init(&q->ops[1], a->p2, a->d2, a->l2, acl, a->f2, NULL,
                         0);
      zrc = zoo_amulti(zh, 2, q->ops, q->mres, multi_done, pr);
      break;
    }
  }
  pthread_rwlock_unlock(&c->hlock);
  if (zrc != ZOK) {
    /* Not issued: the completion will never run. */
    free(q);
    free(pr);
    if (zk_retryable(zrc) || zrc == ZINVALIDSTATE)
      return -ECONNRESET;
    r->zrc = zrc;
    r->len = -1;
    return 0;
  }
  struct timespec ts;
  if (deadline >= 0)
    timespec_at(&ts, deadline);
  int rc = 0;
  pthread_mutex_lock(&c->opmu);
  while (!q->done) {
    if (deadline < 0) {
      pthread_cond_wait(&c->opcv, &c->opmu);
    } else if (pthread_cond_timedwait(&c->opcv, &c->opmu, &ts) == ETIMEDOUT &&
               !q->done) {
      rc = -ETIMEDOUT;
      break;
    }
  }
  if (rc == 0) {
    memcpy(r, &q->res, sizeof *r);
    q->res.kids = NULL; /* now the caller's */
  }
  req_put_locked(q);
  pthread_mutex_unlock(&c->opmu);
  return rc;
}

int zk_op_exists(struct ct_zk_client *c, const char *path, bool watch,
                 struct zk_result *r, int64_t deadline) {
  struct op_args a = {.kind = watch ? OP_EXISTS_W : OP_EXISTS, .path = path};
  return run(c, &a, r, deadline);
}

int zk_op_get(struct ct_zk_client *c, const char *path, struct zk_result *r,
              int64_t deadline) {
  struct op_args a = {.kind = OP_GET, .path = path};
  return run(c, &a, r, deadline);
}

int zk_op_create(struct ct_zk_client *c, const char *path, const char *data,
                 int len, int flags, struct zk_result *r, int64_t deadline) {
  struct op_args a = {
      .kind = OP_CREATE, .path = path, .data = data, .len = len,
      .flags = flags};
  return run(c, &a, r, deadline);
}

int zk_op_create2(struct ct_zk_client *c, const char *p1, const char *d1,
                  int l1, int f1, const char *p2, const char *d2, int l2,
                  int f2, struct zk_result *r, int64_t deadline) {
  struct op_args a = {.kind = OP_MULTI, .path = p1, .data = d1, .len = l1,
                      .flags = f1, .p2 = p2, .d2 = d2, .l2 = l2, .f2 = f2};
  return run(c, &a, r, deadline);
}

int zk_op_children(struct ct_zk_client *c, const char *path,
                   struct zk_result *r, int64_t deadline) {
  struct op_args a = {.kind = OP_CHILDREN, .path = path};
  r->kids = NULL;
  r->nkids = 0;
  return run(c, &a, r, deadline);
}
