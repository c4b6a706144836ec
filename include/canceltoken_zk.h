/* SPDX-License-Identifier: MIT
 *
 * canceltoken_zk.h -- tokens across machines on an Apache ZooKeeper 3.8
 * ensemble: an owner publishes a token under a path, any process attaches
 * proxy tokens to it by path, anybody triggers it, and exactly one trigger
 * -- the first -- is recorded durably in the ensemble and reported by
 * every proxy and by the owner.  docs/zookeeper.md is the user's guide
 * (node layout, failures, guarantees).
 *
 * Library: canceltoken_zk (links canceltoken and zookeeper_mt).
 *
 * Conventions are those of canceltoken.h: negative errno results, absolute
 * CLOCK_MONOTONIC deadlines in ns as the last argument of every call that
 * talks to the ensemble (CT_FOREVER = -1 never times out, 0 does not
 * block), and every declaration says what it does with its pointers
 * ("Ownership"), from which threads it may be called and whether it
 * blocks ("Threads", "Blocking").
 *
 * One client is one ZooKeeper session.  Make one per process and take
 * every proxy and publish every token through it: a thousand proxies cost
 * one session, one connection and one watch per token path.  A client has
 * one thread of its own, "the client's thread", which re-reads state after
 * reconnects, replaces an expired session, writes forwarded triggers and
 * runs the proxies' callbacks (besides the two threads of the ZooKeeper
 * library).  Do not fork() a process once a client exists in it (the
 * ZooKeeper library's threads do not survive it); a child that exec()s
 * at once is fine.
 *
 * Address: "zk://HOST:PORT[,HOST:PORT...][/CHROOT]" (the address parser of
 * canceltoken_net and of the command).  Token names are paths under the
 * chroot: "build" or "jobs/1234" (a leading '/' is allowed and ignored);
 * each '/'-separated part is 1..255 bytes of UTF-8, not "." or "..", and
 * does not start with '@' (the token's own nodes are "@owner" and
 * "@trigger"); the whole path is at most CT_ZK_NAME_MAX bytes.  Characters
 * are those ZooKeeper takes in a path: not U+0000..U+001F,
 * U+007F..U+009F, U+D800..U+F8FF (which includes the private-use area),
 * U+FFF0..U+FFFF, nor any character outside the Basic Multilingual Plane
 * (ZooKeeper checks UTF-16 units, and refuses the surrogates of such a
 * character).  A name that breaks these rules is -EINVAL (-ENAMETOOLONG
 * for the lengths) before anything is sent, whatever the deadline.  The
 * chroot follows the same character rules (checked by ct_zk_connect()).
 * Hosts are "NAME:PORT" or "IPv4:PORT": the ZooKeeper C client does not
 * take bracketed IPv6 literals ("[::1]:2181" is -EINVAL at connect); use
 * a host name that resolves to the IPv6 address.
 */
#ifndef CANCELTOKEN_ZK_H
#define CANCELTOKEN_ZK_H

#include "canceltoken.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CT_ZK_BUILDING_LIBRARY) && defined(__GNUC__)
#define CT_ZK_EXTERN __attribute__((visibility("default")))
#else
#define CT_ZK_EXTERN
#endif

/* Longest token path (under the chroot), in bytes. */
#define CT_ZK_NAME_MAX 1024

/* The environment variables read for credentials (see ct_zk_options). */
#define CT_ZK_AUTH_ENV "CT_ZK_AUTH"           /* "user:password" */
#define CT_ZK_AUTH_FILE_ENV "CT_ZK_AUTH_FILE" /* path of a file holding it */

/* Where the client reports what it does not return to a caller: a session
 * expired and was replaced, the negotiated session timeout differs from
 * the one asked for, the ensemble is unreachable, a forwarded trigger
 * could not be written.  One line, without a newline.  The default writes
 * "cancel-token: zk: <msg>" to stderr.  The client's own lines come from
 * the client's thread or from the call that causes them (on the caller's
 * thread).  With ct_zk_options.library_log, the ZooKeeper library's lines
 * come from that library's own threads (the I/O and completion threads of
 * any client of the process), one at a time among themselves but at the
 * same time as the client's lines on other threads: a function used with
 * library_log must be thread-safe.  It must not call back into any
 * client of this library, and must not block for long (it holds up the
 * library's thread). */
