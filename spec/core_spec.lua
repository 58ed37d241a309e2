-- What the C core exports for the Lua layer: the option list, the error
-- constructor, the clock and sleep, Retry-After and URL redaction
local longpoll = require "longpoll"
local core = require "longpoll.core"
local testserver = require "support.testserver"

describe("longpoll.core", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  describe("options", function()
    it("lists exactly the options request accepts", function()
      local n = 0
      for k, v in pairs(core.options) do
        n = n + 1
        assert.is_true(v)
        -- each listed name passes validation as a key (a wrong value may still raise)
        local ok, err = pcall(longpoll.request, { url = srv:url("/json"), [k] = {} })
        assert.is_nil(tostring(err):match("unknown option"), k)
        assert.is_boolean(ok)
      end
      assert.is_true(n >= 14)
      assert.is_true(core.options.url and core.options.max_body and core.options.decode)
      assert.has_error(function() longpoll.request{ url = srv:url("/json"), timout = 1 } end,
        "longpoll.request: unknown option 'timout'")
    end)
  end)

  describe("error", function()
    it("makes the same objects run() returns", function()
      local e = core.error("http", "HTTP status 503", { status = 503, cause = "x" })
      assert.equals("http", e.kind)
      assert.equals("http: HTTP status 503", e.message)
      assert.equals(503, e.status)
      assert.equals("x", e.cause)
      assert.equals(e.message, tostring(e))
      assert.equals("> " .. e.message, "> " .. e)
      local _, err = longpoll.request{ url = srv:url("/status/404") }:run()
      assert.equals(getmetatable(err), getmetatable(e))
      assert.equals(core.error_metatable, getmetatable(e))
    end)

    it("names the request, its userinfo redacted", function()
      local req = longpoll.request{ url = "http://ann:secret@127.0.0.1:1/x", method = "PUT" }
      local e = core.error("decode", "no items", nil, req)
      assert.equals("decode: no items (PUT http://ann:***@127.0.0.1:1/x)", e.message)
    end)

    it("knows each kind once and raises on any other", function()
      for _, k in ipairs{ "canceled", "timeout", "resolve", "connect", "tls", "network",
                          "http", "decode", "too_large", "callback" } do
        assert.equals(k, core.error(k, "c").kind)
      end
      assert.has_error(function() core.error("ok", "c") end)
      assert.has_error(function() core.error("bogus", "c") end)
      assert.has_error(function() core.error("http") end)
      assert.has_error(function() core.error("http", "c", 5) end)
      assert.has_error(function() core.error("http", "c", nil, {}) end)
    end)

    it("keeps kind and message its own over the fields", function()
      local e = core.error("timeout", "slow", { kind = "http", message = "m" })
      assert.equals("timeout", e.kind)
      assert.equals("timeout: slow", e.message)
    end)
  end)

  describe("now and sleep", function()
    it("now is monotonic seconds and sleep waits that long", function()
      local t0 = longpoll.now()
      assert.equals("number", type(t0))
      longpoll.sleep(0.05)
      local dt = longpoll.now() - t0
      assert.is_true(dt >= 0.05, tostring(dt))
      assert.is_true(dt < 30, tostring(dt))
      longpoll.sleep(0)
    end)

    it("sleep raises on a bad argument", function()
      for _, v in ipairs{ -1, 0 / 0, math.huge, -math.huge, 2e9 } do
        assert.has_error(function() longpoll.sleep(v) end)
      end
      assert.has_error(function() longpoll.sleep() end)
      assert.has_error(function() longpoll.sleep("soon") end)
    end)
  end)

  describe("response.retry_after", function()
    it("is libcurl's Retry-After in seconds, nil when absent", function()
      srv:reset()
      srv:fail{ mode = "503", retry_after = 7 }
      local _, err = longpoll.request{ url = srv:url("/poll/ra"), timeout = 10 }:run()
      assert.equals("http", err.kind)
      assert.equals(7, err.response.retry_after)
      srv:fail{ mode = "429", retry_after = "Wed, 21 Oct 2015 07:28:00 GMT" }
      _, err = longpoll.request{ url = srv:url("/poll/ra"), timeout = 10 }:run()
      assert.equals(0, err.response.retry_after) -- a date in the past: now
      local _, resp = longpoll.request{ url = srv:url("/json"), timeout = 10 }:run()
      assert.is_nil(resp.retry_after)
    end)
  end)

  describe("URLs with userinfo", function()
    it("are redacted in tostring(req), err.message and response.url", function()
      local url = srv:url("/json"):gsub("^http://", "http://ann:s3cret@")
      local req = longpoll.request{ url = url }
      assert.equals("longpoll.request: GET http://ann:***@127.0.0.1:" .. srv.port
        .. "/json (ready)", tostring(req))
      local _, resp = req:run()
      assert.equals("http://ann:***@127.0.0.1:" .. srv.port .. "/json", resp.url)
      local bad = url:gsub("/json$", "/status/500")
      local _, err = longpoll.request{ url = bad }:run()
      assert.matches("ann:***@", err.message, 1, true)
      assert.is_nil(err.message:find("s3cret", 1, true))
      assert.is_nil(err.response.url:find("s3cret", 1, true))
      -- a user name alone may be a token: all of it goes
      local tok = longpoll.request{ url = "http://tok3n@127.0.0.1:1/?a=b@c" }
      assert.equals("longpoll.request: GET http://***@127.0.0.1:1/?a=b@c (ready)", tostring(tok))
    end)
  end)
end)
