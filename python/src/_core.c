/* SPDX-License-Identifier: MIT
 *
 * _core.c -- cancel_token._core, the C half of the Python package
 * cancel_token.  It wraps libcanceltoken's tokens in a Python type (the
 * base of cancel_token.CancelToken) so that every piece of token logic --
 * triggering, chaining, "which token fired", the pollable descriptor --
 * runs in the C core.  The Python half (token.py) only adapts waiting to
 * asyncio.  When built with CT_PY_NET it also wraps the token server and
 * client of canceltoken_net.h (net.c, included at the end).
 *
 * Design notes:
 *
 *  Ownership.  A CoreToken owns exactly one reference on its C token
 *  (`tok`), taken at creation and dropped in tp_dealloc; `tok` is never NULL
 *  for an object Python can see.  Every PyObject* field is an owned (strong)
 *  reference or NULL.  Functions below say "borrowed" or "new reference" for
 *  what they take and return, as the CPython API does.
 *
 *  C token -> Python object.  ct_token_set_data(tok, self) stores a
 *  BORROWED pointer to the Python object that wraps `tok`.  Invariant: the
 *  pointer is either NULL or points to a live CoreToken whose `tok` is that
 *  token.  It is set when the object is created and cleared in tp_dealloc
 *  (before anything else is released), both with the GIL held, and it is
 *  only read with the GIL held; so it can never dangle.  At most one object
 *  wraps a given C token at a time: a C token reached without a wrapper (one
 *  created by C code, e.g. the net client's stand-in for a remote cause) gets
 *  a fresh wrapper on demand.
 *
 *  Why triggered_token returns the very object that was triggered.  The
 *  cause of a trigger is the token itself or one of its ancestors.  A chain
 *  object keeps its parents' Python objects alive through `parents` (a
 *  tuple), so an ancestor's Python object lives as long as any descendant's
 *  does, and ct_token_data(cause) finds it.
 *
 *  Deep chains.  The C core walks chains with work lists, never recursion.
 *  On the Python side, freeing a 100,000-deep chain frees a nested
 *  structure of objects and tuples; tp_dealloc uses the trashcan
 *  (Py_TRASHCAN_BEGIN), as tuples do, so that does not recurse deeply
 *  either.
 *
 *  The GIL.  Token operations that cannot block (check, trigger, chain,
 *  unref) run with the GIL held: they are short, and the core runs
 *  callbacks with none of its locks held, so no lock of the core is ever
 *  held while a thread waits for the GIL.  The one call that may wait for
 *  another thread -- ct_callback_unregister(), which waits for a callback
 *  running elsewhere, and that callback may be waiting for the GIL -- runs
 *  with the GIL released; so do all the blocking network calls.  The
 *  Notifier's mutex (below) is never held while waiting for the GIL.
 *
 *  Waking event loops: see "Trigger callbacks into Python" below.  A
 *  trigger in a thread that holds the GIL resolves waiters at once; one in
 *  any other thread (C code) never takes the GIL, but hands the wake-up to
 *  the loop through one eventfd per loop.
 *
 *  Names.  The C core needs a non-empty UTF-8 name without NUL bytes of at
 *  most CT_NAME_MAX bytes; Python allows any str.  A name the core can hold
 *  exactly is given to it, and the object also caches the str.  Any other
 *  name (the reference allows CancelToken('')) is kept by the object as the
 *  authoritative name (`own_name`), the C token gets a readable stand-in,
 *  and chains of such tokens compose their name in Python, eagerly.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "canceltoken.h"

/* ------------------------------------------------------------------------ */
/* Module globals (single-phase init, one interpreter).                     */

static PyObject *BaseError;          /* BaseCancelTokenException */
static PyObject *OperationCancelled; /* subclass of BaseError */
static PyObject *EventLoopMismatch;  /* subclass of BaseError */
/* The class used for tokens made by C code (chains, wrappers): the Python
 * cancel_token.CancelToken once token.py has called _set_token_class(),
 * CoreTokenType before.  Owned. */
static PyTypeObject *token_class;

/* Raise the Python exception for a negative errno from the core.
 * Returns NULL. */
static PyObject *raise_ct_error(int err) {
  if (err == -ENOMEM)
    return PyErr_NoMemory();
  if (err == -EINVAL) {
    PyErr_SetString(PyExc_ValueError, ct_strerror(err));
    return NULL;
  }
  /* OSError(errno, msg) picks the subclass (FileNotFoundError, ...). */
  PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", -err,
                                        ct_strerror(err));
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* CoreToken                                                                */

