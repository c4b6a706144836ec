/* SPDX-License-Identifier: MIT
 *
 * canceltoken.h -- the public interface of libcanceltoken, cooperative
 * cancellation for C programs that use threads, event loops and processes.
 *
 * A token is a named, reference-counted, one-shot flag.  Somebody triggers
 * it; the work that holds it notices (a check is one atomic load), stops,
 * and can ask which token caused the stop and why.  Tokens chain: a chained
 * token is triggered when any of its parents is, but triggering it leaves its
 * parents alone.
 *
 * Conventions used by every declaration below:
 *
 *  - Errors are negative errno values (-EINVAL, -ENOMEM, -ECANCELED,
 *    -ETIMEDOUT, ...).  ct_strerror() and ct_err_name() describe them.
 *    A call that fails has no effect and never invokes a callback.
 *  - Time is an int64_t count of nanoseconds on CLOCK_MONOTONIC (ct_now()).
 *    A blocking call takes an absolute deadline as its last argument:
 *    CT_FOREVER (-1) never times out, 0 does not block.  Any other negative
 *    deadline is -EINVAL.
 *  - "Ownership" says whether a pointer argument is borrowed (the caller keeps
 *    its reference), taken (the callee consumes it), or whether a result is a
 *    new reference (the caller must ct_token_unref() it).
 *  - "Thread-safety": every function may be called from any thread at any
 *    time unless stated otherwise.  Nothing here is async-signal-safe unless
 *    stated so.
 *  - "Callbacks": whether the call may block, and whether it may be called
 *    from inside a ct_callback function.  Callbacks run with no internal lock
 *    held, so every function may be called from a callback unless stated.
 *    A callback run by one of the library's threads (the deadline thread,
 *    the async thread) runs on a stack of the C library's default size for
 *    a new thread (as pthread_create() with no attributes: glibc takes the
 *    soft RLIMIT_STACK, usually 8 MiB), and may lock, allocate, print and
 *    block as any thread may -- though while it blocks, the other
 *    callbacks and deadlines that thread serves wait.
 *  - fork(): a forked child gets a copy of every token in the state it had
 *    at the fork, and from then on the two copies are independent: a
 *    trigger in one process never triggers, wakes, runs callbacks of, or
 *    makes readable the descriptor of any token of the other.  (The child's
 *    registrations are copies too: its trigger runs them in the child.)
 *    ct_token_fd() in the child returns the same number as in the parent,
 *    which from the child's first library call on that token names a
 *    descriptor of the child's own (see ct_token_fd()).  Deadlines and
 *    ct_async_init() in the child: see ct_token_set_deadline() and
 *    ct_async_init().  As with any library that takes locks, fork only
 *    while no other thread is inside a call on the tokens the child will
 *    use (a lock held at the fork stays held in the child).
 */
#ifndef CANCELTOKEN_H
#define CANCELTOKEN_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CT_BUILDING_LIBRARY) && defined(__GNUC__)
#define CT_EXTERN __attribute__((visibility("default")))
#else
#define CT_EXTERN
#endif

/* The version this header belongs to.  The one place the version is written
 * is the file VERSION at the top of the source tree; CMake refuses to
 * configure when these three lines disagree with it, and a test compares
 * ct_version_string() with it, so they cannot drift apart. */
#define CT_VERSION_MAJOR 0
#define CT_VERSION_MINOR 2
#define CT_VERSION_PATCH 0
/* One number, as ct_version() returns it: 0x000200 for 0.2.0. */
#define CT_VERSION_HEX                                                        \
  ((CT_VERSION_MAJOR << 16) | (CT_VERSION_MINOR << 8) | CT_VERSION_PATCH)

/* The version of the library actually loaded, which may differ from the
 * header a program was compiled with (compare with CT_VERSION_HEX).
 * ct_version() returns (major << 16) | (minor << 8) | patch;
 * ct_version_string() returns "MAJOR.MINOR.PATCH", a static string the
 * caller must not free.  Ownership: nothing is allocated or retained.
 * Any thread; async-signal-safe; never blocks; callbacks: yes. */
