/* SPDX-License-Identifier: MIT
 *
 * token.c -- the CoreToken type of cancel_token._core: a Python object
 * wrapping one libcanceltoken token, the base of cancel_token.CancelToken.
 * Every piece of token logic -- triggering, chaining, "which token fired",
 * the pollable descriptor -- runs in the C core; this file only maps it to
 * Python objects.
 *
 * Design notes:
 *
 *  Ownership.  A CoreToken owns exactly one reference on its C token
 *  (`tok`), taken in tp_init (or when C code wraps a token) and dropped in
 *  tp_dealloc.  `tok` is NULL only between tp_new and tp_init: arguments
 *  are parsed in tp_init, so that a subclass may define __init__ with a
 *  signature of its own and call super().__init__(name) as for any Python
 *  class; every operation on an object whose __init__ never ran raises
 *  RuntimeError (ct_token_of()).  Every PyObject* field is an owned
 *  (strong) reference or NULL.
 *
 *  C token -> Python object.  ct_token_set_data(tok, self) stores a
 *  BORROWED pointer to the Python object that wraps `tok`.  Invariant: the
 *  pointer is either NULL or points to a live CoreToken whose `tok` is that
 *  token.  It is set when the object gets its token and cleared in
 *  tp_dealloc (before anything else is released), both with the GIL held,
 *  and it is only read with the GIL held; so it can never dangle.  At most
 *  one object wraps a given C token at a time: a C token reached without a
 *  wrapper (one created by C code, e.g. the net client's stand-in for a
 *  remote cause) gets a fresh wrapper of ct_token_class on demand.
 *
 *  Why triggered_token returns the very object that was triggered.  The
 *  cause of a trigger is the token itself or one of its ancestors.  A chain
 *  object keeps its parents' Python objects alive through `parents` (a
 *  tuple), so an ancestor's Python object lives as long as any descendant's
 *  does, and ct_token_data(cause) finds it.  The cause is the token that
 *  fired FIRST (the core records it when the trigger propagates), not the
 *  first parent in chain order that happens to be triggered when asked.
 *
 *  Deep chains.  The C core walks chains with work lists, never recursion.
 *  Freeing a 100,000-deep chain frees a nested structure of objects and
 *  tuples; tuples (and Python subclasses) deallocate through CPython's
 *  trashcan, which bounds the C recursion, so this type needs none of its
 *  own (the limited API has no Py_TRASHCAN_BEGIN).
 *
 *  The GIL.  Token operations that cannot block (check, trigger, chain,
 *  unref) run with the GIL held: they are short, and the core runs
 *  callbacks with none of its locks held, so no lock of the core is ever
 *  held while a thread waits for the GIL.  trigger() marks its thread
 *  (ct_py_gil_marked, notify.c) so that callbacks it runs know they may
 *  call Python directly.
 *
 *  `triggered` is the attribute a program polls, so it skips the generic
 *  getset path: its descriptor is an object of a small type of its own
 *  (TrigDescr below) whose __get__ is the getter.  Everything else a
 *  getset entry gives (read-only, data descriptor, __doc__, __name__,
 *  __objclass__) it gives too.
 *
 *  Names.  A name the core can hold exactly (ct_exact_name) is given to it
 *  and the object caches the str.  Any other name, and any name set after
 *  creation (`name` is writable, as the reference's plain attribute is), is
 *  kept by the object as the authoritative Python name (`own_name`); the C
 *  token keeps the name it was created with (or a stand-in, names.c), which
 *  is what C code and other processes see.  Chains of such tokens compose
 *  their name in Python, eagerly, at chain() time, as the reference does.
 */
#include "ct_py.h"

#include <string.h>

ct_token *ct_token_of(CoreToken *o) {
  if (o->tok)
    return o->tok;
  PyErr_SetString(PyExc_RuntimeError,
                  "CancelToken.__init__() was not called on this object");
  return NULL;
}

/* The loop a token is bound to (borrowed): Py_None if unbound, or once
 * the GC has cleared the object. */
