#!/usr/bin/env bash
# The main job (`npm start`): the virtual lab of `pxeha lab` (README "Lab"). It creates network
# namespaces with a bridge, runs pxeha serving examples/lab/ in them, PXE-boots one QEMU machine
# through it (SeaBIOS with the iPXE ROM; --uefi: OVMF's own PXE client → snponly.efi → iPXE),
# streams its serial console with a line per boot stage (DHCP, TFTP, HTTP, done), shows what
# pxeha recorded, and removes everything it made (also on failure or Ctrl-C). Nothing touches
# the host's own interfaces; the node's API is forwarded to 127.0.0.1 only.
#
#   scripts/lab.sh [--uefi] [--count N] [--keep]    --keep: leave the lab up (pxeha lab down)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "lab.sh must run as root (it creates network namespaces)" >&2; exit 1; }
bash scripts/install-deps.sh

keep=false
boot_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=true ;;
    --uefi) boot_args+=(--uefi) ;;
    --count) boot_args+=(--count "$2"); shift ;;
    --once) ;; # the lab always tears down unless --keep; kept for older instructions
    *) echo "usage: scripts/lab.sh [--uefi] [--count N] [--keep]" >&2; exit 2 ;;
  esac
  shift
done

state_dir=/run/pxeha-lab
pxeha() { node bin/pxeha.js "$@"; }
up=false
cleanup() {
  if $up && ! $keep; then
    echo "--- removing the lab"
    pxeha lab down --state-dir "$state_dir" || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "--- setting up the lab"
pxeha lab up --state-dir "$state_dir" --api-port "${PXEHA_LAB_API_PORT:-8080}"
up=true
echo "--- PXE-booting a machine"
pxeha lab boot --state-dir "$state_dir" "${boot_args[@]}"
echo "--- what pxeha recorded (pxeha machines / pxeha leases)"
pxeha machines --config "$state_dir/node.yaml"
pxeha leases --config "$state_dir/node.yaml"
if $keep; then
  echo "the lab stays up: pxeha lab boot [--uefi] [--count N] boots more; pxeha lab down removes it"
fi
