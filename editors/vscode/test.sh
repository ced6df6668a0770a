#!/usr/bin/env bash
# The extension's whole check: install, typecheck, lint, build, then the unit tests (mocked vscode),
# the client layer against the real daemon on a tiny model, the chat page in headless Chromium, and
# the packaged extension in a real VS Code (code-server, installed once into .build/) driven in Chromium.
# CODERAG_PYTHON: a Python with coderag_daemon installed (default: the repository's .venv).
# CODERAG_E2E_MODEL: the end-to-end test's model, `default` or a GGUF file (default: the tiny test model).
set -euo pipefail
cd "$(dirname "$0")"

export CODERAG_PYTHON="${CODERAG_PYTHON:-$(cd ../.. && pwd)/.venv/bin/python}"
# The daemons the tests start keep their workspace index and saved caches here, not in the user's cache.
private=$(mktemp -d)
trap 'rm -rf "$private"' EXIT
export CODERAG_INDEX_DIR="$private/index" CODERAG_STATE_DIR="$private/states"
if [[ ! -x "$CODERAG_PYTHON" ]]; then
  echo "test.sh: no Python at $CODERAG_PYTHON; run 'make setup' in the repository root or set CODERAG_PYTHON" >&2
  exit 1
fi

if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "test.sh: /usr/bin/chromium is missing; install the Debian package 'chromium' (as root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

npm ci --no-audit --no-fund
npm run typecheck
npm run lint
npm run build
npm run compile-tests
node --require ./out/test/support/vscodeModule.js --test --test-reporter=spec \
  out/test/unit/*.test.js out/test/daemon/*.test.js out/test/webview/*.test.js
npm run package
# A real VS Code for the end-to-end test, installed once per checkout into .build/ (the first time
# about 2.5 minutes and 800 MB; it installs Debian's libkrb5-dev if missing).
bash test/e2e/install.sh >/dev/null
npm run test:e2e
