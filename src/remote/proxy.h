/* SPDX-License-Identifier: MIT
 *
 * proxy.h -- the transport-neutral proxy layer shared by every remote
 * backend (the socket client in this directory, the ZooKeeper client in
 * src/zk/).  A backend embeds a struct ct_proxy in its own per-proxy
 * record and tells this layer three things: the owner's token fired
 * (ct_proxy_fire), the owner or the backend went away (ct_proxy_lose), and
 * the record is going (ct_proxy_fini).  In return the layer calls the
 * backend's `forward` function when the proxy is triggered locally, so
 * that the backend can tell the owner.  A third backend is a new file that
 * does the same; nothing here knows about sockets or ZooKeeper.
 *
 * Design notes:
 *
 *  Which triggers are forwarded.  `remote` is set (release) before this
 *  layer triggers the proxy for the backend (a notice, a loss).  The
 *  proxy's callback forwards a trigger unless `remote` is set (acquire) or
 *  the reason is one only a backend gives (CT_REASON_OWNER_LOST,
 *  CT_REASON_UNREACHABLE, CT_REASON_SHUTDOWN).  If a local trigger and a
 *  notice race, either the local one wins the claim and is forwarded (the
 *  owner then answers "already triggered", harmlessly), or the notice's
 *  wins and nothing is forwarded.  Either way the owner's token is
 *  triggered exactly when the proxy is, modulo the time on the wire.
 *
 *  Threads.  ct_proxy_fire/lose may be called from any thread with no lock
 *  held that `forward` takes: they trigger a token, which runs its
 *  callbacks (the application's, and this layer's, which does nothing for
 *  a remote trigger) on the calling thread.  `forward` runs on whichever
 *  thread triggered the proxy locally, inside a token callback: it must
 *  not block for long and must not free the backend.
 *
 *  Lifetime.  ct_proxy_fini() unregisters the callback (waiting out a run
 *  on another thread, the stop_callback guarantee) and drops the backend's
 *  reference; the token itself is reference counted and may outlive the
 *  record if the application holds it.  After fini returns, `forward` is
 *  not running and never will be for this record.
 */
#ifndef CT_REMOTE_PROXY_H
#define CT_REMOTE_PROXY_H

#include "canceltoken.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define CT_PROXY_HIDDEN __attribute__((visibility("hidden")))

struct ct_proxy;

/* Called when the proxy is triggered locally (not by ct_proxy_fire/lose)
 * with a reason a remote peer may send.  See "Threads" above. */
typedef void (*ct_proxy_forward_fn)(struct ct_proxy *p, ct_reason reason,
                                    int detail);

struct ct_proxy {
  ct_token *tok;              /* the backend's reference */
  ct_callback cb;             /* this layer's hook */
  ct_proxy_forward_fn forward;
  /* Set (release) before this layer triggers the proxy for the backend;
   * read (acquire) by the hook, which then does not forward. */
  _Atomic bool remote;
};

/* Create the proxy token (named `name`, marked with ct_token_mark_proxy())
 * and register the forwarding hook.  Returns 0, -EINVAL (NULL, bad name)
 * or -ENOMEM; on failure nothing is left to free.  Runs no callback (the
 * token is new), so it may be called under the backend's locks. */
CT_PROXY_HIDDEN int ct_proxy_init(struct ct_proxy *p, const char *name,
                                  ct_proxy_forward_fn forward);

/* The owner's token fired with reason/detail; cause[0..cause_len) is the
 * name of the owner-side token that fired (it may differ from the proxy's
 * when the owner's token was triggered through a chain), or cause_len 0.
 * ct_token_triggered_token(proxy) then names a stand-in token of that
 * name.  Reason 0 is taken as CT_REASON_TRIGGER.  Returns 1 if this
 * triggered the proxy, 0 if it was triggered already. */
CT_PROXY_HIDDEN int ct_proxy_fire(struct ct_proxy *p, ct_reason reason,
                                  int detail, const char *cause,
                                  size_t cause_len);

/* The backend lost the owner (CT_REASON_OWNER_LOST), the backend itself
 * (CT_REASON_UNREACHABLE) or was told the server stopped
 * (CT_REASON_SHUTDOWN): trigger the proxy locally, not forwarded.  Returns
 * 1 if this triggered the proxy, 0 if it was triggered already. */
CT_PROXY_HIDDEN int ct_proxy_lose(struct ct_proxy *p, ct_reason reason);

/* Unregister the hook and drop the backend's reference.  Must not be
 * called from the proxy's own callbacks.  NULL tok (never initialised, or
 * finished already) does nothing. */
CT_PROXY_HIDDEN void ct_proxy_fini(struct ct_proxy *p);

/* May a remote peer send this reason in a trigger?  The backend-only
 * reasons (owner lost, unreachable, shutdown) and CT_REASON_NONE may not:
 * a peer that could send "owner lost" would make every proxy report a live
 * owner as dead. */
CT_PROXY_HIDDEN bool ct_proxy_reason_sendable(ct_reason reason);

#endif /* CT_REMOTE_PROXY_H */
