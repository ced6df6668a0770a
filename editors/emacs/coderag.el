;;; coderag.el --- Completions and chat from coderag-daemon  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1"))
;; Keywords: tools, convenience, languages

;; SPDX-License-Identifier: MIT

;; This file is not part of GNU Emacs.

;;; Commentary:

;; coderag connects Emacs to coderag-daemon, a long-running process
;; that keeps a project's open files as one context warm in a local
;; language model's cache and speaks LSP.
;;
;; `coderag-mode' (or `global-coderag-mode') starts or reuses one
;; daemon per project and keeps it in sync with the buffer.  After an
;; edit, a suggestion appears as ghost text: TAB accepts it, M-f and
;; M-e accept a word or a line, C-g or moving away dismisses it.
;; `coderag-ask' asks a question about the project and streams the
;; answer into *coderag-chat*, followed by its sources, links to the
;; code the daemon found for it in the project.
;; `coderag-find-by-meaning' lists the code of the project that best
;; matches a query, with xref.  The mode line shows the daemon's
;; state, the tokens it holds and the latency of its last answer;
;; `coderag-show-context' lists the files of its context.

;;; Code:

(require 'coderag-connection)
(require 'coderag-sync)
(require 'coderag-completion)
(require 'coderag-search)
(require 'coderag-chat)
(require 'coderag-status)

(defcustom coderag-global-modes '(prog-mode text-mode conf-mode)
  "Major modes (and modes derived from them) `global-coderag-mode' enables in."
  :type '(repeat symbol)
  :group 'coderag)

(defvar coderag-command-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "c") #'coderag-complete)
    (define-key map (kbd "a") #'coderag-ask)
    (define-key map (kbd "f") #'coderag-find-by-meaning)
    (define-key map (kbd "o") #'coderag-visit-source)
    (define-key map (kbd "s") #'coderag-show-context)
    (define-key map (kbd "r") #'coderag-restart)
    (define-key map (kbd "k") #'coderag-clear-cache)
    map)
  "The coderag commands, to bind to a prefix key of your choice.")

(defvar coderag-mode-map (make-sparse-keymap)
  "Keymap of `coderag-mode'.")

;;;###autoload
(define-minor-mode coderag-mode
  "Inline suggestions from the project's coderag daemon.
Starts the daemon of the buffer's project if it is not running
and keeps its copy of the buffer in sync.  See `coderag-idle-delay'
and `coderag-completion-map' for suggestions, `coderag-ask' for
questions about the project."
  :lighter (:eval (coderag--lighter))
  :keymap coderag-mode-map
  (cond
   ((not coderag-mode)
    (coderag--completion-stop)
    (coderag--sync-stop)
    (remove-hook 'change-major-mode-hook #'coderag--mode-off t))
   ((not buffer-file-name)
    (setq coderag-mode nil)
    (message "coderag-mode needs a buffer visiting a file"))
   (t
    (add-hook 'change-major-mode-hook #'coderag--mode-off nil t)
    (coderag--sync-start)
    (coderag--completion-start))))

(defun coderag--mode-off ()
  "Turn `coderag-mode' off before a new major mode erases its state."
  (coderag-mode -1))

(defun coderag--turn-on ()
  "Enable `coderag-mode' in a local file buffer of `coderag-global-modes'."
  (when (and buffer-file-name
             (not (file-remote-p buffer-file-name))
             (apply #'derived-mode-p coderag-global-modes))
    (coderag-mode 1)))

;;;###autoload
(define-globalized-minor-mode global-coderag-mode coderag-mode coderag--turn-on
  :group 'coderag)

;;;###autoload
(defun coderag-restart ()
  "Restart the daemon of the current project and reopen its buffers."
  (interactive)
  (let ((root (coderag--project-root)))
    (message "coderag: starting a new daemon for %s" root)
    (coderag--restart root)))

;;;###autoload
(defun coderag-clear-cache ()
  "Make the daemon drop its cache and prefill the next request afresh."
  (interactive)
  (let ((conn (coderag--connection t)))
    (coderag--when-ready
     conn
     (lambda ()
       (coderag--send conn 'coderag/clearCache (make-hash-table)
                      :success (lambda (_) (message "coderag: cache cleared"))
                      :error (lambda (err)
                               (message "coderag: cache not cleared: %s"
                                        (plist-get err :message)))
                      :timeout-fn (lambda ()
                                    (message "coderag: clearing the cache timed out")))))))

(provide 'coderag)
;;; coderag.el ends here
