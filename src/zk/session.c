/* SPDX-License-Identifier: MIT
 *
 * session.c -- the client: one ZooKeeper session and the client's thread
 * that keeps it useful through failures (lost connections, an expired
 * session, an unreachable ensemble).
 *
 * Design notes:
 *
 *  The watcher only records.  ZooKeeper calls zk_watcher() on its
 *  completion thread for session events and for node events.  It sets
 *  flags under c->mu (connected, expired, a record to re-read) and signals
 *  c->cv; the client's thread does the rest.  It never closes a handle:
 *  zookeeper_close() waits for the completion thread and would deadlock.
 *
 *  A lost connection within a session is repaired by the library, which
 *  re-registers our watches; we re-read every record anyway once connected
 *  again (cheap: one exists per token), so a trigger that happened while
 *  we were away is applied whatever the library delivered.
 *
 *  An expired session cannot be repaired: the client's thread closes the
 *  handle (taking c->hlock for writing, so no request is issued on it
 *  meanwhile), opens a new one, and then re-reads every record.  Tokens
 *  this client had published lost their owner node with the old session:
 *  their owner is lost, so the thread records "owner lost" for them
 *  (first-wins; a trigger recorded before wins) and triggers them with it.
 *
 *  Unreachable.  down_since is set when a connected handle loses its
 *  connection (and while a new handle has not connected).  When it is
 *  older than the tolerance, the thread triggers every proxy locally with
 *  CT_REASON_UNREACHABLE, once per outage, and writes nothing.
 *
 *  Library log lines.  The library's log callback has no context
 *  argument, so one process-wide sink (the last client that asked for the
 *  lines) receives them; by default they are dropped.
 */
#include "zk_internal.h"
#include "../remote/text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --- log --- */

void zk_log(struct ct_zk_client *c, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (c->opts.log)
    c->opts.log(c->opts.log_arg, buf);
  else
    fprintf(stderr, "cancel-token: zk: %s\n", buf);
}

/* The process-wide sink for the library's own lines (see the notes). */
static pthread_mutex_t lib_log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ct_zk_client *lib_log_client;

static void lib_log(const char *msg) {
  pthread_mutex_lock(&lib_log_mu);
  struct ct_zk_client *c = lib_log_client;
  if (c && c->opts.log) {
    char buf[512];
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
      n--;
    snprintf(buf, sizeof buf, "zookeeper: %.*s", (int)n, msg);
    c->opts.log(c->opts.log_arg, buf);
  } else if (c) {
    fprintf(stderr, "cancel-token: zk: zookeeper: %s", msg);
  }
  pthread_mutex_unlock(&lib_log_mu);
}

/* --- the watcher (ZooKeeper's completion thread) --- */

void zk_kick(struct ct_zk_client *c) { pthread_cond_broadcast(&c->cv); }

void zk_watcher(zhandle_t *zh, int type, int state, const char *path,
                void *ctx);
void zk_watcher(zhandle_t *zh, int type, int state, const char *path,
                void *ctx) {
  struct ct_zk_client *c = ctx;
  pthread_mutex_lock(&c->mu);
  /* Events of a handle already replaced say nothing about the current
   * session.  (c->zh is written under hlock and mu both, so reading it
   * under mu is enough.) */
  if (zh != c->zh) {
    pthread_mutex_unlock(&c->mu);
    return;
  }
  if (type == ZOO_SESSION_EVENT) {
    if (state == ZOO_CONNECTED_STATE) {
      if (c->ever_connected && !c->connected) {
        c->recheck_all = true;
        atomic_fetch_add_explicit(&c->n_reconnects, 1, memory_order_relaxed);
      }
      c->connected = true;
      c->ever_connected = true;
      c->down_since = 0;
      c->unreach_fired = false;
    } else if (state == ZOO_EXPIRED_SESSION_STATE) {
      c->expired = true;
      c->connected = false;
      if (!c->down_since)
        c->down_since = ct_now();
    } else if (state == ZOO_AUTH_FAILED_STATE) {
      c->connected = false;
      if (!c->down_since)
        c->down_since = ct_now();
    } else { /* connecting, associating */
      if (c->connected && !c->down_since)
        c->down_since = ct_now();
      c->connected = false;
    }
  } else if (path && *path) {
    /* A node event (created, deleted, changed): re-read its record.  Our
     * watched nodes are the @trigger and @owner children. */
    size_t pl = strlen(path);
    for (struct zk_rec *r = c->recs; r; r = r->next) {
      bool t = strlen(r->tpath) == pl && memcmp(r->tpath, path, pl) == 0;
      if (t || (strlen(r->opath) == pl && memcmp(r->opath, path, pl) == 0)) {
        r->check_pending = true;
        r->not_before = 0;
        if (t && type == ZOO_CREATED_EVENT)
          r->trig_created = true;
      }
    }
  }
  zk_kick(c);
  pthread_mutex_unlock(&c->mu);
}

