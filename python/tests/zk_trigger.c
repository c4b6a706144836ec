/* SPDX-License-Identifier: MIT
 *
 * zk_trigger.c -- a C process for python/tests/test_zk.py: attach a proxy
 * to a token published in a ZooKeeper ensemble and trigger it there.
 *
 *   ct_py_zk_trigger zk://HOST:PORT[,...]/CHROOT NAME
 *
 * Prints "won" (this trigger was recorded) or "lost" (another was first)
 * and exits 0; on an error prints it and exits 1.  Every call has a 60 s
 * deadline, a bound on a hang only.
 */
#include "canceltoken_zk.h"

#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ZK-ADDRESS NAME\n", argv[0]);
    return 2;
  }
  int64_t deadline = ct_deadline_after(60 * (int64_t)1000000000);
  char err[256] = "";
  ct_zk_client *c = NULL;
  int r = ct_zk_connect(&c, argv[1], NULL, err, sizeof err, deadline);
  if (r < 0) {
    fprintf(stderr, "connect %s: %s\n", argv[1], *err ? err : ct_strerror(r));
    return 1;
  }
  ct_token *proxy = NULL;
  r = ct_zk_get(c, &proxy, argv[2], deadline);
  if (r >= 0)
    r = ct_zk_trigger(c, proxy, CT_REASON_TRIGGER, 0, deadline);
  if (r < 0)
    fprintf(stderr, "%s: %s\n", argv[2], ct_strerror(r));
  else
    puts(r == 1 ? "won" : "lost");
  ct_zk_client_free(c);
  ct_token_unref(proxy);
  return r < 0;
}
