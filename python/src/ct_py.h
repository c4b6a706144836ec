/* SPDX-License-Identifier: MIT
 *
 * ct_py.h -- the one internal header of cancel_token._core: what the files
 * of python/src/ share (the CoreToken layout, the module's types and
 * exceptions, small helpers).  Nothing outside python/src/ includes it.
 *
 * Design notes:
 *
 *  The stable ABI.  Every file is compiled against the limited API of
 *  CPython 3.9 (Py_LIMITED_API below, set here so that no file can forget
 *  it), so one build, cancel_token/_core.abi3.so, loads into every CPython
 *  from 3.9 on, including versions released after it was built.  That rules
 *  out static type objects (the types are heap types made from specs), the
 *  private _Py* functions, direct struct access (PyTypeObject is opaque)
 *  and a few newer conveniences (Py_NewRef, PyModule_AddObjectRef,
 *  PyObject_GetBuffer before 3.11), for which ct_newref() and friends stand
 *  in.  The free-threaded build of CPython (3.13t) cannot load abi3 modules
 *  at all; see docs/python.md.
 *
 *  Which file holds what:
 *    module.c   the module: init, exceptions, module-level functions,
 *               interpreter-shutdown flag;
 *    token.c    the CoreToken type (everything a token is and does);
 *    names.c    names the C core cannot hold exactly (stand-ins);
 *    notify.c   trigger callbacks into Python: Registration, Notifier;
 *    handle.c   what the remote backends share: deadlines, errors, the
 *               lifetime of C objects used without the GIL;
 *    net.c      Server and Client over canceltoken_net.h (CT_PY_NET only);
 *    zk.c       ZkClient over canceltoken_zk.h (CT_PY_ZK only).
 *  Dependencies go one way: module.c -> token.c -> names.c; notify.c,
 *  net.c and zk.c use token.c's helpers, and net.c and zk.c handle.c's;
 *  nothing uses module.c but through the globals declared here, which
 *  module.c sets once at import.
 */
#ifndef CT_PY_H
#define CT_PY_H

#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdbool.h>

#include "canceltoken.h"

/* ------------------------------------------------------------------------ */
/* Helpers the 3.9 limited API lacks.                                       */

static inline PyObject *ct_newref(PyObject *o) {
  Py_INCREF(o);
  return o;
}
static inline PyObject *ct_xnewref(PyObject *o) {
  Py_XINCREF(o);
  return o;
}
#ifndef Py_XSETREF /* cpython/object.h: not in the limited API */
#define Py_XSETREF(dst, src)                                                  \
  do {                                                                        \
    PyObject *_ct_old = (PyObject *)(dst);                                    \
    (dst) = (src);                                                            \
    Py_XDECREF(_ct_old);                                                      \
  } while (0)
#endif
/* PyModule_AddObjectRef (3.10): add o without stealing a reference. */
int ct_module_add(PyObject *m, const char *name, PyObject *o);
/* The tp_free / tp_alloc slots of a heap type. */
void ct_type_free(PyObject *self);
PyObject *ct_type_alloc(PyTypeObject *type);

/* ------------------------------------------------------------------------ */
/* Module state: set once by PyInit__core (module.c), read-only afterwards. */

extern PyObject *ct_BaseError;          /* BaseCancelTokenException */
extern PyObject *ct_OperationCancelled; /* subclass of ct_BaseError */
extern PyObject *ct_EventLoopMismatch;  /* subclass of ct_BaseError */
extern PyTypeObject *ct_CoreTokenType;
extern PyTypeObject *ct_RegistrationType;
extern PyTypeObject *ct_NotifierType;
/* The class of tokens made by C code (chains, wrappers): the Python
 * cancel_token.CancelToken once token.py has called _set_token_class(),
 * ct_CoreTokenType before.  Owned; changed only with the GIL held. */
extern PyTypeObject *ct_token_class;

/* Raise the Python exception for a negative errno from the core.
 * Returns NULL. */
PyObject *ct_raise_error(int err);

/* ------------------------------------------------------------------------ */
/* CoreToken (token.c)                                                      */

typedef struct {
  PyObject_HEAD
  ct_token *tok;      /* owned reference on the C token; NULL only between
                         tp_new and tp_init (then every use raises) */
  PyObject *name;     /* str or NULL: cached name (authoritative if own_name) */
  PyObject *parents;  /* tuple of CoreToken or NULL: keeps ancestors' objects */
  PyObject *loop;     /* the loop the token is bound to, or Py_None */
  PyObject *waiters;  /* token.py's per-loop waiter state (a dict) or NULL */
  PyObject *owner;    /* proxies: the Client that serves trigger(); or NULL */
  PyObject *weakrefs; /* weak reference list */
  char own_name;      /* name differs from the C token's: compose in Python */
} CoreToken;

#define CoreToken_Check(o) PyObject_TypeCheck((o), ct_CoreTokenType)

PyTypeObject *ct_token_type_create(void);
/* A new object of `type` wrapping C token t (borrowed; the object takes a
 * reference of its own), registered as t's Python object.  New reference,
 * or NULL with an exception set. */
CoreToken *ct_token_wrap(PyTypeObject *type, ct_token *t);
/* 0 if cls is CoreToken or a subclass, else -1 with TypeError. */
int ct_check_token_class(PyObject *cls);
/* The Python object of a proxy token (borrowed): its wrapper if it has
 * one, else a new object of cls whose `_owner` is owner (the client that
 * serves its trigger()).  New reference, or NULL with an exception. */
