/*
 * longpoll.c - the Lua binding: turns lp_req records into `longpoll.request`
 * objects and their results into Lua values, and lp_scope scopes into
 * `longpoll.context` objects (cancel scopes, near the end). Only this file
 * knows Lua.
 *
 * Lifetime. Each luaopen makes a context (a userdata): this state's share of
 * the process-wide engine, the JSON codec (encode, decode, null) in its user
 * values, and the list of its requests that were not finalized yet. Module
 * functions get the context as upvalue 1; each request holds its own context
 * (a pointer, and a user value that keeps it alive), so a request made before
 * the module was loaded again still starts on the engine it was made for.
 * Finalizers run newest first: at lua_close every request is finalized
 * (canceled, released) before its context drops the engine, and the last
 * share joins the worker before the package library unloads this file. A
 * request made by a finalizer during lua_close is never finalized itself:
 * its context's finalizer frees it; after that, request() raises.
 *
 * A request is two userdata: the object Lua sees (a box: a pointer, and user
 * values for its results and context) and a guard that holds the C state
 * (lreq) and has the finalizer. The guard refers to no Lua value, so when
 * an unreachable request is finalized only the guard is kept for the
 * finalizer: the results die with the box in the same collection, instead
 * of being resurrected with it (and, in Lua 5.4's generational mode,
 * promoted to the old generation for a major collection to free).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lp_compat.h"
#include "lp_engine.h"
#include "lp_scope.h"

#ifndef LP_VERSION
#define LP_VERSION "0.0.0"
#endif

#define LP_REQUEST "longpoll.request"
#define LP_GUARD "longpoll.request.guard"
#define LP_ERROR "longpoll.error"
#define LP_STATE "longpoll.state"     /* an lctx: this state's share of the engine */
#define LP_STATES "longpoll.states"   /* registry: how many lctx of the state live */
#define LP_DEFAULT_MAX_BODY (16 * 1024 * 1024)
#define LP_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define LP_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define LP_DEFAULT_MAX_QUEUED 1000
/* what a string body without a Content-Type is: RFC 9110 8.3's "no type" */
#define LP_DEFAULT_BODY_TYPE "Content-Type: application/octet-stream"
#define LP_JSON_BODY_TYPE "Content-Type: application/json"
#define LP_WAIT_ANY_MAX (1 << 20)      /* requests in one wait_any */
#define LP_URL_MEMO 4                  /* urls whose check is remembered */

enum { DECODE_AUTO, DECODE_JSON, DECODE_NONE };
/* the context's user values */
enum { UV_CODEC_ENCODE = 1, UV_CODEC_DECODE, UV_CODEC_NULL, UV_OPTION_SLOTS, UV_NCTX = UV_OPTION_SLOTS };
enum { UV_VALUE = 1, UV_SECOND, UV_CTX, UV_GUARD, UV_NREQ = UV_GUARD };  /* a request's */

typedef struct lreq lreq;

typedef struct lctx {
  lp_engine *engine;            /* NULL: not started, or finalized */
  int closed;                   /* the context was finalized */
  int h2c_reuse_broken;         /* libcurl < 8.0.0: curl/curl#10634 */
  lreq *live;                   /* requests not finalized yet */
  char *buf;                    /* scratch for URLs and header lines */
  size_t cap;
  struct lmemo {                /* urls libcurl's parser accepted lately */
    char *url;
    size_t len;
    int user;                   /* it has userinfo */
  } memo[LP_URL_MEMO];
  int memo_next;
} lctx;

struct lreq {                   /* the guard of a request: its C state */
  lp_req *r;                    /* NULL once finalized; linked in ctx->live while set */
  lctx *ctx;                    /* kept alive by the box's user value UV_CTX */
  lreq *prev, *next;
  int decode;
  lp_state settled;             /* state of the cached results, or LP_READY */
};

static const char *const state_names[] = {
  "ready", "running", "done", "failed", "canceled"
};

#define ctx_index lua_upvalueindex(1)       /* in module functions */
#define reqmt_index lua_upvalueindex(2)     /* the request metatable */
#define guardmt_index lua_upvalueindex(3)   /* the guard metatable */

static lctx *get_ctx(lua_State *L) {
  return (lctx *)lua_touserdata(L, ctx_index);
}

/* registry keys (their addresses) of what the binding reaches on every
   call: a pointer's lookup, not a name's */
enum { KEY_ERROR, KEY_CACHE, KEY_N };
static const char reg_keys[KEY_N];
#define reg_key(k) ((const void *)&reg_keys[k])

/* the request at i, or NULL; `mt` is the index of the request metatable
   (every function that takes a request has it as an upvalue) */
static lreq *test_request(lua_State *L, int i, int mt) {
  lreq **box = (lreq **)lua_touserdata(L, i);
  int same;
  if (!box || !lua_getmetatable(L, i)) return NULL;
  same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same ? *box : NULL;
}

#define mt_index lua_upvalueindex(1)   /* in methods and metamethods */

/* upvalue 2 of methods: what building results needs, at hand: the field
   names (interned once), the response metatable and the weak table of raw
   header blocks (see response_index) */
#define cache_index lua_upvalueindex(2)
enum {
  C_RESPONSE_MT = 1, C_HEADS, C_STATUS, C_BODY, C_URL, C_ELAPSED,
  C_RETRY_AFTER, C_N
};
static const char *const cache_strings[] = {  /* from C_STATUS on */
  "status", "body", "url", "elapsed", "retry_after"
};
_Static_assert(sizeof cache_strings / sizeof cache_strings[0] == C_N - C_STATUS,
               "one string per cached name");

