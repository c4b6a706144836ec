/* SPDX-License-Identifier: MIT */
/* epoll_client.c -- the other half of the epoll_server example, and its
 * test: start the server, talk to it on 127.0.0.1 from two connections,
 * press its Ctrl-C (kill(pid, SIGINT)) and check that it shuts down
 * cleanly.  Each step waits for the line the server prints about the step
 * before, so the combined output is always the same.  Waits have a
 * deadline, through ct_wait_fd() and ct_process_wait(), so a broken server
 * fails the test instead of hanging it.
 *
 *   epoll_client [path-to-epoll_server]
 *
 * Output:
 *   server: listening on 127.0.0.1:PORT
 *   client: connection A echoed "hello"
 *   server: connection 1 accepted
 *   client: connection B echoed "epoll"
 *   server: connection 2 accepted
 *   client: closed connection A
 *   server: closed connection 1 after 6 bytes
 *   client: sent SIGINT to the server
 *   client: connection B closed by the server
 *   server: shutdown: Cancellation requested by shutdown token (signal 2)
 *   server: closing connection 2 after 6 bytes
 *   server: echoed 12 bytes over 2 connections
 *   client: server exited with status 0
 */
#define _GNU_SOURCE

#include <canceltoken_os.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef EPOLL_SERVER
#define EPOLL_SERVER "./epoll_server"
#endif

#define SECONDS(n) ((int64_t)(n) * 1000000000)

static ct_token *never; /* the waits below end by deadline, not by token */

static _Noreturn void fail(const char *what, int err) {
  fprintf(stderr, "epoll_client: %s: %s\n", what, ct_strerror(err));
  exit(EXIT_FAILURE);
}

/* Read a line (without '\n') from fd, waiting at most 10 s for each byte.
 * Returns its length, 0 at end of file. */
static size_t read_line(int fd, char *buf, size_t size) {
  size_t n = 0;
  for (;;) {
    char ch;
    int rc = ct_wait_fd(never, fd, POLLIN, ct_deadline_after(SECONDS(10)));
    if (rc < 0)
      fail("waiting for a line", rc);
    ssize_t r = read(fd, &ch, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      fail("read", -errno);
    if (r == 0 || ch == '\n')
      break;
    if (n + 1 >= size)
      fail("read_line", -EOVERFLOW);
    buf[n++] = ch;
  }
  buf[n] = '\0';
  return n;
}

/* Relay the server's next line, with "server: " in front. */
static void relay(int out) {
  char line[256];
  if (read_line(out, line, sizeof line) == 0)
    fail("the server's output ended early", -EPROTO);
  printf("server: %s\n", line);
}

static int connect_to(int port) {
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail("socket", -errno);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
    fail("connect", -errno);
  return fd;
}

/* Send "word\n" and expect it back. */
static void echo(int fd, const char *name, const char *word) {
  char sent[64], got[64];
  snprintf(sent, sizeof sent, "%s\n", word);
  if (write(fd, sent, strlen(sent)) != (ssize_t)strlen(sent))
    fail("write", -errno);
  if (read_line(fd, got, sizeof got) == 0 || strcmp(got, word) != 0)
    fail("echo", -EPROTO);
  printf("client: connection %s echoed \"%s\"\n", name, got);
}

int main(int argc, char **argv) {
  char *server_argv[] = {argc > 1 ? argv[1] : EPOLL_SERVER, NULL};
  posix_spawn_file_actions_t fa;
  char line[256];
  int pipefd[2], port, rc;
  pid_t pid;

  if ((rc = ct_token_new(&never, "never")) < 0)
    fail("ct_token_new", rc);

  /* Start the server with its standard output on a pipe to us. */
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    fail("pipe", -errno);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
  rc = posix_spawn(&pid, server_argv[0], &fa, NULL, server_argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    fail(server_argv[0], -rc);
  close(pipefd[1]);
  int out = pipefd[0];

  /* "listening on 127.0.0.1:<port>" */
  if (read_line(out, line, sizeof line) == 0 ||
      sscanf(line, "listening on 127.0.0.1:%d", &port) != 1)
    fail("the server did not say where it listens", -EPROTO);
  printf("server: listening on 127.0.0.1:PORT\n");

  int a = connect_to(port);
  echo(a, "A", "hello");
  relay(out); /* connection 1 accepted */
  int b = connect_to(port);
  echo(b, "B", "epoll");
  relay(out); /* connection 2 accepted */
  close(a);
  printf("client: closed connection A\n");
  relay(out); /* closed connection 1 */

  /* Ctrl-C: the server's shutdown token is triggered. */
  if (kill(pid, SIGINT) != 0)
    fail("kill", -errno);
  printf("client: sent SIGINT to the server\n");
  if (read_line(b, line, sizeof line) != 0)
    fail("connection B: expected the end of the stream", -EPROTO);
  printf("client: connection B closed by the server\n");
  close(b);
  while (read_line(out, line, sizeof line) > 0)
    printf("server: %s\n", line);
  close(out);

  int status = ct_process_wait(never, pid, ct_deadline_after(SECONDS(10)));
  if (status < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail("waiting for the server", status);
  }
  if (WIFEXITED(status))
    printf("client: server exited with status %d\n", WEXITSTATUS(status));
  else
    printf("client: server killed by signal %d\n", WTERMSIG(status));
  ct_token_unref(never);
  if (fflush(stdout) != 0)
    return EXIT_FAILURE;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? EXIT_SUCCESS
                                                       : EXIT_FAILURE;
}
