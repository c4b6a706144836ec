/* SPDX-License-Identifier: MIT
 *
 * net_floor_uring.c -- variant c of bench/net_floor.c: the same fan-out
 * with io_uring on both sides (built only when liburing is found).
 *
 * Design notes:
 *
 *  Server.  Each sending thread makes its own ring (SINGLE_ISSUER |
 *  DEFER_TASKRUN: only that thread submits) with its share's descriptors
 *  registered (no descriptor lookup per send), queues one IORING_OP_SEND
 *  of the frame per connection and submits them in batches of up to
 *  --c-batch SQEs (4,096 at most: the SQ ring's size; one io_uring_enter()
 *  a batch; the sends run inline in it, since a 15-byte send on a socket
 *  with room never waits).  It checks every
 *  completion (the whole frame sent) and returns when all are in.
 *
 *  Client.  One ring per client process (SINGLE_ISSUER | DEFER_TASKRUN:
 *  the receives run as task work in that process when it waits, not in
 *  the sender's context, and it is woken once enough of them are queued),
 *  one provided-buffer ring of 256-byte buffers (twice the ring's entries,
 *  so there is one for every connection's frame), one multishot recv per
 *  connection (user_data = its index) armed before the round and
 *  cancelled after it.  A recv that ends (no buffer, say) is armed again.
 */
#include "net_floor.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define BUF_SIZE 256
#define CANCEL_KEY UINT64_MAX

struct nf_uring_client {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  char *bufs;
  unsigned nbufs;
  const int *fd;
  int n, wait;
};

static struct io_uring_sqe *sqe_get(struct io_uring *ring) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
  if (!sqe) { /* full: submit what is queued */
    io_uring_submit(ring);
    if (!(sqe = io_uring_get_sqe(ring)))
      nf_fail("io_uring: no SQE");
  }
  return sqe;
}

static void arm_one(struct nf_uring_client *u, int i) {
  struct io_uring_sqe *sqe = sqe_get(&u->ring);
  io_uring_prep_recv_multishot(sqe, u->fd[i], NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  sqe->user_data = (uint64_t)i;
}

/* A buffer the kernel filled goes back into the ring (published by the
 * caller's io_uring_buf_ring_advance(added)). */
static void recycle(struct nf_uring_client *u, unsigned short bid,
                    int *added) {
  io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE,
                        bid, io_uring_buf_ring_mask(u->nbufs), (*added)++);
}

struct nf_uring_client *nf_uring_client_new(const int *fd, int n, int wait) {
  struct nf_uring_client *u = calloc(1, sizeof *u);
  if (!u)
    nf_fail("out of memory");
  u->fd = fd, u->n = n, u->wait = wait;
  unsigned ent = 1;
  while (ent < (unsigned)n + 2)
    ent <<= 1;
  struct io_uring_params p = {0};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_CQSIZE;
  p.cq_entries = ent * 4;
  int r = io_uring_queue_init_params(ent, &u->ring, &p);
  if (r < 0) {
    errno = -r;
    nf_die("io_uring_queue_init (client)");
  }
  u->nbufs = ent * 2;
  u->br = mmap(NULL, u->nbufs * sizeof(struct io_uring_buf),
               PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  u->bufs = malloc((size_t)u->nbufs * BUF_SIZE);
  if (u->br == MAP_FAILED || !u->bufs)
    nf_die("buffer ring memory");
  io_uring_buf_ring_init(u->br);
  struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)u->br,
                                 .ring_entries = u->nbufs, .bgid = 0};
  if ((r = io_uring_register_buf_ring(&u->ring, &reg, 0)) < 0) {
    errno = -r;
    nf_die("io_uring_register_buf_ring");
  }
  int added = 0;
  for (unsigned b = 0; b < u->nbufs; b++)
    recycle(u, (unsigned short)b, &added);
  io_uring_buf_ring_advance(u->br, added);
  return u;
}

void nf_uring_arm(struct nf_uring_client *u) {
  for (int i = 0; i < u->n; i++)
    arm_one(u, i);
  io_uring_submit(&u->ring);
}