/* Set by the client's thread itself when it starts: c->thread is written
 * by pthread_create() in another thread, possibly after the new thread
 * has begun, so comparing with it from the new thread could race. */
static _Thread_local struct ct_zk_client *tl_client;

bool zk_on_client_thread(struct ct_zk_client *c) { return tl_client == c; }

/* --- handles --- */

static zhandle_t *open_handle(struct ct_zk_client *c) {
  zhandle_t *zh = zookeeper_init2(c->addr.zk_hosts, zk_watcher,
                                  (int)c->asked_timeout_ms, NULL, c, 0,
                                  lib_log);
  if (zh && c->auth)
    /* Queued before any request and re-sent by the library on every
     * reconnect.  Digest authentication cannot fail (the server only
     * derives an identity); wrong credentials show as ZNOAUTH later. */
    zoo_add_auth(zh, "digest", c->auth, (int)strlen(c->auth), NULL, NULL);
  return zh;
}

/* Install zh as the current handle (no lock held). */
static void set_handle(struct ct_zk_client *c, zhandle_t *zh) {
  pthread_rwlock_wrlock(&c->hlock);
  pthread_mutex_lock(&c->mu);
  c->zh = zh;
  /* The library may have connected before zh was ours to compare with
   * (the watcher drops events of a handle that is not c->zh). */
  c->connected = zh && zoo_state(zh) == ZOO_CONNECTED_STATE;
  c->ever_connected = c->connected;
  if (c->connected)
    c->down_since = 0;
  c->expired = false;
  pthread_mutex_unlock(&c->mu);
  pthread_rwlock_unlock(&c->hlock);
}

/* Called once a handle is connected: learn its session. */
static void note_session(struct ct_zk_client *c) {
  pthread_rwlock_rdlock(&c->hlock);
  if (c->zh) {
    const clientid_t *id = zoo_client_id(c->zh);
    atomic_store_explicit(&c->session_id, id ? id->client_id : 0,
                          memory_order_relaxed);
    int ms = zoo_recv_timeout(c->zh);
    if (ms > 0) {
      int64_t old = atomic_exchange_explicit(
          &c->session_timeout_ns, (int64_t)ms * 1000000, memory_order_relaxed);
      if (ms != c->asked_timeout_ms && old != (int64_t)ms * 1000000)
        zk_log(c,
               "session timeout: asked for %lld ms, the ensemble gave %d ms",
               (long long)c->asked_timeout_ms, ms);
    }
  }
  pthread_rwlock_unlock(&c->hlock);
  atomic_fetch_add_explicit(&c->n_sessions, 1, memory_order_relaxed);
}

/* --- the client's thread --- */

static int64_t tolerance(struct ct_zk_client *c) {
  if (c->opts.unreachable_ns < 0)
    return -1;
  if (c->opts.unreachable_ns > 0)
    return c->opts.unreachable_ns;
  return 3 * atomic_load_explicit(&c->session_timeout_ns,
                                  memory_order_relaxed);
}

/* Per-request budget on the client's thread: long enough for a request
 * during an election, short enough to notice a stop or an outage. */
static int64_t budget(struct ct_zk_client *c) {
  int64_t t = atomic_load_explicit(&c->session_timeout_ns,
                                   memory_order_relaxed);
  return ct_now() + (t > 0 ? t : 2000000000);
}

#define RETRY_NS 50000000 /* 50 ms between attempts after a lost connection */

