#!/usr/bin/env bash
# Keystroke to suggestion in an interactive Emacs, for `coderag-daemon bench editors`
# (test/coderag-latency.el): the package byte-compiled, as a user has it, in
# an `emacs -nw' that a private tmux server runs.  The bench command gives
# the plan ($CODERAG_LATENCY_PLAN), the output file ($CODERAG_LATENCY_OUT)
# and the model ($CODERAG_E2E_MODEL: a GGUF file, "default", or unset for
# the tiny test model).  The daemon runs as "$CODERAG_PYTHON -m coderag_daemon"
# (default: the checkout's .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")"
: "${CODERAG_LATENCY_PLAN:?run it with: coderag-daemon bench editors}"
: "${CODERAG_LATENCY_OUT:?run it with: coderag-daemon bench editors}"

sources=(coderag-connection.el coderag-sync.el coderag-completion.el
         coderag-search.el coderag-chat.el coderag-status.el coderag.el)
build=$(mktemp -d)
# The session, workspace and tmux socket.
e2e=$(cd "$(mktemp -d)" && pwd -P)
clean_up() {
    # However the run ended: the tmux server, then the daemons its Emacs
    # started (those that still run in the run's directory).
    tmux -S "$e2e/tmux" kill-server 2>/dev/null || true
    for pid in $(cat "$e2e"/*/pids 2>/dev/null); do
        case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
            "$e2e"/*) kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
    rm -rf "$build" "$e2e"
}
trap clean_up EXIT
cp "${sources[@]}" "$build/"
emacs -Q --batch -L "$build" -f batch-byte-compile "${sources[@]/#/$build/}"
CODERAG_E2E_DIR="$e2e" emacs -Q --batch -L "$build" -L test -l test/coderag-latency.el \
      -f coderag-latency-run
