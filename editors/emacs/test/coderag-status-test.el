;;; coderag-status-test.el --- Tests of the status and the context list  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; The mode line, the list of the context's files and clearing the cache.

;;; Code:

(require 'coderag-test-support)

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

(provide 'coderag-status-test)
;;; coderag-status-test.el ends here
