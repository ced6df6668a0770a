;;; coderag-status.el --- Daemon status for coderag  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; The mode-line lighter (the daemon's state, the tokens it holds in
;; its cache, the latency of the last request) and the list of the
;; files in the daemon's context, in their order.

;;; Code:

(require 'tabulated-list)
(require 'coderag-sync)

(cl-defmethod coderag--handle-notification
  (conn (_method (eql coderag/status)) params)
  "Record the status PARAMS of CONN's daemon and show it."
  (setf (coderag--status conn) params)
  (force-mode-line-update t))

(defun coderag--tokens (count)
  "COUNT tokens, briefly."
  (if (< count 1000) (format "%d" count) (format "%.1fk" (/ count 1000.0))))

(defun coderag--milliseconds (ms)
  "MS milliseconds, briefly."
  (if (< ms 1000) (format "%dms" (round ms)) (format "%.1fs" (/ ms 1000.0))))

(defun coderag--lighter ()
  "The mode-line lighter of `coderag-mode'."
  (let* ((conn (coderag--live-connection (or coderag--root "")))
         (failure (gethash (or coderag--root "") coderag--failures))
         (status (and conn (coderag--status conn)))
         (state (plist-get status :state))
         (last (plist-get status :lastRequest)))
    (cond
     ((and (not conn) failure)
      (propertize " coderag[failed]" 'face 'error 'help-echo (car failure)))
     ((not conn) (propertize " coderag[off]" 'help-echo "No daemon is running"))
     ((not state) " coderag[starting]")
     ((equal state "error")
      (propertize " coderag[error]" 'face 'error
                  'help-echo (plist-get status :error)))
     (t
      (propertize
       (concat " coderag[" state
               " " (coderag--tokens (or (plist-get status :tokensCached) 0))
               (if last
                   (concat " " (coderag--milliseconds
                                (+ (or (plist-get last :timeToFirstTokenMs) 0)
                                   (or (plist-get last :generationMs) 0))))
                 "")
               "]")
       'help-echo (format "Model %s\n%s files, %s of %s tokens cached (%s)"
                          (plist-get status :model)
                          (plist-get status :files)
                          (plist-get status :tokensCached)
                          (plist-get status :nCtx)
                          (plist-get status :strategy)))))))

(defvar-local coderag--context-root nil
  "The project root whose daemon's context this buffer lists.")

(define-derived-mode coderag-context-mode tabulated-list-mode "coderag-context"
  "The files in a daemon's context, in their order.
The first ones are the least recently edited.  \\<coderag-context-mode-map>\
\\[coderag-context-visit] visits a file, \\[revert-buffer] refreshes."
  (setq tabulated-list-format [("#" 3 t :right-align t)
                               ("File" 50 t)
                               ("Tokens" 8 t :right-align t)
                               ("Start" 8 t :right-align t)
                               ("Cached" 7 t)
                               ("Note" 0 t)]
        tabulated-list-padding 1
        ;; The header line shows the totals, the column names go in the buffer.
        tabulated-list-use-header-line nil)
  (add-hook 'tabulated-list-revert-hook #'coderag--context-refresh nil t)
  (tabulated-list-init-header))

(define-key coderag-context-mode-map (kbd "RET") #'coderag-context-visit)

(defun coderag-context-visit ()
  "Visit the file on this line."
  (interactive)
  (find-file (or (tabulated-list-get-id) (user-error "No file here"))))

(defun coderag--context-show (buffer result)
  "Fill BUFFER with the context RESULT of `coderag/context'."
  (when (buffer-live-p buffer)
    (with-current-buffer buffer
      (let ((root coderag--context-root)
            (index 0))
        (setq tabulated-list-entries
              (mapcar (lambda (file)
                        (list (expand-file-name (plist-get file :path) root)
                              (vector (format "%d" (cl-incf index))
                                      (plist-get file :path)
                                      (format "%d" (plist-get file :tokens))
                                      (format "%d" (plist-get file :start))
                                      (if (eq (plist-get file :cached) t) "yes" "no")
                                      (if (eq (plist-get file :truncated) t)
                                          "truncated" ""))))
                      (plist-get result :files)))
        (setq header-line-format
              (format " %s: %d files, %d of %d tokens cached"
                      (abbreviate-file-name root) (length tabulated-list-entries)
                      (plist-get result :tokensCached) (plist-get result :nCtx)))
        (tabulated-list-print t)))))

(defun coderag--context-refresh ()
  "Ask the daemon for its context and list it in this buffer."
  (let ((buffer (current-buffer)))
    (coderag--send (or (coderag--live-connection coderag--context-root)
                       (user-error "No daemon runs for %s" coderag--context-root))
                   'coderag/context (make-hash-table)
                   :success (lambda (result) (coderag--context-show buffer result))
                   :error (lambda (err)
                            (message "coderag: no context: %s"
                                     (plist-get err :message)))
                   :timeout-fn (lambda ()
                                 (message "coderag: the context request timed out")))))

;;;###autoload
(defun coderag-show-context ()
  "List the files of the daemon's context with their token counts."
  (interactive)
  (let ((conn (coderag--connection t))
        (buffer (get-buffer-create "*coderag-context*")))
    (with-current-buffer buffer
      (coderag-context-mode)
      (setq coderag--context-root (coderag--root-of conn))
      (coderag--when-ready conn (lambda () (with-current-buffer buffer
                                             (coderag--context-refresh)))))
    (pop-to-buffer buffer)))

(provide 'coderag-status)
;;; coderag-status.el ends here
