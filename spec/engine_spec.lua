-- The process-wide engine: connection limits (longpoll.configure), HTTP
-- version choice, connection reuse
local longpoll = require "longpoll"
local testserver = require "support.testserver"

describe("longpoll.configure", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function()
    longpoll.configure{ max_host_connections = 0, max_connections = 0 }
    srv:stop()
  end)

  it("names a wrong option", function()
    assert.has_error(function() longpoll.configure{ max_host = 2 } end,
      "longpoll.configure: unknown option 'max_host'")
    assert.has_error(function() longpoll.configure{ max_connections = -1 } end,
      "longpoll.configure: option 'max_connections' must be a non-negative integer")
    assert.has_error(function() longpoll.configure{ max_connections = 1.5 } end,
      "longpoll.configure: option 'max_connections' must be a non-negative integer")
  end)

  it("max_host_connections holds extra requests back until a connection frees", function()
    longpoll.configure{ max_host_connections = 2 }
    local reqs = {}
    for i = 1, 6 do reqs[i] = longpoll.request{ url = srv:url("/hold") }:start() end
    assert.truthy(srv:wait_held(2, 5))
    assert.is_false((srv:wait_held(3, 0.3)))     -- the other four wait in libcurl
    for i = 1, 6 do assert.equals("running", reqs[i]:status()) end
    -- cancel one by one: while two or more are left, a waiting one takes
    -- each freed place, so the server holds two again
    for i = 1, 4 do
      assert.is_true(reqs[i]:cancel())
      assert.truthy(srv:wait_held(2, 5), "after canceling " .. i)
    end
    assert.is_true(reqs[5]:cancel())
    assert.truthy(srv:wait_held(1, 5))
    assert.equals("running", reqs[6]:status())
    for i = 1, 6 do reqs[i]:cancel() end
    assert.truthy(srv:wait_held(0, 5))
    longpoll.configure{ max_host_connections = 0 }
    for i = 1, 6 do reqs[i] = longpoll.request{ url = srv:url("/hold") }:start() end
    assert.truthy(srv:wait_held(6, 5))
    for i = 1, 6 do reqs[i]:cancel() end
    assert.truthy(srv:wait_held(0, 5))
  end)

  it("max_connections bounds the total as well", function()
    -- libcurl counts idle cached connections in the total and evicts one for
    -- each new one: idle connections to servers earlier specs stopped would
    -- let 5 through. It prunes dead ones when a connection is made at least
    -- 1 s after its last pruning: wait, then make one
    longpoll.sleep(1.1)
    assert.is_table((longpoll.request{ url = srv:url("/json") }:run()))
    longpoll.configure{ max_connections = 3 }
    local reqs = {}
    for i = 1, 5 do reqs[i] = longpoll.request{ url = srv:url("/hold") }:start() end
    assert.truthy(srv:wait_held(3, 5))
    assert.is_false((srv:wait_held(4, 0.3)))
    for i = 1, 5 do reqs[i]:cancel() end
    assert.truthy(srv:wait_held(0, 5))
    longpoll.configure{ max_connections = 0 }
  end)
end)

describe("http_version", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  it("is validated", function()
    assert.has_error(function() longpoll.request{ url = srv:url("/"), http_version = "3" } end,
      'longpoll.request: option \'http_version\' must be "auto", "1.1" or "2"')
  end)

  it("auto speaks HTTP/1.1 to a cleartext server and reports it", function()
    local _, resp = longpoll.request{ url = srv:url("/json") }:run()
    assert.equals("1.1", resp.http_version)
    _, resp = longpoll.request{ url = srv:url("/json"), http_version = "1.1" }:run()
    assert.equals("1.1", resp.http_version)
  end)
end)

describe("HTTP/2", function()
  local nchan = require "support.nchan"
  local ng
  setup(function() ng = nchan.start{ subscriber_timeout = "60s" } end)
  teardown(function() if ng then ng:stop() end end)

  local function established(port)
    local p = assert(io.popen(("ss -Htn state established '( dport = :%d )' | wc -l"):format(port)))
    local n = tonumber(p:read("*l"))
    p:close()
    return n
  end

  it("is used when asked for and offered (h2c, prior knowledge)", function()
    local value, resp = longpoll.request{ url = ng:h2url("/json"), http_version = "2" }:run()
    assert.is_true(value.ok)
    assert.equals("2", resp.http_version)
    assert.equals(200, resp.status)
  end)

  it("h2c works for every request, one after another and at once (curl/curl#10634, #9.6)", function()
    -- libcurl 7.88.1 fails every h2c request after the first on a reused
    -- connection; the module gives each one a connection of its own there
    for i = 1, 3 do
      local value, resp = longpoll.request{ url = ng:h2url("/json"), http_version = "2",
                                            timeout = 10 }:run()
      assert.is_table(value, tostring(resp))
      assert.equals("2", resp.http_version, i)
    end
    local reqs = {}
    for i = 1, 5 do
      reqs[i] = longpoll.request{ url = ng:h2url("/json"), http_version = "2", timeout = 10 }:start()
    end
    for i = 1, 5 do
      local value, resp = reqs[i]:run()
      assert.is_table(value, tostring(resp))
      assert.equals("2", resp.http_version)
    end
  end)

  it("over TLS, multiplexes many held long-polls on one connection", function()
    local reqs = {}
    for i = 1, 50 do
      reqs[i] = longpoll.request{ url = ng:tlsurl("/sub/h2ch" .. i), cainfo = ng.cafile }:start()
    end
    local held = false
    for _ = 1, 1000 do -- bounded: until Nchan counts the last subscriber
      if ng:info("h2ch50").subscribers == 1 and ng:info("h2ch1").subscribers == 1 then
        held = true
        break
      end
      assert.is_false(reqs[1]:wait(0.01))
    end
    assert.is_true(held)
    assert.equals(1, established(ng.tlsport))
    for i = 1, 50 do assert.equals("running", reqs[i]:status()) end
    assert.truthy(ng:publish("h2ch7", "seven"))
    assert.is_true(reqs[7]:wait(10))
    local value, resp = reqs[7]:run()
    assert.equals("seven", value)
    assert.equals("2", resp.http_version)
    for i = 1, 50 do reqs[i]:cancel() end
    assert.equals("done", reqs[7]:status())
    assert.equals("canceled", reqs[1]:status())
    -- canceling streams leaves the connection up for the next request
    local v2, r2 = longpoll.request{ url = ng:tlsurl("/json"), cainfo = ng.cafile }:run()
    assert.is_true(v2.ok)
    assert.equals("2", r2.http_version)
    assert.equals(1, established(ng.tlsport))
  end)

  it("a server certificate nobody vouches for fails with kind 'tls'", function()
    local value, err = longpoll.request{ url = ng:tlsurl("/json") }:run()
    assert.is_nil(value)
    assert.equals("tls", err.kind)
    local ok = longpoll.request{ url = ng:tlsurl("/json"), verify = false }:run()
    assert.is_true(ok.ok)
  end)
end)