CT_EXTERN unsigned int ct_version(void);
CT_EXTERN const char *ct_version_string(void);

/* Deadlines (see the conventions above). */
#define CT_FOREVER ((int64_t)-1)

typedef struct ct_token ct_token;

/* Why a token was triggered.  Values are stable; later versions may add
 * more, so treat unknown values as "some other reason". */
typedef enum ct_reason {
  CT_REASON_NONE = 0,       /* not triggered */
  CT_REASON_TRIGGER = 1,    /* ct_token_trigger() was called */
  CT_REASON_DEADLINE = 2,   /* the token's deadline passed */
  CT_REASON_SIGNAL = 3,     /* a signal arrived; detail is its number */
  CT_REASON_OWNER_LOST = 4, /* the owner of a proxy token went away */
  CT_REASON_UNREACHABLE = 5, /* a proxy's backend (server, ensemble) could
                                not be reached for longer than allowed */
  CT_REASON_SHUTDOWN = 6,   /* a proxy's backend stopped in order: its
                               token server stopped, or its ZooKeeper
                               client was freed */
  CT_REASON_USER = 64       /* first value free for applications */
} ct_reason;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* The errors this library returns, as negative errno values.  One table
 * gives each a name and a message; ct_err_name()/ct_strerror() read it. */
#define CT_ERRNO_MAP(XX)                                                      \
  XX(EINVAL, "invalid argument")                                              \
  XX(ENOMEM, "out of memory")                                                 \
  XX(ECANCELED, "operation cancelled: the token was triggered")               \
  XX(ETIMEDOUT, "deadline passed before the token was triggered")             \
  XX(EAGAIN, "the token has not been triggered")                              \
  XX(EMFILE, "too many open files in this process")                           \
  XX(ENFILE, "too many open files in the system")                             \
  XX(ENOTSUP, "operation not supported on this token")                        \
  XX(EOVERFLOW, "value too large")                                            \
  XX(EPROTO, "protocol error")                                                \
  XX(EBUSY, "resource busy")                                                  \
  XX(ENOENT, "no such file, command or name")                                 \
  XX(EACCES, "permission denied")                                             \
  XX(EPERM, "operation not permitted")                                        \
  XX(EEXIST, "already exists")                                                \
  XX(ENOSYS, "not supported by this kernel")                                  \
  XX(ECHILD, "no such child process")                                         \
  XX(ESRCH, "no such process")                                                \
  XX(ENOSPC, "limit reached")                                                 \
  XX(EDEADLK, "the call would deadlock")                                      \
  XX(ECONNRESET, "connection lost")                                           \
  XX(ECONNREFUSED, "connection refused")                                      \
  XX(EPIPE, "broken pipe")                                                    \
  XX(ESHUTDOWN, "shut down")                                                  \
  XX(ENAMETOOLONG, "name too long")                                           \
  XX(EADDRINUSE, "address already in use")                                    \
  XX(EADDRNOTAVAIL, "address not available")                                  \
  XX(EPROTONOSUPPORT, "protocol version not supported")                       \
  XX(ENOEXEC, "not an executable")

/* The symbolic name of an error ("ECANCELED" for -ECANCELED).  Unknown
 * values give "EUNKNOWN".  Returns a static string.  Any thread; callbacks:
 * yes; async-signal-safe. */
CT_EXTERN const char *ct_err_name(int err);

/* A human-readable message for an error.  Errors outside the table fall
 * back to the C library's message.  Returns a static string, or a
 * thread-local one that this thread's next call overwrites.  Any thread;
 * callbacks: yes; never blocks. */
CT_EXTERN const char *ct_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Time                                                                     */

/* Now, in nanoseconds on CLOCK_MONOTONIC.  Any thread; async-signal-safe;
 * callbacks: yes; never blocks. */
CT_EXTERN int64_t ct_now(void);

