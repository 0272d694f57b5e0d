#!/usr/bin/env bash
# aarch64, proven (make check-aarch64): an arm64 Debian root built with debootstrap and run through
# qemu-user-static; inside it the camera-box package is installed from the registry's aarch64 wheels
# (`pip install .`: numpy, onnxruntime, onnx, OpenCV, typer; no torch) and runs `occ run` and
# `occ eval` on small models and a clip made on x86-64, whose decisions must be x86-64's, and the
# runtime tier of the tests (tests/runtime, with pytest, jsonschema and paho-mqtt added after the package list is taken),
# whose summary line it prints.
# Needs root (debootstrap, chroot, binfmt_misc), Debian's packages and the package registry.
# Too slow for CI (tens of minutes under emulation): run it by hand; the README's table says where.
#
#   OCC_AARCH64_ROOT  where the arm64 root lives (kept between runs; default /var/tmp/occ-aarch64/root)
#   OCC_AARCH64_WORK  models, clip and results (default runs/aarch64/work; result.json at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=${OCC_AARCH64_ROOT:-/var/tmp/occ-aarch64/root}
WORK=${OCC_AARCH64_WORK:-runs/aarch64/work}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PY=${PYTHON:-.venv/bin/python}
step() { echo "check-aarch64: $*" >&2; }

[ "$(id -u)" = 0 ] || { step "needs root (debootstrap, chroot, binfmt_misc)"; exit 2; }
[ -x "$PY" ] || { step "$PY missing: run make venv first (the x86-64 side trains the small models)"; exit 2; }

step "1/6 tools: debootstrap, qemu-user-static, binfmt-support"
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap qemu-user-static binfmt-support >/dev/null
fi

step "2/6 arm64 binaries run through qemu (binfmt_misc)"
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { step "binfmt_misc has no qemu-aarch64 entry"; exit 1; }

step "3/6 the arm64 Debian root ($SUITE) in $ROOTFS"
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  mkdir -p "$(dirname "$ROOTFS")"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$ROOTFS" "$MIRROR"
fi
[ "$(chroot "$ROOTFS" /usr/bin/uname -m)" = aarch64 ] || { step "the root does not run as aarch64"; exit 1; }

step "4/6 x86-64: small models, a clip, a data folder; occ run and occ eval"
"$PY" scripts/aarch64_check.py prepare "$WORK"

cleanup() { umount "$ROOTFS/proc" 2>/dev/null || true; umount "$ROOTFS/dev" 2>/dev/null || true; }
trap cleanup EXIT
mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
mountpoint -q "$ROOTFS/dev" || mount --bind /dev "$ROOTFS/dev"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# the host's CA bundle: where the registry is reached through a TLS-inspecting proxy, its CA is there
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/occ-host-ca.crt"
rm -rf "$ROOTFS/opt/occ-src" "$ROOTFS/opt/occ-check"
mkdir -p "$ROOTFS/opt/occ-src" "$ROOTFS/opt/occ-check"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$ROOTFS/opt/occ-src"   # the tracked files, as a clone has them
cp -r "$WORK/inputs" "$ROOTFS/opt/occ-check/inputs"
rm -f "$ROOTFS"/opt/occ-check/inputs/*.pt   # a camera box gets the ONNX models only

step "5/6 aarch64: pip install the camera-box package from the registry's aarch64 wheels, then occ run, occ eval and tests/runtime"
# a clean environment: the host's pip settings (local wheel folders, indexes) mean nothing in there
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  PIP_CERT=/etc/ssl/certs/occ-host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/occ-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
  /bin/sh -ec '
  cd /opt/occ-check
  [ -x /opt/occ-venv/bin/python ] || python3 -m venv /opt/occ-venv
  /opt/occ-venv/bin/pip install -q --only-binary=numpy,onnxruntime,onnx,opencv-python-headless /opt/occ-src
  if /opt/occ-venv/bin/python -c "import torch" 2>/dev/null; then echo "torch was installed on the camera box"; exit 1; fi
  mkdir -p aarch64
  /opt/occ-venv/bin/pip freeze > aarch64/packages.txt
  /opt/occ-venv/bin/python /opt/occ-src/scripts/aarch64_check.py run /opt/occ-check
  /opt/occ-venv/bin/pip install -q pytest jsonschema paho-mqtt   # what tests/runtime uses beyond the package (paho: the mqtt extra)
  # the pytest script, not python -m: the source tree must not shadow the installed occ on sys.path
  if PYTHONPATH=/opt/occ-src/tests/runtime /opt/occ-venv/bin/pytest -p block_torch -p no:cacheprovider /opt/occ-src/tests/runtime \
      > aarch64/runtime-tests.txt 2>&1; then tests=0; else tests=$?; fi
  echo "check-aarch64: tests/runtime on aarch64: $(tail -n 1 aarch64/runtime-tests.txt)" >&2
  [ "$tests" = 0 ] || tail -n 40 aarch64/runtime-tests.txt >&2   # step 6 fails the check on it
'
rm -rf "$WORK/aarch64"
cp -r "$ROOTFS/opt/occ-check/aarch64" "$WORK/aarch64"

step "6/6 compare the decisions"
"$PY" scripts/aarch64_check.py compare "$WORK"
