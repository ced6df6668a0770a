;;; coderag-sync.el --- Buffer synchronization for coderag  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; Keeps the daemon's copy of each buffer identical to the buffer:
;; didOpen, incremental didChange, didSave and didClose.  Positions
;; are LSP positions, computed the way the daemon reads them: lines
;; end at \n, \r\n or a lone \r, and columns count UTF-16 code units,
;; so characters beyond the Basic Multilingual Plane (emoji) count
;; twice.

;;; Code:

(require 'cl-lib)
(require 'coderag-connection)

(defvar-local coderag--root nil
  "The project root whose daemon this buffer is opened on.")

(defvar-local coderag--conn nil
  "The connection this buffer was last opened on.")

(defvar-local coderag--document-uri nil
  "The URI this buffer was opened with.")

(defvar-local coderag--version 0
  "The version of the last text sent to the daemon.")

(defvar-local coderag--change nil
  "The change about to happen: (BEG END START END-POSITION OLD-TEXT).")

(defvar-local coderag--attached nil
  "Non-nil in buffers that want to be open on their daemon.")

(defun coderag--utf16-length (beg end)
  "Length of the text between BEG and END in UTF-16 code units."
  (save-excursion
    (goto-char beg)
    (let ((units (- end beg)))
      (while (re-search-forward "[\U00010000-\U0010FFFF]" end t)
        (cl-incf units))
      units)))

(defun coderag--lone-cr-count (end)
  "Number of lone \\r characters (not followed by \\n) before END."
  (save-excursion
    (goto-char (point-min))
    (let ((count 0))
      (while (search-forward "\r" end t)
        (unless (eq (char-after) ?\n)
          (cl-incf count)))
      count)))

(defun coderag--position (pos)
  "The LSP position of POS, or nil when POS splits a \\r\\n pair."
  (save-excursion
    (save-restriction
      (widen)
      (goto-char pos)
      (unless (and (eq (char-before) ?\r) (eq (char-after) ?\n))
        (skip-chars-backward "^\r\n")
        (list :line (+ (1- (line-number-at-pos)) (coderag--lone-cr-count (point)))
              :character (coderag--utf16-length (point) pos))))))

(defun coderag--point (position)
  "The buffer position of LSP POSITION, or nil if there is no such place.
The inverse of `coderag--position'."
  (let ((line (plist-get position :line))
        (units (plist-get position :character)))
    (when (and (natnump line) (natnump units))
      (save-excursion
        (save-restriction
          (widen)
          (goto-char (point-min))
          (when (or (zerop line) (re-search-forward "\r\n\\|[\r\n]" nil t line))
            (while (and (> units 0) (not (memq (char-after) '(nil ?\r ?\n))))
              (setq units (- units (if (> (char-after) #xFFFF) 2 1)))
              (forward-char))
            (and (zerop units) (point))))))))

(defun coderag--text ()
  "The whole text of the buffer, narrowed or not."
  (save-restriction
    (widen)
    (buffer-substring-no-properties (point-min) (point-max))))

(defun coderag--language-id ()
  "The LSP language id of the buffer, from its major mode."
  (replace-regexp-in-string "\\(?:-ts\\)?-mode\\'" ""
                            (symbol-name major-mode)))

(defun coderag--synced-connection ()
  "The connection this buffer is open on, if its daemon is up and ready."
  (and coderag--conn
       (jsonrpc-running-p coderag--conn)
       (coderag--ready-p coderag--conn)
       coderag--conn))

(defun coderag--open (conn)
  "Open the buffer on CONN with its whole text."
  (setq coderag--conn conn
        coderag--document-uri (coderag--uri buffer-file-name))
  (cl-incf coderag--version)
  (jsonrpc-notify conn 'textDocument/didOpen
                  (list :textDocument
                        (list :uri coderag--document-uri
                              :languageId (coderag--language-id)
                              :version coderag--version
                              :text (coderag--text)))))

(defun coderag--open-buffers (conn)
  "Open on CONN every buffer that wants its root.
The most recently used buffers come last, as they do in the context."
  (dolist (buffer (reverse (buffer-list)))
    (with-current-buffer buffer
      (when (and coderag--attached
                 (equal coderag--root (coderag--root-of conn))
                 (not (eq coderag--conn conn)))
        (coderag--open conn)))))

(add-hook 'coderag--ready-functions #'coderag--open-buffers)

(defun coderag--close ()
  "Close the buffer on its daemon; its file stays in the context."
  (when-let ((conn (coderag--synced-connection)))
    (jsonrpc-notify conn 'textDocument/didClose
                    (list :textDocument (list :uri coderag--document-uri))))
  (setq coderag--conn nil))

(defun coderag--send-change (change)
  "Send CHANGE, one LSP content change, as the buffer's next version."
  (when-let ((conn (coderag--synced-connection)))
    (cl-incf coderag--version)
    (jsonrpc-notify conn 'textDocument/didChange
                    (list :textDocument (list :uri coderag--document-uri
                                              :version coderag--version)
                          :contentChanges (vector change)))))

(defun coderag--before-change (beg end)
  "Remember the text and LSP positions of BEG..END before a change."
  (setq coderag--change
        (and (coderag--synced-connection)
             (list beg end (coderag--position beg) (coderag--position end)
                   (buffer-substring-no-properties beg end)))))

(defun coderag--resync ()
  "Send the whole text, after a change the change hooks did not describe."
  (coderag--send-change (list :text (coderag--text))))

(defun coderag--after-change (beg end old-length)
  "Send the change that replaced OLD-LENGTH characters by BEG..END."
  (pcase-let ((`(,old-beg ,old-end ,start ,stop ,old-text) coderag--change))
    (setq coderag--change nil)
    (when (coderag--synced-connection)
      (let ((text (buffer-substring-no-properties beg end)))
        (cond
         ;; Only text properties changed.
         ((and (eql old-beg beg) (equal old-text text)))
         ((and start stop (eql old-beg beg) (eql (- old-end old-beg) old-length))
          (coderag--send-change (list :range (list :start start :end stop)
                                      :text text)))
         ;; Unpaired hook calls, or a change splitting a \r\n pair.
         (t (coderag--resync)))))))

