-- longpoll.request: options, methods and results of API.md against the spec server
local longpoll = require "longpoll"
local compat = require "longpoll.compat"
local testserver = require "support.testserver"

describe("longpoll.request", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  describe("construction", function()
    local function raises(opts, pattern)
      local ok, err = pcall(longpoll.request, opts)
      assert.is_false(ok)
      assert.matches(pattern, tostring(err))
    end

    it("sends nothing until started", function()
      local req = longpoll.request{ url = srv:url("/hold?ms=50") }
      assert.equals("ready", req:status())
      assert.is_false(req:done())
      assert.equals(0, (srv:stats().hits["/hold"] or 0))
    end)

    it("requires an http(s) url", function()
      raises({}, "option 'url' is required")
      raises({ url = "ftp://127.0.0.1/" }, "option 'url' must start with http:// or https://")
      raises({ url = "file:///etc/passwd" }, "option 'url'")
      raises({ url = 42 }, "option 'url' must be a string")
      raises({ url = "http://" }, "option 'url' is not a valid URL")
    end)

    it("checks the url with libcurl's parser, the same with or without a query (#9.6)", function()
      for _, bad in ipairs{ "http://127.0.0.1:99999/", "http://[::1/", "http:///x",
                            "http://host/a b", "http://ho\127st/" } do
        raises({ url = bad }, "option 'url' is not a valid URL")
        raises({ url = bad, query = { a = 1 } }, "option 'url' is not a valid URL")
      end
      -- what it accepts is sent as given, the query added before any fragment
      local v = longpoll.request{ url = srv:url("/echo?x=1#frag"), query = { y = 2 } }:run()
      assert.equals("x=1&y=2", v.query)
      v = longpoll.request{ url = srv:url("/echo?"), query = { y = 2 } }:run()
      assert.equals("y=2", v.query)
    end)

    it("names an unknown option", function()
      raises({ url = srv:url("/json"), timout = 5 }, "unknown option 'timout'")
      raises({ url = srv:url("/json"), [1] = true }, "unknown option")
    end)

    it("names an option of the wrong type or range", function()
      local u = srv:url("/json")
      raises({ url = u, timeout = "5" }, "option 'timeout' must be a number")
      raises({ url = u, timeout = 0 }, "option 'timeout' must be a positive number")
      raises({ url = u, timeout = -1 }, "option 'timeout'")
      raises({ url = u, connect_timeout = 0 / 0 }, "option 'connect_timeout'")
      raises({ url = u, max_body = 0 }, "option 'max_body' must be a positive integer")
      raises({ url = u, max_body = 1.5 }, "option 'max_body'")
      raises({ url = u, decode = "xml" }, "option 'decode' must be")
      raises({ url = u, follow_redirects = "yes" }, "option 'follow_redirects' must be a boolean")
      raises({ url = u, verify = 1 }, "option 'verify' must be a boolean")
      raises({ url = u, method = "get" }, "option 'method' must be an upper%-case")
      raises({ url = u, method = "" }, "option 'method'")
      raises({ url = u, body = true }, "option 'body' must be a string or a table")
      raises({ url = u, headers = "x" }, "option 'headers' must be a table")
      raises({ url = u, query = { a = {} } }, "option 'query'")
      raises({ url = u, cainfo = false }, "option 'cainfo' must be a string")
      raises({ url = u, user_agent = "a\nb" }, "option 'user_agent' contains CR or LF")
    end)

    it("rejects CR or LF in header names and values", function()
      local u = srv:url("/echo")
      raises({ url = u, headers = { ["X-A"] = "1\r\nX-Injected: 1" } }, "option 'headers'.*CR")
      raises({ url = u, headers = { ["X-A"] = "1\nX" } }, "option 'headers'")
      raises({ url = u, headers = { ["X-A\r\nB"] = "1" } }, "option 'headers'")
      raises({ url = u, headers = { ["Bad Name"] = "1" } }, "option 'headers'")
      raises({ url = u, headers = { ["X-A"] = {} } }, "option 'headers'")
    end)

    it("reads options from the table itself, never through __index", function()
      local defaults = { url = srv:url("/json"), timeout = 5 }
      raises(setmetatable({}, { __index = defaults }), "option 'url' is required")
      raises(setmetatable({}, { __index = function() collectgarbage() return "x" end }),
        "option 'url' is required")
    end)

    it("names the body when JSON cannot encode it", function()
      raises({ url = srv:url("/echo"), body = { f = print } },
        "option 'body' could not be encoded as JSON")
    end)

    it("describes itself", function()
      local req = longpoll.request{ url = srv:url("/poll/x"), body = "hi" }
      assert.equals("longpoll.request: POST " .. srv:url("/poll/x") .. " (ready)", tostring(req))
      req:cancel()
      assert.equals("longpoll.request: POST " .. srv:url("/poll/x") .. " (canceled)", tostring(req))
    end)
  end)

  describe("results", function()
    it("decodes a JSON response into tables, null as longpoll.null", function()
      local value, resp = longpoll.request{ url = srv:url("/json") }:run()
      assert.same({ 1, 2, 3 }, value.items)
      assert.is_true(value.ok)
      assert.equals("longpoll", value.name)
      assert.equals(longpoll.null, value.nothing)
      assert.equals(200, resp.status)
      assert.equals("application/json", resp.headers["content-type"])
      assert.equals('{"ok":true,"items":[1,2,3],"nothing":null,"name":"longpoll"}', resp.body)
      assert.equals(srv:url("/json"), resp.url)
      assert.is_number(resp.elapsed)
      assert.is_true(resp.elapsed >= 0 and resp.elapsed < 10)
    end)

    -- {"id":42,"f":1.5,"big":1e300,"n":[{"x":-7}]}
    local numbers = "/hold?ms=0&status=200&type=application/json&body="
      .. "%7B%22id%22%3A42%2C%22f%22%3A1.5%2C%22big%22%3A1e300%2C%22n%22%3A%5B%7B%22x%22%3A-7%7D%5D%7D"

    if compat.integers then
      it("gives integral JSON numbers as integers and keeps fractions (5.3+)", function()
        local value = longpoll.request{ url = srv:url(numbers) }:run()
        assert.equals("integer", math.type(value.id))
        assert.equals(42, value.id)
        assert.equals(1.5, value.f)
        assert.equals("float", math.type(value.big))
        assert.equals("integer", math.type(value.n[1].x))
        assert.equals(-7, value.n[1].x)
        assert.equals("integer", math.type(longpoll.request{ url = srv:url("/jsonish") }:run()[2]))
      end)

      it("finds a number after strings with escaped quotes and backslashes (#11.5)", function()
        -- the integer pass runs only when the text has a number outside its strings
        local function get(text)
          local esc = text:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)
          return longpoll.request{ url = srv:url("/hold?ms=0&status=200&type=application/json&body="
            .. esc) }:run()
        end
        for _, text in ipairs{ [[{"a":"x\"1","n":5}]], [[{"a":"\\","n":5}]],
                               [[{"a":"\\\"","n":5}]], [[{"a":"","n":5}]] } do
          local v = get(text)
          assert.equals("integer", math.type(v.n), text)
          assert.equals(5, v.n)
        end
        assert.same({ "1\"2", "-3" }, get([[ ["1\"2", "-3"] ]]))
      end)
    else
      it("gives JSON numbers as Lua numbers, integral ones exact (5.1, LuaJIT)", function()
        local value = longpoll.request{ url = srv:url(numbers) }:run()
        assert.equals(42, value.id)
        assert.equals("42", tostring(value.id))
        assert.equals(1.5, value.f)
        assert.equals(1e300, value.big)
        assert.equals(-7, value.n[1].x)
        assert.equals(2, longpoll.request{ url = srv:url("/jsonish") }:run()[2])
      end)
    end

    it("gives a number from 2^53 on as the nearest double (a float on 5.3+); the body keeps its digits", function()
      -- [9007199254740993,9007199254740991] (2^53 + 1, 2^53 - 1): lua-cjson
      -- decodes every number as a double; the first cannot be exact
      local value, resp = longpoll.request{
        url = srv:url("/hold?ms=0&status=200&type=application/json&body=%5B9007199254740993%2C9007199254740991%5D"),
      }:run()
      assert.equals("[9007199254740993,9007199254740991]", resp.body)
      assert.equals(2 ^ 53, value[1])
      assert.equals("9007199254740992", compat.integer_string(value[1]))
      assert.equals(2 ^ 53 - 1, value[2])
      assert.equals("9007199254740991", compat.integer_string(value[2]))
      if compat.integers then
        assert.equals("float", math.type(value[1]))
        assert.equals("integer", math.type(value[2]))
      end
    end)

    it("returns text as a string in auto mode", function()
      local value, resp = longpoll.request{ url = srv:url("/text") }:run()
      assert.equals("hello", value)
      assert.equals("text/plain", resp.headers["content-type"])
    end)

    it("decodes a JSON-looking body in auto mode whatever its content type", function()
      local value = longpoll.request{ url = srv:url("/jsonish") }:run()
      assert.same({ 1, 2, 3 }, value)
    end)

    it("returns a text body that only looks like JSON as text in auto mode (#11.4)", function()
      local url = srv:url("/hold?ms=1&status=200&type=text/plain&body=%7Bnot%20json")
      local value, resp = longpoll.request{ url = url }:run()
      assert.equals("{not json", value)
      assert.equals(200, resp.status)
      -- a JSON content type still insists
      url = srv:url("/hold?ms=1&status=200&type=application/json&body=%7Bnot%20json")
      local v2, err = longpoll.request{ url = url }:run()
      assert.is_nil(v2)
      assert.equals("decode", err.kind)
    end)

    it("keeps the raw body with decode = 'none'", function()
      local value, resp = longpoll.request{ url = srv:url("/json"), decode = "none" }:run()
      assert.equals(resp.body, value)
      assert.is_string(value)
    end)

    it("insists on JSON with decode = 'json'", function()
      local value, err = longpoll.request{ url = srv:url("/text"), decode = "json" }:run()
      assert.is_nil(value)
      assert.equals("decode", err.kind)
      assert.equals(200, err.status)
      assert.equals("hello", err.response.body)
    end)

    it("gives an empty table for an empty 2xx body and for 204 and 304", function()
      for _, path in ipairs({ "/empty", "/status/204", "/status/304", "/hold?ms=10" }) do
        local value, resp = longpoll.request{ url = srv:url(path) }:run()
        assert.same({}, value, path)
        assert.is_true(resp.status == 200 or resp.status == 204 or resp.status == 304, path)
      end
      local value = longpoll.request{ url = srv:url("/empty"), decode = "json" }:run()
      assert.same({}, value)
      value = longpoll.request{ url = srv:url("/empty"), decode = "none" }:run()
      assert.equals("", value)
    end)

    it("returns the same results again once finished", function()
      local before = srv:stats().hits["/json"] or 0
      local req = longpoll.request{ url = srv:url("/json") }
      local v1, r1 = req:run()
      local v2, r2 = req:run()
      assert.equals(v1, v2)
      assert.equals(r1, r2)
      assert.equals("done", req:status())
      assert.is_true(req:done())
      assert.equals(before + 1, srv:stats().hits["/json"])
    end)

    it("lowercases header names and joins repeated headers", function()
      local _, resp = longpoll.request{ url = srv:url("/headers") }:run()
      assert.equals("a, b", resp.headers["x-repeat"])
      assert.equals("MixedCase", resp.headers["x-mixed"])
    end)

    it("frees an unreachable request's results in the collection that finds it (#11.5)", function()
      -- its finalizer belongs to a guard that refers to no Lua value: the
      -- results are not kept (resurrected) until the next collection for the
      -- finalizer to run. Weak tables cannot show it (Lua drops resurrected
      -- values from them), the heap can: a 2 MB body
      collectgarbage()
      collectgarbage()
      local before = collectgarbage("count")
      do
        local req = longpoll.request{ url = srv:url("/big?bytes=2000000"), decode = "none" }
        assert.equals(2000000, #req:run())
      end
      collectgarbage()
      local kept = collectgarbage("count") - before
      assert.is_true(kept < 500, ("%.0f KB still held after a full collection"):format(kept))
    end)

    it("makes response.headers and http_version when first read, plain fields from then on (#11.5)", function()
      local req = longpoll.request{ url = srv:url("/headers") }
      local _, resp = req:run()
      local function keys(t)
        local k = {}
        for name in pairs(t) do k[#k + 1] = name end
        table.sort(k)
        return table.concat(k, " ")
      end
      -- not made yet: pairs and rawget do not see it, reading it makes it
      assert.is_nil(rawget(resp, "headers"))
      assert.is_nil(rawget(resp, "http_version"))
      assert.equals("body elapsed status url", keys(resp))
      local h = resp.headers
      assert.equals("table", type(h))
      assert.is_nil(getmetatable(h))
      assert.equals(h, rawget(resp, "headers"))
      assert.equals(h, resp.headers)
      assert.equals("body elapsed headers http_version status url", keys(resp))
      assert.equals("a, b", h["x-repeat"])
      assert.matches("x%-mixed", keys(h))
      assert.equals("1.1", rawget(resp, "http_version"))
      -- either one makes both
      local _, other = longpoll.request{ url = srv:url("/headers") }:run()
      assert.equals("1.1", other.http_version)
      assert.equals("table", type(rawget(other, "headers")))
      -- other absent fields stay nil; the response is still a table to write to
      assert.is_nil(resp.nothing)
      resp.mine = 1
      assert.equals(1, resp.mine)
      -- a response outlives its request and still makes its headers
      local _, kept = longpoll.request{ url = srv:url("/headers") }:run()
      req = nil
      collectgarbage()
      collectgarbage()
      assert.equals("MixedCase", kept.headers["x-mixed"])
      -- an error's response too
      local _, err = longpoll.request{ url = srv:url("/status/500") }:run()
      assert.equals("http", err.kind)
      assert.equals("table", type(err.response.headers))
      -- a response never read is collected like any table
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = select(2, longpoll.request{ url = srv:url("/json") }:run())
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)
  end)

  describe("what is sent", function()
    it("sends GET with query, headers and the default user agent", function()
      local value = longpoll.request{
        url = srv:url("/echo?x=1"),
        query = { since = "42", q = "a b&c" },
        headers = { ["X-Token"] = "abc", ["X-Empty"] = "" },
      }:run()
      assert.equals("GET", value.method)
      assert.equals("1", value.args.x)
      assert.equals("42", value.args.since)
      assert.equals("a b&c", value.args.q)
      assert.equals("abc", value.headers["x-token"])
      assert.equals("", value.headers["x-empty"])
      assert.equals("lua-longpoll/" .. longpoll.version, value.headers["user-agent"])
    end)

    it("escapes query names and values apart", function()
      local value = longpoll.request{
        url = srv:url("/echo"), query = { ["a=b"] = "c", k = "v=w&z", ["x y"] = "1 2" },
      }:run()
      assert.equals("c", value.args["a=b"])
      assert.equals("v=w&z", value.args.k)
      assert.equals("1 2", value.args["x y"])
    end)

    it("sends a table body as JSON with POST by default", function()
      local value = longpoll.request{ url = srv:url("/echo"), body = { action = "poll", n = 3 } }:run()
      assert.equals("POST", value.method)
      assert.equals("application/json", value.headers["content-type"])
      local sent = require("cjson").decode(value.body)
      assert.same({ action = "poll", n = 3 }, sent)
    end)

    it("sends a string body as is and keeps a given content type", function()
      local value = longpoll.request{
        url = srv:url("/echo"), method = "PUT", body = "a=1&b=2",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      }:run()
      assert.equals("PUT", value.method)
      assert.equals("a=1&b=2", value.body)
      assert.equals("application/x-www-form-urlencoded", value.headers["content-type"])
    end)

    it("sends a string body without Content-Type as application/octet-stream (#9.7)", function()
      local value = longpoll.request{ url = srv:url("/echo"), body = "raw bytes" }:run()
      assert.equals("POST", value.method)
      assert.equals("raw bytes", value.body)
      assert.equals("application/octet-stream", value.headers["content-type"])
    end)

    it("sends integral numbers in the query and headers as integers (#9.7)", function()
      local value = longpoll.request{ url = srv:url("/echo"),
        query = { n = 98.0, f = 2.5, i = 7, [3] = "three", big = 2 ^ 53 },
        headers = { ["X-N"] = 98.0, ["X-F"] = 0.1 } }:run()
      assert.equals("98", value.args.n)
      assert.equals("2.5", value.args.f)
      assert.equals("7", value.args.i)
      assert.equals("three", value.args["3"])
      assert.equals("9.007199254741e+15", value.args.big)
      assert.equals("98", value.headers["x-n"])
      assert.equals("0.1", value.headers["x-f"])
      assert.has_error(function()
        longpoll.request{ url = srv:url("/echo"), query = { n = 0 / 0 } }
      end, "longpoll.request: option 'query' must map names to strings or finite numbers")
    end)

    it("sends a header of blanks empty, as it sends \"\" (#9.6)", function()
      local value = longpoll.request{ url = srv:url("/echo"),
        headers = { ["X-Blank"] = "   ", ["X-Tab"] = "\t", ["X-Empty"] = "", ["X-Pad"] = " a " } }:run()
      assert.equals("", value.headers["x-blank"])
      assert.equals("", value.headers["x-tab"])
      assert.equals("", value.headers["x-empty"])
      assert.equals("a", value.headers["x-pad"])
    end)

    it("refuses a body with HEAD, which would wait for a body that never comes (#9.6)", function()
      assert.has_error(function()
        longpoll.request{ url = srv:url("/echo"), method = "HEAD", body = "x" }
      end, "longpoll.request: option 'body' cannot be sent with HEAD (no response body would come)")
      local _, resp = longpoll.request{ url = srv:url("/json"), method = "HEAD", timeout = 10 }:run()
      assert.equals(200, resp.status)
      assert.equals("", resp.body)
    end)

    it("uses the method given without a body and the user agent given", function()
      local value = longpoll.request{ url = srv:url("/echo"), method = "DELETE", user_agent = "game/1" }:run()
      assert.equals("DELETE", value.method)
      assert.equals("game/1", value.headers["user-agent"])
    end)

    it("reuses the connection for requests to the same host", function()
      local before = srv:stats().connections
      for _ = 1, 5 do longpoll.request{ url = srv:url("/json") }:run() end
      local after = srv:stats().connections
      assert.is_true(after - before <= 1, ("%d new connections"):format(after - before))
    end)
  end)

  describe("methods", function()
    it("start returns the request and is a no-op once started", function()
      local before = srv:stats().hits["/hold"] or 0
      local req = longpoll.request{ url = srv:url("/hold?ms=20") }
      assert.equals(req, req:start())
      assert.equals("running", req:status())
      assert.equals(req, req:start())
      local value, resp = req:run()
      assert.same({}, value)
      assert.equals(204, resp.status)
      assert.equals(before + 1, srv:stats().hits["/hold"])
    end)

    it("wait returns false before the request finishes and true after", function()
      local req = longpoll.request{ url = srv:url("/hold?ms=300") }
      assert.is_false(req:wait(0.01))
      assert.equals("running", req:status())
      assert.is_true(req:wait(10))
      assert.is_true(req:done())
      assert.equals("done", req:status())
    end)

    it("wait and wait_any take math.huge as no limit, and reject NaN", function()
      local req = longpoll.request{ url = srv:url("/hold?ms=50") }
      assert.is_true(req:wait(math.huge))
      local other = longpoll.request{ url = srv:url("/hold?ms=50") }
      assert.equals(other, longpoll.wait_any({ other }, math.huge))
      assert.has_error(function() longpoll.wait_any({ other }, 0 / 0) end)
      assert.has_error(function() other:wait(0 / 0) end)
    end)

    it("status() and tostring() never decode: failed once run() found the body bad (#11.4)", function()
      local req = longpoll.request{ url = srv:url("/garbage") }
      assert.is_true(req:wait(10))
      assert.matches("%(done%)$", tostring(req))
      assert.equals("done", req:status())
      assert.equals("decode", select(2, req:run()).kind)
      assert.matches("%(failed%)$", tostring(req))
      assert.equals("failed", req:status())
    end)

    it("await raises outside a coroutine", function()
      local req = longpoll.request{ url = srv:url("/json") }
      assert.has_error(function() req:await() end,
        "longpoll.request:await: not inside a coroutine (use run())")
    end)

    it("await yields the request until it finishes", function()
      local req = longpoll.request{ url = srv:url("/hold?ms=50&status=200&body=%5B1%5D") }
      local co = coroutine.create(function() return req:await() end)
      local ok, yielded = coroutine.resume(co)
      assert.is_true(ok)
      assert.equals(req, yielded)
      assert.equals("suspended", coroutine.status(co))
      assert.is_true(req:wait(10))
      local ok2, value, resp = coroutine.resume(co)
      assert.is_true(ok2)
      assert.same({ 1 }, value)
      assert.equals(200, resp.status)
    end)

    it("status goes ready, running, done", function()
      local req = longpoll.request{ url = srv:url("/hold?ms=30") }
      assert.equals("ready", req:status())
      req:start()
      assert.equals("running", req:status())
      req:run()
      assert.equals("done", req:status())
    end)

    it("status is failed after an error, including a body that does not decode", function()
      local req = longpoll.request{ url = srv:url("/status/500") }
      req:run()
      assert.equals("failed", req:status())
      req = longpoll.request{ url = srv:url("/garbage") }
      req:start()
      assert.is_true(req:wait(10))
      assert.equals("decode", select(2, req:run()).kind)
      assert.equals("failed", req:status())
    end)

    it("wait_any returns the first request to finish, or nil after the time", function()
      local slow = longpoll.request{ url = srv:url("/hold?ms=5000") }
      local fast = longpoll.request{ url = srv:url("/hold?ms=50") }
      assert.equals(fast, longpoll.wait_any({ slow, fast }, 10))
      assert.is_nil(longpoll.wait_any({ slow }, 0.05))
      assert.is_true(slow:cancel())
      assert.equals(slow, longpoll.wait_any({ slow }, 0))
      assert.is_nil(longpoll.wait_any({}, 0))
      assert.has_error(function() longpoll.wait_any({ 1 }, 0) end,
        "longpoll.wait_any: item 1 is not a request")
    end)

    it("wait_any over many requests finds each as it finishes", function()
      local reqs, left = {}, {}
      for i = 1, 50 do
        reqs[i] = longpoll.request{ url = srv:url("/hold?ms=" .. (i * 5)) }
        left[reqs[i]] = i
      end
      local order = {}
      for _ = 1, 50 do
        local list = {}
        for r in pairs(left) do list[#list + 1] = r end
        local r = longpoll.wait_any(list, 10)
        assert.is_not_nil(r)
        order[#order + 1] = left[r]
        left[r] = nil
      end
      assert.equals(50, #order)
      assert.is_nil(next(left))
    end)
  end)

  describe("module", function()
    it("has the rockspec's version", function()
      local f = assert(io.popen("ls *.rockspec"))
      local name = f:read("*l")
      f:close()
      local v = name:match("^longpoll%-(.-)%-%d+%.rockspec$")
      assert.equals(v, longpoll.version)
    end)

    it("has a null sentinel that is cjson's", function()
      assert.equals(require("cjson").null, longpoll.null)
    end)
  end)
end)
