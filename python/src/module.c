/* SPDX-License-Identifier: MIT
 *
 * module.c -- cancel_token._core, the C half of the Python package
 * cancel_token: the module itself (its init function, its exceptions,
 * its module-level functions).  The token type is in token.c, trigger
 * callbacks into Python in notify.c, the token server and client in net.c;
 * ct_py.h says which file holds what, and why the module uses the stable
 * ABI.
 *
 * Design notes:
 *  - Single-phase init, one interpreter: the types and exceptions are
 *    process globals made by the first import (ct_py.h lists them) and
 *    never freed.  A second import (after del sys.modules[...]) reuses them.
 *  - The version, cancel_token.__version__, is the repository's VERSION
 *    file, baked in by the build as CT_PY_VERSION; the version of the C
 *    library linked in is ct_version_string().  They are the same string
 *    in every build made from one tree (CMake and setup.py check that
 *    VERSION and canceltoken.h agree).
 *  - _trigger_from_c_thread is test support: a trigger from a C thread
 *    that Python knows nothing about.
 */
#include "ct_py.h"

#include <errno.h>
#include <pthread.h>

#ifndef CT_PY_VERSION
#error "CT_PY_VERSION (the contents of VERSION) must be defined by the build"
#endif

PyObject *ct_BaseError;
PyObject *ct_OperationCancelled;
PyObject *ct_EventLoopMismatch;
PyTypeObject *ct_CoreTokenType;
PyTypeObject *ct_RegistrationType;
PyTypeObject *ct_NotifierType;
PyTypeObject *ct_token_class;

int ct_module_add(PyObject *m, const char *name, PyObject *o) {
  Py_INCREF(o);
  if (PyModule_AddObject(m, name, o) < 0) {
    Py_DECREF(o);
    return -1;
  }
  return 0;
}

void ct_type_free(PyObject *self) {
  freefunc f = (freefunc)PyType_GetSlot(Py_TYPE(self), Py_tp_free);
  f(self);
}

PyObject *ct_type_alloc(PyTypeObject *type) {
  allocfunc a = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
  return a(type, 0);
}

