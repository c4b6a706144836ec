/* SPDX-License-Identifier: MIT
 *
 * notify.c -- how a trigger reaches Python code: CoreToken._on_trigger()
 * and its Registration, and the per-loop Notifier that carries triggers
 * from threads without the GIL to an event loop.  cancel_token.token
 * builds asyncio waiting on it; cancel_token.trio builds trio waiting on
 * the Registration alone.
 *
 * Design notes:
 *
 *  token.py registers one core callback per (token, loop) that has waiters:
 *  a Registration holding a Python callable.  The core runs the callback in
 *  whatever thread triggers the token:
 *
 *  - A thread that holds the GIL -- Python code calling trigger(), the
 *    common case, usually on the loop's own thread -- calls the callable at
 *    once.  Such a thread is recognised by ct_py_gil_marked, which token.c
 *    and this file raise around every core call they make holding the GIL
 *    that may run callbacks (the limited API has no PyGILState_Check, and
 *    a thread that released the GIL around a blocking call, e.g. a net
 *    client's trigger, must not count as holding it: the mark is exact).
 *  - Any other thread -- C code, the net client's thread, the core's
 *    deadline or signal thread -- must not wait for the GIL (it may hold up
 *    a network connection, or the interpreter may be shutting down).  It
 *    puts the registration on its loop's Notifier list, under a mutex that
 *    is never held while anyone waits for the GIL, and writes the
 *    Notifier's eventfd, which the loop watches with add_reader.  The loop
 *    then drains the list on its own thread and calls the callables there.
 *  - A Registration without a Notifier (trio; a loop that cannot watch a
 *    descriptor) takes the GIL in the foreign thread, unless the
 *    interpreter is shutting down (`finalizing`, set from an atexit hook
 *    that runs before the interpreter is torn down), when the callable is
 *    skipped: nobody is left to wake.
 *
 *  Lifetimes.  While registered (`listed`), a Registration is on the core's
 *  list and reg_fire(cb, self) may run at any moment in any thread; it
 *  holds itself alive through `self_ref`, which reg_close() drops only after
 *  ct_callback_unregister() returned (so reg_fire() is no longer running),
 *  or, for a registration that ended itself in reg_fire() (below), once
 *  reg_fire() no longer touches it.  A listed Registration that fired in a
 *  foreign thread may also sit on its Notifier's `fired` list; reg_close()
 *  takes it off, under the mutex, and Notifier.drain() takes its own
 *  reference on each one it takes off.
 *
 *  No waiting for the firing thread.  The Notifier's write wakes the loop,
 *  whose reader drains the registration and closes it at once; the firing
 *  thread is then often still inside write(2) or the core's bookkeeping
 *  after the callback (on a busy machine the woken loop thread preempts
 *  it), and ct_callback_unregister() would wait for it (timed on the
 *  notice path of python/bench/cross_process.py: a median close took
 *  0.7 us, but about a quarter took over 5 us).  So a foreign reg_fire() ends the core
 *  registration itself, before it publishes the registration: a callback
 *  may unregister itself (the core then leaves its storage alone after it
 *  returns), and reg_close() then skips ct_callback_unregister().  The
 *  Notifier's mutex decides which of the two unregisters: reg_close() sets
 *  `closing`, reg_fire() sets `ended`, each under it, and each checks the
 *  other's flag first.  After it unlocks, reg_fire() touches only the
 *  Notifier (its descriptor, its `writers` count), never the Registration,
 *  which the loop may have freed by then; the Notifier's dealloc waits for
 *  `writers` to drop to 0 before it closes the descriptor.
 *
 *  LOCK ORDER.  A Notifier's `mu` before a token's lock (reg_fire() calls
 *  ct_callback_unregister() holding `mu`); the core never calls us with a
 *  token lock held and no other code here takes `mu` inside a core call.
 */
#include "ct_py.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

_Thread_local int ct_py_gil_marked;

/* Written once by the atexit hook, read by foreign threads without the
 * GIL: an atomic; relaxed is enough, since nothing else is published with
 * it (a thread that reads 0 just before the flag is set behaves as it
 * would have a moment earlier). */
static atomic_int finalizing;

void ct_py_set_finalizing(void) {
  atomic_store_explicit(&finalizing, 1, memory_order_relaxed);
}

typedef struct Registration Registration;

