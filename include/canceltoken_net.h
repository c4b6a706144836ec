/* SPDX-License-Identifier: MIT
 *
 * canceltoken_net.h -- tokens across process boundaries: a token server that
 * owns real tokens and serves them by name over a Unix domain socket or TCP,
 * and a client whose proxy tokens behave like local ones.  The wire protocol
 * is specified in docs/PROTOCOL.md; docs/net.md is the user's guide.
 *
 * Library: canceltoken_net (links canceltoken and libcrypto).
 *
 * Conventions are those of canceltoken.h: negative errno results, absolute
 * CLOCK_MONOTONIC deadlines in ns as the last argument (CT_FOREVER = -1
 * never times out, 0 does not block), and every declaration says what it
 * does with its pointers ("Ownership"), from which threads it may be called
 * and whether it blocks ("Thread-safety", "Callbacks").
 *
 * Any number of servers and clients may live in one process.  Each server
 * has its own thread (or is driven by the caller's thread with
 * ct_net_server_serve_forever()).  The clients of a process share one
 * thread, "the clients' thread": started by the first
 * ct_net_client_connect() and stopped by the ct_net_client_free() of the
 * last client; it holds every client's socket in one epoll set, so that a
 * notice to many clients wakes one thread, not one per client.  Clients
 * are otherwise independent (own lock, proxies, requests, connection
 * loss).  After fork() the child has no clients' thread: clients inherited
 * from the parent are not served there and may only be freed (which does
 * not disturb the parent's); clients connected in the child start its own.
 *
 * Addresses (servers and clients alike):
 *   "/run/app/tokens.sock"  a Unix domain socket path: anything containing a
 *                           '/' or no ':' at all
 *   "127.0.0.1:5001"        TCP over IPv4, HOST:PORT; HOST may be a name
 *   "[::1]:5001"            TCP over IPv6
 *   ":5001"                 empty HOST: loopback (127.0.0.1), never "all
 *                           interfaces"
 * Port 0 asks a server for an ephemeral port; ct_net_server_address() tells
 * which one it got.  IPv6 needs the brackets.  "zk://..." is a ZooKeeper
 * address (canceltoken_zk.h), and any other "SCHEME://" is no address at
 * all: both are -EINVAL here.  A path is at most 107 bytes, a host 255
 * (-ENAMETOOLONG beyond).
 */
#ifndef CANCELTOKEN_NET_H
#define CANCELTOKEN_NET_H

#include "canceltoken.h"

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CT_NET_BUILDING_LIBRARY) && defined(__GNUC__)
#define CT_NET_EXTERN __attribute__((visibility("default")))
#else
#define CT_NET_EXTERN
#endif

/* The protocol versions this library speaks (docs/PROTOCOL.md). */
#define CT_NET_PROTOCOL_VERSION 1

/* Longest token name that can be served, in bytes.  Longer cause names
 * (composed chain names) are cut on the wire and end with "...". */
#define CT_NET_NAME_MAX 4096

/* Where the library reports what it does not return to a caller (a peer
 * dropped, a handshake refused): one line, without a trailing newline.
 * The default writes "cancel-token: <msg>" to stderr.  Called from the
 * server's (or client's) thread; must not call back into that server or
 * client. */
typedef void (*ct_net_log_fn)(void *arg, const char *msg);

/* What kind of address `address` is, by the one parser every backend,
 * the cancel-token command and the Python package share (the rules above,
 * and "zk://HOST:PORT[,HOST:PORT...][/CHROOT]" for ZooKeeper):
 * CT_NET_ADDRESS_UNIX, CT_NET_ADDRESS_TCP or CT_NET_ADDRESS_ZK; or -EINVAL
 * (NULL, empty, malformed) / -ENAMETOOLONG with a one-line reason in err
 * (at most errlen bytes with the NUL; err may be NULL).  Syntax only: no
 * name is resolved and nothing is connected, so a valid TCP address may
 * still fail to resolve.  Ownership: address borrowed.  Any thread;
 * callbacks: yes; never blocks. */
