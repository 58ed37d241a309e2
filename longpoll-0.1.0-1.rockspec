rockspec_format = "3.0"
package = "longpoll"
version = "0.1.0-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Cancelable HTTP long-polls for Lua, on a libcurl worker thread",
  detailed = [[
    longpoll runs HTTP long-poll requests on one libcurl worker thread and lets
    any coroutine, callback or thread cancel them at once. Results are decoded
    JSON (lua-cjson); waiting suits game loops, coroutine schedulers and event
    loops (fd()).
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
external_dependencies = {
  CURL = { library = "curl" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_C_FLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