typedef void (*ct_zk_log_fn)(void *arg, const char *msg);

typedef struct ct_zk_client ct_zk_client;

/* Options of ct_zk_connect(); zero (or NULL) means the defaults.
 *
 * Staying ABI-safe as fields are added (at the end), as
 * ct_net_client_options does: `size` is the size of the struct the caller
 * was compiled with.  Write
 *     ct_zk_options o = CT_ZK_OPTIONS_INIT;
 * or call ct_zk_options_init(&o).  A struct zero-initialised without a size
 * (size 0) is read as CT_ZK_OPTIONS_SIZE_1, the fields of this version;
 * any other size this library does not know is -EINVAL, and nothing else
 * in the struct is read. */
typedef struct ct_zk_options {
  size_t size; /* see above: CT_ZK_OPTIONS_INIT */
  /* Session timeout to ask for (default 10 s).  Clamped on the client
   * side to [200 ms, 600 s] (a request for a few ms leaves the ZooKeeper
   * library unable to connect); the ensemble then clamps it to its own
   * [2, 20] x tickTime.  ct_zk_session_timeout() gives the negotiated
   * value, and a log line says so when it differs from the request. */
  int64_t session_timeout_ns;
  /* How long the ensemble may be unreachable (no connection to a member
   * that is part of a quorum) before every proxy that is not triggered yet
   * is triggered locally with CT_REASON_UNREACHABLE.  Default (0): three
   * negotiated session timeouts.  Negative: never.  Any positive value
   * up to INT64_MAX is valid (past the clock's range: never).  The
   * unreachable trigger is local only: it is never written to the
   * ensemble. */
  int64_t unreachable_ns;
  /* Digest credentials ("user:password"), read from this file (one line;
   * the file must give no permission to group or others: mode 0600 or
   * stricter).  NULL: from the
   * file named by $CT_ZK_AUTH_FILE, else from $CT_ZK_AUTH, else none.
   * Never from an argument.  With credentials, the nodes a client creates
   * can be changed only by holders of the same credentials (everybody may
   * still read them); without, every node is open to everybody. */
  const char *auth_file;
  /* Ignore $CT_ZK_AUTH and $CT_ZK_AUTH_FILE. */
  bool no_auth_env;
  /* Recorded as the origin name of the triggers this client writes
   * (default: the program's name, program_invocation_short_name). */
  const char *origin_name;
  ct_zk_log_fn log;
  void *log_arg;
  /* Lines of the ZooKeeper library itself (hundreds a second during an
   * election) are dropped unless this is set; they then go to `log` with
   * the prefix "zookeeper: " (to stderr if `log` is NULL).  The library
   * has one log sink per process: the last client connected with this set
   * receives the lines of every client, until it is freed.  Those lines
   * are delivered on the library's threads: see ct_zk_log_fn. */
  bool library_log;
  /* Credentials the program already holds ("user:password", copied; for
   * a program that reads its own secret file, as the cancel-token command
   * does with --secret-file).  Takes precedence over auth_file and the
   * environment. */
  const char *auth;
} ct_zk_options;

/* The size of the first layout (0.2.0): every field above. */
#define CT_ZK_OPTIONS_SIZE_1 \
  (offsetof(ct_zk_options, auth) + sizeof(const char *))
/* An initialiser: the size set, every other field zero (the defaults). */
#define CT_ZK_OPTIONS_INIT {.size = sizeof(ct_zk_options)}

/* Zero *o and set o->size, as CT_ZK_OPTIONS_INIT.  NULL does nothing.
 * Ownership: o is the caller's.  Any thread; never blocks; may be called
 * from a callback. */
CT_ZK_EXTERN void ct_zk_options_init(ct_zk_options *o);

