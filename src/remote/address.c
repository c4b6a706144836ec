/* SPDX-License-Identifier: MIT
 *
 * address.c -- parsing of every address form (see address.h for the
 * rules).  Pure functions over strings: no resolution, no allocation.
 */
#include "address.h"
#include "text.h"

#include <errno.h>
#include <string.h>

/* Port in s[0..n): decimal digits only, at most 65535. */
static int parse_port(const char *s, size_t n, uint16_t *port) {
  if (n == 0 || n > 5)
    return -EINVAL;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -EINVAL;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 65535)
    return -EINVAL;
  *port = (uint16_t)v;
  return 0;
}

/* One HOST:PORT or [V6]:PORT in s[0..n).  host gets the name without
 * brackets (at most CT_ADDR_HOST_MAX bytes). */
static int parse_hostport(const char *s, size_t n, char *host, uint16_t *port,
                          bool *v6) {
  const char *colon;
  const char *h = s;
  size_t hn;
  *v6 = false;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close || (size_t)(close - s) + 1 >= n || close[1] != ':')
      return -EINVAL;
    h = s + 1;
    hn = (size_t)(close - h);
    colon = close + 1;
    if (hn == 0 || memchr(h, ':', hn) == NULL) /* [x] must be IPv6 */
      return -EINVAL;
    *v6 = true;
  } else {
    colon = NULL;
    for (size_t i = n; i > 0; i--)
      if (s[i - 1] == ':') {
        colon = s + i - 1;
        break;
      }
    if (!colon)
      return -EINVAL;
    hn = (size_t)(colon - s);
    if (memchr(s, ':', hn) || memchr(s, '[', hn) || memchr(s, ']', hn))
      return -EINVAL; /* IPv6 without brackets, or stray brackets */
  }
  if (hn > CT_ADDR_HOST_MAX)
    return -ENAMETOOLONG;
  for (size_t i = 0; i < hn; i++)
    if ((unsigned char)h[i] <= ' ' || h[i] == ',' || h[i] == '/' ||
        h[i] == 0x7f)
      return -EINVAL;
  size_t pn = n - (size_t)(colon + 1 - s);
  if (parse_port(colon + 1, pn, port) < 0)
    return -EINVAL;
  memcpy(host, h, hn);
  host[hn] = '\0';
  return 0;
}

static int parse_chroot(struct ct_addr *a, const char *s, const char *all,
                        char *err, size_t errlen) {
  size_t n = strlen(s);
  if (n > CT_ADDR_CHROOT_MAX)
    return ct_text_fail(err, errlen, -ENAMETOOLONG,
                "bad address '%s': chroot longer than %d bytes", all,
                CT_ADDR_CHROOT_MAX);
  if (n == 1)
    return ct_text_fail(err, errlen, -EINVAL,
                "bad address '%s': chroot '/' (leave it out instead)", all);
  /* s[0] == '/'; each component non-empty, not "." or "..". */
  const char *p = s + 1;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t cn = e ? (size_t)(e - p) : strlen(p);
    if (cn == 0 || (cn == 1 && p[0] == '.') ||
        (cn == 2 && p[0] == '.' && p[1] == '.'))
      return ct_text_fail(err, errlen, -EINVAL,
                  "bad address '%s': chroot has an empty, '.' or '..' part",
                  all);
    for (size_t i = 0; i < cn; i++)
      if ((unsigned char)p[i] < ' ' || p[i] == 0x7f)
        return ct_text_fail(err, errlen, -EINVAL,
                    "bad address '%s': control character in the chroot", all);
    p += cn;
    if (*p == '/')
      p++;
    if (e && !*p)
      return ct_text_fail(err, errlen, -EINVAL,
                  "bad address '%s': chroot ends with '/'", all);
  }
  memcpy(a->zk_chroot, s, n + 1);
  return 0;
}

static int parse_zk(struct ct_addr *a, const char *all, char *err,
                    size_t errlen) {
  const char *s = all + 5; /* after "zk://" */
  const char *slash = strchr(s, '/');
  size_t hn = slash ? (size_t)(slash - s) : strlen(s);
  if (hn == 0)
    return ct_text_fail(err, errlen, -EINVAL,
                "bad address '%s': expected zk://HOST:PORT[,HOST:PORT...][/CHROOT]",
                all);
  if (hn > CT_ADDR_ZK_HOSTS_MAX)
    return ct_text_fail(err, errlen, -ENAMETOOLONG,
                "bad address '%s': member list longer than %d bytes", all,
                CT_ADDR_ZK_HOSTS_MAX);
  a->kind = CT_ADDR_ZK;
  const char *p = s;
  while (p < s + hn) {
    const char *comma = memchr(p, ',', (size_t)(s + hn - p));
    size_t n = comma ? (size_t)(comma - p) : (size_t)(s + hn - p);
    char host[CT_ADDR_HOST_MAX + 1];
    uint16_t port;
    bool v6;
    int rc = parse_hostport(p, n, host, &port, &v6);
    if (rc == -ENAMETOOLONG)
      return ct_text_fail(err, errlen, rc, "bad address '%s': host name too long",
                  all);
    if (rc < 0 || host[0] == '\0' || port == 0)
      return ct_text_fail(err, errlen, -EINVAL,
                  "bad address '%s': member %u is not HOST:PORT with a port 1..65535",
                  all, a->zk_count + 1);
    a->zk_count++;
    p += n;
    if (comma) {
      p++;
      if (p == s + hn)
        return ct_text_fail(err, errlen, -EINVAL,
                    "bad address '%s': empty member after ','", all);
    }
  }
  memcpy(a->zk_hosts, s, hn);
  a->zk_hosts[hn] = '\0';
  if (slash)
    return parse_chroot(a, slash, all, err, errlen);
  return 0;
}

bool ct_addr_is_zk(const char *s) { return s && strncmp(s, "zk://", 5) == 0; }

int ct_addr_parse(struct ct_addr *a, const char *s, char *err, size_t errlen) {
  if (err && errlen > 0)
    err[0] = '\0';
  if (!a)
    return ct_text_fail(err, errlen, -EINVAL, "no address structure");
  memset(a, 0, sizeof *a);
  if (!s || !*s)
    return ct_text_fail(err, errlen, -EINVAL, "empty address");
  if (ct_addr_is_zk(s))
    return parse_zk(a, s, err, errlen);
  if (strstr(s, "://"))
    return ct_text_fail(err, errlen, -EINVAL,
                "bad address '%s': unknown scheme (only zk:// is known)", s);
  size_t n = strlen(s);
  if (strchr(s, '/') || !strchr(s, ':')) {
    if (n > CT_ADDR_PATH_MAX)
      return ct_text_fail(err, errlen, -ENAMETOOLONG,
                  "socket path too long (%zu bytes, max %d)", n,
                  CT_ADDR_PATH_MAX);
    a->kind = CT_ADDR_UNIX;
    memcpy(a->path, s, n + 1);
    return 0;
  }
  int rc = parse_hostport(s, n, a->host, &a->port, &a->v6);
  if (rc == -ENAMETOOLONG)
    return ct_text_fail(err, errlen, rc, "host name too long in '%s'", s);
  if (rc < 0)
    return ct_text_fail(err, errlen, -EINVAL,
                "bad address '%s': expected a socket path, HOST:PORT, "
                "[IPV6]:PORT or zk://HOST:PORT[,...][/CHROOT]",
                s);
  a->kind = CT_ADDR_TCP;
  return 0;
}
