/* SPDX-License-Identifier: MIT
 *
 * address.h -- the one parser of every address form a user may write: a
 * socket path, HOST:PORT, [V6]:PORT and zk://HOST:PORT[,HOST:PORT...][/CHROOT].
 * Pure syntax: no name resolution, no sockets, no allocation, so the
 * server, the client, the ZooKeeper backend, the command and the Python
 * package all agree on what an address means, and a fuzzer drives it
 * directly (fuzz/fuzz_address.c).
 *
 * Rules, in the order they are applied:
 *  - "zk://" prefix: a ZooKeeper ensemble.  After it, one or more
 *    HOST:PORT or [V6]:PORT separated by ',', then optionally a chroot: '/'
 *    followed by a path of non-empty components ("/ctok", "/a/b"); no
 *    trailing '/', no "." or ".." components, no empty component.  Every
 *    port is 1..65535 and every host non-empty.
 *  - contains '/' or has no ':': a Unix socket path (1..107 bytes).
 *  - otherwise HOST:PORT (HOST may be empty: loopback) or [V6]:PORT, port
 *    0..65535 (0: an ephemeral port, for a server).
 */
#ifndef CT_REMOTE_ADDRESS_H
#define CT_REMOTE_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CT_ADDR_HIDDEN __attribute__((visibility("hidden")))

enum ct_addr_kind { CT_ADDR_UNIX = 1, CT_ADDR_TCP = 2, CT_ADDR_ZK = 3 };

#define CT_ADDR_PATH_MAX 107  /* sizeof(sun_path) - 1 */
#define CT_ADDR_HOST_MAX 255
#define CT_ADDR_ZK_HOSTS_MAX 1023
#define CT_ADDR_CHROOT_MAX 255

struct ct_addr {
  enum ct_addr_kind kind;
  char path[CT_ADDR_PATH_MAX + 1];        /* UNIX */
  char host[CT_ADDR_HOST_MAX + 1];        /* TCP: without brackets; "" */
  uint16_t port;                          /* TCP */
  bool v6;                                /* TCP: written as [V6]:PORT */
  /* ZK: the member list as ZooKeeper's connect string wants it
   * ("h1:p1,h2:p2", brackets kept for IPv6) and the chroot ("" or
   * "/ctok"), kept apart because the chroot node must be created first. */
  char zk_hosts[CT_ADDR_ZK_HOSTS_MAX + 1];
  char zk_chroot[CT_ADDR_CHROOT_MAX + 1];
  unsigned zk_count;                      /* number of members listed */
};

/* Parse s into *a.  Returns 0, -EINVAL (NULL, empty or malformed; err
 * says why, naming the address) or -ENAMETOOLONG (a part too long).
 * err may be NULL; it is always NUL-terminated when errlen > 0. */
CT_ADDR_HIDDEN int ct_addr_parse(struct ct_addr *a, const char *s, char *err,
                                 size_t errlen);

/* Is s written as a ZooKeeper address ("zk://...")?  NULL gives false. */
CT_ADDR_HIDDEN bool ct_addr_is_zk(const char *s);

#endif /* CT_REMOTE_ADDRESS_H */
