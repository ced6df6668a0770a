// What the language client does when the daemon dies: restart it and say so, unless it keeps dying,
// in which case it stays down until the user restarts it (a crash loop would reload the model forever).
import { CloseAction, CloseHandlerResult, ErrorAction, ErrorHandler, ErrorHandlerResult } from 'vscode-languageclient/node';

export const MAX_CRASHES = 5;
export const CRASH_WINDOW_MS = 3 * 60_000;

export type CrashReport = (message: string, restarting: boolean) => void;

export class RestartPolicy implements ErrorHandler {
  private crashes: number[] = [];

  constructor(
    private readonly report: CrashReport,
    private readonly now: () => number = Date.now,
  ) {}

  error(_error: Error, _message: unknown, count: number | undefined): ErrorHandlerResult {
    // A few broken messages are survivable; a stream of them means the pipe is gone.
    return { action: (count ?? 1) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true };
  }

  closed(): CloseHandlerResult {
    const now = this.now();
    this.crashes = [...this.crashes.filter((time) => now - time < CRASH_WINDOW_MS), now];
    if (this.crashes.length > MAX_CRASHES) {
      this.report(
        `The CodeRAG daemon stopped ${this.crashes.length} times in ${CRASH_WINDOW_MS / 60_000} minutes and was not ` +
          'restarted again. See the CodeRAG output, then run "CodeRAG: Restart Daemon".',
        false,
      );
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    this.report('The CodeRAG daemon stopped unexpectedly and was restarted.', true);
    return { action: CloseAction.Restart, handled: true };
  }
}
