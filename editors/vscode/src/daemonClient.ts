// The language client that runs the daemon: started from the settings, fed their changes, restarted
// after a crash, given up on when it cannot start (missing, exiting at once, not answering) and then
// started again by the next CodeRAG command. Each failure is said once, in one message; the client's
// state and the daemon's coderag/status go to the status bar.
import * as readline from 'node:readline';
import type { Readable } from 'node:stream';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  MessageType,
  RevealOutputChannelOn,
  ShowMessageNotification,
  State,
} from 'vscode-languageclient/node';
import { INSTALL_HINT, daemonCommand, launchProblem } from './daemonLaunch';
import { inlineCompletionMiddleware } from './inlineCompletions';
import { Notifier, Severity } from './notifications';
import { DaemonConnection, StatusNotification } from './protocol';
import { RestartPolicy, connectionErrorAction } from './restartPolicy';
import { DaemonOptions, SECTION, daemonOptions, inlineSettings, launchSettings } from './settings';
import { StatusBar } from './statusBar';

/** How long the daemon may take to answer `initialize` (it loads its model after answering). */
export const START_TIMEOUT_MS = 30_000;

const SEVERITY: Record<number, Severity> = { [MessageType.Error]: 'error', [MessageType.Warning]: 'warning' };

function configuration(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

/** A LanguageClient whose own failures only go to the log: the popups about the daemon come from the
 * Notifier, once each (the library pops up every failed start, besides the extension's own message). */
class QuietLanguageClient extends LanguageClient {
  override error(message: string, data?: unknown): void {
    super.error(message, data, false);
  }
}

/** One start of the daemon: its last line on stderr, and whether it exited before answering. */
export interface Launch {
  lastStderr: string;
  /** Resolves when its stderr is closed: all it said is in. */
  stderrClosed: Promise<void>;
  exited: boolean;
}

/** Why a daemon that did not answer `initialize` failed, in one sentence. */
export function startFailure(launch: Launch, error: unknown): string {
  if (launch.exited) {
    return launch.lastStderr === ''
      ? 'The CodeRAG daemon exited as it started, without a word; see the CodeRAG output.'
      : `The CodeRAG daemon exited as it started: ${launch.lastStderr}`;
  }
  return `The CodeRAG daemon did not start: ${error instanceof Error ? error.message : String(error)}`;
}

/** Stops `client`; one still starting cannot be asked to shut down, so the library kills its process. */
async function stopClient(client: LanguageClient): Promise<void> {
  try {
    await client.dispose();
  } catch {
    // Not running (yet, or any more): nothing to shut down.
  }
}

export class DaemonClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  /** The start under way, which the next command waits for instead of starting another daemon. */
  private starting: Promise<void> | undefined;
  /** The daemon settings last sent, to send a change only when one of them changed. */
  private sentOptions: DaemonOptions = {};
  private readonly crashes = new RestartPolicy();

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly notifier: Notifier,
    private readonly statusBar: StatusBar,
  ) {}

  /** The running daemon, for requests of its own methods. */
  get connection(): DaemonConnection | undefined {
    return this.client?.state === State.Running ? this.client : undefined;
  }

  /** Starts the daemon unless it is running or being started; resolves when it runs or has failed. */
  start(): Promise<void> {
    if (this.connection === undefined && this.starting === undefined) {
      this.starting = this.launch().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting ?? Promise.resolve();
  }

  /** The daemon for a command of the user's: when it is down (missing, failed to start, left stopped
   * after crashes), it is started again first, and a failure is said again. */
  async ensureRunning(): Promise<DaemonConnection | undefined> {
    if (this.connection === undefined && this.starting === undefined) {
      this.notifier.reset();
      this.crashes.reset();
    }
    await this.start();
    return this.connection;
  }

  async restart(): Promise<void> {
    this.notifier.reset();
    this.crashes.reset();
    await this.stop();
    await this.starting;
    await this.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) {
      await stopClient(client);
    }
  }

  /** Launch settings restart the daemon; its own settings are sent to it if they changed. */
  async configurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (event.affectsConfiguration(`${SECTION}.daemon`)) {
      await this.restart();
      return;
    }
    const connection = this.client;
    const options = daemonOptions(configuration(), Object.keys(this.sentOptions));
    if (connection?.state === State.Running && JSON.stringify(options) !== JSON.stringify(this.sentOptions)) {
      this.sentOptions = options;
      await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: options } });
    }
  }

  dispose(): void {
    void this.stop();
  }

  private async launch(): Promise<void> {
    const daemon = daemonCommand(launchSettings(configuration()));
    const problem = launchProblem(daemon);
    if (problem !== undefined) {
      this.statusBar.update({ phase: 'stopped', problem });
      void this.notifier.once('error', `${problem} ${INSTALL_HINT}`, 'Open Settings').then((action) => {
        if (action === 'Open Settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.daemon`);
        }
      });
      return;
    }
    let stderrClosed = () => undefined as void;
    const launch: Launch = {
      lastStderr: '', exited: false, stderrClosed: new Promise((resolve) => (stderrClosed = resolve)),
    };
    const server = { command: daemon.command, args: daemon.args };
    const client: LanguageClient = new QuietLanguageClient('coderag', 'CodeRAG', server,
      this.clientOptions(launch, stderrClosed, () => this.closed(client, launch)));
    // Handlers of a client given up on (or replaced) must not speak for the current one.
    const current = () => this.client === client;
    client.onNotification(StatusNotification, (status) => {
      if (current()) {
        this.statusBar.update({ status });
      }
    });
    // Replaces the client's own handler, which would pop up every message however often it comes.
    client.onNotification(ShowMessageNotification.type, (message) => {
      void this.notifier.once(SEVERITY[message.type] ?? 'info', message.message);
    });
    client.onDidChangeState(({ newState }) => {
      if (!current()) {
        return;
      }
      if (newState === State.Starting) {
        this.statusBar.update({ phase: 'starting', status: undefined });
      } else {
        this.statusBar.update({ phase: newState === State.Running ? 'running' : 'stopped' });
      }
    });
    this.client = client;
    this.statusBar.update({ phase: 'starting', status: undefined, problem: undefined });

    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => {
      timer = setTimeout(() => resolve(true), START_TIMEOUT_MS);
    });
    let failure: string | undefined;
    try {
      if (await Promise.race([client.start().then(() => false), timedOut])) {
        failure = `The CodeRAG daemon did not answer within ${START_TIMEOUT_MS / 1000} s and was stopped; ` +
          'see the CodeRAG output.';
      }
    } catch (error) {
      // Its last words may come after the connection closed.
      await Promise.race([launch.stderrClosed, new Promise((resolve) => setTimeout(resolve, 1000))]);
      failure = startFailure(launch, error);
    } finally {
      clearTimeout(timer);
    }
    if (failure === undefined || !current()) {
      return; // running, or stopped by the user meanwhile
    }
    this.client = undefined;
    await stopClient(client);
    this.statusBar.update({ phase: 'stopped', problem: failure });
    this.offerLog('error', failure);
  }

  /** The daemon's connection closed. A daemon still starting is reported by launch(); a running one crashed. */
  private closed(client: LanguageClient, launch: Launch): void {
    if (client !== this.client) {
      return; // stopped by the extension
    }
    if (client.state === State.Starting) {
      launch.exited = true;
      return;
    }
    this.client = undefined;
    const verdict = this.crashes.crashed();
    if (verdict.restart) {
      this.offerLog('warning', verdict.message);
      void this.start();
    } else {
      this.statusBar.update({ phase: 'stopped', problem: verdict.message });
      this.offerLog('error', verdict.message);
    }
  }

  private clientOptions(launch: Launch, stderrClosed: () => void, onClose: () => void): LanguageClientOptions {
    return {
      // Every file: the daemon decides what may enter the context (it skips secrets, binaries, ignored files).
      documentSelector: [{ scheme: 'file' }],
      // A function, so that each start sends the current settings.
      initializationOptions: () => {
        this.sentOptions = daemonOptions(configuration());
        return this.sentOptions;
      },
      outputChannel: this.output,
      // Failed requests go to the log; popups come only from the Notifier.
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      // The daemon's stderr is its log; its last line says why it exited, if it exits as it starts.
      stdioOptions: {
        stdout: (input, channel) => lines(input, (line) => channel.info(line)),
        stderr: (input, channel) => {
          lines(input, (line) => {
            channel.info(line);
            if (line.trim() !== '') {
              launch.lastStderr = line.trim();
            }
          });
          input.once('close', stderrClosed);
        },
      },
      // A failed start is reported by launch(), not popped up by the library as well.
      initializationFailedHandler: () => false,
      // Restarts are the extension's (a new client each time), so every start is timed and reported alike.
      errorHandler: {
        error: (_error, _message, count) => ({ action: connectionErrorAction(count), handled: true }),
        closed: () => {
          onClose();
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
      middleware: inlineCompletionMiddleware(() => inlineSettings(configuration())),
    };
  }

  /** Not awaited: a popup stays until the user closes it, and nothing should wait for that. */
  private offerLog(severity: Severity, message: string): void {
    void this.notifier.once(severity, message, 'Show Log').then((action) => {
      if (action === 'Show Log') {
        this.output.show();
      }
    });
  }
}

function lines(input: Readable, each: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', each);
}
