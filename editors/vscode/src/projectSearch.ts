// "Find in Project by Meaning": a query to the daemon's workspace index (coderag/search), its chunks
// in a quick pick; picking one opens the file at the chunk.
import * as vscode from 'vscode';
import { Range } from 'vscode-languageserver-protocol/node';
import { Notifier } from './notifications';
import { openLocation } from './openLocation';
import { DaemonConnection, SearchHit, SearchRequest, SearchResult } from './protocol';

/** More than the daemon's default of 20: a quick pick is cheap to scroll and filter further. */
export const SEARCH_LIMIT = 50;

export interface SearchItem extends vscode.QuickPickItem {
  uri: string;
  range: Range;
}

function firstLine(text: string): string | undefined {
  return text.split('\n').map((line) => line.trim()).find((line) => line !== '');
}

export function searchItems(result: SearchResult): SearchItem[] {
  return result.results.map((hit: SearchHit) => ({
    label: hit.title,
    description: hit.label,
    detail: firstLine(hit.text),
    uri: hit.uri,
    range: hit.range,
  }));
}

/** The quick pick's title and placeholder: what was searched, and whether the index is complete. */
export function searchHeading(query: string, result: SearchResult): { title: string; placeHolder: string } {
  const files = `${result.files} file${result.files === 1 ? '' : 's'}`;
  if (result.indexing) {
    return {
      title: `CodeRAG: “${query}” (still indexing the project)`,
      placeHolder: `Indexing the project: results cover the ${files} indexed so far`,
    };
  }
  return {
    title: `CodeRAG: “${query}”`,
    placeHolder: result.results.length === 0
      ? `Nothing found in ${files}`
      : `${result.results.length} best matches in ${files}: pick one to open it`,
  };
}

/** Asks for a query (prefilled with `initial`), searches, and opens the match picked. Failures are shown once. */
export async function searchProject(connection: DaemonConnection, notifier: Notifier, initial?: string): Promise<void> {
  const query = (await vscode.window.showInputBox({
    title: 'CodeRAG: Find in Project by Meaning',
    prompt: 'Words for what you are looking for; identifiers match however they are written (verify token, verifyToken, verify_token).',
    placeHolder: 'token expiry',
    value: initial,
  }))?.trim();
  if (query === undefined || query === '') {
    return;
  }
  let result: SearchResult;
  try {
    result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'CodeRAG: searching' },
      () => connection.sendRequest(SearchRequest, { query, limit: SEARCH_LIMIT }));
  } catch (error) {
    // Not awaited: the popup stays until dismissed.
    void notifier.once('error', `CodeRAG search failed: ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  const picked = await vscode.window.showQuickPick(searchItems(result), {
    ...searchHeading(query, result),
    matchOnDescription: true,
    matchOnDetail: true,
  });
  if (picked !== undefined) {
    await openLocation(picked.uri, picked.range);
  }
}
