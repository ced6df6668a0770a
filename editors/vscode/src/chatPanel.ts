// The chat panel: a webview showing the ChatSession's conversation. The session outlives the panel,
// so closing and reopening it keeps the conversation; closing it stops a running answer.
import * as vscode from 'vscode';
import { FromPage, ToPage, shownExchange } from './chatMessages';
import { chatPageHtml } from './chatPage';
import { AskContext, ChatSession } from './chatSession';
import { Attachment } from './editorContext';
import { openLocation } from './openLocation';

export class ChatPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private attachment: Attachment | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly session: ChatSession,
    private readonly where: () => AskContext,
  ) {}

  /** Show the panel; a selection given here goes with the next question. */
  open(attachment?: Attachment): void {
    if (attachment !== undefined) {
      this.attachment = attachment;
    }
    if (this.panel === undefined) {
      this.panel = this.create();
    } else {
      this.panel.reveal();
      this.postAttachment();
    }
  }

  dispose(): void {
    this.panel?.dispose();
  }

  private create(): vscode.WebviewPanel {
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    const panel = vscode.window.createWebviewPanel('coderag.chat', 'CodeRAG Chat', vscode.ViewColumn.Beside, {
      enableScripts: true,
      localResourceRoots: [dist],
      retainContextWhenHidden: true,
    });
    panel.webview.html = chatPageHtml({
      cspSource: panel.webview.cspSource,
      scriptUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.js')).toString(),
      styleUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.css')).toString(),
    });
    panel.webview.onDidReceiveMessage((message: FromPage) => this.receive(message));
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.session.stop();
    });
    return panel;
  }

  private receive(message: FromPage): void {
    switch (message.type) {
      case 'ready':
        this.post({ type: 'conversation', exchanges: this.session.conversation.map(shownExchange) });
        this.postAttachment();
        break;
      case 'ask':
        void this.ask(message.question);
        break;
      case 'stop':
        this.session.stop();
        break;
      case 'newConversation':
        this.session.clear();
        this.post({ type: 'conversation', exchanges: [] });
        break;
      case 'detach':
        this.attachment = undefined;
        this.postAttachment();
        break;
      case 'openSource':
        void this.openSource(message.uri, message.label);
        break;
    }
  }

  /** Opens a source the daemon gave in this conversation; anything else the page names is refused. */
  async openSource(uri: unknown, label: unknown): Promise<boolean> {
    const source = typeof uri === 'string' && typeof label === 'string' ? this.session.source(uri, label) : undefined;
    if (source === undefined) {
      return false;
    }
    // Beside the panel, not over it: the panel is where the link was clicked.
    const column = this.panel?.viewColumn === vscode.ViewColumn.One ? vscode.ViewColumn.Beside : vscode.ViewColumn.One;
    return openLocation(source.uri, source.range, column);
  }

  private async ask(question: string): Promise<void> {
    if (this.session.busy || question.trim() === '') {
      return;
    }
    const attached = this.attachment;
    const where: AskContext = attached === undefined
      ? this.where()
      : { uri: attached.uri, position: attached.selection.end, selection: attached.selection };
    this.attachment = undefined;
    this.postAttachment();
    this.post({ type: 'started', question });
    const exchange = await this.session.ask(question, where, (text) => this.post({ type: 'delta', text }));
    this.post({ type: 'finished', exchange: shownExchange(exchange) });
  }

  private postAttachment(): void {
    this.post({ type: 'attachment', label: this.attachment?.label });
  }

  private post(message: ToPage): void {
    void this.panel?.webview.postMessage(message);
  }
}
