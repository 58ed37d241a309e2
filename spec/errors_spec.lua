-- A bad server gives nil, err with the right err.kind, and the module keeps working
local longpoll = require "longpoll"
local testserver = require "support.testserver"

describe("a bad server", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  -- run a request and return its error object, asserting it failed
  local function fails(opts, kind)
    local req = longpoll.request(opts)
    local value, err = req:run()
    assert.is_nil(value)
    assert.is_table(err)
    assert.equals(kind, err.kind, tostring(err))
    assert.equals("failed", req:status())
    assert.matches(kind, err.message, 1, true)
    assert.equals(err.message, tostring(err))
    assert.equals("x" .. err.message, "x" .. err)
    return err
  end

  after_each(function()
    -- the process keeps working after every failure
    local value = longpoll.request{ url = srv:url("/json"), timeout = 10 }:run()
    assert.is_true(value.ok)
  end)

  it("refused port: connect", function()
    local port = testserver.free_port()
    local err = fails({ url = "http://127.0.0.1:" .. port .. "/" }, "connect")
    assert.is_number(err.curl_code)
    assert.is_nil(err.status)
    assert.matches("127.0.0.1:" .. port, err.message, 1, true)
  end)

  it("unknown host: resolve", function()
    fails({ url = "http://no-such-host.invalid/", connect_timeout = 5 }, "resolve")
  end)

  it("TLS to a plain HTTP port: tls", function()
    fails({ url = "https://127.0.0.1:" .. srv.port .. "/json", timeout = 10 }, "tls")
  end)

  it("reset mid-body: network", function()
    local err = fails({ url = srv:url("/reset"), timeout = 10 }, "network")
    assert.is_number(err.curl_code)
  end)

  it("truncated body: network", function()
    fails({ url = srv:url("/truncated"), timeout = 10 }, "network")
  end)

  it("connection closed with no answer: network", function()
    fails({ url = srv:url("/close"), timeout = 10 }, "network")
  end)

  it("garbage JSON: decode, with the response", function()
    local err = fails({ url = srv:url("/garbage"), timeout = 10 }, "decode")
    assert.equals(200, err.status)
    assert.equals('{"a": [1, 2,', err.response.body)
    assert.matches("invalid JSON", err.message, 1, true)
  end)

  it("garbage JSON with decode = 'none' is just a string", function()
    local value = longpoll.request{ url = srv:url("/garbage"), decode = "none" }:run()
    assert.equals('{"a": [1, 2,', value)
  end)

  it("endless chunked body: too_large at max_body", function()
    local err = fails({ url = srv:url("/endless"), max_body = 64 * 1024, timeout = 20 }, "too_large")
    assert.matches("max_body", err.message, 1, true)
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("endless chunked body: timeout at the deadline", function()
    fails({ url = srv:url("/endless?chunk=100&interval_ms=5"), timeout = 0.3 }, "timeout")
  end)

  it("body over the cap with a Content-Length: too_large", function()
    fails({ url = srv:url("/big?bytes=100000"), max_body = 1000 }, "too_large")
  end)

  it("body over the cap, chunked: too_large", function()
    fails({ url = srv:url("/big?bytes=100000&chunked=1"), max_body = 1000 }, "too_large")
  end)

  it("a body exactly at the cap is fine", function()
    local value = longpoll.request{ url = srv:url("/big?bytes=1000"), max_body = 1000 }:run()
    assert.equals(1000, #value)
  end)

  it("a big body arrives whole", function()
    local value = longpoll.request{ url = srv:url("/big?bytes=" .. 8 * 1024 * 1024), timeout = 30 }:run()
    assert.equals(8 * 1024 * 1024, #value)
    assert.equals(string.rep("x", 100), value:sub(1, 100))
  end)

  it("slow drip past the deadline: timeout", function()
    fails({ url = srv:url("/drip?bytes=100&interval_ms=50"), timeout = 0.3 }, "timeout")
  end)

  it("silence: timeout, and the held request is gone from the server", function()
    fails({ url = srv:url("/silence"), timeout = 0.2 }, "timeout")
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("a held request past its deadline: timeout", function()
    fails({ url = srv:url("/hold"), timeout = 0.1 }, "timeout")
  end)

  it("4xx and 5xx: http, with status and response", function()
    for _, code in ipairs({ 400, 404, 408, 429, 500, 503 }) do
      local err = fails({ url = srv:url("/status/" .. code) }, "http")
      assert.equals(code, err.status)
      assert.equals(code, err.response.status)
      assert.matches('"status"', err.response.body)
      assert.is_nil(err.curl_code)
    end
  end)

  it("redirect is followed", function()
    local value, resp = longpoll.request{
      url = srv:url("/redirect"), query = { to = srv:url("/json") },
    }:run()
    assert.is_true(value.ok)
    assert.equals(srv:url("/json"), resp.url)
  end)

  it("redirect is not followed with follow_redirects = false: http 302", function()
    local err = fails({ url = srv:url("/redirect"), query = { to = srv:url("/json") },
                        follow_redirects = false }, "http")
    assert.equals(302, err.status)
    assert.equals(srv:url("/json"), err.response.headers.location)
  end)

  it("redirect loop stops after 5 hops: http", function()
    local before = srv:stats().hits["/redirect-loop"] or 0
    local err = fails({ url = srv:url("/redirect-loop") }, "http")
    assert.equals(302, err.status)
    assert.equals(6, (srv:stats().hits["/redirect-loop"] or 0) - before)
  end)

  it("redirect to file:// fails: http 302, nothing read from disk", function()
    local err = fails({ url = srv:url("/redirect-file") }, "http")
    assert.equals(302, err.status)
    assert.not_matches("root:", err.response.body)
  end)
end)
