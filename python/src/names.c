/* SPDX-License-Identifier: MIT
 *
 * names.c -- token names for cancel_token._core.  Python allows any str
 * as a token's name (the reference accepts CancelToken('')); the C core
 * needs a non-empty UTF-8 string without NUL bytes, of at most CT_NAME_MAX
 * bytes.  This file decides whether a name can be given to the core
 * exactly and, when it cannot, makes the readable stand-in the core gets
 * instead (the Python object then keeps the real name: token.c).
 *
 * Design notes:
 *  - A stand-in is the name's UTF-8 with surrogates written as \udcff
 *    escapes (the "backslashreplace" error handler) and NUL as \u0000, cut
 *    at a character boundary and ended with "..." when it would exceed
 *    CT_NAME_MAX bytes, and "(unnamed)" for ''.  It is only ever seen by C
 *    code: other processes served the token, the command, C callers of
 *    ct_token_name().
 */
#include "ct_py.h"

#include <string.h>

PyObject *ct_exact_name(PyObject *name) {
  PyObject *b = PyUnicode_AsUTF8String(name);
  if (!b) {
    if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
      PyErr_Clear(); /* a surrogate: not exact */
      return NULL;
    }
    return NULL; /* memory error: exception set */
  }
  char *s;
  Py_ssize_t n;
  if (PyBytes_AsStringAndSize(b, &s, &n) < 0) {
    Py_DECREF(b);
    return NULL;
  }
  if (n == 0 || n > (Py_ssize_t)CT_NAME_MAX || strlen(s) != (size_t)n) {
    Py_DECREF(b);
    return NULL;
  }
  return b;
}

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 character
 * boundary and is at most cap bytes. */
static size_t utf8_cut(const char *s, size_t n, size_t cap) {
  if (n <= cap)
    return n;
  size_t k = cap;
  while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
    k--; /* s[k] is a continuation byte: the character starts earlier */
  return k;
}

PyObject *ct_standin_name(PyObject *name) {
  PyObject *b = PyUnicode_AsEncodedString(name, "utf-8", "backslashreplace");
  if (!b)
    return NULL;
  char *s;
  Py_ssize_t n;
  if (PyBytes_AsStringAndSize(b, &s, &n) < 0) {
    Py_DECREF(b);
    return NULL;
  }
  /* NUL bytes become the 6-byte escape \u0000; count them first. */
  size_t nuls = 0;
  for (Py_ssize_t i = 0; i < n; i++)
    nuls += s[i] == '\0';
  size_t len = (size_t)n + 5 * nuls;
  char *buf = PyMem_Malloc(len + 16);
  if (!buf) {
    Py_DECREF(b);
    return PyErr_NoMemory();
  }
  size_t k = 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    if (s[i] == '\0') {
      memcpy(buf + k, "\\u0000", 6);
      k += 6;
    } else {
      buf[k++] = s[i];
    }
  }
  Py_DECREF(b);
  if (k > CT_NAME_MAX) {
    k = utf8_cut(buf, k, CT_NAME_MAX - 3);
    memcpy(buf + k, "...", 3);
    k += 3;
  }
  if (k == 0) {
    static const char unnamed[] = "(unnamed)";
    memcpy(buf, unnamed, sizeof unnamed - 1);
    k = sizeof unnamed - 1;
  }
  PyObject *res = PyBytes_FromStringAndSize(buf, (Py_ssize_t)k);
  PyMem_Free(buf);
  return res;
}
