/*
 * c_test.h - what the C tests of csrc/ (engine_test.c, scope_test.c) share:
 * CHECK, and a GET request record set up as the binding would.
 */
#ifndef LP_C_TEST_H
#define LP_C_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lp_engine.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

/* a GET of base..path, not started */
static inline lp_req *make(const char *base, const char *path) {
  lp_req *r = lp_req_new(NULL, 0);
  CHECK(r);
  CHECK(asprintf(&r->opts.url, "%s%s", base, path) > 0);
  r->opts.method = strdup("GET");
  r->opts.user_agent = strdup("c_test");
  r->opts.max_body = 1 << 20;
  r->opts.connect_timeout_ms = 5000;
  return r;
}

#endif
