-- longpoll.subscribe: option checking (programmer errors raise at once, naming the option)
-- and the module's wiring.
local longpoll = require "longpoll"

describe("longpoll.subscribe options", function()
  local URL = "http://127.0.0.1:9/poll"     -- nothing is sent: subscriptions are not started

  local function raises(opts, pattern)
    local ok, err = pcall(longpoll.subscribe, opts)
    assert.is_false(ok, "no error for " .. pattern)
    assert.matches(pattern, tostring(err))
  end

  it("is longpoll.subscribe, and longpoll.subscribe is the module's function", function()
    local f = require "longpoll.subscribe"
    assert.equals("function", type(f))
    assert.equals(f, longpoll.subscribe)
    local sub = f{ url = URL, cursor = "since" }
    assert.equals("ready", sub:status())
    sub = longpoll.subscribe{ url = URL, cursor = "since" }
    assert.equals("ready", sub:status())
    assert.is_nil(sub:cursor())
    assert.equals(0, sub:pending())
  end)

  it("requires a table and a known cursor", function()
    raises(nil, "expects a table")
    raises({ url = URL }, "option 'cursor' must be")
    raises({ url = URL, cursor = "seq" }, "option 'cursor' must be")
  end)

  it("names unknown options and options of another strategy", function()
    raises({ url = URL, cursor = "since", on_mesage = print }, "option 'on_mesage' is unknown")
    raises({ url = URL, cursor = "etag", cursor_field = "x" },
      "option 'cursor_field' is not used by cursor \"etag\"")
    raises({ url = URL, cursor = "offset", cursor_in = "body" },
      "option 'cursor_in' is not used by cursor \"offset\"")
    raises({ url = URL, cursor = "since", wait = "5s" }, "option 'wait' is not used")
    raises({ url = URL, cursor = "index", id_field = "id" }, "option 'id_field' is not used")
  end)

  it("checks types and ranges", function()
    raises({ url = URL, cursor = "since", on_message = 1 }, "option 'on_message' must be a function")
    raises({ url = URL, cursor = "since", on_error = "x" }, "option 'on_error' must be a function")
    raises({ url = URL, cursor = "since", clock = 1 }, "option 'clock' must be a function")
    raises({ url = URL, cursor = "since", messages = 1 }, "option 'messages' must be")
    raises({ url = URL, cursor = "since", cursor_in = "header" }, "option 'cursor_in' must be")
    raises({ url = URL, cursor = "since", cursor_in = "body", body = "x" }, "option 'body' must be a table")
    raises({ url = URL, cursor = "since", id_field = 1 }, "option 'id_field' must be a string")
    raises({ url = URL, cursor = "since", buffer = 0 }, "option 'buffer' must be an integer")
    raises({ url = URL, cursor = "since", buffer = false }, "option 'buffer' must be an integer")
    local cycle = {}
    cycle.again = cycle
    raises({ url = URL, cursor = "since", cursor_in = "body", body = cycle },
      "option 'body' is too deep to copy")
    raises({ url = URL, cursor = function() end, resume = cycle }, "option 'resume' is too deep to copy")
    raises({ url = URL, cursor = "since", backoff = 1 }, "option 'backoff' must be a table")
    raises({ url = URL, cursor = "since", backoff = { flor = 1 } }, "option 'backoff.flor' is unknown")
    raises({ url = URL, cursor = "since", backoff = { floor = -1 } }, "option 'backoff.floor' must be")
    raises({ url = URL, cursor = "since", backoff = { floor = 2, ceiling = 1 } },
      "option 'backoff.ceiling' must be >= backoff.floor")
    raises({ url = URL, cursor = "index", wait = "soon" }, "option 'wait' must be")
    raises({ url = URL, cursor = "since", hold = 0 }, "option 'hold' must be a number of seconds > 0")
    raises({ url = URL, cursor = "since", hold = "30" }, "option 'hold' must be")
    raises({ url = URL, cursor = "since", hold = 30, timeout = 40 },
      "option 'hold' and 'timeout' exclude each other")
    raises({ url = URL, cursor = "offset", cursor_field = 1 }, "option 'cursor_field' must be a string")
  end)

  -- (#11.4) the error points at the line that called longpoll.subscribe, wherever in the
  -- library the option was found wrong: the strategy, its resume value, backoff, the request
  it("raises at the caller's line", function()
    local cases = {
      { url = URL, cursor = "seq" },
      { url = URL, cursor = "offset", resume = "x" },
      { url = URL, cursor = "since", cursor_in = "header" },
      { url = URL, cursor = "index", wait = "soon" },
      { url = URL, cursor = "since", backoff = { floor = -1 } },
      { url = URL, cursor = "since", id_field = false },
      { url = "ftp://x/", cursor = "since" },
      { url = URL, cursor = "since", timout = 1 },
    }
    for i, opts in ipairs(cases) do
      local line
      local ok, err = pcall(function()
        line = debug.getinfo(1, "l").currentline + 1
        local sub = longpoll.subscribe(opts)
        return sub
      end)
      assert.is_false(ok)
      local where = ("subscribe_options_spec.lua:%d: "):format(line)
      assert.is_truthy(tostring(err):find(where, 1, true), ("case %d: %s"):format(i, tostring(err)))
    end
  end)

  it("checks the resume value against the strategy", function()
    raises({ url = URL, cursor = "etag", resume = "1" }, "option 'resume'")
    raises({ url = URL, cursor = "etag", resume = { etag = 1 } }, "option 'resume'")
    raises({ url = URL, cursor = "offset", resume = "x" }, "option 'resume' must be an integer")
    raises({ url = URL, cursor = "since", resume = {} }, "option 'resume' must be a string or number")
    raises({ url = URL, cursor = "index", resume = "x" }, "option 'resume' must be an index")
    raises({ url = URL, cursor = function() end, resume = 3 }, "option 'resume' must be a table")
  end)

  it("checks the request options at once (the first request is built)", function()
    local ok, err = pcall(longpoll.subscribe, { url = URL, cursor = "since", timout = 5 })
    assert.is_false(ok)
    assert.matches("'timout'", tostring(err))
    ok, err = pcall(longpoll.subscribe, { url = "ftp://x/", cursor = "since" })
    assert.is_false(ok)
    assert.matches("url", tostring(err))
    ok, err = pcall(longpoll.subscribe, { url = URL, cursor = "since", timeout = "5" })
    assert.is_false(ok)
    assert.matches("timeout", tostring(err))
  end)

  it("accepts every documented option", function()
    local sub = longpoll.subscribe{
      url = URL, method = "GET", headers = { ["X-A"] = "1" }, query = { a = "1" },
      timeout = 30, connect_timeout = 5, max_body = 1024, decode = "json",
      follow_redirects = false, verify = true, user_agent = "t",
      cursor = "since", cursor_field = "after", id_field = "seq", cursor_in = "query",
      messages = "items", resume = "7", on_message = print, on_error = print,
      backoff = { floor = 1, ceiling = 2, idle = 0 }, buffer = 10,
      clock = os.time, sleep = function() end,
    }
    assert.equals("7", sub:cursor())
    sub = longpoll.subscribe{ url = URL, cursor = "index", cursor_field = "idx",
      cursor_header = "X-Index", wait = 5, resume = 12 }
    assert.equals("12", sub:cursor())
    sub = longpoll.subscribe{ url = URL, cursor = "offset", resume = "41" }
    assert.equals(41, sub:cursor())
    assert.equals("41", tostring(sub:cursor()))   -- an integer where Lua has them
    sub = longpoll.subscribe{ url = URL, cursor = "since", hold = 0.5 }
    assert.equals("ready", sub:status())
    -- a cursor function's cursor is the options of the next poll, from the start
    sub = longpoll.subscribe{ url = URL, cursor = function() end, query = { a = "1" } }
    assert.same({ url = URL, query = { a = "1" } }, sub:cursor())
    sub = longpoll.subscribe{ url = URL, cursor = "etag",
      resume = { etag = "3", last_modified = "Wed, 25 Nov 2026 18:01:28 GMT" } }
    assert.same({ etag = "3", last_modified = "Wed, 25 Nov 2026 18:01:28 GMT" }, sub:cursor())
  end)

  it("never prints a password of the URL (the core redacts it)", function()
    local sub = longpoll.subscribe{ url = "http://user:secret@127.0.0.1:9/poll", cursor = "since" }
    assert.equals("longpoll.subscription: http://user:***@127.0.0.1:9/poll (ready)", tostring(sub))
    sub:cancel()
    assert.equals("canceled", sub:error().kind)
    assert.is_nil(sub:error().message:find("secret", 1, true))
    assert.is_nil(tostring(sub):find("secret", 1, true))
  end)

  it("does not keep the caller's tables", function()
    local q = { a = "1" }
    local r = { etag = "1" }
    local sub = longpoll.subscribe{ url = URL, cursor = "etag", query = q, resume = r }
    q.a, r.etag = "2", "2"
    assert.same({ etag = "1" }, sub:cursor())
    local c = sub:cursor()
    c.etag = "x"
    assert.same({ etag = "1" }, sub:cursor())
  end)
end)
