;;; coderag-package-test.el --- Tests of the package's installation  -*- lexical-binding: t; -*-

;; This file is part of coderag.

;;; Commentary:

;; `package-install-file' installs the package with its autoloads.

;;; Code:

(require 'coderag-test-support)

;;; Packaging

(defun coderag-test--emacs (form)
  "Run FORM in a new batch Emacs; return what it printed, or fail."
  (with-temp-buffer
    (let ((status (call-process (expand-file-name invocation-name invocation-directory)
                                nil t nil "-Q" "--batch" "--eval" (format "%S" form))))
      (unless (eql status 0)
        (ert-fail (buffer-string)))
      (buffer-string))))

(defun coderag-test--install-and-check (packages)
  "Install the package into PACKAGES; return what a new Emacs finds."
  (coderag-test--emacs
   `(progn (setq package-user-dir ,packages)
           (package-initialize)
           (package-install-file ,(expand-file-name "editors/emacs" coderag-test--repo))))
  (coderag-test--emacs
   `(progn (setq package-user-dir ,packages)
           (package-initialize)
           (let ((autoloaded (list (autoloadp (symbol-function 'coderag-mode))
                                   (autoloadp (symbol-function 'coderag-ask))
                                   (autoloadp (symbol-function
                                               'coderag-find-by-meaning)))))
             (require 'coderag)
             (princ (format "%S" (append autoloaded
                                         (list (commandp 'coderag-show-context)
                                               (featurep 'coderag-chat)))))))))

(ert-deftest coderag-installs-with-package-install-file ()
  (let ((packages (make-temp-file "coderag-packages" t)))
    (unwind-protect
        (should (string-suffix-p "(t t t t t)"
                                 (coderag-test--install-and-check packages)))
      (delete-directory packages t))))

(provide 'coderag-package-test)
;;; coderag-package-test.el ends here
