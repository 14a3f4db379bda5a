/* Shared by the addons (sockopt.c, tftp_pump.c): a failed Node-API call throws and returns. */
#ifndef PXEHA_NAPI_CHECK_H
#define PXEHA_NAPI_CHECK_H

#include <node_api.h>

/* For functions that return napi_value: throws a JS Error (code PXE_NATIVE), returns NULL. */
#define CHECK(call)                                                                   \
  do {                                                                                \
    if ((call) != napi_ok) {                                                          \
      napi_throw_error(env, "PXE_NATIVE", "N-API call failed: " #call);               \
      return NULL;                                                                    \
    }                                                                                 \
  } while (0)

#endif
