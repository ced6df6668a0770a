;;; coderag-chat-test.el --- Tests of the project chat  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; Answers streamed into the chat buffer, stopped, and their sources.

;;; Code:

(require 'coderag-test-support)

;;; Chat

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

(provide 'coderag-chat-test)
;;; coderag-chat-test.el ends here