static inline PyObject *token_loop(CoreToken *o) {
  return o->loop ? o->loop : Py_None;
}

/* Give an object without a token its C token t (borrowed). */
static int token_attach(CoreToken *o, ct_token *t) {
  int r = ct_token_set_data(t, o);
  if (r < 0) {
    ct_raise_error(r);
    return -1;
  }
  o->tok = ct_token_ref(t);
  return 0;
}

CoreToken *ct_token_wrap(PyTypeObject *type, ct_token *t) {
  CoreToken *o = (CoreToken *)ct_type_alloc(type);
  if (!o)
    return NULL;
  o->loop = ct_newref(Py_None);
  if (token_attach(o, t) < 0) {
    Py_DECREF(o);
    return NULL;
  }
  return o;
}

int ct_check_token_class(PyObject *cls) {
  if (PyType_Check(cls) &&
      PyType_IsSubtype((PyTypeObject *)cls, ct_CoreTokenType))
    return 0;
  PyErr_SetString(PyExc_TypeError, "cls must be a CoreToken subclass");
  return -1;
}

PyObject *ct_proxy_object(ct_token *proxy, PyTypeObject *cls,
                          PyObject *owner) {
  CoreToken *o = ct_token_data(proxy);
  if (o)
    return ct_newref((PyObject *)o);
  o = ct_token_wrap(cls, proxy);
  if (o)
    o->owner = ct_newref(owner);
  return (PyObject *)o;
}

/* The Python object of C token t (borrowed): the existing wrapper if there
 * is one, else a new one of ct_token_class.  Returns a new reference. */
static PyObject *token_object(ct_token *t) {
  CoreToken *o = ct_token_data(t);
  if (o) {
    assert(o->tok == t);
    return ct_newref((PyObject *)o);
  }
  return (PyObject *)ct_token_wrap(ct_token_class, t);
}

/* tp_new: an object without a token yet; arguments are tp_init's. */
static PyObject *token_new(PyTypeObject *type, PyObject *args,
                           PyObject *kwds) {
  (void)args;
  (void)kwds;
  CoreToken *o = (CoreToken *)ct_type_alloc(type);
  if (o)
    o->loop = ct_newref(Py_None);
  return (PyObject *)o;
}

/* tp_init: CancelToken(name, loop=None). */
static int token_init(CoreToken *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"name", "loop", NULL};
  PyObject *name, *loop = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|O:CancelToken", kwlist,
                                   &name, &loop))
    return -1;
  if (self->tok) {
    PyErr_SetString(PyExc_RuntimeError,
                    "CancelToken.__init__() called twice: a token's C "
                    "token is made once");
    return -1;
  }
  PyObject *cname = ct_exact_name(name);
  bool exact = cname != NULL;
  if (!exact) {
    if (PyErr_Occurred())
      return -1;
    if (!(cname = ct_standin_name(name)))
      return -1;
  }
  ct_token *t;
  int r = ct_token_new(&t, PyBytes_AsString(cname));
  Py_DECREF(cname);
  if (r < 0) {
    ct_raise_error(r);
    return -1;
  }
  r = token_attach(self, t);
  ct_token_unref(t); /* the object holds its own reference */
  if (r < 0)
    return -1;
  Py_XSETREF(self->name, ct_newref(name));
  self->own_name = !exact;
  Py_XSETREF(self->loop, ct_newref(loop));
  return 0;
}

/* The fields the cycle collector follows: one list for traverse and
 * clear, so that they cannot disagree.  (`name` holds a str, which cannot
 * be part of a cycle.) */
#define TOKEN_GC_FIELDS(X) X(parents) X(loop) X(waiters) X(owner)

static int token_traverse(CoreToken *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self)); /* heap types: instances own their type */
#define VISIT_FIELD(f) Py_VISIT(self->f);
  TOKEN_GC_FIELDS(VISIT_FIELD)
#undef VISIT_FIELD
  return 0;
}

