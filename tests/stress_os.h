/* SPDX-License-Identifier: MIT
 *
 * stress_os.h -- two operations of the random stress (stress_ops.c, which
 * includes this file where its operations are defined, and whose helpers
 * -- BAD, rnd, pick, workers, FAIL_NS -- it uses): fork, and signals with
 * deadlines (issue 13).  Kept apart to keep stress_ops.c readable; not a
 * header for anything else.
 */
#ifndef CT_STRESS_OS_H
#define CT_STRESS_OS_H

/* ---- fork and signals with deadlines (issue 13, items 3 and 4) ---- */

static bool fd_ready(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

/* fork(): a private token P with a child C, both with descriptors, is
 * triggered in exactly one of the two processes after the fork; the other
 * process's copies must stay untriggered with descriptors not readable
 * (the eventfd is shared by fork), and the triggering side sees its own
 * descriptors readable at the same numbers.  The tokens are private to
 * this worker because another thread's lock held at the fork would stay
 * held in the child (canceltoken.h, "fork()"); the rest of the forest goes
 * on changing meanwhile, which is the point. */
static void do_fork(struct worker *w) {
  ct_token *p, *c;
  if (ct_token_new(&p, "fork") < 0 || ct_token_new_child(&c, "c", p) < 0) {
    BAD("fork: token creation failed");
    return;
  }
  int pfd = ct_token_fd(p), cfd = ct_token_fd(c);
  int go[2], back[2];
  if (pfd < 0 || cfd < 0 || pipe2(go, O_CLOEXEC) != 0 ||
      pipe2(back, O_CLOEXEC) != 0) {
    BAD("fork: no descriptor");
    ct_token_unref(c);
    ct_token_unref(p);
    return;
  }
  bool child_triggers = rnd(&w->rng) % 2;
  pid_t pid = fork();
  if (pid < 0) {
    BAD("fork: %s", strerror(errno));
  } else if (pid == 0) {
    /* One thread, async-signal-safe calls plus our own tokens only. */
    int rc = 0;
    char x = 0;
    struct pollfd pg = {go[0], POLLIN, 0};
    if (child_triggers) {
      if (ct_token_trigger(p) != 1)
        rc = 1;
      else if (ct_token_fd(p) != pfd || ct_token_fd(c) != cfd)
        rc = 2;
      else if (!fd_ready(pfd) || !fd_ready(cfd) ||
               ct_poll(c, NULL, 0, 0) != -ECANCELED)
        rc = 3;
      if (write(back[1], &x, 1) != 1) /* the parent looks now */
        rc = 4;
      /* The limit keeps a failed parent from leaving us behind. */
      if (poll(&pg, 1, 60000) != 1)
        rc = 5;
    } else {
      if (poll(&pg, 1, 60000) != 1 || read(go[0], &x, 1) != 1)
        rc = 6; /* the parent has triggered */
      else if (ct_token_triggered(p) || ct_token_triggered(c) ||
               ct_token_fd(c) != cfd || fd_ready(cfd) ||
               ct_poll(c, NULL, 0, 0) != -ETIMEDOUT)
        rc = 7;
    }
    /* The result goes on the pipe, and the child ends by SIGKILL rather
     * than exit: valgrind, which follows fork, would otherwise report the
     * parent's memory, copied into the child and never freed there, as
     * the child's leaks. */
    unsigned char res = (unsigned char)rc;
    if (write(back[1], &res, 1) != 1)
      _exit(100);
    raise(SIGKILL);
    _exit(rc);
  } else {
    char x = 0;
    if (child_triggers) {
      if (read(back[0], &x, 1) != 1)
        BAD("fork: the child died before triggering");
      if (ct_token_triggered(p) || ct_token_triggered(c) || fd_ready(pfd) ||
          fd_ready(cfd) || ct_poll(c, NULL, 0, 0) != -ETIMEDOUT)
        BAD("fork: a trigger in the child reached the parent's token");
      if (write(go[1], &x, 1) != 1)
        BAD("fork: pipe");
    } else {
      ct_token_trigger(p);
      if (!fd_ready(pfd) || !fd_ready(cfd))
        BAD("fork: the parent's own trigger left a descriptor unreadable");
      if (write(go[1], &x, 1) != 1)
        BAD("fork: pipe");
    }
    int status;
    unsigned char res = 99;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL ||
        read(back[0], &res, 1) != 1 || res != 0)
      BAD("fork: the child's checks failed (result %d, status %#x)", res,
          status);
  }
  for (int k = 0; k < 2; k++) {
    close(go[k]);
    close(back[k]);
  }
  ct_token_unref(c);
  ct_token_unref(p);
}

