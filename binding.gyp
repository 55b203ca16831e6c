{
  "targets": [
    {
      "target_name": "etherlink",
      "sources": [
        "csrc/addon.cc",
        "csrc/errors.cc",
        "csrc/args.cc",
        "csrc/polled_handle.cc",
        "csrc/tap_linux.cc",
        "csrc/offload.cc",
        "csrc/netlink_linux.cc",
        "csrc/link_watch_linux.cc",
        "csrc/udp_address.cc",
        "csrc/udp_gso_linux.cc",
        "csrc/udp_linux.cc",
        "csrc/aead.cc",
        "csrc/privilege_linux.cc"
      ],
      "libraries": ["-ldl"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a call cut short by a worker's
      # terminate() cannot throw into JS; without it node-addon-api rethrows in C++
      # and the process aborts (test/unit/native-workers.test.ts).
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
