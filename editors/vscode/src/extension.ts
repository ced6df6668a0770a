// Entry point: wires the daemon client, the status bar, the chat panel and the commands together.
import * as vscode from 'vscode';
import { ChatPanel } from './chatPanel';
import { ChatSession } from './chatSession';
import { showContext } from './contextPick';
import { DaemonClient } from './daemonClient';
import { EditorTracker, selectedQuery, selectionAttachment } from './editorContext';
import { Notifier } from './notifications';
import { ClearCacheRequest, ContextRequest } from './protocol';
import { searchProject } from './projectSearch';
import { SECTION, inlineSettings } from './settings';
import { StatusBar } from './statusBar';

let daemon: DaemonClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('CodeRAG', { log: true });
  const notifier = new Notifier(output);
  const statusBar = new StatusBar(inlineSettings(vscode.workspace.getConfiguration(SECTION)).enabled);
  daemon = new DaemonClient(output, notifier, statusBar);
  const client = daemon;
  const editors = new EditorTracker();
  // Each command that needs the daemon starts it again if it is down, and says so if that fails.
  const running = () => client.ensureRunning();
  const session = new ChatSession(running);
  const chat = new ChatPanel(context.extensionUri, session, () => editors.askContext());

  context.subscriptions.push(
    output,
    statusBar,
    client,
    editors,
    chat,
    vscode.commands.registerCommand('coderag.ask', () => chat.open(selectionAttachment(vscode.window.activeTextEditor))),
    vscode.commands.registerCommand('coderag.searchProject', async () => {
      const initial = selectedQuery(vscode.window.activeTextEditor);
      const connection = await running();
      if (connection !== undefined) {
        await searchProject(connection, notifier, initial);
      }
    }),
    vscode.commands.registerCommand('coderag.showContext', async () => {
      const connection = await running();
      if (connection !== undefined) {
        await showContext(await connection.sendRequest(ContextRequest, {}));
      }
    }),
    vscode.commands.registerCommand('coderag.clearCache', async () => {
      const connection = await running();
      if (connection !== undefined) {
        await connection.sendRequest(ClearCacheRequest, {});
        void vscode.window.showInformationMessage('CodeRAG: the cache was cleared; the next request fills it again.');
      }
    }),
    vscode.commands.registerCommand('coderag.restartDaemon', () => client.restart()),
    vscode.commands.registerCommand('coderag.toggleInlineCompletions', async () => {
      const config = vscode.workspace.getConfiguration(SECTION);
      const enabled = !inlineSettings(config).enabled;
      // Where the value is set: a workspace value would override a changed user value.
      const target = config.inspect('inlineCompletions.enable')?.workspaceValue === undefined
        ? vscode.ConfigurationTarget.Global
        : vscode.ConfigurationTarget.Workspace;
      await config.update('inlineCompletions.enable', enabled, target);
      vscode.window.setStatusBarMessage(`CodeRAG inline completions ${enabled ? 'on' : 'off'}`, 3000);
    }),
    vscode.commands.registerCommand('coderag.showLog', () => output.show()),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration(SECTION)) {
        statusBar.update({ inlineEnabled: inlineSettings(vscode.workspace.getConfiguration(SECTION)).enabled });
        await client.configurationChanged(event);
      }
    }),
  );
  // Not awaited: activation must not wait for the daemon (or for a popup saying it is missing).
  void client.start();
}

export async function deactivate(): Promise<void> {
  await daemon?.stop();
}