typedef struct {
  PyObject_HEAD
  ct_token *tok;      /* owned reference on the C token; never NULL */
  PyObject *name;     /* str or NULL: cached name (authoritative if own_name) */
  PyObject *parents;  /* tuple of CoreToken or NULL: keeps ancestors' objects */
  PyObject *loop;     /* the loop the token is bound to, or Py_None */
  PyObject *waiters;  /* token.py's per-loop waiter state (a dict) or NULL */
  PyObject *owner;    /* proxies: the Client that serves trigger(); or NULL */
  PyObject *weakrefs; /* weak reference list */
  char own_name;      /* name differs from the C token's: compose in Python */
} CoreToken;

static PyTypeObject CoreTokenType;

#define CoreToken_Check(o) PyObject_TypeCheck((o), &CoreTokenType)

/* The loop a token is bound to (borrowed): Py_None if unbound, or once
 * the GC has cleared the object. */
static inline PyObject *token_loop(CoreToken *o) {
  return o->loop ? o->loop : Py_None;
}

/* A new object of `type` wrapping C token t (borrowed; the object takes a
 * reference of its own) and registered as t's Python object.  Returns a
 * new reference, or NULL with an exception set. */
static CoreToken *token_wrap(PyTypeObject *type, ct_token *t) {
  CoreToken *o = (CoreToken *)type->tp_alloc(type, 0);
  if (!o)
    return NULL;
  o->tok = ct_token_ref(t);
  o->loop = Py_NewRef(Py_None);
  int r = ct_token_set_data(t, o);
  if (r < 0) {
    Py_DECREF(o); /* dealloc drops the reference; data is not ours */
    return (CoreToken *)raise_ct_error(r);
  }
  return o;
}

/* The Python object of C token t (borrowed): the existing wrapper if there
 * is one, else a new one of token_class.  Returns a new reference. */
static PyObject *token_object(ct_token *t) {
  CoreToken *o = ct_token_data(t);
  if (o) {
    assert(o->tok == t);
    return Py_NewRef((PyObject *)o);
  }
  return (PyObject *)token_wrap(token_class, t);
}

/* A readable stand-in for a name the core cannot hold exactly: NUL and
 * surrogates written as escapes, cut (with "...") to fit CT_NAME_MAX,
 * "(unnamed)" if empty.  Returns a new bytes object (NUL-terminated), or
 * NULL with an exception set. */
static PyObject *standin_name(PyObject *name) {
  Py_ssize_t n = PyUnicode_GET_LENGTH(name);
  const int kind = PyUnicode_KIND(name);
  const void *data = PyUnicode_DATA(name);
  /* Worst case 4 bytes (or a 6-byte escape) per code point. */
  size_t cap = (size_t)n * 6 + 16;
  if (cap > CT_NAME_MAX + 16)
    cap = CT_NAME_MAX + 16;
  char *buf = PyMem_Malloc(cap);
  if (!buf)
    return PyErr_NoMemory();
  size_t len = 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    Py_UCS4 c = PyUnicode_READ(kind, data, i);
    char tmp[8];
    int k;
    if (c == 0 || (c >= 0xD800 && c <= 0xDFFF))
      k = snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)c);
    else if (c < 0x80) {
      tmp[0] = (char)c;
      k = 1;
    } else if (c < 0x800) {
      tmp[0] = (char)(0xC0 | (c >> 6));
      tmp[1] = (char)(0x80 | (c & 0x3F));
      k = 2;
    } else if (c < 0x10000) {
      tmp[0] = (char)(0xE0 | (c >> 12));
      tmp[1] = (char)(0x80 | ((c >> 6) & 0x3F));
      tmp[2] = (char)(0x80 | (c & 0x3F));
      k = 3;
    } else {
      tmp[0] = (char)(0xF0 | (c >> 18));
      tmp[1] = (char)(0x80 | ((c >> 12) & 0x3F));
      tmp[2] = (char)(0x80 | ((c >> 6) & 0x3F));
      tmp[3] = (char)(0x80 | (c & 0x3F));
      k = 4;
    }
    if (len + (size_t)k > CT_NAME_MAX - 3) {
      memcpy(buf + len, "...", 3);
      len += 3;
      break;
    }
    memcpy(buf + len, tmp, (size_t)k);
    len += (size_t)k;
  }
  if (len == 0) {
    static const char unnamed[] = "(unnamed)";
    memcpy(buf, unnamed, sizeof unnamed - 1);
    len = sizeof unnamed - 1;
  }
  PyObject *res = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
  PyMem_Free(buf);
  return res;
}