/* Break reference cycles (the waiter state refers back to the token).  The
 * C token and the data pointer stay until dealloc, so a triggered_token
 * lookup on a half-cleared object still finds live objects. */
static int token_clear(CoreToken *self) {
#define CLEAR_FIELD(f) Py_CLEAR(self->f);
  TOKEN_GC_FIELDS(CLEAR_FIELD)
#undef CLEAR_FIELD
  return 0;
}

static void token_dealloc(CoreToken *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  /* First unpublish ourselves, so no lookup can reach a dying object. */
  if (self->tok && ct_token_data(self->tok) == self)
    ct_token_set_data(self->tok, NULL);
  if (self->weakrefs)
    PyObject_ClearWeakRefs((PyObject *)self);
  token_clear(self);
  Py_CLEAR(self->name);
  ct_token_unref(self->tok); /* NULL-safe; never recurses in C */
  self->tok = NULL;
  ct_type_free((PyObject *)self);
  Py_DECREF(tp);
}

/* The name, as a new reference. */
static PyObject *token_get_name(CoreToken *self, void *closure) {
  (void)closure;
  if (self->name)
    return ct_newref(self->name);
  ct_token *t = ct_token_of(self);
  if (!t)
    return NULL;
  const char *nm = ct_token_name(t);
  if (!nm)
    return PyErr_NoMemory();
  self->name = PyUnicode_DecodeUTF8(nm, (Py_ssize_t)strlen(nm), "replace");
  return ct_xnewref(self->name);
}

static int token_set_name(CoreToken *self, PyObject *value, void *closure) {
  (void)closure;
  if (value == NULL) {
    PyErr_SetString(PyExc_TypeError, "a token's name cannot be deleted");
    return -1;
  }
  if (!PyUnicode_Check(value)) {
    PyErr_SetString(PyExc_TypeError, "a token's name must be a str");
    return -1;
  }
  Py_XSETREF(self->name, ct_newref(value));
  self->own_name = 1;
  return 0;
}

static PyObject *token_str(CoreToken *self) {
  return token_get_name(self, NULL);
}

static PyObject *token_repr(CoreToken *self) {
  if (!self->tok && !self->name)
    return PyUnicode_FromString("<CancelToken: (not initialised)>");
  PyObject *name = token_get_name(self, NULL);
  if (!name)
    return NULL;
  PyObject *r = PyUnicode_FromFormat("<CancelToken: %U>", name);
  Py_DECREF(name);
  return r;
}

static PyObject *token_get_is_proxy(CoreToken *self, void *closure) {
  (void)closure;
  ct_token *t = ct_token_of(self);
  return t ? PyBool_FromLong(ct_token_is_proxy(t)) : NULL;
}

/* `triggered` has a descriptor type of its own rather than a getset
 * entry.  A getset descriptor costs the attribute lookup two more steps
 * (getset_get, then a subclass check that walks the instance type's MRO)
 * before the getter runs; here the lookup calls trigdescr_get directly,
 * which knows the class of every token the core makes (ct_token_class)
 * and takes the walk only for other classes.  It is a data descriptor
 * (it has __set__), so an instance attribute cannot shadow it, exactly
 * as with the getset entry it replaces. */
typedef struct {
  PyObject_HEAD
} TrigDescr;

static const char trig_doc[] =
    "True once the token, or any token it is chained to, is triggered.\n"
    "One atomic load, whatever the depth of chaining.";

static PyObject *trigdescr_get(PyObject *descr, PyObject *obj,
                               PyObject *type) {
  (void)type;
  if (obj == NULL) /* looked up on the class: the descriptor itself */
    return ct_newref(descr);
  /* ct_token_class first: the class of every chain and wrapper, and in
   * practice of every token (cancel_token.CancelToken). */
  if (Py_TYPE(obj) != ct_token_class && !CoreToken_Check(obj)) {
    PyErr_Format(PyExc_TypeError,
                 "descriptor 'triggered' for CoreToken objects doesn't "
                 "apply to an object of %S", (PyObject *)Py_TYPE(obj));
    return NULL;
  }
  ct_token *t = ((CoreToken *)obj)->tok;
  if (!t) {
    (void)ct_token_of((CoreToken *)obj); /* sets RuntimeError */
    return NULL;
  }
  return ct_newref(ct_token_triggered(t) ? Py_True : Py_False);
}

