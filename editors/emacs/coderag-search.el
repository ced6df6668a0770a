;;; coderag-search.el --- Find in the project by meaning  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; `coderag-find-by-meaning' asks the daemon's workspace index
;; (`coderag/search') for the chunks of code that best match a query
;; and lists them with xref, so the usual keys work on them: RET or
;; `next-error' visits one, `xref-pop-marker-stack' (M-,) comes back.
;; Also the locations and visits that the chat's sources use.

;;; Code:

(require 'cl-lib)
(require 'xref)
(require 'coderag-sync)

(defcustom coderag-search-limit 20
  "Most results `coderag-find-by-meaning' lists (1 to 100)."
  :type 'integer
  :group 'coderag)

(defvar coderag--search-history nil
  "Minibuffer history of `coderag-find-by-meaning'.")

(defvar coderag--search-request nil
  "The search in flight: (CONN . ID), or nil.")

;;; Locations

(defun coderag--xref-location (uri position)
  "An xref location of LSP POSITION in URI's file.
Nil unless URI is a local file: URI.  LSP counts characters in
UTF-16 code units; the daemon's ranges start at column 0."
  (when-let ((file (coderag--uri-file uri)))
    (xref-make-file-location file
                             (1+ (or (plist-get position :line) 0))
                             (or (plist-get position :character) 0))))

(defun coderag--visit (location &optional other-window)
  "Visit LOCATION, an xref location, in OTHER-WINDOW if non-nil.
Where point was goes on the xref marker stack, so that
\\[xref-pop-marker-stack] comes back."
  (let ((file (xref-location-group location)))
    (unless (file-exists-p file)
      (user-error "coderag: %s does not exist any more" file))
    (xref-push-marker-stack)
    (xref-pop-to-location (xref-make "" location) (and other-window 'window))))

;;; Search

(defun coderag--first-line (text)
  "The first non-blank line of TEXT, without its indentation."
  (string-trim (or (cl-find-if-not #'string-blank-p
                                   (split-string (or text "") "[\r\n]+"))
                   "")))

(defun coderag--search-xrefs (result)
  "The xref items of RESULT, a `coderag/search' result, best first.
Results outside local files are left out."
  (cl-loop for hit across (or (plist-get result :results) [])
           for location = (coderag--xref-location
                           (plist-get hit :uri)
                           (plist-get (plist-get hit :range) :start))
           when location
           collect (xref-make (concat (propertize (or (plist-get hit :title) "")
                                                  'face 'bold)
                                      " — "
                                      (coderag--first-line (plist-get hit :text)))
                              location)))

(defun coderag--search-notice (result count)
  "A message about RESULT of `coderag/search', which listed COUNT results.
Nil when there is nothing to say."
  (let ((indexing (eq (plist-get result :indexing) t)))
    (cond
     ((and (zerop count) indexing)
      (format "coderag: nothing found yet; the index is still being built (%s files so far)"
              (plist-get result :files)))
     ((zerop count) "coderag: nothing found")
     (indexing
      (format "coderag: the index is still being built (%s files so far): \
results may be missing" (plist-get result :files))))))

(defun coderag--search-show (xrefs window marker)
  "List XREFS with xref, as if asked for at MARKER in WINDOW.
The way back to MARKER goes on the xref marker stack."
  (let ((window (if (window-live-p window) window (selected-window)))
        (buffer (marker-buffer marker)))
    ;; The buffer of the search gives the project, for the file names.
    (with-current-buffer (or buffer (current-buffer))
      (when buffer
        (xref-push-marker-stack marker))
      (funcall xref-show-xrefs-function
               (lambda () xrefs)
               `((window . ,window)
                 (display-action . nil)
                 (auto-jump . ,xref-auto-jump-to-first-xref))))))

(cl-defun coderag--search (conn query &key (limit coderag-search-limit)
                                success failure)
  "Search CONN's workspace index for QUERY, LIMIT results at most.
Call SUCCESS with the result, FAILURE with a message saying what
went wrong.  Cancel the search still in flight, if any."
  (when-let ((previous coderag--search-request))
    (setq coderag--search-request nil)
    (when (cdr previous)
      (coderag--cancel (car previous) (cdr previous))))
  (let ((request (list conn)))
    (setq coderag--search-request request)
    (cl-flet ((current-p () (eq coderag--search-request request))
              (done () (setq coderag--search-request nil)))
      (coderag--when-ready
       conn
       (lambda ()
         (when (current-p)
           (setcdr request
                   (coderag--send
                    conn 'coderag/search (list :query query
                                               :limit (max 1 (min 100 limit)))
                    :success (lambda (result)
                               (when (current-p)
                                 (done)
                                 (funcall success result)))
                    :error (lambda (err)
                             (when (current-p)
                               (done)
                               (funcall failure
                                        (if (eql (plist-get err :code) -32601)
                                            "this daemon cannot search; update it"
                                          (plist-get err :message)))))
                    :timeout-fn (lambda ()
                                  (when (current-p)
                                    (done)
                                    (funcall failure
                                             (format "no results within %ss"
                                                     coderag-request-timeout))))))))
       (lambda (problem)
         (when (current-p)
           (done)
           (funcall failure problem)))))))

(defun coderag--default-query ()
  "The active region's text or the symbol at point, or nil."
  (let ((text (if (use-region-p)
                  (buffer-substring-no-properties (region-beginning) (region-end))
                (thing-at-point 'symbol t))))
    (and text (not (string-blank-p text)) (string-trim text))))

;;;###autoload
(defun coderag-find-by-meaning (query)
  "List the code of the project that best matches QUERY, with xref.
The daemon's workspace index ranks chunks of code (definitions or
runs of lines) by the words of QUERY, split the way code is
written: \"verify token\" finds `verify_token'.  Interactively,
the default is the active region or the symbol at point.  The
answer comes asynchronously; in the list, RET visits a result and
\\[xref-pop-marker-stack] comes back."
  (interactive
   (let ((default (coderag--default-query)))
     (list (read-string (if default
                            (format "Find by meaning (default %s): " default)
                          "Find by meaning: ")
                        nil 'coderag--search-history default))))
  (when (or (null query) (string-blank-p query))
    (user-error "The query is empty"))
  (let ((conn (coderag--connection t))
        (window (selected-window))
        (marker (point-marker)))
    (coderag--search
     conn query
     :success (lambda (result)
                (let* ((xrefs (coderag--search-xrefs result))
                       (notice (coderag--search-notice result (length xrefs))))
                  (when xrefs
                    (coderag--search-show xrefs window marker))
                  (when notice
                    (message "%s" notice))))
     :failure (lambda (problem)
                (message "coderag: search failed: %s" problem)))))

(provide 'coderag-search)
;;; coderag-search.el ends here
