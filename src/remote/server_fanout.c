/* SPDX-License-Identifier: MIT
 *
 * server_fanout.c -- one notice to many subscribers, sent from more than
 * one thread.  On loopback TCP each send() runs the receiving side's TCP
 * inline and costs several microseconds, so a notice to 1,000 connections
 * sent by the loop thread alone takes about 1,000 times that; split over
 * the machine's CPUs it takes a fraction (bench/net_bench.c, fan-out).
 *
 * Design notes:
 *
 *  Fork-join, so that connections stay the loop thread's.  The loop
 *  thread encodes the NOTIFY frame once, publishes the job (the frame and
 *  the subscriber array) under `mu`, wakes the helpers, takes its own
 *  share, and WAITS until every helper is done before it touches any
 *  connection again.  A helper only calls send() on the descriptors of its
 *  share (the k-th of nhelpers+1 contiguous runs of subscribers, cut
 *  where the peer's group changes, net_fanout_cut()) and
 *  writes how many bytes went out into its slots of `sent`; it reads
 *  c->fd, c->dead and the length of c->out, which the loop thread wrote
 *  before publishing the job and does not write while it waits.  The
 *  mutex hand-off orders both ways (job published before a helper reads
 *  it; results written before the loop thread reads them), which is what
 *  makes this safe without atomics.
 *
 *  Order on a connection.  A helper sends only to a connection with
 *  nothing queued (else the notice would overtake what is); the others,
 *  and whatever did not go out whole (EAGAIN, a partial send, an error),
 *  the loop thread queues after the join, as it would have without the
 *  helpers, and conn_flush() deals with errors.
 *
 *  Bounded.  Every send is MSG_DONTWAIT, so the join waits at most for
 *  the helpers' share of non-blocking sends.  Helpers start with the first
 *  notice to FANOUT_MIN subscribers and are joined by fanout_stop() when
 *  the server stops; without helpers (one CPU, no thread, no memory) the
 *  loop thread sends alone.
 *
 *  LOCK ORDER.  `mu` here is a leaf and is never held while sending or
 *  with the server's `mu`.
 */
#include "server.h"

#include <errno.h>
#include <unistd.h>

#define FANOUT_MIN 64     /* subscribers below this: the loop alone */
#define FANOUT_HELPERS 3  /* at most, and at most CPUs - 1 */

struct fanout {
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  pthread_t th[FANOUT_HELPERS];
  size_t cut[FANOUT_HELPERS + 2]; /* share k is [cut[k], cut[k + 1]) */
  int nhelpers;
  bool stop;           /* under mu */
  uint64_t gen;        /* job number, under mu */
  int busy;            /* helpers still on the job, under mu */
  /* The job: written under mu by the loop thread before gen changes. */
  const uint8_t *frame;
  size_t flen;
  struct sub **subs;
  size_t n;
  ssize_t *sent;       /* per subscriber: bytes sent, -1 not sent */
};

/* Where the shares begin: n * k / parts, each moved on to the next change
 * of group (but by less than half a share), so that the connections of
 * one peer process, which server_proto.c puts next to one another, are
 * sent to by one thread and not by two at once (they would contend for
 * that process's epoll instance, and wake its thread twice).  same(arg,
 * i): is element i (0 < i < n) in the group of element i - 1?  A testing
 * hook too (net_internal.h). */
void net_fanout_cut(size_t n, size_t parts,
                    bool (*same)(const void *arg, size_t i), const void *arg,
                    size_t *cut) {
  cut[0] = 0;
  cut[parts] = n;
  for (size_t k = 1; k < parts; k++) {
    size_t at = n * k / parts, limit = at + n / parts / 2;
    if (at < cut[k - 1])
      at = cut[k - 1];
    size_t i = at;
    while (i > 0 && i < limit && i < n && same(arg, i))
      i++;
    cut[k] = i < limit && i < n ? i : at;
  }
}

static bool same_group(const void *arg, size_t i) {
  struct sub *const *subs = arg;
  return subs[i]->gkey == subs[i - 1]->gkey;
}