typedef struct {
  PyObject_HEAD
  pthread_mutex_t mu;   /* guards fired and signalled; never held while
                           waiting for the GIL */
  Registration *fired;  /* fired in foreign threads, not drained yet */
  int efd;              /* eventfd; owned */
  char signalled;       /* efd written since the last drain */
  /* Foreign threads between leaving `mu` and the end of their write of
   * efd: raised under `mu`, lowered after the write without it.  An atomic
   * because dealloc reads it without `mu`; release on the decrement and
   * acquire in dealloc, so the write is over before efd is closed. */
  atomic_int writers;
} Notifier;

struct Registration {
  PyObject_HEAD
  ct_callback cb;     /* the core's registration; zeroed while not listed */
  PyObject *fn;       /* owned: the callable */
  PyObject *token;    /* owned: the CoreToken (keeps the C token alive) */
  Notifier *notifier; /* owned or NULL */
  PyObject *self_ref; /* owned: ourselves while listed (see above) */
  Registration *fnext;   /* on notifier->fired; guarded by notifier->mu */
  Registration **fpprev; /* NULL when not on it */
  int listed;
  char closing; /* reg_close() has begun; guarded by notifier->mu */
  char ended;   /* reg_fire() ended cb itself; guarded by notifier->mu */
};

static void call_fn(Registration *r) {
  PyObject *res = PyObject_CallObject(r->fn, NULL);
  if (res)
    Py_DECREF(res);
  else
    PyErr_WriteUnraisable(r->fn);
}

/* The core's callback: runs in the triggering thread, with no core lock
 * held, with or without the GIL. */
static void reg_fire(ct_token *t, void *arg) {
  (void)t;
  Registration *r = arg;
  if (ct_py_gil_marked) {
    call_fn(r);
    return;
  }
  Notifier *n = r->notifier;
  if (n) {
    pthread_mutex_lock(&n->mu);
    if (r->closing) {
      /* reg_close() unregisters, and waits in ct_callback_unregister()
       * for this run to return: fn must not run. */
      pthread_mutex_unlock(&n->mu);
      return;
    }
    /* End the registration ourselves (see "No waiting for the firing
     * thread"): 1, as cb is running in this thread; the core no longer
     * touches r->cb after we return. */
    ct_callback_unregister(&r->cb);
    r->ended = 1;
    r->fnext = n->fired;
    if (n->fired)
      n->fired->fpprev = &r->fnext;
    r->fpprev = &n->fired;
    n->fired = r;
    bool first = !n->signalled;
    n->signalled = 1;
    int efd = n->efd;
    if (first) /* relaxed: `mu` orders it before any drain or dealloc */
      atomic_fetch_add_explicit(&n->writers, 1, memory_order_relaxed);
    pthread_mutex_unlock(&n->mu);
    /* r may be freed from here on: only n is touched. */
    if (first) {
      uint64_t one = 1;
      /* Cannot fail short of a bad descriptor; a full counter (2^64-2
       * unread writes) cannot happen as we write once per drain. */
      ssize_t w = write(efd, &one, sizeof one);
      (void)w;
      /* release: the write is done before dealloc may close efd. */
      atomic_fetch_sub_explicit(&n->writers, 1, memory_order_release);
    }
    return;
  }
  if (atomic_load_explicit(&finalizing, memory_order_relaxed))
    return;
  PyGILState_STATE g = PyGILState_Ensure();
  ct_py_gil_marked++;
  call_fn(r);
  ct_py_gil_marked--;
  PyGILState_Release(g);
}

/* End the registration: afterwards the callable is not running and never
 * will.  Releases the GIL while it may wait for a run in another thread
 * (which may itself be waiting for the GIL).  Idempotent. */
static void reg_close_impl(Registration *r) {
  if (!r->listed)
    return;
  r->listed = 0;
  Notifier *n = r->notifier;
  int ended = 0;
  if (n) {
    pthread_mutex_lock(&n->mu);
    r->closing = 1; /* a reg_fire() from now on leaves r alone */
    ended = r->ended;
    if (r->fpprev) { /* fired in another thread but not drained: forget it */
      *r->fpprev = r->fnext;
      if (r->fnext)
        r->fnext->fpprev = r->fpprev;
      r->fnext = NULL;
      r->fpprev = NULL;
    }
    pthread_mutex_unlock(&n->mu);
  }
  if (!ended) { /* else reg_fire() unregistered, under `mu`, before */
    CT_BEGIN_ALLOW_THREADS
    ct_callback_unregister(&r->cb);
    CT_END_ALLOW_THREADS
  }
  memset(&r->cb, 0, sizeof r->cb);
  Py_CLEAR(r->self_ref); /* may free r: last thing */
}

