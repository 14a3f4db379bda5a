#!/usr/bin/env bash
# Installs what the integration tests need, only what is missing, and builds the native addon.
# Idempotent and quiet when everything is present.
#
#   scripts/install-deps.sh           Debian packages (apt-get, as root) + addon if not built
#   scripts/install-deps.sh --native  only (re)build the addon, always (npm's install script)
#
# The addons (native/sockopt.c → build/Release/pxeha_sockopt.node, native/tftp_pump.c →
# build/Release/pxeha_tftp.node) are built against the local
# Node headers (<prefix>/include/node, /usr/include/node on Debian's nodejs), so node-gyp never
# tries to download them; without local headers node-gyp falls back to its own download.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "install-deps: $*" >&2; }

node_gyp() {
  # npm sets npm_config_node_gyp for lifecycle scripts; else a local one; else npm's bundled one.
  if [ -n "${npm_config_node_gyp:-}" ] && [ -f "${npm_config_node_gyp}" ]; then
    node "$npm_config_node_gyp" "$@"
  elif [ -x node_modules/.bin/node-gyp ]; then
    node_modules/.bin/node-gyp "$@"
  else
    local npm_root
    npm_root="$(dirname "$(readlink -f "$(command -v npm)")")/.."
    if [ -f "$npm_root/node_modules/node-gyp/bin/node-gyp.js" ]; then
      node "$npm_root/node_modules/node-gyp/bin/node-gyp.js" "$@"
    else
      npx --no-install node-gyp "$@"
    fi
  fi
}

build_native() {
  if [ -z "${npm_config_nodedir:-}" ]; then
    local prefix
    prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
    if [ -f "$prefix/include/node/node_api.h" ]; then export npm_config_nodedir="$prefix"; fi
  fi
  local out
  if ! out="$(node_gyp rebuild 2>&1)"; then
    echo "$out" >&2
    log "building the native addon failed (needs make, a C compiler and python3)"
    return 1
  fi
  node -e 'require(process.argv[1])' "$PWD/build/Release/pxeha_sockopt.node"
}

if [ "${1:-}" = "--native" ]; then
  build_native
  exit 0
fi

# command-or-file → Debian package. A path is checked with -e, anything else with command -v.
declare -a wants=(
  "busybox busybox"
  "udhcpc udhcpc"
  "dhclient isc-dhcp-client"
  "perfdhcp kea-admin"
  "kea-dhcp4 kea-dhcp4-server"
  "dnsmasq dnsmasq-base"
  "ip iproute2"
  "python3 python3"
  "tcpdump tcpdump"
  "/usr/lib/ipxe/ipxe.efi ipxe"
  "curl curl"
  "rsync rsync"
  "atftp atftp"
  "tftp tftp-hpa"
  "in.tftpd tftpd-hpa"
  "etcd etcd-server"
  "etcdctl etcd-client"
  "nginx nginx"
  "wrk wrk"
  "qemu-system-x86_64 qemu-system-x86"
  "/usr/lib/ipxe/qemu/efi-e1000.rom ipxe-qemu"
  "/usr/share/OVMF/OVMF_CODE_4M.fd ovmf"
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 faketime"
  "/usr/bin/chromium chromium"
  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf fonts-dejavu-core"
)
# Packages with a daemon (tftpd-hpa, nginx, etcd-server) must not start it on the host: Debian's
# images carry a policy-rc.d that refuses service starts; make sure one is there while we install.
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for want in "${wants[@]}"; do
  probe="${want%% *}"
  pkg="${want#* }"
  if [[ "$probe" == /* ]]; then [ -e "$probe" ] && continue; else command -v "$probe" >/dev/null 2>&1 && continue; fi
  missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages ${missing[*]}, and not root: install them with apt-get" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  # Update the lists once, only if they are absent or the install cannot find a package.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then apt-get update -qq; fi
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if [ ! -f build/Release/pxeha_sockopt.node ] || [ native/sockopt.c -nt build/Release/pxeha_sockopt.node ] \
  || [ binding.gyp -nt build/Release/pxeha_sockopt.node ] \
  || [ ! -f build/Release/pxeha_tftp.node ] || [ native/tftp_pump.c -nt build/Release/pxeha_tftp.node ] \
  || [ native/napi_check.h -nt build/Release/pxeha_tftp.node ]; then
  log "building the native addon"
  build_native
fi