/* Send the frame to share k: a contiguous run of subscribers (above). */
static void share(struct fanout *f, size_t k) {
  size_t from = f->cut[k], to = f->cut[k + 1];
  for (size_t i = from; i < to; i++) {
    /* The subscriber records and connections are scattered in memory:
     * ask for those a few places ahead while this one is sent. */
    if (i + 8 < to)
      __builtin_prefetch(f->subs[i + 8]);
    if (i + 4 < to)
      __builtin_prefetch(f->subs[i + 4]->c);
    struct conn *c = f->subs[i]->c;
    f->sent[i] = -1;
    if (c->dead || net_buf_pending(&c->out))
      continue;
    ssize_t w;
    do
      w = send(c->fd, f->frame, f->flen, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    f->sent[i] = w;
  }
}

struct helper_arg {
  struct fanout *f;
  int index;
};

static void *helper_main(void *arg) {
  struct helper_arg *h = arg;
  struct fanout *f = h->f;
  size_t k = (size_t)h->index + 1;
  net_free(h);
  pthread_mutex_lock(&f->mu);
  uint64_t seen = 0; /* helpers start before the first job (gen 1) */
  for (;;) {
    while (!f->stop && f->gen == seen)
      pthread_cond_wait(&f->go, &f->mu);
    if (f->stop)
      break;
    seen = f->gen;
    pthread_mutex_unlock(&f->mu);
    share(f, k);
    pthread_mutex_lock(&f->mu);
    if (--f->busy == 0)
      pthread_cond_signal(&f->done);
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

/* The helpers, started on first use; NULL if there can be none. */
static struct fanout *fanout_get(ct_net_server *s) {
  if (s->fanout || s->fanout_failed)
    return s->fanout;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int want = cpus > 1 ? (int)(cpus - 1) : 0;
  if (want > FANOUT_HELPERS)
    want = FANOUT_HELPERS;
  struct fanout *f = want ? net_calloc(1, sizeof *f) : NULL;
  if (!f) {
    s->fanout_failed = true;
    return NULL;
  }
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->go, NULL);
  pthread_cond_init(&f->done, NULL);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024); /* send() loops only */
  for (int i = 0; i < want; i++) {
    struct helper_arg *h = net_malloc(sizeof *h);
    if (!h)
      break;
    *h = (struct helper_arg){f, i};
    /* nhelpers is read by helpers under mu only once a job is out */
    if (pthread_create(&f->th[i], &attr, helper_main, h) != 0) {
      net_free(h);
      break;
    }
    f->nhelpers++;
  }
  pthread_attr_destroy(&attr);
  if (f->nhelpers == 0) {
    pthread_cond_destroy(&f->go);
    pthread_cond_destroy(&f->done);
    pthread_mutex_destroy(&f->mu);
    net_free(f);
    s->fanout_failed = true;
    return NULL;
  }
  s->fanout = f;
  return f;
}

void fanout_stop(ct_net_server *s) {
  struct fanout *f = s->fanout;
  if (!f)
    return;
  pthread_mutex_lock(&f->mu);
  f->stop = true;
  pthread_cond_broadcast(&f->go);
  pthread_mutex_unlock(&f->mu);
  for (int i = 0; i < f->nhelpers; i++)
    pthread_join(f->th[i], NULL);
  pthread_cond_destroy(&f->go);
  pthread_cond_destroy(&f->done);
  pthread_mutex_destroy(&f->mu);
  net_free(f);
  s->fanout = NULL;
}

bool fanout_notice(ct_net_server *s, struct sub **subs, size_t n,
                   const struct net_notify *m) {
  if (n < FANOUT_MIN)
    return false;
  struct fanout *f = fanout_get(s);
  if (!f)
    return false;
  struct net_buf frame = {0};
  ssize_t *sent = net_malloc(n * sizeof *sent);
  if (!sent || net_enc_notify(&frame, m) < 0) {
    net_free(sent);
    net_buf_free(&frame);
    return false;
  }
  pthread_mutex_lock(&f->mu);
  f->frame = frame.data;
  f->flen = frame.len;
  f->subs = subs;
  f->n = n;
  f->sent = sent;
  net_fanout_cut(n, (size_t)f->nhelpers + 1, same_group, subs, f->cut);
  f->busy = f->nhelpers;
  f->gen++;
  pthread_cond_broadcast(&f->go);
  pthread_mutex_unlock(&f->mu);
  share(f, 0);
  pthread_mutex_lock(&f->mu);
  while (f->busy > 0)
    pthread_cond_wait(&f->done, &f->mu);
  pthread_mutex_unlock(&f->mu);
  /* Joined: the connections are the loop thread's again. */
  int64_t now = 0;
  for (size_t i = 0; i < n; i++) {
    struct conn *c = subs[i]->c;
    size_t done = sent[i] > 0 ? (size_t)sent[i] : 0;
    if (done == frame.len)
      continue;
    if (!conn_room(s, c, 0, true))
      continue; /* dead */
    if (done > 0 && !now)
      now = ct_now();
    if (done > 0)
      c->out_since = now; /* it made progress */
    conn_queued(s, c,
                net_buf_append(&c->out, frame.data + done, frame.len - done));
  }
  net_free(sent);
  net_buf_free(&frame);
  return true;
}