PyObject *ct_raise_error(int err) {
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

static PyObject *set_token_class(PyObject *mod, PyObject *cls) {
  (void)mod;
  if (!PyType_Check(cls) ||
      !PyType_IsSubtype((PyTypeObject *)cls, ct_CoreTokenType)) {
    PyErr_SetString(PyExc_TypeError, "expected a subclass of CoreToken");
    return NULL;
  }
  Py_XSETREF(ct_token_class, (PyTypeObject *)ct_newref(cls));
  Py_RETURN_NONE;
}

static PyObject *at_exit(PyObject *mod, PyObject *unused) {
  (void)mod;
  (void)unused;
  ct_py_set_finalizing();
  Py_RETURN_NONE;
}

static void *trigger_thread(void *arg) {
  ct_token *t = arg;
  ct_token_trigger(t);
  ct_token_unref(t);
  return NULL;
}

static PyObject *trigger_from_c_thread(PyObject *mod, PyObject *arg) {
  (void)mod;
  if (!CoreToken_Check(arg)) {
    PyErr_SetString(PyExc_TypeError, "expected a CancelToken");
    return NULL;
  }
  ct_token *t0 = ct_token_of((CoreToken *)arg);
  if (!t0)
    return NULL;
  /* The thread owns a reference on the C token, not on the Python object:
   * the object may go away before the thread runs. */
  ct_token *t = ct_token_ref(t0);
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

static PyMethodDef module_methods[] = {
    {"_set_token_class", set_token_class, METH_O,
     "_set_token_class(cls, /)\n--\n\n"
     "Make cls (a subclass of CoreToken) the class of the tokens that C\n"
     "code creates: chains and wrappers of C tokens.  Called once by\n"
     "token.py."},
    {"_at_exit", at_exit, METH_NOARGS,
     "_at_exit()\n--\n\n"
     "Registered with atexit by the package: from then on, threads without\n"
     "the GIL no longer take it to run trigger callbacks."},
    {"_trigger_from_c_thread", trigger_from_c_thread, METH_O,
     "_trigger_from_c_thread(token, /)\n--\n\n"
     "Trigger token from a new C thread that Python knows nothing about (it\n"
     "never takes the GIL unless a callback does).  For tests: a trigger by\n"
     "C code must wake an event loop too."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cancel_token._core",
    .m_doc = "libcanceltoken's tokens for Python (see cancel_token).",
    .m_size = -1,
    .m_methods = module_methods,
};

static PyObject *new_error(const char *name, const char *doc,
                           PyObject *base) {
  return PyErr_NewExceptionWithDoc(name, doc, base, NULL);
}

/* The types and exceptions, made once per process. */
static int make_globals(void) {
  if (ct_CoreTokenType)
    return 0;
  ct_CoreTokenType = ct_token_type_create();
  ct_RegistrationType = ct_CoreTokenType ? ct_registration_type_create()
                                         : NULL;
  ct_NotifierType = ct_RegistrationType ? ct_notifier_type_create() : NULL;
  if (!ct_NotifierType)
    goto fail;
  /* __module__ is cancel_token.exceptions, as in the reference, where the
   * classes are defined in that module (ours re-exports them). */
  ct_BaseError = new_error(
      "cancel_token.exceptions.BaseCancelTokenException",
      "Base class of the exceptions of cancel_token.", NULL);
  if (!ct_BaseError)
    goto fail;
  ct_OperationCancelled = new_error(
      "cancel_token.exceptions.OperationCancelled",
      "Raised when an operation was cancelled by a token.", ct_BaseError);
  ct_EventLoopMismatch = new_error(
      "cancel_token.exceptions.EventLoopMismatch",
      "Raised when tokens bound to different event loops meet.",
      ct_BaseError);
  if (!ct_OperationCancelled || !ct_EventLoopMismatch)
    goto fail;
  ct_token_class = (PyTypeObject *)ct_newref((PyObject *)ct_CoreTokenType);
  return 0;
fail:
  Py_CLEAR(ct_CoreTokenType);
  Py_CLEAR(ct_RegistrationType);
  Py_CLEAR(ct_NotifierType);
  Py_CLEAR(ct_BaseError);
  Py_CLEAR(ct_OperationCancelled);
  Py_CLEAR(ct_EventLoopMismatch);
  return -1;
}

PyMODINIT_FUNC PyInit__core(void); /* the one exported symbol */
PyMODINIT_FUNC PyInit__core(void) {
  if (make_globals() < 0)
    return NULL;
  PyObject *m = PyModule_Create(&core_module);
  if (!m)
    return NULL;
  if (ct_module_add(m, "BaseCancelTokenException", ct_BaseError) < 0 ||
      ct_module_add(m, "OperationCancelled", ct_OperationCancelled) < 0 ||
      ct_module_add(m, "EventLoopMismatch", ct_EventLoopMismatch) < 0 ||
      ct_module_add(m, "CoreToken", (PyObject *)ct_CoreTokenType) < 0 ||
      ct_module_add(m, "Registration", (PyObject *)ct_RegistrationType) < 0 ||
      ct_module_add(m, "Notifier", (PyObject *)ct_NotifierType) < 0 ||
      PyModule_AddIntConstant(m, "NAME_MAX", CT_NAME_MAX) < 0 ||
      PyModule_AddStringConstant(m, "__version__", CT_PY_VERSION) < 0 ||
      PyModule_AddStringConstant(m, "library_version",
                                 ct_version_string()) < 0)
    goto fail;
#ifdef CT_PY_NET
  if (ct_net_add_to_module(m) < 0 ||
      PyModule_AddIntConstant(m, "HAVE_NET", 1) < 0)
    goto fail;
#else
  if (PyModule_AddIntConstant(m, "HAVE_NET", 0) < 0)
    goto fail;
#endif
#ifdef CT_PY_ZK
  if (ct_zk_add_to_module(m) < 0 ||
      PyModule_AddIntConstant(m, "HAVE_ZK", 1) < 0)
    goto fail;
#else
  if (PyModule_AddIntConstant(m, "HAVE_ZK", 0) < 0)
    goto fail;
#endif
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}