/* CoreToken(name, loop=None): a new, untriggered token. */
static PyObject *token_new(PyTypeObject *type, PyObject *args,
                           PyObject *kwds) {
  static char *kwlist[] = {"name", "loop", NULL};
  PyObject *name, *loop = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|O:CancelToken", kwlist,
                                   &name, &loop))
    return NULL;

  Py_ssize_t size;
  const char *utf8 = PyUnicode_AsUTF8AndSize(name, &size);
  bool exact = utf8 != NULL && size > 0 && size <= (Py_ssize_t)CT_NAME_MAX &&
               strlen(utf8) == (size_t)size;
  PyObject *standin = NULL;
  if (!exact) {
    PyErr_Clear(); /* a surrogate: UnicodeEncodeError */
    standin = standin_name(name);
    if (!standin)
      return NULL;
    utf8 = PyBytes_AS_STRING(standin);
  }
  ct_token *t;
  int r = ct_token_new(&t, utf8);
  Py_XDECREF(standin);
  if (r < 0)
    return raise_ct_error(r);
  CoreToken *o = token_wrap(type, t);
  ct_token_unref(t); /* the wrapper holds its own reference */
  if (!o)
    return NULL;
  o->name = Py_NewRef(name);
  o->own_name = !exact;
  Py_SETREF(o->loop, Py_NewRef(loop));
  return (PyObject *)o;
}

static int token_traverse(CoreToken *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self)); /* heap subclasses own their type */
  Py_VISIT(self->parents);
  Py_VISIT(self->loop);
  Py_VISIT(self->waiters);
  Py_VISIT(self->owner);
  return 0;
}

/* Break reference cycles (the waiter state refers back to the token).  The
 * C token and the data pointer stay until dealloc, so a triggered_token
 * lookup on a half-cleared object still finds live objects. */
static int token_clear(CoreToken *self) {
  Py_CLEAR(self->parents);
  Py_CLEAR(self->waiters);
  Py_CLEAR(self->owner);
  Py_CLEAR(self->loop);
  return 0;
}

static void token_dealloc(CoreToken *self) {
  PyObject_GC_UnTrack(self);
  Py_TRASHCAN_BEGIN(self, token_dealloc)
  /* First unpublish ourselves, so no lookup can reach a dying object. */
  if (self->tok && ct_token_data(self->tok) == self)
    ct_token_set_data(self->tok, NULL);
  if (self->weakrefs)
    PyObject_ClearWeakRefs((PyObject *)self);
  token_clear(self);
  Py_CLEAR(self->name);
  ct_token_unref(self->tok); /* NULL-safe; never recurses in C */
  self->tok = NULL;
  Py_TYPE(self)->tp_free((PyObject *)self);
  Py_TRASHCAN_END
}

/* The name, as a new reference. */
static PyObject *token_get_name(CoreToken *self, void *closure) {
  (void)closure;
  if (self->name)
    return Py_NewRef(self->name);
  const char *nm = ct_token_name(self->tok);
  if (!nm)
    return PyErr_NoMemory();
  self->name = PyUnicode_DecodeUTF8(nm, (Py_ssize_t)strlen(nm), "replace");
  return Py_XNewRef(self->name);
}

static PyObject *token_str(CoreToken *self) {
  return token_get_name(self, NULL);
}

static PyObject *token_repr(CoreToken *self) {
  PyObject *name = token_get_name(self, NULL);
  if (!name)
    return NULL;
  PyObject *r = PyUnicode_FromFormat("<CancelToken: %U>", name);
  Py_DECREF(name);
  return r;
}

static PyObject *token_get_triggered(CoreToken *self, void *closure) {
  (void)closure;
  return PyBool_FromLong(ct_token_triggered(self->tok));
}

static PyObject *token_get_triggered_token(CoreToken *self, void *closure) {
  (void)closure;
  ct_token *cause = ct_token_triggered_token(self->tok);
  if (!cause)
    Py_RETURN_NONE;
  return token_object(cause);
}

static PyObject *token_get_is_proxy(CoreToken *self, void *closure) {
  (void)closure;
  return PyBool_FromLong(ct_token_is_proxy(self->tok));
}

static PyObject *token_get_loop(CoreToken *self, void *closure) {
  (void)closure;
  return Py_NewRef(token_loop(self));
}

PyDoc_STRVAR(trigger_doc,
"trigger()\n--\n\n"
"Trigger this token, and every token chained to it.  The first trigger is\n"
"the one that counts; later ones do nothing.  Safe from any thread: an\n"
"event loop waiting on the token in another thread is woken.");

static PyObject *token_trigger(CoreToken *self, PyObject *unused) {
  (void)unused;
  int r = ct_token_trigger(self->tok);
  if (r < 0)
    return raise_ct_error(r);
  Py_RETURN_NONE;
}

