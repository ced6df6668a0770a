// The status bar item: daemon state, tokens cached of n_ctx, last latency; a click shows the context.
import * as vscode from 'vscode';
import { StatusView, summarize } from './statusSummary';

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('coderag.status', vscode.StatusBarAlignment.Right, 100);
  private view: StatusView;

  constructor(inlineEnabled: boolean) {
    this.item.name = 'CodeRAG';
    this.item.command = 'coderag.showContext';
    this.view = { phase: 'starting', inlineEnabled };
    this.render();
    this.item.show();
  }

  update(change: Partial<StatusView>): void {
    this.view = { ...this.view, ...change };
    this.render();
  }

  dispose(): void {
    this.item.dispose();
  }

  private render(): void {
    const summary = summarize(this.view);
    this.item.text = summary.text;
    this.item.tooltip = summary.tooltip;
    this.item.backgroundColor = summary.error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }
}