#define CT_NET_ADDRESS_UNIX 1
#define CT_NET_ADDRESS_TCP 2
#define CT_NET_ADDRESS_ZK 3
CT_NET_EXTERN int ct_net_address_kind(const char *address, char *err,
                                      size_t errlen);

/* ------------------------------------------------------------------------ */
/* Server                                                                   */

typedef struct ct_net_server ct_net_server;

/* Options of ct_net_server_new().  Every zero field means "the default";
 * NULL means all defaults.
 *
 * Staying ABI-safe as fields are added (at the end): `size` is the size of
 * the struct the caller was compiled with.  Start from
 *     ct_net_server_options o = CT_NET_SERVER_OPTIONS_INIT;
 * or ct_net_server_options_init(&o), which set it to this header's
 * sizeof(ct_net_server_options); a library built with a later header then
 * reads only the fields the caller knows, and takes the defaults for the
 * rest.  A struct zero-initialised without a size (size 0, as every caller
 * before the field existed) is read as the first sized layout,
 * CT_NET_SERVER_OPTIONS_SIZE_1 bytes: every field up to log_arg, not the
 * later ones (set size to use those).  Any other size that is not one of
 * this library's layouts is -EINVAL (a struct from a newer header than
 * the library, or not an options struct). */
typedef struct ct_net_server_options {
  size_t size; /* see above: CT_NET_SERVER_OPTIONS_INIT */
  /* Shared secret (any bytes, copied).  When set, every client must prove
   * it knows the secret (HMAC-SHA256 challenge-response with fresh nonces)
   * and the server proves it too.  Required to bind TCP to anything but a
   * loopback address. */
  const void *secret;
  size_t secret_len;
  /* Unix sockets: peers whose uid differs from the server's effective uid
   * are refused (SO_PEERCRED) unless listed here or allow_any_uid is set.
   * The socket file is created mode 0600 either way, so other users also
   * need the file's mode changed (or a group) to reach it. */
  const uid_t *allowed_uids;
  size_t n_allowed_uids;
  bool allow_any_uid;
  /* Connections beyond this are refused with an error frame (default
   * 65536). */
  size_t max_clients;
  /* Replies queued for a client that does not read beyond this many bytes
   * drop it (default 1 MiB).  Trigger notices are never counted against
   * this: a notice is never lost for a client that reads. */
  size_t max_output;
  /* Proxies one connection may hold (default 4096). */
  size_t max_proxies_per_client;
  /* A peer must complete the handshake within this (default 10 s), send
   * each frame within this once started (default 10 s), and read what is
   * queued for it within this (default 30 s); else it is dropped.  0:
   * the default; negative: -EINVAL; any positive value up to INT64_MAX
   * is valid. */
  int64_t handshake_timeout_ns;
  int64_t frame_timeout_ns;
  int64_t stall_timeout_ns;
  ct_net_log_fn log;
  void *log_arg;
  /* ---- since CT_NET_SERVER_OPTIONS_SIZE_2 (read only when size says so) */
  /* Connections still in the handshake at one time beyond this are refused
   * with an error frame (default: max_clients, no limit of their own): a
   * bound on what peers without the secret can hold. */
  size_t max_handshakes;
} ct_net_server_options;

/* The layouts of ct_net_server_options this library reads. */
#define CT_NET_SERVER_OPTIONS_SIZE_1 \
  offsetof(ct_net_server_options, max_handshakes)
#define CT_NET_SERVER_OPTIONS_SIZE_2 sizeof(ct_net_server_options)
/* An initialiser: the size set, every other field zero (the defaults). */
#define CT_NET_SERVER_OPTIONS_INIT {.size = sizeof(ct_net_server_options)}

/* Zero *o and set o->size, as CT_NET_SERVER_OPTIONS_INIT.  NULL does
 * nothing.  Ownership: o is the caller's.  Any thread; callbacks: yes;
 * never blocks. */
CT_NET_EXTERN void ct_net_server_options_init(ct_net_server_options *o);

