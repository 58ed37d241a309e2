-- A host that loads longpoll and then forks (a pre-fork server): the child
-- gets a working module, the parent's requests and connections are left
-- alone. spec/host/fork_test.c (built for the Lua under test, beside the C
-- host test) runs spec/support/fork.lua, which says what is checked.
local testserver = require "support.testserver"
local nchan = require "support.nchan"
local proc = require "support.proc"

describe("a host that forks", function()
  local srv, ngx
  setup(function()
    srv = testserver.start()
    if nchan.available() then ngx = nchan.start{ subscriber_timeout = "60s" } end
  end)
  teardown(function()
    if ngx then ngx:stop() end
    srv:stop()
  end)

  it("gets a working module in the child; requests in flight fail there and go on in the parent, whose connections the child leaves alone", function()
    local bin = (os.getenv("LONGPOLL_HOST_TEST") or "build/host_test"):gsub("host_test$", "fork_test")
    local f = io.open(bin)
    assert.is_not_nil(f, bin .. " is not built (cmake -DLONGPOLL_HOST_TEST=ON)")
    f:close()
    local cmd = ("LUA_PATH=%s LUA_CPATH=%s timeout 300 %s spec/support/fork.lua %s"):format(
      proc.shell_quote(package.path), proc.shell_quote(package.cpath), bin, srv:url(""))
    if ngx then cmd = cmd .. (" %s %s"):format(ngx:tlsurl(""), ngx.cafile) end
    local out, ok = proc.run(cmd)
    assert.is_true(ok, out)
    assert.truthy(out:find("child ok\n", 1, true), out)
    assert.truthy(out:find("parent ok\n", 1, true), out)
    assert.truthy(srv:wait_held(0, 10))
  end)
end)
