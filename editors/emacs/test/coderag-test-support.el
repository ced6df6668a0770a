;;; coderag-test-support.el --- Helpers of the ERT tests  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; What the ERT tests of coderag share: a copy of the sample project, a
;; real coderag-daemon on the checkout's tiny random-weight model (its
;; answers are gibberish, but real, so the tests check the plumbing, not
;; the text), a record of the JSON-RPC traffic and of the messages shown,
;; and ways to wait for the daemon.  The daemon runs as
;; `$CODERAG_PYTHON -m coderag_daemon' (default: the checkout's
;; .venv/bin/python).  Run the tests with test.sh.

;;; Code:

(require 'ert)
(require 'coderag)

(defconst coderag-test--repo
  (expand-file-name "../../.." (file-name-directory
                                (or load-file-name buffer-file-name)))
  "The checkout these tests belong to.")

(defun coderag-test--python ()
  "The Python that runs the daemon."
  (or (getenv "CODERAG_PYTHON")
      (expand-file-name ".venv/bin/python" coderag-test--repo)))

(defvar coderag-test--workspace nil
  "The copy of the sample project the daemon serves.")

(defvar coderag-test--traffic nil
  "Every JSON-RPC message, newest first: (DIRECTION CONN MESSAGE).")

(defun coderag-test--record-sent (conn &rest message)
  "Record MESSAGE sent on CONN."
  (push (list 'sent conn message) coderag-test--traffic))

(defun coderag-test--record-received (conn message)
  "Record MESSAGE received on CONN."
  (push (list 'received conn message) coderag-test--traffic))

(defvar coderag-test--messages nil
  "Every message shown, newest first.")

(defun coderag-test--record-message (format &rest args)
  "Record the message that FORMAT and ARGS make."
  (when format
    (push (apply #'format-message format args) coderag-test--messages)))

(defun coderag-test--messages-matching (regexp)
  "The messages shown that match REGEXP."
  (cl-remove-if-not (lambda (text) (string-match-p regexp text))
                    coderag-test--messages))

(defun coderag-test--tiny-model ()
  "Path of the tiny test model, generated on first use."
  (with-temp-buffer
    (let ((default-directory (file-name-as-directory coderag-test--repo)))
      (unless (zerop (call-process (coderag-test--python) nil t nil "-c"
                                   "from fixtures.tiny_models import tiny_model_path
print(tiny_model_path('dense'))"))
        (error "Cannot make the tiny model: %s" (buffer-string))))
    (string-trim (buffer-string))))

(defun coderag-test--module (name)
  "A small module whose line 13 defines the function NAME."
  (concat "\"\"\"Bookkeeping helpers.\"\"\"\n"
          "\n"
          "import decimal\n"
          "import logging\n"
          "\n"
          "log = logging.getLogger(__name__)\n"
          "\n"
          "PRECISION = decimal.Decimal(\"0.01\")\n"
          "TOLERANCE = decimal.Decimal(\"0.05\")\n"
          "MAX_ENTRIES = 1000\n"
          "\n"
          "\n"
          "def " name "(entries, opening_balance):\n"
          "    \"\"\"Sum the entries and check them against the balance.\"\"\"\n"
          "    balance = decimal.Decimal(opening_balance)\n"
          "    for entry in entries[:MAX_ENTRIES]:\n"
          "        balance += decimal.Decimal(entry).quantize(PRECISION)\n"
          "    if abs(balance) < TOLERANCE:\n"
          "        log.info(\"balanced\")\n"
          "    return balance\n"))

(defconst coderag-test--modules
  '(("tasktrack/wombat.py" . "compute_wombat_checksum")
    ("tasktrack/quokka.py" . "reconcile_quokka_ledger"))
  "Files added to the sample project, each with a distinctive function.
Its definition is on line 13.  No test opens them in `coderag-mode',
so they never enter the daemon's context: the chat retrieves them.")

(defun coderag-test--make-workspace (&optional parent)
  "Copy the sample project, each Python file cut to 30 lines.
The tiny model's byte-level vocabulary makes whole files thousands
of tokens long, more than a fast test wants.  Add
`coderag-test--modules'.  The copy goes into directory PARENT, or
a new temporary directory removed when Emacs exits."
  (let ((root (expand-file-name "tasktrack"
                                (or parent (make-temp-file "coderag-test" t)))))
    (copy-directory (expand-file-name "fixtures/sample_project" coderag-test--repo)
                    root nil t t)
    (delete-file (expand-file-name "QUESTIONS.json" root))
    (dolist (file (directory-files-recursively root "\\.py\\'"))
      (with-temp-file file
        (insert-file-contents file)
        (goto-char (point-min))
        (forward-line 30)
        (delete-region (point) (point-max))))
    (pcase-dolist (`(,file . ,name) coderag-test--modules)
      (with-temp-file (expand-file-name file root)
        (insert (coderag-test--module name))))
    (call-process "git" nil nil nil "init" "-q" root)
    (unless parent
      (add-hook 'kill-emacs-hook (lambda ()
                                   (delete-directory (file-name-directory root) t))))
    root))

(defun coderag-test--setup ()
  "Point the package at the test daemon, once."
  (unless coderag-test--workspace
    (setq coderag-test--workspace (coderag-test--make-workspace)
          coderag-daemon-command
          (list (coderag-test--python) "-m" "coderag_daemon"
                "--model" (coderag-test--tiny-model) "--threads" "1"
                "--n-ctx" "4096" "--context-tokens" "2500"
                "--preload-delay-ms" "100" "--log-level" "INFO")
          coderag-request-timeout 60)
    (advice-add 'jsonrpc-connection-send :before #'coderag-test--record-sent)
    (advice-add 'jsonrpc-connection-receive :before #'coderag-test--record-received)
    (advice-add 'message :before #'coderag-test--record-message)))

