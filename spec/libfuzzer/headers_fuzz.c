/*
 * headers_fuzz.c - libFuzzer target for the binding's header splitting
 * (push_headers: the raw header block of a response -> response.headers).
 * The input is the block, as a server may send it through libcurl. Each
 * entry of the table must be a header line of the block: a name that is
 * not empty, lower case, without a colon, a blank at its start or a line
 * end; a value without a line end and without blanks around it (unless it
 * joins repeated ones with ", "); and every
 * "Name: value" line whose name is a plain token must be in the table.
 *
 *   build-fuzz/headers_fuzz spec/libfuzzer/corpus/headers
 */
#include "fuzz_lua.h"

/* a line "Name: value" with a token name: its lower-cased name, or 0 */
static size_t token_name(const char *s, size_t len, char *low, size_t cap) {
  size_t i;
  for (i = 0; i < len && s[i] != ':'; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
    if (i + 1 >= cap) return 0;
    low[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
  }
  if (i == 0 || i == len) return 0;
  low[i] = '\0';
  return i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  const char *h = (const char *)data, *end = h + size, *p;
  int t;
  push_headers(L, h, size);
  t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t klen, vlen, i;
    const char *k, *v;
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) abort();
    k = lua_tolstring(L, -2, &klen);
    v = lua_tolstring(L, -1, &vlen);
    if (klen == 0 || k[0] == ' ' || k[0] == '\t') abort();
    for (i = 0; i < klen; i++)
      if ((k[i] >= 'A' && k[i] <= 'Z') || k[i] == ':' || k[i] == '\n') abort();
    for (i = 0; i < vlen; i++)
      if (v[i] == '\n') abort();
    /* trimmed (a repeated header is its values joined with ", ", which
       may be empty: "a, " is right there) */
    if (vlen && !memmem(v, vlen, ", ", 2) &&
        (v[0] == ' ' || v[0] == '\t' || v[vlen - 1] == ' ' || v[vlen - 1] == '\t' ||
         v[vlen - 1] == '\r'))
      abort();
    lua_pop(L, 1);
  }
  /* every plain "Token: value" line is there */
  for (p = h; p < end;) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    char low[256];
    size_t n;
    if (!eol) eol = end;
    if ((n = token_name(p, (size_t)(eol - p), low, sizeof low))) {
      lua_getfield(L, t, low);
      if (lua_type(L, -1) != LUA_TSTRING) {
        fprintf(stderr, "fuzz: header '%s' is missing\n", low);
        abort();
      }
      lua_pop(L, 1);
    }
    p = eol + 1;
  }
  fuzz_collect(L);
  return 0;
}