/* Parse `address` (zk://...), open a session and wait until it is
 * established, then start the client's thread.  The chroot need not exist
 * (ct_zk_publish() creates it).
 * Errors: -EINVAL (NULL, not a zk:// address, malformed address or
 * options, a bracketed IPv6 member, a chroot that is not valid UTF-8 or
 * holds a character ZooKeeper refuses (see the top of this file); errbuf
 * says which), -ENAMETOOLONG, -EACCES (credentials file unreadable or
 * open to others), -EPROTO (credentials not "user:password", or holding
 * a newline -- the same rule for opts.auth, a file and $CT_ZK_AUTH),
 * -ETIMEDOUT (no member of the ensemble answered before the deadline:
 * unreachable, or no quorum), -ENOENT (a host name did not resolve, or
 * the credentials file does not exist),
 * -ENOMEM, -EAGAIN (no thread).  A connect never waits past its deadline;
 * with CT_FOREVER it waits until a quorum answers.  If errbuf is not NULL it
 * receives a one-line explanation of a failure (at most errlen bytes with
 * the NUL).
 * Ownership: address and options copied; *out owned by the caller, freed
 * with ct_zk_client_free().  Threads: any.  Blocking: until connected or
 * the deadline. */
CT_ZK_EXTERN int ct_zk_connect(ct_zk_client **out, const char *address,
                               const ct_zk_options *opts, char *errbuf,
                               size_t errlen, int64_t deadline);

/* The session timeout negotiated with the ensemble, in ns (that of the
 * current session; a replaced session may get another); -EINVAL for NULL.
 * Threads: any; never blocks; callbacks: yes. */
CT_ZK_EXTERN int64_t ct_zk_session_timeout(const ct_zk_client *c);

/* Publish token t under `name`, owned by this client's session: creates
 * the chroot and the parents of name if missing, then, in one atomic
 * operation, the token node and the owner node (ephemeral: it lives as
 * long as this session).  From then on:
 *  - a local trigger of t (ct_token_trigger(), a deadline, a chained
 *    parent) is written to the ensemble as the token's trigger record by
 *    the client's thread, asynchronously, and first-wins: if another
 *    trigger was recorded first, t keeps its own local reason while the
 *    fleet reports the recorded one (ct_zk_trigger() avoids that window).
 *    The record holds t's reason and detail as they are, backend-only
 *    reasons included: when t fired because its parent is a proxy that
 *    reported CT_REASON_OWNER_LOST, CT_REASON_UNREACHABLE or
 *    CT_REASON_SHUTDOWN (or the application passed one of those to
 *    ct_token_trigger_reason()), the record says that reason, and its
 *    cause is the name of the token that fired (that parent, or t), so
 *    proxies report it as triggered_token.  The one trigger of t that is
 *    not written is one that happens after this client's session is
 *    closed: ct_zk_client_free() triggering a proxy t is chained to (the
 *    fleet then records "owner lost");
 *  - a trigger recorded by anybody else triggers t, with the recorded
 *    reason and detail, on the client's thread;
 *  - when this session ends (process killed, frozen past the session
 *    timeout), proxies record "owner lost"; if this process lives on, the
 *    client's thread reads that record on its next session and triggers t
 *    with it (CT_REASON_OWNER_LOST, or a trigger that won before).
 * Errors: -EINVAL (NULL, bad name), -ENAMETOOLONG (name, or t's name,
 * longer than CT_ZK_NAME_MAX), -EEXIST (a token node of that name exists,
 * whether owned, triggered or orphaned: tokens are one-shot),
 * -EACCES (the nodes belong to other credentials), -ETIMEDOUT (the request
 * may still be carried out), -ECONNRESET (the session was lost during the
 * call), -ENOMEM, -EDEADLK (called on the client's thread).
 * Ownership: name copied; on success the client takes a reference on t
 * until ct_zk_client_free().  Threads: any except the client's.  Blocking: a few
 * round trips, at most until the deadline. */
CT_ZK_EXTERN int ct_zk_publish(ct_zk_client *c, const char *name,
                               ct_token *t, int64_t deadline);

