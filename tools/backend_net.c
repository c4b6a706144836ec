/* SPDX-License-Identifier: MIT
 *
 * backend_net.c -- the cancel-token command's default backend: the token
 * server and client of canceltoken_net.h, at a Unix socket path or
 * HOST:PORT.  A table of thin wrappers (backend.h); the address is parsed
 * by the library.
 */
#include "backend.h"

#include <stdio.h>
#include <string.h>

static int net_connect(void **conn, const char *addr, const void *secret,
                       size_t secret_len, char *err, size_t errlen,
                       int64_t deadline) {
  ct_net_client_options co;
  memset(&co, 0, sizeof co); /* every zero field is the default */
  co.secret = secret_len ? secret : NULL;
  co.secret_len = secret_len;
  ct_net_client *c = NULL;
  int r = ct_net_client_connect(&c, addr, &co, err, errlen, deadline);
  *conn = c;
  return r;
}

static int net_get(void *conn, ct_token **proxy, const char *name,
                   int64_t deadline) {
  return ct_net_client_get(conn, proxy, name, deadline);
}

static int net_trigger(void *conn, ct_token *proxy, int64_t deadline) {
  return ct_net_client_trigger(conn, proxy, CT_REASON_TRIGGER, 0, deadline);
}

static int net_list(void *conn, ct_net_list_fn fn, void *arg,
                    int64_t deadline) {
  return ct_net_client_list(conn, fn, arg, deadline);
}

static int net_error(void *conn) { return ct_net_client_error(conn); }

static void net_disconnect(void *conn) { ct_net_client_free(conn); }

static int net_serve_new(void **srv, const char *addr,
                         const ct_tool_serve_opts *o, char *err,
                         size_t errlen) {
  ct_net_server_options so;
  memset(&so, 0, sizeof so);
  so.secret = o->secret_len ? o->secret : NULL;
  so.secret_len = o->secret_len;
  so.allowed_uids = o->allowed_uids;
  so.n_allowed_uids = o->n_allowed_uids;
  so.allow_any_uid = o->allow_any_uid;
  ct_net_server *s = NULL;
  int r = ct_net_server_new(&s, addr, &so);
  if (r == -EPERM && errlen)
    snprintf(err, errlen, "a non-loopback address needs a secret");
  *srv = s;
  return r;
}

static int net_serve_add(void *srv, const char *name, ct_token *tok) {
  return ct_net_server_add(srv, name, tok);
}

static int net_serve_start(void *srv, char *addr, size_t addrlen) {
  int r = ct_net_server_start(srv);
  if (r == 0)
    ct_net_server_address(srv, addr, addrlen);
  return r;
}

static void net_serve_free(void *srv) { ct_net_server_free(srv); }

const ct_tool_backend ct_tool_net_backend = {
    .name = "token server",
    .connect = net_connect,
    .get = net_get,
    .trigger = net_trigger,
    .list = net_list,
    .error = net_error,
    .disconnect = net_disconnect,
    .serve_new = net_serve_new,
    .serve_add = net_serve_add,
    .serve_start = net_serve_start,
    .serve_free = net_serve_free,
};