struct sigdl {
  _Atomic int ran;
  _Atomic int raising;    /* the worker is inside raise() */
  _Atomic int bad_thread; /* ran in the raising thread during raise():
                             inside the handler */
  pthread_t raiser;
  ct_token *done;
};

static void sigdl_cb(ct_token *t, void *arg) {
  struct sigdl *s = arg;
  if (!ct_token_triggered(t))
    BAD("signal+deadline: a callback ran on a token not triggered");
  if (atomic_load(&s->raising) && pthread_equal(pthread_self(), s->raiser))
    atomic_store(&s->bad_thread, 1);
  if (atomic_fetch_add(&s->ran, 1) != 0)
    BAD("signal+deadline: a callback ran twice");
  ct_token_trigger(s->done);
}

/* A token hooked to this worker's own real-time signal and given a
 * near deadline (0-1 ms), chained under a random live token half the
 * time: the signal (raised by this thread), the deadline thread and the
 * forest's triggers race for it.  Whoever wins, exactly one reason holds
 * all the way down (the child reports the token's reason and detail, the
 * cause is the token or the parent's cause), the child's callback runs
 * once and never in the handler, the child's descriptor becomes readable,
 * and unhooking puts the disposition back. */
static void do_signal_deadline(struct worker *w) {
  int signo = SIGRTMIN + 2 + (int)(w - workers);
  if (signo > SIGRTMAX)
    return;
  int pi = -1;
  ct_token *par = rnd(&w->rng) % 2 ? pick(&w->rng, &pi) : NULL;
  ct_token *s, *k;
  int r = par ? ct_token_new_child(&s, "sig", par) : ct_token_new(&s, "sig");
  if (r < 0 || ct_token_new_child(&k, "k", s) < 0) {
    BAD("signal+deadline: creation failed");
    ct_token_unref(par);
    return;
  }
  struct sigdl d = {0};
  d.raiser = pthread_self();
  ct_callback cb = {0};
  if (ct_token_new(&d.done, "done") < 0 ||
      ct_callback_register(&cb, k, sigdl_cb, &d) < 0) {
    BAD("signal+deadline: register failed");
    goto out;
  }
  int kfd = ct_token_fd(k);
  if (kfd < 0)
    BAD("signal+deadline: ct_token_fd: %s", ct_err_name(kfd));
  r = ct_signal_hook(signo, s, 0);
  if (r < 0) {
    BAD("signal+deadline: hook %d: %s", signo, ct_err_name(r));
  } else {
    r = ct_token_set_deadline(s, ct_deadline_after((int64_t)(rnd(&w->rng) % 1000000)));
    if (r < 0)
      BAD("signal+deadline: set_deadline: %s", ct_err_name(r));
    if (rnd(&w->rng) % 2)
      sched_yield();
    atomic_store(&d.raising, 1);
    raise(signo);
    atomic_store(&d.raising, 0);
    /* The async thread or the deadline thread finishes the job. */
    if (ct_token_wait(d.done, ct_deadline_after(FAIL_NS)) != 0)
      BAD("signal+deadline: the callback never ran");
    if (kfd >= 0) {
      struct pollfd p = {kfd, POLLIN, 0};
      if (poll(&p, 1, 60000) != 1)
        BAD("signal+deadline: the child's descriptor never became readable");
    }
    int ds = -1, dk = -1;
    ct_reason rs = ct_token_reason(s, &ds), rk = ct_token_reason(k, &dk);
    ct_token *cs = ct_token_triggered_token(s);
    if (rs != rk || ds != dk || ct_token_triggered_token(k) != cs)
      BAD("signal+deadline: the child's reason differs from the token's");
    if (cs == s) {
      if (!(rs == CT_REASON_SIGNAL && ds == signo) &&
          !(rs == CT_REASON_DEADLINE && ds == 0))
        BAD("signal+deadline: reason %d detail %d", (int)rs, ds);
    } else if (!par || cs != ct_token_triggered_token(par)) {
      BAD("signal+deadline: triggered by a token that is no cause");
    }
    if (atomic_load(&d.bad_thread))
      BAD("signal+deadline: a callback ran in the signal handler's thread");
    r = ct_signal_unhook(signo);
    if (r != 0)
      BAD("signal+deadline: unhook: %s", ct_err_name(r));
    struct sigaction now;
    sigaction(signo, NULL, &now);
    if (now.sa_handler != SIG_DFL)
      BAD("signal+deadline: unhook did not restore the default");
  }
  /* It ran (d.done was triggered by it, or we gave up above): 1. */
  r = ct_callback_unregister(&cb);
  if (r != 1)
    BAD("signal+deadline: unregister returned %d", r);
out:
  ct_token_unref(d.done);
  ct_token_unref(k);
  ct_token_unref(s);
  ct_token_unref(par);
}

#endif
