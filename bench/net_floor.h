/* SPDX-License-Identifier: MIT
 *
 * net_floor.h -- what bench/net_floor.c (the benchmark) and
 * bench/net_floor_uring.c (its io_uring variant, built only with liburing)
 * share.  Not a library: every failure prints why and exits the process.
 */
#ifndef NET_FLOOR_H
#define NET_FLOOR_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_LEN 15 /* our NOTIFY for net_bench's tokens (net_floor.c) */
extern const uint8_t nf_frame[FRAME_LEN];

/* Print "net_floor: what" (with errno's text for nf_die) and exit(2). */
void nf_fail(const char *what);
void nf_die(const char *what);
int64_t nf_now(void); /* CLOCK_MONOTONIC, ns */

/* Per client process and round: when its first / last connection was
 * read, and what the round cost it (MAP_SHARED with the server). */
struct proc_slot {
  int64_t first, last;
  int64_t cpu_us, csw;
};

/* net_floor.c: r bytes were read on connection i of `owner` (r <= 0:
 * fatal); counts down *left when that connection's frame is whole and
 * stamps s. */
struct client;
void nf_got(struct client *owner, int i, int r, int *left,
            struct proc_slot *s);

/* ---- net_floor_uring.c ---- */

/* A client process's ring over its n connections fd[0..n): SINGLE_ISSUER
 * | DEFER_TASKRUN, one provided-buffer ring.  wait: completions to sleep
 * for (0: all that are still expected). */
struct nf_uring_client;
struct nf_uring_client *nf_uring_client_new(const int *fd, int n, int wait);
/* One multishot recv per connection, submitted. */
void nf_uring_arm(struct nf_uring_client *u);
/* Reap until each connection has read its frame (nf_got on owner). */
void nf_uring_round(struct nf_uring_client *u, struct client *owner,
                    struct proc_slot *s, int *left);
/* Cancel every recv; return once each has ended. */
void nf_uring_disarm(struct nf_uring_client *u);

/* A sending thread's ring, made by that thread, with fd[0..n) registered,
 * submitting up to `batch` sends at a time (rounded up to a power of 2,
 * at most 4,096); NULL if io_uring cannot be set up. */
struct nf_uring_sender;
struct nf_uring_sender *nf_uring_sender_new(const int *fd, size_t n,
                                            unsigned batch);
/* Send nf_frame to each of its connections as batched SQEs; return once
 * every send has completed whole. */
void nf_uring_send(struct nf_uring_sender *u);
void nf_uring_sender_free(struct nf_uring_sender *u);

#endif