/* Create a server listening at `address`: the socket is bound and
 * listening when this returns, but no connection is served until
 * ct_net_server_start() or ct_net_server_serve_forever().
 *   Unix: the socket file is created mode 0600 (before listen(), so nobody
 *   can connect while it is more open).  A stale socket file left by a dead
 *   server (connecting to it is refused) is replaced; a live one gives
 *   -EADDRINUSE, also when its owner does not accept (its backlog full:
 *   the probe does not wait).  The file is removed by ct_net_server_free().
 *   TCP: a host that is not a loopback address needs a secret (-EPERM
 *   otherwise); SO_REUSEADDR is set.
 * Errors: -EINVAL (NULL out or address, bad address or options, an
 * options size that is not one of this library's),
 * -ENAMETOOLONG (Unix path or host too long), -EPERM (non-loopback TCP without a
 * secret), -EADDRINUSE, -EACCES, -EADDRNOTAVAIL, -ENOENT (host not found),
 * -ENOMEM, -EMFILE/-ENFILE, or another errno of socket(2)/bind(2)/listen(2).
 * Ownership: address and options are copied; *out is owned by the caller,
 * who frees it with ct_net_server_free().  Any thread; does not block
 * (except for name resolution of a TCP host). */
CT_NET_EXTERN int ct_net_server_new(ct_net_server **out, const char *address,
                                    const ct_net_server_options *opts);

/* The address the server listens at, with the real port for port 0
 * ("127.0.0.1:41234", "[::1]:41234" or the socket path).  Writes at most
 * len bytes including the NUL; returns the full length, as snprintf().
 * Errors: -EINVAL.  Ownership: s borrowed; buf is the caller's.  Any
 * thread; callbacks: yes; never blocks. */
CT_NET_EXTERN int ct_net_server_address(const ct_net_server *s, char *buf,
                                        size_t len);

/* Serve token t under `name` (1..CT_NET_NAME_MAX bytes of UTF-8; it need
 * not be t's own name).  May be called before or while the server runs; a
 * token may be served under several names.  When t is triggered -- by its
 * owner in any thread, by a deadline, or by a client -- every client
 * holding a proxy of it is told at once.  Errors: -EINVAL (NULL, bad
 * name), -ENAMETOOLONG, -EEXIST (name taken), -ENOMEM, -ESHUTDOWN (the
 * server has stopped).  Ownership: name copied; the server takes its own
 * reference on t until ct_net_server_free().  Any thread; never blocks for
 * long; may be called from any callback (if t is already triggered, the
 * server's hook on it just runs at once).  Callbacks of a served token may
 * run on the server's thread when a client triggers it: keep them short,
 * and do not call ct_net_server_free() from them. */
CT_NET_EXTERN int ct_net_server_add(ct_net_server *s, const char *name,
                                    ct_token *t);

/* Run the server on a thread of its own.  Returns 0, -EBUSY (already
 * running or was run), -EAGAIN (no thread).  Ownership: s stays the
 * caller's.  Any thread; callbacks: yes; never blocks (creates a thread). */
CT_NET_EXTERN int ct_net_server_start(ct_net_server *s);

/* Run the server on the calling thread until ct_net_server_stop() is
 * called (from another thread, a signal handler or a callback).  Returns 0
 * after a stop, -EBUSY if it is already running or has run, or a fatal
 * errno of epoll(7) (then it has stopped too).  When it returns, every
 * connection has been sent ERROR SHUTDOWN and closed (a client that reads
 * it triggers its proxies with CT_REASON_SHUTDOWN, not
 * CT_REASON_OWNER_LOST, which is for a server that died; a client whose
 * socket buffer is full may see only the close) and the listening socket
 * is closed and unlinked.  Blocks; do not call it from a callback. */
CT_NET_EXTERN int ct_net_server_serve_forever(ct_net_server *s);

/* Ask the server to stop.  Returns at once; the serving thread stops within
 * one pass of its loop.  Idempotent; a server stopped before it ran never
 * runs.  ASYNC-SIGNAL-SAFE (an atomic store and a write(2)); any thread;
 * callbacks: yes. */
CT_NET_EXTERN void ct_net_server_stop(ct_net_server *s);

/* Counters, for tests and monitoring.  Each is read with a relaxed load:
 * the values are individually exact but not a consistent snapshot.
 * ct_net_server_get_stats() fills the caller's *st.  Any thread;
 * callbacks: yes; never blocks. */
