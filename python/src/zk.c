/* SPDX-License-Identifier: MIT
 *
 * zk.c -- cancel_token._core.ZkClient: the ZooKeeper backend of
 * canceltoken_zk.h for the Python package's cross-process API
 * (managers.py, for zk:// addresses).  Compiled only with CT_PY_ZK, when
 * the library canceltoken_zk is built.
 *
 * Design notes:
 *  - One ZkClient is one ZooKeeper session; managers.py makes one per
 *    manager, and every proxy and published token of that manager goes
 *    through it.
 *  - Every call that talks to the ensemble blocks (each takes a deadline)
 *    and runs with the GIL released; the C object lives in a ct_py_handle
 *    (handle.c) so that close() during such a call is safe.
 *  - Proxies are ct_zk_get()'s tokens, wrapped in the class managers.py
 *    gives (CancelTokenProxy) with the ZkClient as `_owner`.  Unlike the
 *    socket client, every get() gives a new proxy.  Their callbacks run on
 *    the backend's thread, without the GIL: notify.c carries them to the
 *    event loop.
 */
#include "ct_py.h"

#include "canceltoken_zk.h"

#include <string.h>

typedef struct {
  PyObject_HEAD
  ct_py_handle h; /* the ct_zk_client */
} ZkClientObject;

static void zk_free(void *c) {
  ct_zk_client_free(c); /* closes the session, joins the client's thread */
}

/* ZkClient(address, timeout=None, session_timeout=None). */
static PyObject *zk_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"address", "timeout", "session_timeout", NULL};
  const char *address;
  PyObject *timeout = NULL, *session = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|OO:ZkClient", kwlist,
                                   &address, &timeout, &session))
    return NULL;
  int64_t deadline;
  ct_zk_options opts;
  memset(&opts, 0, sizeof opts);
  if (ct_deadline_from(timeout, &deadline) < 0)
    return NULL;
  if (session && session != Py_None) {
    double s = PyFloat_AsDouble(session);
    if (s == -1.0 && PyErr_Occurred())
      return NULL;
    if (!(s > 0) || s > 3600) {
      PyErr_SetString(PyExc_ValueError,
                      "session_timeout must be in (0, 3600] seconds");
      return NULL;
    }
    opts.session_timeout_ns = (int64_t)(s * 1e9);
  }
  ZkClientObject *z = (ZkClientObject *)ct_type_alloc(type);
  if (!z)
    return NULL;
  char err[256] = "";
  ct_zk_client *c = NULL;
  int r;
  CT_BEGIN_ALLOW_THREADS
  r = ct_zk_connect(&c, address, &opts, err, sizeof err, deadline);
  CT_END_ALLOW_THREADS
  if (r < 0) {
    Py_DECREF(z);
    if (r == -EINVAL) {
      PyErr_SetString(PyExc_ValueError, *err ? err : ct_strerror(r));
      return NULL;
    }
    return ct_raise_remote_error(r, err);
  }
  z->h = (ct_py_handle){.obj = c, .free_fn = zk_free, .what = "ZooKeeper "
                                                               "client"};
  return (PyObject *)z;
}

static void zk_dealloc(ZkClientObject *z) {
  if (z->h.free_fn)
    ct_handle_close(&z->h, NULL);
  PyTypeObject *tp = Py_TYPE(z);
  ct_type_free((PyObject *)z);
  Py_DECREF(tp);
}

static int zk_get_fn(void *c, ct_token **out, const char *name,
                     int64_t deadline) {
  return ct_zk_get(c, out, name, deadline);
}

static int zk_trigger_fn(void *c, ct_token *t, int64_t deadline) {
  return ct_zk_trigger(c, t, CT_REASON_TRIGGER, 0, deadline);
}

/* get(name, cls, timeout=None): a new proxy of the token published under
 * name, an instance of cls.  New reference. */
static PyObject *zk_get(ZkClientObject *z, PyObject *args, PyObject *kwds) {
  return ct_remote_get(&z->h, (PyObject *)z, args, kwds, zk_get_fn,
                       "published");
}

/* trigger(token, timeout=None) -> bool: record a trigger of token (one
 * published here, or a proxy of this client) and wait until it is
 * recorded; True if this call's record won. */
static PyObject *zk_trigger(ZkClientObject *z, PyObject *args,
                            PyObject *kwds) {
  return ct_remote_trigger(&z->h, (PyObject *)z, args, kwds, zk_trigger_fn);
}

/* publish(name, token, timeout=None): publish a local token. */
static PyObject *zk_publish(ZkClientObject *z, PyObject *args,
                            PyObject *kwds) {
  static char *kwlist[] = {"name", "token", "timeout", NULL};
  const char *name;
  PyObject *tok, *timeout = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO!|O:publish", kwlist,
                                   &name, ct_CoreTokenType, &tok, &timeout))
    return NULL;
  int64_t deadline;
  ct_token *t = ct_token_of((CoreToken *)tok);
  ct_zk_client *c;
  if (!t || ct_deadline_from(timeout, &deadline) < 0 ||
      !(c = ct_handle_enter(&z->h, (PyObject *)z)))
    return NULL;
  int r;
  CT_BEGIN_ALLOW_THREADS
  r = ct_zk_publish(c, name, t, deadline);
  CT_END_ALLOW_THREADS
  ct_handle_leave(&z->h, (PyObject *)z);
  if (r == -EEXIST) {
    PyErr_Format(PyExc_FileExistsError,
                 "a token is published under '%s' already (tokens are "
                 "one-shot: use another name)", name);
    return NULL;
  }
  if (r < 0)
    return ct_remote_name_error(r, name, "published");
  Py_RETURN_NONE;
}