/* "Cancellation requested by <name> token", <name> being the Python name
 * of the token that fired.  Returns a new reference. */
static PyObject *cancel_message(CoreToken *self) {
  PyObject *cause = token_get_triggered_token(self, NULL);
  if (!cause)
    return NULL;
  PyObject *msg = PyUnicode_FromFormat("Cancellation requested by %S token",
                                       cause);
  Py_DECREF(cause);
  return msg;
}

PyDoc_STRVAR(raise_if_triggered_doc,
"raise_if_triggered()\n--\n\n"
"Raise OperationCancelled if the token has been triggered.");

static PyObject *token_raise_if_triggered(CoreToken *self, PyObject *unused) {
  (void)unused;
  if (!ct_token_triggered(self->tok))
    Py_RETURN_NONE;
  PyObject *msg = cancel_message(self);
  if (msg) {
    PyErr_SetObject(OperationCancelled, msg);
    Py_DECREF(msg);
  }
  return NULL;
}

PyDoc_STRVAR(cancel_message_doc,
"_cancel_message()\n--\n\n"
"The message of the OperationCancelled that raise_if_triggered() raises.");

static PyObject *token_cancel_message(CoreToken *self, PyObject *unused) {
  (void)unused;
  if (!ct_token_triggered(self->tok))
    Py_RETURN_NONE;
  return cancel_message(self);
}

PyDoc_STRVAR(chain_doc,
"chain(token)\n--\n\n"
"A new token, named '<self>:<token>', triggered when either token is.\n"
"Triggering it triggers neither.  Raises EventLoopMismatch if the two\n"
"tokens are bound to different loops, NotImplementedError on a proxy.");

static PyObject *token_chain(CoreToken *self, PyObject *arg) {
  if (!CoreToken_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "chain() expects a CancelToken, not %.100s",
                 Py_TYPE(arg)->tp_name);
    return NULL;
  }
  CoreToken *other = (CoreToken *)arg;
  if (ct_token_is_proxy(self->tok)) {
    PyErr_SetString(PyExc_NotImplementedError,
                    "The `CancelToken.chain` API is not available to proxy "
                    "tokens");
    return NULL;
  }
  /* As the reference: a proxy belongs to no loop; other tokens must be
   * bound to the same loop (or both to none). */
  if (!ct_token_is_proxy(other->tok)) {
    int ne = PyObject_RichCompareBool(token_loop(self), token_loop(other),
                                      Py_NE);
    if (ne < 0)
      return NULL;
    if (ne) {
      PyErr_Format(EventLoopMismatch,
                   "Chained CancelToken objects must be on the same event "
                   "loop: %R != %R", token_loop(self), token_loop(other));
      return NULL;
    }
  }
  PyObject *parents = PyTuple_Pack(2, (PyObject *)self, arg);
  if (!parents)
    return NULL;
  PyObject *name = NULL;
  if (self->own_name || other->own_name) {
    PyObject *a = token_get_name(self, NULL);
    PyObject *b = a ? token_get_name(other, NULL) : NULL;
    if (b)
      name = PyUnicode_FromFormat("%U:%U", a, b);
    Py_XDECREF(a);
    Py_XDECREF(b);
    if (!name) {
      Py_DECREF(parents);
      return NULL;
    }
  }
  ct_token *c;
  int r = ct_token_chain(&c, self->tok, other->tok);
  if (r < 0) {
    Py_DECREF(parents);
    Py_XDECREF(name);
    if (r == -ENOTSUP) {
      PyErr_SetString(PyExc_NotImplementedError,
                      "The `CancelToken.chain` API is not available to proxy "
                      "tokens");
      return NULL;
    }
    return raise_ct_error(r);
  }
  CoreToken *o = token_wrap(token_class, c);
  ct_token_unref(c);
  if (!o) {
    Py_DECREF(parents);
    Py_XDECREF(name);
    return NULL;
  }
  o->parents = parents;
  o->name = name;
  o->own_name = name != NULL;
  Py_SETREF(o->loop, Py_NewRef(token_loop(self)));
  return (PyObject *)o;
}

PyDoc_STRVAR(fileno_doc,
"_fileno()\n--\n\n"
"The token's descriptor: an eventfd that becomes readable when the token\n"
"is triggered and stays readable.  Owned by the token: never read, write\n"
"or close it.  Raises OSError (EMFILE, ...) if none can be created.");

static PyObject *token_fileno(CoreToken *self, PyObject *unused) {
  (void)unused;
  int fd = ct_token_fd(self->tok);
  if (fd < 0)
    return raise_ct_error(fd);
  return PyLong_FromLong(fd);
}

