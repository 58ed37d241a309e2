-- Credentials (#9.2): the auth option, secrets never printed, and what libcurl
-- 7.88.1 does with Authorization and Cookie on a redirect to another origin
local longpoll = require "longpoll"
local testserver = require "support.testserver"

-- base64 of a short ASCII string (to check what Basic sends)
local function b64(s)
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(c)
    local bits, b = "", c:byte()
    for i = 8, 1, -1 do bits = bits .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local n = 0
    for i = 1, 6 do n = n + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return abc:sub(n + 1, n + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

describe("credentials", function()
  local srv, other
  setup(function()
    srv = testserver.start()
    other = testserver.start()  -- another port: another origin for libcurl
  end)
  teardown(function()
    srv:stop()
    other:stop()
  end)

  describe("the auth option", function()
    it("sends Basic credentials through libcurl", function()
      local v = longpoll.request{ url = srv:url("/echo"),
        auth = { user = "ann", password = "s3cret:x" } }:run()
      assert.equals("Basic " .. b64("ann:s3cret:x"), v.headers.authorization)
    end)

    it("answers a Digest challenge, never sending the password", function()
      local v, resp = longpoll.request{ url = srv:url("/auth?type=digest"),
        auth = { user = "ann", password = "s3cret", type = "digest" } }:run()
      assert.equals(200, resp.status)
      assert.matches('^Digest username="ann"', v.authorization)
      assert.matches('response="%x+"', v.authorization)
      assert.is_nil(v.authorization:find("s3cret", 1, true))
    end)

    it("with type 'any' uses what the server offers", function()
      local v = longpoll.request{ url = srv:url("/auth?type=digest"),
        auth = { user = "ann", password = "s3cret", type = "any" } }:run()
      assert.matches('^Digest username="ann"', v.authorization)
      v = longpoll.request{ url = srv:url("/auth?type=basic"),
        auth = { user = "ann", password = "s3cret", type = "any" } }:run()
      assert.equals("Basic " .. b64("ann:s3cret"), v.authorization)
    end)

    it("is checked, and no message shows a secret", function()
      local u = srv:url("/echo")
      local function raises(auth, pattern)
        local ok, err = pcall(longpoll.request, { url = u, auth = auth })
        assert.is_false(ok)
        assert.matches(pattern, err, 1, true)
        assert.is_nil(err:find("hunter2", 1, true))
      end
      raises("ann:hunter2", "option 'auth' must be a table")
      raises({ user = "ann" }, "option 'auth' needs a user and a password")
      raises({ user = "ann", password = "hunter2", realm = "x" }, "option 'auth' takes only")
      raises({ user = "ann", password = "hunter2", type = "bearer" }, "option 'auth.type'")
      raises({ user = "a:b", password = "hunter2" }, "option 'auth.user'")
      raises({ user = "ann", password = "hunter2\r\nX: y" }, "option 'auth.password'")
      raises({ user = "ann", password = 5 }, "option 'auth.password' must be a string")
      local ok, err = pcall(longpoll.request, { url = u, auth = { user = "ann", password = "hunter2" },
        headers = { Authorization = "Bearer x" } })
      assert.is_false(ok)
      assert.matches("option 'auth' conflicts with an Authorization header", err, 1, true)
      ok, err = pcall(longpoll.request, { url = u:gsub("//", "//bob:pw@"),
        auth = { user = "ann", password = "hunter2" } })
      assert.is_false(ok)
      assert.matches("option 'auth' conflicts with credentials in the url", err, 1, true)
      -- a failure names the request, never the password
      local req = longpoll.request{ url = srv:url("/status/500"),
        auth = { user = "ann", password = "hunter2" } }
      local _, e = req:run()
      assert.equals("http", e.kind)
      assert.is_nil(tostring(e):find("hunter2", 1, true))
      assert.is_nil(tostring(req):find("hunter2", 1, true))
    end)
  end)

  describe("on a redirect (libcurl's rule)", function()
    local function via(target, opts)
      opts.url = srv:url("/redirect?to=" .. target)
      local v, resp = longpoll.request(opts):run()
      assert.is_table(v, tostring(resp))
      return v.headers
    end
    local creds = { auth = { user = "ann", password = "pw" } }
    local hdrs = { headers = { Authorization = "Bearer tok", Cookie = "s=1", ["X-Other"] = "o" } }
    local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end

    it("keeps Authorization and Cookie to the same scheme, host and port", function()
      local h = via("/echo", copy(creds))
      assert.equals("Basic " .. b64("ann:pw"), h.authorization)
      h = via(srv:url("/echo"), copy(hdrs))
      assert.equals("Bearer tok", h.authorization)
      assert.equals("s=1", h.cookie)
    end)

    it("drops them for another port or another host name, and keeps other headers", function()
      for _, target in ipairs{ other:url("/echo"),
                               ("http://localhost:%d/echo"):format(srv.port) } do
        local h = via(target, copy(creds))
        assert.is_nil(h.authorization, target)
        h = via(target, copy(hdrs))
        assert.is_nil(h.authorization, target)
        assert.is_nil(h.cookie, target)
        assert.equals("o", h["x-other"], target)
      end
    end)
  end)
end)
