/* SPDX-License-Identifier: MIT
 *
 * handle.c -- what the remote backends' Python objects share (net.c: the
 * token server and client; zk.c: the ZooKeeper client): timeouts turned
 * into deadlines, errors turned into exceptions, and the lifetime of a C
 * object that blocking calls use with the GIL released.
 *
 * Design notes:
 *  - Use after free.  While one thread is inside a blocking call with the
 *    GIL released, another could close() the same object.  A handle
 *    counts the calls in progress (`busy`, changed only with the GIL
 *    held, so no atomic is needed); close() marks it closed at once (no
 *    new call starts) and the C object is freed by whoever finishes last
 *    -- close() itself, or the last call in progress.  A call in progress
 *    also holds a reference on the Python object, so dealloc never meets
 *    a busy handle.
 *  - Freeing may block (it joins the backend's thread), so it runs with
 *    the GIL released.
 *  - The backends' get() and trigger() have one shape (parse, enter, call
 *    with the GIL released, leave, map the result); each backend hands
 *    its call in through a small adapter (ct_remote_get_fn,
 *    ct_remote_trigger_fn), so the shape is written once, here.
 */
#include "ct_py.h"

#include <math.h>

int ct_deadline_from(PyObject *timeout, int64_t *out) {
  if (timeout == NULL || timeout == Py_None) {
    *out = CT_FOREVER;
    return 0;
  }
  double s = PyFloat_AsDouble(timeout);
  if (s == -1.0 && PyErr_Occurred())
    return -1;
  if (isnan(s) || s < 0) {
    PyErr_SetString(PyExc_ValueError, "timeout must be None or >= 0");
    return -1;
  }
  if (s > 9e9) { /* about 285 years: as good as forever */
    *out = CT_FOREVER;
    return 0;
  }
  *out = ct_deadline_after((int64_t)(s * 1e9));
  return 0;
}

PyObject *ct_raise_remote_error(int err, const char *detail) {
  if (err == -ENOMEM)
    return PyErr_NoMemory();
  const char *msg = detail && *detail ? detail : ct_strerror(err);
  /* OSError(errno, msg) picks the subclass (TimeoutError, ...). */
  PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", -err, msg);
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
  return NULL;
}

void *ct_handle_get(ct_py_handle *h) {
  if (h->closed || !h->obj) {
    PyErr_Format(PyExc_ValueError, "the %s is closed", h->what);
    return NULL;
  }
  return h->obj;
}

/* Free the C object if it is closed and nobody uses it. */
static void handle_release(ct_py_handle *h) {
  if (!h->closed || h->busy > 0 || !h->obj)
    return;
  void *obj = h->obj;
  h->obj = NULL;
  CT_BEGIN_ALLOW_THREADS
  h->free_fn(obj);
  CT_END_ALLOW_THREADS
}

void *ct_handle_enter(ct_py_handle *h, PyObject *self) {
  void *obj = ct_handle_get(h);
  if (obj) {
    h->busy++;
    Py_INCREF(self);
  }
  return obj;
}

void ct_handle_leave(ct_py_handle *h, PyObject *self) {
  h->busy--;
  handle_release(h);
  Py_DECREF(self);
}

void ct_handle_close(ct_py_handle *h, PyObject *self) {
  h->closed = 1;
  Py_XINCREF(self); /* freeing may run code that drops the last reference */
  handle_release(h);
  Py_XDECREF(self);
}

/* The exception for a failed call about token `name`. */
static PyObject *name_error(int r, const char *name, const char *verb) {
  if (r == -ENOENT) {
    PyErr_Format(PyExc_LookupError, "no token is %s under the name '%s'",
                 verb, name);
    return NULL;
  }
  if (r == -EINVAL || r == -ENAMETOOLONG) {
    PyErr_Format(PyExc_ValueError, "'%s': %s", name, ct_strerror(r));
    return NULL;
  }
  return ct_raise_remote_error(r, NULL);
}

PyObject *ct_remote_get(ct_py_handle *h, PyObject *self, PyObject *args,
                        PyObject *kwds, ct_remote_get_fn get,
                        const char *verb) {
  static char *kwlist[] = {"name", "cls", "timeout", NULL};
  const char *name;
  PyObject *cls, *timeout = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO|O:get", kwlist, &name,
                                   &cls, &timeout))
    return NULL;
  int64_t deadline;
  void *obj;
  if (ct_check_token_class(cls) < 0 ||
      ct_deadline_from(timeout, &deadline) < 0 ||
      !(obj = ct_handle_enter(h, self)))
    return NULL;
  ct_token *proxy = NULL;
  int r;
  CT_BEGIN_ALLOW_THREADS
  r = get(obj, &proxy, name, deadline);
  CT_END_ALLOW_THREADS
  ct_handle_leave(h, self);
  if (r < 0)
    return name_error(r, name, verb);
  PyObject *o = ct_proxy_object(proxy, (PyTypeObject *)cls, self);
  ct_token_unref(proxy); /* the object holds its own reference */
  return o;
}

PyObject *ct_remote_trigger(ct_py_handle *h, PyObject *self, PyObject *args,
                            PyObject *kwds, ct_remote_trigger_fn trigger) {
  static char *kwlist[] = {"token", "timeout", NULL};
  PyObject *tok, *timeout = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|O:trigger", kwlist,
                                   ct_CoreTokenType, &tok, &timeout))
    return NULL;
  int64_t deadline;
  ct_token *t0 = ct_token_of((CoreToken *)tok);
  void *obj;
  if (!t0 || ct_deadline_from(timeout, &deadline) < 0 ||
      !(obj = ct_handle_enter(h, self)))
    return NULL;
  ct_token *t = ct_token_ref(t0); /* the object may go while we wait */
  int r;
  CT_BEGIN_ALLOW_THREADS
  r = trigger(obj, t, deadline);
  CT_END_ALLOW_THREADS
  ct_token_unref(t);
  ct_handle_leave(h, self);
  if (r < 0)
    return ct_raise_remote_error(r, NULL);
  return PyBool_FromLong(r);
}

PyObject *ct_remote_name_error(int r, const char *name, const char *verb) {
  return name_error(r, name, verb);
}