PyDoc_STRVAR(waiter_map_doc,
"_waiter_map()\n--\n\n"
"The dict in which cancel_token.token keeps this token's waiters, one\n"
"entry per event loop; created on first use.  Getting or creating it is\n"
"one step under the GIL, so threads running different loops cannot each\n"
"create one and lose the other's.");

static PyObject *token_waiter_map(CoreToken *self, PyObject *unused) {
  (void)unused;
  if (!self->waiters && !(self->waiters = PyDict_New()))
    return NULL;
  return Py_NewRef(self->waiters);
}

static PyObject *token_reduce(CoreToken *self, PyObject *unused) {
  (void)unused;
  PyErr_Format(PyExc_TypeError,
               "cannot pickle %.100s objects: a token lives in one process; "
               "share it with BaseCancelTokenManager instead",
               Py_TYPE(self)->tp_name);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Trigger callbacks into Python, and the per-loop notifier                 */

/* How a trigger reaches an event loop (token.py builds on this).
 *
 * token.py registers one core callback per (token, loop) that has waiters:
 * a Registration holding a Python callable.  The core runs the callback in
 * whatever thread triggers the token:
 *
 *  - A thread that holds the GIL -- Python code calling trigger(), the
 *    common case, usually on the loop's own thread -- calls the callable
 *    at once.  On the loop's thread that resolves the waiters' futures
 *    directly: no system call, no extra loop iteration.  (The callable
 *    itself uses call_soon_threadsafe() when it runs on another thread.)
 *  - Any other thread -- C code, the net client's thread, the core's
 *    deadline or signal thread -- must not wait for the GIL (it may hold
 *    up a network connection, or the interpreter may be finalizing).  It
 *    puts the registration on its loop's Notifier list, under a mutex that
 *    is never held while anyone waits for the GIL, and writes the
 *    Notifier's eventfd, which the loop watches with add_reader.  The loop
 *    then drains the list on its own thread and calls the callables there.
 *
 * So a loop needs one descriptor, whatever the number of tokens it waits
 * on.  A Registration without a Notifier (the loop cannot watch a
 * descriptor, or none could be created) falls back to taking the GIL in
 * the foreign thread.
 *
 * Lifetimes.  While registered (`listed`), a Registration is on the core's
 * list and reg_fire(cb, self) may run at any moment in any thread; it
 * holds itself alive through `self_ref`, which reg_close() drops only after
 * ct_callback_unregister() returned (so reg_fire() is no longer running).
 * A listed Registration that fired in a foreign thread may also sit on its
 * Notifier's `fired` list; reg_close() takes it off, under the mutex, and
 * Notifier.drain() takes its own reference on each one it takes off. */

typedef struct Registration Registration;

typedef struct {
  PyObject_HEAD
  pthread_mutex_t mu;   /* guards fired and signalled; never held while
                           waiting for the GIL */
  Registration *fired;  /* fired in foreign threads, not drained yet */
  int efd;              /* eventfd; owned */
  char signalled;       /* efd written since the last drain */
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
};

static PyTypeObject RegistrationType;
static PyTypeObject NotifierType;

/* Does this thread hold the GIL?  PyGILState_Check() without its "check
 * disabled" escape: both calls are safe without the GIL. */
static bool holds_gil(void) {
  PyThreadState *mine = PyGILState_GetThisThreadState();
  return mine != NULL && mine == _PyThreadState_UncheckedGet();
}

static void call_fn(Registration *r) {
  PyObject *res = PyObject_CallNoArgs(r->fn);
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
  if (holds_gil()) {
    call_fn(r);
    return;
  }
  Notifier *n = r->notifier;
  if (n) {
    pthread_mutex_lock(&n->mu);
    r->fnext = n->fired;
    if (n->fired)
      n->fired->fpprev = &r->fnext;
    r->fpprev = &n->fired;
    n->fired = r;
    bool first = !n->signalled;
    n->signalled = 1;
    pthread_mutex_unlock(&n->mu);
    if (first) {
      uint64_t one = 1;
      /* Cannot fail short of a bad descriptor; a full counter (2^64-2
       * unread writes) cannot happen as we write once per drain. */
      ssize_t w = write(n->efd, &one, sizeof one);
      (void)w;
    }
    return;
  }
  /* No notifier: take the GIL -- but never while the interpreter shuts
   * down, when PyGILState_Ensure() would hang or crash. */
  if (_Py_IsFinalizing())
    return;
  PyGILState_STATE g = PyGILState_Ensure();
  call_fn(r);
  PyGILState_Release(g);
}

/* End the registration: afterwards the callable is not running and never
 * will.  Releases the GIL while it may wait for a run in another thread
 * (which may itself be waiting for the GIL).  Idempotent. */
static void reg_close_impl(Registration *r) {
  if (!r->listed)
    return;
  r->listed = 0;
  Py_BEGIN_ALLOW_THREADS
  ct_callback_unregister(&r->cb);
  Py_END_ALLOW_THREADS
  memset(&r->cb, 0, sizeof r->cb);
  Notifier *n = r->notifier;
  if (n) { /* fired in another thread but not drained: forget it */
    pthread_mutex_lock(&n->mu);
    if (r->fpprev) {
      *r->fpprev = r->fnext;
      if (r->fnext)
        r->fnext->fpprev = r->fpprev;
      r->fnext = NULL;
      r->fpprev = NULL;
    }
    pthread_mutex_unlock(&n->mu);
  }
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
  Py_VISIT(r->fn);
  Py_VISIT(r->token);
  Py_VISIT((PyObject *)r->notifier);
  return 0;
}

static void reg_dealloc(Registration *r) {
  PyObject_GC_UnTrack(r);
  /* listed implies self_ref, so a listed registration is never freed;
   * and only a listed one is put on a notifier's list. */
  assert(!r->listed && !r->fpprev);
  Py_CLEAR(r->fn);
  Py_CLEAR(r->token);
  Py_CLEAR(r->notifier);
  Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *reg_get_active(Registration *r, void *closure) {
  (void)closure;
  return PyBool_FromLong(r->listed);
}

PyDoc_STRVAR(on_trigger_doc,
"_on_trigger(fn, notifier=None)\n--\n\n"
"Call fn() once when the token is triggered: at once in the triggering\n"
"thread if that thread holds the GIL (in this thread if the token is\n"
"triggered already); else on the loop that drains `notifier`; else, with\n"
"no notifier, in the triggering thread after taking the GIL.  Returns a\n"
"registration whose close() guarantees that fn is not running and will\n"
"not run.  It must be closed: an open registration keeps itself alive.");

static PyObject *token_on_trigger(CoreToken *self, PyObject *args,
                                  PyObject *kwds) {
  static char *kwlist[] = {"fn", "notifier", NULL};
  PyObject *fn, *notifier = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:_on_trigger", kwlist, &fn,
                                   &notifier))
    return NULL;
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "_on_trigger() expects a callable");
    return NULL;
  }
  if (notifier != Py_None && !PyObject_TypeCheck(notifier, &NotifierType)) {
    PyErr_SetString(PyExc_TypeError, "notifier must be a Notifier or None");
    return NULL;
  }
  Registration *r = PyObject_GC_New(Registration, &RegistrationType);
  if (!r)
    return NULL;
  memset(&r->cb, 0, sizeof r->cb);
  r->fn = Py_NewRef(fn);
  r->token = Py_NewRef((PyObject *)self);
  r->notifier =
      notifier == Py_None ? NULL : (Notifier *)Py_NewRef(notifier);
  r->fnext = NULL;
  r->fpprev = NULL;
  PyObject_GC_Track(r);
  /* Listed before registering: reg_fire() may run in another thread the
   * moment ct_callback_register() has published the registration. */
  r->self_ref = Py_NewRef((PyObject *)r);
  r->listed = 1;
  int rc = ct_callback_register(&r->cb, self->tok, reg_fire, r);
  if (rc != 0) { /* 1: ran inline already; < 0: failed, fn never runs */
    r->listed = 0;
    memset(&r->cb, 0, sizeof r->cb);
    Py_CLEAR(r->self_ref);
    if (rc < 0) {
      Py_DECREF(r);
      return raise_ct_error(rc);
    }
  }
  return (PyObject *)r;
}