(defun coderag--after-save ()
  "Tell the daemon the buffer was saved."
  (when-let ((conn (coderag--synced-connection)))
    (jsonrpc-notify conn 'textDocument/didSave
                    (list :textDocument (list :uri coderag--document-uri)
                          :text (coderag--text)))))

(defun coderag--file-renamed ()
  "Reopen the buffer under its new file name."
  (coderag--sync-stop)
  (coderag--sync-start))

(defun coderag--sync-start ()
  "Open the buffer on its project's daemon, starting the daemon if needed."
  (setq coderag--attached t
        coderag--root (coderag--project-root))
  (add-hook 'before-change-functions #'coderag--before-change nil t)
  (add-hook 'after-change-functions #'coderag--after-change nil t)
  (add-hook 'after-save-hook #'coderag--after-save nil t)
  (add-hook 'after-set-visited-file-name-hook #'coderag--file-renamed nil t)
  (add-hook 'kill-buffer-hook #'coderag--close nil t)
  (when-let ((conn (coderag--ensure-connection coderag--root)))
    (when (coderag--ready-p conn)
      (coderag--open conn))))

(defun coderag--sync-stop ()
  "Close the buffer on its daemon and stop following edits."
  (coderag--close)
  (setq coderag--attached nil)
  (remove-hook 'before-change-functions #'coderag--before-change t)
  (remove-hook 'after-change-functions #'coderag--after-change t)
  (remove-hook 'after-save-hook #'coderag--after-save t)
  (remove-hook 'after-set-visited-file-name-hook #'coderag--file-renamed t)
  (remove-hook 'kill-buffer-hook #'coderag--close t))

(provide 'coderag-sync)
;;; coderag-sync.el ends here
