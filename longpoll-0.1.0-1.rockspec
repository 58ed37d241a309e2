rockspec_format = "3.0"
package = "longpoll"
version = "0.1.0-1"
-- The sources are this checkout: `luarocks make` builds it in place, and
-- scripts/pack.sh packs it into longpoll-0.1.0-1.src.rock with `luarocks pack`
-- (which clones the checkout's HEAD: this relative URL is made absolute for
-- it). A source rock builds offline: its sources are inside it.
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
  labels = { "http", "libcurl", "long-polling", "cancel" },
}
-- epoll, eventfd and close-on-exec sockets: Linux only
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
-- libcurl 7.87.0 or newer (csrc/lp_engine.h stops the build with a message
-- naming it when the headers found are older). Declared by its library:
-- Debian keeps curl.h under the multiarch include directory, where LuaRocks
-- 3.8 does not look for a header
external_dependencies = {
  CURL = { library = "curl" },
}
-- builtin: a C compiler and libcurl's headers are all a user needs (no
-- CMake). CMakeLists.txt builds the same sources for the sanitizer, host
-- and fuzz builds of the tests; spec/rockspec_spec.lua checks the two lists
build = {
  type = "builtin",
  modules = {
    ["longpoll.core"] = {
      sources = {
        "csrc/longpoll.c", "csrc/lp_engine.c",
        "csrc/lp_stream.c", "csrc/lp_notify.c", "csrc/lp_scope.c",
      },
      defines = { 'LP_VERSION="0.1.0"' },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
      libraries = { "curl", "pthread" },
    },
    longpoll = "lua/longpoll.lua",
    ["longpoll.compat"] = "lua/longpoll/compat.lua",
    ["longpoll.cursors"] = "lua/longpoll/cursors.lua",
    ["longpoll.subscribe"] = "lua/longpoll/subscribe.lua",
    ["longpoll.subscription"] = "lua/longpoll/subscription.lua",
  },
}
-- the whole suite, every Lua version (needs Debian 12 packages: it installs
-- what is missing; see README, "Try it")
test = {
  type = "command",
  command = "bash scripts/test.sh",
}
