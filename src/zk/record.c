/* SPDX-License-Identifier: MIT
 *
 * record.c -- what the backend stores in ZooKeeper nodes, and the checks
 * on what users give it: token paths and credentials.
 *
 * Design notes:
 *
 *  Node data is text, one "key=value" line per field after a first line
 *  that names the format and its version ("ct-token/1", "ct-owner/1",
 *  "ct-trigger/1"), so an operator can read it with zkCli.sh and a later
 *  version can add fields.  The one field that may hold any UTF-8 (a
 *  token name, which may contain newlines) comes last and runs to the end
 *  of the data.  Single-line fields (host, origin) have control characters
 *  replaced by '?'.
 *
 *  A node without our first line is "not a token" (-EPROTO): a path that
 *  happens to exist in the ensemble is never taken for one.
 */
#include "zk_internal.h"
#include "../remote/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The characters ZooKeeper refuses in a path.  The server checks each
 * UTF-16 code unit of the path (its PathUtils.validatePath) and refuses
 * NUL, U+0001..U+001F, U+007F..U+009F, U+D800..U+F8FF and U+FFF0..U+FFFF;
 * a character outside the BMP is a pair of surrogates (U+D800..U+DFFF),
 * so every such character is refused too.  Checked here so that a name
 * the server would refuse is -EINVAL before anything is sent. */
static bool zk_cp_ok(uint32_t cp) {
  return !(cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
           (cp >= 0xd800 && cp <= 0xf8ff) || cp >= 0xfff0);
}

int zk_path_check(const char *s, size_t n, bool token) {
  if (!ct_text_utf8_valid((const uint8_t *)s, n))
    return -EINVAL;
  for (size_t i = 0; i < n;) {
    unsigned char b = (unsigned char)s[i];
    uint32_t cp;
    size_t len = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
    if (len == 1)
      cp = b;
    else if (len == 2)
      cp = (uint32_t)(b & 0x1f) << 6 | ((unsigned char)s[i + 1] & 0x3f);
    else if (len == 3)
      cp = (uint32_t)(b & 0x0f) << 12 |
           (uint32_t)((unsigned char)s[i + 1] & 0x3f) << 6 |
           ((unsigned char)s[i + 2] & 0x3f);
    else
      cp = 0x10000; /* outside the BMP: refused, whatever it is */
    if (!zk_cp_ok(cp))
      return -EINVAL;
    i += len;
  }
  const char *p = s, *end = s + n;
  while (p < end) {
    const char *e = memchr(p, '/', (size_t)(end - p));
    size_t cn = e ? (size_t)(e - p) : (size_t)(end - p);
    if (token && cn > 255)
      return -ENAMETOOLONG;
    if (cn == 0 || (cn == 1 && p[0] == '.') ||
        (cn == 2 && p[0] == '.' && p[1] == '.') || (token && p[0] == '@'))
      return -EINVAL;
    p += cn;
    if (p < end) { /* at a '/' */
      p++;
      if (p == end)
        return -EINVAL; /* trailing '/' */
    }
  }
  return 0;
}

int zk_name_check(const char *name, const char **norm) {
  if (!name)
    return -EINVAL;
  while (*name == '/')
    name++;
  size_t n = strlen(name);
  if (n == 0)
    return -EINVAL;
  if (n > CT_ZK_NAME_MAX)
    return -ENAMETOOLONG;
  int rc = zk_path_check(name, n, true);
  if (rc < 0)
    return rc;
  *norm = name;
  return 0;
}

/* Copy src into dst[cap], cut on a UTF-8 boundary, control characters
 * (single-line fields) replaced by '?'. */
void zk_copy_cut(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
      n--;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char b = (unsigned char)src[i];
    dst[i] = (b < 0x20 || b == 0x7f) ? '?' : (char)b;
  }
  dst[n] = '\0';
}

