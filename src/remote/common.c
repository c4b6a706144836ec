/* SPDX-License-Identifier: MIT
 *
 * common.c -- the parts of the token server and client that are not about
 * either: byte buffers, address parsing, HMAC proofs, logging.
 *
 * Design notes:
 *  - All cryptography is libcrypto's: HMAC-SHA256 through HMAC(), nonces
 *    from RAND_bytes(), proofs compared with CRYPTO_memcmp() so the time
 *    taken does not tell how many leading bytes of a guess were right.
 *  - An empty host means loopback, never INADDR_ANY: binding every
 *    interface must be asked for in so many words ("0.0.0.0:PORT", "[::]")
 *    and then needs a secret (server.c enforces it).
 */
#include "net_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

int net_err_to_errno(unsigned code) {
  switch (code) {
  case NERR_VERSION:
    return -EPROTONOSUPPORT;
  case NERR_AUTH:
    return -EACCES;
  case NERR_PEER:
    return -EPERM;
  case NERR_NOT_FOUND:
    return -ENOENT;
  case NERR_BAD_HANDLE:
    return -EINVAL;
  case NERR_LIMIT:
    return -ENOSPC;
  case NERR_NO_MEMORY:
    return -ENOMEM;
  case NERR_TIMEOUT:
    return -ETIMEDOUT;
  case NERR_SHUTDOWN:
    return -ESHUTDOWN;
  default:
    return -EPROTO;
  }
}

/* ---- allocation (see net_internal.h) ---- */

/* Set only by tests, while nothing of src/remote is alive: plain globals. */
static net_alloc_fn alloc_fn;
static void *alloc_ud;

void net_set_allocator(net_alloc_fn fn, void *ud) {
  alloc_fn = fn;
  alloc_ud = ud;
}

void *net_realloc(void *p, size_t n) {
  if (n == 0)
    n = 1; /* a zero-size request is an allocation, not a free */
  return alloc_fn ? alloc_fn(alloc_ud, p, n) : realloc(p, n);
}

void *net_malloc(size_t n) { return net_realloc(NULL, n); }

void *net_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size)
    return NULL;
  void *p = net_malloc(n * size);
  if (p)
    memset(p, 0, n * size);
  return p;
}

void net_free(void *p) {
  if (!p)
    return;
  if (alloc_fn)
    alloc_fn(alloc_ud, p, 0);
  else
    free(p);
}

/* ---- buffers ---- */

int net_buf_reserve(struct net_buf *b, size_t extra) {
  if (b->off > 0 && b->off == b->len)
    b->off = b->len = 0;
  if (b->cap - b->len >= extra)
    return 0;
  if (b->off > 0) { /* compact before growing */
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->cap - b->len >= extra)
      return 0;
  }
  size_t want = b->len + extra, cap = b->cap ? b->cap : 256;
  while (cap < want) {
    if (cap > SIZE_MAX / 2)
      return -ENOMEM;
    cap *= 2;
  }
  uint8_t *p = net_realloc(b->data, cap);
  if (!p)
    return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int net_buf_append(struct net_buf *b, const void *p, size_t n) {
  int r = net_buf_reserve(b, n);
  if (r < 0)
    return r;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

uint8_t *net_buf_frame(struct net_buf *b, uint8_t type, size_t body_len) {
  if (net_buf_reserve(b, NET_HDR + 1 + body_len) < 0)
    return NULL;
  uint8_t *p = b->data + b->len;
  put_u32(p, (uint32_t)(1 + body_len));
  p[4] = type;
  b->len += NET_HDR + 1 + body_len;
  return p + NET_HDR + 1;
}

void net_buf_consume(struct net_buf *b, size_t n) {
  b->off += n;
  if (b->off == b->len)
    b->off = b->len = 0;
}

void net_buf_free(struct net_buf *b) {
  net_free(b->data);
  *b = (struct net_buf){0};
}

/* ---- addresses ---- */

static int parse_port(const char *s, uint16_t *port) {
  if (*s == '\0')
    return -EINVAL;
  unsigned long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return -EINVAL;
    v = v * 10 + (unsigned long)(*p - '0');
    if (v > 65535)
      return -EINVAL;
  }
  *port = (uint16_t)v;
  return 0;
}

