/* SPDX-License-Identifier: MIT
 *
 * net.c -- cancel_token._core.Server and cancel_token._core.Client: the
 * token server and client of canceltoken_net.h for the Python package's
 * cross-process API (managers.py).  Compiled only with CT_PY_NET.
 *
 * Design notes:
 *  - Every call that may block (bind and name resolution, connect and its
 *    handshake, a round trip, freeing a server or client, which joins its
 *    thread) runs with the GIL released.  The library's threads never call
 *    into Python: its log function is its own (stderr), and proxies are
 *    plain tokens whose triggers reach Python through notify.c.
 *  - Use after free: each object's C object lives in a ct_py_handle
 *    (handle.c), freed by whoever finishes last, close() or the last call
 *    in progress with the GIL released.
 *  - Proxies.  Client.get() wraps the C proxy token in an object of the
 *    class it is given (CancelTokenProxy) whose `owner` is the Client, so a
 *    proxy keeps its connection open for trigger().  Getting a name twice
 *    gives the same C proxy, hence (through the data pointer) the same
 *    Python object; and since a GET is answered from the served token's own
 *    state, and the client applies a "triggered" answer to the proxy
 *    before the call returns, a second get() is the authoritative round
 *    trip behind CancelTokenProxy.check_triggered().
 */
#include "ct_py.h"

#include "canceltoken_net.h"

/* A secret from None, bytes-like or str (UTF-8): a new bytes object in
 * *out (NULL for None).  Returns 0, or -1 with an exception set.  (The
 * buffer protocol is not in the 3.9 limited API; bytes() copies.) */
static int secret_from(PyObject *secret, PyObject **out) {
  *out = NULL;
  if (secret == NULL || secret == Py_None)
    return 0;
  *out = PyUnicode_Check(secret) ? PyUnicode_AsUTF8String(secret)
                                 : PyBytes_FromObject(secret);
  return *out ? 0 : -1;
}

/* Point opts' secret fields at the bytes object b (or nothing). */
#define SET_SECRET(opts, b)                                                   \
  do {                                                                        \
    (opts).secret = (b) ? PyBytes_AsString(b) : NULL;                         \
    (opts).secret_len = (b) ? (size_t)PyBytes_Size(b) : 0;                    \
  } while (0)

/* ------------------------------------------------------------------------ */
/* Server                                                                   */

typedef struct {
  PyObject_HEAD
  ct_py_handle h; /* the ct_net_server */
} ServerObject;

static void server_free(void *srv) {
  ct_net_server_free(srv); /* joins the server's thread */
}

/* Server(address, secret=None): bind and listen now; serve after start(). */
static PyObject *server_new(PyTypeObject *type, PyObject *args,
                            PyObject *kwds) {
  static char *kwlist[] = {"address", "secret", NULL};
  const char *address;
  PyObject *secret = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|O:Server", kwlist, &address,
                                   &secret))
    return NULL;
  PyObject *sb;
  if (secret_from(secret, &sb) < 0)
    return NULL;
  ServerObject *s = (ServerObject *)ct_type_alloc(type);
  if (!s) {
    Py_XDECREF(sb);
    return NULL;
  }
  ct_net_server_options opts;
  memset(&opts, 0, sizeof opts);
  SET_SECRET(opts, sb);
  int r;
  ct_net_server *srv = NULL;
  CT_BEGIN_ALLOW_THREADS
  r = ct_net_server_new(&srv, address, &opts);
  CT_END_ALLOW_THREADS
  Py_XDECREF(sb);
  if (r < 0) {
    Py_DECREF(s);
    return ct_raise_remote_error(r, NULL);
  }
  s->h = (ct_py_handle){.obj = srv, .free_fn = server_free, .what = "server"};
  return (PyObject *)s;
}

static void server_dealloc(ServerObject *s) {
  if (s->h.free_fn) /* NULL if the allocation's init failed */
    ct_handle_close(&s->h, NULL);
  PyTypeObject *tp = Py_TYPE(s);
  ct_type_free((PyObject *)s);
  Py_DECREF(tp);
}

static PyObject *server_add(ServerObject *s, PyObject *args) {
  const char *name;
  PyObject *tok;
  if (!PyArg_ParseTuple(args, "sO!:add", &name, ct_CoreTokenType, &tok))
    return NULL;
  ct_net_server *srv = ct_handle_get(&s->h);
  ct_token *t = srv ? ct_token_of((CoreToken *)tok) : NULL;
  if (!t)
    return NULL;
  int r = ct_net_server_add(srv, name, t);
  if (r < 0)
    return ct_raise_remote_error(r, NULL);
  Py_RETURN_NONE;
}

static PyObject *server_start(ServerObject *s, PyObject *unused) {
  (void)unused;
  ct_net_server *srv = ct_handle_get(&s->h);
  if (!srv)
    return NULL;
  int r = ct_net_server_start(srv);
  if (r < 0)
    return ct_raise_remote_error(r, NULL);
  Py_RETURN_NONE;
}

