/*
 * longpoll.c - the Lua binding: turns lp_req records into `longpoll.request`
 * objects and their results into Lua values. Only this file knows Lua.
 *
 * Every function gets the per-state context as upvalue 1: a userdata holding
 * this state's share of the process-wide engine, with the JSON codec (encode,
 * decode, null) in its user values. The context is created in luaopen, before
 * any request, so at lua_close every request is finalized (canceled) before
 * the context drops the engine, and the engine's worker is joined before the
 * package library unloads this file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lp_compat.h"
#include "lp_engine.h"

#ifndef LP_VERSION
#define LP_VERSION "0.0.0"
#endif

#define LP_REQUEST "longpoll.request"
#define LP_ERROR "longpoll.error"
#define LP_DEFAULT_MAX_BODY (16 * 1024 * 1024)
#define LP_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define LP_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define LP_DEFAULT_MAX_QUEUED 1000

enum { DECODE_AUTO, DECODE_JSON, DECODE_NONE };
enum { UV_CODEC_ENCODE = 1, UV_CODEC_DECODE, UV_CODEC_NULL };
enum { UV_VALUE = 1, UV_SECOND };  /* cached results of a request */

typedef struct lctx {
  lp_engine *engine;
} lctx;

typedef struct lreq {
  lp_req *r;                    /* NULL once collected */
  CURLU *u;                     /* only while the url is being built */
  int decode;
  lp_state settled;             /* state of the cached results, or LP_READY */
} lreq;

static const char *const state_names[] = {
  "ready", "running", "done", "failed", "canceled"
};

#define ctx_index lua_upvalueindex(1)

static lctx *get_ctx(lua_State *L) {
  return (lctx *)lua_touserdata(L, ctx_index);
}

/* the one checked accessor every method uses */
static lreq *check_request(lua_State *L, int i) {
  lreq *q = (lreq *)luaL_checkudata(L, i, LP_REQUEST);
  luaL_argcheck(L, q->r != NULL, i, "request already collected");
  return q;
}

static char *xstrdup(lua_State *L, const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (!p) luaL_error(L, "longpoll: out of memory");
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

/* ---- options ---- */

/* the one list of request options: request_new accepts exactly these, and
   the module exports them as core.options for the Lua layer */
static const char *const opt_names[] = {
  "url", "method", "headers", "query", "body", "timeout", "connect_timeout",
  "max_body", "decode", "follow_redirects", "verify", "cainfo", "user_agent",
  "http_version", "stream", "max_message", "max_queued", NULL
};

static int opt_error(lua_State *L, const char *name, const char *what) {
  return luaL_error(L, "longpoll.request: option '%s' %s", name, what);
}

/* push opts[name], raw: no __index may run (and free a string we hold)
   while options are read; returns its type */
static int opt_get(lua_State *L, int o, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, o);
}

/* push opts[name]; error unless its type is `t` or nil; returns the type */
static int opt_field(lua_State *L, int o, const char *name, int t) {
  int got = opt_get(L, o, name);
  if (got != LUA_TNIL && got != t) {
    lua_pushfstring(L, "must be a %s (got %s)", lua_typename(L, t),
                    luaL_typename(L, -1));
    opt_error(L, name, lua_tostring(L, -1));
  }
  return got;
}

static const char *opt_string(lua_State *L, int o, const char *name,
                              const char *def) {
  const char *s = def;
  if (opt_field(L, o, name, LUA_TSTRING) == LUA_TSTRING) s = lua_tostring(L, -1);
  lua_pop(L, 1);                /* the string stays alive in opts */
  return s;
}

