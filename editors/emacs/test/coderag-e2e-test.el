;;; coderag-e2e-test.el --- The package in an interactive Emacs  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; End-to-end tests: an interactive Emacs (`emacs -nw', where idle
;; timers fire as they never do in batch) runs in a private tmux
;; server with the package loaded and `global-coderag-mode' on, against
;; the real daemon.  The tests type into it as a person does (`tmux
;; send-keys') and read what that person would see from its screen
;; (`tmux capture-pane', with colours).  What the screen cannot show,
;; such as the daemon's copy of a buffer, they ask that Emacs with
;; emacsclient.
;;
;; The daemon runs on the checkout's tiny model, or on the model that
;; $CODERAG_E2E_MODEL names: a GGUF file, or "default" for the daemon's
;; default model.  The sessions and the workspace go into
;; $CODERAG_E2E_DIR (default: a new temporary directory, removed at the
;; end), with the socket of the tmux server.  Run them with test.sh.

;;; Code:

(require 'coderag-test-support)

(defconst coderag-e2e--width 150
  "Columns of the screen.")

(defconst coderag-e2e--height 40
  "Lines of the screen.")

(defvar coderag-e2e--dir nil
  "The directory of the sessions and of the workspace.")

(defvar coderag-e2e--tmux nil
  "The socket of the private tmux server.")

(defvar coderag-e2e--workspace nil
  "The copy of the sample project that the shared session edits.")

(defvar coderag-e2e--shared nil
  "The session of the tests that share one Emacs and its daemon.")

(defvar coderag-e2e--screen-check nil
  "A function called with every screen captured, or nil.")

(cl-defstruct (coderag-e2e--session (:constructor coderag-e2e--make-session)
                                    (:copier nil))
  "An Emacs under test, in its own tmux session."
  (name nil :documentation "The tmux session's name.")
  (dir nil :documentation "Its init file, server socket and daemon pids.")
  (ghost nil :documentation "The colour of suggestions on its screen."))

(cl-defstruct (coderag-e2e--screen (:constructor coderag-e2e--make-screen)
                                   (:copier nil))
  "A capture of a session's screen."
  (rows nil :documentation "Its lines; each character's `fg', `bg' and
`underline' properties are the colours and underlining it is drawn with.")
  (x nil :documentation "The cursor's column.")
  (y nil :documentation "The cursor's line."))

;;; Sessions

(defun coderag-e2e--tmux (&rest args)
  "Run tmux with ARGS on the private server and return its output."
  (with-temp-buffer
    (let* ((coding-system-for-read 'utf-8-unix)
           (status (apply #'call-process "tmux" nil t nil "-S" coderag-e2e--tmux args)))
      (unless (eql status 0)
        (error "Failed: tmux %s: %s" (string-join args " ") (buffer-string)))
      (buffer-string))))

(defun coderag-e2e--setup ()
  "Make the directory and the workspace of the tests, once."
  (unless coderag-e2e--dir
    (let ((given (getenv "CODERAG_E2E_DIR")))
      (setq coderag-e2e--dir (file-name-as-directory
                              (file-truename (or given (make-temp-file "coderag-e2e" t))))
            coderag-e2e--tmux (expand-file-name "tmux" coderag-e2e--dir)
            coderag-e2e--workspace (coderag-test--make-workspace coderag-e2e--dir))
      (setenv "TMUX")
      (add-hook 'kill-emacs-hook (lambda () (coderag-e2e--clean-up (not given)))))))

(defun coderag-e2e--daemon-command ()
  "The daemon's command line, on the model of $CODERAG_E2E_MODEL."
  (let ((model (getenv "CODERAG_E2E_MODEL")))
    (append (list (coderag-test--python) "-m" "coderag_daemon" "--threads" "1"
                  "--max-completion-tokens" "16" "--preload-delay-ms" "100"
                  "--log-level" "INFO")
            (cond ((equal model "default") nil)
                  (model (list "--model" (expand-file-name model)))
                  (t (list "--model" (coderag-test--tiny-model)
                           "--n-ctx" "4096" "--context-tokens" "2500"))))))

(defun coderag-e2e--server (session)
  "The socket of SESSION's Emacs server."
  (expand-file-name "server/e2e" (coderag-e2e--session-dir session)))

(defun coderag-e2e--pids-file (session)
  "The file where SESSION's Emacs writes the pid of each daemon it starts."
  (expand-file-name "pids" (coderag-e2e--session-dir session)))

(defun coderag-e2e--init (session command start-timeout)
  "The init file of SESSION.
Its daemon command is COMMAND, its `coderag-start-timeout' START-TIMEOUT."
  `(progn
     (setq inhibit-startup-screen t
           server-socket-dir ,(file-name-directory (coderag-e2e--server session))
           server-name ,(file-name-nondirectory (coderag-e2e--server session)))
     (server-start)
     (require 'coderag)
     (setq coderag-daemon-command ',command
           coderag-start-timeout ,start-timeout
           coderag-request-timeout 60)
     (advice-add 'coderag--start :filter-return
                 (lambda (conn)
                   (write-region (format "%d\n" (process-id (coderag--process conn)))
                                 nil ,(coderag-e2e--pids-file session) t 'silent)
                   conn))
     (global-coderag-mode 1)))

(cl-defun coderag-e2e--start (name &key (command (coderag-e2e--daemon-command))
                                   (start-timeout 60))
  "Start an Emacs under test in tmux session NAME and return its session.
Its daemon command is COMMAND, its `coderag-start-timeout' START-TIMEOUT."
  (coderag-e2e--setup)
  (let* ((dir (file-name-as-directory (expand-file-name name coderag-e2e--dir)))
         (session (coderag-e2e--make-session :name name :dir dir))
         (init (expand-file-name "init.el" dir)))
    (make-directory dir t)
    (with-temp-file init
      (prin1 (coderag-e2e--init session command start-timeout) (current-buffer)))
    (coderag-e2e--tmux
     "new-session" "-d" "-s" name "-c" dir "-e" "LC_ALL=C.UTF-8"
     "-x" (number-to-string coderag-e2e--width) "-y" (number-to-string coderag-e2e--height)
     (mapconcat #'shell-quote-argument
                (list (expand-file-name invocation-name invocation-directory)
                      "-nw" "-Q" "-L" (file-name-directory (locate-library "coderag"))
                      "-l" init)
                " "))
    (coderag-e2e--wait session "Emacs to start"
                       (lambda (screen)
                         (and (coderag-e2e--mode-lines screen)
                              (file-exists-p (coderag-e2e--server session))
                              (ignore-errors (coderag-e2e--eval session t)))))
    (setf (coderag-e2e--session-ghost session)
          (coderag-e2e--eval session '(tty-color-translate
                                       (face-foreground 'coderag-suggestion nil t))))
    session))

(defun coderag-e2e--daemon-pids (session)
  "The daemons SESSION's Emacs started that still run."
  (let ((file (coderag-e2e--pids-file session)))
    (and (file-exists-p file)
         (cl-remove-if-not
          (lambda (pid)
            ;; Still the daemon: it runs in a directory of the tests.
            (let ((cwd (file-symlink-p (format "/proc/%d/cwd" pid))))
              (and cwd (string-prefix-p coderag-e2e--dir (file-name-as-directory cwd)))))
          (with-temp-buffer
            (insert-file-contents file)
            (mapcar #'string-to-number (split-string (buffer-string))))))))

(defun coderag-e2e--started (session)
  "How many daemons SESSION's Emacs started."
  (let ((file (coderag-e2e--pids-file session)))
    (if (file-exists-p file)
        (with-temp-buffer
          (insert-file-contents file)
          (count-lines (point-min) (point-max)))
      0)))

(defun coderag-e2e--stop (session)
  "End SESSION's Emacs and its daemons."
  (ignore-errors (coderag-e2e--tmux "kill-session" "-t" (coderag-e2e--session-name session)))
  (dolist (pid (coderag-e2e--daemon-pids session))
    (signal-process pid 'KILL)))

(defun coderag-e2e--clean-up (delete)
  "End every session and its daemons; DELETE the tests' directory if non-nil."
  (ignore-errors (coderag-e2e--tmux "kill-server"))
  (dolist (dir (directory-files coderag-e2e--dir t "\\`[^.]"))
    (when (file-exists-p (expand-file-name "init.el" dir))
      (coderag-e2e--stop (coderag-e2e--make-session :name "" :dir dir))))
  (when delete
    (delete-directory coderag-e2e--dir t)))

(defun coderag-e2e--shared ()
  "The session that several tests share, started on first use."
  (unless coderag-e2e--shared
    (setq coderag-e2e--shared (coderag-e2e--start "shared")))
  (let ((session coderag-e2e--shared))
    ;; Whatever the last test left: no minibuffer, one window.
    (when (coderag-e2e--eval session '(active-minibuffer-window))
      (coderag-e2e--keys session "C-g"))
    (coderag-e2e--keys session "C-x" "1")
    session))

(defun coderag-e2e--eval (session form)
  "The value of FORM, evaluated by SESSION's Emacs."
  (let ((file (expand-file-name "value.eld" (coderag-e2e--session-dir session))))
    (with-temp-buffer
      (unless (eql 0 (call-process
                      "emacsclient" nil t nil "-s" (coderag-e2e--server session) "--eval"
                      (prin1-to-string
                       `(let ((coding-system-for-write 'utf-8-emacs-unix)
                              (print-escape-control-characters t))
                          (write-region (prin1-to-string ,form) nil ,file nil 'silent)))))
        (error "Failed: emacsclient: %s" (buffer-string))))
    (with-temp-buffer
      (let ((coding-system-for-read 'utf-8-emacs-unix))
        (insert-file-contents file))
      (read (current-buffer)))))

(defmacro coderag-e2e--in-buffer (&rest body)
  "A form that runs BODY in the buffer of the selected window."
  `'(with-current-buffer (window-buffer (selected-window)) ,@body))

(defun coderag-e2e--keys (session &rest keys)
  "Press KEYS (tmux key names) in SESSION."
  (apply #'coderag-e2e--tmux "send-keys" "-t" (coderag-e2e--session-name session) keys))

(defun coderag-e2e--type (session text)
  "Type TEXT in SESSION."
  (coderag-e2e--tmux "send-keys" "-t" (coderag-e2e--session-name session) "-l" "--" text))

;;; The screen

(defun coderag-e2e--parse-row (line)
  "LINE of `tmux capture-pane -e' as text whose characters carry their colours."
  (let ((start 0) (fg nil) (bg nil) (underline nil) (row ""))
    (while (string-match "\e\\[\\([0-9;]*\\)m" line start)
      (setq row (concat row (propertize (substring line start (match-beginning 0))
                                        'fg fg 'bg bg 'underline underline))
            start (match-end 0))
      (let ((codes (mapcar #'string-to-number (split-string (match-string 1 line) ";"))))
        (while codes
          (let ((code (pop codes)))
            (cond
             ((eql code 0) (setq fg nil bg nil underline nil))
             ((eql code 4) (setq underline t))
             ((eql code 24) (setq underline nil))
             ((<= 30 code 37) (setq fg (- code 30)))
             ((<= 90 code 97) (setq fg (- code 82)))
             ((eql code 39) (setq fg nil))
             ((<= 40 code 47) (setq bg (- code 40)))
             ((<= 100 code 107) (setq bg (- code 92)))
             ((eql code 49) (setq bg nil))
             ((memq code '(38 48))
              (let ((colour (if (eql (pop codes) 5)
                                (pop codes)
                              (list (pop codes) (pop codes) (pop codes)))))
                (if (eql code 38) (setq fg colour) (setq bg colour)))))))))
    (concat row (propertize (substring line start) 'fg fg 'bg bg 'underline underline))))

(defun coderag-e2e--capture (session)
  "A capture of SESSION's screen."
  (let* ((target (coderag-e2e--session-name session))
         (lines (split-string (coderag-e2e--tmux "capture-pane" "-p" "-e" "-N" "-t" target
                                                 ";" "display-message" "-p" "-t" target
                                                 "#{cursor_x} #{cursor_y}")
                              "\n"))
         (cursor (mapcar #'string-to-number
                         (split-string (nth coderag-e2e--height lines))))
         (screen (coderag-e2e--make-screen
                  :rows (mapcar (lambda (line)
                                  ;; Blank to the end of the line.
                                  (let ((row (coderag-e2e--parse-row line)))
                                    (concat row (make-string (max 0 (- coderag-e2e--width
                                                                       (string-width row)))
                                                             ?\s))))
                                (cl-subseq lines 0 coderag-e2e--height))
                  :x (car cursor) :y (cadr cursor))))
    (when coderag-e2e--screen-check
      (funcall coderag-e2e--screen-check screen))
    screen))

(defun coderag-e2e--text (screen)
  "The text of SCREEN, for a failure's explanation."
  (mapconcat (lambda (row) (string-trim-right (substring-no-properties row)))
             (coderag-e2e--screen-rows screen) "\n"))

(defun coderag-e2e--wait (session what predicate &optional seconds)
  "Capture SESSION's screen until PREDICATE returns non-nil for it; return that.
Fail after SECONDS (default 120), naming WHAT and showing the screen."
  (let ((deadline (+ (float-time) (or seconds 120)))
        screen value)
    (while (not (setq value (funcall predicate (setq screen (coderag-e2e--capture session)))))
      (when (> (float-time) deadline)
        (ert-fail (format "Timed out waiting for %s; the screen:\n%s"
                          what (coderag-e2e--text screen))))
      (sleep-for 0.05))
    value))

(defun coderag-e2e--row (screen &optional y)
  "Line Y of SCREEN, by default the cursor's."
  (nth (or y (coderag-e2e--screen-y screen)) (coderag-e2e--screen-rows screen)))

(defun coderag-e2e--before-cursor (screen)
  "The text of the cursor's line before the cursor."
  (substring-no-properties (coderag-e2e--row screen) 0 (coderag-e2e--screen-x screen)))

(defun coderag-e2e--mode-lines (screen)
  "The mode lines of SCREEN: the lines drawn on a background, with their index."
  (cl-loop for row in (coderag-e2e--screen-rows screen)
           for y from 0
           when (and (> (length row) 0) (get-text-property 0 'bg row))
           collect (cons y (substring-no-properties row))))

(defun coderag-e2e--lighter (screen file)
  "The state that the mode line of FILE's window on SCREEN shows."
  (cl-loop for (_ . line) in (coderag-e2e--mode-lines screen)
           when (and (string-search (file-name-nondirectory file) line)
                     (string-match "coderag\\[\\([^]]*\\)\\]" line))
           return (match-string 1 line)))

(defun coderag-e2e--echo-area (screen)
  "The text of the echo area of SCREEN, its lines joined."
  (let ((last (car (last (coderag-e2e--mode-lines screen)))))
    (mapconcat (lambda (row) (string-trim-right (substring-no-properties row) "[ \\\\]+"))
               (nthcdr (1+ (car last)) (coderag-e2e--screen-rows screen)) "")))

(defun coderag-e2e--glyphs (text)
  "How the screen shows the start of TEXT: a string for each character.
Its first line up to the first character other than printable ASCII,
a control character (shown as ^X) or U+FFFD: a terminal may see the
width of others otherwise than Emacs."
  (let ((glyphs nil))
    (catch 'done
      (dolist (char (string-to-list text))
        (push (cond ((or (<= 32 char 126) (eql char #xFFFD)) (string char))
                    ((and (or (< char 32) (eql char 127)) (not (memq char '(?\n ?\t))))
                     (string ?^ (logxor char 64)))
                    (t (throw 'done nil)))
              glyphs)))
    (nreverse glyphs)))

(defun coderag-e2e--shown (text)
  "The start of TEXT as the screen shows it; see `coderag-e2e--glyphs'."
  (apply #'concat (coderag-e2e--glyphs text)))

(defun coderag-e2e--ghost-cells (session screen)
  "The characters of SCREEN from the cursor on in SESSION's suggestion colour."
  (let ((colour (coderag-e2e--session-ghost session))
        (x (coderag-e2e--screen-x screen)))
    (cl-loop for row in (nthcdr (coderag-e2e--screen-y screen) (coderag-e2e--screen-rows screen))
             for from = x then 0
             nconc (cl-loop for i from from below (length row)
                            when (equal (get-text-property i 'fg row) colour)
                            collect (aref row i)))))

(defun coderag-e2e--suggestion (session)
  "The suggestion in SESSION's current buffer, and that buffer.
A list (TEXT LINE-BEFORE-POINT BUFFER-TEXT POINT); TEXT is nil
without a suggestion."
  (coderag-e2e--eval session (coderag-e2e--in-buffer
                              (list (and coderag--suggestion
                                         (overlay-get coderag--suggestion 'coderag-text))
                                    (buffer-substring-no-properties (line-beginning-position)
                                                                    (point))
                                    (buffer-substring-no-properties (point-min) (point-max))
                                    (point)))))

(defun coderag-e2e--check-ghost (session screen ghost before)
  "Check that SCREEN shows GHOST at the cursor, after BEFORE on its line."
  (let ((x (coderag-e2e--screen-x screen))
        (row (coderag-e2e--row screen)))
    (should (equal (coderag-e2e--before-cursor screen) before))
    ;; Up to the end of the screen's line.
    (dolist (glyph (coderag-e2e--glyphs ghost))
      (when (< (+ x (length glyph)) coderag-e2e--width)
        (should (equal (substring-no-properties row x (+ x (length glyph))) glyph))
        ;; Drawn as a suggestion, not as text (control characters have a
        ;; face of their own).
        (when (and (= (length glyph) 1) (not (equal glyph " ")))
          (should (equal (get-text-property x 'fg row)
                         (coderag-e2e--session-ghost session)))))
      (setq x (+ x (length glyph))))))

(defun coderag-e2e--await-suggestion (session attempts)
  "Type the strings of ATTEMPTS in SESSION until a suggestion is shown.
One that starts with two printable characters, which can be typed
and checked on the screen.  Return (TEXT SCREEN) of that suggestion."
  (catch 'shown
    (dolist (typed attempts)
      (coderag-e2e--type session typed)
      (let* ((screen (coderag-e2e--wait
                      session "a suggestion after typing"
                      (lambda (screen)
                        (and (string-suffix-p typed (coderag-e2e--before-cursor screen))
                             (coderag-e2e--ghost-cells session screen)
                             screen))))
             (state (coderag-e2e--suggestion session))
             (text (car state)))
        (should text)
        (coderag-e2e--check-ghost session screen text (nth 1 state))
        (when (and (>= (length text) 2) (<= 32 (aref text 0) 126) (<= 32 (aref text 1) 126))
          (throw 'shown (list text screen)))))
    (ert-fail "No suggestion started with two printable characters")))

(defun coderag-e2e--visit (session file &optional text)
  "Visit FILE of the workspace in SESSION; write TEXT to it first if non-nil.
Wait until its mode line shows a daemon ready for it."
  (let ((path (expand-file-name file coderag-e2e--workspace)))
    (when text
      (let ((coding-system-for-write 'utf-8-unix))
        (write-region text nil path)))
    (coderag-e2e--keys session "C-x" "C-f" "C-a" "C-k")
    (coderag-e2e--type session path)
    (coderag-e2e--keys session "Enter")
    (coderag-e2e--wait session (format "%s to open on a ready daemon" file)
                       (lambda (screen)
                         (string-prefix-p "ready" (or (coderag-e2e--lighter screen path) ""))))))

(defun coderag-e2e--synced (session)
  "Check that the daemon's copy of the buffer in SESSION is the buffer's text."
  (pcase-let ((`(,text ,version ,daemon-text ,daemon-version)
               (coderag-e2e--eval
                session
                (coderag-e2e--in-buffer
                 (let ((copy (jsonrpc-request coderag--conn 'coderag/documentText
                                              (list :uri coderag--document-uri)
                                              :timeout 30)))
                   (list (coderag--text) coderag--version
                         (plist-get copy :text) (plist-get copy :version)))))))
    (should (equal daemon-text text))
    (should (eql daemon-version version))
    text))

;;; Suggestions

(ert-deftest coderag-e2e-suggestion-appears-follows-typing-and-is-accepted ()
  (let ((session (coderag-e2e--shared)))
    (coderag-e2e--visit session "tasktrack/ledger.py"
                        "def total(entries):\n    result = sum(entries)\n")
    (coderag-e2e--keys session "M->")
    (pcase-let* ((`(,ghost ,screen) (coderag-e2e--await-suggestion
                                     session '("total = " "x" "q" "w" "y")))
                 (x (coderag-e2e--screen-x screen))
                 (before (coderag-e2e--before-cursor screen))
                 (typed (substring ghost 0 1))
                 (other (if (eql (aref ghost 1) ?z) "q" "z")))
      ;; Typing its first character keeps the rest shown, after it.
      (coderag-e2e--type session typed)
      (coderag-e2e--check-ghost
       session
       (coderag-e2e--wait session "the cursor to move"
                          (lambda (screen)
                            (and (= (coderag-e2e--screen-x screen) (1+ x)) screen)))
       (substring ghost 1) (concat before typed))
      ;; Typing something else drops it.  A new one waits for Emacs to be
      ;; idle long enough for this screen to be read first.
      (let ((delay (coderag-e2e--eval session 'coderag-idle-delay)))
        (coderag-e2e--eval session '(setq coderag-idle-delay 3))
        (unwind-protect
            (progn
              (coderag-e2e--type session other)
              (let ((screen (coderag-e2e--wait session "the other character"
                                               (lambda (screen)
                                                 (and (= (coderag-e2e--screen-x screen) (+ x 2))
                                                      screen)))))
                (should (equal (coderag-e2e--before-cursor screen) (concat before typed other)))
                (should-not (coderag-e2e--ghost-cells session screen))))
          (coderag-e2e--eval session `(setq coderag-idle-delay ,delay))))
      ;; A new one comes; TAB inserts it.
      (coderag-e2e--wait session "a new suggestion"
                         (lambda (screen) (coderag-e2e--ghost-cells session screen)))
      (pcase-let* ((`(,ghost ,_ ,text ,point) (coderag-e2e--suggestion session))
                   (accepted (concat (substring text 0 (1- point)) ghost
                                     (substring text (1- point))))
                   (last-line (car (last (split-string ghost "\n")))))
        (coderag-e2e--keys session "Tab")
        (coderag-e2e--wait session "the suggestion to be inserted"
                           (lambda (_) (equal (nth 2 (coderag-e2e--suggestion session))
                                              accepted)))
        (should (equal (coderag-e2e--synced session) accepted))
        ;; On the screen, as text now, not as a suggestion.
        (when (equal (coderag-e2e--shown last-line) last-line)
          (let* ((screen (coderag-e2e--capture session))
                 (row (coderag-e2e--row screen))
                 (x (coderag-e2e--screen-x screen)))
            (should (string-suffix-p last-line (coderag-e2e--before-cursor screen)))
            (dotimes (i (length last-line))
              (should-not (equal (get-text-property (- x 1 i) 'fg row)
                                 (coderag-e2e--session-ghost session))))))))))

(ert-deftest coderag-e2e-partial-word-is-shown-once ()
  ;; A function being written at the end of the sample project's
  ;; auth.py, alone in its daemon's context.
  (let* ((session (coderag-e2e--start "partial-word"))
         (row nil)
         (coderag-e2e--screen-check
          (lambda (screen)
            ;; On every screen: the word being typed is never there twice,
            ;; as a suggestion that writes it again would show it.
            (when row
              (let ((line (string-trim-right (substring-no-properties
                                              (coderag-e2e--row screen row)))))
                (when (string-match-p "ret\\s-*ret" line)
                  (ert-fail (format "The typed word shows twice: %S" line))))))))
    (unwind-protect
        (progn
          (coderag-e2e--visit session "tasktrack/auth.py"
                              (with-temp-buffer
                                (insert-file-contents
                                 (expand-file-name "fixtures/sample_project/tasktrack/auth.py"
                                                   coderag-test--repo))
                                (goto-char (point-max))
                                (insert "\n\ndef token_is_expired(token, now):")
                                (buffer-string)))
          (coderag-e2e--keys session "M->" "Enter")
          (setq row (coderag-e2e--wait session "the new indented line"
                                       (lambda (screen)
                                         (and (equal (coderag-e2e--before-cursor screen) "    ")
                                              (coderag-e2e--screen-y screen)))))
          (coderag-e2e--type session "ret")
          (let* ((screen (coderag-e2e--wait session "a suggestion"
                                            (lambda (screen)
                                              (and (equal (coderag-e2e--before-cursor screen)
                                                          "    ret")
                                                   (coderag-e2e--ghost-cells session screen)
                                                   screen))))
                 (state (coderag-e2e--suggestion session)))
            (should (equal (nth 1 state) "    ret"))
            (coderag-e2e--check-ghost session screen (car state) "    ret")
            ;; And the screens after.
            (dotimes (_ 10)
              (coderag-e2e--capture session)
              (sleep-for 0.05))))
      (coderag-e2e--stop session))))

;;; Chat

(defun coderag-e2e--ask (session question &optional follow-up)
  "Ask QUESTION in SESSION with \\[execute-extended-command] coderag-ask.
If FOLLOW-UP, with \\<coderag-chat-mode-map>\\[coderag-ask] in the chat."
  (if follow-up
      (coderag-e2e--keys session "C-c" "C-c")
    (coderag-e2e--keys session "M-x")
    (coderag-e2e--type session "coderag-ask")
    (coderag-e2e--keys session "Enter"))
  (coderag-e2e--wait session "the question's prompt"
                     (lambda (screen)
                       (string-prefix-p "Ask coderag:" (coderag-e2e--echo-area screen))))
  (coderag-e2e--type session question)
  (coderag-e2e--keys session "Enter"))

(defun coderag-e2e--answer (screen question)
  "The lines of SCREEN under the answer to QUESTION, if they show."
  (let* ((rows (mapcar (lambda (row) (string-trim-right (substring-no-properties row)))
                       (coderag-e2e--screen-rows screen)))
         (asked (cl-position question rows :test #'equal :from-end t))
         (heading (and asked (cl-position "## Answer" rows :test #'equal :start asked))))
    (when heading
      (cl-subseq rows (1+ heading)
                 (car (cl-find-if (lambda (line) (> (car line) heading))
                                  (coderag-e2e--mode-lines screen)))))))

(defun coderag-e2e--index-ready (session)
  "Wait until the daemon of SESSION's current buffer has indexed the workspace."
  (coderag-e2e--wait
   session "the workspace index"
   (lambda (_)
     (not (eq t (coderag-e2e--eval
                 session (coderag-e2e--in-buffer
                          (plist-get (jsonrpc-request coderag--conn 'coderag/search
                                                      '(:query "index") :timeout 30)
                                     :indexing))))))))

(ert-deftest coderag-e2e-chat-streams-lists-sources-and-stops ()
  (let ((session (coderag-e2e--shared)))
    (coderag-e2e--visit session "tasktrack/api.py")
    (coderag-e2e--index-ready session)
    (coderag-e2e--ask session "What does reconcile_quokka_ledger do?")
    ;; The source is a button.
    (let ((source (coderag-e2e--wait
                   session "the answer's sources"
                   (lambda (screen)
                     (cl-find-if (lambda (row) (string-prefix-p "- tasktrack/quokka.py:13-" row))
                                 (coderag-e2e--screen-rows screen))))))
      (should (get-text-property 2 'underline source)))
    ;; RET on it visits it.
    (coderag-e2e--keys session "C-x" "o" "C-r")
    (coderag-e2e--type session "tasktrack/quokka.py:13-")
    (coderag-e2e--keys session "Enter" "Enter")
    (coderag-e2e--wait session "the source's first line"
                       (lambda (screen)
                         (and (= (coderag-e2e--screen-x screen) 0)
                              (string-prefix-p "def reconcile_quokka_ledger("
                                               (substring-no-properties
                                                (coderag-e2e--row screen))))))
    ;; A follow-up question in the chat: its answer is seen as it
    ;; streams, and C-c C-k stops it.  The tiny model's answers are short
    ;; or long by chance: ask until one is still being written when seen.
    (coderag-e2e--keys session "C-x" "o")
    (should
     (cl-loop
      for question in '("Explain everything in detail." "How are tasks stored?"
                        "What does the scheduler do?" "Which errors can the API return?"
                        "Summarise each module.")
      thereis
      (progn
        (coderag-e2e--ask session question t)
        (and (eq 'streaming
                 (coderag-e2e--wait
                  session "the answer"
                  (lambda (screen)
                    (let ((answer (coderag-e2e--answer screen question)))
                      (cond ((cl-some (lambda (line) (string-prefix-p "[" line)) answer)
                             'written)
                            ((cl-some (lambda (line) (not (string-empty-p line))) answer)
                             'streaming))))))
             (progn
               (coderag-e2e--keys session "C-c" "C-k")
               (eq 'stopped
                   (coderag-e2e--wait
                    session "the answer to stop"
                    (lambda (screen)
                      (cond ((cl-some (lambda (row) (string-prefix-p "[stopped]" row))
                                      (coderag-e2e--screen-rows screen))
                             'stopped)
                            ((string-search "No answer is being written"
                                            (coderag-e2e--echo-area screen))
                             'written))))))))))
    ;; Nothing comes after.
    (let ((chat (coderag-e2e--eval session '(with-current-buffer "*coderag-chat*"
                                               (buffer-string)))))
      (should (string-suffix-p "[stopped]\n" chat))
      (sleep-for 0.5)
      (should (equal (coderag-e2e--eval session '(with-current-buffer "*coderag-chat*"
                                                    (buffer-string)))
                     chat)))))

;;; The daemon's life

(ert-deftest coderag-e2e-mode-line-and-a-daemon-killed-from-outside ()
  (let* ((session (coderag-e2e--shared))
         (file (expand-file-name "tasktrack/storage.py" coderag-e2e--workspace))
         (pid-form (coderag-e2e--in-buffer (process-id (coderag--process coderag--conn)))))
    (coderag-e2e--visit session "tasktrack/storage.py")
    (let ((pid (coderag-e2e--eval session pid-form)))
      (signal-process pid 'KILL)
      (coderag-e2e--wait session "the message, and no daemon on the mode line"
                         (lambda (screen)
                           (and (string-match-p "exited (signal 9.*restarting it"
                                                (coderag-e2e--echo-area screen))
                                (member (coderag-e2e--lighter screen file)
                                        '("off" "starting" "loading")))))
      (coderag-e2e--wait session "a new daemon"
                         (lambda (screen)
                           (string-match-p "\\`ready [0-9.]+k?\\'"
                                           (or (coderag-e2e--lighter screen file) ""))))
      (should-not (eql pid (coderag-e2e--eval session pid-form))))
    (coderag-e2e--keys session "M->")
    (coderag-e2e--await-suggestion session '("x = " "y" "z" "q"))
    (coderag-e2e--wait session "the latency on the mode line"
                       (lambda (screen)
                         (string-match-p "\\`\\(ready\\|preloading\\|busy\\) [0-9.]+k? [0-9.]+m?s\\'"
                                         (or (coderag-e2e--lighter screen file) ""))))))

;;; Daemons that cannot start

(defun coderag-e2e--script (file body)
  "Make FILE an executable shell script running BODY."
  (make-directory (file-name-directory file) t)
  (with-temp-file file
    (insert "#!/bin/sh\n" body "\n"))
  (set-file-modes file #o755))

(defun coderag-e2e--messages (session)
  "The lines of SESSION's *Messages*."
  (split-string (coderag-e2e--eval session '(with-current-buffer "*Messages*"
                                              (buffer-string)))
                "\n" t))

(defun coderag-e2e--check-one-message (session)
  "Check that SESSION's Emacs said one thing about its daemon, and no error."
  (let ((lines (coderag-e2e--messages session)))
    (should (= 1 (cl-count-if (lambda (line) (string-prefix-p "coderag: " line)) lines)))
    (should-not (cl-find-if (lambda (line) (string-match-p "[Ee]rror\\|[Ww]arning\\|jsonrpc" line))
                            (cl-remove-if (lambda (line) (string-prefix-p "coderag: " line))
                                          lines)))))

(defun coderag-e2e--broken-daemon (name body failure &optional start-timeout)
  "Check an Emacs whose daemon command is script BODY, or missing if nil.
NAME names its session; FAILURE is a regexp of the message that
says what is wrong; START-TIMEOUT is `coderag-start-timeout'."
  (let* ((dir (expand-file-name name (progn (coderag-e2e--setup) coderag-e2e--dir)))
         (program (expand-file-name "bin/coderag-daemon" dir))
         (file (expand-file-name "project/a.py" dir))
         (session (coderag-e2e--start name :command (list program)
                                      :start-timeout (or start-timeout 60))))
    (unwind-protect
        (progn
          (make-directory (file-name-directory file) t)
          (with-temp-file file
            (insert "def f():\n    return 1\n"))
          (when body
            (coderag-e2e--script program body))
          (coderag-e2e--keys session "C-x" "C-f" "C-a" "C-k")
          (coderag-e2e--type session file)
          (coderag-e2e--keys session "Enter")
          (when start-timeout
            ;; While the daemon does not answer, Emacs does.
            (coderag-e2e--wait session "the start" (lambda (screen)
                                                     (equal (coderag-e2e--lighter screen file)
                                                            "starting")))
            (coderag-e2e--keys session "C-n" "C-n")
            (coderag-e2e--type session "x = 1")
            (coderag-e2e--wait session "the typed text"
                               (lambda (screen)
                                 (and (equal (coderag-e2e--before-cursor screen) "x = 1")
                                      (equal (coderag-e2e--lighter screen file) "starting")))))
          (coderag-e2e--wait session "the message"
                             (lambda (screen)
                               (string-match-p failure (coderag-e2e--echo-area screen))))
          (coderag-e2e--wait session "the failure on the mode line"
                             (lambda (screen) (equal (coderag-e2e--lighter screen file) "failed")))
          (coderag-e2e--check-one-message session)
          ;; An editor still: typing works, and tries the daemon again, quietly.
          (unless start-timeout
            (coderag-e2e--keys session "C-n" "C-n"))
          (let ((starts (coderag-e2e--started session)))
            (coderag-e2e--keys session "Enter")
            (coderag-e2e--type session "y = 2")
            (coderag-e2e--wait session "the typed text"
                               (lambda (screen)
                                 (equal (coderag-e2e--before-cursor screen) "y = 2")))
            (when body
              (coderag-e2e--wait session "another try"
                                 (lambda (_) (> (coderag-e2e--started session) starts)))
              (coderag-e2e--wait session "its failure"
                                 (lambda (screen) (equal (coderag-e2e--lighter screen file)
                                                         "failed")))))
          (coderag-e2e--check-one-message session)
          ;; Once the daemon is there, the next edit starts it.
          (coderag-e2e--script program (concat "exec "
                                               (mapconcat #'shell-quote-argument
                                                          (coderag-e2e--daemon-command) " ")
                                               " \"$@\""))
          (coderag-e2e--keys session "Enter")
          (coderag-e2e--type session "z = ")
          (coderag-e2e--wait session "a suggestion from the daemon"
                             (lambda (screen) (coderag-e2e--ghost-cells session screen)))
          (coderag-e2e--wait session "the daemon on the mode line"
                             (lambda (screen)
                               (string-match-p "\\`\\(ready\\|preloading\\|busy\\) "
                                               (or (coderag-e2e--lighter screen file) ""))))
          (should (cl-find-if (lambda (line) (string-match-p "\\`coderag: .* is running\\'" line))
                              (coderag-e2e--messages session))))
      (coderag-e2e--stop session))))

(ert-deftest coderag-e2e-missing-daemon ()
  (coderag-e2e--broken-daemon "missing" nil "coderag: daemon command `.*' not found"))

(ert-deftest coderag-e2e-daemon-that-exits-at-start ()
  (coderag-e2e--broken-daemon "exits" "echo 'no model here' >&2; exit 1"
                              "failed to start (exit status 1: no model here)"))

(ert-deftest coderag-e2e-daemon-that-never-answers ()
  (coderag-e2e--broken-daemon "silent" "exec sleep 600"
                              "did not answer within 5s" 5))

(provide 'coderag-e2e-test)
;;; coderag-e2e-test.el ends here
