#!/usr/bin/env bash
# Installs what OCR needs from Debian when missing: DejaVu fonts (text rendered into test
# images) and the GL/GLib libraries that opencv-python (a rapidocr dependency) links against.
# Without root or apt the tests that need them skip with a reason instead.
set -u
need=()
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || need+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libgthread-2.0.so.0' || need+=(libglib2.0-0)
if [ ${#need[@]} = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure-fonts: not root or no apt-get; OCR tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "ensure-fonts: apt-get could not install ${need[*]}; OCR tests will be skipped" >&2
exit 0
