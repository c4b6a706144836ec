/* SPDX-License-Identifier: MIT
 *
 * query.c -- reading tokens without holding them: the state of one token
 * (ct_zk_status_get) and of every token under the chroot (ct_zk_list), for
 * `cancel-token status` and monitoring.  Each read goes to the ensemble
 * afresh; nothing here arms a watch or touches a proxy.
 */
#include "zk_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ct_zk_status_get(ct_zk_client *c, const char *name, ct_zk_status *st,
                     int64_t deadline) {
  int rc = zk_common_checks(c, deadline);
  if (rc < 0)
    return rc;
  if (!st)
    return -EINVAL;
  memset(st, 0, sizeof *st);
  st->pid = st->owner_pid = -1;
  const char *norm;
  if ((rc = zk_name_check(name, &norm)) < 0)
    return rc;
  char *path = zk_cat(c->addr.zk_chroot, "/", norm);
  char *opath = path ? zk_cat(path, ZK_OWNER_CHILD, "") : NULL;
  char *tpath = path ? zk_cat(path, ZK_TRIGGER_CHILD, "") : NULL;
  struct zk_result *r = malloc(sizeof *r);
  struct zk_trig *t = malloc(sizeof *t);
  char *tmp = malloc(CT_ZK_NAME_MAX + 1);
  if (!path || !opath || !tpath || !r || !t || !tmp) {
    rc = -ENOMEM;
    goto out;
  }
  rc = zk_get_retry(c, path, r, deadline);
  if (rc == 0 && r->zrc != ZOK)
    rc = zk_errno(r->zrc);
  if (rc == 0)
    rc = zk_token_parse(r->data, r->len, tmp, CT_ZK_NAME_MAX + 1);
  if (rc == 0)
    rc = zk_get_retry(c, opath, r, deadline);
  if (rc == 0 && r->zrc == ZOK) {
    st->owned = true;
    zk_owner_parse(r->data, r->len, st->owner_host, sizeof st->owner_host,
                   &st->owner_pid);
  } else if (rc == 0 && r->zrc != ZNONODE) {
    rc = zk_errno(r->zrc);
  }
  if (rc == 0)
    rc = zk_get_retry(c, tpath, r, deadline);
  if (rc == 0 && r->zrc == ZOK) {
    rc = zk_trig_parse(t, r->data, r->len);
    if (rc == 0) {
      st->triggered = true;
      st->reason = (ct_reason)t->reason;
      st->detail = t->detail;
      st->pid = t->pid;
      memcpy(st->host, t->host, sizeof st->host);
      memcpy(st->origin, t->origin, sizeof st->origin);
      memcpy(st->cause, t->cause, sizeof st->cause);
    }
  } else if (rc == 0 && r->zrc != ZNONODE) {
    rc = zk_errno(r->zrc);
  }
out:
  free(path);
  free(opath);
  free(tpath);
  free(r);
  free(t);
  free(tmp);
  return rc;
}

/* Depth-first walk of the chroot: every node is visited once (a token may
 * have tokens below it, "a" and "a/b"); children named '@...' are a
 * token's own, and /zookeeper is the ensemble's.
 *
 * One foreign node must not hide the others.  A node that is not a token
 * (a plain parent such as "jobs", or somebody else's data) is passed
 * over silently, its children still visited.  A node no token can be
 * (a name our checks refuse: no token is below it either) and a node
 * that cannot be read (-EACCES, another ACL) are skipped with their
 * subtree and reported in one log line each.  Only what stops the walk
 * as a whole fails the call: time, the connection, memory, the size
 * limit, or the chroot itself unreadable. */
#define LIST_MAX_NODES 100000

int ct_zk_list(ct_zk_client *c, ct_zk_list_fn fn, void *arg,
               int64_t deadline) {
  int rc = zk_common_checks(c, deadline);
  if (rc < 0)
    return rc;
  if (!fn)
    return -EINVAL;
  struct zk_result *r = malloc(sizeof *r);
  ct_zk_status *st = malloc(sizeof *st);
  char **stack = malloc(LIST_MAX_NODES * sizeof *stack);
  size_t top = 0, visited = 0;
  int count = 0;
  if (!r || !st || !stack || !(stack[top++] = strdup(""))) {
    rc = -ENOMEM;
    goto out;
  }
  rc = 0;
  while (top > 0 && rc == 0) {
    char *name = stack[--top]; /* "" (the chroot) or "a/b" */
    char *path = *name ? zk_cat(c->addr.zk_chroot, "/", name)
                       : strdup(*c->addr.zk_chroot ? c->addr.zk_chroot : "/");
    if (!path) {
      free(name);
      rc = -ENOMEM;
      break;
    }
    bool skip = false;
    if (*name) {
      int s = ct_zk_status_get(c, name, st, deadline);
      if (s == 0) {
        fn(arg, name, st);
        count++;
      } else if (s == -EACCES) {
        zk_log(c, "list: skipped '%s' and what is below it: not readable "
                  "with this client's credentials", name);
        skip = true;
      } else if (s != -EPROTO && s != -ENOENT) {
        rc = s;
      }
    }
    if (rc == 0 && !skip) {
      int s = zk_op_children(c, path, r, deadline);
      while (s == -ECONNRESET || (s == 0 && zk_retryable(r->zrc))) {
        free(r->kids);
        if ((s = zk_retry_wait(c, deadline)) < 0)
          break;
        s = zk_op_children(c, path, r, deadline);
      }
      if (s < 0)
        rc = s;
      else if (r->zrc == ZOK && r->nkids < 0)
        rc = -ENOMEM;
      else if (r->zrc == ZOK) {
        const char *k = r->kids;
        for (int i = 0; i < r->nkids && rc == 0; i++, k += strlen(k) + 1) {
          if (k[0] == '@' || (!*name && !*c->addr.zk_chroot &&
                              strcmp(k, "zookeeper") == 0))
            continue;
          if (++visited >= LIST_MAX_NODES || top >= LIST_MAX_NODES) {
            rc = -ENOSPC;
            break;
          }
          char *child = *name ? zk_cat(name, "/", k) : strdup(k);
          const char *norm;
          if (!child) {
            rc = -ENOMEM;
          } else if (zk_name_check(child, &norm) < 0) {
            /* Not a name a token can have (too long, a character
             * ZooKeeper allows and we do not): no token here or below. */
            zk_log(c, "list: skipped a node under '%s' and what is below "
                      "it: its name is not a token name", *name ? name : "/");
            free(child);
          } else {
            stack[top++] = child;
          }
        }
      } else if (r->zrc == ZNOAUTH && *name) {
        zk_log(c, "list: skipped what is below '%s': not readable with "
                  "this client's credentials", name);
      } else if (r->zrc != ZNONODE) {
        rc = zk_errno(r->zrc);
      }
      free(r->kids);
    }
    free(path);
    free(name);
  }
out:
  while (stack && top > 0)
    free(stack[--top]);
  free(stack);
  free(st);
  free(r);
  return rc < 0 ? rc : count;
}
