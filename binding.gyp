# Plain C against Node-API, so no node-addon-api and one binary per Node-API version, not per
# Node release. Build: scripts/install-deps.sh --native (finds local headers, so node-gyp
# never downloads them), or npm_config_nodedir=/usr npx node-gyp rebuild.
#   pxeha_sockopt: native/sockopt.c → build/Release/pxeha_sockopt.node (src/dhcp/socket.ts)
#   pxeha_tftp:    native/tftp_pump.c → build/Release/pxeha_tftp.node (src/tftp/native-pump.ts),
#                  optional: without it the TFTP server keeps its JS path
{
  "targets": [
    {
      "target_name": "pxeha_sockopt",
      "sources": ["native/sockopt.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function"],
      "cflags_c": ["-std=gnu11"]
    },
    {
      "target_name": "pxeha_tftp",
      "sources": ["native/tftp_pump.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function", "-O2"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
