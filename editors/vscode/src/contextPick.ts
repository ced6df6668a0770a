// "Show context": the files of the daemon's context in their cached order, with token counts;
// picking one opens it.
import * as vscode from 'vscode';
import { formatTokens } from './format';
import { ContextResult } from './protocol';

export interface ContextItem extends vscode.QuickPickItem {
  uri: string;
}

export function contextItems(context: ContextResult): ContextItem[] {
  return context.files.map((file, index) => ({
    label: file.path,
    description: [
      `${file.tokens} tokens`,
      file.cached ? 'cached' : 'not cached',
      ...(file.truncated ? ['truncated to the budget'] : []),
    ].join(' · '),
    detail: index === context.files.length - 1 ? 'most recently edited' : undefined,
    uri: file.uri,
  }));
}

export function contextTitle(context: ContextResult): string {
  return `CodeRAG context: ${formatTokens(context.tokensCached)} of ${formatTokens(context.nCtx)} tokens cached, ` +
    `${context.files.length} files, least recently edited first`;
}

export async function showContext(context: ContextResult): Promise<void> {
  const picked = await vscode.window.showQuickPick(contextItems(context), {
    title: contextTitle(context),
    placeHolder: context.files.length === 0 ? 'No file is in the context yet: open one.' : 'Open a file of the context',
    matchOnDescription: true,
  });
  if (picked !== undefined) {
    await vscode.window.showTextDocument(vscode.Uri.parse(picked.uri));
  }
}