/* t[name c] = v, raw, for the table at -2 and the value at -1 (pops it) */
static void set_cached(lua_State *L, int c) {
  lua_rawgeti(L, cache_index, c);
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

/* the request at i, or raise; for methods and metamethods */
static lreq *to_request(lua_State *L, int i) {
  lreq *q = test_request(L, i, mt_index);
  return q ? q : *(lreq **)luaL_checkudata(L, i, LP_REQUEST);
}

/* the request at i, not collected yet, or raise: the one checked accessor
   of methods (module functions use test_request(L, i, 0)) */
static lreq *check_request(lua_State *L, int i) {
  lreq *q = to_request(L, i);
  luaL_argcheck(L, q->r != NULL, i, "request already collected");
  return q;
}

static int out_of_memory(lua_State *L) {
  return luaL_error(L, "longpoll: out of memory");
}

static char *xstrdup(lua_State *L, const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (!p) out_of_memory(L);
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

/* room for `need` bytes in the context's scratch buffer; 0 when out of memory */
static int reserve(lctx *c, size_t need) {
  size_t cap = c->cap ? c->cap : 256;
  char *p;
  if (need <= c->cap) return 1;
  while (cap < need) cap *= 2;
  if (!(p = realloc(c->buf, cap))) return 0;
  c->buf = p;
  c->cap = cap;
  return 1;
}

/* append len bytes to the scratch buffer, which holds *n bytes */
static void add_bytes(lua_State *L, lctx *c, size_t *n, const char *s, size_t len) {
  if (!reserve(c, *n + len + 1)) out_of_memory(L);
  memcpy(c->buf + *n, s, len);
  *n += len;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- URLs and errors ---- */

/* push `url` fit to print: any userinfo redacted, "http://user:***@host/"
   (a user name alone, which may be a token, becomes "***"); every URL the
   module prints or returns goes through here */
static void push_url(lua_State *L, const char *url) {
  const char *a = strstr(url, "://"), *p, *at = NULL, *colon;
  a = a ? a + 3 : url;
  for (p = a; *p && *p != '/' && *p != '?' && *p != '#'; p++)
    if (*p == '@') at = p;      /* the last one: hide more rather than less */
  if (!at) {
    lua_pushstring(L, url);
    return;
  }
  colon = memchr(a, ':', (size_t)(at - a));
  lua_pushlstring(L, url, (size_t)((colon ? colon + 1 : a) - url));
  lua_pushliteral(L, "***");
  lua_pushstring(L, at);
  lua_concat(L, 3);
}

/* the one error constructor, behind core.error too: a table {kind, message,
   <fields>} with the error metatable, on top. message is "<kind>: <cause>",
   plus " (<METHOD> <url>)" when r is given; `fields` is the index of a table
   copied in (0: none) */
static void push_error(lua_State *L, lp_kind kind, const char *cause,
                       const lp_req *r, int fields) {
  const char *name = lp_kind_name(kind);
  lua_createtable(L, 0, 6);
  if (fields) {
    lua_pushnil(L);
    while (lua_next(L, fields)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  lua_pushstring(L, name);
  lua_setfield(L, -2, "kind");
  if (r) {
    lua_pushfstring(L, "%s: %s (%s ", name, cause, r->opts.method);
    push_url(L, r->opts.url);
    lua_pushliteral(L, ")");
    lua_concat(L, 3);
  } else {
    lua_pushfstring(L, "%s: %s", name, cause);
  }
  lua_setfield(L, -2, "message");
  lua_rawgetp(L, LUA_REGISTRYINDEX, reg_key(KEY_ERROR));
  lua_setmetatable(L, -2);
}

/* ---- options ---- */

/* the one list of request options: request_new accepts exactly these, and
   the module exports them as core.options for the Lua layer. While a request
   is made, option k's value sits in stack slot OPT_SLOT(k) */
enum {
  OPT_URL, OPT_METHOD, OPT_HEADERS, OPT_QUERY, OPT_BODY, OPT_TIMEOUT,
  OPT_CONNECT_TIMEOUT, OPT_MAX_BODY, OPT_DECODE, OPT_FOLLOW_REDIRECTS,
  OPT_VERIFY, OPT_CAINFO, OPT_USER_AGENT, OPT_HTTP_VERSION, OPT_AUTH,
  OPT_STREAM, OPT_MAX_MESSAGE, OPT_MAX_QUEUED, OPT_CONTEXT, OPT_N
};
static const char *const opt_names[] = {
  "url", "method", "headers", "query", "body", "timeout", "connect_timeout",
  "max_body", "decode", "follow_redirects", "verify", "cainfo", "user_agent",
  "http_version", "auth", "stream", "max_message", "max_queued", "context", NULL
};
_Static_assert(sizeof opt_names / sizeof opt_names[0] == OPT_N + 1,
               "one name per option");
_Static_assert(OPT_N <= 32, "a bit per option in lspec.present");
#define OPT_SLOT(k) (2 + (k))   /* the options table is at 1 */

/* a request's options, read and checked before anything is allocated; the
   strings point into Lua strings that stay on the stack until copied */
typedef struct lstr {
  const char *s;                /* NULL: absent */
  size_t len;
} lstr;

typedef struct lspec {
  unsigned present;             /* bit k: option k was given */
  lstr url, method, body, cainfo, user_agent, user, password;
  int headers;                  /* stack index of the headers table, 0: none */
  int has_ctype, has_authz, has_ua, json_body, decode, follow_redirects, verify, fresh_connect;
  long timeout_ms, connect_timeout_ms, http_version, httpauth;
  curl_off_t max_body;
  int stream;                   /* -1: the body whole, else an lp_stream_format */
  size_t max_message, max_queued;
  lp_scope *scope;              /* context: the scope it runs under, or NULL */
} lspec;

static int opt_error(lua_State *L, const char *name, const char *what) {
  return luaL_error(L, "longpoll.request: option '%s' %s", name, what);
}

/* raise naming `name` unless the value at `i` is of type `type` or nil;
   returns its type */
static int check_type(lua_State *L, int i, const char *name, int type) {
  int got = lua_type(L, i);
  if (got != LUA_TNIL && got != type) {
    lua_pushfstring(L, "must be a %s (got %s)", lua_typename(L, type),
                    luaL_typename(L, i));
    opt_error(L, name, lua_tostring(L, -1));
  }
  return got;
}

/* push t[key], raw (no __index may run while options are read); error
   naming `name` unless its type is `type` or nil; returns the type */
static int get_typed(lua_State *L, int t, const char *key, const char *name, int type) {
  lua_pushstring(L, key);
  lua_rawget(L, t);
  return check_type(L, -1, name, type);
}

/* the type of option k, checked to be `type` or nil (an option not given
   costs a bit test) */
static int opt_type(lua_State *L, const lspec *sp, int k, int type) {
  if (!(sp->present & (1u << k))) return LUA_TNIL;
  return check_type(L, OPT_SLOT(k), opt_names[k], type);
}

/* raise naming `name` when s holds a NUL byte (C would cut it there) */
static void check_nul(lua_State *L, const char *name, const char *s, size_t len) {
  if (memchr(s, '\0', len)) opt_error(L, name, "contains a NUL byte");
}

static int has_crlf(const char *s, size_t len) {
  return memchr(s, '\r', len) || memchr(s, '\n', len);
}

/* the value at `i` as a string without NUL bytes; {NULL} when nil */
static lstr to_string(lua_State *L, int i, const char *name) {
  lstr v = {NULL, 0};
  if (check_type(L, i, name, LUA_TSTRING) == LUA_TSTRING) {
    v.s = lua_tolstring(L, i, &v.len);
    check_nul(L, name, v.s, v.len);
  }
  return v;
}

/* push t[key] and read it as a string, as to_string. The value stays
   pushed: it keeps the string alive until it is copied */
static lstr get_string(lua_State *L, int t, const char *key, const char *name) {
  lua_pushstring(L, key);
  lua_rawget(L, t);
  return to_string(L, -1, name);
}

/* option k as a string (its slot keeps it alive) */
static lstr opt_string(lua_State *L, const lspec *sp, int k) {
  lstr none = {NULL, 0};
  if (!(sp->present & (1u << k))) return none;
  return to_string(L, OPT_SLOT(k), opt_names[k]);
}

/* the string at `i` as an index into `choices` (the first when nil) */
static int to_choice(lua_State *L, int i, const char *name,
                     const char *const choices[], const char *what) {
  lstr v = to_string(L, i, name);
  int k = 0;
  if (v.s) {
    for (; choices[k] && strcmp(choices[k], v.s) != 0; k++) {}
    if (!choices[k]) opt_error(L, name, what);
  }
  return k;
}

static int opt_bool(lua_State *L, const lspec *sp, int k, int def) {
  if (opt_type(L, sp, k, LUA_TBOOLEAN) == LUA_TBOOLEAN) return lua_toboolean(L, OPT_SLOT(k));
  return def;
}

/* option k, a string, as an index into `choices` (the first when absent) */
static int opt_choice(lua_State *L, const lspec *sp, int k,
                      const char *const choices[], const char *what) {
  if (!(sp->present & (1u << k))) return 0;
  return to_choice(L, OPT_SLOT(k), opt_names[k], choices, what);
}

/* option k, a duration in seconds, as milliseconds (rounded up), `def` when
   absent */
static long opt_seconds(lua_State *L, const lspec *sp, int k, long def) {
  if (opt_type(L, sp, k, LUA_TNUMBER) == LUA_TNUMBER) {
    lua_Number s = lua_tonumber(L, OPT_SLOT(k));
    if (!(s > 0 && s <= 86400.0 * 365))
      opt_error(L, opt_names[k], "must be a positive number of seconds");
    return (long)ceil(s * 1000.0);
  }
  return def;
}

/* option k, a positive integer, as a size, `def` when absent; *given says
   if it was */
static size_t opt_size(lua_State *L, const lspec *sp, int k, size_t def, int *given) {
  *given = opt_type(L, sp, k, LUA_TNUMBER) == LUA_TNUMBER;
  if (*given) {
    lua_Number n = lua_tonumber(L, OPT_SLOT(k));
    if (!(n >= 1 && n <= 9007199254740992.0 && n == floor(n)))
      opt_error(L, opt_names[k], "must be a positive integer");
    return (size_t)n;
  }
  return def;
}

static int is_token(const char *s, size_t len) {
  size_t i;
  if (len == 0) return 0;
  for (i = 0; i < len; i++)
    if (s[i] <= 32 || s[i] >= 127 || strchr("\"(),/:;<=>?@[\\]{}", s[i])) return 0;
  return 1;
}

/* the text of a number for a URL or a header: integral values without ".0"
   (98.0 is sent as 98: Lua 5.3+ would write "98.0"); NULL when not finite */
static const char *number_text(lua_State *L, int i, char *buf, size_t size, size_t *len) {
  lua_Number n = lua_tonumber(L, i);
  int k;
  if (LP_INTEGERS && lua_isinteger(L, i))
    k = snprintf(buf, size, "%lld", (long long)lua_tointeger(L, i));
  else if (n != n || n == HUGE_VAL || n == -HUGE_VAL)
    return NULL;
  else if (n == floor(n) && fabs(n) < 9007199254740992.0)
    k = snprintf(buf, size, "%.0f", (double)n);
  else
    k = snprintf(buf, size, "%.14g", (double)n);  /* as Lua's tostring */
  *len = (size_t)k;
  return buf;
}

/* check the header at the top of the stack (name at -2, value at -1), put
   its value's text in *v; sets sp->has_ctype, has_authz and has_ua */
static void check_header(lua_State *L, lspec *sp, lstr *v, char *numbuf, size_t numsize) {
  size_t nlen;
  const char *name;
  int vt = lua_type(L, -1);
  if (lua_type(L, -2) != LUA_TSTRING)
    opt_error(L, "headers", "has a name that is not a valid header name");
  name = lua_tolstring(L, -2, &nlen);
  check_nul(L, "headers", name, nlen);
  if (!is_token(name, nlen))
    opt_error(L, "headers", "has a name that is not a valid header name");
  if (vt == LUA_TSTRING) {
    v->s = lua_tolstring(L, -1, &v->len);
  } else if (vt != LUA_TNUMBER ||
             !(v->s = number_text(L, -1, numbuf, numsize, &v->len))) {
    lua_pushfstring(L, "value of '%s' must be a string", name);
    opt_error(L, "headers", lua_tostring(L, -1));
  }
  if (has_crlf(v->s, v->len) || memchr(v->s, '\0', v->len)) {
    lua_pushfstring(L, "value of '%s' contains CR, LF or NUL", name);
    opt_error(L, "headers", lua_tostring(L, -1));
  }
  if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) sp->has_ctype = 1;
  if (nlen == 13 && strncasecmp(name, "authorization", 13) == 0) sp->has_authz = 1;
  if (nlen == 10 && strncasecmp(name, "user-agent", 10) == 0) sp->has_ua = 1;
}

/* the headers table, checked; with r, also appended to r's header list */
static void opt_headers(lua_State *L, lctx *c, int t, lspec *sp, lp_req *r) {
  char num[64];
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lstr v;
    size_t nlen, k = 0;
    const char *name;
    check_header(L, sp, &v, num, sizeof num);
    if (r) {
      struct curl_slist *l;
      char *line;
      name = lua_tolstring(L, -2, &nlen);
      if (!reserve(c, nlen + v.len + 3)) out_of_memory(L);
      line = c->buf;
      memcpy(line, name, nlen);
      while (k < v.len && (v.s[k] == ' ' || v.s[k] == '\t')) k++;
      if (k == v.len) {         /* "" or blanks: "Name;" sends it empty */
        memcpy(line + nlen, ";", 2);
      } else {                  /* "Name: value" (blanks alone would drop it) */
        memcpy(line + nlen, ": ", 2);
        memcpy(line + nlen + 2, v.s, v.len);
        line[nlen + 2 + v.len] = '\0';
      }
      if (!(l = curl_slist_append(r->opts.headers, line))) out_of_memory(L);
      r->opts.headers = l;
    }
    lua_pop(L, 1);
  }
}

/* append `s` percent-encoded by libcurl to the scratch buffer */
static void add_escaped(lua_State *L, lctx *c, size_t *n, const char *s, size_t len) {
  char *e;
  size_t elen;
  int ok;
  if (len > INT_MAX / 3) opt_error(L, "query", "has a name or value too long");
  if (!(e = curl_easy_escape(NULL, s, (int)len))) out_of_memory(L);
  elen = strlen(e);
  ok = reserve(c, *n + elen + 1);
  if (ok) {
    memcpy(c->buf + *n, e, elen);
    *n += elen;
  }
  curl_free(e);                 /* before anything may raise */
  if (!ok) out_of_memory(L);
}

/* append the text of the query key or value at `i` (a string, a number or a
   boolean), percent-encoded */
static void add_query_text(lua_State *L, lctx *c, size_t *n, int i) {
  char num[64];
  const char *s = NULL;
  size_t len = 0;
  switch (lua_type(L, i)) {
  case LUA_TSTRING:             /* never lua_tolstring on a number key */
    s = lua_tolstring(L, i, &len);
    check_nul(L, "query", s, len);
    break;
  case LUA_TNUMBER:
    s = number_text(L, i, num, sizeof num, &len);
    break;
  case LUA_TBOOLEAN:
    s = lua_toboolean(L, i) ? "true" : "false";
    len = strlen(s);
    break;
  }
  if (!s || (i == -2 && lua_type(L, i) == LUA_TBOOLEAN))
    opt_error(L, "query", "must map names to strings or finite numbers");
  add_escaped(L, c, n, s, len);
}

/* the url with the query table appended, URL-encoded by libcurl, pushed */
static lstr push_query_url(lua_State *L, lctx *c, lstr u, int t) {
  const char *frag = memchr(u.s, '#', u.len);
  size_t base = frag ? (size_t)(frag - u.s) : u.len, n = 0;
  char sep = memchr(u.s, '?', base) ? '&' : '?';
  lstr full;
  if (base > 0 && (u.s[base - 1] == '?' || u.s[base - 1] == '&')) sep = 0;
  add_bytes(L, c, &n, u.s, base);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (sep) add_bytes(L, c, &n, &sep, 1);
    sep = '&';
    add_query_text(L, c, &n, -2);  /* name and value apart: '=' stays in the name */
    add_bytes(L, c, &n, "=", 1);
    add_query_text(L, c, &n, -1);
    lua_pop(L, 1);
  }
  add_bytes(L, c, &n, u.s + base, u.len - base);  /* the fragment, if any */
  lua_pushlstring(L, c->buf, n);
  full.s = lua_tolstring(L, -1, &full.len);
  return full;
}

/* libcurl's URL parser on `u`: CURLUE_OK, with *user set when it has
   userinfo, or why not. Its verdicts on the last few urls are remembered:
   a poll loop asks about the same url every time, and a parse costs about
   6,000 instructions (bench/callgrind.sh) against a compare's few dozen */
static CURLUcode check_url(lctx *c, lstr u, int *user) {
  struct lmemo *m;
  CURLU *h;
  CURLUcode rc;
  char *x = NULL;
  int i;
  for (i = 0; i < LP_URL_MEMO; i++) {
    m = &c->memo[i];
    if (m->url && m->len == u.len && memcmp(m->url, u.s, u.len) == 0) {
      *user = m->user;
      return CURLUE_OK;
    }
  }
  if (!(h = curl_url())) return CURLUE_OUT_OF_MEMORY;
  rc = curl_url_set(h, CURLUPART_URL, u.s, 0);
  if (rc == CURLUE_OK) *user = curl_url_get(h, CURLUPART_USER, &x, 0) == CURLUE_OK;
  curl_free(x);
  curl_url_cleanup(h);
  if (rc != CURLUE_OK) return rc;
  m = &c->memo[c->memo_next];   /* remembered when there is room, else not */
  free(m->url);
  if ((m->url = malloc(u.len + 1))) {
    memcpy(m->url, u.s, u.len + 1);
    m->len = u.len;
    m->user = *user;
    c->memo_next = (c->memo_next + 1) % LP_URL_MEMO;
  }
  return CURLUE_OK;
}

/* url and query into sp->url (a url with a query is left on the stack).
   The url is checked by libcurl's parser, the same way with or without a
   query; the query's names and values, percent-encoded by libcurl, cannot
   make a valid url invalid */
static void opt_url(lua_State *L, lctx *c, lspec *sp) {
  lstr u = opt_string(L, sp, OPT_URL);
  CURLUcode rc;
  int user = 0;
  if (!u.s) opt_error(L, "url", "is required");
  if (strncasecmp(u.s, "http://", 7) != 0 && strncasecmp(u.s, "https://", 8) != 0)
    opt_error(L, "url", "must start with http:// or https://");
  if (strstr(u.s, "://")[3] == '/')       /* libcurl reads http:///x as http://x/ */
    opt_error(L, "url", "is not a valid URL (no host)");
  rc = check_url(c, u, &user);
  if (rc == CURLUE_OUT_OF_MEMORY) out_of_memory(L);
  if (rc != CURLUE_OK) {
    lua_pushfstring(L, "is not a valid URL (%s)", curl_url_strerror(rc));
    opt_error(L, "url", lua_tostring(L, -1));
  }
  if (user && sp->user.s) opt_error(L, "auth", "conflicts with credentials in the url");
  if (opt_type(L, sp, OPT_QUERY, LUA_TTABLE) == LUA_TTABLE)
    u = push_query_url(L, c, u, OPT_SLOT(OPT_QUERY));
  sp->url = u;
}

/* auth = { user = s, password = s, type = "basic" | "digest" | "any" } */
static void opt_auth(lua_State *L, lspec *sp) {
  static const char *const types[] = {"basic", "digest", "any", NULL};
  static const long curl_types[] = {CURLAUTH_BASIC, CURLAUTH_DIGEST, CURLAUTH_ANY};
  int t = OPT_SLOT(OPT_AUTH);
  if (opt_type(L, sp, OPT_AUTH, LUA_TTABLE) != LUA_TTABLE) return;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, "user") && strcmp(k, "password") && strcmp(k, "type"))
      opt_error(L, "auth", "takes only user, password and type");
    lua_pop(L, 1);
  }
  /* never a value in a message: these are secrets */
  sp->user = get_string(L, t, "user", "auth.user");
  sp->password = get_string(L, t, "password", "auth.password");
  if (!sp->user.s || !sp->password.s)
    opt_error(L, "auth", "needs a user and a password (strings)");
  if (memchr(sp->user.s, ':', sp->user.len) || has_crlf(sp->user.s, sp->user.len))
    opt_error(L, "auth.user", "contains ':', CR or LF");
  if (has_crlf(sp->password.s, sp->password.len))
    opt_error(L, "auth.password", "contains CR or LF");
  get_typed(L, t, "type", "auth.type", LUA_TSTRING);
  sp->httpauth = curl_types[to_choice(L, -1, "auth.type", types,
                                      "must be \"basic\", \"digest\" or \"any\"")];
  lua_pop(L, 1);
}

