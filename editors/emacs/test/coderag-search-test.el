;;; coderag-search-test.el --- Tests of find by meaning  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; `coderag-find-by-meaning' and its xref list.

;;; Code:

(require 'coderag-test-support)

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

(provide 'coderag-search-test)
;;; coderag-search-test.el ends here
