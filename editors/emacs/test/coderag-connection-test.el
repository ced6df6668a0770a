;;; coderag-connection-test.el --- Tests of the daemon's life  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; Settings sent to the daemon, restarts after crashes, and daemons that
;; are missing or cannot start.

;;; Code:

(require 'coderag-test-support)

(ert-deftest coderag-settings-become-a-json-object ()
  (should (equal (json-serialize (coderag--settings-json
                                  '(:nCtx 8192 :ignoreGlobs ("*.min.js" "dist/**"))))
                 "{\"nCtx\":8192,\"ignoreGlobs\":[\"*.min.js\",\"dist/**\"]}"))
  (should (equal (json-serialize (coderag--settings-json nil)) "{}"))
  ;; nil is false for a true-or-false setting, an empty list for a list
  ;; (serialized as jsonrpc does).
  (let ((json (lambda (settings)
                (json-serialize (coderag--settings-json settings)
                                :false-object :json-false :null-object nil))))
    (should (equal (funcall json '(:persistCache nil :ignoreGlobs nil))
                   "{\"persistCache\":false,\"ignoreGlobs\":[]}"))
    (should (equal (funcall json '(:persistCache t)) "{\"persistCache\":true}"))))

;;; Daemon life

(ert-deftest coderag-daemon-is-restarted-after-a-crash ()
  (coderag-test--with-file "tasktrack/storage.py"
    (let ((old coderag--conn))
      (goto-char (point-max))
      (insert "# before the crash 😀\n")
      (coderag-test--ask "Explain everything in detail.")
      (signal-process (process-id (coderag--process old)) 'KILL)
      ;; The answer in flight ends instead of hanging.
      (coderag-test--wait "the answer to end"
                          (lambda () (not (coderag-test--chat 'coderag-chat--pending))))
      (should (string-match-p "\\[Server died\\]\n\\'"
                              (with-current-buffer coderag-chat-buffer-name (buffer-string))))
      (should (coderag-test--messages-matching "exited (signal 9.*); restarting it"))
      (coderag-test--wait "a new daemon"
                          (lambda () (let ((conn (coderag--synced-connection)))
                                       (and conn (not (eq conn old))))))
      (insert "# after the crash\n")
      (coderag-test--assert-synced))))

(ert-deftest coderag-daemon-restart-limit-and-command ()
  (coderag-test--with-file "tasktrack/cli.py"
    (let ((old coderag--conn)
          (coderag-max-restarts 0))
      (signal-process (process-id (coderag--process old)) 'KILL)
      (coderag-test--wait "the exit" (lambda () (not (jsonrpc-running-p old))))
      (should (string-match-p "keeps exiting" (car coderag-test--messages)))
      (accept-process-output nil 1)
      (should-not (coderag--live-connection coderag--root))
      (should (equal (coderag--lighter) " coderag[failed]"))
      ;; An edit does not start it again: a command does.
      (coderag-test--type-and-idle ?x)
      (should-not (coderag--live-connection coderag--root))
      (coderag-restart)
      (coderag-test--wait "the restarted daemon" #'coderag--synced-connection)
      (coderag-test--assert-synced)
      (should (string-match-p "\\`coderag: the daemon for .* is running\\'"
                              (car coderag-test--messages)))
      ;; Restarting a running daemon ends it quietly.
      (let ((running coderag--conn)
            (restarts (length (coderag-test--messages-matching "restarting it"))))
        (coderag-restart)
        (should (string-match-p "\\`coderag: starting a new daemon"
                                (car coderag-test--messages)))
        (should-not (jsonrpc-running-p running))
        (coderag-test--wait "the new daemon"
                            (lambda () (let ((conn (coderag--synced-connection)))
                                         (and conn (not (eq conn running))))))
        (coderag-test--assert-synced)
        (should (= restarts (length (coderag-test--messages-matching "restarting it"))))))))

(defmacro coderag-test--with-daemon-command (command &rest body)
  "Run BODY in a `coderag-mode' buffer of a new directory, with daemon COMMAND.
COMMAND is evaluated with `directory' bound to that directory."
  (declare (indent 1) (debug t))
  `(progn
     (coderag-test--setup)
     (let* ((directory (make-temp-file "coderag-broken" t))
            (coderag-daemon-command ,command)
            (buffer (find-file-noselect (expand-file-name "a.py" directory))))
       (unwind-protect
           (with-current-buffer buffer
             (switch-to-buffer buffer)
             (coderag-mode 1)
             ,@body)
         (with-current-buffer buffer
           (set-buffer-modified-p nil))
         (kill-buffer buffer)
         (remhash (directory-file-name directory) coderag--failures)
         (delete-directory directory t)))))

(defun coderag-test--failures (directory text)
  "The messages shown about the daemon of DIRECTORY that match TEXT."
  (coderag-test--messages-matching (concat (regexp-quote directory) ".*" text)))

(ert-deftest coderag-missing-daemon-is-one-clear-message-and-retried ()
  (coderag-test--with-daemon-command
      (list (expand-file-name "bin/coderag-daemon" directory))
    (let ((other (find-file-noselect (expand-file-name "b.py" directory)))
          (missing (concat (regexp-quote (car coderag-daemon-command))
                           "' not found.*make setup")))
      (unwind-protect
          (progn
            (with-current-buffer other
              (coderag-mode 1))
            (dolist (buffer (list buffer other))
              (should (equal (buffer-local-value 'coderag-mode buffer) t))
              (should (equal (with-current-buffer buffer (coderag--lighter))
                             " coderag[failed]")))
            (should (= 1 (length (coderag-test--messages-matching missing))))
            ;; An edit tries again, quietly while the command is missing.
            (coderag-test--type-and-idle ?x)
            (should (= 1 (length (coderag-test--messages-matching missing))))
            (should-error (coderag-ask "Anyone there?") :type 'user-error)
            ;; Once it is there, the next edit starts it.
            (make-directory (expand-file-name "bin" directory))
            (with-temp-file (car coderag-daemon-command)
              (insert "#!/bin/sh\necho 'no model here' >&2\nexit 3\n"))
            (set-file-modes (car coderag-daemon-command) #o755)
            (coderag-test--type-and-idle ?y)
            (coderag-test--wait "the failure"
                                (lambda () (coderag-test--failures
                                            directory "failed to start (exit status 3: no model here)"))))
        (with-current-buffer other
          (set-buffer-modified-p nil))
        (kill-buffer other)))))

(ert-deftest coderag-daemon-that-cannot-start-is-reported-once-and-retried ()
  (coderag-test--with-daemon-command
      (list (coderag-test--python) "-c" "import sys; sys.exit('no model here')")
    (let ((failure "failed to start (exit status 1: no model here)"))
      (coderag-test--wait "the failure"
                          (lambda () (coderag-test--failures directory failure)))
      ;; The last word: jsonrpc's notice of the exit goes to the log.
      (should (string-match-p failure (car coderag-test--messages)))
      (should-not (coderag-test--messages-matching "\\`\\[jsonrpc\\] Server exited"))
      (accept-process-output nil 1)
      (should-not (coderag--live-connection coderag--root))
      (should (equal (coderag--lighter) " coderag[failed]"))
      (should-not (coderag-test--failures directory "restarting"))
      ;; An edit tries again, and says nothing if it fails the same way.
      (let ((starts (length (coderag-test--sent "initialize"))))
        (coderag-test--type-and-idle ?x)
        (should (coderag--live-connection coderag--root))
        (should (= (length (coderag-test--sent "initialize")) (1+ starts)))
        (coderag-test--wait "the second failure"
                            (lambda () (not (coderag--live-connection coderag--root))))
        (accept-process-output nil 0.2)
        (should (= 1 (length (coderag-test--failures directory failure))))
        (should (string-match-p failure (car coderag-test--messages))))
      ;; A command says it again.
      (coderag-restart)
      (coderag-test--wait "the third failure"
                          (lambda () (= 2 (length (coderag-test--failures
                                                   directory failure))))))))

(ert-deftest coderag-daemon-that-does-not-answer-is-stopped ()
  (let ((coderag-start-timeout 1))
    (coderag-test--with-daemon-command '("sleep" "60")
      (let ((process (coderag--process (coderag--live-connection coderag--root))))
        (coderag-test--wait "the timeout"
                            (lambda () (coderag-test--failures
                                        directory "did not answer within 1s\\'")))
        (should (string-match-p "did not answer" (car coderag-test--messages)))
        (should-not (process-live-p process))
        (should (equal (coderag--lighter) " coderag[failed]"))))))

(provide 'coderag-connection-test)
;;; coderag-connection-test.el ends here
