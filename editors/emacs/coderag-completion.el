;;; coderag-completion.el --- Inline suggestions for coderag  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; Ghost-text suggestions from `textDocument/inlineCompletion', asked
;; for after an idle delay following an edit or by `coderag-complete'.
;; An answer is shown only if neither the buffer nor point changed
;; since the request; a request that is superseded (a newer one, an
;; edit, a move) is cancelled at the daemon.  While a suggestion is
;; shown, `coderag-completion-map' is active: TAB accepts it, and keys
;; that it does not bind keep their usual meaning.

;;; Code:

(require 'coderag-sync)

(defcustom coderag-idle-delay 0.4
  "Idle seconds after an edit before a suggestion is asked for.
nil asks only on \\[coderag-complete]."
  :type '(choice (const :tag "Only on demand" nil) number)
  :group 'coderag)

(defface coderag-suggestion '((t :inherit shadow))
  "Face of the suggestion shown after point."
  :group 'coderag)

(defvar coderag-completion-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'coderag-accept)
    (define-key map (kbd "<tab>") #'coderag-accept)
    (define-key map (kbd "M-f") #'coderag-accept-word)
    (define-key map (kbd "M-e") #'coderag-accept-line)
    (define-key map (kbd "C-g") #'coderag-dismiss)
    map)
  "Keys active while a suggestion is shown.")

(defvar-local coderag--suggestion nil
  "The overlay showing the current suggestion, or nil.
Its `coderag-text' property is the text still to insert, its
`coderag-tick' the buffer's `buffer-chars-modified-tick' then.")