/* ct_now() + ns, saturating; a negative ns gives ct_now() (do not block).
 * Any thread; async-signal-safe; callbacks: yes; never blocks. */
CT_EXTERN int64_t ct_deadline_after(int64_t ns);

/* ------------------------------------------------------------------------ */
/* Allocation                                                               */

/* The allocator hook, in the manner of lua_Alloc: with nsize == 0 free ptr
 * and return NULL; otherwise behave as realloc(ptr, nsize).  osize is the
 * old size when ptr != NULL.  Returning NULL for nsize > 0 is an
 * out-of-memory failure, which every caller handles by returning -ENOMEM
 * and leaving everything as it was. */
typedef void *(*ct_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* Install an allocator (NULL restores the default, malloc/realloc/free).
 * Ownership: ud is borrowed for as long as the allocator is installed.
 * Thread-safety: NOT thread-safe; call it before any other ct_ function
 * (the library keeps some blocks, such as the deadline heap, across tokens,
 * and frees them with the allocator that is installed then).  The hook is
 * called from any thread, the library's included.  Callbacks: no.  Meant
 * for tests that inject failures. */
CT_EXTERN void ct_set_allocator(ct_alloc_fn fn, void *ud);

/* ------------------------------------------------------------------------ */
/* Tokens                                                                   */

/* Create a token named `name` (copied; valid UTF-8 of 1 to CT_NAME_MAX
 * bytes, CT_NAME_MAX being 65536).  On success stores a new reference in
 * *out and returns 0.  Errors: -EINVAL (out or name NULL, name empty, not
 * UTF-8 or longer than CT_NAME_MAX bytes), -ENOMEM.
 * Ownership: *out is a new reference.  Any thread; callbacks: yes; never
 * blocks. */
CT_EXTERN int ct_token_new(ct_token **out, const char *name);

/* Create a token that triggers itself (reason CT_REASON_DEADLINE) at the
 * absolute monotonic time `deadline`; same as ct_token_new() followed by
 * ct_token_set_deadline() (a deadline already passed gives a token already
 * triggered).  Errors: those of both; -EINVAL for a NULL out or a negative
 * deadline (CT_FOREVER included: a token without a deadline is
 * ct_token_new()).  On failure *out is untouched.  Ownership: *out is a
 * new reference.
 * Any thread; callbacks: yes; may start the library's deadline thread and
 * takes its mutex briefly. */
CT_EXTERN int ct_token_new_deadline(ct_token **out, const char *name,
                                    int64_t deadline);

/* Take another reference.  Returns t (NULL for NULL); the caller owns the
 * new reference.  Any thread; callbacks: yes; never blocks (one atomic).
 * Using a token after its last unref is undefined; debug builds assert on
 * it where they can.  At most 2^31 - 1 references to one token may be held
 * at once (more is undefined; debug builds assert). */
CT_EXTERN ct_token *ct_token_ref(ct_token *t);

/* Drop a reference.  Tokens chained to t keep it alive as references do
 * (so that their triggered_token stays valid, and t's deadline still
 * triggers them): once t has neither references nor chained tokens left,
 * it is freed -- its descriptor closed, its deadline cancelled -- and it
 * leaves its parents, which are freed in turn if that was all that kept
 * them (without recursion, however deep the chain).  So the call that
 * frees t may be this one or the destruction of t's last child.
 * ct_token_unref(NULL) does nothing.  Ownership: takes the reference.  Any
 * thread; callbacks: yes, including the token's own callback (the trigger
 * holds a reference of its own while it runs callbacks).  Never blocks
 * except briefly on t's own lock (when the last reference of a token that
 * has had children, callbacks or a descriptor is dropped), on its parents'
 * locks and, for a token with a deadline, on the deadline heap's mutex;
 * closes the descriptor if it frees a token that has one. */
CT_EXTERN void ct_token_unref(ct_token *t);

/* Trigger t with reason CT_REASON_TRIGGER.  Marks t and every token
 * chained to t, at every depth, triggered, wakes the waiters of each and
 * makes their descriptors readable -- all of that before it runs any
 * callback, and then runs t's callbacks, then its descendants', in this
 * thread, before returning.  (A descendant that another thread's trigger
 * reached first is completed by that thread, which runs no user code
 * before it has done so.)  The marking goes from t down, token by token,
 * and t's waiters are woken as t is marked: another thread may see t
 * triggered, or return from ct_token_wait(t), a moment before a
 * descendant of t is triggered.  A thread that needs a descendant
 * triggered checks or waits on that descendant itself (it is triggered
 * before this call returns and before any callback of this trigger runs).
 * Returns 1 if this call triggered t, 0 if it was already triggered (the
 * first trigger wins and is the one reported by ct_token_triggered_token()),
 * -EINVAL for NULL.  Ownership: t borrowed.  Any thread; callbacks: yes (a
 * callback may trigger any token, including the one it runs for).  It runs
 * user callbacks, so it takes as long as they do. */
CT_EXTERN int ct_token_trigger(ct_token *t);

/* ct_token_trigger() with a reason other than CT_REASON_TRIGGER, and a
 * detail (the signal number for CT_REASON_SIGNAL) in 0..255.  For adapters.
 * Returns 1 or 0 as ct_token_trigger(); -EINVAL for NULL, CT_REASON_NONE,
 * a reason above 255, or a detail outside 0..255.  Ownership: t borrowed.
 * Any thread; callbacks: yes; runs callbacks, as ct_token_trigger(). */
CT_EXTERN int ct_token_trigger_reason(ct_token *t, ct_reason reason,
                                      int detail);

/* Trigger t naming another token, `cause`, as the one that caused it:
 * ct_token_triggered_token(t) and that of every token chained to t then
 * return `cause`.  For proxies, whose owner reports which of its tokens
 * fired.  t takes a reference on cause, dropped when t is freed, so cause
 * may be any live token -- except one of t's descendants, which already
 * holds t, or a token whose own cause is (through such references) t: the
 * tokens would keep each other alive.  Returns 1 or 0 as ct_token_trigger(); -EINVAL for
 * NULL t or cause, or a bad reason or detail (as ct_token_trigger_reason).
 * Ownership: both borrowed.  Any thread; callbacks: yes. */
CT_EXTERN int ct_token_trigger_with_cause(ct_token *t, ct_token *cause,
                                          ct_reason reason, int detail);

/* Prepare ct_token_trigger_async(): start the library thread that runs
 * what a signal handler may not (callbacks, descendants, descriptors).
 * Idempotent.  Returns 0, or -EAGAIN (no thread), -EMFILE/-ENFILE/-ENOMEM
 * (no descriptor).  A forked child has no such thread: it calls this
 * again before its handlers can trigger.  Any thread; not async-signal-safe; callbacks: yes; takes a
 * mutex and may create a thread, nothing longer. */
CT_EXTERN int ct_async_init(void);

/* Trigger t from a signal handler.  ASYNC-SIGNAL-SAFE: it uses only
 * lock-free atomics, futex(2) and write(2).  It marks t triggered (so
 * ct_token_triggered() is true when it returns) and wakes the threads
 * blocked in ct_token_wait()/ct_sleep() on t itself at once; t's
 * descendants, its descriptor and every callback are handled moments later
 * by the library thread started by ct_async_init(), never inside the
 * handler.  Returns 1 if this call triggered t, 0 if it was already
 * triggered, -EINVAL for NULL or a bad reason or detail, -EAGAIN if
 * ct_async_init() has not succeeded (t is then left untouched).
 * Ownership: t borrowed; it must stay alive while a handler may use it
 * (hold a reference for as long as the handler is installed).  errno is
 * preserved.  Never blocks.  Callbacks: yes, though ct_token_trigger() is
 * the better call there. */
CT_EXTERN int ct_token_trigger_async(ct_token *t, ct_reason reason,
                                     int detail);

/* A reason's name: "none", "trigger", "deadline", "signal", "owner-lost",
 * "user" (CT_REASON_USER and above) or "other".  Returns a static string.
 * Any thread; async-signal-safe; callbacks: yes; never blocks. */
CT_EXTERN const char *ct_reason_name(ct_reason reason);

/* Layout of the first word of every token.  The inline check below reads
 * it; it is part of the ABI.  Do not touch it. */
struct ct_token_public_ {
  uint32_t state; /* bit 0: triggered; bits 8..15 reason; 16..23 detail */
};
#define CT_STATE_TRIGGERED_ 1u

/* Is t triggered?  One acquire load, whatever the depth of chaining; once
 * true it stays true.  After it returns true, ct_token_triggered_token() and
 * ct_token_reason() give their final values.  A NULL token is never
 * triggered.  Ownership: borrowed.  Any thread; callbacks: yes;
 * async-signal-safe. */
static inline bool ct_token_triggered(const ct_token *t) {
  return t != NULL &&
         (__atomic_load_n(&((const struct ct_token_public_ *)(const void *)t)
                               ->state,
                          __ATOMIC_ACQUIRE) &
          CT_STATE_TRIGGERED_) != 0;
}

/* The reference's raise_if_triggered(): 0 if t is not triggered,
 * -ECANCELED if it is, -EINVAL for NULL.  Ownership: borrowed.  Any
 * thread; callbacks: yes; never blocks (one atomic load). */
CT_EXTERN int ct_token_check(const ct_token *t);

/* Early return: `CT_RETURN_IF_TRIGGERED(tok);` returns -ECANCELED from the
 * enclosing function (which must return int) when tok is triggered. */
#define CT_RETURN_IF_TRIGGERED(tok)                                           \
  do {                                                                        \
    if (ct_token_triggered(tok))                                              \
      return -ECANCELED;                                                      \
  } while (0)

/* The token whose trigger caused t to be triggered: t itself, or the
 * ancestor that was triggered first on the path that reached t.  NULL if t
 * is not triggered (or is NULL).  Ownership: borrowed; the result lives as
 * long as t does (a token keeps its ancestors alive).  Any thread;
 * callbacks: yes; never blocks, except that in the few instructions between
 * another thread's trigger and its storing the cause it yields until the
 * cause is there (so it is not async-signal-safe). */
CT_EXTERN ct_token *ct_token_triggered_token(const ct_token *t);

/* Why t was triggered: CT_REASON_NONE if it is not.  If detail is not NULL
 * it receives the reason's detail (the signal number), else 0.  For a
 * chained token this is the reason of the token that caused it.
 * Ownership: borrowed.  Any thread; callbacks: yes; never blocks. */
CT_EXTERN ct_reason ct_token_reason(const ct_token *t, int *detail);

/* The token's name.  For a chained token it is the parents' names joined by
 * ':' ("a:b"), composed on first use and cached; a composed name longer
 * than CT_NAME_MAX bytes is cut to at most CT_NAME_MAX bytes in all,
 * ending with "..." (and never inside a UTF-8 character).  Returns NULL
 * for NULL, or when composing the name ran out of memory.  Ownership: the
 * string belongs to t, or to the ancestor t's name comes from (a chain of
 * one parent is named as that parent), and lives at least as long as t.
 * Any thread; callbacks: yes; never blocks.  The first call on a chained
 * token allocates and walks its ancestors, a walk bounded by the
 * CT_NAME_MAX bytes it can write plus the links on one path. */
#define CT_NAME_MAX 65536
CT_EXTERN const char *ct_token_name(ct_token *t);

/* The reference's exception message, "Cancellation requested by <name>
 * token", where <name> is that of ct_token_triggered_token(t).  Writes at
 * most len bytes including the terminating NUL (buf may be NULL if len is
 * 0) and returns the length the full message has, as snprintf does.
 * Errors: -EINVAL (t NULL, or buf NULL with len > 0), -EAGAIN (t is not
 * triggered), -ENOMEM (the name could not be composed).  Ownership: t
 * borrowed; buf is the caller's.  Any thread; callbacks: yes; never
 * blocks (see ct_token_name()). */
CT_EXTERN int ct_token_message(ct_token *t, char *buf, size_t len);

/* One pointer of user data per token, for language bindings and adapters
 * (the Python package keeps its CancelToken object here).  The library
 * never dereferences it and does nothing with it on free.  Set returns 0,
 * or -EINVAL for NULL t, -ENOMEM.  ct_token_data() returns NULL when none
 * was set.  Ownership: data is borrowed.  Any thread (the pointer is
 * published with release/acquire); callbacks: yes. */
CT_EXTERN int ct_token_set_data(ct_token *t, void *data);
CT_EXTERN void *ct_token_data(const ct_token *t);

/* ------------------------------------------------------------------------ */
/* Chaining                                                                 */

/* A new token, named "<a>:<b>", triggered when a or b is triggered
 * (with ct_token_triggered_token() naming the token that was).  Triggering
 * it does not trigger a or b.  If a or b is already triggered, so is the
 * result, at once.  The result keeps a and b alive, as a reference would,
 * until it is freed (see ct_token_unref()).
 * Errors: -EINVAL (any argument NULL), -ENOMEM, -ENOTSUP (a is a proxy
 * token: see ct_token_mark_proxy()).  Ownership: a and b borrowed; *out is a new
 * reference.  Any thread; callbacks: yes; blocks only briefly on the parents'
 * locks. */
CT_EXTERN int ct_token_chain(ct_token **out, ct_token *a, ct_token *b);

/* N-ary chain: a new token triggered when any of the n tokens is, named
 * by joining their names with ':'.  n >= 1; a parent may appear more than
 * once.  Errors: -EINVAL (out or parents NULL, n == 0, n > CT_CHAIN_MAX, a
 * NULL parent), -ENOMEM.  Ownership, thread-safety and callbacks as
 * ct_token_chain(). */
#define CT_CHAIN_MAX 65536u
CT_EXTERN int ct_token_chain_n(ct_token **out, ct_token *const *parents,
                               size_t n);

/* A named child of one parent: triggered when parent is; triggering it
 * does not trigger parent.  The cheap form for "one token per request under
 * a server's shutdown token".  Errors: as ct_token_new() and
 * ct_token_chain().  Ownership: parent borrowed; *out a new reference.
 * Any thread; callbacks: yes; blocks only briefly on the parent's lock. */
CT_EXTERN int ct_token_new_child(ct_token **out, const char *name,
                                 ct_token *parent);

/* Mark t as a proxy token (the cross-process client does this).  The
 * reference lets a proxy be chained *with* but not chained *from*:
 * CancelToken('local').chain(proxy) works, proxy.chain(x) raises
 * NotImplementedError.  In C that makes ct_token_chain(out, t, x) fail with
 * -ENOTSUP, while ct_token_chain(out, x, t), ct_token_chain_n() with t
 * anywhere, and ct_token_new_child(out, name, t) work.  Returns 0, or
 * -EINVAL for NULL.  Ownership: borrowed.  Any thread; callbacks: yes;
 * never blocks. */
CT_EXTERN int ct_token_mark_proxy(ct_token *t);

/* Is t a proxy token (see ct_token_mark_proxy())?  NULL gives false.
 * Ownership: borrowed.  Any thread; callbacks: yes; never blocks. */
CT_EXTERN bool ct_token_is_proxy(const ct_token *t);

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                */

/* Make t trigger itself, with reason CT_REASON_DEADLINE, at the absolute
 * monotonic time `deadline` (ns, see ct_now()).  If t already has a
 * deadline the earlier one stays.  A deadline that has passed triggers t
 * at once, in this call.  Deadlines are served by one library thread,
 * started on first use, with no descriptor or thread per token; they fire
 * within about a millisecond -- provided the callbacks they run are quick,
 * since that thread runs them one after another.  A deadline does not keep
 * t alive: it is cancelled when t is freed, by its last unref or, if tokens
 * are chained to t, by the destruction of the last of them (until then it
 * still triggers t and them).  After fork() the child has no
 * timer thread: deadlines armed before the fork fire in the child once it
 * sets a deadline of its own (which starts one).  Returns 0 or 1 (t was triggered by
 * this call, whose callbacks then ran in this thread), or -EINVAL (NULL,
 * deadline negative), -ENOMEM, -EAGAIN (the timer thread could not be
 * started).  Ownership: borrowed.  Any thread; callbacks: yes; takes the
 * deadline heap's mutex briefly. */
CT_EXTERN int ct_token_set_deadline(ct_token *t, int64_t deadline);

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */

/* Block until t is triggered or the deadline passes.  Returns 0 when t is
 * triggered, -ETIMEDOUT when the deadline passed first (with deadline 0:
 * at once if t is not triggered), -EINVAL for NULL or a bad deadline.
 * Any thread; any number of threads may wait on one token.  Sleeps in the
 * kernel (a futex on the token's state word); no polling.  Ownership: borrowed, and
 * the caller must hold its reference until the call returns.  Callbacks:
 * allowed, but a callback that waits for a token that only it would
 * trigger waits until the deadline. */
CT_EXTERN int ct_token_wait(ct_token *t, int64_t deadline);

/* Cancellable sleep: block until the deadline.  Returns 0 when the
 * deadline passed, -ECANCELED when t was triggered first (at once if it
 * already is), -EINVAL for NULL t or a bad deadline.  CT_FOREVER sleeps
 * until t is triggered.  Ownership: borrowed.  Any thread; blocks
 * (callbacks: allowed, as for ct_token_wait()). */
CT_EXTERN int ct_sleep(ct_token *t, int64_t deadline);

/* A descriptor that becomes readable when t is triggered and stays
 * readable for ever after (an eventfd).  Created on first call, so tokens
 * that are never polled cost no descriptor; later calls return the same
 * one.  It belongs to t and is closed by t's last unref: do not close it,
 * read it or write it.  Readable means triggered, but not the other way
 * round at every instant: ct_token_triggered(t) turns true first, and the
 * descriptor becomes readable a moment later -- before the
 * ct_token_trigger() call (or the deadline's trigger) that did it returns
 * and before any callback of t or its descendants runs; for
 * ct_token_trigger_async(), when the library thread gets to it.  So a
 * thread that has seen t triggered may still, briefly, find the
 * descriptor not yet readable; wait on it, do not poll it with timeout 0.
 * After fork() (see the conventions) the child's first call returns the
 * same number, now naming a fresh descriptor of the child's (readable if
 * the child's copy of t is triggered); a descriptor the child polls
 * without having called this again since the fork may miss the child's
 * triggers.  The "do not close it" rule holds in a forked child too: the
 * child's library puts its own descriptor at the inherited number (with
 * dup3(2)), so a child that closes descriptors it inherited (a daemon's
 * close-everything loop, closefrom()) and then opens a file that gets
 * that number must not use t again, or that file would be replaced; such
 * a child should make its own tokens.  Returns the descriptor, or
 * -EINVAL, -EMFILE, -ENFILE,
 * -ENOMEM (also when a child cannot get its own descriptor).  Ownership: t borrowed; the descriptor stays t's.  Any
 * thread; callbacks: yes; never blocks (the first call takes t's lock). */
CT_EXTERN int ct_token_fd(ct_token *t);

/* Cancellable poll, the C form of the reference's cancellable_wait() for
 * anything with a descriptor.  Waits until one of fds[0..n) is ready (as
 * poll(2), revents are filled in), t is triggered, or the deadline passes.
 * Returns the number of ready entries (> 0), -ECANCELED if t is triggered
 * (this wins when both happen: revents are then all 0), -ETIMEDOUT,
 * -EINVAL (NULL t, fds NULL with n > 0, bad deadline), -ENOMEM, -EMFILE or
 * -ENFILE (the token's descriptor could not be created), or the negative
 * errno of poll(2).  Cancellation is t's own state, not the readiness of
 * its descriptor: should another process that shares the descriptor
 * (through fork() and a write behind the library's back) make it readable
 * while t is not triggered, that stray write is consumed and the poll
 * goes on.  The caller's set
 * is polled first without blocking; only a call that has to block polls
 * the token's descriptor too (and creates it, hence -EMFILE/-ENFILE only
 * there), so a call that finds a descriptor ready, or has deadline 0,
 * costs one poll(2) of the caller's set and never touches the token's.  Any thread.  n may be 0: then it is a cancellable sleep
 * that returns -ETIMEDOUT.  Interrupted system calls are restarted with
 * the time left.  Ownership: t and fds borrowed.  Callbacks: allowed;
 * blocks. */
CT_EXTERN int ct_poll(ct_token *t, struct pollfd *fds, size_t n,
                      int64_t deadline);

/* ct_poll() on one descriptor.  Returns the revents (> 0) of fd, or the
 * errors of ct_poll() (-EINVAL for a negative fd).  Ownership, threads and
 * callbacks as ct_poll(): blocks. */
CT_EXTERN int ct_wait_fd(ct_token *t, int fd, short events, int64_t deadline);

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                */

typedef void (*ct_callback_fn)(ct_token *t, void *arg);

/* A callback registration.  The caller owns the storage (no allocation);
 * it must stay valid and unmoved from ct_callback_register() until
 * ct_callback_unregister() returns.  Zero it before the first use
 * (ct_callback cb = {0};); ct_callback_unregister() leaves it zeroed again.
 * The members are private. */
typedef struct ct_callback {
  uintptr_t private_[8];
} ct_callback;

/* Run fn(t, arg) once when t is triggered.
 *   Returns 0: registered; fn will run in the thread that triggers t (or
 *              a library thread: the deadline's, the signal trigger's),
 *              once the trigger has done what ct_token_trigger() says
 *              it does first, unless unregistered first.  The
 *              registration holds a reference on t; ct_callback_unregister()
 *              must be called to release it.
 *   Returns 1: t was already triggered, so fn has run at once, in this
 *              thread, before this call returned (if t's trigger is still
 *              under way in another thread, tokens chained to t may not
 *              all read as triggered yet while fn runs).  No reference is held
 *              and ct_callback_unregister() is optional (it returns 1):
 *              cb may be registered again as it is.
 *   -EINVAL:   NULL cb, t or fn, or cb is already registered (and not
 *              ended by an unregister or by a run at registration).
 *   -ENOMEM:   the first registration on a token allocates a small block
 *              for the token's list; later ones allocate nothing.
 * On an error cb is left as it was.
 * Ownership: t borrowed; cb owned by the caller (see above).  Any thread;
 * callbacks: yes; blocks only briefly on t's lock -- but when t is already
 * triggered it runs fn before returning. */
CT_EXTERN int ct_callback_register(ct_callback *cb, ct_token *t,
                                   ct_callback_fn fn, void *arg);

/* End a registration, with std::stop_callback's guarantee: when this
 * returns, fn is not running and never will, and cb may be freed.
 *   Returns 0: fn had not run and now never will.
 *   Returns 1: fn has run (or is running in this very thread: a callback
 *              may unregister itself, and may free cb before returning).
 *              If it was running in another thread, this call waited for
 *              it to finish.
 *   -EINVAL:   NULL, or cb is not registered (never, or already ended).
 * Ownership: releases the registration's reference on the token.  Any
 * thread; may block while fn runs in another thread; from inside a
 * callback it may unregister itself or any other registration (waiting
 * for one that runs in another thread, so two callbacks that unregister
 * each other from two threads deadlock, as with std::stop_callback). */
CT_EXTERN int ct_callback_unregister(ct_callback *cb);

#ifdef __cplusplus
}
#endif
#endif /* CANCELTOKEN_H */
