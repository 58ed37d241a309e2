/*
 * cursor_fuzz.c - libFuzzer target for subscribe's cursor extraction
 * (lua/longpoll/cursors.lua): a server's answer (status, raw header block,
 * body) read by each cursor strategy the way a subscription reads it. The
 * headers are split by the binding (push_headers), the body decoded by
 * lua-cjson (or kept raw). Whatever the answer:
 *   - finding the messages and advancing the cursor never raise (they refuse
 *     with a reason: the poll is then a "decode" failure);
 *   - the cursor the strategy makes from an answer is one it accepts back
 *     (what sub:cursor() gives can be passed as `resume`);
 *   - applying it gives the next poll's options (longpoll.request may refuse
 *     them: the subscription stops with that error, it does not raise).
 * The first bytes choose the strategy, the `messages` path, the id field and
 * the cursor before the answer. Not "sse": its messages are events the C
 * stream splitter makes (ids are strings), fuzzed by spec/stream/stream_fuzz.c.
 *
 *   build-fuzz/cursor_fuzz -dict=spec/libfuzzer/cursor.dict spec/libfuzzer/corpus/cursor
 */
#include "fuzz_lua.h"

static const char driver[] =
  "local cursors = require 'longpoll.cursors'\n"
  "local json = require('cjson').new()\n"
  "local names = { 'etag', 'offset', 'since', 'index' }\n"
  "local locates = { false, 'result', 'data.items', 'a.b.c', '', '.', 'result.0' }\n"
  "local ids = { false, 'id', 'update_id', 'node.modifiedIndex', 'n', '' }\n"
  "return function(b0, b1, b2, b3, prev, status, headers, body)\n"
  "  local name = names[b0 % #names + 1]\n"
  "  local s = cursors.strategies[name]\n"
  "  local cfg = { strategy = s }\n"
  "  for k, d in pairs(s.options) do if d ~= false then cfg[k] = d end end\n"
  "  local id = ids[b2 % #ids + 1]\n"
  "  if id and cfg.id_field then cfg.id_field = id end\n"
  "  local o = { url = 'http://127.0.0.1:1/poll' }\n"
  "  if s.setup and s.setup(cfg, o) then return 'setup' end\n"
  "  -- the cursor before: one the strategy accepted (from the input, or none)\n"
  "  local c = nil\n"
  "  if b3 % 2 == 1 then c = s.check(cfg, prev) end\n"
  "  local ok, value = pcall(json.decode, body)\n"
  "  if not ok then value = body end\n"
  "  local resp = { status = status, headers = headers, body = body }\n"
  "  local locate = locates[b1 % #locates + 1] or nil\n"
  "  local list = cursors.message_list(s, locate, value, resp)\n"
  "  if not list then return name .. ': no list' end\n"
  "  local items, nc = s.advance(cfg, c, list, resp, o)\n"
  "  if not items then return name .. ': refused' end\n"
  "  if nc ~= nil then\n"
  "    local back, why = s.check(cfg, nc)\n"
  "    if back == nil then\n"
  "      error(('the %s cursor %s is not one of its own: %s'):format(name, tostring(nc), why), 0)\n"
  "    end\n"
  "  end\n"
  "  s.apply(cfg, o, nc)\n"
  "  return name .. (pcall(longpoll.request, o) and ': ok' or ': request refused')\n"
  "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int fn = LUA_NOREF;
  lua_State *L = fuzz_state();
  fuzz_in in = { data, size };
  const char *s;
  size_t len;
  int i;
  if (fn == LUA_NOREF) {
    if (luaL_loadstring(L, driver) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
      fuzz_fail(L, "the driver");
    fn = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
  for (i = 0; i < 4; i++) lua_pushinteger(L, (lua_Integer)fuzz_byte(&in));
  len = fuzz_bytes(&in, 24, &s);      /* the cursor before, as given */
  if (len && s[0] == '#') lua_pushinteger(L, (lua_Integer)(int8_t)s[len - 1]);
  else lua_pushlstring(L, s, len);
  lua_pushinteger(L, (lua_Integer)(fuzz_byte(&in) % 2 ? 200 : 100 + fuzz_byte(&in) * 2));
  len = fuzz_bytes(&in, 255, &s);     /* the raw header block */
  push_headers(L, s, len);
  lua_pushlstring(L, (const char *)in.p, in.n);  /* the body */
  if (lua_pcall(L, 8, 1, 0) != LUA_OK) fuzz_fail(L, "cursor extraction raised");
  fuzz_outcome(lua_tostring(L, -1));
  fuzz_collect(L);
  return 0;
}
