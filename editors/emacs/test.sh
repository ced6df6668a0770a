#!/usr/bin/env bash
# The Emacs package's checks: byte-compilation without warnings, checkdoc,
# the ERT suite in batch against the real daemon on a tiny model, then the
# end-to-end tests, which drive an interactive Emacs in tmux the same way.
# The daemon runs as "$CODERAG_PYTHON -m coderag_daemon" (default: the
# checkout's .venv/bin/python, made by `make setup`); CODERAG_E2E_MODEL
# runs the end-to-end tests on another model ("default": the daemon's own).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v emacs >/dev/null || missing+=(emacs-nox)
command -v tmux >/dev/null || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: install ${missing[*]} (Emacs 28.2 or later)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

sources=(coderag-connection.el coderag-sync.el coderag-completion.el
         coderag-search.el coderag-chat.el coderag-status.el coderag.el)
# The ERT files in batch, one per feature, and the end-to-end tests, which
# drive an interactive Emacs in tmux.
tests=(test/coderag-*-test.el)
batch_tests=()
for test in "${tests[@]}"; do
    [ "$test" = test/coderag-e2e-test.el ] || batch_tests+=(-l "$test")
done
# Compiled outside the source tree, so that no stale .elc is ever loaded.
build=$(mktemp -d)
# The end-to-end tests' sessions, workspace and tmux socket.
e2e=$(cd "$(mktemp -d)" && pwd -P)
clean_up() {
    # Whatever way the tests ended: their tmux server, then the daemons
    # their Emacs started (those that still run in the tests' directory).
    tmux -S "$e2e/tmux" kill-server 2>/dev/null || true
    for pid in $(cat "$e2e"/*/pids 2>/dev/null); do
        case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
            "$e2e"/*) kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
    rm -rf "$build" "$e2e"
}
trap clean_up EXIT
mkdir "$build/test"
# The daemons the tests start keep their workspace index and saved caches here, not in the user's cache.
export CODERAG_INDEX_DIR="$build/index" CODERAG_STATE_DIR="$build/states"
cp "${sources[@]}" "$build/"
cp test/*.el "$build/test/"

echo "== byte-compile"
emacs -Q --batch -L "$build" -L "$build/test" --eval '(setq byte-compile-error-on-warn t)' \
      -f batch-byte-compile "${sources[@]/#/$build/}" "$build"/test/*.el

echo "== checkdoc"
emacs -Q --batch --eval '
(progn
  (require (quote checkdoc))
  (let ((problems 0))
    (setq checkdoc-create-error-function
          (lambda (text start _end &optional _unfixable)
            (setq problems (1+ problems))
            (message "%s:%d: %s" (file-name-nondirectory buffer-file-name)
                     (line-number-at-pos start) text)
            nil))
    (dolist (file command-line-args-left)
      (with-current-buffer (find-file-noselect file)
        (checkdoc-current-buffer t)))
    (setq command-line-args-left nil)
    (kill-emacs (if (zerop problems) 0 1))))' "${sources[@]}"

echo "== ert"
# The tests find the checkout from their own file names: load them from
# here, the package from its compiled copy.
emacs -Q --batch -L "$build" -L test "${batch_tests[@]}" -f ert-run-tests-batch-and-exit

echo "== e2e (an interactive Emacs in tmux)"
CODERAG_E2E_DIR="$e2e" emacs -Q --batch -L "$build" -L test -l test/coderag-e2e-test.el \
      -f ert-run-tests-batch-and-exit
