{
  "targets": [
    {
      "target_name": "edgeguard_native",
      "sources": ["native/shard_open.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    }
  ]
}
