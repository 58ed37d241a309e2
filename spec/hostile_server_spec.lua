-- Servers that answer with bytes meant to break the client: the engine's
-- transfers, header handling and connection reuse (spec/support/rawserver.lua)
local longpoll = require "longpoll"
local rawserver = require "support.rawserver"

local function response(body, extra)
  return ("HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s"):format(extra or "", #body, body)
end

describe("a hostile server", function()
  local srv
  after_each(function() if srv then srv:stop() srv = nil end end)

  -- #7.1: libcurl 7.88.1 keeps a pointer to the last header of a handle's
  -- previous transfer (curl/curl#11101); a reused handle then unfolds into
  -- freed memory (release: "double free"; valgrind/ASan: use after free)
  it("a header block that begins with a folded line, after a request on the same handle and connection, is a clean error", function()
    srv = rawserver.start{ steps = {
      "request", { send = response("one") },
      "request", { send = "HTTP/1.1 200 OK\r\n X-Folded: yes\r\nContent-Length: 3\r\n\r\ntwo" },
      "again" } }
    for _ = 1, 3 do
      local v = longpoll.request{ url = srv:url("/a"), decode = "none" }:run()
      assert.equals("one", v)
      local value, err = longpoll.request{ url = srv:url("/b"), decode = "none" }:run()
      assert.is_nil(value)
      assert.equals("network", err.kind)
    end
  end)

  -- #7.5: libcurl 7.88.1 reuses an HTTP/1.1 connection at rest with unread
  -- bytes on it (curl/curl#10690): a second response written later on an idle
  -- connection answered the next request, and so on down the line
  it("a response written on an idle keep-alive connection never answers the next request", function()
    srv = rawserver.start{ conns = {
      { "request", { send = response("hello") }, { sleep = 300 },
        { send = response("smuggled"), note = "smuggled" },
        "request", { send = response("second on the first connection") }, "again" },
      { "request", { send = response("fresh") }, "again" } } }
    assert.equals("hello", (longpoll.request{ url = srv:url("/one"), decode = "none" }:run()))
    assert.truthy(srv:wait(function(st) return st.notes.smuggled == 1 end, 5))
    -- the victim is sent again, transparently, on a new connection: its body too
    local value, resp = longpoll.request{ url = srv:url("/two"), body = "payload", decode = "none" }:run()
    assert.equals("fresh", value, resp and tostring(resp))
    assert.equals(200, resp.status)
    local reqs = srv:requests()
    assert.equals(2, #reqs)
    assert.same({ conn = 2, line = "POST /two HTTP/1.1" }, reqs[2])
    assert.truthy(srv:wait(function(st) return st.peer_closed == 1 end, 5)) -- the client dropped the first
    assert.equals("fresh", (longpoll.request{ url = srv:url("/three"), decode = "none" }:run()))
    assert.equals(2, srv:stats().accepted)
  end)

  it("a quiet keep-alive connection is still reused", function()
    srv = rawserver.start{ steps = { "request", { send = response("same") }, "again" } }
    for _ = 1, 5 do
      assert.equals("same", (longpoll.request{ url = srv:url("/x"), decode = "none" }:run()))
    end
    local st = srv:stats()
    assert.equals(1, st.accepted)
    assert.equals(5, st.requests)
  end)

  -- #7.8: only a status line that begins a header block starts a new
  -- response; a header named like one must not erase the ones before it
  it("a header line starting with HTTP/ inside a block keeps the headers before it", function()
    srv = rawserver.start{ steps = { "request", { send = "HTTP/1.1 200 OK\r\nX-Before: 1\r\n" ..
      "HTTP/1.1 404 Nope: x\r\nX-After: 2\r\nContent-Length: 2\r\n\r\nok" }, "again" } }
    local value, resp = longpoll.request{ url = srv:url("/"), decode = "none" }:run()
    assert.equals("ok", value)
    assert.equals(200, resp.status)
    assert.equals("1", resp.headers["x-before"])
    assert.equals("2", resp.headers["x-after"])
  end)

  it("the headers of a redirect are not mixed into the final response's", function()
    srv = rawserver.start{ steps = {
      "request", { send = "HTTP/1.1 302 Found\r\nLocation: /final\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n" },
      "request", { send = response("done", "X-Final: 1\r\n") }, "again" } }
    local value, resp = longpoll.request{ url = srv:url("/start"), decode = "none" }:run()
    assert.equals("done", value)
    assert.equals("1", resp.headers["x-final"])
    assert.is_nil(resp.headers["x-hop"])
    assert.is_nil(resp.headers.location)
  end)
end)
