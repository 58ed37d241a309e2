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
end)