/* the body, a string or a table encoded with the codec (left on the stack),
   into sp->body */
static void opt_body(lua_State *L, lspec *sp) {
  int i = OPT_SLOT(OPT_BODY), t;
  if (!(sp->present & (1u << OPT_BODY))) return;
  t = lua_type(L, i);
  if (t == LUA_TTABLE) {
    lp_getuv(L, ctx_index, UV_CODEC_ENCODE);
    lua_pushvalue(L, i);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_pushfstring(L, "could not be encoded as JSON: %s", lua_tostring(L, -1));
      opt_error(L, "body", lua_tostring(L, -1));
    }
    if (lua_type(L, -1) != LUA_TSTRING)
      opt_error(L, "body", "could not be encoded as JSON (the encoder returned no string)");
    sp->json_body = 1;
    i = lua_gettop(L);
  } else if (t != LUA_TSTRING) {
    opt_error(L, "body", "must be a string or a table");
  }
  sp->body.s = lua_tolstring(L, i, &sp->body.len);
}

/* every option of the table at 1 into its slot, OPT_SLOT(k); an unknown
   key raises. One pass over what the caller gave (a lookup each), not a
   lookup of every option the module knows */
static void take_options(lua_State *L, lspec *sp) {
  int names, k;
  lua_settop(L, OPT_SLOT(OPT_N - 1));
  lp_getuv(L, ctx_index, UV_OPTION_SLOTS);  /* name -> k */
  names = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, names) != LUA_TNUMBER) {
      if (lua_type(L, -3) == LUA_TSTRING)
        luaL_error(L, "longpoll.request: unknown option '%s'", lua_tostring(L, -3));
      luaL_error(L, "longpoll.request: unknown option of type %s", luaL_typename(L, -3));
    }
    k = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_replace(L, OPT_SLOT(k));          /* the value, into its slot */
    sp->present |= 1u << k;
  }
  lua_pop(L, 1);
}

/* stream, max_message, max_queued into sp */
static void opt_stream(lua_State *L, lspec *sp) {
  lstr v = opt_string(L, sp, OPT_STREAM);
  int given_message, given_queued;
  sp->stream = -1;
  if (v.s && (sp->stream = lp_stream_format_of(v.s)) < 0)
    opt_error(L, "stream", "must be \"sse\", \"ndjson\", \"json-seq\" or \"lines\"");
  sp->max_message = opt_size(L, sp, OPT_MAX_MESSAGE, LP_DEFAULT_MAX_MESSAGE, &given_message);
  sp->max_queued = opt_size(L, sp, OPT_MAX_QUEUED, LP_DEFAULT_MAX_QUEUED, &given_queued);
  if (!v.s && (given_message || given_queued))
    opt_error(L, given_message ? "max_message" : "max_queued", "applies only with 'stream'");
}

static lp_scope *test_context(lua_State *L, int i);   /* cancel scopes, below */

/* every option read and checked into sp; nothing allocated but Lua values
   on the stack, so a bad option raises with nothing to undo */
static void read_options(lua_State *L, lctx *c, lspec *sp) {
  static const char *const decodes[] = {"auto", "json", "none", NULL};
  static const char *const versions[] = {"auto", "1.1", "2", NULL};
  static const long curl_versions[] = {
    CURL_HTTP_VERSION_2TLS, CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
  };
  int i;
  take_options(L, sp);
  opt_auth(L, sp);              /* before the url: both may carry credentials */
  if (opt_type(L, sp, OPT_HEADERS, LUA_TTABLE) == LUA_TTABLE) {
    sp->headers = OPT_SLOT(OPT_HEADERS);
    opt_headers(L, c, sp->headers, sp, NULL);
  }
  if (sp->has_authz && sp->user.s)
    opt_error(L, "auth", "conflicts with an Authorization header");
  opt_url(L, c, sp);
  opt_body(L, sp);
  sp->method = opt_string(L, sp, OPT_METHOD);
  if (!sp->method.s) {          /* the one place the default method is decided */
    sp->method.s = sp->body.s ? lp_post : lp_get;
    sp->method.len = strlen(sp->method.s);
  }
  for (i = 0; i < (int)sp->method.len; i++)
    if (sp->method.s[i] < 'A' || sp->method.s[i] > 'Z') break;
  if (i == 0 || i < (int)sp->method.len)
    opt_error(L, "method", "must be an upper-case HTTP method");
  if (sp->body.s && strcmp(sp->method.s, "HEAD") == 0)
    opt_error(L, "body", "cannot be sent with HEAD (no response body would come)");
  sp->timeout_ms = opt_seconds(L, sp, OPT_TIMEOUT, 0);
  sp->connect_timeout_ms = opt_seconds(L, sp, OPT_CONNECT_TIMEOUT,
                                       LP_DEFAULT_CONNECT_TIMEOUT_MS);
  sp->max_body = LP_DEFAULT_MAX_BODY;
  if (opt_type(L, sp, OPT_MAX_BODY, LUA_TNUMBER) == LUA_TNUMBER) {
    int k = OPT_SLOT(OPT_MAX_BODY);
    lua_Integer n = lua_tointeger(L, k);
    if (!lua_isinteger(L, k) && (lua_Number)n != lua_tonumber(L, k)) n = 0;
    if (n <= 0) opt_error(L, "max_body", "must be a positive integer");
    sp->max_body = (curl_off_t)n;
  }
  sp->decode = opt_choice(L, sp, OPT_DECODE, decodes,
                          "must be \"auto\", \"json\" or \"none\"");
  sp->http_version = curl_versions[opt_choice(L, sp, OPT_HTTP_VERSION, versions,
                                              "must be \"auto\", \"1.1\" or \"2\"")];
  /* h2c (prior knowledge, cleartext): libcurl before 8.0.0 fails every
     request after the first on a reused connection with "Error in the HTTP2
     framing layer" (curl/curl#10634): each such request gets a connection
     of its own */
  sp->fresh_connect = c->h2c_reuse_broken &&
                      sp->http_version == CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE &&
                      strncasecmp(sp->url.s, "http://", 7) == 0;
  sp->follow_redirects = opt_bool(L, sp, OPT_FOLLOW_REDIRECTS, 1);
  sp->verify = opt_bool(L, sp, OPT_VERIFY, 1);
  sp->cainfo = opt_string(L, sp, OPT_CAINFO);
  sp->user_agent = opt_string(L, sp, OPT_USER_AGENT);
  if (!sp->user_agent.s) {
    sp->user_agent.s = lp_default_user_agent;
    sp->user_agent.len = strlen(lp_default_user_agent);
  }
  if (has_crlf(sp->user_agent.s, sp->user_agent.len))
    opt_error(L, "user_agent", "contains CR or LF");
  opt_stream(L, sp);
  if ((sp->present & (1u << OPT_CONTEXT)) &&
      !(sp->scope = test_context(L, OPT_SLOT(OPT_CONTEXT))))
    opt_error(L, "context", "must be a longpoll.context");
}