/* Attach a new proxy to the token published under `name`.  The proxy is a
 * real ct_token (ct_token_is_proxy() is true) named after the owner's
 * token (ct_token_name() of the published token):
 *  - ct_token_triggered() is a local atomic load; waits, the descriptor,
 *    callbacks, deadlines, chaining *with* it and child tokens work as for
 *    any token; chaining *from* it fails with -ENOTSUP.
 *  - If a trigger is recorded already, the proxy is triggered before this
 *    call returns, with the recorded reason and detail.
 *  - When a trigger is recorded later (by anybody), the client's thread
 *    triggers the proxy with it; ct_token_triggered_token(proxy) names the
 *    token the trigger-er triggered (the proxy itself when that was the
 *    owner's token or a proxy of it).
 *  - A local trigger of the proxy is written to the ensemble
 *    asynchronously, first-wins, as for an owner's token (above), except
 *    with a backend-only reason (CT_REASON_OWNER_LOST,
 *    CT_REASON_UNREACHABLE, CT_REASON_SHUTDOWN: what this client's own
 *    view of the ensemble says, never a fact about the token), which
 *    stays local to the proxy and its siblings are not told.
 *  - When the owner's session ends and nothing was recorded yet, the
 *    client that sees it records "owner lost" (first-wins) and every proxy
 *    reports CT_REASON_OWNER_LOST.  Without the credentials of an ACL'd
 *    token the record cannot be written: such a proxy is then triggered
 *    locally with CT_REASON_OWNER_LOST.
 *  - When the ensemble has been unreachable for longer than the tolerance
 *    (ct_zk_options.unreachable_ns), the proxy is triggered locally with
 *    CT_REASON_UNREACHABLE.
 *  - Callbacks registered on a proxy run on the client's thread (or in
 *    this call when it is triggered already, or in ct_zk_trigger(), or in
 *    ct_zk_client_free(), which triggers proxies not triggered yet with
 *    CT_REASON_SHUTDOWN on the caller's thread); they
 *    must not call the blocking functions of this client (those return
 *    -EDEADLK there) and must not free it.
 * Every call gives a new proxy; proxies of one name share one watch.
 * Errors: -EINVAL, -ENAMETOOLONG, -ENOENT (no token under that name, or
 * no chroot), -EPROTO (the node is not a cancel-token token), -ETIMEDOUT,
 * -ECONNRESET, -ENOMEM, -EDEADLK (the client's thread).
 * Ownership: *out is a new reference; it stays a valid token after
 * ct_zk_client_free() (which triggers it with CT_REASON_SHUTDOWN if it
 * was not triggered).  Threads: any except the client's.  Blocking: two
 * or three round trips, at most until the deadline. */
CT_ZK_EXTERN int ct_zk_get(ct_zk_client *c, ct_token **out, const char *name,
                           int64_t deadline);

/* Trigger the token `tok` (a token this client published, or a proxy of
 * this client) across the fleet and wait until the trigger is recorded:
 * creates the trigger record (retrying after a lost connection, and
 * reading the record when it finds one: it may be its own earlier
 * attempt), then triggers tok and its sibling proxies locally with the
 * recorded trigger, so that tok reports exactly what every other proxy
 * reports.  Returns 1 if the recorded trigger is this client's and no
 * earlier call of this client has returned 1 for it, else 0: so across
 * the fleet at most one call returns 1 for a token.  A call that returns
 * -ETIMEDOUT may still have won (its create may be applied later); the
 * next ct_zk_trigger() of the same token in this client then returns 1
 * (and records_won counts it as soon as this client reads the record).
 * If no later call is made, the record's origin tells who won:
 * ct_zk_status_get() gives its pid, host and origin name (and the token
 * reports the recorded reason).  Two concurrent calls of one client on
 * one token may see either of them return 1.
 * reason/detail as in ct_token_trigger_reason()
 * (CT_REASON_TRIGGER, 0 for a plain trigger; the backend-only reasons
 * CT_REASON_OWNER_LOST, CT_REASON_UNREACHABLE, CT_REASON_SHUTDOWN are
 * -EINVAL).
 * Errors: -EINVAL (NULL, tok not of this client, bad reason/detail),
 * -EACCES (the token is ACL'd to other credentials), -ETIMEDOUT (the
 * record may still be written), -ECONNRESET, -ENOMEM, -EDEADLK.
 * Ownership: tok borrowed.  Threads: any except the client's.  Blocking:
 * one or two round trips (more while a leader is elected), at most until
 * the deadline; runs tok's callbacks in this thread. */
CT_ZK_EXTERN int ct_zk_trigger(ct_zk_client *c, ct_token *tok,
                               ct_reason reason, int detail,
                               int64_t deadline);

