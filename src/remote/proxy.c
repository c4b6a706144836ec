/* SPDX-License-Identifier: MIT
 *
 * proxy.c -- the transport-neutral proxy layer: what makes a token a
 * proxy, how an owner's trigger, a lost owner and a local trigger are
 * applied.  The design notes are in proxy.h, beside the declarations the
 * backends use.  Its one allocation goes through alloc.h's hook, so that
 * tests/test_fault_oom.c fails it too.
 */
#include "proxy.h"

#include "alloc.h"

#include <errno.h>
#include <string.h>

bool ct_proxy_reason_sendable(ct_reason reason) {
  switch (reason) {
  case CT_REASON_NONE:
  case CT_REASON_OWNER_LOST:
  case CT_REASON_UNREACHABLE:
  case CT_REASON_SHUTDOWN:
    return false;
  default:
    return (unsigned)reason <= 255;
  }
}

/* The hook on every proxy: forward a local trigger to the backend. */
static void proxy_fired(ct_token *t, void *arg) {
  struct ct_proxy *p = arg;
  /* acquire: pairs with the release store in mark_remote(), made before
   * this layer triggers the proxy for the backend */
  if (atomic_load_explicit(&p->remote, memory_order_acquire))
    return;
  int detail = 0;
  ct_reason r = ct_token_reason(t, &detail);
  if (!ct_proxy_reason_sendable(r))
    return;
  p->forward(p, r, detail);
}

int ct_proxy_init(struct ct_proxy *p, const char *name,
                  ct_proxy_forward_fn forward) {
  if (!p || !name || !forward)
    return -EINVAL;
  memset(p, 0, sizeof *p);
  int rc = ct_token_new(&p->tok, name);
  if (rc < 0) {
    p->tok = NULL;
    return rc;
  }
  ct_token_mark_proxy(p->tok);
  p->forward = forward;
  atomic_init(&p->remote, false);
  /* A fresh token is not triggered, so this runs no callback.  It may fail
   * (-ENOMEM: the token's first registration allocates), and a proxy
   * without its hook would never forward a local trigger: give up. */
  rc = ct_callback_register(&p->cb, p->tok, proxy_fired, p);
  if (rc < 0) {
    ct_token_unref(p->tok);
    p->tok = NULL;
    return rc;
  }
  return 0;
}

static void mark_remote(struct ct_proxy *p) {
  /* release: the hook that runs inside the trigger below reads it with
   * acquire and then does not forward what the backend told us */
  atomic_store_explicit(&p->remote, true, memory_order_release);
}

int ct_proxy_fire(struct ct_proxy *p, ct_reason reason, int detail,
                  const char *cause, size_t cause_len) {
  if (!p || !p->tok)
    return -EINVAL;
  if (reason == CT_REASON_NONE)
    reason = CT_REASON_TRIGGER;
  if (detail < 0 || detail > 255)
    detail = 0;
  mark_remote(p);
  const char *pname = ct_token_name(p->tok);
  if (!cause || cause_len == 0 || cause_len > CT_NAME_MAX || !pname ||
      (strlen(pname) == cause_len && memcmp(pname, cause, cause_len) == 0))
    return ct_token_trigger_reason(p->tok, reason, detail);
  char *buf = net_malloc(cause_len + 1); /* the hook of alloc.h */
  ct_token *stand_in = NULL;
  if (buf) {
    memcpy(buf, cause, cause_len);
    buf[cause_len] = '\0';
    if (ct_token_new(&stand_in, buf) < 0) /* bad UTF-8, or no memory */
      stand_in = NULL;
    net_free(buf);
  }
  if (!stand_in)
    return ct_token_trigger_reason(p->tok, reason, detail);
  /* The stand-in is a local token named as the one that fired, triggered
   * like it, so that ct_token_triggered_token(proxy) names it. */
  ct_token_trigger_reason(stand_in, reason, detail);
  int rc = ct_token_trigger_with_cause(p->tok, stand_in, reason, detail);
  ct_token_unref(stand_in);
  return rc;
}

int ct_proxy_lose(struct ct_proxy *p, ct_reason reason) {
  if (!p || !p->tok)
    return -EINVAL;
  mark_remote(p);
  return ct_token_trigger_reason(p->tok, reason, 0);
}

void ct_proxy_fini(struct ct_proxy *p) {
  if (!p || !p->tok)
    return;
  ct_callback_unregister(&p->cb);
  ct_token_unref(p->tok);
  p->tok = NULL;
}
