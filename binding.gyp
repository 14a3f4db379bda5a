# Builds native/sockopt.c into build/Release/pxeha_sockopt.node (loaded by src/dhcp/socket.ts).
# Plain C against Node-API, so no node-addon-api and one binary per Node-API version, not per
# Node release. Build: scripts/install-deps.sh --native (finds local headers, so node-gyp
# never downloads them), or npm_config_nodedir=/usr npx node-gyp rebuild.
{
  "targets": [
    {
      "target_name": "pxeha_sockopt",
      "sources": ["native/sockopt.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