static void *client_thread(void *arg) {
  struct ct_zk_client *c = arg;
  tl_client = c;
  bool need_note = false; /* a new handle: learn its session once up */
  pthread_mutex_lock(&c->mu);
  while (!c->stop) {
    int64_t now = ct_now();
    /* 1. An expired session: replace the handle. */
    if (c->expired) {
      c->expired = false;
      zhandle_t *old = c->zh;
      pthread_mutex_unlock(&c->mu);
      zk_log(c, "session expired; opening a new one");
      set_handle(c, NULL);
      if (old)
        zookeeper_close(old); /* our thread, not a ZooKeeper callback */
      zhandle_t *zh = open_handle(c);
      pthread_mutex_lock(&c->mu);
      if (!zh) {
        c->expired = true; /* try again shortly */
        struct timespec ts;
        int64_t at = ct_now() + 200000000;
        ts.tv_sec = (time_t)(at / 1000000000);
        ts.tv_nsec = (long)(at % 1000000000);
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        continue;
      }
      pthread_mutex_unlock(&c->mu);
      set_handle(c, zh);
      pthread_mutex_lock(&c->mu);
      if (!c->down_since)
        c->down_since = ct_now();
      need_note = true;
      /* Our owner nodes died with the old session. */
      for (struct zk_rec *r = c->recs; r; r = r->next)
        if (r->owned)
          r->owner_lost_pending = true;
      continue;
    }
    if (need_note && c->connected) {
      need_note = false;
      c->recheck_all = true;
      pthread_mutex_unlock(&c->mu);
      note_session(c);
      pthread_mutex_lock(&c->mu);
      continue;
    }
    if (c->recheck_all && c->connected) {
      c->recheck_all = false;
      for (struct zk_rec *r = c->recs; r; r = r->next) {
        r->check_pending = true;
        r->not_before = 0;
      }
    }
    /* 2. The tolerance ran out. */
    int64_t tol = tolerance(c);
    if (c->down_since && !c->unreach_fired && tol >= 0 &&
        now - c->down_since >= tol) {
      c->unreach_fired = true;
      atomic_fetch_add_explicit(&c->n_unreach, 1, memory_order_relaxed);
      pthread_mutex_unlock(&c->mu);
      zk_log(c, "the ensemble has been unreachable for %lld ms: proxies "
                "triggered locally (engine unreachable)",
             (long long)(tol / 1000000));
      zk_lose_all(c, CT_REASON_UNREACHABLE);
      pthread_mutex_lock(&c->mu);
      continue;
    }
    /* 3. Pending work on a record, when connected. */
    struct zk_rec *work = NULL;
    int64_t next = -1;
    if (c->connected && need_note == false) {
      for (struct zk_rec *r = c->recs; r; r = r->next) {
        if (!(r->check_pending || r->fwd_pending || r->owner_lost_pending))
          continue;
        if (r->not_before <= now) {
          work = r;
          break;
        }
        if (next < 0 || r->not_before < next)
          next = r->not_before;
      }
    }
    if (work) {
      /* A local trigger that happened before is written before an owner
       * loss of ours: it came first. */
      bool fwd = work->fwd_pending;
      bool lost = !fwd && work->owner_lost_pending;
      int reason = work->fwd_reason, detail = work->fwd_detail;
      char cause[CT_ZK_NAME_MAX + 1];
      memcpy(cause, work->fwd_cause, sizeof cause);
      if (fwd)
        work->fwd_pending = false;
      else if (lost)
        work->owner_lost_pending = false;
      work->check_pending = false;
      pthread_mutex_unlock(&c->mu);
      int rc;
      if (lost)
        rc = zk_rec_write(c, work, CT_REASON_OWNER_LOST, 0, work->tok_name,
                          budget(c));
      else if (fwd)
        rc = zk_rec_write(c, work, reason, detail, cause, budget(c));
      else
        rc = zk_rec_check(c, work, budget(c));
      pthread_mutex_lock(&c->mu);
      if (rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -ENOMEM) {
        /* Try again later; a forward or an owner loss stays pending. */
        if (lost)
          work->owner_lost_pending = true;
        else if (fwd)
          work->fwd_pending = true;
        else
          work->check_pending = true;
        work->not_before = ct_now() + RETRY_NS;
        atomic_fetch_add_explicit(&c->n_retries, 1, memory_order_relaxed);
      } else if (rc < 0 && (fwd || lost)) {
        pthread_mutex_unlock(&c->mu);
        zk_log(c, "cannot record the trigger of %s: %s", work->name,
               ct_strerror(rc));
        pthread_mutex_lock(&c->mu);
      }
      continue;
    }
    /* 4. Sleep until signalled, a retry is due, or the tolerance ends. */
    if (c->down_since && !c->unreach_fired && tol >= 0) {
      /* Saturated: any tolerance up to INT64_MAX is valid (a plain sum
       * overflowed for huge ones; outside review). */
      int64_t at = tol > INT64_MAX - c->down_since ? INT64_MAX
                                                   : c->down_since + tol;
      if (next < 0 || at < next)
        next = at;
    }
    if (next < 0) {
      pthread_cond_wait(&c->cv, &c->mu);
    } else {
      struct timespec ts;
      ts.tv_sec = (time_t)(next / 1000000000);
      ts.tv_nsec = (long)(next % 1000000000);
      pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* --- public --- */

static pthread_once_t level_once = PTHREAD_ONCE_INIT;
static void set_level(void) { zoo_set_debug_level(ZOO_LOG_LEVEL_WARN); }

static void client_destroy(struct ct_zk_client *c) {
  pthread_rwlock_destroy(&c->hlock);
  pthread_mutex_destroy(&c->opmu);
  pthread_cond_destroy(&c->opcv);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  if (c->auth) {
    memset(c->auth, 0, strlen(c->auth));
    free(c->auth);
  }
  free(c);
}

int ct_zk_connect(ct_zk_client **out, const char *address,
                  const ct_zk_options *opts, char *errbuf, size_t errlen,
                  int64_t deadline) {
  if (errbuf && errlen > 0)
    errbuf[0] = '\0';
  if (!out || !address)
    return ct_text_fail(errbuf, errlen, -EINVAL, "no address");
  *out = NULL;
  if (deadline < -1)
    return ct_text_fail(errbuf, errlen, -EINVAL, "bad deadline");
  struct ct_zk_client *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  int rc = ct_addr_parse(&c->addr, address, errbuf, errlen);
  if (rc == 0 && c->addr.kind != CT_ADDR_ZK)
    rc = ct_text_fail(errbuf, errlen, -EINVAL,
              "'%s' is not a ZooKeeper address (zk://HOST:PORT[,...][/CHROOT])",
              address);
  /* The ZooKeeper C client takes "HOST:PORT" only: it cuts at the last
   * ':' and resolves the rest, so "[::1]:2181" would fail later as a host
   * that does not resolve.  Say so now. */
  if (rc == 0 && strchr(c->addr.zk_hosts, '['))
    rc = ct_text_fail(errbuf, errlen, -EINVAL,
              "bad address '%s': the ZooKeeper C client does not take "
              "bracketed IPv6 literals; use a host name that resolves to "
              "the address", address);
  /* The chroot is a path prefix of every request: check it as ZooKeeper
   * will (UTF-8, the characters it refuses), so that a bad one fails here
   * and not as unrelated errors of later calls. */
  if (rc == 0 && c->addr.zk_chroot[0] &&
      zk_path_check(c->addr.zk_chroot + 1, strlen(c->addr.zk_chroot + 1),
                    false) < 0)
    rc = ct_text_fail(errbuf, errlen, -EINVAL,
              "bad address '%s': the chroot is not valid UTF-8 or holds a "
              "character ZooKeeper refuses in a path", address);
  if (rc < 0) {
    free(c);
    return rc;
  }
  /* Copy what the caller's layout has (see CT_ZK_OPTIONS_SIZE_1); the
   * rest stays zero, the defaults. */
  ct_zk_options given;
  memset(&given, 0, sizeof given);
  if (opts) {
    size_t n = opts->size ? opts->size : CT_ZK_OPTIONS_SIZE_1;
    if (n != CT_ZK_OPTIONS_SIZE_1 && n != sizeof given) {
      free(c);
      return ct_text_fail(errbuf, errlen, -EINVAL,
                  "options of an unknown size %zu (this library's is %zu)",
                  opts->size, sizeof given);
    }
    memcpy(&given, opts, n);
    given.size = sizeof given;
    opts = &given;
  }
  if (opts)
    c->opts = *opts;
  c->opts.auth_file = NULL; /* read below; not kept */
  c->opts.auth = NULL;
  c->opts.origin_name = NULL;
  int64_t asked = opts && opts->session_timeout_ns > 0
                      ? opts->session_timeout_ns
                      : 10000000000LL;
  if (asked < 200000000)
    asked = 200000000;
  if (asked > 600000000000LL)
    asked = 600000000000LL;
  c->asked_timeout_ms = asked / 1000000;
  atomic_init(&c->session_timeout_ns, asked);
  ct_zk_options auth_opts = opts ? *opts : (ct_zk_options){0};
  rc = zk_auth_load(&auth_opts, &c->auth, errbuf, errlen);
  if (rc < 0) {
    free(c);
    return rc;
  }
  if (gethostname(c->host, sizeof c->host) < 0)
    strcpy(c->host, "unknown");
  c->host[sizeof c->host - 1] = '\0';
  extern char *program_invocation_short_name;
  zk_copy_cut(c->origin, sizeof c->origin,
              opts && opts->origin_name ? opts->origin_name
                                        : program_invocation_short_name);
  c->pid = (long long)getpid();
  pthread_rwlock_init(&c->hlock, NULL);
  pthread_mutex_init(&c->opmu, NULL);
  pthread_mutex_init(&c->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->opcv, &ca);
  pthread_cond_init(&c->cv, &ca);
  pthread_condattr_destroy(&ca);

  pthread_once(&level_once, set_level);
  if (c->opts.library_log) {
    pthread_mutex_lock(&lib_log_mu);
    lib_log_client = c;
    pthread_mutex_unlock(&lib_log_mu);
  }

  errno = 0;
  zhandle_t *zh = open_handle(c);
  if (!zh) {
    int e = errno;
    rc = ct_text_fail(errbuf, errlen, e == ENOMEM ? -ENOMEM : -ENOENT,
              "cannot use the members of '%s' (a host name did not resolve?)",
              address);
    goto out_free;
  }
  set_handle(c, zh);
  struct timespec ts;
  ts.tv_sec = (time_t)(deadline / 1000000000);
  ts.tv_nsec = (long)(deadline % 1000000000);
  pthread_mutex_lock(&c->mu);
  while (!c->connected) {
    if (deadline == 0 ||
        (deadline > 0 &&
         pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT &&
         !c->connected))
      break;
    if (deadline < 0)
      pthread_cond_wait(&c->cv, &c->mu);
  }
  bool up = c->connected;
  pthread_mutex_unlock(&c->mu);
  if (!up) {
    rc = ct_text_fail(errbuf, errlen, -ETIMEDOUT,
              "no quorum of the ZooKeeper ensemble at '%s' answered before "
              "the deadline (unreachable, or no quorum)",
              address);
    goto out_close;
  }
  note_session(c);
  if (pthread_create(&c->thread, NULL, client_thread, c) != 0) {
    rc = ct_text_fail(errbuf, errlen, -EAGAIN, "cannot start the client's thread");
    goto out_close;
  }
  c->have_thread = true;
  *out = c;
  return 0;

out_close:
  set_handle(c, NULL);
  zookeeper_close(zh);
out_free:
  pthread_mutex_lock(&lib_log_mu);
  if (lib_log_client == c)
    lib_log_client = NULL;
  pthread_mutex_unlock(&lib_log_mu);
  client_destroy(c);
  return rc;
}

int64_t ct_zk_session_timeout(const ct_zk_client *c) {
  if (!c)
    return -EINVAL;
  return atomic_load_explicit(&c->session_timeout_ns, memory_order_relaxed);
}

void ct_zk_get_stats(const ct_zk_client *c, ct_zk_stats *st) {
  if (!c || !st)
    return;
  st->sessions = atomic_load_explicit(&c->n_sessions, memory_order_relaxed);
  st->reconnects =
      atomic_load_explicit(&c->n_reconnects, memory_order_relaxed);
  st->retries = atomic_load_explicit(&c->n_retries, memory_order_relaxed);
  st->records_won = atomic_load_explicit(&c->n_won, memory_order_relaxed);
  st->unreachable = atomic_load_explicit(&c->n_unreach, memory_order_relaxed);
}

void ct_zk_client_free(ct_zk_client *c) {
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  c->stop = true;
  zk_kick(c);
  pthread_mutex_unlock(&c->mu);
  if (c->have_thread)
    pthread_join(c->thread, NULL);
  c->have_thread = false;
  pthread_rwlock_wrlock(&c->hlock);
  zhandle_t *zh = c->zh;
  pthread_rwlock_unlock(&c->hlock);
  /* Closing deletes our owner nodes with the session.  Outside every lock:
   * the close waits for the completion thread, whose watcher takes mu. */
  if (zh)
    zookeeper_close(zh);
  set_handle(c, NULL);
  pthread_mutex_lock(&lib_log_mu);
  if (lib_log_client == c)
    lib_log_client = NULL;
  pthread_mutex_unlock(&lib_log_mu);
  zk_lose_all(c, CT_REASON_SHUTDOWN);
  zk_rec_free_all(c);
  client_destroy(c);
}

void ct_zk_options_init(ct_zk_options *o) {
  if (!o)
    return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
}