PyObject *ct_proxy_object(ct_token *proxy, PyTypeObject *cls,
                          PyObject *owner);
/* The C token of a CoreToken (borrowed), or NULL with RuntimeError set if
 * its __init__ never ran. */
ct_token *ct_token_of(CoreToken *o);

/* names.c: a readable stand-in (bytes, NUL-terminated, at most
 * CT_NAME_MAX bytes) for a name the core cannot hold exactly.  New
 * reference or NULL with an exception set. */
PyObject *ct_standin_name(PyObject *name);
/* The name as the C core can hold it exactly (a new bytes object), or
 * NULL *without* an exception when it cannot (then use the stand-in);
 * NULL with an exception only on memory errors. */
PyObject *ct_exact_name(PyObject *name);

/* ------------------------------------------------------------------------ */
/* notify.c                                                                 */

/* Bumped around the core calls that this thread makes holding the GIL and
 * that may run trigger callbacks (trigger, callback registration): a
 * callback that finds it non-zero knows its thread holds the GIL.  Thread
 * local, so no ordering is involved. */
extern _Thread_local int ct_py_gil_marked;
/* Release the GIL around a block, and clear the mark meanwhile: a trigger
 * that C code makes in this thread while the GIL is released (a
 * ct_zk_trigger(), a client freed) must take the foreign-thread path even
 * when this call is itself running inside a trigger callback. */
#define CT_BEGIN_ALLOW_THREADS                                                \
  {                                                                           \
    int _ct_saved_mark = ct_py_gil_marked;                                    \
    ct_py_gil_marked = 0;                                                     \
    Py_BEGIN_ALLOW_THREADS
#define CT_END_ALLOW_THREADS                                                  \
    Py_END_ALLOW_THREADS                                                      \
    ct_py_gil_marked = _ct_saved_mark;                                        \
  }
/* Set (by the atexit hook) once the interpreter starts shutting down:
 * foreign threads stop taking the GIL. */
void ct_py_set_finalizing(void);
PyTypeObject *ct_registration_type_create(void);
PyTypeObject *ct_notifier_type_create(void);
PyObject *ct_token_on_trigger(CoreToken *self, PyObject *args,
                              PyObject *kwds);
extern const char ct_on_trigger_doc[];

/* ------------------------------------------------------------------------ */
/* handle.c: shared by the remote backends (net.c, zk.c)                    */

/* An absolute deadline from a timeout in seconds (None or NULL: forever).
 * Returns 0, or -1 with an exception set. */
int ct_deadline_from(PyObject *timeout, int64_t *out);
/* Raise OSError(errno, detail or ct_strerror) for a negative errno (the
 * subclass OSError picks: TimeoutError, ...).  Returns NULL. */
PyObject *ct_raise_remote_error(int err, const char *detail);

/* A C object used by blocking calls with the GIL released (handle.c says
 * how it stays alive).  Every field is changed with the GIL held only. */
typedef struct {
  void *obj;                /* owned; NULL once freed */
  void (*free_fn)(void *);  /* frees obj; may block (called without GIL) */
  const char *what;         /* "client", "server": for messages */
  int busy;                 /* calls in progress with the GIL released */
  char closed;              /* close() was called: no new call starts */
} ct_py_handle;
/* The object, or NULL with ValueError("the WHAT is closed"). */
void *ct_handle_get(ct_py_handle *h);
/* ct_handle_get(), and count a call in progress (it holds a reference on
 * self) until ct_handle_leave(). */
void *ct_handle_enter(ct_py_handle *h, PyObject *self);
void ct_handle_leave(ct_py_handle *h, PyObject *self);
/* Mark closed; free the object now unless a call is in progress (then
 * the last one frees it).  self may be NULL (from dealloc). */
void ct_handle_close(ct_py_handle *h, PyObject *self);

/* A backend's "proxy of the token called name" call: 0 or a negative
 * errno, as ct_net_client_get() and ct_zk_get(). */
typedef int (*ct_remote_get_fn)(void *obj, ct_token **out, const char *name,
                                int64_t deadline);
/* A backend's "trigger this token at its owner and wait" call: 1 if this
 * call's trigger counted, 0 if another did first, or a negative errno. */
typedef int (*ct_remote_trigger_fn)(void *obj, ct_token *t,
                                    int64_t deadline);
/* get(name, cls, timeout=None) of a backend object whose handle is h:
 * the proxy (an instance of cls, `_owner` self), LookupError "no token is
 * VERB under the name ..." for -ENOENT.  New reference or NULL. */
PyObject *ct_remote_get(ct_py_handle *h, PyObject *self, PyObject *args,
                        PyObject *kwds, ct_remote_get_fn get,
                        const char *verb);
/* trigger(token, timeout=None) -> bool of a backend object. */
PyObject *ct_remote_trigger(ct_py_handle *h, PyObject *self, PyObject *args,
                            PyObject *kwds, ct_remote_trigger_fn trigger);
/* The exception of a failed call about token `name` (LookupError for
 * -ENOENT, ValueError for a bad name, else OSError).  Returns NULL. */
PyObject *ct_remote_name_error(int r, const char *name, const char *verb);

/* ------------------------------------------------------------------------ */
/* net.c and zk.c                                                           */
#ifdef CT_PY_NET
int ct_net_add_to_module(PyObject *m);
#endif
#ifdef CT_PY_ZK
int ct_zk_add_to_module(PyObject *m);
#endif

#endif /* CT_PY_H */