static int opt_bool(lua_State *L, int o, const char *name, int def) {
  int v = def;
  if (opt_field(L, o, name, LUA_TBOOLEAN) == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* a duration in seconds as milliseconds (rounded up), `def` when absent */
static long opt_seconds(lua_State *L, int o, const char *name, long def) {
  long ms = def;
  if (opt_field(L, o, name, LUA_TNUMBER) == LUA_TNUMBER) {
    lua_Number s = lua_tonumber(L, -1);
    if (!(s > 0 && s <= 86400.0 * 365))
      opt_error(L, name, "must be a positive number of seconds");
    ms = (long)ceil(s * 1000.0);
  }
  lua_pop(L, 1);
  return ms;
}

/* a positive integer option as a size, `def` when absent; *given says if it was */
static size_t opt_size(lua_State *L, int o, const char *name, size_t def, int *given) {
  size_t v = def;
  *given = opt_field(L, o, name, LUA_TNUMBER) == LUA_TNUMBER;
  if (*given) {
    lua_Number n = lua_tonumber(L, -1);
    if (!(n >= 1 && n <= 9007199254740992.0 && n == floor(n)))
      opt_error(L, name, "must be a positive integer");
    v = (size_t)n;
  }
  lua_pop(L, 1);
  return v;
}

static int has_crlf(const char *s, size_t len) {
  return memchr(s, '\r', len) || memchr(s, '\n', len);
}

static int is_token(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (*s <= 32 || *s >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *s)) return 0;
  return 1;
}

/* headers table -> curl_slist on r; sets *has_ctype */
static void opt_headers(lua_State *L, int o, lp_req *r, int *has_ctype) {
  if (opt_field(L, o, "headers", LUA_TTABLE) == LUA_TTABLE) {
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      const char *name, *value;
      size_t vlen;
      struct curl_slist *l;
      if (lua_type(L, -2) != LUA_TSTRING || !is_token(lua_tostring(L, -2)))
        opt_error(L, "headers", "has a name that is not a valid header name");
      name = lua_tostring(L, -2);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
        lua_pushfstring(L, "value of '%s' must be a string", name);
        opt_error(L, "headers", lua_tostring(L, -1));
      }
      lua_pushvalue(L, -1);     /* convert a copy, not the table value */
      value = lua_tolstring(L, -1, &vlen);
      if (has_crlf(value, vlen) || strlen(value) != vlen) {
        lua_pushfstring(L, "value of '%s' contains CR, LF or NUL", name);
        opt_error(L, "headers", lua_tostring(L, -1));
      }
      if (strcasecmp(name, "content-type") == 0) *has_ctype = 1;
      /* "Name;" is curl's way to send a header with an empty value */
      lua_pushfstring(L, vlen ? "%s: %s" : "%s;", name, value);
      l = curl_slist_append(r->opts.headers, lua_tostring(L, -1));
      if (!l) luaL_error(L, "longpoll: out of memory");
      r->opts.headers = l;
      lua_pop(L, 3);
    }
  }
  lua_pop(L, 1);
}

/* push `s` percent-encoded by libcurl */
static void push_escaped(lua_State *L, const char *s) {
  char *e = curl_easy_escape(NULL, s, 0);
  if (!e) luaL_error(L, "longpoll: out of memory");
  lua_pushstring(L, e);
  curl_free(e);
}

