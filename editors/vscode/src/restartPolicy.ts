// What happens when the running daemon dies: it is restarted and the user told, unless it keeps dying,
// in which case it stays down until the user asks for it again (a crash loop would reload the model forever).
import { ErrorAction } from 'vscode-languageclient/node';

export const MAX_CRASHES = 5;
export const CRASH_WINDOW_MS = 3 * 60_000;

export interface CrashVerdict {
  restart: boolean;
  /** What to tell the user. */
  message: string;
}

export class RestartPolicy {
  private crashes: number[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** The daemon died now: restart it or not. */
  crashed(): CrashVerdict {
    const now = this.now();
    this.crashes = [...this.crashes.filter((time) => now - time < CRASH_WINDOW_MS), now];
    if (this.crashes.length > MAX_CRASHES) {
      return {
        restart: false,
        message: `The CodeRAG daemon stopped ${this.crashes.length} times in ${CRASH_WINDOW_MS / 60_000} minutes ` +
          'and was not restarted again. See the CodeRAG output, then run "CodeRAG: Restart Daemon".',
      };
    }
    return { restart: true, message: 'The CodeRAG daemon stopped unexpectedly and was restarted.' };
  }

  /** The user asked for the daemon: earlier crashes no longer count. */
  reset(): void {
    this.crashes = [];
  }
}

/** Broken messages from the daemon: a few are survivable; a stream of them means the pipe is gone. */
export function connectionErrorAction(count: number | undefined): ErrorAction {
  return (count ?? 1) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown;
}
