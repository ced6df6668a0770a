;;; coderag-latency.el --- Keystroke to suggestion in an interactive Emacs  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; For `coderag-daemon bench editors': an interactive Emacs (`emacs -nw'
;; in tmux, as the end-to-end tests drive it) visits a file of the whole
;; sample project with `global-coderag-mode' on, against the daemon as a
;; user runs it (no test flags).  Once the daemon has the file cached,
;; each trial moves to a line, writes what the trial starts from, waits
;; until the daemon is idle, types a few characters key by key and times
;; from the last key sent to the suggestion's colour on the screen
;; (`tmux capture-pane -e').  Then it puts the text back as it was.
;;
;; The plan (file, trials, timeout) comes from $CODERAG_LATENCY_PLAN;
;; each trial goes to $CODERAG_LATENCY_OUT as a JSON line.  The model is
;; $CODERAG_E2E_MODEL's, as in the end-to-end tests.  Run it with
;; bench-latency.sh.

;;; Code:

(require 'json)
(require 'coderag-e2e-test)

(defconst coderag-latency--quiet 1.0
  "Seconds the daemon stays ready and asked nothing before a trial types.
Longer than its preload delay, so that it holds the text as it is.")

(defun coderag-latency--daemon-command ()
  "The daemon's command line as a user has it, on $CODERAG_E2E_MODEL's model."
  (let ((model (getenv "CODERAG_E2E_MODEL")))
    (append (list (coderag-test--python) "-m" "coderag_daemon" "--log-level" "INFO")
            (cond ((equal model "default") nil)
                  (model (list "--model" (expand-file-name model)))
                  (t (list "--model" (coderag-test--tiny-model)))))))

(defun coderag-latency--cached (session)
  "Wait until the daemon of SESSION's buffer holds all of its files.
Asked without waiting for the answer, read at the next look: a
request that waits, in `emacsclient', may leave the mode line busy."
  (coderag-e2e--wait
   session "the file cached"
   (lambda (_)
     (sleep-for 1)
     (coderag-e2e--eval
      session (coderag-e2e--in-buffer
               (let ((files (plist-get (get 'coderag-latency 'context) :files)))
                 (coderag--send coderag--conn 'coderag/context (make-hash-table)
                                :success (lambda (result) (put 'coderag-latency 'context result)))
                 (and (> (length files) 0)
                      (cl-every (lambda (file) (eq (plist-get file :cached) t)) files))))))
   600))

(defun coderag-latency--idle (session)
  "Wait until SESSION's daemon is ready and nothing is asked of it, for a while."
  (let ((since nil))
    (coderag-e2e--wait
     session "the daemon to be idle"
     (lambda (_)
       (let ((idle (coderag-e2e--eval
                    session (coderag-e2e--in-buffer
                             (and (equal (plist-get (coderag--status coderag--conn) :state) "ready")
                                  (not coderag--request)
                                  (not coderag--idle-timer))))))
         (setq since (and idle (or since (float-time))))
         (and since (>= (- (float-time) since) coderag-latency--quiet))))
     300)))

(defun coderag-latency--ghost-shown (session screen)
  "Whether SCREEN shows SESSION's suggestion colour on the cursor's line or below.
Anywhere on the line: with text after point, Emacs may draw the
cursor after the suggestion rather than on its first character."
  (let ((colour (coderag-e2e--session-ghost session))
        (end (or (car (cl-find-if (lambda (line) (>= (car line) (coderag-e2e--screen-y screen)))
                                  (coderag-e2e--mode-lines screen)))
                 coderag-e2e--height)))
    (cl-loop for row in (cl-subseq (coderag-e2e--screen-rows screen) (coderag-e2e--screen-y screen) end)
             thereis (cl-loop for i below (length row)
                              thereis (equal (get-text-property i 'fg row) colour)))))

(defun coderag-latency--trial (session scenario plan)
  "Run SCENARIO of PLAN in SESSION; return the trial as an alist."
  (let-alist scenario
    (coderag-e2e--eval
     session `(with-current-buffer (window-buffer (selected-window))
                (coderag-dismiss)
                (goto-char (point-min))
                (forward-line ,.line)
                (forward-char ,.column)
                (delete-char ,(length .remove))
                (insert ,.insert)))
    (coderag-latency--idle session)
    (let* ((keys (mapcar #'string (string-to-list .typed)))
           (delay (/ (alist-get 'keyDelayMs plan) 1000.0))
           (deadline nil) (key nil) (shown nil) (through nil))
      (dolist (char (butlast keys))
        (coderag-e2e--type session char)
        (sleep-for delay))
      ;; The last key types through the suggestion shown: Emacs keeps the rest.
      (setq through (string-prefix-p (car (last keys))
                                     (or (car (coderag-e2e--suggestion session)) "")))
      (let* ((screen (coderag-e2e--capture session))
             (cursor (list (coderag-e2e--screen-x screen) (coderag-e2e--screen-y screen))))
        (setq key (float-time))
        (coderag-e2e--type session (car (last keys)))
        (setq deadline (+ key (/ (alist-get 'timeoutMs plan) 1000.0)))
        ;; Shown: the key has moved the cursor (a block's suggestion may take it to the next line), and
        ;; the suggestion's colour is on the screen.
        ;; A capture starts a tmux process: polling without a pause would keep a core busy and slow
        ;; the daemon it measures (20 ms apart costs at most 20 ms of resolution).
        (while (and (not shown) (< (float-time) deadline))
          (sleep-for 0.02)
          (setq screen (coderag-e2e--capture session))
          (when (and (not (equal cursor (list (coderag-e2e--screen-x screen) (coderag-e2e--screen-y screen))))
                     (coderag-latency--ghost-shown session screen))
            (setq shown (float-time))))
        (unless shown
          (message "No suggestion on the screen after %s:\n%s" .typed (coderag-e2e--text screen))))
      (pcase-let* ((`(,text ,before ,_ ,_) (coderag-e2e--suggestion session))
                   (after (coderag-e2e--eval session (coderag-e2e--in-buffer
                                                      (buffer-substring-no-properties
                                                       (point) (line-end-position)))))
                   (last (coderag-e2e--eval session (coderag-e2e--in-buffer
                                                     (plist-get (coderag--status coderag--conn)
                                                                :lastRequest)))))
        `((scenario . ,.name) (kind . ,.kind) (typed . ,.typed)
          (latencyMs . ,(and shown (round (* 1000 (- shown key)))))
          (typedThrough . ,(if (and shown through) t :json-false))
          (lines . ,(length (split-string (string-trim-right (or text "")) "\n")))
          (suggestion . ,(or text ""))
          (lineBefore . ,before) (textAfter . ,after)
          (daemon . ,(or last :null)))))))

(defun coderag-latency--restore (session original)
  "Make the text of SESSION's buffer ORIGINAL again, changing only what differs."
  (coderag-e2e--eval
   session `(with-current-buffer (window-buffer (selected-window))
              (coderag-dismiss)
              (let ((source (generate-new-buffer " *original*")))
                (with-current-buffer source
                  (insert ,original))
                (replace-buffer-contents source)
                (kill-buffer source))
              (set-buffer-modified-p nil))))

(defun coderag-latency-run ()
  "Run the plan of $CODERAG_LATENCY_PLAN; write the trials to $CODERAG_LATENCY_OUT."
  (let* ((plan (json-read-file (getenv "CODERAG_LATENCY_PLAN")))
         (out (getenv "CODERAG_LATENCY_OUT"))
         (file (alist-get 'file plan))
         (scenarios (append (alist-get 'scenarios plan) nil))
         (original (with-temp-buffer
                     (insert-file-contents (expand-file-name (concat "fixtures/sample_project/" file)
                                                             coderag-test--repo))
                     (buffer-string)))
         (session (coderag-e2e--start "latency" :command (coderag-latency--daemon-command)
                                      :start-timeout 300)))
    (unwind-protect
        (progn
          (coderag-e2e--visit session file original)
          (coderag-latency--cached session)
          (coderag-latency--idle session)
          (cl-loop
           for scenario in scenarios
           for index from 0
           do (let ((trial (cons (cons 'trial index)
                                 (coderag-latency--trial session scenario plan))))
                (let ((coding-system-for-write 'utf-8-unix))
                  (write-region (concat (json-encode trial) "\n") nil out t 'silent))
                (message "emacs %d/%d %s: %s, %d line(s) %S" (1+ index) (length scenarios)
                         (alist-get 'scenario trial)
                         (if (alist-get 'latencyMs trial)
                             (format "%d ms" (alist-get 'latencyMs trial))
                           "none")
                         (alist-get 'lines trial) (alist-get 'suggestion trial))
                (coderag-latency--restore session original)
                (coderag-latency--idle session))))
      (coderag-e2e--stop session))))

(provide 'coderag-latency)
;;; coderag-latency.el ends here