/* url plus the query table, URL-encoded by libcurl, into r->opts.url */
static void opt_url(lua_State *L, int o, lreq *q) {
  const char *url = opt_string(L, o, "url", NULL);
  char *full = NULL;
  if (!url) opt_error(L, "url", "is required");
  if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
    opt_error(L, "url", "must start with http:// or https://");
  if (opt_field(L, o, "query", LUA_TTABLE) != LUA_TTABLE) {
    /* no query to add: a cheap check here, libcurl parses it on the worker
       (parsing it twice cost a fifth of the main thread's work per request) */
    const char *host = strstr(url, "://") + 3, *p;
    for (p = url; *p; p++)
      if ((unsigned char)*p <= ' ' || *p == 0x7f) opt_error(L, "url", "is not a valid URL");
    if (!*host || *host == '/' || *host == '?' || *host == '#' || *host == ':')
      opt_error(L, "url", "is not a valid URL");
    q->r->opts.url = xstrdup(L, url, strlen(url));
    lua_pop(L, 1);
    return;
  }
  if (!(q->u = curl_url())) luaL_error(L, "longpoll: out of memory");
  if (curl_url_set(q->u, CURLUPART_URL, url, 0) != CURLUE_OK)
    opt_error(L, "url", "is not a valid URL");
  {
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      int kt = lua_type(L, -2), vt = lua_type(L, -1);
      if ((kt != LUA_TSTRING && kt != LUA_TNUMBER) ||
          (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN))
        opt_error(L, "query", "must map names to strings or numbers");
      /* name and value escaped apart: an '=' in the name stays in the name */
      lua_pushvalue(L, -2);
      push_escaped(L, lua_tostring(L, -1));
      lua_replace(L, -2);
      lua_pushliteral(L, "=");
      if (vt == LUA_TBOOLEAN) lua_pushstring(L, lua_toboolean(L, -3) ? "true" : "false");
      else lua_pushvalue(L, -3);
      push_escaped(L, lua_tostring(L, -1));
      lua_replace(L, -2);
      lua_concat(L, 3);
      if (curl_url_set(q->u, CURLUPART_QUERY, lua_tostring(L, -1), CURLU_APPENDQUERY)
          != CURLUE_OK)
        opt_error(L, "query", "could not be added to the URL");
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
  if (curl_url_get(q->u, CURLUPART_URL, &full, 0) != CURLUE_OK)
    opt_error(L, "url", "is not a valid URL");
  q->r->opts.url = strdup(full);
  curl_free(full);
  curl_url_cleanup(q->u);
  q->u = NULL;
  if (!q->r->opts.url) luaL_error(L, "longpoll: out of memory");
}

/* body string (or table encoded with the codec) into r; 1 when it was a table */
static int opt_body(lua_State *L, int o, lp_req *r) {
  int t = opt_get(L, o, "body"), encoded = 0;
  const char *s;
  size_t len;
  if (t == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (t == LUA_TTABLE) {
    lp_getuv(L, ctx_index, UV_CODEC_ENCODE);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_pushfstring(L, "could not be encoded as JSON: %s", lua_tostring(L, -1));
      opt_error(L, "body", lua_tostring(L, -1));
    }
    encoded = 1;
  } else if (t != LUA_TSTRING) {
    opt_error(L, "body", "must be a string or a table");
  }
  s = lua_tolstring(L, -1, &len);
  r->opts.body = xstrdup(L, s, len);
  r->opts.body_len = len;
  lua_pop(L, 1);
  return encoded;
}

static void check_keys(lua_State *L, int o) {
  lua_pushnil(L);
  while (lua_next(L, o)) {
    int i = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (; opt_names[i] && strcmp(opt_names[i], k) != 0; i++) {}
      if (opt_names[i]) { lua_pop(L, 1); continue; }
      luaL_error(L, "longpoll.request: unknown option '%s'", k);
    }
    luaL_error(L, "longpoll.request: unknown option of type %s",
               luaL_typename(L, -2));
  }
}

/* stream, max_message, max_queued into r */
static void opt_stream(lua_State *L, int o, lp_req *r) {
  const char *s = opt_string(L, o, "stream", NULL);
  int given_message, given_queued;
  if (s && (r->opts.stream = lp_stream_format_of(s)) < 0)
    opt_error(L, "stream", "must be \"sse\", \"ndjson\", \"json-seq\" or \"lines\"");
  r->opts.max_message = opt_size(L, o, "max_message", LP_DEFAULT_MAX_MESSAGE, &given_message);
  r->opts.max_queued = opt_size(L, o, "max_queued", LP_DEFAULT_MAX_QUEUED, &given_queued);
  if (!s && (given_message || given_queued))
    opt_error(L, given_message ? "max_message" : "max_queued", "applies only with 'stream'");
}