static PyObject *reg_close(Registration *r, PyObject *unused) {
  (void)unused;
  Py_INCREF(r); /* reg_close_impl may drop the last other reference */
  reg_close_impl(r);
  Py_DECREF(r);
  Py_RETURN_NONE;
}

static int reg_traverse(Registration *r, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(r));
  Py_VISIT(r->fn);
  Py_VISIT(r->token);
  Py_VISIT((PyObject *)r->notifier);
  return 0;
}

static void reg_dealloc(Registration *r) {
  PyTypeObject *tp = Py_TYPE(r);
  PyObject_GC_UnTrack(r);
  /* listed implies self_ref, so a listed registration is never freed;
   * and only a listed one is put on a notifier's list. */
  assert(!r->listed && !r->fpprev);
  Py_CLEAR(r->fn);
  Py_CLEAR(r->token);
  Py_CLEAR(r->notifier);
  ct_type_free((PyObject *)r);
  Py_DECREF(tp);
}

static PyObject *reg_get_active(Registration *r, void *closure) {
  (void)closure;
  return PyBool_FromLong(r->listed);
}

const char ct_on_trigger_doc[] =
    "_on_trigger($self, /, fn, notifier=None)\n--\n\n"
    "Call fn() once when the token is triggered: at once in the triggering\n"
    "thread if that thread holds the GIL (in this thread if the token is\n"
    "triggered already); else on the loop that drains `notifier`; else,\n"
    "with no notifier, in the triggering thread after taking the GIL.\n"
    "Returns a registration whose close() guarantees that fn is not\n"
    "running and will not run.  It must be closed: an open registration\n"
    "keeps itself alive.";

PyObject *ct_token_on_trigger(CoreToken *self, PyObject *args,
                              PyObject *kwds) {
  static char *kwlist[] = {"fn", "notifier", NULL};
  PyObject *fn, *notifier = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:_on_trigger", kwlist, &fn,
                                   &notifier))
    return NULL;
  ct_token *t = ct_token_of(self);
  if (!t)
    return NULL;
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "_on_trigger() expects a callable");
    return NULL;
  }
  if (notifier != Py_None && !PyObject_TypeCheck(notifier, ct_NotifierType)) {
    PyErr_SetString(PyExc_TypeError, "notifier must be a Notifier or None");
    return NULL;
  }
  Registration *r = PyObject_GC_New(Registration, ct_RegistrationType);
  if (!r)
    return NULL;
  memset(&r->cb, 0, sizeof r->cb);
  r->fn = ct_newref(fn);
  r->token = ct_newref((PyObject *)self);
  r->notifier = notifier == Py_None ? NULL : (Notifier *)ct_newref(notifier);
  r->fnext = NULL;
  r->fpprev = NULL;
  r->closing = 0;
  r->ended = 0;
  PyObject_GC_Track(r);
  /* Listed before registering: reg_fire() may run in another thread the
   * moment ct_callback_register() has published the registration. */
  r->self_ref = ct_newref((PyObject *)r);
  r->listed = 1;
  ct_py_gil_marked++; /* an inline run happens here, holding the GIL */
  int rc = ct_callback_register(&r->cb, t, reg_fire, r);
  ct_py_gil_marked--;
  if (rc != 0) { /* 1: ran inline already; < 0: failed, fn never runs */
    r->listed = 0;
    memset(&r->cb, 0, sizeof r->cb);
    Py_CLEAR(r->self_ref);
    if (rc < 0) {
      Py_DECREF(r);
      return ct_raise_error(rc);
    }
  }
  return (PyObject *)r;
}