/* __set__ and __delete__: read-only, as a getset entry without a setter
 * (and with its message). */
static int trigdescr_set(PyObject *descr, PyObject *obj, PyObject *value) {
  (void)descr;
  (void)obj;
  (void)value;
  PyErr_SetString(PyExc_AttributeError,
                  "attribute 'triggered' of 'cancel_token._core.CoreToken' "
                  "objects is not writable");
  return -1;
}

static PyObject *trigdescr_doc(PyObject *descr, void *closure) {
  (void)descr;
  (void)closure;
  return PyUnicode_FromString(trig_doc);
}

static PyObject *trigdescr_name(PyObject *descr, void *closure) {
  (void)descr;
  (void)closure;
  return PyUnicode_FromString("triggered");
}

static PyObject *trigdescr_objclass(PyObject *descr, void *closure) {
  (void)descr;
  (void)closure;
  return ct_newref((PyObject *)ct_CoreTokenType);
}

static PyObject *trigdescr_repr(PyObject *descr) {
  (void)descr;
  return PyUnicode_FromString(
      "<attribute 'triggered' of 'cancel_token._core.CoreToken' objects>");
}

static PyGetSetDef trigdescr_getset[] = {
    {"__doc__", trigdescr_doc, NULL, NULL, NULL},
    {"__name__", trigdescr_name, NULL, NULL, NULL},
    {"__qualname__", trigdescr_name, NULL, NULL, NULL},
    {"__objclass__", trigdescr_objclass, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot trigdescr_slots[] = {
    {Py_tp_descr_get, trigdescr_get},
    {Py_tp_descr_set, trigdescr_set},
    {Py_tp_getset, trigdescr_getset},
    {Py_tp_repr, trigdescr_repr},
    {0, NULL}};

static PyType_Spec trigdescr_spec = {
    .name = "cancel_token._core._TriggeredDescriptor",
    .basicsize = sizeof(TrigDescr),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = trigdescr_slots,
};

static PyObject *token_get_triggered_token(CoreToken *self, void *closure) {
  (void)closure;
  ct_token *t = ct_token_of(self);
  if (!t)
    return NULL;
  ct_token *cause = ct_token_triggered_token(t);
  if (!cause)
    Py_RETURN_NONE;
  return token_object(cause);
}

static PyObject *token_get_loop(CoreToken *self, void *closure) {
  (void)closure;
  return ct_newref(token_loop(self));
}

static PyObject *token_trigger(CoreToken *self, PyObject *unused) {
  (void)unused;
  ct_token *t = ct_token_of(self);
  if (!t)
    return NULL;
  ct_py_gil_marked++; /* callbacks run here, holding the GIL */
  int r = ct_token_trigger(t);
  ct_py_gil_marked--;
  if (r < 0)
    return ct_raise_error(r);
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

/* _cancel_message(): the message, or None if not triggered. */
static PyObject *token_cancel_message(CoreToken *self, PyObject *unused) {
  (void)unused;
  ct_token *t = ct_token_of(self);
  if (!t)
    return NULL;
  if (!ct_token_triggered(t))
    Py_RETURN_NONE;
  return cancel_message(self);
}

static PyObject *token_raise_if_triggered(CoreToken *self, PyObject *unused) {
  PyObject *msg = token_cancel_message(self, unused);
  if (msg == Py_None || msg == NULL)
    return msg; /* None: not triggered */
  PyErr_SetObject(ct_OperationCancelled, msg);
  Py_DECREF(msg);
  return NULL;
}

static PyObject *not_for_proxies(void) {
  PyErr_SetString(PyExc_NotImplementedError,
                  "The `CancelToken.chain` API is not available to proxy "
                  "tokens");
  return NULL;
}

/* A chain's name when either side's Python name is its own (new
 * reference), or NULL without an exception when the core's is right. */
static PyObject *chain_name(CoreToken *self, CoreToken *other) {
  if (!self->own_name && !other->own_name)
    return NULL;
  PyObject *a = token_get_name(self, NULL);
  PyObject *b = a ? token_get_name(other, NULL) : NULL;
  PyObject *name = b ? PyUnicode_FromFormat("%U:%U", a, b) : NULL;
  Py_XDECREF(a);
  Py_XDECREF(b);
  return name;
}

static PyObject *token_chain(CoreToken *self, PyObject *arg) {
  if (!CoreToken_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "chain() expects a CancelToken, not %S",
                 (PyObject *)Py_TYPE(arg));
    return NULL;
  }
  CoreToken *other = (CoreToken *)arg;
  ct_token *st = ct_token_of(self), *ot = st ? ct_token_of(other) : NULL;
  if (!ot)
    return NULL;
  if (ct_token_is_proxy(st))
    return not_for_proxies();
  /* As the reference: a proxy belongs to no loop; other tokens must be
   * bound to the same loop (or both to none). */
  if (!ct_token_is_proxy(ot)) {
    int ne = PyObject_RichCompareBool(token_loop(self), token_loop(other),
                                      Py_NE);
    if (ne < 0)
      return NULL;
    if (ne) {
      PyErr_Format(ct_EventLoopMismatch,
                   "Chained CancelToken objects must be on the same event "
                   "loop. %R != %R", token_loop(self), token_loop(other));
      return NULL;
    }
  }
  PyObject *name = chain_name(self, other);
  if (!name && PyErr_Occurred())
    return NULL;
  PyObject *parents = PyTuple_Pack(2, (PyObject *)self, arg);
  if (!parents) {
    Py_XDECREF(name);
    return NULL;
  }
  ct_token *c;
  int r = ct_token_chain(&c, st, ot);
  if (r < 0) {
    Py_DECREF(parents);
    Py_XDECREF(name);
    return r == -ENOTSUP ? not_for_proxies() : ct_raise_error(r);
  }
  CoreToken *o = ct_token_wrap(ct_token_class, c);
  ct_token_unref(c);
  if (!o) {
    Py_DECREF(parents);
    Py_XDECREF(name);
    return NULL;
  }
  o->parents = parents;
  o->name = name;
  o->own_name = name != NULL;
  Py_XSETREF(o->loop, ct_newref(token_loop(self)));
  return (PyObject *)o;
}

static PyObject *token_fileno(CoreToken *self, PyObject *unused) {
  (void)unused;
  ct_token *t = ct_token_of(self);
  if (!t)
    return NULL;
  int fd = ct_token_fd(t);
  if (fd < 0)
    return ct_raise_error(fd);
  return PyLong_FromLong(fd);
}

static PyObject *token_waiter_map(CoreToken *self, PyObject *unused) {
  (void)unused;
  if (!self->waiters && !(self->waiters = PyDict_New()))
    return NULL;
  return ct_newref(self->waiters);
}

static PyObject *token_reduce(CoreToken *self, PyObject *unused) {
  (void)unused;
  PyErr_Format(PyExc_TypeError,
               "cannot pickle %S objects: a token lives in one process; "
               "share it with BaseCancelTokenManager instead",
               (PyObject *)Py_TYPE(self));
  return NULL;
}

static PyMethodDef token_methods[] = {
    {"trigger", (PyCFunction)token_trigger, METH_NOARGS,
     "trigger($self, /)\n--\n\n"
     "Trigger this token, and every token chained to it.  The first trigger\n"
     "is the one that counts; later ones do nothing.  Safe from any thread:\n"
     "an event loop waiting on the token in another thread is woken."},
    {"raise_if_triggered", (PyCFunction)token_raise_if_triggered,
     METH_NOARGS,
     "raise_if_triggered($self, /)\n--\n\n"
     "Raise OperationCancelled if the token has been triggered."},
    {"chain", (PyCFunction)token_chain, METH_O,
     "chain($self, token, /)\n--\n\n"
     "A new token, named '<self>:<token>', triggered when either token is.\n"
     "Triggering it triggers neither.  Raises EventLoopMismatch if the two\n"
     "tokens are bound to different loops, NotImplementedError on a proxy."},
    {"_cancel_message", (PyCFunction)token_cancel_message, METH_NOARGS,
     "_cancel_message($self, /)\n--\n\n"
     "The message of the OperationCancelled raise_if_triggered() raises."},
    {"_fileno", (PyCFunction)token_fileno, METH_NOARGS,
     "_fileno($self, /)\n--\n\n"
     "The token's descriptor: an eventfd that becomes readable when the\n"
     "token is triggered and stays readable.  Owned by the token: never\n"
     "read, write or close it.  OSError (EMFILE, ...) if none can be had."},
    {"_on_trigger", (PyCFunction)(void (*)(void))ct_token_on_trigger,
     METH_VARARGS | METH_KEYWORDS, ct_on_trigger_doc},
    {"_waiter_map", (PyCFunction)token_waiter_map, METH_NOARGS,
     "_waiter_map($self, /)\n--\n\n"
     "The dict in which cancel_token.token keeps this token's waiters, one\n"
     "entry per event loop; created on first use, in one step under the\n"
     "GIL, so threads running different loops cannot race."},
    {"__reduce__", (PyCFunction)token_reduce, METH_NOARGS,
     "__reduce__($self, /)\n--\n\nTokens cannot be pickled."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef token_getset[] = {
    {"name", (getter)token_get_name, (setter)token_set_name,
     "The token's name; for a chain, its parents' names joined by ':'.\n"
     "Writable (a str): the new name is the Python one (repr, str,\n"
     "messages); C code and other processes keep seeing the first.", NULL},
    {"triggered_token", (getter)token_get_triggered_token, NULL,
     "The token whose trigger triggered this one (this token, or the "
     "ancestor\nthat fired first), or None if not triggered.", NULL},
    {"is_proxy", (getter)token_get_is_proxy, NULL,
     "True for a proxy of a token served by another process.", NULL},
    {"loop", (getter)token_get_loop, NULL,
     "The event loop the token is bound to, or None.", NULL},
    {"_bound_loop", (getter)token_get_loop, NULL,
     "The loop given at creation, or None (proxies override `loop`).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMemberDef token_members[] = {
    {"_owner", T_OBJECT, offsetof(CoreToken, owner), READONLY,
     "The client a proxy belongs to (private)."},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(CoreToken, weakrefs),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};

static PyType_Slot token_slots[] = {
    {Py_tp_doc, "CoreToken(name, loop=None)\n--\n\n"
                "A libcanceltoken token; the base of "
                "cancel_token.CancelToken."},
    {Py_tp_new, token_new},
    {Py_tp_init, token_init},
    {Py_tp_dealloc, token_dealloc},
    {Py_tp_traverse, token_traverse},
    {Py_tp_clear, token_clear},
    {Py_tp_repr, token_repr},
    {Py_tp_str, token_str},
    {Py_tp_methods, token_methods},
    {Py_tp_getset, token_getset},
    {Py_tp_members, token_members},
    {0, NULL}};

static PyType_Spec token_spec = {
    .name = "cancel_token._core.CoreToken",
    .basicsize = sizeof(CoreToken),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = token_slots,
};

PyTypeObject *ct_token_type_create(void) {
  PyObject *type = PyType_FromSpec(&token_spec);
  PyObject *dtype = type ? PyType_FromSpec(&trigdescr_spec) : NULL;
  PyObject *d = dtype ? ct_type_alloc((PyTypeObject *)dtype) : NULL;
  int r = d ? PyObject_SetAttrString(type, "triggered", d) : -1;
  Py_XDECREF(d);
  Py_XDECREF(dtype);
  if (r < 0) {
    Py_XDECREF(type);
    return NULL;
  }
  return (PyTypeObject *)type;
}