/* longpoll.request(opts): validate opts into a new record; sends nothing */
static int request_new(lua_State *L) {
  static const char *const decodes[] = {"auto", "json", "none", NULL};
  static const char *const versions[] = {"auto", "1.1", "2", NULL};
  static const long curl_versions[] = {
    CURL_HTTP_VERSION_2TLS, CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
  };
  lctx *c = get_ctx(L);
  lreq *q;
  lp_req *r;
  const char *method, *s;
  int has_ctype = 0, i;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  check_keys(L, 1);
  if (!c->engine) luaL_error(L, "longpoll: the engine could not be started");
  /* a safe, empty object first: from here on __gc frees what we attach */
  q = (lreq *)lp_newuserdata(L, sizeof *q, 2);
  memset(q, 0, sizeof *q);
  luaL_setmetatable(L, LP_REQUEST);
  if (!(q->r = r = lp_req_new())) luaL_error(L, "longpoll: out of memory");
  opt_url(L, 1, q);
  opt_headers(L, 1, r, &has_ctype);
  if (opt_body(L, 1, r) && !has_ctype) {
    struct curl_slist *l = curl_slist_append(r->opts.headers,
                                             "Content-Type: application/json");
    if (!l) luaL_error(L, "longpoll: out of memory");
    r->opts.headers = l;
  }
  method = opt_string(L, 1, "method", r->opts.body ? "POST" : "GET");
  for (i = 0; method[i]; i++)
    if (method[i] < 'A' || method[i] > 'Z') break;
  if (i == 0 || method[i]) opt_error(L, "method", "must be an upper-case HTTP method");
  r->opts.method = xstrdup(L, method, strlen(method));
  r->opts.timeout_ms = opt_seconds(L, 1, "timeout", 0);
  r->opts.connect_timeout_ms = opt_seconds(L, 1, "connect_timeout",
                                           LP_DEFAULT_CONNECT_TIMEOUT_MS);
  r->opts.max_body = LP_DEFAULT_MAX_BODY;
  if (opt_field(L, 1, "max_body", LUA_TNUMBER) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) && (lua_Number)n != lua_tonumber(L, -1)) n = 0;
    if (n <= 0) opt_error(L, "max_body", "must be a positive integer");
    r->opts.max_body = (curl_off_t)n;
  }
  lua_pop(L, 1);
  s = opt_string(L, 1, "decode", "auto");
  for (q->decode = 0; decodes[q->decode] && strcmp(decodes[q->decode], s); q->decode++) {}
  if (!decodes[q->decode]) opt_error(L, "decode", "must be \"auto\", \"json\" or \"none\"");
  s = opt_string(L, 1, "http_version", "auto");
  for (i = 0; versions[i] && strcmp(versions[i], s); i++) {}
  if (!versions[i]) opt_error(L, "http_version", "must be \"auto\", \"1.1\" or \"2\"");
  r->opts.http_version = curl_versions[i];
  r->opts.follow_redirects = opt_bool(L, 1, "follow_redirects", 1);
  r->opts.verify = opt_bool(L, 1, "verify", 1);
  if ((s = opt_string(L, 1, "cainfo", NULL)))
    r->opts.cainfo = xstrdup(L, s, strlen(s));
  s = opt_string(L, 1, "user_agent", "lua-longpoll/" LP_VERSION);
  if (has_crlf(s, strlen(s))) opt_error(L, "user_agent", "contains CR or LF");
  r->opts.user_agent = xstrdup(L, s, strlen(s));
  opt_stream(L, 1, r);
  return 1;
}

/* ---- results ---- */

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
  luaL_getmetatable(L, LP_ERROR);
  lua_setmetatable(L, -2);
}

