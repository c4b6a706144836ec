/* SPDX-License-Identifier: MIT
 *
 * name.c -- a token's name: its own, or for a chained token, its parents'
 * names joined by ':', composed on first use and cached.
 *
 * Design notes:
 *  - A composed name is cached in the chained token only -- never in its
 *    ancestors -- so a chain of depth d costs O(d) name memory, not O(d^2).
 *  - Composing is a loop over an explicit stack (no recursion), cut at
 *    CT_NAME_MAX bytes.  Its work is bounded by what it can write: every
 *    step writes at least one byte (a name, a cached name or a ':'), except
 *    the expansion of a token with several parents, whose k parents bring
 *    k - 1 separators with them; so the walk stops after O(CT_NAME_MAX)
 *    steps plus the parents of the tokens on one path.  Unnamed tokens
 *    with one parent would break that bound (a chain of a million
 *    ct_token_chain_n(n=1) writes nothing per link), so such a token
 *    stores, from its creation, its alias: the first ancestor up the
 *    single-parent stretch that is named or has several parents.  Its name
 *    is the alias's name, the walk jumps there in one step, and
 *    ct_token_name() on it returns the alias's string (which outlives it:
 *    a token keeps its ancestors alive) instead of a copy.
 *  - Cutting keeps the result valid UTF-8, ending in "...", and at most
 *    CT_NAME_MAX bytes in all.
 */
#include "internal.h"

#include <stdio.h>

struct sbuf {
  char *p;
  size_t len, cap;
  bool full;
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
  if (b->full)
    return;
  if (b->len + n > CT_NAME_MAX) {
    n = CT_NAME_MAX - b->len;
    b->full = true;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

/* relaxed: NAMED is immutable, set before the token was handed out. */
static inline bool is_named(const ct_token *x) {
  return atomic_load_explicit(&((ct_token *)x)->state, memory_order_relaxed) &
         CT_ST_NAMED;
}

/* The token whose name x has: x, or its alias. */
static inline ct_token *name_source(ct_token *x) {
  return (!is_named(x) && x->nlinks == 1) ? ct__alias(x) : x;
}

/* Cut a full buffer to at most CT_NAME_MAX bytes ending in "...", at a
 * character boundary: every name is valid UTF-8, so find the last
 * character's lead byte and drop that character if it would be cut. */
static void sb_cut(struct sbuf *b) {
  size_t len = CT_NAME_MAX - 3;
  size_t i = len;
  while (i > 0 && ((unsigned char)b->p[i - 1] & 0xc0) == 0x80)
    i--;
  if (i > 0) {
    unsigned char lead = (unsigned char)b->p[i - 1];
    size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (len - (i - 1) < need)
      len = i - 1;
  }
  memcpy(b->p + len, "...", 3);
  b->len = len + 3;
}

/* Compose the name of a chained token t with several parents: a stack of
 * tokens to emit, where NULL stands for a ':' separator. */
static char *compose_name(ct_token *t, size_t *size) {
  struct sbuf b = {NULL, 0, CT_NAME_MAX + 1, false};
  size_t cap = 64, top = 0;
  ct_token **stack = ct__alloc(cap * sizeof *stack);
  b.p = ct__alloc(b.cap);
  if (!stack || !b.p)
    goto oom;
  stack[top++] = t;
  while (top > 0 && !b.full) {
    ct_token *x = stack[--top];
    if (!x) {
      sb_put(&b, ":", 1);
      continue;
    }
    x = name_source(x);
    if (is_named(x)) {
      const char *nm = ct__stored_name(x);
      sb_put(&b, nm, strlen(nm));
      continue;
    }
    /* acquire on ext and name: pairs with the release CASes that
     * published them. */
    struct ct_ext *e = atomic_load_explicit(&x->ext, memory_order_acquire);
    char *cached = e ? atomic_load_explicit(&e->name, memory_order_acquire)
                     : NULL;
    if (cached && x != t) {
      sb_put(&b, cached, strlen(cached));
      continue;
    }
    /* Push parents last-first with separators between them. */
    size_t need = top + 2 * (size_t)x->nlinks;
    if (need > cap) {
      size_t ncap = cap;
      while (ncap < need)
        ncap *= 2;
      ct_token **ns = ct__alloc(ncap * sizeof *ns);
      if (!ns)
        goto oom;
      memcpy(ns, stack, top * sizeof *stack);
      ct__free(stack, cap * sizeof *stack);
      stack = ns;
      cap = ncap;
    }
    for (uint32_t i = x->nlinks; i-- > 0;) {
      stack[top++] = x->links[i].parent;
      if (i > 0)
        stack[top++] = NULL;
    }
  }
  if (b.full)
    sb_cut(&b);
  b.p[b.len] = '\0';
  ct__free(stack, cap * sizeof *stack);
  *size = b.cap;
  return b.p;
oom:
  ct__free(stack, cap * sizeof *stack);
  ct__free(b.p, b.cap);
  return NULL;
}

const char *ct_token_name(ct_token *t) {
  if (!t)
    return NULL;
  t = name_source(t);
  if (is_named(t))
    return ct__stored_name(t);
  struct ct_ext *e = ct__ext(t);
  if (!e)
    return NULL;
  char *nm = atomic_load_explicit(&e->name, memory_order_acquire);
  if (nm)
    return nm;
  size_t size;
  char *mine = compose_name(t, &size);
  if (!mine)
    return NULL;
  /* Shrink to fit: most names are short, the buffer is CT_NAME_MAX. */
  size_t len = strlen(mine);
  char *fit = ct__alloc(len + 1);
  if (fit) {
    memcpy(fit, mine, len + 1);
    ct__free(mine, size);
    mine = fit;
    size = len + 1;
  }
  /* The first composer publishes (release) and owns the size field; the
   * size is written before the CAS and read only by the destroyer. */
  char *expected = NULL;
  if (atomic_compare_exchange_strong_explicit(&e->name, &expected, mine,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
    e->name_size = size;
    return mine;
  }
  ct__free(mine, size);
  return expected;
}

int ct_token_message(ct_token *t, char *buf, size_t len) {
  if (!t || (!buf && len > 0))
    return -EINVAL;
  ct_token *cause = ct_token_triggered_token(t);
  if (!cause)
    return -EAGAIN;
  const char *nm = ct_token_name(cause);
  if (!nm)
    return -ENOMEM;
  int n = snprintf(buf, len, "Cancellation requested by %s token", nm);
  return n < 0 ? -EOVERFLOW : n;
}
