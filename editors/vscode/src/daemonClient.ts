// The language client that runs the daemon: started from the settings, fed their changes, restarted
// on a crash or on request; its state and the daemon's coderag/status go to the status bar.
import * as vscode from 'vscode';
import {
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
import { RestartPolicy } from './restartPolicy';
import { SECTION, daemonOptions, inlineSettings, launchSettings } from './settings';
import { StatusBar } from './statusBar';

const SEVERITY: Record<number, Severity> = { [MessageType.Error]: 'error', [MessageType.Warning]: 'warning' };

function configuration(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

export class DaemonClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  /** The daemon settings last sent, to send a change only when one of them changed. */
  private sentOptions = '';

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly notifier: Notifier,
    private readonly statusBar: StatusBar,
  ) {}

  /** The running daemon, for requests of its own methods. */
  get connection(): DaemonConnection | undefined {
    return this.client?.state === State.Running ? this.client : undefined;
  }

  async start(): Promise<void> {
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
    const client = new LanguageClient('coderag', 'CodeRAG', { command: daemon.command, args: daemon.args }, this.clientOptions());
    client.onNotification(StatusNotification, (status) => this.statusBar.update({ status }));
    // Replaces the client's own handler, which would pop up every message however often it comes.
    client.onNotification(ShowMessageNotification.type, (message) => {
      void this.notifier.once(SEVERITY[message.type] ?? 'info', message.message);
    });
    client.onDidChangeState(({ newState }) => {
      if (newState === State.Starting) {
        this.statusBar.update({ phase: 'starting', status: undefined });
      } else {
        this.statusBar.update({ phase: newState === State.Running ? 'running' : 'stopped' });
      }
    });
    this.client = client;
    this.statusBar.update({ phase: 'starting', status: undefined, problem: undefined });
    try {
      await client.start();
    } catch (error) {
      const message = `The CodeRAG daemon did not start: ${error instanceof Error ? error.message : String(error)}`;
      this.statusBar.update({ phase: 'stopped', problem: message });
      this.offerLog('error', message);
    }
  }

  async restart(): Promise<void> {
    this.notifier.reset();
    await this.stop();
    await this.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client !== undefined && client.state !== State.Stopped) {
      await client.dispose();
    }
  }

  /** Launch settings restart the daemon; its own settings are sent to it if they changed. */
  async configurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (event.affectsConfiguration(`${SECTION}.daemon`)) {
      await this.restart();
      return;
    }
    const connection = this.client;
    const options = daemonOptions(configuration());
    if (connection?.state === State.Running && JSON.stringify(options) !== this.sentOptions) {
      this.sentOptions = JSON.stringify(options);
      await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: options } });
    }
  }

  dispose(): void {
    void this.stop();
  }

  private clientOptions(): LanguageClientOptions {
    return {
      // Every file: the daemon decides what may enter the context (it skips secrets, binaries, ignored files).
      documentSelector: [{ scheme: 'file' }],
      // A function, so that a restart after a crash starts with the current settings.
      initializationOptions: () => {
        const options = daemonOptions(configuration());
        this.sentOptions = JSON.stringify(options);
        return options;
      },
      outputChannel: this.output,
      // Failed requests go to the log; popups come only from the Notifier.
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      errorHandler: new RestartPolicy((message, restarting) => {
        if (!restarting) {
          this.statusBar.update({ problem: message });
        }
        this.offerLog(restarting ? 'warning' : 'error', message);
      }),
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