/* headers of the last response as a table, names lowercased, repeats joined */
static void push_headers(lua_State *L, const lp_buf *h) {
  const char *p = h->data ? h->data : "", *end = p + h->len;
  lua_newtable(L);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;
    if (!eol) eol = end;
    colon = memchr(p, ':', (size_t)(eol - p));
    if (colon && colon > p && *p != ' ' && *p != '\t') {
      char name[256];
      size_t n = (size_t)(colon - p), k;
      if (n >= sizeof name) n = sizeof name - 1;
      for (k = 0; k < n; k++) name[k] = (char)((p[k] >= 'A' && p[k] <= 'Z') ? p[k] + 32 : p[k]);
      name[n] = '\0';
      for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {}
      for (ve = eol; ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'); ve--) {}
      if (lua_getfield(L, -1, name) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_setfield(L, -2, name);
    }
    p = eol + 1;
  }
}

static void push_response(lua_State *L, lp_req *r) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, r->status);
  lua_setfield(L, -2, "status");
  push_headers(L, &r->head);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
  lua_setfield(L, -2, "body");
  push_url(L, r->effective_url ? r->effective_url : r->opts.url);
  lua_setfield(L, -2, "url");
  lua_pushnumber(L, r->elapsed);
  lua_setfield(L, -2, "elapsed");
  lua_pushstring(L, r->http_version == CURL_HTTP_VERSION_2_0 ? "2"
                  : r->http_version == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
  lua_setfield(L, -2, "http_version");
  /* libcurl gives 0 for "none" and for "now": the header tells them apart */
  lua_getfield(L, -1, "headers");
  if (lua_getfield(L, -1, "retry-after") != LUA_TNIL) {
    lua_pushinteger(L, r->retry_after > 0 ? (lua_Integer)r->retry_after : 0);
    lua_setfield(L, -4, "retry_after");
  }
  lua_pop(L, 2);
}

static int is_json_type(const char *ct) {
  const char *semi;
  size_t n;
  if (!ct) return 0;
  semi = strchr(ct, ';');
  n = semi ? (size_t)(semi - ct) : strlen(ct);
  while (n > 0 && ct[n - 1] == ' ') n--;
  return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
         (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
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

/* decode the JSON text on top of the stack in its place; 0 leaves the
   codec's error message there instead */
static int decode_json(lua_State *L) {
  lp_getuv(L, ctx_index, UV_CODEC_DECODE);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;
  if (!LP_INTEGERS) return 1;
  if (lua_istable(L, -1)) {
    integerize(L, lua_gettop(L), 0);
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, -1);
    if (n == floor(n) && fabs(n) < 9007199254740992.0) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)n);
    }
  }
  return 1;
}

/* decode the body of a finished, successful request per its decode mode;
   pushes the value, or nil and an error object */