static char *copy_lstr(lua_State *L, lstr v) {
  return v.s ? xstrdup(L, v.s, v.len) : NULL;
}

static void link_request(lctx *c, lreq *q) {
  q->prev = NULL;
  q->next = c->live;
  if (c->live) c->live->prev = q;
  c->live = q;
}

/* cancel and release a request's record, and unlink it from its context */
static void drop_request(lreq *q) {
  lctx *c = q->ctx;
  if (q->prev) q->prev->next = q->next; else c->live = q->next;
  if (q->next) q->next->prev = q->prev;
  q->prev = q->next = NULL;
  if (!lp_state_finished(lp_req_state(q->r))) lp_req_cancel(q->r);
  lp_req_release(q->r);
  q->r = NULL;
}

/* longpoll.request(opts): validate opts into a new record; sends nothing */
static int request_new(lua_State *L) {
  lctx *c = get_ctx(L);
  lspec sp;
  lreq *q, **box;
  lp_req *r;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (c->closed) luaL_error(L, "longpoll: the module was closed (lua_close)");
  if (!c->engine) luaL_error(L, "longpoll: the engine could not be started");
  luaL_checkstack(L, OPT_N + 32, "longpoll.request");
  memset(&sp, 0, sizeof sp);
  read_options(L, c, &sp);
  /* all checked: a safe, empty object first, then what it owns (from here
     only running out of memory raises, and the guard's __gc frees what was
     attached) */
  q = (lreq *)lp_newuserdata(L, sizeof *q, 0);
  memset(q, 0, sizeof *q);
  lua_pushvalue(L, guardmt_index);
  lua_setmetatable(L, -2);
  box = (lreq **)lp_newuserdata(L, sizeof *box, UV_NREQ);
  *box = q;
  lua_pushvalue(L, reqmt_index);
  lua_setmetatable(L, -2);
  lua_insert(L, -2);
  lp_setuv(L, -2, UV_GUARD);
  lua_pushvalue(L, ctx_index);
  lp_setuv(L, -2, UV_CTX);
  if (!(r = lp_req_new(sp.url.s, sp.url.len))) out_of_memory(L);
  q->r = r;
  q->ctx = c;
  q->decode = sp.decode;
  link_request(c, q);
  r->opts.method = sp.method.s == lp_get || sp.method.s == lp_post
                   ? sp.method.s : copy_lstr(L, sp.method);
  if (sp.headers) opt_headers(L, c, sp.headers, &sp, r);
  if (sp.body.s || sp.cainfo.s || sp.user.s) {  /* what few requests have */
    lp_extra *x = lp_opts_extra(&r->opts);
    if (!x) out_of_memory(L);
    x->body = copy_lstr(L, sp.body);
    x->body_len = sp.body.len;
    x->cainfo = copy_lstr(L, sp.cainfo);
    if (sp.user.s) {
      x->username = copy_lstr(L, sp.user);
      x->password = copy_lstr(L, sp.password);
      x->httpauth = sp.httpauth;
    }
  }
  if (sp.body.s) {
    const char *ct = sp.json_body ? LP_JSON_BODY_TYPE : LP_DEFAULT_BODY_TYPE;
    struct curl_slist *l;
    if (!sp.has_ctype) {
      if (!(l = curl_slist_append(r->opts.headers, ct))) out_of_memory(L);
      r->opts.headers = l;
    }
  }
  r->opts.timeout_ms = sp.timeout_ms;
  r->opts.connect_timeout_ms = sp.connect_timeout_ms;
  r->opts.max_body = sp.max_body;
  r->opts.http_version = (unsigned char)sp.http_version;
  r->opts.fresh_connect = sp.fresh_connect;
  r->opts.follow_redirects = sp.follow_redirects;
  r->opts.verify = sp.verify;
  r->opts.user_agent = sp.user_agent.s == lp_default_user_agent
                       ? sp.user_agent.s : copy_lstr(L, sp.user_agent);
  if (sp.stream >= 0 && !lp_req_stream(r, sp.stream, sp.max_message, sp.max_queued))
    out_of_memory(L);
  /* the default user agent goes as a shared header (lp_default_headers),
     unless the caller's headers name one */
  if (r->opts.user_agent == lp_default_user_agent && !sp.has_ua)
    lp_headers_finish(&r->opts.headers);
  if (sp.scope) lp_scope_add(sp.scope, r);   /* last: it may end r at once */
  return 1;
}

/* ---- results ---- */

/* the next header line of the raw block [*p, end): its name and value
   (blanks around the value trimmed); 0 at the end. The status line, folded
   continuation lines and lines without a colon are skipped */
static int next_header(const char **p, const char *end, const char **name,
                       size_t *nlen, const char **v, size_t *vlen) {
  while (*p < end) {
    const char *s = *p, *eol = memchr(s, '\n', (size_t)(end - s)), *colon, *ve;
    if (!eol) eol = end;
    *p = eol + 1;
    colon = memchr(s, ':', (size_t)(eol - s));
    if (!colon || colon == s || *s == ' ' || *s == '\t') continue;
    *name = s;
    *nlen = (size_t)(colon - s);
    for (colon++; colon < eol && (*colon == ' ' || *colon == '\t'); colon++) {}
    for (ve = eol; ve > colon && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'); ve--) {}
    *v = colon;
    *vlen = (size_t)(ve - colon);
    return 1;
  }
  return 0;
}

/* the headers table of a raw header block: names lowercased, repeated
   headers joined with ", " */
static void push_headers(lua_State *L, const char *h, size_t len) {
  const char *p = h, *end = h + len, *name, *v;
  size_t nlen, vlen, k;
  int lines = 0, t;
  for (; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++) lines++;
  lua_createtable(L, 0, lines);  /* sized once: no rehash as it fills */
  t = lua_gettop(L);
  p = h;
  while (next_header(&p, end, &name, &nlen, &v, &vlen)) {
    char low[256];
    if (nlen >= sizeof low) nlen = sizeof low - 1;
    for (k = 0; k < nlen; k++)
      low[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] + 32 : name[k]);
    lua_pushlstring(L, low, nlen);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, vlen);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, v, vlen);
    }
    lua_rawset(L, t);
  }
}

/* the response's __index: `headers` and `http_version` are made from the
   kept header block the first time either is read (upvalue 1: the weak
   table response -> block), then stored in the response, a plain table like
   the others. The block's first byte is the HTTP version (see push_response) */
static int response_index(lua_State *L) {
  static const char *const versions[] = {"1.1", "2", "1.0"};
  size_t len;
  const char *h, *k;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  k = lua_tostring(L, 2);
  if (strcmp(k, "headers") != 0 && strcmp(k, "http_version") != 0) return 0;
  lua_pushvalue(L, 1);
  lua_rawget(L, lua_upvalueindex(1));
  h = lua_tolstring(L, -1, &len);
  if (!h || len < 1) return 0;  /* made already (and then removed), or never */
  lua_pushliteral(L, "http_version");
  lua_pushstring(L, versions[h[0] >= '0' && h[0] <= '2' ? h[0] - '0' : 0]);
  lua_rawset(L, 1);
  lua_pushliteral(L, "headers");
  push_headers(L, h + 1, len - 1);
  lua_rawset(L, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_rawset(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);          /* the key read, now a field */
  lua_rawget(L, 1);
  return 1;
}

/* push the response table of request q; its body is the string at `body`.
   The headers and the HTTP version wait in the weak table as one string (a
   version byte, then the raw header block) until one of them is read: the
   table is made with room for the 4 fields every response has */
static void push_response_of(lua_State *L, lreq *q, const lp_result *from, int body) {
  static const lp_result none;
  lp_req *r = q->r;
  const lp_result *res = from ? from : &none;
  lctx *c = q->ctx;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, res->status);
  set_cached(L, C_STATUS);
  lua_pushvalue(L, body);
  set_cached(L, C_BODY);
  push_url(L, res->effective_url ? res->effective_url : r->opts.url);
  set_cached(L, C_URL);
  lua_pushnumber(L, res->elapsed);
  set_cached(L, C_ELAPSED);
  if (from && res->retry_after >= 0) {
    lua_pushinteger(L, (lua_Integer)res->retry_after);
    set_cached(L, C_RETRY_AFTER);
  }
  lua_rawgeti(L, cache_index, C_RESPONSE_MT);
  lua_setmetatable(L, -2);
  if (!reserve(c, res->head.len + 1)) out_of_memory(L);
  c->buf[0] = res->http_version == CURL_HTTP_VERSION_2_0 ? '1'
              : res->http_version == CURL_HTTP_VERSION_1_0 ? '2' : '0';
  if (res->head.len) memcpy(c->buf + 1, res->head.data, res->head.len);
  lua_rawgeti(L, cache_index, C_HEADS);
  lua_pushvalue(L, -2);
  lua_pushlstring(L, c->buf, res->head.len + 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* the response table of request q, as its result says */
static void push_response(lua_State *L, lreq *q, int body) {
  push_response_of(L, q, q->r->res, body);
}

/* lua-cjson 2.1.0 gives every number as a float: on Lua 5.3+ make the
   integral ones below 2^53 in magnitude integers, so ids read as 1, not 1.0.
   From 2^53 on a double may be a rounded neighbour (9007199254740993 decodes
   as 2^53): such numbers stay floats, never an integer that looks exact.
   Lua 5.1 and LuaJIT have no integers: numbers stay as decoded there */
static void integerize(lua_State *L, int t, int depth) {
  if (depth > 1000 || !lua_checkstack(L, 3)) return;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vt = lua_type(L, -1);
    if (vt == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number n = lua_tonumber(L, -1);
      if (n == floor(n) && fabs(n) < 9007199254740992.0) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)n);
        lua_rawset(L, t);       /* assigning an existing key keeps lua_next valid */
      }
    } else if (vt == LUA_TTABLE) {
      integerize(L, lua_gettop(L), depth + 1);
    }
    lua_pop(L, 1);
  }
}

