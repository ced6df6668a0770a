;;; coderag-sync-test.el --- Tests of positions and document sync  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; LSP positions and URIs, and the daemon's copy of buffers edited in
;; every way.

;;; Code:

(require 'coderag-test-support)

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

(ert-deftest coderag-positions-map-back-to-the-buffer ()
  (with-temp-buffer
    (insert "a😀é☕b\r\nc\rd\n\r\ne")
    (dolist (pos (number-sequence (point-min) (point-max)))
      (when-let ((position (coderag--position pos)))
        (should (eql (coderag--point position) pos))))
    (should (eql (coderag--point '(:line 0 :character 2)) nil))    ; inside 😀
    (should (eql (coderag--point '(:line 1 :character 2)) nil))    ; after "c"
    (should (eql (coderag--point '(:line 5 :character 0)) nil))
    (should (eql (coderag--point '(:line 4 :character 1)) (point-max)))
    (should (eql (coderag--point '(:line -1 :character 0)) nil))
    (should (eql (coderag--point nil) nil))))

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

(provide 'coderag-sync-test)
;;; coderag-sync-test.el ends here