typedef struct ct_net_server_stats {
  uint64_t accepted; /* connections accepted */
  uint64_t active;   /* connections open now (including handshaking) */
  uint64_t ready;    /* connections past the handshake, open now */
  uint64_t dropped;  /* connections dropped for misbehaviour or limits */
  uint64_t refused;  /* refused at the handshake (uid, secret, version) */
  uint64_t proxies;  /* proxies held by open connections (subscriptions) */
} ct_net_server_stats;
CT_NET_EXTERN void ct_net_server_get_stats(const ct_net_server *s,
                                           ct_net_server_stats *st);

/* Stop the server (as ct_net_server_stop()), wait for the thread started by
 * ct_net_server_start() to finish, close everything, unlink the Unix socket,
 * and drop the server's references on its tokens.  If the caller drives
 * the server with ct_net_server_serve_forever(), that call must have
 * returned first.  NULL does nothing.  Ownership: frees s.  Blocks until the
 * server thread has finished and until a server hook running in another
 * thread has returned; do not call it from a callback of a served token. */
CT_NET_EXTERN void ct_net_server_free(ct_net_server *s);

/* ------------------------------------------------------------------------ */
/* Client and proxy tokens                                                  */

typedef struct ct_net_client ct_net_client;

/* Options of ct_net_client_connect(); zero (or NULL) means the defaults.
 * `size` works as in ct_net_server_options: CT_NET_CLIENT_OPTIONS_INIT or
 * ct_net_client_options_init(); 0 is CT_NET_CLIENT_OPTIONS_SIZE_1 (the
 * fields below); another size not of this library is -EINVAL. */
typedef struct ct_net_client_options {
  size_t size; /* see above: CT_NET_CLIENT_OPTIONS_INIT */
  /* The server's secret, if it has one.  A client with a secret refuses a
   * server that does not prove it knows the same secret. */
  const void *secret;
  size_t secret_len;
  /* When the connection is lost, proxies are triggered with
   * CT_REASON_OWNER_LOST (the default).  With this set they are left as
   * they are, and only ct_net_client_error() and ct_net_client_lost_token()
   * report the loss. */
  bool keep_proxies_on_loss;
  /* If > 0, ping the server after this much silence and declare the
   * connection lost after three times as much (for peers that vanish
   * without closing, e.g. across a network).  Any value up to INT64_MAX
   * is valid (times past the clock's range mean never).  Default 0: a
   * closed or reset connection is noticed at once without it. */
  int64_t heartbeat_ns;
  ct_net_log_fn log;
  void *log_arg;
} ct_net_client_options;

#define CT_NET_CLIENT_OPTIONS_SIZE_1 sizeof(ct_net_client_options)
#define CT_NET_CLIENT_OPTIONS_INIT {.size = sizeof(ct_net_client_options)}

/* Zero *o and set o->size, as CT_NET_CLIENT_OPTIONS_INIT.  NULL does
 * nothing.  Ownership: o is the caller's.  Any thread; callbacks: yes;
 * never blocks. */
CT_NET_EXTERN void ct_net_client_options_init(ct_net_client_options *o);

/* Connect to the server at `address` and complete the handshake (version,
 * secret).  The client then joins the clients' thread (started if need
 * be), which receives the server's notices and triggers proxies.
 * Errors: -EINVAL (NULL, bad address or options, an options size not of
 * this library), -ENOENT (no socket file, host not found),
 * -ECONNREFUSED, -EACCES (socket file permission, or authentication
 * failed), -EPERM (the server refused our uid), -EPROTONOSUPPORT (no
 * common protocol version), -EPROTO (not a cancel-token server, or a bad
 * frame), -ETIMEDOUT, -ENOMEM, -EMFILE/-ENFILE, -EAGAIN (no thread), or
 * another errno of connect(2).  If errbuf is not NULL it receives a
 * one-line explanation of a failure (at most errlen bytes with the NUL).
 * Ownership: address and options copied; *out owned by the caller (free
 * with ct_net_client_free()).  Any thread; blocks until the deadline. */
