;;; coderag-test.el --- Tests of coderag against the real daemon  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; ERT tests that drive the package against a real coderag-daemon on a
;; tiny random-weight model: its answers are gibberish, but real, so
;; the tests check the plumbing, not the text.  The daemon runs as
;; `$CODERAG_PYTHON -m coderag_daemon' (default: the checkout's
;; .venv/bin/python) on the checkout's tiny test model, in a copy of
;; the sample project.  Run them with test.sh.

;;; Code:

(require 'ert)
(require 'coderag)

(defconst coderag-test--repo
  (expand-file-name "../../.." (file-name-directory
                                (or load-file-name buffer-file-name)))
  "The checkout this test file belongs to.")

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

(defun coderag-test--make-workspace ()
  "Copy the sample project, each Python file cut to 30 lines.
The tiny model's byte-level vocabulary makes whole files thousands
of tokens long, more than a fast test wants.  Add
`coderag-test--modules'."
  (let ((root (expand-file-name "tasktrack" (make-temp-file "coderag-test" t))))
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
    (add-hook 'kill-emacs-hook (lambda ()
                                 (delete-directory (file-name-directory root) t)))
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

;;; Positions

(ert-deftest coderag-positions-count-utf16-and-every-line-break ()
  (with-temp-buffer
    (insert "a😀é☕b\r\nc\rd\n\r\ne")
    (cl-flet ((at (pos) (coderag--position pos)))
      (should (equal (at 1) '(:line 0 :character 0)))
      (should (equal (at 3) '(:line 0 :character 3)))   ; after a😀
      (should (equal (at 6) '(:line 0 :character 6)))   ; after a😀é☕b
      (should (equal (at 7) nil))                       ; between \r and \n
      (should (equal (at 8) '(:line 1 :character 0)))
      (should (equal (at 10) '(:line 2 :character 0)))  ; after a lone \r
      (should (equal (at 12) '(:line 3 :character 0)))
      (should (equal (at 14) '(:line 4 :character 0)))
      (narrow-to-region 10 12)
      (should (equal (at 11) '(:line 2 :character 1))))))

(ert-deftest coderag-settings-become-a-json-object ()
  (should (equal (json-serialize (coderag--settings-json
                                  '(:nCtx 8192 :ignoreGlobs ("*.min.js" "dist/**"))))
                 "{\"nCtx\":8192,\"ignoreGlobs\":[\"*.min.js\",\"dist/**\"]}"))
  (should (equal (json-serialize (coderag--settings-json nil)) "{}")))

(ert-deftest coderag-file-uris-round-trip ()
  (let ((file "/tmp/a dir/é 😀 #1?.py"))
    (should (equal (coderag--uri-file (coderag--uri file)) file)))
  (should (equal (coderag--uri-file "file:///home/me/x%20y.py") "/home/me/x y.py"))
  (should-not (coderag--uri-file "https://example.com/x.py"))
  (should-not (coderag--uri-file "untitled:Untitled-1"))
  (should-not (coderag--uri-file "file://otherhost/x.py"))
  (should-not (coderag--uri-file nil)))

;;; Document sync

;; Each edit is checked on its own: a later whole-text resync would
;; hide an earlier wrong position.
(defmacro coderag-test--edit (how &rest body)
  "Run BODY, check the daemon's copy, and that the change was sent HOW.
HOW is `range' or `whole'."
  (declare (indent 1) (debug t))
  `(let ((version coderag--version))
     ,@body
     (should (> coderag--version version))
     (should (eq ,how (if (plist-get (aref (plist-get (car (last (coderag-test--sent
                                                                  "textDocument/didChange")))
                                                      :contentChanges)
                                           0)
                                     :range)
                          'range 'whole)))
     (coderag-test--assert-synced)))

(ert-deftest coderag-sync-multibyte-edits-match-the-daemon ()
  (coderag-test--with-file "tasktrack/models.py"
    (coderag-test--assert-synced)
    (goto-char (point-min))
    (coderag-test--edit 'range (insert "# café ☕ 𝄞 end\n"))
    (coderag-test--edit 'range (search-backward "𝄞") (replace-match "X"))
    (coderag-test--edit 'range (forward-char 2) (insert "after 😀 "))
    (goto-char (point-min))
    (forward-line 4)
    (forward-char 3)
    (coderag-test--edit 'range (insert "👍🏽 and 𝄞𝄞"))
    (coderag-test--edit 'range (insert "!"))
    (coderag-test--edit 'range (delete-char -3))
    (forward-line 2)
    (coderag-test--edit 'range
      (delete-region (point) (progn (forward-line 3) (point))))
    (coderag-test--edit 'range (insert "x\ry 😀\n"))
    (coderag-test--edit 'range (insert "after a lone \\r"))
    (coderag-test--edit 'range
      (combine-change-calls (point-min) (+ (point-min) 60)
        (goto-char (point-min))
        (insert "🎉")
        (goto-char 30)
        (delete-char 5)))
    (let ((version coderag--version))
      (put-text-property (point-min) (+ (point-min) 10) 'face 'bold)
      (should (= version coderag--version)))
    (coderag-test--edit 'whole (upcase-region (point-min) (+ (point-min) 40)))))

(ert-deftest coderag-sync-crlf-buffer-matches-the-daemon ()
  (coderag-test--setup)
  (coderag-test--write-file "tasktrack/crlf.py"
                            "def f():\r\n    return 1\r\n\r\nx = 'é😀'\r\n")
  (let ((coding-system-for-read 'utf-8-unix))
    (coderag-test--with-file "tasktrack/crlf.py"
      (should (search-forward "\r\n" nil t))
      (coderag-test--assert-synced)
      (goto-char (point-max))
      (coderag-test--edit 'range (insert "y = 2\r\n"))
      (search-backward "😀")
      (coderag-test--edit 'range (insert "🎉"))
      (goto-char (point-min))
      (end-of-line)                     ; between \r and \n
      (backward-char)
      (coderag-test--edit 'range (insert ":"))
      (forward-char 1)
      (coderag-test--edit 'whole (insert "z"))
      (coderag-test--edit 'range (delete-char 1))
      ;; Half a \r\n pair: the daemon cannot take it as a range.
      (coderag-test--edit 'whole (search-forward "\r") (delete-char -1))
      (coderag-test--edit 'range (insert "\r")))))

(ert-deftest coderag-sync-save-and-kill ()
  (coderag-test--setup)
  (let ((uri nil))
    (coderag-test--with-file "tasktrack/config.py"
      (setq uri coderag--document-uri)
      (goto-char (point-max))
      (insert "# saved 😀\n")
      (save-buffer)
      (should (equal (plist-get (car (last (coderag-test--sent "textDocument/didSave")))
                                :text)
                     (coderag--text))))
    (should (equal (plist-get (car (last (coderag-test--sent "textDocument/didClose")))
                              :textDocument)
                   (list :uri uri)))))

(ert-deftest coderag-sync-revert-matches-the-daemon ()
  (coderag-test--setup)
  (coderag-test--write-file "tasktrack/revert.py" "x = 1\ny = 2\n")
  (coderag-test--with-file "tasktrack/revert.py"
    (goto-char (point-max))
    (insert "# not saved\n")
    (coderag-test--write-file "tasktrack/revert.py" "# rewritten on disk 😀\ny = 2\n")
    (revert-buffer t t t)
    (should coderag-mode)
    (coderag-test--assert-synced)))

;;; Inline completion

(ert-deftest coderag-completion-is-shown-and-accepted ()
  (coderag-test--with-file "tasktrack/auth.py"
    (let* ((text (coderag-test--find-suggestion))
           (start (point)))
      (should (equal (substring-no-properties
                      (overlay-get coderag--suggestion 'after-string))
                     text))
      (should (= (overlay-start coderag--suggestion) start))
      (should (eq (key-binding (kbd "TAB")) #'coderag-accept))
      (coderag-test--command #'coderag-accept)
      (should-not coderag--suggestion)
      (should (equal (buffer-substring-no-properties start (point)) text))
      (should-not (eq (key-binding (kbd "TAB")) #'coderag-accept))
      (coderag-test--assert-synced))))

(ert-deftest coderag-completion-follows-typing-and-partial-accepts ()
  (coderag-test--with-file "tasktrack/auth.py"
    (let ((text (coderag-test--find-suggestion)))
      ;; Typing the suggestion's first character keeps the rest shown.
      (coderag-test--command #'self-insert-command (aref text 0))
      (should (equal (overlay-get coderag--suggestion 'coderag-text)
                     (substring text 1)))
      (let ((start (point)))
        (coderag-test--command #'coderag-accept-word)
        (should (equal (concat (buffer-substring-no-properties start (point))
                               (if coderag--suggestion
                                   (overlay-get coderag--suggestion 'coderag-text)
                                 ""))
                       (substring text 1))))
      (coderag-test--assert-synced))))

(ert-deftest coderag-completion-is-dismissed-by-moving-away-or-c-g ()
  (coderag-test--with-file "tasktrack/auth.py"
    (coderag-test--find-suggestion)
    (coderag-test--command #'forward-char)
    (should-not coderag--suggestion)
    (coderag-test--find-suggestion)
    (coderag-test--command (key-binding (kbd "C-g")))
    (should-not coderag--suggestion)
    (should (eq (key-binding (kbd "C-g")) #'keyboard-quit))))

(ert-deftest coderag-global-mode-enables-in-file-buffers ()
  (coderag-test--setup)
  (global-coderag-mode 1)
  (let ((file (find-file-noselect (expand-file-name "tasktrack/api.py"
                                                    coderag-test--workspace)))
        (scratch (get-buffer-create "*coderag-test-scratch*")))
    (unwind-protect
        (progn
          (with-current-buffer scratch (python-mode))
          (should (buffer-local-value 'coderag-mode file))
          (should-not (buffer-local-value 'coderag-mode scratch))
          ;; A new major mode closes the document, and the global mode reopens it.
          (with-current-buffer file
            (coderag-test--wait "the buffer to be open" #'coderag--synced-connection)
            (let ((uri coderag--document-uri))
              (text-mode)
              (should coderag-mode)
              (should (equal (plist-get (car (last (coderag-test--sent "textDocument/didClose")))
                                        :textDocument)
                             (list :uri uri)))
              (should (equal (plist-get (plist-get (car (last (coderag-test--sent
                                                               "textDocument/didOpen")))
                                                   :textDocument)
                                        :languageId)
                             "text"))
              (coderag-test--assert-synced))))
      (global-coderag-mode -1)
      (kill-buffer file)
      (kill-buffer scratch))))

(ert-deftest coderag-completion-stale-answers-are-dropped ()
  (coderag-test--with-file "tasktrack/auth.py"
    (coderag-test--find-suggestion)
    (coderag-dismiss)
    ;; The same text but an edit meanwhile: the answer is stale.
    (coderag-complete)
    (insert "x")
    (delete-char -1)
    (coderag-test--wait "the answer" (lambda () (not coderag--request)))
    (should-not coderag--suggestion)
    ;; Point moved meanwhile.
    (let ((place (point)))
      (coderag-complete)
      (goto-char (point-min))
      (coderag-test--wait "the answer" (lambda () (not coderag--request)))
      (should-not coderag--suggestion)
      (goto-char place))
    ;; Nothing changed: the same request is shown.
    (should (coderag-test--ask-suggestion))))

(ert-deftest coderag-completion-superseded-requests-are-cancelled ()
  (coderag-test--with-file "tasktrack/scheduler.py"
    (goto-char (point-max))
    (coderag-complete)
    (let ((first (nth 1 coderag--request)))
      (forward-line -3)
      (coderag-complete)
      (should (member (list :id first) (coderag-test--sent "$/cancelRequest")))
      (should (equal (plist-get (plist-get (coderag-test--wait
                                            "the reply to the first request"
                                            (lambda () (coderag-test--reply-to first)))
                                           :error)
                                :code)
                     -32800))
      (coderag-test--wait "the second answer" (lambda () (not coderag--request)))
      ;; An edit cancels the request in flight and schedules the next.
      (coderag-complete)
      (let ((second (nth 1 coderag--request)))
        (coderag-test--command #'self-insert-command ?\s)
        (should (member (list :id second) (coderag-test--sent "$/cancelRequest")))
        (should (timerp coderag--idle-timer))
        (apply (timer--function coderag--idle-timer) (timer--args coderag--idle-timer))
        (should (equal (plist-get (car (last (coderag-test--sent
                                              "textDocument/inlineCompletion")))
                                  :context)
                       '(:triggerKind 2)))
        (coderag-test--wait "the idle answer" (lambda () (not coderag--request)))))))

;;; Chat

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

(defun coderag-test--streamed (token)
  "The pieces of answer streamed with TOKEN, concatenated."
  (mapconcat (lambda (message) (plist-get (plist-get message :params) :delta))
             (coderag-test--received
              (lambda (message)
                (and (equal (plist-get message :method) "coderag/chatDelta")
                     (equal (plist-get (plist-get message :params) :token) token))))
             ""))

(ert-deftest coderag-chat-streams-the-answer-and-keeps-the-conversation ()
  (coderag-test--with-file "tasktrack/auth.py"
    (customize-set-variable 'coderag-daemon-settings '(:maxChatTokens 24))
    (unwind-protect
        (pcase-let ((`(,id ,token)
                     (progn
                       (transient-mark-mode 1)
                       (goto-char (point-min))
                       (forward-line 2)
                       (push-mark (point) t t)
                       (forward-line 2)
                       (coderag-test--ask "Where is a token's expiry checked?"))))
          (should (equal (plist-get (car (last (coderag-test--sent "coderag/chat")))
                                    :selection)
                         '(:start (:line 2 :character 0) :end (:line 4 :character 0))))
          (let* ((reply (coderag-test--wait "the answer"
                                            (lambda () (coderag-test--reply-to id))))
                 (answer (plist-get (plist-get reply :result) :answer)))
            (should (> (length answer) 0))
            (should (<= (plist-get (plist-get (plist-get reply :result) :stats)
                                   :tokensGenerated)
                        24))
            (should (equal (coderag-test--streamed token) answer))
            (should-not (coderag-test--chat 'coderag-chat--pending))
            (should (string-search (concat "## Answer\n\n" answer "\n\n[")
                                   (with-current-buffer coderag-chat-buffer-name
                                     (buffer-string))))
            (should (equal (coderag-test--chat 'coderag-chat--history)
                           `((:role "user" :content "Where is a token's expiry checked?")
                             (:role "assistant" :content ,answer))))
            (deactivate-mark)
            (coderag-test--ask "And where is it created?" t)
            (should (equal (plist-get (car (last (coderag-test--sent "coderag/chat")))
                                      :history)
                           (vconcat (coderag-test--chat 'coderag-chat--history))))
            (coderag-test--wait "the second answer"
                                (lambda () (not (coderag-test--chat 'coderag-chat--pending))))
            (should (= (length (coderag-test--chat 'coderag-chat--history)) 4))))
      (customize-set-variable 'coderag-daemon-settings nil))))

(ert-deftest coderag-chat-stop-cancels-the-answer ()
  (coderag-test--with-file "tasktrack/api.py"
    (pcase-let ((`(,id ,token) (coderag-test--ask "Explain everything in detail.")))
      (coderag-test--wait "the first streamed text"
                          (lambda () (> (length (coderag-test--streamed token)) 0)))
      (with-current-buffer coderag-chat-buffer-name
        (should (eq (key-binding (kbd "C-c C-k")) #'coderag-chat-stop))
        (coderag-test--command #'coderag-chat-stop))
      (should-not (coderag-test--chat 'coderag-chat--pending))
      (should (string-suffix-p "[stopped]\n" (with-current-buffer coderag-chat-buffer-name
                                               (buffer-string))))
      (let ((reply (coderag-test--wait "the reply" (lambda () (coderag-test--reply-to id)))))
        (should (equal (plist-get (plist-get reply :error) :code) -32800)))
      (let ((text (with-current-buffer coderag-chat-buffer-name (buffer-string))))
        (accept-process-output nil 0.3)
        (should (equal text (with-current-buffer coderag-chat-buffer-name
                              (buffer-string))))))))

;;; Chat sources

(defun coderag-test--buttons (buffer)
  "The buttons of BUFFER: (TEXT LINE SOURCE) for each, in order."
  (with-current-buffer buffer
    (save-excursion
      (goto-char (point-min))
      (let (buttons button)
        (while (setq button (next-button (point)))
          (goto-char (button-end button))
          (push (list (buffer-substring-no-properties (button-start button)
                                                      (button-end button))
                      (button-get button 'coderag-line)
                      (button-get button 'coderag-source))
                buttons))
        (nreverse buttons)))))

(ert-deftest coderag-chat-linkify-takes-labels-literally ()
  (let* ((path "a+b/[x] (y)*.py")
         (source (list :uri "file:///tmp/a%2Bb/x.py" :path path
                       :range '(:start (:line 2 :character 0) :end (:line 4 :character 3))
                       :label (concat path ":3-5") :title "def f"))
         ;; Its label, without a path, gives the path.
         (other (list :uri "file:///tmp/c.py" :label "c.py:1-2"
                      :range '(:start (:line 0 :character 0) :end (:line 1 :character 0)))))
    (with-temp-buffer
      (insert "See a+b/[x] (y)*.py:3-5, then `a+b/[x] (y)*.py:4`.\n"
              ;; Matches of the label taken as a regexp, a line outside the
              ;; source, a longer path, a word going on: no links.
              "Not aab/x yyZpy:4, a+b/[x] (y)*.py:9, lib/a+b/[x] (y)*.py:4, "
              "xc.py:1, but c.py:2.\n")
      (setq buffer-read-only t)
      (coderag-chat--linkify (point-min) (point-max) (list source other))
      (should (equal (coderag-test--buttons (current-buffer))
                     `(("a+b/[x] (y)*.py:3-5" 3 ,source)
                       ("a+b/[x] (y)*.py:4" 4 ,source)
                       ("c.py:2" 2 ,other)))))))

(ert-deftest coderag-chat-sources-are-listed-and-visited ()
  (let* ((root (make-temp-file "coderag-sources" t))
         (file (expand-file-name "pkg/mod.py" root))
         (source (list :uri (coderag--uri file) :path "pkg/mod.py"
                       :range '(:start (:line 3 :character 0) :end (:line 5 :character 9))
                       :label "pkg/mod.py:4-6" :title "def f" :score 3.5))
         (remote (list :uri "https://example.com/pkg/mod.py" :path "pkg/mod.py"
                       :range '(:start (:line 0 :character 0) :end (:line 9 :character 0))
                       :label "pkg/mod.py:1-10" :title "elsewhere" :score 1.0))
         (answer "It is f, in pkg/mod.py:5.")
         (visited nil))
    (make-directory (file-name-directory file) t)
    (with-temp-file file
      (dotimes (i 8) (insert (format "line %d\n" (1+ i)))))
    (when (get-buffer coderag-chat-buffer-name)
      (kill-buffer coderag-chat-buffer-name))
    (unwind-protect
        (let ((chat (coderag-chat--buffer root))
              pending)
          (with-current-buffer chat
            (coderag-chat--insert "## Answer\n\n")
            (setq pending (list :conn nil :id nil :token "t" :question "Where?"
                                :start (copy-marker (point-max)) :sources nil)
                  coderag-chat--pending pending))
          ;; Streamed: the last piece carries the sources, the result here not.
          (coderag--handle-notification nil 'coderag/chatDelta
                                        (list :token "t" :delta answer))
          (coderag--handle-notification nil 'coderag/chatDelta
                                        (list :token "t" :delta "" :done t
                                              :sources (vector source remote)))
          (coderag-chat--finish chat pending
                                (list :answer answer
                                      :stats '(:tokensGenerated 7 :stopReason "eog"))
                                nil)
          (with-current-buffer chat
            (should (string-suffix-p (concat answer "\n\n[7 tokens, 0.0 s, eog]\n"
                                             "\nSources:\n- pkg/mod.py:4-6 — def f\n")
                                     (buffer-string)))
            (should (equal coderag-chat--sources (list source))))
          (should (equal (mapcar (lambda (button) (butlast button))
                                 (coderag-test--buttons chat))
                         '(("pkg/mod.py:5" 5) ("pkg/mod.py:4-6 — def f" nil))))
          ;; RET on either button visits its line; M-, comes back.
          (pcase-dolist (`(,text ,line) '(("pkg/mod.py:5" 5) ("pkg/mod.py:4-6" 4)))
            (switch-to-buffer chat)
            (goto-char (point-min))
            (search-forward text)
            (goto-char (match-beginning 0))
            (let ((from (point)))
              (should (eq (key-binding (kbd "RET")) #'push-button))
              (coderag-test--command #'push-button)
              (setq visited (current-buffer))
              (should (equal buffer-file-name file))
              (should (equal (window-buffer (selected-window)) visited))
              (should (= (line-number-at-pos) line))
              (should (looking-at (format "line %d$" line)))
              (coderag-test--command (key-binding (kbd "M-,")))
              (should (eq (current-buffer) chat))
              (should (= (point) from))))
          ;; From anywhere, the last answer's sources can be chosen.
          (with-temp-buffer
            (cl-letf (((symbol-function 'completing-read)
                       (lambda (_prompt choices &rest _)
                         (should (equal (mapcar #'car choices)
                                        '("pkg/mod.py:4-6 — def f")))
                         (caar choices))))
              (coderag-visit-source))
            (should (equal buffer-file-name file))
            (should (= (line-number-at-pos) 4))))
      (when visited (kill-buffer visited))
      (kill-buffer coderag-chat-buffer-name)
      (delete-directory root t))))

(defun coderag-test--index-ready ()
  "Wait until the daemon of the current buffer has built its index."
  (coderag-test--wait
   "the workspace index"
   (lambda ()
     (not (eq (plist-get (coderag-test--request 'coderag/search '(:query "index"))
                         :indexing)
              t)))))

(ert-deftest coderag-chat-lists-the-sources-of-the-answer ()
  (coderag-test--with-file "tasktrack/api.py"
    (coderag-test--index-ready)
    ;; The answer's length is not limited here: a setting the daemon was
    ;; sent stays when the variable is set back to nil, which would cut
    ;; the answers that later tests stop.
    (pcase-let* ((`(,id ,token)
                  (coderag-test--ask "What does reconcile_quokka_ledger do?"))
                 (reply (coderag-test--wait "the answer"
                                            (lambda () (coderag-test--reply-to id))))
                 (sources (plist-get (plist-get reply :result) :sources))
                 (file (expand-file-name "tasktrack/quokka.py"
                                         coderag-test--workspace))
                 (chat (get-buffer coderag-chat-buffer-name)))
      (coderag-test--wait "the end of the answer"
                          (lambda () (not (coderag-test--chat 'coderag-chat--pending))))
      (should (cl-find "tasktrack/quokka.py" sources
                       :key (lambda (source) (plist-get source :path))
                       :test #'equal))
      ;; The last streamed piece carries the same sources.
      (should (equal (plist-get
                      (plist-get
                       (car (last (coderag-test--received
                                   (lambda (message)
                                     (and (equal (plist-get message :method)
                                                 "coderag/chatDelta")
                                          (equal (plist-get (plist-get message :params)
                                                            :token)
                                                 token))))))
                       :params)
                      :sources)
                     sources))
      (with-current-buffer chat
        (should (string-match
                 (concat "]\n\nSources:\n"
                         (mapconcat (lambda (source)
                                      (concat "- " (regexp-quote (plist-get source :label))
                                              " — .*\n"))
                                    sources "")
                         "\\'")
                 (buffer-string)))
        (switch-to-buffer chat)
        (goto-char (point-min))
        (search-forward "\nSources:\n")
        (search-forward "tasktrack/quokka.py:13-")
        (let ((from (point)))
          (coderag-test--command #'push-button)
          (should (equal buffer-file-name file))
          (should (= (line-number-at-pos) 13))
          (should (looking-at "def reconcile_quokka_ledger("))
          (should-not coderag-mode)
          (kill-buffer)
          (coderag-test--command (key-binding (kbd "M-,")))
          (should (eq (current-buffer) chat))
          (should (= (point) from)))))))

;;; Find by meaning

(ert-deftest coderag-search-notices ()
  (should-not (coderag--search-notice '(:indexing :json-false :files 3) 2))
  (should (string-match-p "nothing found\\'"
                          (coderag--search-notice '(:indexing :json-false :files 3) 0)))
  (should (string-match-p "still being built (3 files so far)"
                          (coderag--search-notice '(:indexing t :files 3) 2)))
  (should (string-match-p "nothing found yet"
                          (coderag--search-notice '(:indexing t :files 3) 0))))

(ert-deftest coderag-find-by-meaning-defaults-and-keys ()
  (with-temp-buffer
    (insert "x = verify_token(claims)")
    (goto-char 8)
    (should (equal (coderag--default-query) "verify_token"))
    (transient-mark-mode 1)
    (set-mark 1)
    (goto-char 5)
    (should (equal (coderag--default-query) "x ="))
    (deactivate-mark)
    (goto-char (point-max))
    (insert " ")
    (should-not (coderag--default-query)))
  (should (eq (lookup-key coderag-command-map "f") #'coderag-find-by-meaning))
  (should (eq (lookup-key coderag-command-map "o") #'coderag-visit-source))
  (should (eq (lookup-key coderag-chat-mode-map (kbd "C-c C-o")) #'coderag-visit-source)))

(ert-deftest coderag-find-by-meaning-lists-the-definition-with-xref ()
  (coderag-test--with-file "tasktrack/api.py"
    (coderag-test--index-ready)
    (when (get-buffer xref-buffer-name)
      (kill-buffer xref-buffer-name))
    (goto-char (point-min))
    (forward-line 5)
    (let ((origin (point))
          (code (current-buffer))
          (file (expand-file-name "tasktrack/wombat.py" coderag-test--workspace)))
      (coderag-find-by-meaning "wombat checksum")
      ;; Asynchronous: the command returns at once.
      (should-not (get-buffer xref-buffer-name))
      (should (equal (car (last (coderag-test--sent "coderag/search")))
                     '(:query "wombat checksum" :limit 20)))
      (let ((list (coderag-test--wait "the xref list"
                                      (lambda () (get-buffer xref-buffer-name)))))
        (with-current-buffer list
          (should (string-match-p
                   "^tasktrack/wombat.py\n *13: def compute_wombat_checksum — def compute_wombat_checksum(entries, opening_balance):$"
                   (buffer-substring-no-properties (point-min) (point-max))))))
      (with-current-buffer code
        (next-error))
      (let ((visited (window-buffer (selected-window))))
        (unwind-protect
            (with-current-buffer visited
              (should (equal buffer-file-name file))
              (goto-char (window-point (selected-window)))
              (should (= (line-number-at-pos) 13))
              (should (looking-at "def compute_wombat_checksum(")))
          (select-window (get-buffer-window visited))
          (coderag-test--command (key-binding (kbd "M-,")))
          (should (eq (current-buffer) code))
          (should (= (point) origin))
          (kill-buffer visited)
          (kill-buffer xref-buffer-name))))))

(ert-deftest coderag-find-by-meaning-reports-problems ()
  (coderag-test--with-file "tasktrack/api.py"
    (should-error (coderag-find-by-meaning "  ") :type 'user-error)
    (let ((done nil))
      ;; The daemon refuses an empty query: the failure says why.
      (coderag--search coderag--conn ""
                       :success (lambda (_) (setq done '(success)))
                       :failure (lambda (problem) (setq done (list 'failure problem))))
      (coderag-test--wait "the refusal" (lambda () done))
      (should (eq (car done) 'failure))
      (should (string-match-p "empty" (cadr done))))
    ;; Nothing matches: a message, no list.
    (coderag-test--index-ready)
    (let ((before (length (coderag-test--messages-matching "\\`coderag: nothing found\\'"))))
      (when (get-buffer xref-buffer-name)
        (kill-buffer xref-buffer-name))
      (coderag-find-by-meaning "zzyzxqj")
      (coderag-test--wait "the message"
                          (lambda () (> (length (coderag-test--messages-matching
                                                 "\\`coderag: nothing found\\'"))
                                        before)))
      (should-not (get-buffer xref-buffer-name)))))

;;; Status, context and cache

(ert-deftest coderag-status-context-and-cache ()
  (coderag-test--with-file "tasktrack/notifications.py"
    (goto-char (point-max))
    (insert "# the most recently edited file\n")
    (coderag-test--ask-suggestion)
    (should (string-match-p "\\` coderag\\[[a-z]+ [0-9.]+k? [0-9.]+m?s\\]\\'"
                            (coderag--lighter)))
    (let* ((file buffer-file-name)
           (list (save-current-buffer
                   (coderag-show-context)
                   (current-buffer)))
           (entries (coderag-test--wait
                     "the context list"
                     (lambda () (buffer-local-value 'tabulated-list-entries list)))))
      ;; Least recently edited first: the file just edited comes last.
      (should (equal (car (car (last entries))) file))
      (should (cl-every (lambda (entry) (> (string-to-number (aref (cadr entry) 2)) 0))
                        entries))
      (should (string-match-p "tokens cached"
                              (buffer-local-value 'header-line-format list)))
      (kill-buffer list))
    (let ((seen (length coderag-test--traffic)))
      (coderag-clear-cache)
      (coderag-test--wait "the cache to be cleared"
                          (lambda () (coderag-test--messages-matching "cache cleared")))
      (coderag-test--wait
       "an empty cache"
       (lambda ()
         (cl-loop for (direction _ message) in (butlast coderag-test--traffic seen)
                  thereis (and (eq direction 'received)
                               (equal (plist-get message :method) "coderag/status")
                               (eql (plist-get (plist-get message :params) :tokensCached)
                                    0))))))))

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
      (should (coderag-test--messages-matching "keeps exiting"))
      (accept-process-output nil 1)
      (should-not (coderag--live-connection coderag--root))
      (should (equal (coderag--lighter) " coderag[off]"))
      (coderag-restart)
      (coderag-test--wait "the restarted daemon" #'coderag--synced-connection)
      (coderag-test--assert-synced)
      ;; Restarting a running daemon ends it quietly.
      (let ((running coderag--conn)
            (restarts (length (coderag-test--messages-matching "restarting it"))))
        (coderag-restart)
        (should-not (jsonrpc-running-p running))
        (coderag-test--wait "the new daemon"
                            (lambda () (let ((conn (coderag--synced-connection)))
                                         (and conn (not (eq conn running))))))
        (coderag-test--assert-synced)
        (should (= restarts (length (coderag-test--messages-matching "restarting it"))))))))

(ert-deftest coderag-missing-daemon-is-one-clear-message ()
  (coderag-test--setup)
  (let* ((coderag-daemon-command '("coderag-daemon-not-installed-here"))
         (coderag--missing-command nil)
         (directory (make-temp-file "coderag-missing" t))
         (buffers (mapcar (lambda (name)
                            (find-file-noselect (expand-file-name name directory)))
                          '("a.py" "b.py"))))
    (unwind-protect
        (progn
          (dolist (buffer buffers)
            (with-current-buffer buffer
              (coderag-mode 1)
              (should (equal (coderag--lighter) " coderag[off]"))))
          (should (= 1 (length (coderag-test--messages-matching
                                "`coderag-daemon-not-installed-here' not found.*make setup"))))
          (with-current-buffer (car buffers)
            (should-error (coderag-ask "Anyone there?") :type 'user-error)))
      (mapc #'kill-buffer buffers)
      (delete-directory directory t))))

(ert-deftest coderag-daemon-that-cannot-start-is-reported ()
  (coderag-test--setup)
  (let* ((coderag-daemon-command
          (list (coderag-test--python) "-c" "import sys; sys.exit('no model here')"))
         (directory (make-temp-file "coderag-broken" t))
         (buffer (find-file-noselect (expand-file-name "a.py" directory))))
    (unwind-protect
        (with-current-buffer buffer
          (coderag-mode 1)
          (coderag-test--wait
           "the failure"
           (lambda () (coderag-test--messages-matching
                       "failed to start (exit status 1: no model here)")))
          (accept-process-output nil 1)
          (should-not (coderag--live-connection coderag--root))
          (should-not (coderag-test--messages-matching
                       (concat (regexp-quote directory) ".*restarting"))))
      (kill-buffer buffer)
      (delete-directory directory t))))

;;; Packaging

(defun coderag-test--emacs (form)
  "Run FORM in a new batch Emacs; return what it printed, or fail."
  (with-temp-buffer
    (let ((status (call-process (expand-file-name invocation-name invocation-directory)
                                nil t nil "-Q" "--batch" "--eval" (format "%S" form))))
      (unless (eql status 0)
        (ert-fail (buffer-string)))
      (buffer-string))))

(defun coderag-test--install-and-check (packages)
  "Install the package into PACKAGES; return what a new Emacs finds."
  (coderag-test--emacs
   `(progn (setq package-user-dir ,packages)
           (package-initialize)
           (package-install-file ,(expand-file-name "editors/emacs" coderag-test--repo))))
  (coderag-test--emacs
   `(progn (setq package-user-dir ,packages)
           (package-initialize)
           (let ((autoloaded (list (autoloadp (symbol-function 'coderag-mode))
                                   (autoloadp (symbol-function 'coderag-ask))
                                   (autoloadp (symbol-function
                                               'coderag-find-by-meaning)))))
             (require 'coderag)
             (princ (format "%S" (append autoloaded
                                         (list (commandp 'coderag-show-context)
                                               (featurep 'coderag-chat)))))))))

(ert-deftest coderag-installs-with-package-install-file ()
  (let ((packages (make-temp-file "coderag-packages" t)))
    (unwind-protect
        (should (string-suffix-p "(t t t t t)"
                                 (coderag-test--install-and-check packages)))
      (delete-directory packages t))))

(provide 'coderag-test)
;;; coderag-test.el ends here
