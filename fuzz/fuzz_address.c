/* SPDX-License-Identifier: MIT
 *
 * fuzz_address.c -- the one address parser (src/remote/address.c,
 * ct_addr_parse()), fed arbitrary strings.  Checked, beyond no crash, leak
 * or undefined behaviour:
 *  - the result is 0, -EINVAL or -ENAMETOOLONG, and the error message is
 *    NUL-terminated and non-empty on failure (a clear error);
 *  - a parsed address obeys address.h's rules (kind, lengths, ports, a
 *    zk chroot without empty, "." or ".." parts, no '/' or ',' in a host);
 *  - written back in its canonical form and parsed again, it gives the
 *    same address (so the parser and its rules agree with each other);
 *  - ct_addr_is_zk() agrees with the kind.
 * The address is the whole input (up to 4 KiB), NUL-terminated here; an
 * input with a NUL byte is cut there, as a C string would be.
 */
#include "address.h"

#include "fuzz_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK FUZZ_CHECK

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_host(const char *h) {
  for (const char *p = h; *p; p++)
    CHECK((unsigned char)*p > ' ' && *p != ',' && *p != '/' && *p != 0x7f);
}

/* The canonical form of a parsed address. */
static void format(const struct ct_addr *a, char *buf, size_t len) {
  switch (a->kind) {
  case CT_ADDR_UNIX:
    snprintf(buf, len, "%s", a->path);
    break;
  case CT_ADDR_TCP:
    snprintf(buf, len, a->v6 ? "[%s]:%u" : "%s:%u", a->host,
             (unsigned)a->port);
    break;
  default:
    snprintf(buf, len, "zk://%s%s", a->zk_hosts, a->zk_chroot);
  }
}

static void check_valid(const struct ct_addr *a, const char *in) {
  switch (a->kind) {
  case CT_ADDR_UNIX:
    CHECK(a->path[0] != '\0' && strlen(a->path) <= CT_ADDR_PATH_MAX);
    CHECK(strcmp(a->path, in) == 0);
    CHECK(strchr(in, '/') || !strchr(in, ':'));
    CHECK(!ct_addr_is_zk(in));
    break;
  case CT_ADDR_TCP:
    CHECK(strlen(a->host) <= CT_ADDR_HOST_MAX);
    CHECK(!strchr(in, '/'));
    check_host(a->host);
    CHECK(a->v6 == (strchr(a->host, ':') != NULL));
    CHECK(!ct_addr_is_zk(in));
    break;
  case CT_ADDR_ZK:
    CHECK(ct_addr_is_zk(in));
    CHECK(a->zk_count >= 1);
    CHECK(a->zk_hosts[0] != '\0');
    CHECK(strlen(a->zk_hosts) <= CT_ADDR_ZK_HOSTS_MAX);
    CHECK(strlen(a->zk_chroot) <= CT_ADDR_CHROOT_MAX);
    if (a->zk_chroot[0]) {
      size_t n = strlen(a->zk_chroot);
      CHECK(a->zk_chroot[0] == '/' && n > 1 && a->zk_chroot[n - 1] != '/');
      CHECK(!strstr(a->zk_chroot, "//"));
      CHECK(!strstr(a->zk_chroot, "/./") && !strstr(a->zk_chroot, "/../"));
      CHECK(strcmp(a->zk_chroot + n - 2, "/.") != 0);
      CHECK(n < 3 || strcmp(a->zk_chroot + n - 3, "/..") != 0);
    }
    {
      unsigned commas = 0;
      for (const char *p = a->zk_hosts; *p; p++)
        commas += *p == ',';
      CHECK(commas + 1 == a->zk_count);
    }
    break;
  default:
    CHECK(!"a kind");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char in[4097];
  if (size > 4096)
    size = 4096;
  memcpy(in, data, size);
  in[size] = '\0';
  struct ct_addr a;
  char err[256];
  memset(err, 'x', sizeof err);
  int rc = ct_addr_parse(&a, in, err, sizeof err);
  CHECK(memchr(err, '\0', sizeof err) != NULL);
  if (rc < 0) {
    CHECK(rc == -EINVAL || rc == -ENAMETOOLONG);
    CHECK(err[0] != '\0');
    return 0;
  }
  CHECK(rc == 0);
  check_valid(&a, in);
  /* the canonical form parses to the same address */
  static char canon[2 * 4096];
  format(&a, canon, sizeof canon);
  struct ct_addr b;
  CHECK(ct_addr_parse(&b, canon, NULL, 0) == 0);
  CHECK(b.kind == a.kind && b.port == a.port && b.v6 == a.v6 &&
        b.zk_count == a.zk_count);
  CHECK(strcmp(b.path, a.path) == 0 && strcmp(b.host, a.host) == 0);
  CHECK(strcmp(b.zk_hosts, a.zk_hosts) == 0 &&
        strcmp(b.zk_chroot, a.zk_chroot) == 0);
  /* NULL arguments are errors, not crashes */
  CHECK(ct_addr_parse(NULL, in, NULL, 0) == -EINVAL);
  CHECK(ct_addr_parse(&b, NULL, err, sizeof err) == -EINVAL);
  return 0;
}
