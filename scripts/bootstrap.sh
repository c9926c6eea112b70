# Sourced by scripts/run and scripts/test: make sure Python 3.11+, redis-server and the
# project's virtual environment (.venv) are there. Idempotent; quiet when all is in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOTPATH_VENV:-$ROOT/.venv}"
unset HOTPATH_VENV  # hotpath itself rejects unknown HOTPATH_* variables

say() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  if [ -z "${_HOTPATH_APT_UPDATED:-}" ]; then
    say "apt-get update"
    as_root apt-get update -qq
    _HOTPATH_APT_UPDATED=1
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(uname -s)" = Darwin ]; then
    say "redis-server is missing: install it with 'brew install redis', then run this again"
    exit 1
  fi
  apt_install redis-server || {
    say "redis-server is missing and apt-get is not available: install Redis 6+ with your"
    say "package manager, or start hotpath with --redis-url redis://HOST:6379/0"
    exit 1
  }
  # Debian's package starts a system-wide Redis; hotpath starts its own private one.
}

# Chromium for the browser test (tests/browser), driven headless by Python's playwright.
# Never fatal: without it that test skips and says why.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(uname -s)" = Darwin ]; then
    say "chromium is missing: the browser test will be skipped (Debian/Ubuntu: apt-get install chromium)"
    return 0
  fi
  apt_install chromium </dev/null || say "chromium could not be installed: the browser test will be skipped"
  return 0
}

ensure_node() {
  command -v node >/dev/null 2>&1 && return 0
  apt_install nodejs </dev/null || say "Node.js could not be installed: the JavaScript tests will be skipped"
  return 0
}

# Node 22+ has a global WebSocket; Node 20 and 21 need --experimental-websocket.
node_websocket_flag() {
  node -e 'process.stdout.write(typeof WebSocket === "function" ? "" : "--experimental-websocket")'
}

node_has_websocket() {
  command -v node >/dev/null 2>&1 &&
    node $(node_websocket_flag) -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null
}

# A C compiler and the venv Python's headers: the floor (bench/floor.c) and the mypyc
# build of the state code (tests/integration/test_compiled.py) are compiled in the tests.
ensure_c_build() {
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 ||
    apt_install gcc libc6-dev </dev/null || say "no C compiler and apt-get failed: install gcc"
  local include ver
  include="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  [ -f "$include/Python.h" ] && return 0
  ver="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  apt_install "python$ver-dev" </dev/null || say "Python.h is missing: install python$ver-dev"
  return 0
}

find_python() {
  for py in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

ensure_venv() {
  local extra="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    local py
    py="$(find_python)" || {
      apt_install python3 python3-venv python3-pip >/dev/null 2>&1 || true
      py="$(find_python)" || { say "Python 3.11+ is required (set PYTHON=/path/to/python3.11)"; exit 1; }
    }
    say "creating $VENV with $py"
    "$py" -m venv "$VENV" 2>/dev/null || {
      apt_install python3-venv
      "$py" -m venv "$VENV"
    }
  fi
  local stamp="$VENV/.hotpath-installed-$extra"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing hotpath$extra into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$ROOT$extra"
    touch "$stamp"
  fi
}