/* 1 when the JSON text [p, e) has a number outside its strings: only then
   can a decoded value hold a float that integerize must look at */
static int json_has_number(const char *p, const char *e) {
  while (p < e) {
    char c = *p++;
    if (c == '"') {             /* skip the string: to a quote not escaped */
      const char *q;
      while ((q = memchr(p, '"', (size_t)(e - p)))) {
        const char *b = q;
        while (b > p && b[-1] == '\\') b--;
        p = q + 1;
        if ((q - b) % 2 == 0) break;
      }
      if (!q) return 0;
    } else if ((c >= '0' && c <= '9') || c == '-') {
      return 1;
    }
  }
  return 0;
}

/* decode the JSON text [p, p+n), on top of the stack, in its place with the
   codec of request `i`'s own context; 0 leaves the codec's error message
   there */
static int decode_json(lua_State *L, int i, const char *p, size_t n) {
  lp_getuv(L, i, UV_CTX);
  lp_getuv(L, -1, UV_CODEC_DECODE);
  lua_remove(L, -2);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;
  if (!LP_INTEGERS || !json_has_number(p, p + n)) return 1;
  if (lua_istable(L, -1)) {
    integerize(L, lua_gettop(L), 0);
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, -1);
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)v);
    }
  }
  return 1;
}

/* push the decoded body (the string at `body`) of the finished, successful
   request at index `i` per its decode mode: the value, or nil and an error
   object. In "auto", a body is JSON when its Content-Type says so, or when it
   looks like JSON ([ or {) and parses: a text/plain "{..." that does not
   parse is text */
static void push_value(lua_State *L, int i, lreq *q, int body) {
  size_t len;
  const char *b = lua_tolstring(L, body, &len), *e = b + len, *p = b;
  int text_ok = q->decode == DECODE_AUTO && !q->r->res->json_type;  /* may stay text */
  if (q->decode == DECODE_NONE) {
    lua_pushvalue(L, body);
    return;
  }
  for (; p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'); p++) {}
  if (p == e) {                 /* empty: "no news" in auto and json modes */
    lua_newtable(L);
    return;
  }
  if (text_ok && *p != '[' && *p != '{') {
    lua_pushvalue(L, body);
    return;
  }
  lua_pushvalue(L, body);
  if (decode_json(L, i, p, (size_t)(e - p))) return;
  if (text_ok) {                /* looked like JSON, is not, never said it was */
    lua_pop(L, 1);
    lua_pushvalue(L, body);
    return;
  }
  lua_pushfstring(L, "invalid JSON: %s", lua_tostring(L, -1));
  lua_pushnil(L);
  push_error(L, LP_EDECODE, lua_tostring(L, -2), q->r, 0);
  lua_remove(L, -3);
  lua_remove(L, -3);
}

/* the state r shows in state s: one its scope's deadline ended is "failed"
   (kind timeout), as one that reached its own timeout */
static lp_state shown(const lp_req *r, lp_state s) {
  return s == LP_CANCELED && r->why == LP_ETIMEOUT ? LP_FAILED : s;
}

/* push the results of request `i` (2 values) and return 2, or return 0 when
   it has not finished; results are built once, then served from the cache */
/* the status of r's response, 0 when none arrived */
static long status_of(const lp_req *r) { return r->res ? r->res->status : 0; }

/* the message of r's failure: its own, or what its CURLcode says */
static const char *message_of(const lp_req *r) {
  if (r->msg && r->msg[0]) return r->msg;
  return r->curl_code != CURLE_OK ? curl_easy_strerror(r->curl_code) : "out of memory";
}

static int push_results(lua_State *L, int i, lreq *q) {
  lp_req *r = q->r;
  lp_state s;
  long status;
  int base;
  if (q->settled) {
    lp_getuv(L, i, UV_VALUE);
    lp_getuv(L, i, UV_SECOND);
    return 2;
  }
  s = lp_req_state(r);
  if (!lp_state_finished(s)) return 0;
  status = status_of(r);
  base = lua_gettop(L);         /* + 1 body, + 2 response, when one arrived */
  if (s != LP_CANCELED && status > 0) {
    lua_pushlstring(L, r->res->body.data ? r->res->body.data : "", r->res->body.len);
    push_response(L, q, base + 1);
  }
  if (s == LP_CANCELED) {
    lua_pushnil(L);
    push_error(L, (lp_kind)r->why, lp_req_why_text(r), r, 0);  /* canceled, or its scope's */
  } else if (s == LP_DONE && status > 0) {
    push_value(L, i, q, base + 1);  /* value, or nil + error */
  } else {
    lua_pushnil(L);
    push_error(L, r->kind, message_of(r), r, 0);
    if (r->curl_code != CURLE_OK) {
      lua_pushinteger(L, r->curl_code);
      lua_setfield(L, -2, "curl_code");
    }
  }
  if (lua_isnil(L, -2)) {       /* nil, err: attach the response */
    if (status > 0 && s != LP_CANCELED) {
      lua_pushinteger(L, status);
      lua_setfield(L, -2, "status");
      lua_pushvalue(L, base + 2);
      lua_setfield(L, -2, "response");
    }
    if (s != LP_CANCELED) s = LP_FAILED;
  } else {
    lua_pushvalue(L, base + 2); /* value, response */
  }
  if (lua_gettop(L) > base + 2) {  /* drop the body and response slots */
    lua_remove(L, base + 1);
    lua_remove(L, base + 1);
  }
  lp_req_drop_response(r);     /* the body now lives in Lua */
  lua_pushvalue(L, -2);
  lp_setuv(L, i, UV_VALUE);
  lua_pushvalue(L, -1);
  lp_setuv(L, i, UV_SECOND);
  q->settled = shown(r, s);
  return 2;
}

/* ---- methods ---- */

/* hand a ready request to its own context's engine; a request whose engine
   is gone ends canceled */
static void start(lreq *q) {
  if (lp_req_state(q->r) != LP_READY) return;
  if (q->ctx->engine) lp_req_start(q->ctx->engine, q->r);
  else lp_req_cancel(q->r);
}

/* req:start() -> req */
static int request_start(lua_State *L) {
  start(check_request(L, 1));
  lua_settop(L, 1);
  return 1;
}

static int is_stream(const lreq *q) { return q->r->st != NULL; }

/* why a request cannot be read one way or the other (one text each, also
   for the Lua layer: core.misuse) */
static const char NOT_STREAM[] = "not a stream request (no 'stream' option)";
static const char IS_STREAM[] =
  "a stream request is read with next(), await_next(), messages() or poll()";

/* req:run() -> results; blocks this OS thread until the request finishes */
static int request_run(lua_State *L) {
  lreq *q = check_request(L, 1);
  int n;
  if (is_stream(q))
    return luaL_error(L, "longpoll.request: %s", IS_STREAM);
  n = push_results(L, 1, q);
  if (n) return n;
  start(q);
  lp_req_wait(q->r, -1);
  return push_results(L, 1, q);
}

static int stream_done(const lreq *q);

/* req:done() -> boolean, never blocks */
static int request_done(lua_State *L) {
  lreq *q = check_request(L, 1);
  lua_pushboolean(L, is_stream(q) ? stream_done(q) : lp_state_finished(lp_req_state(q->r)));
  return 1;
}

/* req:wait(seconds) -> done; starts the request if needed */
static int request_wait(lua_State *L) {
  lreq *q = check_request(L, 1);
  lua_Number s = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, s == s, 2, "must be a number of seconds");
  start(q);
  lua_pushboolean(L, lp_req_wait(q->r, s < 0 ? -1 : s));
  return 1;
}

/* req:cancel() -> true when this call ended the request */
static int request_cancel(lua_State *L) {
  lua_pushboolean(L, lp_req_cancel(check_request(L, 1)->r));
  return 1;
}

/* the state to report: the transfer's, until results were built (a body
   that failed to decode then makes it "failed"); never decodes */
static lp_state request_state(const lreq *q) {
  return q->settled ? q->settled : shown(q->r, lp_req_state(q->r));
}

/* req:status() -> "ready" | "running" | "done" | "failed" | "canceled" */
static int request_status(lua_State *L) {
  lua_pushstring(L, state_names[request_state(check_request(L, 1))]);
  return 1;
}

/* req:fd() -> integer readable once finished, or nil, message */
static int request_fd(lua_State *L) {
  int fd = lp_req_fd(check_request(L, 1)->r);
  if (fd < 0) return luaL_fileresult(L, 0, NULL);
  lua_pushinteger(L, fd);
  return 1;
}

/* req:close() and __close: cancel; the object stays usable (status,
   results). close() is how Lua before 5.4 ends a request's scope */
static int request_close(lua_State *L) {
  lreq *q = to_request(L, 1);
  if (q->r) lp_req_cancel(q->r);
  return 0;
}

/* the guard's __gc (an unreachable request): cancel and drop Lua's share
   of the record; safe to run twice */
static int guard_gc(lua_State *L) {
  lreq *q = (lreq *)lua_touserdata(L, 1);
  int same = q && lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(1));
  if (!same) q = (lreq *)luaL_checkudata(L, 1, LP_GUARD);  /* raises */
  if (q->r) drop_request(q);
  return 0;
}

