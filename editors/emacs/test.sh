#!/usr/bin/env bash
# The Emacs package's checks: byte-compilation without warnings, checkdoc,
# then the ERT suite against the real daemon on a tiny model.
# The daemon runs as "$CODERAG_PYTHON -m coderag_daemon" (default: the
# checkout's .venv/bin/python, made by `make setup`).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v emacs >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: emacs is missing; install emacs-nox (Emacs 28.2 or later)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq emacs-nox >/dev/null
fi

sources=(coderag-connection.el coderag-sync.el coderag-completion.el
         coderag-search.el coderag-chat.el coderag-status.el coderag.el)
# Compiled outside the source tree, so that no stale .elc is ever loaded.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp "${sources[@]}" test/coderag-test.el "$build/"

echo "== byte-compile"
emacs -Q --batch -L "$build" --eval '(setq byte-compile-error-on-warn t)' \
      -f batch-byte-compile "${sources[@]/#/$build/}" "$build/coderag-test.el"

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
# The tests find the checkout from their own file name: load them from here,
# the package from its compiled copy.
emacs -Q --batch -L "$build" -l test/coderag-test.el -f ert-run-tests-batch-and-exit