int net_parse_address(const char *address, struct net_addr *a, int index,
                      char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  if (!address || !*address) {
    net_seterr(err, errlen, "empty address");
    return -EINVAL;
  }
  const char *colon = strrchr(address, ':');
  if (strchr(address, '/') || !colon) {
    size_t n = strlen(address);
    if (n >= sizeof a->path) {
      net_seterr(err, errlen, "socket path too long (%zu bytes, max %zu)", n,
                 sizeof a->path - 1);
      return -ENAMETOOLONG;
    }
    if (index > 0)
      return -ENOENT;
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, address, n + 1);
    memcpy(a->path, address, n + 1);
    a->family = AF_UNIX;
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
  }
  /* HOST:PORT or [V6]:PORT */
  char host[256];
  size_t hlen;
  const char *hstart = address;
  if (address[0] == '[') {
    const char *close = strchr(address, ']');
    if (!close || close[1] != ':') {
      net_seterr(err, errlen, "bad address '%s': expected [IPV6]:PORT",
                 address);
      return -EINVAL;
    }
    hstart = address + 1;
    hlen = (size_t)(close - hstart);
    colon = close + 1;
  } else {
    hlen = (size_t)(colon - address);
  }
  if (hlen >= sizeof host) {
    net_seterr(err, errlen, "host name too long");
    return -EINVAL;
  }
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';
  if (parse_port(colon + 1, &a->port) < 0) {
    net_seterr(err, errlen, "bad port in '%s' (expected 0..65535)", address);
    return -EINVAL;
  }
  memcpy(a->host, host, hlen + 1);
  if (hlen == 0) { /* '' means loopback, not every interface */
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
                           .ai_family = address[0] == '[' ? AF_INET6
                                                          : AF_UNSPEC};
  struct addrinfo *res = NULL;
  int gr = getaddrinfo(host, NULL, &hints, &res);
  if (gr != 0) {
    net_seterr(err, errlen, "cannot resolve '%s': %s", host,
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

/* ---- proofs ---- */

int net_proof(const void *secret, size_t secret_len, bool server,
              const uint8_t cnonce[NET_NONCE],
              const uint8_t snonce[NET_NONCE], uint8_t out[NET_PROOF]) {
  static const char client_label[] = "cancel-token v1 client";
  static const char server_label[] = "cancel-token v1 server";
  const char *label = server ? server_label : client_label;
  size_t llen = sizeof client_label - 1; /* both labels have this length */
  uint8_t msg[sizeof client_label - 1 + 2 * NET_NONCE];
  memcpy(msg, label, llen);
  memcpy(msg + llen, cnonce, NET_NONCE);
  memcpy(msg + llen + NET_NONCE, snonce, NET_NONCE);
  unsigned int outlen = 0;
  if (secret_len > INT32_MAX)
    return -EINVAL;
  if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, sizeof msg, out,
            &outlen) ||
      outlen != NET_PROOF)
    return -ENOMEM;
  return 0;
}

bool net_proof_equal(const uint8_t a[NET_PROOF], const uint8_t b[NET_PROOF]) {
  return CRYPTO_memcmp(a, b, NET_PROOF) == 0;
}

int net_random(uint8_t *p, size_t n) {
  return RAND_bytes(p, (int)n) == 1 ? 0 : -EIO;
}

/* ---- misc ---- */

int net_check_name(const char *name, size_t *len) {
  size_t n = strlen(name);
  *len = n;
  if (n == 0 || !net_utf8_valid((const uint8_t *)name, n))
    return -EINVAL;
  return n > CT_NET_NAME_MAX ? -ENAMETOOLONG : 0;
}

bool net_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (c == 0)
        return false; /* names are C strings */
      i++;
      continue;
    }
    size_t k;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0)
      k = 1, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
      k = 2, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
      k = 3, cp = c & 0x07;
    else
      return false;
    if (n - i <= k) /* truncated sequence */
      return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
        (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += k + 1;
  }
  return true;
}

size_t net_utf8_cut(const char *s, size_t n, size_t max) {
  if (n <= max)
    return n;
  size_t i = max;
  while (i > 0 && ((uint8_t)s[i] & 0xc0) == 0x80)
    i--; /* s[i] would be a continuation byte: back up to a lead byte */
  return i;
}

void net_log(ct_net_log_fn fn, void *arg, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (fn)
    fn(arg, msg);
  else
    fprintf(stderr, "cancel-token: %s\n", msg);
}

void net_seterr(char *buf, size_t len, const char *fmt, ...) {
  if (!buf || len == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

int net_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return -errno;
  return 0;
}

int net_poll_ms(int64_t deadline) {
  if (deadline == CT_FOREVER)
    return -1;
  int64_t left = deadline - ct_now();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000;
  return ms > 3600000 ? 3600000 : (int)ms;
}