static int request_tostring(lua_State *L) {
  lreq *q = to_request(L, 1);
  if (!q->r) {
    lua_pushliteral(L, "longpoll.request: (closed)");
  } else {
    lua_pushfstring(L, "longpoll.request: %s ", q->r->opts.method);
    push_url(L, q->r->opts.url);
    lua_pushfstring(L, " (%s)", state_names[request_state(q)]);
    lua_concat(L, 3);
  }
  return 1;
}

/* ---- streams ----
   The worker queues a stream's messages as they arrive (lp_req_take); each
   is turned into a Lua value here, when taken. A message that must be JSON
   and is not fails the request with "decode", as a body would: the result
   is settled here and the transfer canceled. */

enum { MSG_RAW, MSG_JSON, MSG_SNIFF };

/* how a message's text becomes a value: decode "none" gives strings;
   "json" decodes every one (SSE: its data); "auto" decodes NDJSON and JSON
   text sequences, SSE data that looks like JSON and parses, and keeps lines */
static int msg_mode(const lreq *q) {
  int f = q->r->st->format;
  if (q->decode == DECODE_NONE) return MSG_RAW;
  if (q->decode == DECODE_JSON || f == LP_STREAM_NDJSON || f == LP_STREAM_JSON_SEQ)
    return MSG_JSON;
  return f == LP_STREAM_SSE ? MSG_SNIFF : MSG_RAW;
}

/* push the value of text [p, p+n) for request `i`; 0 with an error message
   pushed instead when it had to be JSON and is not */
static int push_payload(lua_State *L, int i, int mode, const char *p, size_t n) {
  size_t k = 0;
  lua_pushlstring(L, p, n);
  if (mode == MSG_SNIFF) {
    while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n')) k++;
    if (k == n || (p[k] != '[' && p[k] != '{')) return 1;
  }
  if (mode == MSG_RAW || decode_json(L, i, p, n)) return 1;
  if (mode == MSG_JSON) return 0;
  lua_pop(L, 1);                /* auto: not JSON after all, keep the text */
  lua_pushlstring(L, p, n);
  return 1;
}

/* push message m as Lua sees it (SSE: a table {event, data, id, retry});
   0 with an error message pushed instead, as push_payload */
static int push_msg(lua_State *L, int i, const lreq *q, const lp_msg *m) {
  if (!m->event) return push_payload(L, i, msg_mode(q), m->data, m->len);
  lua_createtable(L, 0, 4);
  lua_pushlstring(L, m->event, m->event_len);
  lua_setfield(L, -2, "event");
  if (m->id) {
    lua_pushlstring(L, m->id, m->id_len);
    lua_setfield(L, -2, "id");
  }
  if (m->retry >= 0) {
    lua_pushinteger(L, (lua_Integer)m->retry);
    lua_setfield(L, -2, "retry");
  }
  if (!push_payload(L, i, msg_mode(q), m->data, m->len)) {
    lua_remove(L, -2);
    return 0;
  }
  lua_setfield(L, -2, "data");
  return 1;
}

/* a message that had to be JSON is not (its codec message on top, popped):
   settle request `i` as failed with "decode" and stop its transfer */
static void fail_decode(lua_State *L, int i, lreq *q) {
  lua_pushfstring(L, "invalid JSON in a stream message: %s", lua_tostring(L, -1));
  lua_pushnil(L);
  lp_setuv(L, i, UV_VALUE);
  push_error(L, LP_EDECODE, lua_tostring(L, -1), q->r, 0);
  lp_setuv(L, i, UV_SECOND);
  lua_pop(L, 2);
  q->settled = LP_FAILED;
  lp_req_cancel(q->r);          /* the worker drops the queue */
}

/* a stream that ended, whatever is queued: settled here (decode) or canceled */
static int stream_over(const lreq *q) {
  return (q->settled && q->settled != LP_DONE) || lp_req_state(q->r) == LP_CANCELED;
}

static int stream_done(const lreq *q) {
  return stream_over(q) ||
         (lp_state_finished(lp_req_state(q->r)) && lp_req_queued(q->r) == 0);
}

/* the end of stream `i` with nothing left to read: returns 0 at a clean
   end, else pushes nil, err and returns 2 */
static int stream_end(lua_State *L, int i, lreq *q) {
  if (!stream_over(q) && lp_req_state(q->r) == LP_DONE) return 0;
  return push_results(L, i, q);
}

static lreq *check_stream(lua_State *L, int i) {
  lreq *q = check_request(L, i);
  luaL_argcheck(L, is_stream(q), i, NOT_STREAM);
  return q;
}

/* req:next([seconds]) -> the next message; nil when the stream ended or
   `seconds` passed (done() tells which); nil, err when it failed */
static int request_next(lua_State *L) {
  lreq *q = check_stream(L, 1);
  lua_Number s = luaL_optnumber(L, 2, -1);
  int forever = !(s >= 0 && s < 1e9);
  double deadline = 0;
  luaL_argcheck(L, s == s, 2, "must be a number of seconds");
  start(q);
  if (!forever) deadline = now_seconds() + s;
  for (;;) {
    lp_state st = lp_req_state(q->r);
    lp_msg *m;
    double left = -1;
    if (stream_over(q)) return stream_end(L, 1, q);
    if ((m = lp_req_take(q->r, 1))) {
      int ok = push_msg(L, 1, q, m);
      free(m);
      if (ok) return 1;
      fail_decode(L, 1, q);
      return stream_end(L, 1, q);
    }
    /* finished before the take: everything it sent was queued by then */
    if (lp_state_finished(st)) {
      int n = stream_end(L, 1, q);
      if (n == 0) lua_pushnil(L);
      return n ? n : 1;
    }
    if (!forever) {
      left = deadline - now_seconds();
      if (left <= 0) {
        lua_pushnil(L);
        return 1;
      }
    }
    lp_req_wait(q->r, left);
  }
}

/* req:poll([max]) -> the messages queued since the last call (at most max),
   never blocks; {} once ended cleanly; nil, err once failed and empty */
static int request_poll(lua_State *L) {
  lreq *q = check_stream(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  lp_state st;
  lp_msg *m, *next;
  int k = 0;
  luaL_argcheck(L, lua_isnoneornil(L, 2) || max > 0, 2, "must be a positive integer");
  start(q);
  if (stream_over(q)) return stream_end(L, 1, q);
  st = lp_req_state(q->r);
  m = lp_req_take(q->r, max > 0 ? (size_t)max : (size_t)-1);
  lua_newtable(L);
  for (; m; m = next) {
    next = m->next;
    if (!q->settled) {
      if (push_msg(L, 1, q, m)) lua_rawseti(L, -2, ++k);
      else fail_decode(L, 1, q);
    }
    free(m);
  }
  if (k == 0 && (stream_over(q) || st == LP_FAILED)) {
    lua_pop(L, 1);
    return stream_end(L, 1, q);
  }
  return 1;
}

/* req:ready() -> true when next() or run() would not wait: the request
   finished or (a stream) a message is queued; never blocks */
static int request_ready(lua_State *L) {
  lreq *q = check_request(L, 1);
  lua_pushboolean(L, lp_state_finished(lp_req_state(q->r)) ||
                  (is_stream(q) && (stream_over(q) || lp_req_queued(q->r) > 0)));
  return 1;
}

/* req:response([seconds]) -> the response table once the request finished
   with one (of a failure: err.response; a stream that ended cleanly: its
   status and headers, body ""); a stream's status and headers as soon as
   they are in, body ""; else nil. With `seconds`, starts the request if
   needed and waits up to that long for it (a stream: for its headers) */
static int request_response(lua_State *L) {
  lreq *q = check_request(L, 1);
  const lp_result *head;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number s = luaL_checknumber(L, 2);
    luaL_argcheck(L, s >= 0, 2, "must be a number of seconds >= 0");
    start(q);
    lp_req_wait_head(q->r, s);
  }
  lua_settop(L, 1);
  /* a stream that ended cleanly, or failed with messages still to read (its
     error is not settled here: that would drop them) */
  if (is_stream(q) && !stream_over(q) && (lp_req_state(q->r) == LP_DONE ||
      (lp_req_state(q->r) == LP_FAILED && lp_req_queued(q->r) > 0))) {
    lua_pushliteral(L, "");     /* its body: the messages are handed out */
    push_response(L, q, lua_gettop(L));
    return 1;
  }
  if (push_results(L, 1, q)) {
    if (lua_isnil(L, -2)) lua_getfield(L, -1, "response");  /* nil, err */
    if (!lua_isnil(L, -1)) return 1;
  }
  if ((head = lp_req_head(q->r))) {  /* a stream still open, or canceled */
    lua_pushliteral(L, "");     /* no body: its messages are handed out */
    push_response_of(L, q, head, lua_gettop(L));
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* core.misuse(req, stream) -> why req cannot be read as a stream (stream
   true: next, await_next, messages) or as a plain request (run, await), or
   nil: for the Lua layer's methods, which raise it at their caller's line */
static int lp_misuse(lua_State *L) {
  lreq *q = test_request(L, 1, reqmt_index);
  int want = lua_toboolean(L, 2);
  luaL_argcheck(L, q && q->r, 1, "not a request");
  if (want != is_stream(q)) lua_pushstring(L, want ? NOT_STREAM : IS_STREAM);
  else lua_pushnil(L);
  return 1;
}

/* req:progress() -> { received, expected, sent [, messages, queued, pauses] } */
static int request_progress(lua_State *L) {
  lreq *q = check_request(L, 1);
  lp_req *r = q->r;
  long long total = atomic_load(&r->rx_total);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)atomic_load(&r->rx));
  lua_setfield(L, -2, "received");
  if (total >= 0) {
    lua_pushinteger(L, (lua_Integer)total);
    lua_setfield(L, -2, "expected");
  }
  lua_pushinteger(L, (lua_Integer)atomic_load(&r->tx));
  lua_setfield(L, -2, "sent");
  if (is_stream(q)) {
    lua_pushinteger(L, (lua_Integer)atomic_load(&r->st->nmsgs));
    lua_setfield(L, -2, "messages");
    lua_pushinteger(L, (lua_Integer)lp_req_queued(r));
    lua_setfield(L, -2, "queued");
    lua_pushinteger(L, (lua_Integer)atomic_load(&r->st->npauses));
    lua_setfield(L, -2, "pauses");
  }
  return 1;
}

/* ---- cancel scopes: longpoll.context ----
   `longpoll.context` objects over lp_scope (lp_scope.h), Go's context in
   Lua. (Not the lctx above, which is this state's share of the engine;
   its metatable is LP_STATE.)

   Each object holds one share of its scope. Several objects may hold the
   same scope: in other Lua states (ctx:share() gives an id that
   longpoll.context(id) turns back into the scope in any state of the
   process) or in this one. The scope lives while any object, request or
   child holds it; collecting an object only drops its share (it does not
   cancel: others may depend on the scope, as in Go), while close() and
   `<close>` cancel.

   Every function here has core.error as upvalue 1: errors are the objects
   run() returns. */