(defvar coderag--completion-map-alist
  `((coderag--suggestion . ,coderag-completion-map))
  "Activates `coderag-completion-map' while a suggestion is shown.")

(add-to-list 'emulation-mode-map-alists 'coderag--completion-map-alist)

(defvar-local coderag--request nil
  "The suggestion request in flight: (CONN ID TICK POINT), or nil.")

(defvar-local coderag--last-tick nil
  "`buffer-chars-modified-tick' after the previous command.")

(defvar coderag--idle-timer nil
  "The timer that asks for a suggestion once Emacs is idle.")

(defun coderag--ghost (text)
  "TEXT as the suggestion is displayed, with the cursor before it."
  (let ((ghost (propertize text 'face 'coderag-suggestion)))
    (put-text-property 0 1 'cursor t ghost)
    ghost))

(defun coderag--hide ()
  "Remove the suggestion from the buffer."
  (when coderag--suggestion
    (delete-overlay coderag--suggestion)
    (setq coderag--suggestion nil)))

(defun coderag--show (text)
  "Show TEXT as the suggestion at point."
  (coderag--hide)
  (let ((overlay (make-overlay (point) (point))))
    (overlay-put overlay 'after-string (coderag--ghost text))
    (overlay-put overlay 'coderag-text text)
    (overlay-put overlay 'coderag-tick (buffer-chars-modified-tick))
    (setq coderag--suggestion overlay)))

(defun coderag-dismiss ()
  "Hide the suggestion and cancel the request for one."
  (interactive)
  (coderag--cancel-request)
  (coderag--hide))

(defun coderag--follow ()
  "Keep the suggestion in step with point, or dismiss it.
It stays while neither point nor the text move, and shrinks when
the text inserted at its place is its own beginning (typed or
accepted)."
  (let* ((overlay coderag--suggestion)
         (start (overlay-start overlay))
         (text (overlay-get overlay 'coderag-text))
         (edited (not (eql (overlay-get overlay 'coderag-tick)
                           (buffer-chars-modified-tick))))
         (typed (and start edited (< start (point) (+ start (length text)))
                     (buffer-substring-no-properties start (point)))))
    (cond
     ((and (not edited) (eql start (point))))
     ((and typed (string-prefix-p typed text))
      (coderag--show (substring text (length typed))))
     (t (coderag-dismiss)))))

(defun coderag--post-command ()
  "Follow the suggestion, cancel stale requests, schedule a new one."
  (when coderag--suggestion
    (coderag--follow))
  (pcase coderag--request
    (`(,_ ,_ ,tick ,point)
     (unless (and (eql tick (buffer-chars-modified-tick)) (eql point (point)))
       (coderag--cancel-request))))
  (unless (eql coderag--last-tick (buffer-chars-modified-tick))
    (setq coderag--last-tick (buffer-chars-modified-tick))
    (when (and coderag-idle-delay (not coderag--suggestion))
      (when coderag--idle-timer
        (cancel-timer coderag--idle-timer))
      (setq coderag--idle-timer
            (run-with-idle-timer coderag-idle-delay nil
                                 #'coderag--idle-request (current-buffer))))))

(defun coderag--idle-request (buffer)
  "Ask for a suggestion in BUFFER if the user is still there.
Without a daemon ready for the buffer, start one (again, after a
failed start) and ask once it is ready, if nothing moved meanwhile."
  (setq coderag--idle-timer nil)
  (when (eq buffer (window-buffer (selected-window)))
    (with-current-buffer buffer
      (cond
       ((or coderag--suggestion coderag--request (not coderag--attached)))
       ((coderag--synced-connection) (coderag--request-completion 2 nil))
       (t
        (when-let ((conn (coderag--ensure-connection coderag--root)))
          (coderag--when-ready conn (coderag--ask-if-unmoved buffer))))))))

(defun coderag--ask-if-unmoved (buffer)
  "A function that asks for a suggestion in BUFFER if nothing moved.
Nothing: neither the text of BUFFER nor point, nor the buffer shown."
  (let ((tick (buffer-chars-modified-tick buffer))
        (place (with-current-buffer buffer (point))))
    (lambda ()
      (when (and (buffer-live-p buffer)
                 (eq buffer (window-buffer (selected-window))))
        (with-current-buffer buffer
          (when (and (eql tick (buffer-chars-modified-tick))
                     (eql place (point))
                     (not (or coderag--suggestion coderag--request)))
            (coderag--request-completion 2 nil)))))))

(defun coderag--cancel-request ()
  "Cancel the suggestion request in flight, if any."
  (pcase coderag--request
    (`(,conn ,id . ,_)
     (setq coderag--request nil)
     (coderag--cancel conn id))))

(defun coderag--request-completion (trigger-kind report)
  "Ask for a suggestion at point with LSP TRIGGER-KIND.
When REPORT, say when there is none or the request failed."
  (coderag--cancel-request)
  (let ((conn (coderag--synced-connection))
        (position (coderag--position (point)))
        (buffer (current-buffer))
        request)
    (when (and conn position)
      (setq request (list conn nil (buffer-chars-modified-tick) (point)))
      (setf (nth 1 request)
            (coderag--send
             conn 'textDocument/inlineCompletion
             (list :textDocument (list :uri coderag--document-uri)
                   :position position
                   :context (list :triggerKind trigger-kind))
             :success (lambda (result)
                        (coderag--answered buffer request result nil report))
             :error (lambda (err)
                      (coderag--answered buffer request nil err report))
             :timeout-fn (lambda ()
                           (coderag--answered buffer request nil
                                              '(:message "timed out") report))))
      (setq coderag--request request))))

(defun coderag--item-text (item)
  "The text to show after point for ITEM, an inline completion, or nil.
ITEM replaces its range (empty at point by default) by its
`insertText': the text of the range before point must begin it and
the text after point end it, so that what is shown between them,
inserted at point, makes the line what ITEM makes it."
  (let* ((text (plist-get item :insertText))
         (range (plist-get item :range))
         (start (if range (coderag--point (plist-get range :start)) (point)))
         (end (if range (coderag--point (plist-get range :end)) (point))))
    (when (and (stringp text) start end (<= start (point) end))
      (let ((before (buffer-substring-no-properties start (point)))
            (after (buffer-substring-no-properties (point) end)))
        (when (and (string-prefix-p before text)
                   (string-suffix-p after (substring text (length before))))
          (substring text (length before) (- (length text) (length after))))))))

(defun coderag--answered (buffer request result err report)
  "Show the suggestion in RESULT if BUFFER is as it was at REQUEST.
ERR is the error object of a failed request; REPORT as in
`coderag--request-completion'."
  (when (buffer-live-p buffer)
    (with-current-buffer buffer
      (when (eq coderag--request request)
        (setq coderag--request nil)
        (pcase-let* ((`(,_ ,_ ,tick ,point) request)
                     (items (plist-get result :items))
                     (text (and (< 0 (length items))
                                (coderag--item-text (aref items 0)))))
          (cond
           ((not (and (eql tick (buffer-chars-modified-tick))
                      (eql point (point)))))
           ((and text (not (string-empty-p text)))
            (coderag--show text))
           ((and report err)
            (message "coderag: no suggestion: %s" (plist-get err :message)))
           (report (message "coderag: no suggestion here"))))))))

(defun coderag-complete ()
  "Ask the daemon for a suggestion at point now."
  (interactive)
  (unless (coderag--synced-connection)
    (user-error "No coderag daemon has this buffer yet (is `coderag-mode' on?)"))
  (coderag--request-completion 1 t))

(defun coderag--accept (part)
  "Insert what the function PART picks from the suggestion's text."
  (unless coderag--suggestion
    (user-error "No suggestion to accept"))
  (goto-char (overlay-start coderag--suggestion))
  (insert (funcall part (overlay-get coderag--suggestion 'coderag-text)))
  (coderag--follow))

(defun coderag-accept ()
  "Insert the whole suggestion."
  (interactive)
  (coderag--accept #'identity))

(defun coderag-accept-word ()
  "Insert the suggestion up to the end of its next word."
  (interactive)
  (coderag--accept (lambda (text)
                     (if (string-match "\\`\\W*\\w+" text)
                         (match-string 0 text)
                       text))))

(defun coderag-accept-line ()
  "Insert the suggestion up to the end of its next non-empty line."
  (interactive)
  (coderag--accept (lambda (text)
                     (string-match "\\`\n*[^\n]*" text)
                     (match-string 0 text))))

(defun coderag--completion-start ()
  "Offer suggestions in this buffer."
  (setq coderag--last-tick (buffer-chars-modified-tick))
  (add-hook 'post-command-hook #'coderag--post-command nil t))

(defun coderag--completion-stop ()
  "Stop offering suggestions in this buffer."
  (coderag-dismiss)
  (remove-hook 'post-command-hook #'coderag--post-command t))

(provide 'coderag-completion)
;;; coderag-completion.el ends here