/* Reap completions until each connection has read its frame (s != NULL:
 * the round), or until every recv has ended after the cancel (s == NULL). */
static void reap(struct nf_uring_client *u, struct client *owner,
                 struct proc_slot *s, int *left) {
  int armed = u->n;
  bool cancelled = s != NULL;
  while (s ? *left > 0 : armed > 0 || !cancelled) {
    /* How many completions to sleep for: 1 as a library must (it does not
     * know how many will come); u->wait == 0, all this process still
     * expects (one wake-up a round, an ideal no real client can count
     * on). */
    unsigned want = 1;
    if (s)
      want = u->wait > 0 && u->wait < *left ? (unsigned)u->wait
                                            : (unsigned)*left;
    int r = io_uring_submit_and_wait(&u->ring, want);
    if (r < 0 && r != -EINTR) {
      errno = -r;
      nf_die("io_uring_submit_and_wait");
    }
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int added = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
      seen++;
      if (cqe->user_data == CANCEL_KEY) {
        cancelled = true;
        continue;
      }
      int i = (int)cqe->user_data;
      if (cqe->flags & IORING_CQE_F_BUFFER)
        recycle(u, (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT),
                &added);
      if (!s) {
        armed -= !(cqe->flags & IORING_CQE_F_MORE);
        continue;
      }
      if (cqe->res != -ENOBUFS)
        nf_got(owner, i, cqe->res, left, s);
      if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_one(u, i); /* it ended (out of buffers, say): again */
    }
    io_uring_buf_ring_advance(u->br, added);
    io_uring_cq_advance(&u->ring, seen);
  }
}

void nf_uring_round(struct nf_uring_client *u, struct client *owner,
                    struct proc_slot *s, int *left) {
  reap(u, owner, s, left);
}

void nf_uring_disarm(struct nf_uring_client *u) {
  struct io_uring_sqe *sqe = sqe_get(&u->ring);
  io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
  sqe->user_data = CANCEL_KEY;
  reap(u, NULL, NULL, NULL);
}

/* ---- server ---- */

struct nf_uring_sender {
  struct io_uring ring;
  size_t n;
};

struct nf_uring_sender *nf_uring_sender_new(const int *fd, size_t n,
                                            unsigned batch) {
  struct nf_uring_sender *u = calloc(1, sizeof *u);
  if (!u)
    return NULL;
  u->n = n;
  unsigned ent = 1; /* the SQ ring: one batch (at most 4,096) */
  while (ent < n && ent < 4096 && ent < batch)
    ent <<= 1;
  struct io_uring_params p = {0};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_CQSIZE;
  p.cq_entries = ent * 2;
  if (io_uring_queue_init_params(ent, &u->ring, &p) < 0) {
    free(u);
    return NULL;
  }
  if (n > 0 && io_uring_register_files(&u->ring, fd, (unsigned)n) < 0) {
    io_uring_queue_exit(&u->ring);
    free(u);
    return NULL;
  }
  return u;
}

void nf_uring_send(struct nf_uring_sender *u) {
  size_t i = 0, completed = 0;
  while (completed < u->n) {
    struct io_uring_sqe *sqe;
    while (i < u->n && (sqe = io_uring_get_sqe(&u->ring))) {
      io_uring_prep_send(sqe, (int)i, nf_frame, FRAME_LEN, MSG_NOSIGNAL);
      sqe->flags |= IOSQE_FIXED_FILE;
      i++;
    }
    /* all queued and some not complete yet: wait for one */
    bool wait = i == u->n && completed + io_uring_cq_ready(&u->ring) < u->n;
    int r = wait ? io_uring_submit_and_wait(&u->ring, 1)
                 : io_uring_submit(&u->ring);
    if (r < 0 && r != -EINTR) {
      errno = -r;
      nf_die("io_uring submit (server)");
    }
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
      seen++;
      if (cqe->res != FRAME_LEN)
        nf_fail("an io_uring send did not send the whole frame");
    }
    io_uring_cq_advance(&u->ring, seen);
    completed += seen;
  }
}

void nf_uring_sender_free(struct nf_uring_sender *u) {
  if (!u)
    return;
  io_uring_queue_exit(&u->ring);
  free(u);
}
