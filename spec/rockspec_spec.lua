-- The rockspec (#11.7): what it builds matches CMakeLists.txt and lua/, a
-- packed source rock builds offline in a fresh tree, and a libcurl too old
-- stops the build with a message that says so
local proc = require "support.proc"

local ROOT = assert(io.popen("pwd")):read("*l")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function rockspec()
  local p = assert(io.popen("ls " .. ROOT .. "/longpoll-*.rockspec"))
  local path = p:read("*l")
  p:close()
  local env = {}
  local chunk = assert(loadfile(path))
  if setfenv then setfenv(chunk, env) else chunk = assert(loadfile(path, "t", env)) end
  chunk()
  return env, path
end

local function sorted(t)
  table.sort(t)
  return t
end

-- run a shell command; its output (stdout and stderr) and whether it succeeded
local function sh(cmd)
  local out, ok = proc.run(cmd)
  return out, ok
end

describe("the rockspec", function()
  it("builds the sources CMakeLists.txt builds and installs every module in lua/", function()
    local rs = rockspec()
    local core = rs.build.modules["longpoll.core"]
    local cmake = read(ROOT .. "/CMakeLists.txt")
    local list = {}
    for f in cmake:match("set%(LP_CORE_SOURCES ([^)]*)%)"):gmatch("%S+") do list[#list + 1] = f end
    for f in cmake:match("add_library%(core MODULE ([^$)]*)"):gmatch("%S+") do list[#list + 1] = f end
    assert.same(sorted(list), sorted({ (table.unpack or unpack)(core.sources) }))
    -- every Lua file under lua/ is a module of the rock, and nothing else
    local want, have = {}, {}
    local p = assert(io.popen("cd " .. ROOT .. " && find lua -name '*.lua' | sort"))
    for path in p:lines() do
      want[#want + 1] = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".") .. "=" .. path
    end
    p:close()
    for name, src in pairs(rs.build.modules) do
      if type(src) == "string" then have[#have + 1] = name .. "=" .. src end
    end
    assert.same(sorted(want), sorted(have))
    -- one version: the rockspec's, the define, CMake's project
    local v = rs.version:match("^(.-)%-%d+$")
    assert.same({ 'LP_VERSION="' .. v .. '"' }, core.defines)
    assert.matches("project%(lua%-longpoll VERSION " .. v:gsub("%.", "%%.") .. " ", cmake)
    assert.same({ "linux" }, rs.supported_platforms)
    assert.equals("builtin", rs.build.type)
  end)

  -- the C build and the pack are the same whatever Lua runs the specs
  local once = _VERSION == "Lua 5.4" and it or pending

  once("stops the build with a message naming the libcurl it needs when the headers are older", function()
    local src = os.tmpname()
    local f = assert(io.open(src, "wb"))
    f:write('#include "lp_engine.h"\n')
    f:close()
    local out, ok = sh(("cc -fsyntax-only -x c -I%s/csrc -DLP_CURL_VERSION_NUM=0x075600 %s")
      :format(ROOT, src))
    assert.is_false(ok)
    assert.matches("lua-longpoll needs libcurl 7.87.0 or newer", out, 1, true)
    out, ok = sh(("cc -fsyntax-only -x c -I%s/csrc %s"):format(ROOT, src))
    os.remove(src)
    assert.is_true(ok, out)
  end)

  once("packs into a source rock that builds offline in a fresh tree (luarocks pack)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert.is_true(select(2, sh("mkdir -p " .. dir)))
    local out, ok = sh(("bash %s/scripts/pack.sh %s"):format(ROOT, dir))
    assert.is_true(ok, out)
    local rock = out:match("(%S+%.src%.rock)%s*$")
    assert.is_truthy(rock, out)
    -- no network (a namespace of its own) when unshare may make one
    local offline = select(2, sh("unshare -n true")) and "unshare -n " or ""
    out, ok = sh(("cd %s && %sluarocks --lua-version=5.4 --tree %s/tree build --deps-mode=none %s")
      :format(dir, offline, dir, rock))
    assert.is_true(ok, out)
    out, ok = sh(("cd %s && lua5.4 -e 'package.path = \"tree/share/lua/5.4/?.lua;\" .. package.path; "
      .. "package.cpath = \"tree/lib/lua/5.4/?.so;\" .. package.cpath; "
      .. "local l = require \"longpoll\"; print(l.version, package.searchpath(\"longpoll.core\", package.cpath))'")
      :format(dir))
    assert.is_true(ok, out)
    assert.equals(rockspec().version:match("^(.-)%-%d+$") .. "\ttree/lib/lua/5.4/longpoll/core.so\n", out)
    sh("rm -rf " .. dir)
  end)
end)
