// Popups about the daemon, each distinct message at most once until the daemon is restarted by
// hand: a daemon that fails the same way again and again must not bury the editor in notifications.
import * as vscode from 'vscode';

export type Severity = 'error' | 'warning' | 'info';

export class Notifier {
  private readonly shown = new Set<string>();

  constructor(private readonly log: vscode.LogOutputChannel) {}

  /** Show `message` unless it was shown already; resolves to the action picked, if any. */
  async once(severity: Severity, message: string, ...actions: string[]): Promise<string | undefined> {
    this.log[severity === 'warning' ? 'warn' : severity](message);
    if (this.shown.has(message)) {
      return undefined;
    }
    this.shown.add(message);
    const show = { error: vscode.window.showErrorMessage, warning: vscode.window.showWarningMessage,
      info: vscode.window.showInformationMessage }[severity];
    return show(message, ...actions);
  }

  /** Let every message show again (the user restarted the daemon). */
  reset(): void {
    this.shown.clear();
  }
}