(defun coderag-test--wait (what predicate &optional seconds)
  "Process events until PREDICATE returns non-nil, and return that.
Fail, naming WHAT, after SECONDS (default 60)."
  (let ((deadline (+ (float-time) (or seconds 60)))
        value)
    (while (not (setq value (funcall predicate)))
      (when (> (float-time) deadline)
        (ert-fail (format "Timed out waiting for %s" what)))
      (accept-process-output nil 0.05))
    value))

(defun coderag-test--request (method params)
  "The result of request METHOD with PARAMS to the current buffer's daemon."
  (let ((conn (coderag--synced-connection)) reply)
    (coderag--send conn method params
                   :success (lambda (result) (setq reply (list :result result)))
                   :error (lambda (err) (setq reply (list :error err))))
    (coderag-test--wait method (lambda () reply))
    (or (plist-get reply :result) (ert-fail (plist-get reply :error)))))

(defun coderag-test--daemon-text ()
  "The daemon's copy of the current buffer and its version."
  (let ((result (coderag-test--request 'coderag/documentText
                                       (list :uri coderag--document-uri))))
    (list (plist-get result :text) (plist-get result :version))))

(defun coderag-test--assert-synced ()
  "Assert that the daemon's copy of the buffer is the buffer's text."
  (should (equal (coderag-test--daemon-text)
                 (list (coderag--text) coderag--version))))

(defun coderag-test--received (predicate)
  "The received messages that satisfy PREDICATE, oldest first."
  (nreverse (cl-loop for (direction _ message) in coderag-test--traffic
                     when (and (eq direction 'received) (funcall predicate message))
                     collect message)))

(defun coderag-test--sent (method)
  "The params of the messages sent with METHOD, oldest first."
  (nreverse (cl-loop for (direction _ message) in coderag-test--traffic
                     when (and (eq direction 'sent)
                               (equal (format "%s" (plist-get message :method))
                                      method))
                     collect (plist-get message :params))))

(defun coderag-test--reply-to (id)
  "The daemon's reply to request ID, once it has come."
  (car (coderag-test--received (lambda (message)
                                 (and (equal (plist-get message :id) id)
                                      (not (plist-get message :method)))))))

(defmacro coderag-test--with-file (file &rest body)
  "Run BODY in a `coderag-mode' buffer visiting FILE of the workspace."
  (declare (indent 1) (debug t))
  `(progn
     (coderag-test--setup)
     (let ((buffer (find-file-noselect
                    (expand-file-name ,file coderag-test--workspace))))
       (unwind-protect
           (with-current-buffer buffer
             (switch-to-buffer buffer)
             (coderag-mode 1)
             (coderag-test--wait "the buffer to be open on the daemon"
                                 #'coderag--synced-connection)
             ,@body)
         (with-current-buffer buffer
           (set-buffer-modified-p nil))
         (kill-buffer buffer)))))

(defun coderag-test--command (command &optional event)
  "Run COMMAND as the command loop would, with EVENT as the key typed."
  (let ((last-command-event (or event last-command-event)))
    (setq this-command command)
    (call-interactively command)
    (run-hooks 'post-command-hook)))

(defun coderag-test--type-and-idle (char)
  "Type CHAR, then run the idle timer that the edit set."
  (let ((old coderag--idle-timer))
    (coderag-test--command #'self-insert-command char)
    (let ((timer coderag--idle-timer))
      (should (timerp timer))
      (should-not (eq timer old))
      (cancel-timer timer)
      (apply (timer--function timer) (timer--args timer)))))

(defun coderag-test--ask-suggestion ()
  "Ask for a suggestion at point; return its text or nil."
  (coderag-complete)
  (coderag-test--wait "the suggestion request" (lambda () (not coderag--request)))
  (and coderag--suggestion (overlay-get coderag--suggestion 'coderag-text)))

(defun coderag-test--find-suggestion ()
  "Move to a place where the model suggests two characters or more.
Return the suggestion."
  (or (cl-loop for line in '(11 25 30 5 18)
               thereis (progn
                         (goto-char (point-min))
                         (forward-line (1- line))
                         (let ((text (coderag-test--ask-suggestion)))
                           (and text (>= (length text) 2) text))))
      (ert-fail "The model suggested nothing anywhere")))

(defun coderag-test--write-file (name text)
  "Write TEXT, line ends untouched, to workspace file NAME; return its path."
  (let ((file (expand-file-name name coderag-test--workspace))
        (coding-system-for-write 'utf-8-unix))
    (with-temp-file file
      (insert text))
    file))

(defun coderag-test--chat (what)
  "The value of WHAT, a variable of the chat buffer."
  (buffer-local-value what (get-buffer coderag-chat-buffer-name)))

(defun coderag-test--ask (question &optional follow-up)
  "Ask QUESTION in a new chat, or the current one if FOLLOW-UP.
Return the request's id and stream token."
  (unless follow-up
    (when (get-buffer coderag-chat-buffer-name)
      (kill-buffer coderag-chat-buffer-name)))
  (coderag-ask question)
  (let ((pending (coderag-test--chat 'coderag-chat--pending)))
    (list (plist-get pending :id) (plist-get pending :token))))

(defun coderag-test--index-ready ()
  "Wait until the daemon of the current buffer has built its index."
  (coderag-test--wait
   "the workspace index"
   (lambda ()
     (not (eq (plist-get (coderag-test--request 'coderag/search '(:query "index"))
                         :indexing)
              t)))))

(provide 'coderag-test-support)
;;; coderag-test-support.el ends here