static PyMethodDef reg_methods[] = {
    {"close", (PyCFunction)reg_close, METH_NOARGS,
     "End the registration (waits for a run in progress elsewhere)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef reg_getset[] = {
    {"active", (getter)reg_get_active, NULL,
     "True until close() (also after fn has run).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject RegistrationType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cancel_token._core.Registration",
    .tp_basicsize = sizeof(Registration),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A callback registration made by CoreToken._on_trigger().",
    .tp_traverse = (traverseproc)reg_traverse,
    .tp_dealloc = (destructor)reg_dealloc,
    .tp_methods = reg_methods,
    .tp_getset = reg_getset,
};

/* Notifier(): a new eventfd-backed notifier.  OSError (EMFILE, ...) if no
 * descriptor can be had. */
static PyObject *notifier_new(PyTypeObject *type, PyObject *args,
                              PyObject *kwds) {
  if (!PyArg_ParseTuple(args, ":Notifier") ||
      (kwds && PyDict_GET_SIZE(kwds) > 0)) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_TypeError, "Notifier() takes no arguments");
    return NULL;
  }
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0)
    return PyErr_SetFromErrno(PyExc_OSError);
  Notifier *n = (Notifier *)type->tp_alloc(type, 0);
  if (!n) {
    close(efd);
    return NULL;
  }
  pthread_mutex_init(&n->mu, NULL);
  n->fired = NULL;
  n->signalled = 0;
  n->efd = efd;
  return (PyObject *)n;
}