#define LP_SCOPE_MT "longpoll.context"  /* the registry key of the metatable */
#define LP_MAX_SECONDS (86400.0 * 365)  /* as a request's timeout */

typedef struct lctxobj {
  lp_scope *s;                  /* NULL once collected */
} lctxobj;

/* the scope of the longpoll.context at index i, or NULL when it is not one */
static lp_scope *test_context(lua_State *L, int i) {
  lctxobj *o = (lctxobj *)luaL_testudata(L, i, LP_SCOPE_MT);
  return o ? o->s : NULL;
}

/* the one checked accessor every method uses */
static lp_scope *check_context(lua_State *L, int i) {
  lp_scope *s = test_context(L, i);
  if (!s) luaL_argerror(L, i, lua_pushfstring(L, "longpoll.context expected, got %s",
                                              luaL_typename(L, i)));
  return s;
}

/* a new, empty object on the stack: it takes its share only once it is
   made, so nothing leaks if Lua runs out of memory */
static lctxobj *new_object(lua_State *L) {
  lctxobj *o = (lctxobj *)lp_newuserdata(L, sizeof *o, 0);
  o->s = NULL;
  luaL_setmetatable(L, LP_SCOPE_MT);
  return o;
}

/* the object on top takes the share of a new scope */
static void hold_new(lua_State *L, lctxobj *o, lp_scope *parent, double timeout) {
  if (!(o->s = lp_scope_new(parent, timeout))) luaL_error(L, "longpoll.context: out of memory");
}

/* read {timeout =, parent =} at index t (nil: none) into *timeout and
   *parent; `who` names the function in messages */
static void read_context_options(lua_State *L, int t, const char *who, double *timeout,
                         lp_scope **parent) {
  *timeout = 0;
  if (lua_isnoneornil(L, t)) return;
  if (lua_type(L, t) != LUA_TTABLE)
    luaL_error(L, "%s: expects a table of options (got %s)", who, luaL_typename(L, t));
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k && strcmp(k, "timeout") == 0) {
      lua_Number n = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
      if (!(n > 0 && n <= LP_MAX_SECONDS))
        luaL_error(L, "%s: option 'timeout' must be a positive number of seconds", who);
      *timeout = (double)n;
    } else if (k && strcmp(k, "parent") == 0 && parent) {
      if (!(*parent = test_context(L, -1)))
        luaL_error(L, "%s: option 'parent' must be a longpoll.context", who);
    } else if (k) {
      luaL_error(L, "%s: unknown option '%s'", who, k);
    } else {
      luaL_error(L, "%s: unknown option of type %s", who, luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* longpoll.context([opts]) -> a new scope; longpoll.context(id) -> the
   shared scope with that id (ctx:share() in any Lua state) */
static int context_new(lua_State *L) {
  lp_scope *parent = NULL;
  double timeout;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_Number id = lua_tonumber(L, 1);
    lctxobj *o = new_object(L);
    if (id >= 1 && id < 9007199254740992.0 && id == floor(id))
      o->s = lp_scope_find((unsigned long long)id);
    if (!o->s) luaL_argerror(L, 1, "no context has this id (an id of ctx:share() lasts while the context is held)");
    return 1;
  }
  read_context_options(L, 1, "longpoll.context", &timeout, &parent);
  hold_new(L, new_object(L), parent, timeout);
  return 1;
}

/* ctx:context([opts]) -> a child scope (opts: timeout) */
static int context_child(lua_State *L) {
  lp_scope *parent = check_context(L, 1);
  double timeout;
  read_context_options(L, 2, "longpoll.context:context", &timeout, NULL);
  hold_new(L, new_object(L), parent, timeout);
  return 1;
}

/* ctx:cancel() -> true when this call ended the scope */
static int context_cancel(lua_State *L) {
  lua_pushboolean(L, lp_scope_cancel(check_context(L, 1)));
  return 1;
}

/* ctx:done() -> boolean, never blocks */
static int context_done(lua_State *L) {
  lua_pushboolean(L, lp_scope_err(check_context(L, 1)) != LP_OK);
  return 1;
}

/* ctx:err() -> nil while active, else an error object whose kind is
   "canceled" or "timeout" */
static int context_err(lua_State *L) {
  lp_kind k = lp_scope_err(check_context(L, 1));
  if (k == LP_OK) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushstring(L, lp_kind_name(k));
  lua_pushstring(L, lp_scope_why(k));
  lua_call(L, 2, 1);
  return 1;
}

/* ctx:wait([seconds]) -> done; blocks this OS thread until the scope ends */
static int context_wait(lua_State *L) {
  lp_scope *s = check_context(L, 1);
  lua_Number t = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, t == t, 2, "must be a number of seconds");
  lua_pushboolean(L, lp_scope_wait(s, t < 0 ? -1 : (double)t));
  return 1;
}

/* ctx:fd() -> integer readable once the scope ended, or nil, message */
static int context_fd(lua_State *L) {
  int fd = lp_scope_fd(check_context(L, 1));
  if (fd < 0) return luaL_fileresult(L, 0, NULL);
  lua_pushinteger(L, fd);
  return 1;
}

/* ctx:deadline() -> the deadline on longpoll.now()'s clock, or nil */
static int context_deadline(lua_State *L) {
  double d = lp_scope_deadline(check_context(L, 1));
  if (d > 0) lua_pushnumber(L, (lua_Number)d); else lua_pushnil(L);
  return 1;
}

/* ctx:share() -> an id that longpoll.context(id) turns into this scope in
   any Lua state of the process, while the scope is held */
static int context_share(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_scope_share(check_context(L, 1)));
  return 1;
}

/* ctx:close() and __close: cancel; the object stays usable */
static int context_close(lua_State *L) {
  lp_scope_cancel(check_context(L, 1));
  return 0;
}

/* __gc: drop this object's share; safe to run twice */
static int context_gc(lua_State *L) {
  lctxobj *o = (lctxobj *)luaL_checkudata(L, 1, LP_SCOPE_MT);
  lp_scope_release(o->s);
  o->s = NULL;
  return 0;
}

/* #ctx -> the unfinished requests directly under it */
static int context_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_scope_count(check_context(L, 1)));
  return 1;
}

/* two objects of one scope are equal */
static int context_eq(lua_State *L) {
  lua_pushboolean(L, test_context(L, 1) == test_context(L, 2));
  return 1;
}

/* e.g. "longpoll.context: active, 3 requests, deadline in 1.5 s" */
static int context_tostring(lua_State *L) {
  lctxobj *o = (lctxobj *)luaL_checkudata(L, 1, LP_SCOPE_MT);
  lp_kind k;
  double d;
  size_t n;
  if (!o->s) {
    lua_pushliteral(L, "longpoll.context: (collected)");
    return 1;
  }
  k = lp_scope_err(o->s);
  if (k != LP_OK) {
    lua_pushfstring(L, "longpoll.context: %s", lp_kind_name(k));
    return 1;
  }
  n = lp_scope_count(o->s);
  lua_pushfstring(L, "longpoll.context: active, %d request%s", (int)n, n == 1 ? "" : "s");
  d = lp_scope_deadline(o->s);
  if (d > 0) {
    char left[32];
    snprintf(left, sizeof left, "%.3g", d - lp_clock());
    lua_pushfstring(L, ", deadline in %s s", left);
    lua_concat(L, 2);
  }
  return 1;
}

static const luaL_Reg context_meth[] = {
  {"cancel", context_cancel}, {"done", context_done}, {"err", context_err},
  {"wait", context_wait}, {"fd", context_fd}, {"deadline", context_deadline},
  {"share", context_share}, {"context", context_child}, {"close", context_close},
  {NULL, NULL}
};

static const luaL_Reg context_metameth[] = {
  {"__index", NULL}, {"__gc", context_gc}, {"__close", context_close},
  {"__len", context_len}, {"__eq", context_eq}, {"__tostring", context_tostring},
  {NULL, NULL}
};

/* set module.context (the constructor) and module.context_metatable; the
   module table at index `module` must hold `error` (core.error) already */
static void context_open(lua_State *L, int module) {
  module = lua_absindex(L, module);
  lua_getfield(L, module, "error");
  luaL_newmetatable(L, LP_SCOPE_MT);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, context_metameth, 1);
  luaL_newlibtable(L, context_meth);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, context_meth, 1);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, module, "context_metatable");
  lua_pushcclosure(L, context_new, 1);
  lua_setfield(L, module, "context");
}

/* ---- module functions ---- */

/* the request at index i of the list at index 1, or raise */
static lreq *wait_any_item(lua_State *L, lua_Integer i) {
  lreq *q;
  lua_rawgeti(L, 1, i);
  q = test_request(L, -1, reqmt_index);
  if (!q || !q->r)
    luaL_error(L, "longpoll.wait_any: item %d is not a request", (int)i);
  lua_pop(L, 1);                /* the list keeps it alive */
  return q;
}

/* longpoll.wait_any(reqs, seconds) -> the first finished request, or nil
   when `seconds` passed; raises on a bad list or out of memory */
static int lp_wait_any_l(lua_State *L) {
  lua_Number s;
  size_t n, i;
  lp_req **v;
  lp_req *got;
  luaL_checktype(L, 1, LUA_TTABLE);
  s = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, s == s, 2, "must be a number of seconds");
  n = (size_t)lua_rawlen(L, 1); /* never __len: it may lie about the size */
  luaL_argcheck(L, n <= LP_WAIT_ANY_MAX, 1, "too many requests");
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  v = (lp_req **)lp_newuserdata(L, n * sizeof *v, 0);  /* GC owns it */
  for (i = 0; i < n; i++)       /* check every item before acting on any */
    v[i] = wait_any_item(L, (lua_Integer)i + 1)->r;
  for (i = 0; i < n; i++)
    start(wait_any_item(L, (lua_Integer)i + 1));
  errno = 0;
  got = lp_wait_any(v, n, s < 0 ? -1 : s);
  if (!got && errno == ENOMEM) return out_of_memory(L);
  for (i = 0; got && i < n; i++)
    if (v[i] == got) {
      lua_rawgeti(L, 1, (lua_Integer)i + 1);
      return 1;
    }
  lua_pushnil(L);
  return 1;
}

/* the settings longpoll.configure knows, in lp_config's order, and the
   least value each takes */