/* status(name, timeout=None) -> dict: the state recorded in the ensemble,
 * read afresh (a round trip). */
static PyObject *zk_status(ZkClientObject *z, PyObject *args,
                           PyObject *kwds) {
  static char *kwlist[] = {"name", "timeout", NULL};
  const char *name;
  PyObject *timeout = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|O:status", kwlist, &name,
                                   &timeout))
    return NULL;
  int64_t deadline;
  ct_zk_client *c;
  if (ct_deadline_from(timeout, &deadline) < 0 ||
      !(c = ct_handle_enter(&z->h, (PyObject *)z)))
    return NULL;
  /* (PyMem_Calloc is not in the 3.9 limited API; the call fills *st.) */
  ct_zk_status *st = PyMem_Malloc(sizeof *st);
  int r = -ENOMEM;
  if (st) {
    CT_BEGIN_ALLOW_THREADS
    r = ct_zk_status_get(c, name, st, deadline);
    CT_END_ALLOW_THREADS
  }
  ct_handle_leave(&z->h, (PyObject *)z);
  PyObject *res = NULL;
  if (r < 0)
    ct_remote_name_error(r, name, "published");
  else
    res = Py_BuildValue(
        "{sOsOsssisLsssssssssL}", "owned", st->owned ? Py_True : Py_False,
        "triggered", st->triggered ? Py_True : Py_False, "reason",
        ct_reason_name(st->reason), "detail", st->detail, "pid", st->pid,
        "host", st->host, "origin", st->origin, "cause", st->cause,
        "owner_host", st->owner_host, "owner_pid", st->owner_pid);
  PyMem_Free(st);
  return res;
}

static PyObject *zk_close(ZkClientObject *z, PyObject *unused) {
  (void)unused;
  ct_handle_close(&z->h, (PyObject *)z);
  Py_RETURN_NONE;
}

static PyObject *zk_get_closed(ZkClientObject *z, void *closure) {
  (void)closure;
  return PyBool_FromLong(z->h.closed);
}

static PyObject *zk_get_session_timeout(ZkClientObject *z, void *closure) {
  (void)closure;
  ct_zk_client *c = ct_handle_get(&z->h);
  return c ? PyFloat_FromDouble((double)ct_zk_session_timeout(c) / 1e9)
           : NULL;
}

static PyMethodDef zk_methods[] = {
    {"get", (PyCFunction)(void (*)(void))zk_get, METH_VARARGS | METH_KEYWORDS,
     "get($self, /, name, cls, timeout=None)\n--\n\n"
     "A new proxy of the token published under name."},
    {"publish", (PyCFunction)(void (*)(void))zk_publish,
     METH_VARARGS | METH_KEYWORDS,
     "publish($self, /, name, token, timeout=None)\n--\n\n"
     "Publish a local token under name, owned by this session."},
    {"trigger", (PyCFunction)(void (*)(void))zk_trigger,
     METH_VARARGS | METH_KEYWORDS,
     "trigger($self, /, token, timeout=None)\n--\n\n"
     "Record a trigger of token in the ensemble; True if this call's "
     "record won."},
    {"status", (PyCFunction)(void (*)(void))zk_status,
     METH_VARARGS | METH_KEYWORDS,
     "status($self, /, name, timeout=None)\n--\n\n"
     "The token's state as recorded in the ensemble (a dict)."},
    {"close", (PyCFunction)zk_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Close the session (this client's proxies: CT_REASON_SHUTDOWN)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef zk_getset[] = {
    {"closed", (getter)zk_get_closed, NULL, "close() was called.", NULL},
    {"session_timeout", (getter)zk_get_session_timeout, NULL,
     "The session timeout negotiated with the ensemble, in seconds.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot zk_slots[] = {
    {Py_tp_doc, "ZkClient(address, timeout=None, session_timeout=None)\n--\n\n"
                "A ZooKeeper session (ct_zk_client) at a zk:// address."},
    {Py_tp_new, zk_new},
    {Py_tp_dealloc, zk_dealloc},
    {Py_tp_methods, zk_methods},
    {Py_tp_getset, zk_getset},
    {0, NULL}};

static PyType_Spec zk_spec = {
    .name = "cancel_token._core.ZkClient",
    .basicsize = sizeof(ZkClientObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = zk_slots,
};

int ct_zk_add_to_module(PyObject *m) {
  static PyObject *zk_type; /* made once per process */
  if (!zk_type && !(zk_type = PyType_FromSpec(&zk_spec)))
    return -1;
  if (ct_module_add(m, "ZkClient", zk_type) < 0)
    return -1;
  return 0;
}