static void notifier_dealloc(Notifier *n) {
  /* Every Registration that could put itself on `fired` holds a reference
   * on us, so nothing is listed and no thread can be inside reg_fire(). */
  assert(n->fired == NULL);
  if (n->efd >= 0)
    close(n->efd);
  pthread_mutex_destroy(&n->mu);
  Py_TYPE(n)->tp_free((PyObject *)n);
}

static PyObject *notifier_fileno(Notifier *n, PyObject *unused) {
  (void)unused;
  return PyLong_FromLong(n->efd);
}

PyDoc_STRVAR(drain_doc,
"drain()\n--\n\n"
"Reset the descriptor and return the callables of the registrations that\n"
"fired in foreign threads since the last drain, in no particular order.\n"
"Call it on the loop's thread when the descriptor is readable.");

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
     "The eventfd to watch for readability."},
    {"drain", (PyCFunction)notifier_drain, METH_NOARGS, drain_doc},
    {NULL, NULL, 0, NULL}};

static PyTypeObject NotifierType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cancel_token._core.Notifier",
    .tp_basicsize = sizeof(Notifier),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Notifier()\n--\n\n"
              "Hands triggers from threads without the GIL to one event "
              "loop.",
    .tp_new = notifier_new,
    .tp_dealloc = (destructor)notifier_dealloc,
    .tp_methods = notifier_methods,
};

/* ------------------------------------------------------------------------ */
/* The CoreToken type                                                       */