static PyObject *server_stop(ServerObject *s, PyObject *unused) {
  (void)unused;
  if (s->h.obj)
    ct_net_server_stop(s->h.obj); /* never blocks */
  Py_RETURN_NONE;
}

static PyObject *server_close(ServerObject *s, PyObject *unused) {
  (void)unused;
  if (s->h.obj)
    ct_net_server_stop(s->h.obj);
  ct_handle_close(&s->h, (PyObject *)s);
  Py_RETURN_NONE;
}

static PyObject *server_get_address(ServerObject *s, void *closure) {
  (void)closure;
  ct_net_server *srv = ct_handle_get(&s->h);
  if (!srv)
    return NULL;
  char buf[512];
  int n = ct_net_server_address(srv, buf, sizeof buf);
  if (n < 0)
    return ct_raise_remote_error(n, NULL);
  if ((size_t)n >= sizeof buf) {
    PyErr_SetString(PyExc_OverflowError, "address too long");
    return NULL;
  }
  return PyUnicode_DecodeFSDefault(buf);
}

static PyObject *server_get_stats(ServerObject *s, void *closure) {
  (void)closure;
  ct_net_server *srv = ct_handle_get(&s->h);
  if (!srv)
    return NULL;
  ct_net_server_stats st;
  ct_net_server_get_stats(srv, &st);
  return Py_BuildValue("{sKsKsKsKsK}", "accepted",
                       (unsigned long long)st.accepted, "active",
                       (unsigned long long)st.active, "ready",
                       (unsigned long long)st.ready, "dropped",
                       (unsigned long long)st.dropped, "refused",
                       (unsigned long long)st.refused);
}

static PyObject *server_get_closed(ServerObject *s, void *closure) {
  (void)closure;
  return PyBool_FromLong(s->h.closed);
}

