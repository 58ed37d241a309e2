/*
 * options_fuzz.c - libFuzzer target for the binding's option validation,
 * header lines and URL/query building: longpoll.request{...} with option
 * tables built from the input (every option name and some wrong ones; strings,
 * numbers, NaN and infinities, booleans, tables, functions, nesting). Either
 * it raises a Lua error naming the option ("longpoll.request: option 'x' ...";
 * never a runtime error inside the binding), or the request it made is one
 * libcurl can send as asked: a URL its parser accepts (as CURLOPT_URL parses
 * it), http or https, no control byte or blank in it; an upper-case method;
 * header lines "Name: value" or "Name;" with a token name and no CR or LF; a
 * user agent without CR or LF; no body with HEAD. Nothing is sent.
 *
 *   build-fuzz/options_fuzz -dict=spec/libfuzzer/options.dict spec/libfuzzer/corpus/options
 */
#include "fuzz_lua.h"

#define MAX_NAMES 64

static const char *g_names[MAX_NAMES];
static int g_nnames;

static const char *const words[] = {
  "GET", "POST", "HEAD", "PUT", "DELETE", "get", "json", "none", "auto", "2", "1.1",
  "sse", "ndjson", "lines", "json-seq", "basic", "digest", "any", "Content-Type",
  "Authorization", "X-A", "user", "password", "type", "since", "limit", "Accept",
  "application/json", "  ", "", "a\r\nb", "a\nb", "x\0y", "%", "#", "?", "@", ":"
};
#define NWORDS (sizeof words / sizeof words[0])

static const char *const urls[] = {
  "http://127.0.0.1:1", "https://example.invalid", "http://[::1]:80", "http://u:p@h",
  "HTTP://X", "ftp://x", "http:///x", "file:///etc/passwd", "", "http://h:99999",
  "http://[::1", "http://h/p?q=1#f", "https://h:443/a b", "http://h\t/", "http://%41/"
};
#define NURLS (sizeof urls / sizeof urls[0])

static void fz_word(lua_State *L, unsigned b) {
  const char *w = words[b % NWORDS];
  /* "x\0y" keeps its NUL: the length is the literal's */
  lua_pushlstring(L, w, strcmp(w, "x") == 0 ? 3 : strlen(w));
}

static void fz_value(lua_State *L, fuzz_in *in, int depth, int url);

static void fz_table(lua_State *L, fuzz_in *in, int depth, int array) {
  int n = (int)(fuzz_byte(in) % 5), i;
  lua_createtable(L, 0, n);
  for (i = 1; i <= n; i++) {
    if (array) {
      lua_pushinteger(L, i);
    } else if (fuzz_byte(in) & 1) {
      const char *s;
      size_t len = fuzz_bytes(in, 16, &s);
      lua_pushlstring(L, s, len);
    } else {
      fz_word(L, fuzz_byte(in));
    }
    fz_value(L, in, depth + 1, 0);
    if (lua_isnil(L, -2) || lua_isnil(L, -1)) lua_pop(L, 2);
    else lua_rawset(L, -3);
  }
}