static void push_value(lua_State *L, lreq *q, int resp) {
  lp_req *r = q->r;
  const char *b = r->body.data ? r->body.data : "", *e = b + r->body.len, *p = b;
  int json;
  for (; p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'); p++) {}
  if (q->decode == DECODE_NONE) {
    lua_getfield(L, resp, "body");
    return;
  }
  if (p == e) {                 /* empty: "no news" in auto and json modes */
    lua_newtable(L);
    return;
  }
  json = q->decode == DECODE_JSON || *p == '[' || *p == '{';
  if (!json) {
    lua_getfield(L, resp, "headers");
    lua_getfield(L, -1, "content-type");
    json = is_json_type(lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  if (!json) {
    lua_getfield(L, resp, "body");
    return;
  }
  lua_getfield(L, resp, "body");
  if (decode_json(L)) return;
  lua_pushfstring(L, "invalid JSON: %s", lua_tostring(L, -1));
  push_error(L, LP_EDECODE, lua_tostring(L, -1), r, 0);
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_insert(L, -2);
}

/* push the results of request `i` (2 values) and return 2, or return 0 when
   it has not finished; results are built once, then served from the cache */
static int push_results(lua_State *L, int i, lreq *q) {
  lp_req *r = q->r;
  lp_state s;
  int resp;
  if (q->settled) {
    lp_getuv(L, i, UV_VALUE);
    lp_getuv(L, i, UV_SECOND);
    return 2;
  }
  s = lp_req_state(r);
  if (!lp_state_finished(s)) return 0;
  if (s == LP_CANCELED) {
    lua_pushnil(L);
    push_error(L, LP_ECANCELED, "request canceled", r, 0);
  } else {
    if (r->status > 0) push_response(L, r); else lua_pushnil(L);
    resp = lua_gettop(L);
    if (s == LP_DONE) {
      push_value(L, q, resp);  /* value, or nil + error */
    } else {
      lua_pushnil(L);
      push_error(L, r->kind, r->errbuf, r, 0);
      if (r->curl_code != CURLE_OK) {
        lua_pushinteger(L, r->curl_code);
        lua_setfield(L, -2, "curl_code");
      }
    }
    if (lua_gettop(L) == resp + 2) {          /* nil, err: attach the response */
      if (r->status > 0) {
        lua_pushinteger(L, r->status);
        lua_setfield(L, -2, "status");
        lua_pushvalue(L, resp);
        lua_setfield(L, -2, "response");
      }
      s = LP_FAILED;
    } else {
      lua_pushvalue(L, resp);                 /* value, response */
    }
    lua_remove(L, resp);
  }
  lp_req_drop_response(r);     /* the body now lives in Lua */
  lua_pushvalue(L, -2);
  lp_setuv(L, i, UV_VALUE);
  lua_pushvalue(L, -1);
  lp_setuv(L, i, UV_SECOND);
  q->settled = s;
  return 2;
}

/* ---- methods ---- */

static void start(lua_State *L, lreq *q) {
  if (lp_req_state(q->r) == LP_READY) lp_req_start(get_ctx(L)->engine, q->r);
}

/* req:start() -> req */
static int request_start(lua_State *L) {
  start(L, check_request(L, 1));
  lua_settop(L, 1);
  return 1;
}

static int is_stream(const lreq *q) { return q->r->opts.stream >= 0; }

/* req:run() -> results; blocks this OS thread until the request finishes */
static int request_run(lua_State *L) {
  lreq *q = check_request(L, 1);
  int n;
  if (is_stream(q))
    return luaL_error(L, "longpoll.request: a stream request is read with "
                      "next(), await_next(), messages() or poll()");
  n = push_results(L, 1, q);
  if (n) return n;
  start(L, q);
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
  start(L, q);
  lua_pushboolean(L, lp_req_wait(q->r, s < 0 ? -1 : s));
  return 1;
}

/* req:cancel() -> true when this call ended the request */
static int request_cancel(lua_State *L) {
  lua_pushboolean(L, lp_req_cancel(check_request(L, 1)->r));
  return 1;
}

/* req:status() -> "ready" | "running" | "done" | "failed" | "canceled" */
static int request_status(lua_State *L) {
  lreq *q = check_request(L, 1);
  lp_state s = lp_req_state(q->r);
  if (s == LP_DONE && !is_stream(q)) { /* a body that fails to decode makes it failed */
    push_results(L, 1, q);
    s = q->settled;
  }
  lua_pushstring(L, state_names[q->settled ? q->settled : s]);
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
  lreq *q = (lreq *)luaL_checkudata(L, 1, LP_REQUEST);
  if (q->r) lp_req_cancel(q->r);
  return 0;
}

/* __gc: cancel and drop Lua's share of the record; safe to run twice */
static int request_gc(lua_State *L) {
  lreq *q = (lreq *)luaL_checkudata(L, 1, LP_REQUEST);
  if (q->u) { curl_url_cleanup(q->u); q->u = NULL; }
  if (q->r) {
    lp_req_cancel(q->r);
    lp_req_release(q->r);
    q->r = NULL;
  }
  return 0;
}

static int request_tostring(lua_State *L) {
  lreq *q = (lreq *)luaL_checkudata(L, 1, LP_REQUEST);
  if (!q->r || !q->r->opts.url) {
    lua_pushliteral(L, "longpoll.request: (closed)");
  } else {
    lp_state s = lp_req_state(q->r);
    if (s == LP_DONE && !q->settled && !is_stream(q)) { /* as status(): decoding may fail it */
      push_results(L, 1, q);
      lua_pop(L, 2);
    }
    if (q->settled) s = q->settled;
    lua_pushfstring(L, "longpoll.request: %s ", q->r->opts.method);
    push_url(L, q->r->opts.url);
    lua_pushfstring(L, " (%s)", state_names[s]);
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
  int f = q->r->opts.stream;
  if (q->decode == DECODE_NONE) return MSG_RAW;
  if (q->decode == DECODE_JSON || f == LP_STREAM_NDJSON || f == LP_STREAM_JSON_SEQ)
    return MSG_JSON;
  return f == LP_STREAM_SSE ? MSG_SNIFF : MSG_RAW;
}

/* push the value of text [p, p+n); 0 with an error message pushed instead
   when it had to be JSON and is not */
static int push_payload(lua_State *L, int mode, const char *p, size_t n) {
  size_t i = 0;
  lua_pushlstring(L, p, n);
  if (mode == MSG_SNIFF) {
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
    if (i == n || (p[i] != '[' && p[i] != '{')) return 1;
  }
  if (mode == MSG_RAW || decode_json(L)) return 1;
  if (mode == MSG_JSON) return 0;
  lua_pop(L, 1);                /* auto: not JSON after all, keep the text */
  lua_pushlstring(L, p, n);
  return 1;
}

/* push message m as Lua sees it (SSE: a table {event, data, id, retry});
   0 with an error message pushed instead, as push_payload */
static int push_msg(lua_State *L, const lreq *q, const lp_msg *m) {
  if (!m->event) return push_payload(L, msg_mode(q), m->data, m->len);
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
  if (!push_payload(L, msg_mode(q), m->data, m->len)) {
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

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static lreq *check_stream(lua_State *L, int i) {
  lreq *q = check_request(L, i);
  luaL_argcheck(L, is_stream(q), i, "not a stream request (no 'stream' option)");
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
  start(L, q);
  if (!forever) deadline = mono_now() + s;
  for (;;) {
    lp_state st = lp_req_state(q->r);
    lp_msg *m;
    double left = -1;
    if (stream_over(q)) return stream_end(L, 1, q);
    if ((m = lp_req_take(q->r, 1))) {
      int ok = push_msg(L, q, m);
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
      left = deadline - mono_now();
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
  start(L, q);
  if (stream_over(q)) return stream_end(L, 1, q);
  st = lp_req_state(q->r);
  m = lp_req_take(q->r, max > 0 ? (size_t)max : (size_t)-1);
  lua_newtable(L);
  for (; m; m = next) {
    next = m->next;
    if (!q->settled) {
      if (push_msg(L, q, m)) lua_rawseti(L, -2, ++k);
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
    lua_pushinteger(L, (lua_Integer)atomic_load(&r->nmsgs));
    lua_setfield(L, -2, "messages");
    lua_pushinteger(L, (lua_Integer)lp_req_queued(r));
    lua_setfield(L, -2, "queued");
    lua_pushinteger(L, (lua_Integer)atomic_load(&r->npauses));
    lua_setfield(L, -2, "pauses");
  }
  return 1;
}

/* ---- module functions ---- */

/* longpoll.wait_any(reqs, seconds) -> the first finished request, or nil */
static int lp_wait_any_l(lua_State *L) {
  lua_Number s;
  lua_Integer n, i;
  lp_req **v;
  lp_req *got;
  luaL_checktype(L, 1, LUA_TTABLE);
  s = luaL_optnumber(L, 2, -1);
  luaL_argcheck(L, s == s, 2, "must be a number of seconds");
  n = luaL_len(L, 1);
  if (n == 0) { lua_pushnil(L); return 1; }
  v = (lp_req **)lp_newuserdata(L, (size_t)n * sizeof *v, 0); /* GC owns it */
  for (i = 1; i <= n; i++) {
    lreq *q;
    lua_rawgeti(L, 1, i);
    if (!(q = (lreq *)luaL_testudata(L, -1, LP_REQUEST)) || !q->r)
      luaL_error(L, "longpoll.wait_any: item %d is not a request", (int)i);
    start(L, q);
    v[i - 1] = q->r;
    lua_pop(L, 1);
  }
  got = lp_wait_any(v, (size_t)n, s < 0 ? -1 : s);
  for (i = 1; got && i <= n; i++)
    if (v[i - 1] == got) { lua_rawgeti(L, 1, i); return 1; }
  lua_pushnil(L);
  return 1;
}

/* longpoll.configure{max_host_connections = n, max_connections = n} */
static int lp_configure(lua_State *L) {
  static const char *const keys[] = {"max_host_connections", "max_connections", NULL};
  long v[2] = {0, 0};
  int k;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    for (k = 0; keys[k] && (lua_type(L, -2) != LUA_TSTRING ||
                            strcmp(keys[k], lua_tostring(L, -2))); k++) {}
    if (!keys[k]) luaL_error(L, "longpoll.configure: unknown option '%s'",
                             lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
      luaL_error(L, "longpoll.configure: option '%s' must be a non-negative integer",
                 keys[k]);
    v[k] = (long)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  if (!get_ctx(L)->engine) luaL_error(L, "longpoll: the engine could not be started");
  lp_engine_configure(get_ctx(L)->engine, v[0], v[1]);
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
  if (!lua_isnoneornil(L, 4)) r = check_request(L, 4)->r;
  push_error(L, (lp_kind)k, cause, r, lua_isnoneornil(L, 3) ? 0 : 3);
  return 1;
}

/* longpoll.now() -> seconds on the monotonic clock, as a float */
static int lp_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
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

static int ctx_gc(lua_State *L) {
  lctx *c = (lctx *)lua_touserdata(L, 1);
  lp_engine_release(c->engine);  /* the last one joins the worker */
  c->engine = NULL;
  return 0;
}

static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "message");
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
  {"progress", request_progress}, {NULL, NULL}
};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", request_gc},
  {"__tostring", request_tostring}, {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"request", request_new}, {"wait_any", lp_wait_any_l},
  {"configure", lp_configure}, {"codec", lp_codec}, {"error", lp_error},
  {"now", lp_now}, {"sleep", lp_sleep}, {NULL, NULL}
};

LUALIB_API int luaopen_longpoll_core(lua_State *L) {
  lctx *c;
  int i;
  lua_newtable(L);                        /* module */
  c = (lctx *)lp_newuserdata(L, sizeof *c, 3);
  c->engine = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  c->engine = lp_engine_acquire();         /* upvalues keep the context */
  luaL_newmetatable(L, LP_REQUEST);       /* like liolib's createmeta */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, metameth, 1);
  luaL_newlibtable(L, meth);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, meth, 1);
  lua_getfield(L, -1, "close");           /* __close is close() itself */
  lua_setfield(L, -3, "__close");
  lua_setfield(L, -2, "__index");
  lua_setfield(L, -3, "request_metatable");
  luaL_newmetatable(L, LP_ERROR);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, error_concat);
  lua_setfield(L, -2, "__concat");
  lua_setfield(L, -3, "error_metatable");
  luaL_setfuncs(L, funcs, 1);             /* pops the context */
  lua_pushliteral(L, LP_VERSION);
  lua_setfield(L, -2, "version");
  lua_createtable(L, 0, (int)(sizeof opt_names / sizeof opt_names[0]));
  for (i = 0; opt_names[i]; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, opt_names[i]);
  }
  lua_setfield(L, -2, "options");
  return 1;
}