static PyMethodDef server_methods[] = {
    {"add", (PyCFunction)server_add, METH_VARARGS,
     "add($self, name, token, /)\n--\n\nServe token under name."},
    {"start", (PyCFunction)server_start, METH_NOARGS,
     "start($self, /)\n--\n\nServe on a thread of the library's own."},
    {"stop", (PyCFunction)server_stop, METH_NOARGS,
     "stop($self, /)\n--\n\nAsk the server to stop (returns at once)."},
    {"close", (PyCFunction)server_close, METH_NOARGS,
     "close($self, /)\n--\n\nStop, close every connection and the socket; "
     "idempotent."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef server_getset[] = {
    {"address", (getter)server_get_address, NULL,
     "The address listened at, with the real port for port 0.", NULL},
    {"stats", (getter)server_get_stats, NULL, "Connection counters.", NULL},
    {"closed", (getter)server_get_closed, NULL, "close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot server_slots[] = {
    {Py_tp_doc, "Server(address, secret=None)\n--\n\n"
                "A token server (ct_net_server): bound and listening once "
                "created."},
    {Py_tp_new, server_new},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {0, NULL}};

static PyType_Spec server_spec = {
    .name = "cancel_token._core.Server",
    .basicsize = sizeof(ServerObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = server_slots,
};

/* ------------------------------------------------------------------------ */
/* Client                                                                   */

typedef struct {
  PyObject_HEAD
  ct_py_handle h; /* the ct_net_client */
} ClientObject;

static void client_free(void *c) {
  ct_net_client_free(c); /* joins the clients' thread if it is the last */
}

/* Client(address, secret=None, timeout=None): connect and handshake. */
static PyObject *client_new(PyTypeObject *type, PyObject *args,
                            PyObject *kwds) {
  static char *kwlist[] = {"address", "secret", "timeout", NULL};
  const char *address;
  PyObject *secret = NULL, *timeout = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|OO:Client", kwlist,
                                   &address, &secret, &timeout))
    return NULL;
  int64_t deadline;
  if (ct_deadline_from(timeout, &deadline) < 0)
    return NULL;
  PyObject *sb;
  if (secret_from(secret, &sb) < 0)
    return NULL;
  ClientObject *c = (ClientObject *)ct_type_alloc(type);
  if (!c) {
    Py_XDECREF(sb);
    return NULL;
  }
  ct_net_client_options opts;
  memset(&opts, 0, sizeof opts);
  SET_SECRET(opts, sb);
  char err[256] = "";
  ct_net_client *cl = NULL;
  int r;
  CT_BEGIN_ALLOW_THREADS
  r = ct_net_client_connect(&cl, address, &opts, err, sizeof err, deadline);
  CT_END_ALLOW_THREADS
  Py_XDECREF(sb);
  if (r < 0) {
    Py_DECREF(c);
    return ct_raise_remote_error(r, err);
  }
  c->h = (ct_py_handle){.obj = cl, .free_fn = client_free, .what = "client"};
  return (PyObject *)c;
}

static void client_dealloc(ClientObject *c) {
  if (c->h.free_fn)
    ct_handle_close(&c->h, NULL);
  PyTypeObject *tp = Py_TYPE(c);
  ct_type_free((PyObject *)c);
  Py_DECREF(tp);
}

static int net_get(void *c, ct_token **out, const char *name,
                   int64_t deadline) {
  return ct_net_client_get(c, out, name, deadline);
}

static int net_trigger(void *c, ct_token *t, int64_t deadline) {
  return ct_net_client_trigger(c, t, CT_REASON_TRIGGER, 0, deadline);
}

/* get(name, cls, timeout=None): the proxy of the token served under name
 * (the same object for the same name).  New reference. */
static PyObject *client_get(ClientObject *c, PyObject *args, PyObject *kwds) {
  return ct_remote_get(&c->h, (PyObject *)c, args, kwds, net_get, "served");
}

/* trigger(token, timeout=None) -> bool: trigger the owner's token and wait
 * for the server to confirm.  True if this call triggered it. */
static PyObject *client_trigger(ClientObject *c, PyObject *args,
                                PyObject *kwds) {
  return ct_remote_trigger(&c->h, (PyObject *)c, args, kwds, net_trigger);
}

struct list_acc {
  PyObject *list; /* NULL after an error */
};

/* Called on the calling thread, inside ct_net_client_list(), which runs
 * with the GIL released; this thread's state takes the GIL back. */
static void list_one(void *arg, const ct_net_token_info *info) {
  struct list_acc *acc = arg;
  PyGILState_STATE g = PyGILState_Ensure();
  if (!acc->list) {
    PyGILState_Release(g);
    return;
  }
  PyObject *item = Py_BuildValue("(sOs)", info->name,
                                 info->triggered ? Py_True : Py_False,
                                 info->cause);
  if (!item || PyList_Append(acc->list, item) < 0)
    Py_CLEAR(acc->list);
  Py_XDECREF(item);
  PyGILState_Release(g);
}

static PyObject *client_list(ClientObject *c, PyObject *args) {
  PyObject *timeout = NULL;
  if (!PyArg_ParseTuple(args, "|O:list", &timeout))
    return NULL;
  int64_t deadline;
  ct_net_client *cl;
  if (ct_deadline_from(timeout, &deadline) < 0 ||
      !(cl = ct_handle_enter(&c->h, (PyObject *)c)))
    return NULL;
  struct list_acc acc = {PyList_New(0)};
  int r = 0;
  if (acc.list) {
    CT_BEGIN_ALLOW_THREADS
    r = ct_net_client_list(cl, list_one, &acc, deadline);
    CT_END_ALLOW_THREADS
  }
  ct_handle_leave(&c->h, (PyObject *)c);
  if (!acc.list)
    return NULL;
  if (r < 0) {
    Py_DECREF(acc.list);
    return ct_raise_remote_error(r, NULL);
  }
  return acc.list;
}

static PyObject *client_close(ClientObject *c, PyObject *unused) {
  (void)unused;
  ct_handle_close(&c->h, (PyObject *)c);
  Py_RETURN_NONE;
}

static PyObject *client_get_error(ClientObject *c, void *closure) {
  (void)closure;
  if (!c->h.obj)
    return PyLong_FromLong(-ESHUTDOWN);
  return PyLong_FromLong(ct_net_client_error(c->h.obj));
}

static PyObject *client_get_closed(ClientObject *c, void *closure) {
  (void)closure;
  return PyBool_FromLong(c->h.closed);
}

static PyMethodDef client_methods[] = {
    {"get", (PyCFunction)(void (*)(void))client_get,
     METH_VARARGS | METH_KEYWORDS,
     "get($self, /, name, cls, timeout=None)\n--\n\n"
     "The proxy of a served token; a round trip (also for a name got "
     "before)."},
    {"trigger", (PyCFunction)(void (*)(void))client_trigger,
     METH_VARARGS | METH_KEYWORDS,
     "trigger($self, /, token, timeout=None)\n--\n\n"
     "Trigger the owner's token; True if this call did."},
    {"list", (PyCFunction)client_list, METH_VARARGS,
     "list($self, timeout=None, /)\n--\n\n"
     "[(name, triggered, cause), ...] served."},
    {"close", (PyCFunction)client_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Close the connection (proxies are triggered: owner lost)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef client_getset[] = {
    {"error", (getter)client_get_error, NULL,
     "0 while connected, else the negative errno of the loss.", NULL},
    {"closed", (getter)client_get_closed, NULL, "close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(address, secret=None, timeout=None)\n--\n\n"
                "A connection to a token server (ct_net_client)."},
    {Py_tp_new, client_new},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {0, NULL}};

static PyType_Spec client_spec = {
    .name = "cancel_token._core.Client",
    .basicsize = sizeof(ClientObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = client_slots,
};

int ct_net_add_to_module(PyObject *m) {
  static PyObject *server_type, *client_type; /* made once per process */
  if (!server_type && !(server_type = PyType_FromSpec(&server_spec)))
    return -1;
  if (!client_type && !(client_type = PyType_FromSpec(&client_spec)))
    return -1;
  if (ct_module_add(m, "Server", server_type) < 0 ||
      ct_module_add(m, "Client", client_type) < 0 ||
      PyModule_AddIntConstant(m, "NET_NAME_MAX", CT_NET_NAME_MAX) < 0)
    return -1;
  return 0;
}