static const struct { const char *name; long min; } config_keys[] = {
  {"max_host_connections", 0}, {"max_connections", 0},
  {"max_idle_connections", 0}, {"max_streams", 1}, {"buffer_size", 0}
};
#define N_CONFIG ((int)(sizeof config_keys / sizeof config_keys[0]))
enum { CFG_BUFFER_SIZE = 4 };

/* longpoll.configure{name = n, ...} -> the settings now in force (a table);
   only the settings named change. longpoll.configure() reads them */
static int lp_configure(lua_State *L) {
  long v[N_CONFIG];
  lp_config set, now;
  int k, given = !lua_isnoneornil(L, 1);
  if (given) luaL_checktype(L, 1, LUA_TTABLE);
  for (k = 0; k < N_CONFIG; k++) v[k] = -1;
  lua_settop(L, 1);
  lua_pushnil(L);
  while (given && lua_next(L, 1)) {
    lua_Integer n;
    for (k = 0; k < N_CONFIG && (lua_type(L, -2) != LUA_TSTRING ||
                                  strcmp(config_keys[k].name, lua_tostring(L, -2))); k++) {}
    if (k == N_CONFIG) luaL_error(L, "longpoll.configure: unknown option '%s'",
                                  lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
    n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
    if (n < config_keys[k].min || n > LONG_MAX)
      luaL_error(L, "longpoll.configure: option '%s' must be %s integer", config_keys[k].name,
                 config_keys[k].min ? "a positive" : "a non-negative");
    if (k == CFG_BUFFER_SIZE && n != 0 && (n < LP_MIN_BUFFER_SIZE || n > LP_MAX_BUFFER_SIZE))
      luaL_error(L, "longpoll.configure: option 'buffer_size' must be 0 (libcurl's) "
                 "or %d to %d bytes", LP_MIN_BUFFER_SIZE, LP_MAX_BUFFER_SIZE);
    v[k] = (long)n;
    lua_pop(L, 1);
  }
  if (!get_ctx(L)->engine) luaL_error(L, "longpoll: the engine could not be started");
  set.max_host_connections = v[0];
  set.max_connections = v[1];
  set.max_idle_connections = v[2];
  set.max_streams = v[3];
  set.buffer_size = v[4];
  lp_engine_configure(get_ctx(L)->engine, given ? &set : NULL, &now);
  v[0] = now.max_host_connections;
  v[1] = now.max_connections;
  v[2] = now.max_idle_connections;
  v[3] = now.max_streams;
  v[4] = now.buffer_size;
  lua_createtable(L, 0, N_CONFIG);
  for (k = 0; k < N_CONFIG; k++) {
    lua_pushinteger(L, v[k]);
    lua_setfield(L, -2, config_keys[k].name);
  }
  return 1;
}

/* core.codec(encode, decode, null): the JSON functions the binding calls */
static int lp_codec(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 3);
  for (int i = 1; i <= 3; i++) {
    lua_pushvalue(L, i);
    lp_setuv(L, ctx_index, i);
  }
  return 0;
}

/* core.error(kind, cause [, fields [, req]]) -> a new error object, the same
   as run() returns; an unknown kind raises */
static int lp_error(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *cause = luaL_checkstring(L, 2);
  lp_req *r = NULL;
  int k;
  for (k = LP_ECANCELED; k < LP_NKINDS && strcmp(lp_kind_name((lp_kind)k), name); k++) {}
  if (k == LP_NKINDS)
    luaL_argerror(L, 1, lua_pushfstring(L, "unknown error kind '%s'", name));
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  if (!lua_isnoneornil(L, 4)) {
    lreq *q = test_request(L, 4, reqmt_index);
    if (!q) q = *(lreq **)luaL_checkudata(L, 4, LP_REQUEST);  /* raises */
    luaL_argcheck(L, q->r != NULL, 4, "request already collected");
    r = q->r;
  }
  push_error(L, (lp_kind)k, cause, r, lua_isnoneornil(L, 3) ? 0 : 3);
  return 1;
}

/* longpoll.now() -> seconds on the monotonic clock, as a float */
static int lp_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)now_seconds());
  return 1;
}

/* longpoll.sleep(seconds): blocks this OS thread for 0 to 1e9 seconds */
static int lp_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts;
  luaL_argcheck(L, s >= 0 && s <= 1e9, 1, "must be from 0 to 1e9 seconds");
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
  /* a signal handler ran: sleep on for what remains */
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  return 0;
}

/* add `delta` to the count of this state's live contexts; the new count */
static lua_Integer count_contexts(lua_State *L, int delta) {
  lua_Integer n;
  lua_getfield(L, LUA_REGISTRYINDEX, LP_STATES);
  n = lua_tointeger(L, -1) + delta;
  lua_pop(L, 1);
  lua_pushinteger(L, n);
  lua_setfield(L, LUA_REGISTRYINDEX, LP_STATES);
  return n;
}

/* the context's __gc: free the requests nobody will finalize (made by a
   finalizer during lua_close), then drop this state's engine share; the
   last one joins the worker. Safe to run twice */
static int ctx_gc(lua_State *L) {
  lctx *c = (lctx *)luaL_checkudata(L, 1, LP_STATE);
  int i;
  while (c->live) drop_request(c->live);
  /* LuaJIT finalizes userdata made during lua_close in a later round, after
     the package library unloaded this file: once the state's last context
     is gone (it freed every request left), requests lose their __gc. A new
     luaopen sets it again */
  if (!c->closed && count_contexts(L, -1) == 0) {
    luaL_getmetatable(L, LP_GUARD);
    lua_pushnil(L);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
  }
  c->closed = 1;
  lp_engine_release(c->engine);
  c->engine = NULL;
  free(c->buf);
  c->buf = NULL;
  c->cap = 0;
  for (i = 0; i < LP_URL_MEMO; i++) {
    free(c->memo[i].url);
    c->memo[i].url = NULL;
  }
  return 0;
}

static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "message") != LUA_TSTRING) lua_pushliteral(L, "longpoll.error");
  return 1;
}

static int error_concat(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  luaL_tolstring(L, 2, NULL);
  lua_concat(L, 2);
  return 1;
}

static const luaL_Reg meth[] = {
  {"start", request_start}, {"run", request_run}, {"done", request_done},
  {"wait", request_wait}, {"cancel", request_cancel},
  {"status", request_status}, {"fd", request_fd}, {"close", request_close},
  {"next", request_next}, {"poll", request_poll}, {"ready", request_ready},
  {"progress", request_progress}, {"response", request_response}, {NULL, NULL}
};

static const luaL_Reg metameth[] = {
  {"__index", NULL},
  {"__tostring", request_tostring}, {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"request", request_new}, {"wait_any", lp_wait_any_l},
  {"configure", lp_configure}, {"codec", lp_codec}, {"error", lp_error},
  {"now", lp_now}, {"sleep", lp_sleep}, {"misuse", lp_misuse}, {NULL, NULL}
};

/* push the methods' cache (see cache_index): made once per state */
static void push_cache(lua_State *L) {
  int i;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, reg_key(KEY_CACHE)) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, C_N - 1, 0);
  lua_createtable(L, 0, 1);               /* the responses' metatable: no
                                             __name, tostring shows a table */
  lua_newtable(L);                        /* raw header blocks not read yet */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -4, C_HEADS);
  lua_pushcclosure(L, response_index, 1);
  lua_setfield(L, -2, "__index");
  lua_rawseti(L, -2, C_RESPONSE_MT);
  for (i = C_STATUS; i < C_N; i++) {
    lua_pushstring(L, cache_strings[i - C_STATUS]);
    lua_rawseti(L, -2, i);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, reg_key(KEY_CACHE));
}

/* luaL_newmetatable, also kept under the registry key `k` (for functions
   without it as an upvalue) */
static int new_metatable(lua_State *L, const char *name, int k) {
  int made = luaL_newmetatable(L, name);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, reg_key(k));
  return made;
}

LUALIB_API int luaopen_longpoll_core(lua_State *L) {
  const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
  lctx *c;
  int i;
  if (cv->version_num < LP_MIN_CURL_VERSION_NUM)  /* built against newer headers */
    return luaL_error(L, "lua-longpoll needs libcurl " LP_MIN_CURL_VERSION
                      " or newer; the process loaded libcurl %s", cv->version);
  lua_newtable(L);                        /* module */
  c = (lctx *)lp_newuserdata(L, sizeof *c, UV_NCTX);
  memset(c, 0, sizeof *c);
  luaL_newmetatable(L, LP_STATE);
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  count_contexts(L, 1);
  lua_createtable(L, 0, OPT_N);           /* option name -> its slot */
  for (i = 0; i < OPT_N; i++) {
    lua_pushinteger(L, i);
    lua_setfield(L, -2, opt_names[i]);
  }
  lp_setuv(L, -2, UV_OPTION_SLOTS);
  c->engine = lp_engine_acquire();         /* upvalues keep the context */
  c->h2c_reuse_broken = cv->version_num < 0x080000;
  /* metatables are shared by every context of the state (a reloaded module
     finds them made); methods use each request's own context, never an
     upvalue of the module */
  new_metatable(L, LP_ERROR, KEY_ERROR);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, error_concat);
  lua_setfield(L, -2, "__concat");
  lua_setfield(L, -3, "error_metatable");
  luaL_newmetatable(L, LP_GUARD);         /* __gc (re)set: see ctx_gc */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, guard_gc, 1);       /* it checks its argument: upvalue */
  lua_setfield(L, -2, "__gc");
  luaL_newmetatable(L, LP_REQUEST);       /* like liolib's createmeta */
  lua_pushvalue(L, -1);                   /* upvalues: the metatable (to */
  push_cache(L);                          /* check requests) and the cache */
  luaL_setfuncs(L, metameth, 2);
  luaL_newlibtable(L, meth);
  lua_pushvalue(L, -2);
  push_cache(L);
  luaL_setfuncs(L, meth, 2);
  lua_getfield(L, -1, "close");           /* __close is close() itself */
  lua_setfield(L, -3, "__close");
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  lua_setfield(L, -5, "request_metatable");
  lua_insert(L, -2);                      /* module, context, request mt, guard mt */
  luaL_setfuncs(L, funcs, 3);             /* pops them but the module */
  lua_pushliteral(L, LP_VERSION);
  lua_setfield(L, -2, "version");
  lua_createtable(L, 0, (int)(sizeof opt_names / sizeof opt_names[0]));
  for (i = 0; opt_names[i]; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, opt_names[i]);
  }
  lua_setfield(L, -2, "options");
  context_open(L, -1);
  return 1;
}
