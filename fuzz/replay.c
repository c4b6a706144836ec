/* SPDX-License-Identifier: MIT
 *
 * replay.c -- a main() for the harnesses without libFuzzer, so that any
 * compiler (gcc included) and any build (plain, ASan, TSan, valgrind) can
 * run the seed corpora and the regression inputs as ordinary tests:
 *   fuzz_server_replay DIR_OR_FILE...
 * Each file is one input; every directory is read (not recursively).
 * Exits non-zero if an argument cannot be read; a failing input aborts.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  int runs = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) < 0) {
      fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (run_file(argv[i]) < 0)
        return 2;
      runs++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d)
      return 2;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.')
        continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
      if (run_file(p) < 0) {
        closedir(d);
        return 2;
      }
      runs++;
    }
    closedir(d);
  }
  printf("replayed %d input(s): no failure\n", runs);
  return 0;
}
