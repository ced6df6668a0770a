;;; coderag-connection.el --- Daemon processes for coderag  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; One coderag-daemon process per project root, spoken to with the
;; built-in `jsonrpc' library.  Every request is asynchronous and has
;; a timeout, so the command loop never waits for the daemon.  A
;; daemon that exits unexpectedly is restarted (a few times a minute
;; at most) and the buffers using it are opened on the new one.  A
;; daemon that cannot start (its command is missing, it exits at once
;; or it does not answer) is reported once; the next edit, file opened
;; or command tries again, and says so only if the reason changed.

;;; Code:

(require 'cl-lib)
(require 'jsonrpc)
(require 'project)
(require 'url-util)

(defgroup coderag nil
  "Inline completions and project chat from a local coderag daemon."
  :group 'tools
  :prefix "coderag-")

(defvar coderag--connections (make-hash-table :test #'equal)
  "Daemon connections by project root.")

(defun coderag--setting-widget (name)
  "The value widget's kind of setting NAME in `coderag-daemon-settings'."
  (let ((options (plist-get (cdr (get 'coderag-daemon-settings 'custom-type))
                            :options)))
    (cl-loop for (key widget) in options
             when (eq (car (last key)) name) return (car-safe widget))))

(defun coderag--settings-json (settings)
  "SETTINGS, a plist, as a JSON object.
Lists of strings become arrays; nil is false for a true-or-false
setting and an empty array for a list."
  (if settings
      (cl-loop for (name value) on settings by #'cddr
               nconc (list name
                           (pcase (coderag--setting-widget name)
                             ('boolean (if value t :json-false))
                             ('repeat (vconcat value))
                             (_ value))))
    (make-hash-table)))

(defun coderag--settings-changed (symbol value)
  "Set SYMBOL to VALUE and send the new settings to the running daemons."
  (set-default symbol value)
  (maphash (lambda (_root conn)
             (when (coderag--ready-p conn)
               (jsonrpc-notify conn 'workspace/didChangeConfiguration
                               (list :settings (coderag--settings-json value)))))
           coderag--connections))

(defcustom coderag-daemon-command '("coderag-daemon")
  "Program and arguments that start the daemon speaking LSP on stdio."
  :type '(repeat string))

(defcustom coderag-daemon-settings nil
  "Daemon settings, sent as `initializationOptions'.
A plist such as (:nCtx 8192 :threads 4) with the names of the
daemon's protocol.  Set through Customize, a change reaches the
running daemons at once; changing the model or its context
reloads it."
  :type '(plist
          :options
          (((const :tag "Model file (GGUF)" :modelPath)
            (choice (const :tag "Default model" nil) file))
           ((const :tag "Context window in tokens" :nCtx)
            (integer :value 12288))
           ((const :tag "CPU threads (0: the free cores)" :threads) (integer :value 0))
           ((const :tag "Tokens between checkpoints" :checkpointInterval)
            (integer :value 512))
           ((const :tag "Checkpoint memory (MiB)" :checkpointMemoryMiB)
            (integer :value 512))
           ((const :tag "Quiet time before preloading (ms)" :preloadDelayMs)
            (integer :value 400))
           ((const :tag "Token budget of the file context" :contextTokens)
            (integer :value 9728))
           ((const :tag "Longest inline completion (tokens)"
                   :maxCompletionTokens)
            (integer :value 64))
           ((const :tag "Longest chat answer (tokens)" :maxChatTokens)
            (integer :value 512))
           ((const :tag "Completion time budget (ms)" :completionTimeBudgetMs)
            (integer :value 3000))
           ((const :tag "Context a completion waits for (tokens)"
                   :completionWaitTokens)
            (integer :value 128))
           ((const :tag "Retrieved code in a chat request (tokens)"
                   :retrievalTokens)
            (integer :value 768))
           ((const :tag "Definitions in a completion request (tokens)"
                   :completionDefinitionTokens)
            (integer :value 0))
           ((const :tag "Extra ignore globs" :ignoreGlobs) (repeat string))
           ((const :tag "Largest file (KiB)" :maxFileKiB) (integer :value 512))
           ((const :tag "Save the cache for the next start" :persistCache)
            (boolean :value t))
           ((const :tag "Least time between saves (ms)" :persistIntervalMs)
            (integer :value 60000))
           ((const :tag "Disk space for saved caches (MiB)" :persistBudgetMiB)
            (integer :value 2048))
           ((const :tag "Engine: local, or an engine server's URL" :engine)
            (string :value "local"))
           ((const :tag "Where the engine server's API key is" :engineApiKey)
            (string :value "env:CODERAG_ENGINE_API_KEY"))
           ((const :tag "The engine server's slot of this daemon" :engineSlot)
            (integer :value 0))))
  :set #'coderag--settings-changed)

(defcustom coderag-request-timeout 30
  "Seconds to wait for the answer to a request other than chat.
The daemon waits for its model to load before answering, so this
also bounds the wait for a model that is still loading."
  :type 'number)

(defcustom coderag-start-timeout 60
  "Seconds to wait for a new daemon to answer `initialize'."
  :type 'number)

(defcustom coderag-max-restarts 3
  "How many times a minute a daemon that exits is restarted."
  :type 'natnum)

(defcustom coderag-events-buffer-size 0
  "Characters of JSON-RPC traffic kept in the events buffer.
0 keeps none (the fastest); nil keeps everything, for debugging."
  :type '(choice (const :tag "Unlimited" nil) natnum))

(defconst coderag--install-hint
  "install it with `make setup' in a coderag-daemon checkout, then \
set `coderag-daemon-command' to (\"CHECKOUT/.venv/bin/coderag-daemon\") \
or put that directory on PATH"
  "How to get the daemon, for the message shown when it is missing.")

(defvar coderag--ready-functions nil
  "Functions called with a connection once its daemon is initialized.")

(defvar coderag--failures (make-hash-table :test #'equal)
  "Why the daemon of a project root is down, by root: (TEXT . RETRY).
TEXT is the message that said so.  With RETRY (a daemon that could
not start), the next edit or file opened tries again; without it (a
daemon that keeps exiting), only a command does.")

(defvar coderag--exits (make-hash-table :test #'equal)
  "Times of the recent unexpected daemon exits, by project root.")

(defclass coderag-connection (jsonrpc-process-connection)
  ((root :initarg :root :reader coderag--root-of
         :documentation "The project root this daemon serves.")
   (proc :initarg :proc :reader coderag--process
         :documentation "The daemon process.")
   (ready :initform nil :accessor coderag--ready-p
          :documentation "Non-nil once `initialize' has been answered.")
   (stopping :initform nil :accessor coderag--stopping
             :documentation "Non-nil when Emacs is ending the daemon.")
   (waiting :initform nil :accessor coderag--waiting
            :documentation "(ON-READY . ON-FAILURE) pairs, newest first.")
   (status :initform nil :accessor coderag--status
           :documentation "The last `coderag/status' parameters.")
   (last-id :initform nil :accessor coderag--last-id
            :documentation "Id of the last request sent."))
  :documentation "A coderag daemon serving one project root.")

(cl-defmethod jsonrpc-connection-send :before
  ((conn coderag-connection) &key id method &allow-other-keys)
  "Remember the id of each request sent on CONN, for cancelling it.
ID and METHOD are those of the message."
  (when (and id method)
    (setf (coderag--last-id conn) id)))

(cl-defgeneric coderag--handle-notification (conn method params)
  "Handle notification METHOD (a symbol) with PARAMS from CONN."
  (:method (_conn _method _params) nil))

(cl-defmethod coderag--handle-notification
  (_conn (_method (eql window/showMessage)) params)
  "Show the daemon's message in PARAMS in the echo area."
  (message "%s" (plist-get params :message)))

(cl-defmethod coderag--handle-notification
  (conn (_method (eql window/logMessage)) params)
  "Append the daemon's log line in PARAMS to the log of CONN's root."
  (coderag--log (coderag--root-of conn) (plist-get params :message)))

(defun coderag--log (root text)
  "Append TEXT, about the daemon of ROOT, to the *coderag-log* buffer."
  (with-current-buffer (get-buffer-create "*coderag-log*")
    (let ((inhibit-read-only t))
      (goto-char (point-max))
      (insert (format "%s %s\n" (file-name-nondirectory root) text))
      (when (> (count-lines (point-min) (point-max)) 2000)
        (goto-char (point-min))
        (delete-region (point) (line-beginning-position 1001))))
    (setq buffer-read-only t)))

(defun coderag--logging-sentinel (root)
  "A wrapper of jsonrpc's process sentinel that logs its messages for ROOT.
jsonrpc says in the echo area that a process exited; the package
says why instead, or nothing after a retry that failed the same way."
  (lambda (sentinel process change)
    (cl-letf (((symbol-function 'jsonrpc--message)
               (lambda (format &rest args)
                 (coderag--log root (apply #'format format args)))))
      (funcall sentinel process change))))

(defun coderag--project-root ()
  "The current buffer's project root, or its directory outside projects."
  (directory-file-name
   (expand-file-name (if-let ((project (project-current nil)))
                         (project-root project)
                       default-directory))))

(defun coderag--uri (file)
  "The file: URI of FILE."
  (concat "file://" (url-hexify-string (expand-file-name file)
                                       url-path-allowed-chars)))

(defun coderag--uri-file (uri)
  "The local file name of URI, a file: URI; nil for any other URI."
  (when (and (stringp uri)
             (string-match "\\`file://\\(?:localhost\\)?\\(/[^?#]*\\)\\'" uri))
    (decode-coding-string (url-unhex-string (match-string 1 uri)) 'utf-8)))

(defun coderag--initialize-params (root)
  "Parameters of `initialize' for a daemon serving ROOT."
  (let ((uri (coderag--uri root)))
    (list :processId (emacs-pid)
          :clientInfo (list :name "coderag.el")
          :rootUri uri
          :workspaceFolders (vector (list :uri uri
                                          :name (file-name-nondirectory root)))
          :capabilities (list :general (list :positionEncodings ["utf-16"])
                              :textDocument (list :synchronization
                                                  (list :didSave t)))
          :initializationOptions (coderag--settings-json
                                  coderag-daemon-settings))))

(defun coderag--why (conn)
  "Why CONN's daemon ended: its exit status and its last words."
  (let ((process (coderag--process conn))
        (stderr (jsonrpc-stderr-buffer conn))
        (last-line nil))
    (when (buffer-live-p stderr)
      (with-current-buffer stderr
        (save-excursion
          (goto-char (point-max))
          (skip-chars-backward " \t\n")
          (unless (bobp)
            (setq last-line (buffer-substring-no-properties
                             (line-beginning-position) (point)))))))
    (format "%s %s%s"
            (if (eq (process-status process) 'signal) "signal" "exit status")
            (process-exit-status process)
            (if last-line
                (concat ": " (truncate-string-to-width last-line 160 nil nil "…"))
              ""))))

(defun coderag--start (root)
  "Start a daemon for ROOT and return its connection.
Signal `file-missing' when the daemon command cannot be found."
  (let* ((program (car coderag-daemon-command))
         (name (format "coderag[%s]" (abbreviate-file-name root)))
         process conn)
    (unless (and program (executable-find program))
      (signal 'file-missing
              (list (format "coderag: daemon command `%s' not found; %s"
                            program coderag--install-hint))))
    (setq conn
          (coderag-connection
           :name name
           :root root
           :events-buffer-scrollback-size coderag-events-buffer-size
           :notification-dispatcher #'coderag--handle-notification
           :on-shutdown #'coderag--exited
           :process (lambda ()
                      (let ((default-directory (file-name-as-directory root)))
                        (setq process
                              (make-process
                               :name name
                               :command coderag-daemon-command
                               :connection-type 'pipe
                               :coding 'utf-8-emacs-unix
                               :noquery t
                               :stderr (get-buffer-create
                                        (format "*%s stderr*" name))))))))
    ;; Keep the daemon's last words the last line of its stderr buffer.
    (when-let ((stderr (get-buffer-process (jsonrpc-stderr-buffer conn))))
      (set-process-sentinel stderr #'ignore))
    (add-function :around (process-sentinel process) (coderag--logging-sentinel root))
    (setf (slot-value conn 'proc) process)
    (puthash root conn coderag--connections)
    ;; A daemon that dies, even before `initialize' can be sent, is
    ;; reported by `coderag--exited'.
    (condition-case err
        (jsonrpc-async-request
         conn 'initialize (coderag--initialize-params root)
         :timeout coderag-start-timeout
         :success-fn (lambda (_capabilities) (coderag--initialized conn))
         :error-fn (lambda (err)
                     (when (jsonrpc-running-p conn)
                       (coderag--stop conn)
                       (coderag--failed root (format "coderag: the daemon for %s \
failed to start (%s)" root (plist-get err :message)) t)))
         :timeout-fn (lambda ()
                       (coderag--stop conn)
                       (coderag--failed root (format "coderag: the daemon for %s \
did not answer within %ss" root coderag-start-timeout) t)))
      (error (when (process-live-p process)
               (signal (car err) (cdr err)))))
    conn))

(defun coderag--failed (root text retry)
  "Record that ROOT's daemon is down because of TEXT.
RETRY as in `coderag--failures'.  Show TEXT, unless ROOT's last
failure already said it: retries that fail the same way are quiet."
  (unless (equal text (car (gethash root coderag--failures)))
    (message "%s" text))
  (puthash root (cons text retry) coderag--failures))

(defun coderag--initialized (conn)
  "Finish the handshake with CONN and run what waited for it."
  (jsonrpc-notify conn 'initialized (make-hash-table))
  (setf (coderag--ready-p conn) t)
  (let ((root (coderag--root-of conn)))
    (when (gethash root coderag--failures)
      (remhash root coderag--failures)
      (message "coderag: the daemon for %s is running" root)))
  (run-hook-with-args 'coderag--ready-functions conn)
  (let ((waiting (reverse (coderag--waiting conn))))
    (setf (coderag--waiting conn) nil)
    (dolist (callbacks waiting)
      (funcall (car callbacks)))))

(defun coderag--when-ready (conn on-ready &optional on-failure)
  "Call ON-READY now if CONN is ready, else once it is.
If CONN's daemon ends before, call ON-FAILURE with the reason."
  (if (coderag--ready-p conn)
      (funcall on-ready)
    (push (cons on-ready on-failure) (coderag--waiting conn))))

(defun coderag--live-connection (root)
  "The running connection for ROOT, or nil."
  (let ((conn (gethash root coderag--connections)))
    (and conn (jsonrpc-running-p conn) conn)))

(defun coderag--ensure-connection (root &optional interactive)
  "The connection for ROOT, starting its daemon if needed, or nil.
After a failed start, try again; after a daemon that kept exiting,
only if INTERACTIVE (for a command).  A command's failure is
reported even if it was already, a missing daemon as a `user-error'."
  (or (coderag--live-connection root)
      (let ((failure (gethash root coderag--failures)))
        (when (and interactive failure)
          (puthash root (cons nil t) coderag--failures))
        (when (or interactive (not failure) (cdr failure))
          (condition-case err
              (coderag--start root)
            (file-missing
             (when interactive
               (puthash root (cons (cadr err) t) coderag--failures)
               (user-error "%s" (cadr err)))
             (coderag--failed root (cadr err) t)
             nil)
            (file-error
             (coderag--failed root (format "coderag: cannot start the daemon: %s"
                                           (error-message-string err))
                              t)
             nil))))))

(defun coderag--connection (&optional interactive)
  "The connection for the current buffer's project, started if needed.
INTERACTIVE as in `coderag--ensure-connection'."
  (coderag--ensure-connection (coderag--project-root) interactive))

(defun coderag--stop (conn)
  "End CONN's daemon without restarting it."
  (setf (coderag--stopping conn) t)
  (when (eq (gethash (coderag--root-of conn) coderag--connections) conn)
    (remhash (coderag--root-of conn) coderag--connections))
  (when (jsonrpc-running-p conn)
    (jsonrpc-shutdown conn)))

(defun coderag--exited (conn)
  "Report the end of CONN's daemon, and restart it if it was unexpected.
A daemon that had started is restarted, but not too often; one that
never did is a failure to start."
  (let ((root (coderag--root-of conn))
        (waiting (reverse (coderag--waiting conn))))
    (setf (coderag--waiting conn) nil)
    (dolist (callbacks waiting)
      (when (cdr callbacks)
        (funcall (cdr callbacks) "the daemon did not start")))
    (when (eq (gethash root coderag--connections) conn)
      (remhash root coderag--connections))
    (cond
     ((coderag--stopping conn))
     ((not (coderag--ready-p conn))
      (coderag--failed root (format "coderag: the daemon for %s failed to start (%s)"
                                    root (coderag--why conn))
                       t))
     (t
      (let* ((now (float-time))
             (recent (cons now (cl-remove-if (lambda (time) (> (- now time) 60))
                                             (gethash root coderag--exits))))
             (why (coderag--why conn)))
        (puthash root recent coderag--exits)
        (if (> (length recent) coderag-max-restarts)
            (coderag--failed root (format "coderag: the daemon for %s keeps exiting \
(%s); not restarting it.  Fix the cause, then M-x coderag-restart" root why)
                             nil)
          (message "coderag: the daemon for %s exited (%s); restarting it"
                   root why)
          (run-with-timer 0.5 nil #'coderag--restart-root root)))))))

(defun coderag--restart-root (root)
  "Start a daemon for ROOT again if no other has been started meanwhile."
  (unless (coderag--live-connection root)
    (coderag--ensure-connection root)))

(defun coderag--restart (root)
  "Replace ROOT's daemon by a new one, forgetting earlier failures."
  (when-let ((conn (gethash root coderag--connections)))
    (coderag--stop conn))
  (remhash root coderag--exits)
  (coderag--ensure-connection root t))

(cl-defun coderag--send (conn method params &key success error timeout-fn
                              (timeout coderag-request-timeout))
  "Send request METHOD with PARAMS on CONN and return its id.
SUCCESS is called with the result, ERROR with the error object (also
when the daemon exits), TIMEOUT-FN after TIMEOUT seconds, once the
daemon has been told to stop working on the request."
  (let (id)
    (jsonrpc-async-request
     conn method params
     :timeout timeout
     :success-fn (or success #'ignore)
     :error-fn (or error #'ignore)
     :timeout-fn (lambda ()
                   (coderag--cancel conn id)
                   (when timeout-fn (funcall timeout-fn))))
    (setq id (coderag--last-id conn))))

(defun coderag--cancel (conn id)
  "Ask CONN's daemon to stop working on request ID."
  (when (jsonrpc-running-p conn)
    (jsonrpc-notify conn '$/cancelRequest (list :id id))))

(provide 'coderag-connection)
;;; coderag-connection.el ends here