/* The state of a token as recorded in the ensemble, read afresh. */
typedef struct ct_zk_status {
  bool owned;        /* the owner's session is alive */
  bool triggered;    /* a trigger is recorded */
  ct_reason reason;  /* the recorded reason, CT_REASON_NONE if none */
  int detail;
  long long pid;     /* origin of the record: process id, */
  char host[256];    /* host name, */
  char origin[256];  /* origin name (ct_zk_options.origin_name), */
  char cause[CT_ZK_NAME_MAX + 1]; /* name of the token triggered there */
  char owner_host[256]; /* the owner, while owned: host and pid */
  long long owner_pid;
} ct_zk_status;

/* Read the state of the token `name` into *st.  Returns 0, or -EINVAL,
 * -ENAMETOOLONG, -ENOENT, -EPROTO, -ETIMEDOUT, -ECONNRESET, -ENOMEM,
 * -EDEADLK.  Ownership: st is the caller's.  Threads: any except the
 * client's.  Blocking: three round trips, at most until the deadline. */
CT_ZK_EXTERN int ct_zk_status_get(ct_zk_client *c, const char *name,
                                  ct_zk_status *st, int64_t deadline);

/* Call fn(arg, name, st) for every token under the chroot (names as
 * given to ct_zk_publish(), without the chroot; nested paths included), in
 * no particular order, on the calling thread.  Reads each token afresh.
 * What is listed: every node under the chroot whose data is a
 * cancel-token token, read with this client's credentials.  What is not:
 * nodes that are not tokens (plain parents such as "jobs" in "jobs/1",
 * other programs' nodes: their children are still visited), a token's
 * own '@' nodes, /zookeeper (chroot-less clients), and two kinds of
 * foreign nodes that are skipped with everything below them, each with
 * one line to ct_zk_options.log: a node this client may not read
 * (another ACL), and a node whose name no token can have (see the top of
 * this file, e.g. a part over 255 bytes).  A token deleted during the
 * walk is not listed.
 * Returns the number listed, or -EINVAL, -ETIMEDOUT, -ECONNRESET,
 * -ENOMEM, -ENOSPC (more than 100,000 nodes), -EACCES (the chroot itself
 * cannot be read), -EDEADLK.
 * Ownership: name and st live until fn returns.  Threads: any except the
 * client's; fn must not call this client's blocking functions.  Blocking:
 * a few round trips per node, at most until the deadline. */
typedef void (*ct_zk_list_fn)(void *arg, const char *name,
                              const ct_zk_status *st);
CT_ZK_EXTERN int ct_zk_list(ct_zk_client *c, ct_zk_list_fn fn, void *arg,
                            int64_t deadline);

/* Counters, for tests and monitoring (relaxed loads: each exact, not a
 * consistent snapshot).  Threads: any; never blocks; callbacks: yes. */
typedef struct ct_zk_stats {
  uint64_t sessions;      /* sessions established (1 + replacements) */
  uint64_t reconnects;    /* connections re-established within a session */
  uint64_t retries;       /* requests retried after a lost connection */
  /* Trigger records this client created, counted when this client learns
   * it: at once for a create that succeeded, later (when the record is
   * read, by a watch, a ct_zk_get() or a ct_zk_trigger()) for an attempt
   * whose reply was lost or came after its deadline. */
  uint64_t records_won;
  uint64_t unreachable;   /* times the tolerance ran out */
} ct_zk_stats;
CT_ZK_EXTERN void ct_zk_get_stats(const ct_zk_client *c, ct_zk_stats *st);

/* Close the session (the owner nodes of the tokens it published vanish,
 * and proxies elsewhere then record "owner lost" for tokens not
 * triggered), stop the client's thread, trigger this client's proxies
 * that are not triggered yet with CT_REASON_SHUTDOWN, and free the client.
 * Published tokens are not triggered; the client drops its references
 * on them.
 * Triggers forwarded but not yet written are dropped (use ct_zk_trigger()
 * to know a trigger is recorded).  NULL does nothing.  Ownership: frees c.
 * Threads: any except the client's; no other call on c may be running or
 * start.  Blocking: until the client's thread has ended and the session
 * is closed (one round trip). */
CT_ZK_EXTERN void ct_zk_client_free(ct_zk_client *c);

#ifdef __cplusplus
}
#endif
#endif /* CANCELTOKEN_ZK_H */
