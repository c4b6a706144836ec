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
  Py_BEGIN_ALLOW_THREADS
  h->free_fn(obj);
  Py_END_ALLOW_THREADS
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
