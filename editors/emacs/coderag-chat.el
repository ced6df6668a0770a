;;; coderag-chat.el --- Project chat for coderag  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; `coderag-ask' sends a question about the project to the daemon and
;; streams the answer into the *coderag-chat* buffer.  The buffer keeps
;; the conversation, which goes with each question as its history.
;; After an answer come its sources, the chunks of code the daemon
;; found in its workspace index and gave the model: a list of
;; buttons, and the answer's `path:N' mentions of them, visit them.

;;; Code:

(require 'cl-lib)
(require 'coderag-sync)
(require 'coderag-search)

(defcustom coderag-chat-timeout 300
  "Seconds an answer may take before it is abandoned."
  :type 'number
  :group 'coderag)

(defface coderag-chat-heading '((t :inherit bold))
  "Face of the question and answer headings in the chat buffer."
  :group 'coderag)

(defface coderag-chat-note '((t :inherit shadow))
  "Face of the notes after an answer: figures, stops, errors."
  :group 'coderag)

(defconst coderag-chat-buffer-name "*coderag-chat*"
  "Name of the chat buffer.")

(defvar-local coderag-chat--history nil
  "The conversation so far, oldest first: plists (:role :content).")

(defvar-local coderag-chat--root nil
  "The project root the conversation is about.")

(defvar-local coderag-chat--pending nil
  "The answer being written: plist (:conn :id :token :question :start :sources).")

(defvar-local coderag-chat--sources nil
  "The sources of the last answer: plists (:uri :path :range :label :title).")

(defvar coderag-chat--count 0
  "Number of questions asked, for unique stream tokens.")

(defvar coderag-chat--questions nil
  "Minibuffer history of questions.")

(defvar coderag-chat-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "C-c C-k") #'coderag-chat-stop)
    (define-key map (kbd "C-c C-c") #'coderag-ask)
    (define-key map (kbd "C-c C-n") #'coderag-chat-new)
    (define-key map (kbd "C-c C-o") #'coderag-visit-source)
    map)
  "Keys of the chat buffer.")

(define-minor-mode coderag-chat-mode
  "Minor mode of the *coderag-chat* buffer.
Its major mode is `markdown-mode' when installed.

\\{coderag-chat-mode-map}"
  :lighter " coderag-chat")

(defun coderag-chat--buffer (root)
  "The chat buffer, set up for a conversation about ROOT."
  (with-current-buffer (get-buffer-create coderag-chat-buffer-name)
    (unless coderag-chat-mode
      (if (fboundp 'markdown-mode) (markdown-mode) (text-mode))
      (coderag-chat-mode)
      (add-hook 'kill-buffer-hook #'coderag-chat--cancel nil t)
      (setq buffer-read-only t))
    (unless (equal root coderag-chat--root)
      (when coderag-chat--root
        (coderag-chat--insert (format "\n--- %s ---\n" root) 'coderag-chat-note))
      (setq coderag-chat--root root
            coderag-chat--history nil
            default-directory (file-name-as-directory root)))
    (current-buffer)))

(defun coderag-chat--insert (text &optional face)
  "Append TEXT in FACE, keeping windows that showed the end at the end."
  (let ((inhibit-read-only t)
        (following (cl-remove-if-not (lambda (window)
                                       (= (window-point window) (point-max)))
                                     (get-buffer-window-list nil nil t))))
    (save-excursion
      (goto-char (point-max))
      ;; `font-lock-face' survives the fontification of `markdown-mode'.
      (insert (if face (propertize text 'face face 'font-lock-face face) text)))
    (dolist (window following)
      (set-window-point window (point-max)))))

(defun coderag-chat--place (conn)
  "Where the user is, as `coderag/chat' parameters for CONN.
Nil when CONN's daemon does not have the buffer."
  (when (eq (coderag--synced-connection) conn)
    (let ((start (and (use-region-p) (coderag--position (region-beginning))))
          (end (and (use-region-p) (coderag--position (region-end)))))
      (append (list :uri coderag--document-uri
                    :position (coderag--position (point)))
              (and start end
                   (list :selection (list :start start :end end)))))))

;;;###autoload
(defun coderag-ask (question)
  "Ask the daemon QUESTION about the project; stream the answer.
With an active region, the selected text goes with the question.
The conversation so far is kept in the *coderag-chat* buffer and
sent along; \\[coderag-chat-new] there starts a new one."
  (interactive
   (list (read-string (if (use-region-p)
                          "Ask coderag about the region: "
                        "Ask coderag: ")
                      nil 'coderag-chat--questions)))
  (when (string-blank-p question)
    (user-error "The question is empty"))
  (let* ((conn (coderag--connection t))
         (place (coderag-chat--place conn))
         (text (if (or place (not (use-region-p)))
                   question
                 (format "%s\n\n```\n%s\n```" question
                         (buffer-substring-no-properties (region-beginning)
                                                         (region-end)))))
         (buffer (coderag-chat--buffer (coderag--root-of conn))))
    (with-current-buffer buffer
      (when coderag-chat--pending
        (coderag-chat-stop))
      (coderag-chat--insert "\n## Question\n\n" 'coderag-chat-heading)
      (coderag-chat--insert (format "%s\n\n" text))
      (coderag-chat--insert "## Answer\n\n" 'coderag-chat-heading)
      ;; Show the new question, and follow the answer as it streams.
      (goto-char (point-max))
      (dolist (window (get-buffer-window-list buffer nil t))
        (set-window-point window (point-max)))
      (let* ((token (format "coderag-chat-%d" (cl-incf coderag-chat--count)))
             (history (vconcat coderag-chat--history))
             (pending (list :conn conn :id nil :token token :question text
                            :start (copy-marker (point-max)) :sources nil)))
        (setq coderag-chat--pending pending)
        (coderag--when-ready
         conn
         (lambda ()
           (when (eq (buffer-local-value 'coderag-chat--pending buffer) pending)
             (plist-put
              pending :id
              (coderag--send
               conn 'coderag/chat
               (append (list :question text :history history :token token)
                       place)
               :timeout coderag-chat-timeout
               :success (lambda (result)
                          (coderag-chat--finish buffer pending result nil))
               :error (lambda (err)
                        (coderag-chat--finish buffer pending nil
                                              (plist-get err :message)))
               :timeout-fn (lambda ()
                             (coderag-chat--finish
                              buffer pending nil
                              (format "no answer within %ss"
                                      coderag-chat-timeout)))))))
         (lambda (problem)
           (coderag-chat--finish buffer pending nil problem))))
      (display-buffer buffer))))

(cl-defmethod coderag--handle-notification
  (_conn (_method (eql coderag/chatDelta)) params)
  "Append the piece of answer in PARAMS to the chat buffer.
The last piece, marked done, carries the answer's sources."
  (let ((buffer (get-buffer coderag-chat-buffer-name)))
    (when buffer
      (with-current-buffer buffer
        (when (equal (plist-get params :token)
                     (plist-get coderag-chat--pending :token))
          (coderag-chat--insert (or (plist-get params :delta) ""))
          (when (eq (plist-get params :done) t)
            (plist-put coderag-chat--pending :sources
                       (plist-get params :sources))))))))

;;; Sources

(define-button-type 'coderag-source
  'action #'coderag-chat--push-source
  'follow-link t
  'help-echo "mouse-2, RET: visit this source")

(defun coderag-chat--file-sources (sources)
  "The SOURCES (a vector or list of plists) that are in local files."
  (cl-remove-if-not (lambda (source)
                      (and (consp source)
                           (coderag--uri-file (plist-get source :uri))
                           (stringp (plist-get source :label))))
                    (append sources nil)))

(defun coderag-chat--source-path (source)
  "The path of SOURCE, as its label writes it."
  (or (plist-get source :path)
      (replace-regexp-in-string ":[0-9]+\\(?:-[0-9]+\\)?\\'" ""
                                (plist-get source :label))))

(defun coderag-chat--source-lines (source)
  "The first and last lines of SOURCE, one-based: (FIRST . LAST)."
  (let ((range (plist-get source :range))
        (label (plist-get source :label)))
    (if range
        (cons (1+ (plist-get (plist-get range :start) :line))
              (1+ (plist-get (plist-get range :end) :line)))
      (if (string-match ":\\([0-9]+\\)\\(?:-\\([0-9]+\\)\\)?\\'" label)
          (let ((first (string-to-number (match-string 1 label))))
            (cons first (if (match-beginning 2)
                            (string-to-number (match-string 2 label))
                          first)))
        (cons 1 1)))))

(defun coderag-chat--linkify (start end sources)
  "Make the mentions of SOURCES between START and END buttons.
A mention is PATH:N or PATH:N-M, where PATH is the path of a source
and line N is one of its lines; its button visits line N."
  (let ((inhibit-read-only t))
    (save-excursion
      (dolist (source sources)
        (let ((lines (coderag-chat--source-lines source))
              (regexp (concat (regexp-quote (coderag-chat--source-path source))
                              ":\\([0-9]+\\)\\(?:-[0-9]+\\)?")))
          (goto-char start)
          (while (re-search-forward regexp end t)
            (let ((line (string-to-number (match-string 1))))
              (when (and (<= (car lines) line (cdr lines))
                         (not (button-at (match-beginning 0)))
                         ;; Not the end of a longer path or word.
                         (let ((before (char-before (match-beginning 0))))
                           (not (and before
                                     (string-match-p "[[:alnum:]_./\\-]"
                                                     (string before))))))
                (make-text-button (match-beginning 0) (match-end 0)
                                  'type 'coderag-source
                                  'coderag-source source
                                  'coderag-line line
                                  'font-lock-face 'button)))))))))

(defun coderag-chat--insert-sources (sources)
  "Append the list of SOURCES, as buttons, to the chat buffer."
  (coderag-chat--insert "\nSources:\n" 'coderag-chat-heading)
  (dolist (source sources)
    (coderag-chat--insert "- ")
    (let ((start (point-max))
          (inhibit-read-only t))
      (coderag-chat--insert (concat (plist-get source :label)
                                    (let ((title (plist-get source :title)))
                                      (if (and (stringp title)
                                               (not (string-empty-p title)))
                                          (concat " — " title)
                                        ""))))
      (make-text-button start (point-max)
                        'type 'coderag-source
                        'coderag-source source
                        'font-lock-face 'button))
    (coderag-chat--insert "\n")))

(defun coderag-chat--source-location (source &optional line)
  "The xref location of SOURCE, or of its LINE (one-based) if non-nil."
  (coderag--xref-location
   (plist-get source :uri)
   (if line
       (list :line (1- line) :character 0)
     (plist-get (plist-get source :range) :start))))

(defun coderag-chat--visit-source (source &optional line)
  "Visit SOURCE, at its LINE (one-based) if non-nil, in another window."
  (coderag--visit (or (coderag-chat--source-location source line)
                      (user-error "Not a local file: %s" (plist-get source :uri)))
                  t))

(defun coderag-chat--push-source (button)
  "Visit the source of BUTTON."
  (coderag-chat--visit-source (button-get button 'coderag-source)
                              (button-get button 'coderag-line)))

(defun coderag-visit-source ()
  "Visit a source of the last answer.
On a source's button in the chat buffer, visit that one; otherwise
choose one of the last answer's sources."
  (interactive)
  (let ((button (button-at (point))))
    (if (and button (button-get button 'coderag-source))
        (coderag-chat--push-source button)
      (let* ((sources (with-current-buffer (coderag-chat--existing-buffer)
                        coderag-chat--sources))
             (choices (mapcar (lambda (source)
                                (cons (concat (plist-get source :label)
                                              " — " (plist-get source :title))
                                      source))
                              sources)))
        (unless choices
          (user-error "The last answer has no sources"))
        (coderag-chat--visit-source
         (cdr (assoc (completing-read "Visit source: " choices nil t nil nil
                                      (caar choices))
                     choices)))))))

(defun coderag-chat--finish (buffer pending result problem)
  "End the answer PENDING in BUFFER with RESULT, or with PROBLEM."
  (when (buffer-live-p buffer)
    (with-current-buffer buffer
      (when (eq coderag-chat--pending pending)
        (setq coderag-chat--pending nil)
        (let* ((start (plist-get pending :start))
               (answer (or (plist-get result :answer)
                           (buffer-substring-no-properties start (point-max))))
               (stats (plist-get result :stats))
               (sources (coderag-chat--file-sources
                         (or (plist-get result :sources)
                             (plist-get pending :sources)))))
          (unless (equal answer (buffer-substring-no-properties start (point-max)))
            (let ((inhibit-read-only t))
              (delete-region start (point-max)))
            (coderag-chat--insert answer))
          (coderag-chat--linkify start (point-max) sources)
          (setq coderag-chat--sources sources)
          (unless (string-empty-p answer)
            (setq coderag-chat--history
                  (append coderag-chat--history
                          (list (list :role "user"
                                      :content (plist-get pending :question))
                                (list :role "assistant" :content answer)))))
          (coderag-chat--insert
           (if problem
               (format "\n\n[%s]\n" problem)
             (format "\n\n[%s tokens, %.1f s, %s]\n"
                     (plist-get stats :tokensGenerated)
                     (/ (+ (or (plist-get stats :timeToFirstTokenMs) 0)
                           (or (plist-get stats :generationMs) 0))
                        1000.0)
                     (plist-get stats :stopReason)))
           'coderag-chat-note)
          (when sources
            (coderag-chat--insert-sources sources)))))))

(defun coderag-chat--cancel ()
  "Tell the daemon to stop writing the pending answer, if any."
  (let ((pending coderag-chat--pending))
    (when (plist-get pending :id)
      (coderag--cancel (plist-get pending :conn) (plist-get pending :id)))))

(defun coderag-chat--existing-buffer ()
  "The chat buffer; a `user-error' if there is none."
  (or (get-buffer coderag-chat-buffer-name)
      (user-error "No coderag chat yet")))

(defun coderag-chat-stop ()
  "Stop the answer being written."
  (interactive)
  (with-current-buffer (coderag-chat--existing-buffer)
    (unless coderag-chat--pending
      (user-error "No answer is being written"))
    (coderag-chat--cancel)
    (coderag-chat--finish (current-buffer) coderag-chat--pending nil "stopped")))

(defun coderag-chat-new ()
  "Start a new conversation, forgetting the earlier questions and answers."
  (interactive)
  (with-current-buffer (coderag-chat--existing-buffer)
    (when coderag-chat--pending
      (coderag-chat-stop))
    (setq coderag-chat--history nil)
    (coderag-chat--insert "\n--- new conversation ---\n" 'coderag-chat-note)))

(provide 'coderag-chat)
;;; coderag-chat.el ends here
