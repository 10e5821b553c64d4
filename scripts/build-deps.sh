# Sourced by scripts/demo and scripts/test: install what building owlet needs on a
# fresh Debian machine (cmake and nasm build libjpeg-turbo, owlet's JPEG decoder;
# libclang lets bindgen read the kernel's videodev2.h for the bridge's V4L2 source).
need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_build_deps() {
  local debs=()
  need cmake || debs+=(cmake)
  need nasm || debs+=(nasm)
  need cc || debs+=(gcc)
  need g++ || debs+=(g++)
  ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || debs+=(libclang-dev)
  if [ ${#debs[@]} -gt 0 ]; then
    echo "owlet: installing ${debs[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}"
  fi
  # rustup's cargo may be installed but not on a non-login shell's PATH.
  if ! need cargo && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
  need cargo || { echo "owlet: cargo not found (install Rust >= 1.91 with rustup)" >&2; exit 2; }
}

# What the end-to-end tests drive: a real broker and its clients (the bridge's
# MQTT tests), ffmpeg (camera streams: child process and HTTP MJPEG), Prometheus
# (it scrapes the bridge's /metrics in a test), chromium and chromedriver (the web
# page's tests).
install_test_deps() {
  local debs=()
  [ -x /usr/sbin/mosquitto ] || debs+=(mosquitto)
  [ -x /usr/bin/prometheus ] || debs+=(prometheus)
  need mosquitto_sub || debs+=(mosquitto-clients)
  need ffmpeg || debs+=(ffmpeg)
  # The web page's tests: Debian's chromium, headless, through chromedriver, and
  # a font for its screenshots.
  [ -x /usr/bin/chromium ] || debs+=(chromium)
  [ -x /usr/bin/chromedriver ] || debs+=(chromium-driver)
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || debs+=(fonts-dejavu-core)
  if [ ${#debs[@]} -gt 0 ]; then
    echo "owlet: installing ${debs[*]} for the tests"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}"
  fi
  # Debian starts a system mosquitto on 1883; the tests start their own on free
  # ports and do not need it.
}

# A real Home Assistant core for tests/e2e/home_assistant.rs: pinned, from PyPI,
# into target/ha-venv (rebuilt when the pins change). It needs Python 3.13: on
# PATH, or pyenv's. The frontend package is there because Home Assistant's
# bootstrap always sets the frontend up (without it, it starts in recovery mode);
# paho-mqtt is the MQTT integration's requirement (hass runs with --skip-pip).
HA_PINS="homeassistant==2025.4.4 home-assistant-frontend==20250411.0 paho-mqtt==2.1.0"
install_home_assistant() {
  local venv=target/ha-venv
  if [ "$(cat "$venv/.owlet-pins" 2>/dev/null)" = "$HA_PINS" ] && [ -x "$venv/bin/hass" ]; then
    return 0
  fi
  # pyenv's own 3.13 first: its shim on PATH refuses to run while another
  # version is selected.
  local py="" p
  for p in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python3.13 "$(command -v python3.13 || true)"; do
    if [ -n "$p" ] && "$p" --version >/dev/null 2>&1; then py=$p; break; fi
  done
  [ -n "$py" ] || { echo "owlet: Home Assistant needs Python 3.13 (pyenv's, or python3.13 on PATH)" >&2; exit 2; }
  echo "owlet: installing Home Assistant into $venv ($HA_PINS) with $py"
  rm -rf "$venv"
  "$py" -m venv "$venv" || exit 2
  "$venv/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $HA_PINS
  echo "$HA_PINS" > "$venv/.owlet-pins"
}
