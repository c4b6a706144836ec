/* SPDX-License-Identifier: MIT
 *
 * backend.h -- what the cancel-token command needs from the thing behind an
 * ADDRESS.  Every subcommand reaches tokens only through one
 * ct_tool_backend, chosen from the address by ct_tool_backend_for(), so
 * that another kind of address (zk://HOST:PORT[,...]/CHROOT) is one more
 * table of functions in a file of its own, not a change in every command.
 *
 * Design notes
 *  - The token server's backend (backend_net.c) is the default: any
 *    address without a known scheme goes to it, and it parses the address
 *    itself (through the public ct_net_* API; the shared parser is private
 *    to libcanceltoken_net).
 *  - Other backends are compiled in when their library is built
 *    (CMake defines CT_TOOL_HAVE_<NAME>); ct_tool_backend_for() in
 *    cancel_token.c lists them.  A scheme that is known but not compiled
 *    in is an error that says so, never a fall-through to the default.
 *  - Errors are negative errno values, as in the library.  A function that
 *    can explain a failure better than ct_strerror() writes one line into
 *    err (at most errlen bytes with the NUL).
 */
#ifndef CT_TOOL_BACKEND_H
#define CT_TOOL_BACKEND_H

#include "canceltoken.h"
#include "canceltoken_net.h" /* ct_net_token_info, ct_net_list_fn */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What `serve` was given besides the address and the names. */
typedef struct ct_tool_serve_opts {
  const void *secret;
  size_t secret_len;
  const uid_t *allowed_uids;
  size_t n_allowed_uids;
  bool allow_any_uid;
} ct_tool_serve_opts;

typedef struct ct_tool_backend {
  const char *name; /* "token server", "ZooKeeper": for messages */
  /* Client side.  connect returns 0 and a connection in *conn, or <0. */
  int (*connect)(void **conn, const char *addr, const void *secret,
                 size_t secret_len, char *err, size_t errlen,
                 int64_t deadline);
  /* A proxy (a new reference) of the token served under name; -ENOENT
   * if there is none. */
  int (*get)(void *conn, ct_token **proxy, const char *name,
             int64_t deadline);
  /* Trigger the token behind proxy at its owner: 1 triggered by this call,
   * 0 already triggered, <0 error. */
  int (*trigger)(void *conn, ct_token *proxy, int64_t deadline);
  /* fn(arg, info) for every served token; returns the count or <0. */
  int (*list)(void *conn, ct_net_list_fn fn, void *arg, int64_t deadline);
  /* Why the connection was lost (negative errno), 0 if it was not. */
  int (*error)(void *conn);
  void (*disconnect)(void *conn);

  /* Owner side; serve_new may be NULL (the backend cannot serve).
   * serve_new binds, serve_add adds a token (borrowed: the server takes
   * its own reference), serve_start starts serving and writes the address
   * served at into addr. */
  int (*serve_new)(void **srv, const char *addr, const ct_tool_serve_opts *o,
                   char *err, size_t errlen);
  int (*serve_add)(void *srv, const char *name, ct_token *tok);
  int (*serve_start)(void *srv, char *addr, size_t addrlen);
  void (*serve_free)(void *srv);
} ct_tool_backend;

/* The backends compiled in. */
extern const ct_tool_backend ct_tool_net_backend; /* backend_net.c */
#ifdef CT_TOOL_HAVE_ZK
extern const ct_tool_backend ct_tool_zk_backend; /* backend_zk.c */
#endif

#endif
