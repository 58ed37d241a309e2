-- Hostile Lua never corrupts memory or crashes the host (#7.2, #7.4, #7.7, #7.8).
-- What could crash the old code runs in a child process, under the interpreter
-- named by LONGPOLL_LUA; leaks are looked for with valgrind memcheck.
local longpoll = require "longpoll"
local core = require "longpoll.core"
local testserver = require "support.testserver"
local proc = require "support.proc"

local LUA = require "support.lua"
-- valgrind and a cap on the address space do not work beside AddressSanitizer,
-- which the sanitizer run preloads into children: those cases wait there
local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
local unsanitized_it = sanitized and pending or it

-- run `script` in a child (args: the spec server's port); returns its output
-- and exit code. With valgrind, definite leaks and memory errors exit 9.
local function child(script, port, valgrind)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local vg = valgrind and "valgrind -q --leak-check=full --errors-for-leak-kinds=definite "
    .. "--show-leak-kinds=definite --error-exitcode=9 " or ""
  local out, _, _, code = proc.run(("LUA_PATH=%s LUA_CPATH=%s timeout 120 %s%s %s %s"):format(
    proc.shell_quote(package.path), proc.shell_quote(package.cpath), vg, LUA,
    proc.shell_quote(path), tostring(port or 0)))
  os.remove(path)
  return out, code
end

describe("hostile Lua", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  describe("wait_any (#7.2)", function()
    it("sizes the list by its raw length, never by a lying __len", function()
      local out, code = child([[
        local longpoll = require "longpoll"
        local port = ...
        local reqs = {}
        for i = 1, 200 do
          reqs[i] = longpoll.request{ url = "http://127.0.0.1:" .. port .. "/json" }
        end
        local big = math.tointeger and math.tointeger(2 ^ 61) + 1 or 2 ^ 53
        setmetatable(reqs, { __len = function() return big end })
        local got = longpoll.wait_any(reqs, 30)
        print(got and got:status() or "nil")
      ]], srv.port)
      assert.equals(0, code, out)
      assert.matches("^done\n", out)
    end)

    it("checks every item before starting any", function()
      local a = longpoll.request{ url = srv:url("/json") }
      local b = longpoll.request{ url = srv:url("/json") }
      assert.has_error(function() longpoll.wait_any({ a, b, "x" }, 1) end,
        "longpoll.wait_any: item 3 is not a request")
      assert.equals("ready", a:status())
      assert.equals("ready", b:status())
      assert.has_error(function() longpoll.wait_any({ a, setmetatable({}, {}) }, 1) end)
      assert.equals("ready", a:status())
      assert.equals(b, longpoll.wait_any({ b }, 10))
    end)
  end)

  describe("wait_any out of memory (#11.4)", function()
    unsanitized_it("raises instead of returning nil as on a timeout", function()
      -- a million entries of one held request; then the address space is capped
      -- (prlimit on this very process) so the engine cannot allocate their waiters
      local out, code = child([[
        local longpoll = require "longpoll"
        local port = ...
        assert(longpoll.request{ url = "http://127.0.0.1:" .. port .. "/json" }:run())
        local held = longpoll.request{ url = "http://127.0.0.1:" .. port .. "/silence" }:start()
        local list = {}
        for i = 1, 1000000 do list[i] = held end
        local function vmsize()
          local f = assert(io.open("/proc/self/status"))
          local s = f:read("*a")
          f:close()
          return tonumber(s:match("VmSize:%s*(%d+)")) * 1024
        end
        local f = assert(io.open("/proc/self/stat"))
        local pid = tonumber(f:read("*l"):match("^%d+"))
        f:close()
        collectgarbage()
        assert(os.execute(("prlimit --pid %d --as=%d"):format(pid, vmsize() + 12 * 2 ^ 20)))
        print(pcall(longpoll.wait_any, list, 3))
        held:cancel()
      ]], srv.port)
      assert.equals(0, code, out)
      assert.matches("^false\tlongpoll: out of memory\n", out)
    end)
  end)

  describe("module reload (#7.4)", function()
    it("a request made before a reload starts on its own engine, from a finalizer at close", function()
      local out, code = child([[
        local longpoll = require "longpoll"
        local port = ...
        local req = longpoll.request{ url = "http://127.0.0.1:" .. port .. "/json" }
        -- older than the second context: finalized after it, at lua_close
        -- (compat.finalizer: tables have no __gc before Lua 5.2)
        local late = require("longpoll.compat").finalizer({}, function()
          req:start()
          io.write("started ", req:status(), "\n")
        end)
        package.loaded["longpoll"], package.loaded["longpoll.core"] = nil, nil
        local again = require "longpoll"
        assert(again ~= longpoll)
        local v = again.request{ url = "http://127.0.0.1:" .. port .. "/json" }:run()
        io.write("second ", tostring(v.ok), "\n")
        -- the end of the script closes the state (os.exit does not on 5.1)
      ]], srv.port)
      assert.equals(0, code, out)
      assert.matches("second true\nstarted ", out)
    end)

    -- on 5.1 and LuaJIT a finalizer older than require "longpoll" runs after the
    -- package library unloaded the module: no module function may be called
    -- there (5.2+ unload libraries last); this case cannot arise on them
    local libs_last = _VERSION ~= "Lua 5.1"
    ;(libs_last and it or pending)("a request whose context was finalized fails cleanly", function()
      local out, code = child([[
        local compat = require "longpoll.compat"
        local keep = {}
        -- older than the module's context: finalized after it, at lua_close
        keep.f = compat.finalizer({}, function()
          print(pcall(keep.lp.request, { url = "http://127.0.0.1:1/" }))
          print(pcall(keep.req.start, keep.req))
          print(pcall(keep.lp.wait_any, { keep.req }, 0))
        end)
        keep.lp = require "longpoll"
        keep.req = keep.lp.request{ url = "http://127.0.0.1:1/" }
      ]])
      assert.equals(0, code, out)
      assert.matches("^false\t[^\n]*longpoll: the module was closed", out)
      assert.matches("\nfalse\t[^\n]*request already collected", out)
      assert.matches("\nfalse\t[^\n]*item 1 is not a request", out)
    end)
  end)

  describe("NUL bytes in string options (#7.7)", function()
    local function raises(opts, name)
      local ok, err = pcall(longpoll.request, opts)
      assert.is_false(ok, name)
      assert.matches("option '" .. name .. "'", tostring(err), 1, true)
    end

    it("raise, naming the option, instead of cutting the string", function()
      local u = srv:url("/echo")
      raises({ url = u .. "?x=a\0/../../secret" }, "url")
      raises({ url = u, method = "DELETE\0GET" }, "method")
      raises({ url = u, headers = { ["X-A\0B"] = "v" } }, "headers")
      raises({ url = u, headers = { ["X-A"] = "v\0w" } }, "headers")
      raises({ url = u, query = { ["a\0b"] = "v" } }, "query")
      raises({ url = u, query = { a = "v\0w" } }, "query")
      raises({ url = u, user_agent = "ua\0x" }, "user_agent")
      raises({ url = u, decode = "json\0" }, "decode")
      raises({ url = u, cainfo = "/etc/ssl/certs/ca-certificates.crt\0x" }, "cainfo")
      raises({ url = u, http_version = "2\0" }, "http_version")
      raises({ url = u, auth = { user = "a\0b", password = "p" } }, "auth.user")
      raises({ url = u, auth = { user = "a", password = "p\0q" } }, "auth.password")
      raises({ url = u, auth = { user = "a", password = "p", type = "basic\0" } }, "auth.type")
    end)

    it("a string body keeps its NUL bytes (it is sent with its length)", function()
      local v = longpoll.request{ url = srv:url("/echo"), body = "a\0b" }:run()
      assert.equals("a\0b", v.body)
    end)
  end)

  describe("smaller faults (#7.8)", function()
    unsanitized_it("a request made by a finalizer during lua_close leaks nothing", function()
      local out, code = child([[
        local longpoll = require "longpoll"
        local port = ...
        local keep = {}
        -- newer than the module's context: finalized before it, at lua_close
        keep.f = require("longpoll.compat").finalizer({}, function()
          local r = longpoll.request{ url = "http://127.0.0.1:" .. port .. "/hold",
                                      headers = { ["X-A"] = "b" }, body = "x" }
          local s = longpoll.request{ url = "http://127.0.0.1:" .. port .. "/hold" }:start()
          keep.r, keep.s = r, s
          io.write("made\n")
        end)
      ]], srv.port, true)
      assert.equals(0, code, out)
      assert.matches("made", out)
    end)

    it("an encoder that returns no string raises naming the body", function()
      local json = require("cjson").new()
      finally(function() core.codec(json.encode, json.decode, json.null) end)
      for _, ret in ipairs{ "nil", "42", "{}" } do
        core.codec((loadstring or load)("return function() return " .. ret .. " end")(), json.decode, json.null)
        local ok, err = pcall(longpoll.request, { url = srv:url("/echo"), body = { 1 } })
        assert.is_false(ok, ret)
        assert.matches("option 'body' could not be encoded as JSON", err, 1, true)
      end
    end)

    it("the context's __gc and every metamethod check their argument", function()
      local out, code = child([[
        local longpoll = require "longpoll"
        local ctxmeta = debug.getregistry()["longpoll.state"]
        -- a request's finalizer is its guard's (see longpoll.c)
        local guardmeta = debug.getregistry()["longpoll.request.guard"]
        local req = longpoll.request{ url = "http://127.0.0.1:1/" }
        local _, err = longpoll.request{ url = "http://127.0.0.1:1/" }:run()
        local n = 0
        for _, f in ipairs{ ctxmeta.__gc, guardmeta.__gc,
                            getmetatable(req).__close, getmetatable(req).__tostring,
                            getmetatable(err).__tostring } do
          for _, bad in ipairs{ "x", 1, {}, io.stdout } do
            if not pcall(f, bad) then n = n + 1 end
          end
          if not pcall(f) then n = n + 1 end
        end
        print(n, longpoll.request{ url = "http://127.0.0.1:1/" }:status())
      ]])
      assert.equals(0, code, out)
      -- every call raised, except the error's __tostring given a table
      assert.equals("24\tready\n", out)
    end)
  end)
end)