/* Cut a name field (may hold any UTF-8 but NUL) at a UTF-8 boundary. */
static void copy_name(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
      n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

int zk_trig_encode(const struct zk_trig *t, char *buf, size_t len) {
  int n = snprintf(buf, len,
                   "ct-trigger/1\nreason=%d\ndetail=%d\npid=%lld\nhost=%s\n"
                   "origin=%s\nnonce=%016llx\ncause=%s",
                   t->reason, t->detail, t->pid, t->host, t->origin,
                   (unsigned long long)t->nonce, t->cause);
  if (n < 0 || (size_t)n >= len)
    return -ENAMETOOLONG;
  return n;
}

/* The value of "key=" on a line of buf[0..len), or NULL. */
static const char *field(const char *buf, int len, const char *key,
                         size_t *vlen, bool to_end) {
  size_t kl = strlen(key);
  const char *end = buf + len;
  const char *p = buf;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    if ((size_t)(le - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
      const char *v = p + kl + 1;
      *vlen = (size_t)((to_end ? end : le) - v);
      return v;
    }
    p = nl ? nl + 1 : end;
  }
  return NULL;
}

static long long num(const char *buf, int len, const char *key, int base) {
  size_t vl;
  const char *v = field(buf, len, key, &vl, false);
  if (!v || vl == 0 || vl > 20)
    return -1;
  char tmp[24];
  memcpy(tmp, v, vl);
  tmp[vl] = '\0';
  char *e;
  long long x = (long long)strtoull(tmp, &e, base);
  return *e ? -1 : x;
}

int zk_trig_parse(struct zk_trig *t, const char *buf, int len) {
  memset(t, 0, sizeof *t);
  if (len < 13 || memcmp(buf, "ct-trigger/1\n", 13) != 0)
    return -EPROTO;
  long long r = num(buf, len, "reason", 10), d = num(buf, len, "detail", 10);
  if (r < 1 || r > 255 || d < 0 || d > 255)
    return -EPROTO;
  t->reason = (int)r;
  t->detail = (int)d;
  t->pid = num(buf, len, "pid", 10);
  size_t vl;
  const char *v = field(buf, len, "nonce", &vl, false);
  if (v && vl == 16) {
    char tmp[17];
    memcpy(tmp, v, 16);
    tmp[16] = '\0';
    t->nonce = strtoull(tmp, NULL, 16);
  }
  if ((v = field(buf, len, "host", &vl, false)))
    copy_name(t->host, sizeof t->host, v, vl);
  if ((v = field(buf, len, "origin", &vl, false)))
    copy_name(t->origin, sizeof t->origin, v, vl);
  if ((v = field(buf, len, "cause", &vl, true)))
    copy_name(t->cause, sizeof t->cause, v, vl);
  return 0;
}

int zk_token_encode(const char *tok_name, char *buf, size_t len) {
  int n = snprintf(buf, len, "ct-token/1\nname=%s", tok_name);
  if (n < 0 || (size_t)n >= len)
    return -ENAMETOOLONG;
  return n;
}

int zk_token_parse(const char *buf, int len, char *name, size_t nlen) {
  if (len < 11 || memcmp(buf, "ct-token/1\n", 11) != 0)
    return -EPROTO;
  size_t vl;
  const char *v = field(buf, len, "name", &vl, true);
  if (!v || vl == 0)
    return -EPROTO;
  copy_name(name, nlen, v, vl);
  return 0;
}

int zk_owner_encode(struct ct_zk_client *c, char *buf, size_t len) {
  int n = snprintf(buf, len, "ct-owner/1\npid=%lld\nhost=%s\norigin=%s\n",
                   c->pid, c->host, c->origin);
  if (n < 0 || (size_t)n >= len)
    return -ENAMETOOLONG;
  return n;
}

void zk_owner_parse(const char *buf, int len, char *host, size_t hlen,
                    long long *pid) {
  host[0] = '\0';
  *pid = -1;
  if (len < 11 || memcmp(buf, "ct-owner/1\n", 11) != 0)
    return;
  *pid = num(buf, len, "pid", 10);
  size_t vl;
  const char *v = field(buf, len, "host", &vl, false);
  if (v)
    copy_name(host, hlen, v, vl);
}

uint64_t zk_nonce(void) {
  uint64_t x = 0;
  if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) {
    /* No entropy source: pid and time still tell this attempt from every
     * other one in practice. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_sec * 1000000007u ^
        (uint64_t)ts.tv_nsec;
  }
  return x ? x : 1;
}

static int auth_check(const char *s, size_t n, char *err, size_t errlen,
                      const char *from) {
  const char *colon = memchr(s, ':', n);
  if (n == 0 || !colon || colon == s || memchr(s, '\0', n)) {
    snprintf(err, errlen,
             "credentials from %s are not \"user:password\"", from);
    return -EPROTO;
  }
  return 0;
}

int zk_auth_load(const ct_zk_options *o, char **out, char *err,
                 size_t errlen) {
  *out = NULL;
  if (o->auth) {
    int rc = auth_check(o->auth, strlen(o->auth), err, errlen,
                        "the program");
    if (rc < 0)
      return rc;
    if (strchr(o->auth, '\n')) {
      snprintf(err, errlen, "credentials hold a newline");
      return -EPROTO;
    }
    *out = strdup(o->auth);
    return *out ? 0 : -ENOMEM;
  }
  const char *file = o->auth_file;
  if (!file && !o->no_auth_env) {
    const char *f = getenv(CT_ZK_AUTH_FILE_ENV);
    if (f && *f)
      file = f;
    else {
      const char *v = getenv(CT_ZK_AUTH_ENV);
      if (v && *v) {
        int rc = auth_check(v, strlen(v), err, errlen, "$" CT_ZK_AUTH_ENV);
        if (rc < 0)
          return rc;
        if (strchr(v, '\n')) { /* as from the program or a file */
          snprintf(err, errlen, "credentials from $" CT_ZK_AUTH_ENV
                                " hold a newline");
          return -EPROTO;
        }
        *out = strdup(v);
        return *out ? 0 : -ENOMEM;
      }
      return 0;
    }
  }
  if (!file)
    return 0;
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open credentials file %s: %s", file,
             strerror(e));
    return e == ENOENT ? -ENOENT : -EACCES;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
    close(fd);
    snprintf(err, errlen,
             "credentials file %s must be a regular file not readable by "
             "group or others (chmod 600)", file);
    return -EACCES;
  }
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) {
    snprintf(err, errlen, "cannot read credentials file %s", file);
    return -EACCES;
  }
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  buf[n] = '\0';
  int rc = auth_check(buf, (size_t)n, err, errlen, file);
  if (rc == 0 && memchr(buf, '\n', (size_t)n)) {
    snprintf(err, errlen, "credentials file %s has more than one line", file);
    rc = -EPROTO;
  }
  if (rc < 0) {
    memset(buf, 0, sizeof buf);
    return rc;
  }
  *out = strdup(buf);
  memset(buf, 0, sizeof buf);
  return *out ? 0 : -ENOMEM;
}
