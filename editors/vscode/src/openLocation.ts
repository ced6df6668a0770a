// Opening a place the daemon named (a chat source, a search result): the file with the range selected.
// Only file: URIs, so that nothing the daemon or a page sends can open another kind of resource.
import * as vscode from 'vscode';
import { Range } from 'vscode-languageserver-protocol/node';

export function isFileUri(uri: string): boolean {
  // The text itself too: vscode.Uri.parse takes a bare path for a file.
  if (!/^file:\/\//.test(uri)) {
    return false;
  }
  try {
    return vscode.Uri.parse(uri).scheme === 'file';
  } catch {
    return false;
  }
}

/** Shows `uri` with `range` selected and revealed; false (nothing opened) for a URI that is not a file. */
export async function openLocation(uri: string, range: Range, viewColumn?: vscode.ViewColumn): Promise<boolean> {
  if (!isFileUri(uri)) {
    return false;
  }
  const selection = new vscode.Range(range.start.line, range.start.character, range.end.line, range.end.character);
  await vscode.window.showTextDocument(vscode.Uri.parse(uri), { selection, viewColumn });
  return true;
}