static void fz_value(lua_State *L, fuzz_in *in, int depth, int url) {
  static const double specials[] = {
    0.5, -1, 1e308, 1.0 / 0.0, -1.0 / 0.0, 0.0 / 0.0, 9007199254740992.0, 98.0, 1e-9, 0,
    2147483648.0, -0.0, 30, 4611686018427387904.0
  };
  unsigned t = fuzz_byte(in) % 10;
  const char *s;
  size_t len;
  if (url && t < 8) t = 6;
  if (depth > 3 && (t == 4 || t == 5)) t = 0;
  switch (t) {
  case 0:
    len = fuzz_bytes(in, 64, &s);
    lua_pushlstring(L, s, len);
    break;
  case 1: {
    uint32_t v = fuzz_byte(in) | fuzz_byte(in) << 8 | fuzz_byte(in) << 16 | (uint32_t)fuzz_byte(in) << 24;
    lua_pushinteger(L, (lua_Integer)(int32_t)v);
    break;
  }
  case 2: lua_pushnumber(L, specials[fuzz_byte(in) % (sizeof specials / sizeof specials[0])]); break;
  case 3: lua_pushboolean(L, (int)(fuzz_byte(in) & 1)); break;
  case 4: fz_table(L, in, depth, 0); break;
  case 5: fz_table(L, in, depth, 1); break;
  case 6:
    lua_pushstring(L, urls[fuzz_byte(in) % NURLS]);
    len = fuzz_bytes(in, 48, &s);
    lua_pushlstring(L, s, len);
    lua_concat(L, 2);
    break;
  case 7: fz_word(L, fuzz_byte(in)); break;
  case 8: lua_pushnil(L); break;
  default: lua_getglobal(L, "print"); break;   /* a function */
  }
}

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void fz_check(lp_req *r) {
  const char *u = r->opts.url, *m = r->opts.method;
  struct curl_slist *h;
  CURLU *cu;
  size_t i;
  if (!u || (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)) abort();
  for (i = 0; u[i]; i++)
    if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f) abort();
  cu = curl_url();
  if (!cu) abort();
  if (curl_url_set(cu, CURLUPART_URL, u, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    fprintf(stderr, "fuzz: libcurl refuses the url %s\n", u);
    abort();
  }
  curl_url_cleanup(cu);
  if (!m || !*m) abort();
  for (i = 0; m[i]; i++)
    if (m[i] < 'A' || m[i] > 'Z') abort();
  for (h = r->opts.headers; h; h = h->next) {
    const char *line = h->data;
    size_t n = strcspn(line, ":;");
    if (n == 0 || !line[n] || strpbrk(line, "\r\n")) {
      fprintf(stderr, "fuzz: a header line %s\n", line);
      abort();
    }
    for (i = 0; i < n; i++)
      if (!is_tchar((unsigned char)line[i])) abort();
    if (line[n] == ';' && line[n + 1]) abort();
  }
  if (r->opts.user_agent && strpbrk(r->opts.user_agent, "\r\n")) abort();
  if (strcmp(m, "HEAD") == 0 && r->opts.x && r->opts.x->body) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  fuzz_in in = { data, size };
  int n, i;
  if (!g_nnames) {              /* the option names, from core.options */
    luaL_dostring(L, "local t = {} for k in pairs(require('longpoll.core').options) do "
                     "t[#t + 1] = k end table.sort(t) return t");
    for (i = 1; i <= (int)lua_rawlen(L, -1) && g_nnames < MAX_NAMES - 3; i++) {
      lua_rawgeti(L, -1, i);
      g_names[g_nnames++] = strdup(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    g_names[g_nnames++] = "timout";
    g_names[g_nnames++] = "URL";
    g_names[g_nnames++] = "";
    lua_settop(L, 0);
  }
  lua_getglobal(L, "longpoll");
  lua_getfield(L, -1, "request");
  lua_createtable(L, 0, 8);
  lua_pushstring(L, "url");       /* mostly one: what is checked after it */
  fz_value(L, &in, 0, 1);
  lua_rawset(L, -3);
  n = (int)(fuzz_byte(&in) % 12);
  for (i = 0; i < n && in.n; i++) {
    const char *name = g_names[fuzz_byte(&in) % (unsigned)g_nnames];
    lua_pushstring(L, name);
    fz_value(L, &in, 0, strcmp(name, "url") == 0);
    if (lua_isnil(L, -1)) lua_pop(L, 2);
    else lua_rawset(L, -3);
  }
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lreq **box = (lreq **)lua_touserdata(L, -1);   /* a request: its record */
    if (!box || !*box || !(*box)->r) abort();
    fz_check((*box)->r);
    fuzz_outcome("made");
  } else {
    const char *msg = lua_tostring(L, -1), *q;
    char name[48];
    if (!msg || strncmp(msg, "longpoll.request: ", 18) != 0 || strstr(msg, "attempt to"))
      fuzz_fail(L, "an error that names no option");
    /* refused: by which option */
    q = strstr(msg, "option '");
    snprintf(name, sizeof name, "refused %.*s", q ? (int)strcspn(q + 8, "'") : 5,
             q ? q + 8 : "other");
    fuzz_outcome(name);
  }
  fuzz_collect(L);
  return 0;
}