CT_NET_EXTERN int ct_net_client_connect(ct_net_client **out,
                                        const char *address,
                                        const ct_net_client_options *opts,
                                        char *errbuf, size_t errlen,
                                        int64_t deadline);

/* Get a proxy of the token served under `name`.  The proxy is a real
 * ct_token (ct_token_is_proxy() is true) named after the owner's token
 * (ct_token_name() of the served token, as the reference's proxy.name is;
 * `name` is only what it is served under):
 *  - ct_token_triggered() is a local atomic load (no round trip); waits,
 *    the descriptor, callbacks, chaining *with* it and child tokens work as
 *    for any token; chaining *from* it fails with -ENOTSUP
 *    (ct_token_chain(out, proxy, x)), and it has no serialized form.
 *  - When the owner's token is triggered (by anybody), the server pushes a
 *    notice and the clients' thread triggers the proxy with the same reason
 *    and detail; ct_token_triggered_token(proxy) then names the server-side
 *    token that fired (a local stand-in token of that name, itself
 *    triggered, or the proxy itself when that is the served token).
 *  - Any local trigger of the proxy (ct_token_trigger(), a deadline set on
 *    it, ...) is forwarded to the server, asynchronously, with its reason:
 *    the owner's token is triggered too.  Use ct_net_client_trigger() to
 *    know when the server has done it.  (For a local-only deadline, set it
 *    on a child: ct_token_new_child(&c, "req", proxy).)
 *  - Callbacks registered on a proxy run on the clients' thread when the
 *    server triggers it; they must not call the blocking functions of any
 *    client (those return -EDEADLK there), since that thread reads every
 *    client's replies.  They may free another client, not their own.
 *  - When the connection is lost, the proxy is triggered (unless
 *    keep_proxies_on_loss) with CT_REASON_SHUTDOWN if the server said it
 *    was stopping in order (ERROR SHUTDOWN: ct_net_server_stop(),
 *    ct_net_server_free(), "cancel-token serve" ending on a signal), and
 *    with CT_REASON_OWNER_LOST otherwise: the server died or was killed,
 *    the connection was reset or closed without a word, the heartbeat
 *    went unanswered, or the server broke the protocol.  So it is, with
 *    CT_REASON_OWNER_LOST, by ct_net_client_free().
 * Getting the same name twice gives the same proxy.
 * Errors: -EINVAL, -ENAMETOOLONG, -ENOENT (no token of that name),
 * -ENOSPC (the server's limit of proxies per client), -ETIMEDOUT,
 * -ENOMEM, -EDEADLK (called on the clients' thread), or the connection's
 * error (ct_net_client_error()) if it is lost.  Ownership: *out is a new
 * reference; it stays a valid token after ct_net_client_free().  Any
 * thread; blocks for one round trip. */
CT_NET_EXTERN int ct_net_client_get(ct_net_client *c, ct_token **out,
                                    const char *name, int64_t deadline);

/* Trigger the owner's token behind `proxy` and wait until the server
 * confirms.  Returns 1 if this call triggered the owner's token, 0 if it
 * was already triggered.  In both cases the proxy is triggered when this
 * returns (the notice precedes the confirmation on the wire), as is every
 * other proxy of that token soon after.  reason/detail as in
 * ct_token_trigger_reason() (CT_REASON_TRIGGER, 0 for a plain trigger);
 * the reasons only a backend gives (CT_REASON_OWNER_LOST,
 * CT_REASON_UNREACHABLE, CT_REASON_SHUTDOWN) may not be sent: a peer that
 * could send "owner lost" would make every proxy report a live owner as
 * dead (the server refuses them too, docs/PROTOCOL.md).  A local trigger
 * of a proxy with one of them is not forwarded.
 * Errors: -EINVAL (NULL, not a proxy of this client, bad reason/detail,
 * a backend-only reason),
 * -ETIMEDOUT (the request may still be carried out), -EDEADLK, -ENOMEM, or
 * the connection's error.  Ownership: proxy borrowed.  Any thread; blocks
 * for one round trip. */
