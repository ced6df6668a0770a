// Where the user is, for a chat question: the last file editor (the chat panel itself takes the
// focus, so "active editor" is gone by the time the question is typed) and its selection.
import * as vscode from 'vscode';
import { Range } from 'vscode-languageserver-protocol/node';
import { AskContext } from './chatSession';

/** A selection sent with the next question. */
export interface Attachment {
  uri: string;
  selection: Range;
  /** "src/auth.py:10-24" */
  label: string;
}

function isFileEditor(editor: vscode.TextEditor | undefined): editor is vscode.TextEditor {
  return editor !== undefined && editor.document.uri.scheme === 'file';
}

function lspRange(range: vscode.Range): Range {
  return {
    start: { line: range.start.line, character: range.start.character },
    end: { line: range.end.line, character: range.end.character },
  };
}

export function selectionAttachment(editor: vscode.TextEditor | undefined): Attachment | undefined {
  if (!isFileEditor(editor) || editor.selection.isEmpty) {
    return undefined;
  }
  const { start, end } = editor.selection;
  const lines = start.line === end.line ? `${start.line + 1}` : `${start.line + 1}-${end.line + 1}`;
  return {
    uri: editor.document.uri.toString(),
    selection: lspRange(editor.selection),
    label: `${vscode.workspace.asRelativePath(editor.document.uri)}:${lines}`,
  };
}

/** The selected text as a search query: one line, at most `max` characters; nothing without a selection. */
export function selectedQuery(editor: vscode.TextEditor | undefined, max = 200): string | undefined {
  if (editor === undefined || editor.selection.isEmpty) {
    return undefined;
  }
  const text = editor.document.getText(editor.selection).replace(/\s+/g, ' ').trim().slice(0, max);
  return text === '' ? undefined : text;
}

export class EditorTracker implements vscode.Disposable {
  private last: vscode.TextEditor | undefined;
  private readonly subscription: vscode.Disposable;

  constructor() {
    this.last = isFileEditor(vscode.window.activeTextEditor) ? vscode.window.activeTextEditor : undefined;
    this.subscription = vscode.window.onDidChangeActiveTextEditor((editor) => {
      if (isFileEditor(editor)) {
        this.last = editor;
      }
    });
  }

  /** The last file editor and its cursor, or nothing once that editor is closed. */
  askContext(): AskContext {
    const editor = this.last;
    if (editor === undefined || editor.document.isClosed) {
      return {};
    }
    const cursor = editor.selection.active;
    return { uri: editor.document.uri.toString(), position: { line: cursor.line, character: cursor.character } };
  }

  dispose(): void {
    this.subscription.dispose();
  }
}
