/* SPDX-License-Identifier: MIT
 *
 * resolve.c -- from an address as a user writes it to a socket address:
 * the syntax is address.c's (ct_addr_parse(), the one parser every
 * backend, the command and the Python package share through the public
 * calls that take an address); this file resolves what it parsed, tells
 * loopback from the rest, and formats socket addresses for logs.  The
 * public ct_net_address_kind() gives the parser's verdict to the command
 * and the Python package.
 *
 * Design notes:
 *  - An empty host means loopback, never INADDR_ANY: binding every
 *    interface must be asked for in so many words ("0.0.0.0:PORT", "[::]")
 *    and then needs a secret (server.c enforces it).
 *  - A zk:// address parses, but is not a socket: -EINVAL here, with a
 *    message saying which backend takes it.
 */
#include "net_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>

int net_resolve_address(const char *address, struct net_addr *a, int index,
                        char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  struct ct_addr pa;
  int rc = ct_addr_parse(&pa, address, err, errlen);
  if (rc < 0)
    return rc;
  if (pa.kind == CT_ADDR_ZK) {
    net_seterr(err, errlen,
               "'%s' is a ZooKeeper address: the token server and client "
               "take a socket path, HOST:PORT or [IPV6]:PORT",
               address);
    return -EINVAL;
  }
  if (pa.kind == CT_ADDR_UNIX) {
    if (index > 0)
      return -ENOENT;
    size_t n = strlen(pa.path);
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, pa.path, n + 1);
    memcpy(a->path, pa.path, n + 1);
    a->family = AF_UNIX;
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
  }
  a->port = pa.port;
  memcpy(a->host, pa.host, sizeof a->host);
  if (pa.host[0] == '\0') { /* '' means loopback, not every interface */
    if (index > 0)
      return -ENOENT;
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(a->port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->family = AF_INET;
    a->len = sizeof *in;
    return 0;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_family = pa.v6 ? AF_INET6 : AF_UNSPEC};
  struct addrinfo *res = NULL;
  int gr = getaddrinfo(pa.host, NULL, &hints, &res);
  if (gr != 0) {
    net_seterr(err, errlen, "cannot resolve '%s': %s", pa.host,
               gai_strerror(gr));
    return gr == EAI_MEMORY ? -ENOMEM : -ENOENT;
  }
  struct addrinfo *ai = res;
  for (int i = 0; ai && i < index; i++)
    ai = ai->ai_next;
  if (!ai || ai->ai_addrlen > sizeof a->ss) {
    freeaddrinfo(res);
    return -ENOENT;
  }
  memcpy(&a->ss, ai->ai_addr, ai->ai_addrlen);
  a->len = ai->ai_addrlen;
  a->family = ai->ai_family;
  if (a->family == AF_INET)
    ((struct sockaddr_in *)&a->ss)->sin_port = htons(a->port);
  else
    ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(a->port);
  freeaddrinfo(res);
  return 0;
}

int ct_net_address_kind(const char *address, char *err, size_t errlen) {
  struct ct_addr a;
  int rc = ct_addr_parse(&a, address, err, errlen);
  if (rc < 0)
    return rc;
  _Static_assert(CT_ADDR_UNIX == CT_NET_ADDRESS_UNIX &&
                     CT_ADDR_TCP == CT_NET_ADDRESS_TCP &&
                     CT_ADDR_ZK == CT_NET_ADDRESS_ZK,
                 "one numbering of address kinds");
  return (int)a.kind;
}

bool net_addr_is_loopback(const struct net_addr *a) {
  if (a->family == AF_UNIX)
    return true;
  if (a->family == AF_INET) {
    uint32_t ip = ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr);
    return (ip >> 24) == 127;
  }
  const struct in6_addr *ip6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
  if (IN6_IS_ADDR_LOOPBACK(ip6))
    return true;
  return IN6_IS_ADDR_V4MAPPED(ip6) && ip6->s6_addr[12] == 127;
}

int net_addr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                    size_t buflen) {
  char ip[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t max = len > offsetof(struct sockaddr_un, sun_path)
                     ? len - offsetof(struct sockaddr_un, sun_path)
                     : 0;
    return snprintf(buf, buflen, "%.*s", (int)strnlen(un->sun_path, max),
                    un->sun_path);
  }
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    return snprintf(buf, buflen, "%s:%u", ip, ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    return snprintf(buf, buflen, "[%s]:%u", ip, ntohs(in6->sin6_port));
  }
  return snprintf(buf, buflen, "?");
}