CT_NET_EXTERN int ct_net_client_trigger(ct_net_client *c, ct_token *proxy,
                                        ct_reason reason, int detail,
                                        int64_t deadline);

/* Completion of an asynchronous request: result is what the blocking form
 * would have returned. */
typedef void (*ct_net_done_fn)(void *arg, int result);

/* The non-blocking form of ct_net_client_trigger(), for event loops: sends
 * the request and returns 0; done(arg, result) is then called exactly
 * once, on the clients' thread (or in ct_net_client_free() with
 * -ESHUTDOWN, or on the thread that loses the connection with its error).
 * To wake a loop, signal it from done (write an eventfd, or trigger a
 * token and poll ct_token_fd()).  On an error return done is never called.
 * Errors: -EINVAL (as for ct_net_client_trigger()), -ENOMEM, the
 * connection's error.  Ownership: proxy
 * borrowed; arg passed through.  Any thread, including the clients' thread
 * and callbacks; never blocks. */
CT_NET_EXTERN int ct_net_client_trigger_async(ct_net_client *c,
                                              ct_token *proxy,
                                              ct_reason reason, int detail,
                                              ct_net_done_fn done, void *arg);

/* One served token, as listed by ct_net_client_list().  The strings live
 * until the listing callback returns. */
typedef struct ct_net_token_info {
  const char *name;  /* the name it is served under */
  bool triggered;
  ct_reason reason;  /* CT_REASON_NONE if not triggered */
  int detail;
  const char *cause; /* name of the token that fired, "" if none */
} ct_net_token_info;
typedef void (*ct_net_list_fn)(void *arg, const ct_net_token_info *info);

/* Call fn(arg, info) for every token the server serves, in the order they
 * were added, on the calling thread.  Returns the number listed, or
 * -ETIMEDOUT, -EDEADLK, -ENOMEM, -EPROTO, the connection's error.  Blocks
 * for a round trip per page of results.  Ownership: fn and arg are used
 * during the call only.  Any thread except the clients' I/O thread (from a
 * proxy callback it returns -EDEADLK); fn must not call this client's
 * blocking functions. */
CT_NET_EXTERN int ct_net_client_list(ct_net_client *c, ct_net_list_fn fn,
                                     void *arg, int64_t deadline);

/* A token triggered (reason CT_REASON_OWNER_LOST, whatever the cause; the
 * cause is ct_net_client_error()) when the connection is lost or the
 * client is freed -- whatever keep_proxies_on_loss says.
 * Ownership: borrowed, valid until ct_net_client_free() (take a reference
 * to keep it longer).  Any thread; callbacks: yes; never blocks. */
CT_NET_EXTERN ct_token *ct_net_client_lost_token(ct_net_client *c);

/* 0 while connected, else why the connection was lost: -ESHUTDOWN (the
 * server stopped in order and said so, or the client was freed),
 * -ECONNRESET (closed or reset by the server without a word: it died, or
 * it closed the connection for another error), -ETIMEDOUT (heartbeat),
 * -EPROTO (bad frame from the server), -ENOMEM.  Ownership: borrowed.
 * Any thread; callbacks: yes; never blocks. */
CT_NET_EXTERN int ct_net_client_error(const ct_net_client *c);

/* Close the connection, leave the clients' thread (stopping it if this is
 * the last client), trigger the proxies that
 * are not triggered yet with CT_REASON_OWNER_LOST (unless
 * keep_proxies_on_loss), complete pending asynchronous requests with
 * -ESHUTDOWN, and free the client.  Proxies the caller holds stay valid
 * tokens but are no longer connected: triggering one afterwards is local
 * only.  NULL does nothing.  Blocks until the clients' thread is done with
 * this client: no callback of this client runs after it returns (it waits
 * for one that is running on the clients' thread, and for that thread to
 * end if this was the last client).  Any thread, including the clients'
 * thread in a callback of ANOTHER client; do not call it from a callback
 * of this client (a proxy's, or its asynchronous requests'). */
CT_NET_EXTERN void ct_net_client_free(ct_net_client *c);

#ifdef __cplusplus
}
#endif
#endif /* CANCELTOKEN_NET_H */
