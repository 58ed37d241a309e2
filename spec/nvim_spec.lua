-- examples/nvim in `nvim --headless` (Neovim 0.7: LuaJIT, luv as vim.loop),
-- driven by spec/support/nvim_driver.lua: messages shown in a buffer as they
-- arrive, :LongpollCancel cancels the held poll
local testserver = require "support.testserver"
local proc = require "support.proc"

local function have(cmd)
  local _, ok = proc.run("command -v " .. cmd .. " >/dev/null")
  return ok == true
end

-- Neovim embeds LuaJIT: it loads the build the LuaJIT pass of the suite uses
local runs = rawget(_G, "jit") and have("nvim")
local why = not rawget(_G, "jit") and "runs in the LuaJIT pass (Neovim embeds LuaJIT)"
  or "needs nvim (Debian: neovim)"

describe("examples/nvim in Neovim", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() srv:stop() end)

  local test = runs and it or function(name) pending(name .. ": " .. why) end
  test("shows messages in a buffer as they arrive; :LongpollCancel cancels the held poll", function()
    srv:reset()
    srv:publish("nvim", { "one", "two" })
    local out, ok, how, code = proc.run(("LUA_PATH=%q LUA_CPATH=%q timeout 60 nvim --headless -u NONE -i NONE "
      .. "--cmd 'set rtp^=examples/nvim' -c 'runtime plugin/longpoll_demo.lua' "
      .. "-c 'luafile spec/support/nvim_driver.lua' %s </dev/null"):format(package.path, package.cpath, srv:url("")))
    assert.is_true(ok, out)
    assert.equals("exit", how)
    assert.equals(0, code)
    assert.matches("-- messages on nvim\n1: one\n2: two\n3: three\n-- poll canceled\n", out, 1, true)
    print("  Neovim: " .. (out:match("canceled in %d+ us[^\n]*") or "?"))
    assert.truthy(srv:wait_held(0, 5))
  end)
end)
