/*
 * lp_scope.h - cancel scopes (Go's context): a tree of scopes, each with the
 * requests started under it; ending a scope ends its requests and child
 * scopes at once, with one reason (canceled, or timeout at its deadline).
 * Nothing here knows Lua.
 *
 * Lifetime: a scope is reference counted. Its creator holds one reference;
 * each child scope holds one on its parent, and each request that runs under
 * it (lp_req.scope) holds one until the request is freed. A scope holds its
 * unfinished requests (a reference each, dropped when they finish) but not
 * its children, nor does the list of deadlines hold it: a scope nobody holds
 * any more is freed, and leaves its parent and the deadlines then.
 *
 * Threads: every function may be called from any thread; none blocks on the
 * network or the worker (lp_scope_wait blocks by request).
 */
#ifndef LP_SCOPE_H
#define LP_SCOPE_H

#include "lp_engine.h"

/* a new, active scope with one reference, under `parent` (NULL: a root);
   its deadline is `timeout` seconds from now (<= 0 or NaN: none), or the
   parent's when that comes first. A child of an ended parent starts ended,
   for the parent's reason. The process's worker fires the deadline. NULL
   when out of memory */
lp_scope *lp_scope_new(lp_scope *parent, double timeout);
void lp_scope_retain(lp_scope *s);
void lp_scope_release(lp_scope *s);

/* end the scope, its requests and its children, as canceled; 1 when this
   call ended it (0: it had ended). Never blocks on the network. */
int lp_scope_cancel(lp_scope *s);
/* LP_OK while active, else why it ended: LP_ECANCELED or LP_ETIMEOUT. A
   scope whose deadline passed ends here if the worker did not end it yet */
lp_kind lp_scope_err(lp_scope *s);
/* what ended it, for messages: "context canceled", "context deadline
   exceeded" (Go's words), by its lp_scope_err */
const char *lp_scope_why(lp_kind why);
/* block until the scope ended or `seconds` passed (as lp_req_wait); 1 when
   it ended */
int lp_scope_wait(lp_scope *s, double seconds);
/* an eventfd that becomes readable when the scope ends; -1 on error */
int lp_scope_fd(lp_scope *s);
/* the deadline on lp_clock()'s clock, or 0 when it has none */
double lp_scope_deadline(const lp_scope *s);
/* how many unfinished requests run directly under it */
size_t lp_scope_count(lp_scope *s);

/* put READY request r (in no scope yet) under s: r holds a share of s from
   now on. If s has ended, r ends at once, for s's reason; 1 when r joined */
int lp_scope_add(lp_scope *s, lp_req *r);

/* an id for s that any thread (any Lua state) can turn back into the scope
   with lp_scope_find while s lives; the same id on every call */
unsigned long long lp_scope_share(lp_scope *s);
/* the shared scope with that id, with a new reference; NULL when it was freed */
lp_scope *lp_scope_find(unsigned long long id);

/* for the engine: r is finishing, it leaves its scope (no lock held) */
void lp_scope_leave(lp_req *r);
/* for the worker: the earliest deadline of any scope, or -1 */
double lp_scope_next_deadline(void);
/* for the worker: end every scope whose deadline is <= now, as timeout */
void lp_scope_expire(double now);

#endif