static PyMethodDef token_methods[] = {
    {"trigger", (PyCFunction)token_trigger, METH_NOARGS, trigger_doc},
    {"raise_if_triggered", (PyCFunction)token_raise_if_triggered, METH_NOARGS,
     raise_if_triggered_doc},
    {"chain", (PyCFunction)token_chain, METH_O, chain_doc},
    {"_cancel_message", (PyCFunction)token_cancel_message, METH_NOARGS,
     cancel_message_doc},
    {"_fileno", (PyCFunction)token_fileno, METH_NOARGS, fileno_doc},
    {"_on_trigger", (PyCFunction)(void (*)(void))token_on_trigger,
     METH_VARARGS | METH_KEYWORDS, on_trigger_doc},
    {"_waiter_map", (PyCFunction)token_waiter_map, METH_NOARGS,
     waiter_map_doc},
    {"__reduce__", (PyCFunction)token_reduce, METH_NOARGS,
     "Tokens cannot be pickled."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef token_getset[] = {
    {"name", (getter)token_get_name, NULL,
     "The token's name; for a chain, its parents' names joined by ':'.", NULL},
    {"triggered", (getter)token_get_triggered, NULL,
     "True once the token, or any token it is chained to, is triggered.\n"
     "One atomic load, whatever the depth of chaining.", NULL},
    {"triggered_token", (getter)token_get_triggered_token, NULL,
     "The token whose trigger triggered this one (this token, or the "
     "ancestor\nthat fired first), or None if not triggered.", NULL},
    {"is_proxy", (getter)token_get_is_proxy, NULL,
     "True for a proxy of a token served by another process.", NULL},
    {"loop", (getter)token_get_loop, NULL,
     "The event loop the token is bound to, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMemberDef token_members[] = {
    {"_owner", T_OBJECT, offsetof(CoreToken, owner), READONLY,
     "The client a proxy belongs to (private)."},
    {NULL, 0, 0, 0, NULL}};

static PyTypeObject CoreTokenType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cancel_token._core.CoreToken",
    .tp_basicsize = sizeof(CoreToken),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "CoreToken(name, loop=None)\n--\n\n"
              "A libcanceltoken token; the base of cancel_token.CancelToken.",
    .tp_new = token_new,
    .tp_dealloc = (destructor)token_dealloc,
    .tp_traverse = (traverseproc)token_traverse,
    .tp_clear = (inquiry)token_clear,
    .tp_repr = (reprfunc)token_repr,
    .tp_str = (reprfunc)token_str,
    .tp_methods = token_methods,
    .tp_getset = token_getset,
    .tp_members = token_members,
    .tp_weaklistoffset = offsetof(CoreToken, weakrefs),
};

/* ------------------------------------------------------------------------ */
/* Module functions                                                         */

PyDoc_STRVAR(set_token_class_doc,
"_set_token_class(cls)\n--\n\n"
"Make cls (a subclass of CoreToken) the class of the tokens that C code\n"
"creates: chains and wrappers of C tokens.  Called once by token.py.");

static PyObject *set_token_class(PyObject *mod, PyObject *cls) {
  (void)mod;
  if (!PyType_Check(cls) ||
      !PyType_IsSubtype((PyTypeObject *)cls, &CoreTokenType)) {
    PyErr_SetString(PyExc_TypeError, "expected a subclass of CoreToken");
    return NULL;
  }
  Py_SETREF(token_class, (PyTypeObject *)Py_NewRef(cls));
  Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* Test support                                                             */

static void *trigger_thread(void *arg) {
  ct_token *t = arg;
  ct_token_trigger(t);
  ct_token_unref(t);
  return NULL;
}

PyDoc_STRVAR(trigger_from_c_thread_doc,
"_trigger_from_c_thread(token)\n--\n\n"
"Trigger token from a new C thread that Python knows nothing about (it\n"
"never takes the GIL unless a callback does).  For tests: a trigger by C\n"
"code must wake an event loop too.");

static PyObject *trigger_from_c_thread(PyObject *mod, PyObject *arg) {
  (void)mod;
  if (!CoreToken_Check(arg)) {
    PyErr_SetString(PyExc_TypeError, "expected a CancelToken");
    return NULL;
  }
  /* The thread owns a reference on the C token, not on the Python object:
   * the object may go away before the thread runs. */
  ct_token *t = ct_token_ref(((CoreToken *)arg)->tok);
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int r = pthread_create(&th, &attr, trigger_thread, t);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    ct_token_unref(t);
    errno = r;
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  Py_RETURN_NONE;
}

#ifdef CT_PY_NET
#include "net.c"
#endif

static PyMethodDef module_methods[] = {
    {"_set_token_class", set_token_class, METH_O, set_token_class_doc},
    {"_trigger_from_c_thread", trigger_from_c_thread, METH_O,
     trigger_from_c_thread_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cancel_token._core",
    .m_doc = "libcanceltoken's tokens for Python (see cancel_token).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__core(void); /* the one exported symbol */
PyMODINIT_FUNC PyInit__core(void) {
  if (PyType_Ready(&CoreTokenType) < 0 ||
      PyType_Ready(&RegistrationType) < 0 ||
      PyType_Ready(&NotifierType) < 0)
    return NULL;
#ifdef CT_PY_NET
  if (net_types_ready() < 0)
    return NULL;
#endif
  PyObject *m = PyModule_Create(&core_module);
  if (!m)
    return NULL;
  if (!BaseError) {
    BaseError = PyErr_NewExceptionWithDoc(
        "cancel_token.BaseCancelTokenException",
        "Base class of the exceptions of cancel_token.", NULL, NULL);
    if (!BaseError)
      goto fail;
    OperationCancelled = PyErr_NewExceptionWithDoc(
        "cancel_token.OperationCancelled",
        "Raised when an operation was cancelled by a token.", BaseError,
        NULL);
    EventLoopMismatch = PyErr_NewExceptionWithDoc(
        "cancel_token.EventLoopMismatch",
        "Raised when tokens bound to different event loops meet.", BaseError,
        NULL);
    if (!OperationCancelled || !EventLoopMismatch)
      goto fail;
    token_class = (PyTypeObject *)Py_NewRef((PyObject *)&CoreTokenType);
  }
  if (PyModule_AddObjectRef(m, "BaseCancelTokenException", BaseError) < 0 ||
      PyModule_AddObjectRef(m, "OperationCancelled", OperationCancelled) < 0 ||
      PyModule_AddObjectRef(m, "EventLoopMismatch", EventLoopMismatch) < 0 ||
      PyModule_AddObjectRef(m, "CoreToken", (PyObject *)&CoreTokenType) < 0 ||
      PyModule_AddObjectRef(m, "Registration",
                            (PyObject *)&RegistrationType) < 0 ||
      PyModule_AddObjectRef(m, "Notifier", (PyObject *)&NotifierType) < 0 ||
      PyModule_AddIntConstant(m, "NAME_MAX", CT_NAME_MAX) < 0)
    goto fail;
#ifdef CT_PY_NET
  if (net_add_to_module(m) < 0)
    goto fail;
  if (PyModule_AddIntConstant(m, "HAVE_NET", 1) < 0)
    goto fail;
#else
  if (PyModule_AddIntConstant(m, "HAVE_NET", 0) < 0)
    goto fail;
#endif
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}