static PyMethodDef reg_methods[] = {
    {"close", (PyCFunction)reg_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "End the registration (waits for a run in progress elsewhere)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef reg_getset[] = {
    {"active", (getter)reg_get_active, NULL,
     "True until close() (also after fn has run).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot reg_slots[] = {
    {Py_tp_doc, "A callback registration made by CoreToken._on_trigger()."},
    {Py_tp_traverse, reg_traverse},
    {Py_tp_dealloc, reg_dealloc},
    {Py_tp_methods, reg_methods},
    {Py_tp_getset, reg_getset},
    {0, NULL}};

static PyType_Spec reg_spec = {
    .name = "cancel_token._core.Registration",
    .basicsize = sizeof(Registration),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = reg_slots,
};

PyTypeObject *ct_registration_type_create(void) {
  return (PyTypeObject *)PyType_FromSpec(&reg_spec);
}

/* Notifier(): a new eventfd-backed notifier.  OSError (EMFILE, ...) if no
 * descriptor can be had. */
static PyObject *notifier_new(PyTypeObject *type, PyObject *args,
                              PyObject *kwds) {
  if (!PyArg_ParseTuple(args, ":Notifier") ||
      (kwds && PyDict_Size(kwds) > 0)) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_TypeError, "Notifier() takes no arguments");
    return NULL;
  }
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0)
    return PyErr_SetFromErrno(PyExc_OSError);
  Notifier *n = (Notifier *)ct_type_alloc(type);
  if (!n) {
    close(efd);
    return NULL;
  }
  pthread_mutex_init(&n->mu, NULL);
  n->fired = NULL;
  n->signalled = 0;
  n->efd = efd;
  atomic_init(&n->writers, 0);
  return (PyObject *)n;
}

static void notifier_dealloc(Notifier *n) {
  PyTypeObject *tp = Py_TYPE(n);
  /* Every Registration that could put itself on `fired` holds a reference
   * on us, so nothing is listed; but a reg_fire() whose registration was
   * drained and freed meanwhile may still be writing efd (see "No waiting
   * for the firing thread"): it is past `mu` and about to finish one
   * write(2), never waiting for anything, so yielding until it is done is
   * short.  acquire: pairs with its release decrement. */
  assert(n->fired == NULL);
  while (atomic_load_explicit(&n->writers, memory_order_acquire) != 0)
    sched_yield();
  if (n->efd >= 0)
    close(n->efd);
  pthread_mutex_destroy(&n->mu);
  ct_type_free((PyObject *)n);
  Py_DECREF(tp);
}

static PyObject *notifier_fileno(Notifier *n, PyObject *unused) {
  (void)unused;
  return PyLong_FromLong(n->efd);
}

static PyObject *notifier_drain(Notifier *n, PyObject *unused) {
  (void)unused;
  /* Reset the counter first: a registration pushed after this either is
   * on the list we take below, or finds `signalled` cleared and writes
   * the descriptor again -- no wake-up is lost. */
  uint64_t v;
  ssize_t rd = read(n->efd, &v, sizeof v);
  (void)rd; /* EAGAIN: nothing written, fine */
  pthread_mutex_lock(&n->mu);
  Registration *list = n->fired;
  n->fired = NULL;
  n->signalled = 0;
  /* Take our own references (we hold the GIL) before the mutex is
   * released: afterwards reg_close() can no longer see them. */
  for (Registration *r = list; r; r = r->fnext) {
    Py_INCREF(r);
    r->fpprev = NULL;
  }
  pthread_mutex_unlock(&n->mu);
  PyObject *out = PyList_New(0);
  while (list) {
    Registration *r = list;
    list = r->fnext;
    r->fnext = NULL;
    if (out && PyList_Append(out, r->fn) < 0)
      Py_CLEAR(out);
    Py_DECREF(r);
  }
  return out;
}

static PyMethodDef notifier_methods[] = {
    {"fileno", (PyCFunction)notifier_fileno, METH_NOARGS,
     "fileno($self, /)\n--\n\nThe eventfd to watch for readability."},
    {"drain", (PyCFunction)notifier_drain, METH_NOARGS,
     "drain($self, /)\n--\n\n"
     "Reset the descriptor and return the callables of the registrations\n"
     "that fired in foreign threads since the last drain, in no particular\n"
     "order.  Call it on the loop's thread when the descriptor is readable."},
    {NULL, NULL, 0, NULL}};

static PyType_Slot notifier_slots[] = {
    {Py_tp_doc, "Notifier()\n--\n\n"
                "Hands triggers from threads without the GIL to one event "
                "loop."},
    {Py_tp_new, notifier_new},
    {Py_tp_dealloc, notifier_dealloc},
    {Py_tp_methods, notifier_methods},
    {0, NULL}};

static PyType_Spec notifier_spec = {
    .name = "cancel_token._core.Notifier",
    .basicsize = sizeof(Notifier),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = notifier_slots,
};

PyTypeObject *ct_notifier_type_create(void) {
  return (PyTypeObject *)PyType_FromSpec(&notifier_spec);
}
