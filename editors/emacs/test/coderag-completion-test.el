;;; coderag-completion-test.el --- Tests of inline suggestions  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; Suggestions asked for, shown, accepted, dismissed and dropped when
;; stale, in batch: the idle timer is called by hand.

;;; Code:

(require 'coderag-test-support)

;;; Inline completion

(ert-deftest coderag-completion-items-are-shown-at-point ()
  (with-temp-buffer
    (insert "def f():\n    ret(x)")
    (search-backward "(")
    (cl-flet ((at (line character) (list :line line :character character))
              (shown (text &optional start end)
                (coderag--item-text
                 (append (list :insertText text)
                         (and start (list :range (list :start start :end end)))))))
      (should (equal (shown "urn") "urn"))
      (should (equal (shown "urn" (at 1 7) (at 1 7)) "urn"))
      ;; A range from the start of the word, or of the line: what it
      ;; replaces before point begins the text, which is shown without it.
      (should (equal (shown "return" (at 1 4) (at 1 7)) "urn"))
      (should (equal (shown "    return" (at 1 0) (at 1 7)) "urn"))
      (should (equal (shown "return(x)" (at 1 4) (at 1 10)) "urn"))
      ;; Not what was typed: nothing to show at point.
      (should-not (shown "        return" (at 1 0) (at 1 7)))
      (should-not (shown "return(y)" (at 1 4) (at 1 10)))
      (should-not (shown "urn" (at 1 8) (at 1 8)))
      (should-not (shown "urn" (at 1 9) (at 1 9)))
      (should-not (shown "urn" (at 2 0) (at 2 0)))
      (should-not (coderag--item-text '(:insertText (:kind "snippet" :value "urn")))))))

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
      ;; Not one typing the start of the suggestion shown: none is.
      (coderag--hide)
      (coderag-complete)
      (let ((second (nth 1 coderag--request)))
        (coderag-test--type-and-idle ?\s)
        (should (member (list :id second) (coderag-test--sent "$/cancelRequest")))
        (should (equal (plist-get (car (last (coderag-test--sent
                                              "textDocument/inlineCompletion")))
                                  :context)
                       '(:triggerKind 2)))
        (coderag-test--wait "the idle answer" (lambda () (not coderag--request)))))))

(provide 'coderag-completion-test)
;;; coderag-completion-test.el ends here
