import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import * as vscode from 'vscode';
import { NotificationType, RequestType, ResponseError } from 'vscode-languageserver-protocol/node';
import { Notifier } from '../../src/notifications';
import { SEARCH_LIMIT, searchHeading, searchItems, searchProject } from '../../src/projectSearch';
import { DaemonConnection, SearchParams, SearchResult } from '../../src/protocol';
import { recorded, resetMock } from '../support/vscodeMock';

beforeEach(resetMock);

const result: SearchResult = { indexing: false, files: 14, results: [
  { uri: 'file:///p/tasktrack/auth.py', path: 'tasktrack/auth.py', label: 'tasktrack/auth.py:96-131', title: 'def verify_token',
    range: { start: { line: 95, character: 0 }, end: { line: 130, character: 22 } }, score: 7.41,
    text: '\n   \n    def verify_token(raw: str) -> Claims:\n        """Check it."""\n' },
  { uri: 'file:///p/tasktrack/errors.py', path: 'tasktrack/errors.py', label: 'tasktrack/errors.py:4', title: 'class TokenExpired',
    range: { start: { line: 3, character: 0 }, end: { line: 3, character: 30 } }, score: 2.5, text: 'class TokenExpired(Exception): ...' },
] };

/** A daemon that answers coderag/search with `answer`, recording what it was asked. */
function searching(answer: (params: SearchParams) => Promise<SearchResult>) {
  const asked: { method: string; params: SearchParams }[] = [];
  const connection: DaemonConnection = {
    sendRequest<P, R, E>(type: RequestType<P, R, E>, params: P): Promise<R> {
      asked.push({ method: type.method, params: params as SearchParams });
      return answer(params as SearchParams) as Promise<R>;
    },
    onNotification<P>(_type: NotificationType<P>, _handler: (params: P) => void) {
      return { dispose: () => undefined };
    },
  };
  return { connection, asked };
}

function notifier(): Notifier {
  return new Notifier(vscode.window.createOutputChannel('test', { log: true }) as vscode.LogOutputChannel);
}

test('results are listed by title, with their label and first line of code', () => {
  assert.deepEqual(searchItems(result).map(({ label, description, detail }) => ({ label, description, detail })), [
    { label: 'def verify_token', description: 'tasktrack/auth.py:96-131', detail: 'def verify_token(raw: str) -> Claims:' },
    { label: 'class TokenExpired', description: 'tasktrack/errors.py:4', detail: 'class TokenExpired(Exception): ...' },
  ]);
  assert.deepEqual(searchHeading('token expiry', result),
    { title: 'CodeRAG: “token expiry”', placeHolder: '2 best matches in 14 files: pick one to open it' });
  assert.deepEqual(searchHeading('nothing', { indexing: false, files: 1, results: [] }),
    { title: 'CodeRAG: “nothing”', placeHolder: 'Nothing found in 1 file' });
});

test('while the index is built, the pick says that the results are partial', () => {
  const heading = searchHeading('token', { ...result, indexing: true, files: 3 });
  assert.match(heading.title, /still indexing/);
  assert.equal(heading.placeHolder, 'Indexing the project: results cover the 3 files indexed so far');
});

test('the query (prefilled with the selection) goes to the daemon; the pick opens the file at the chunk', async () => {
  const { connection, asked } = searching(async () => result);
  recorded.inputBoxAnswer = (options) => `  ${options.value} expiry `;
  recorded.quickPickAnswer = (items) => items[1];
  await searchProject(connection, notifier(), 'token');
  assert.equal(recorded.inputBoxes[0].value, 'token');
  assert.deepEqual(asked, [{ method: 'coderag/search', params: { query: 'token expiry', limit: SEARCH_LIMIT } }]);
  const [pick] = recorded.quickPicks;
  assert.equal((pick.items as { description: string }[]).length, 2);
  assert.deepEqual(pick.options, { title: 'CodeRAG: “token expiry”', placeHolder: '2 best matches in 14 files: pick one to open it',
    matchOnDescription: true, matchOnDetail: true });
  assert.deepEqual(recorded.shownDocuments.map(String), ['file:///p/tasktrack/errors.py']);
  const selection = recorded.shownOptions[0]!.selection!;
  assert.deepEqual({ start: { ...selection.start }, end: { ...selection.end } }, result.results[1].range);
  assert.deepEqual(recorded.messages, []);
});

test('an indexing daemon\'s answer is shown with a placeholder that says so', async () => {
  const { connection } = searching(async () => ({ ...result, indexing: true, files: 5 }));
  recorded.inputBoxAnswer = () => 'token';
  recorded.quickPickAnswer = () => undefined;
  await searchProject(connection, notifier());
  const options = recorded.quickPicks[0].options as { placeHolder: string };
  assert.equal(options.placeHolder, 'Indexing the project: results cover the 5 files indexed so far');
  assert.deepEqual(recorded.shownDocuments, [], 'dismissing the pick opens nothing');
});

test('Escape or an empty query asks the daemon nothing', async () => {
  const { connection, asked } = searching(async () => result);
  recorded.inputBoxAnswer = () => undefined;
  await searchProject(connection, notifier(), 'token');
  recorded.inputBoxAnswer = () => '   ';
  await searchProject(connection, notifier());
  assert.deepEqual(asked, []);
  assert.deepEqual(recorded.quickPicks, []);
});

test('a failed search is shown once, however often it fails', async () => {
  const { connection } = searching(async () => {
    throw new ResponseError(-32803, 'model not available');
  });
  const notify = notifier();
  recorded.inputBoxAnswer = () => 'token';
  await searchProject(connection, notify);
  await searchProject(connection, notify);
  assert.deepEqual(recorded.messages, [{ severity: 'error', message: 'CodeRAG search failed: model not available', actions: [] }]);
  assert.deepEqual(recorded.quickPicks, []);
});

test('a result whose URI is not a file is listed but not opened', async () => {
  const odd = { ...result.results[0], uri: 'command:workbench.action.terminal.new' };
  const { connection } = searching(async () => ({ ...result, results: [odd] }));
  recorded.inputBoxAnswer = () => 'token';
  await searchProject(connection, notifier());
  assert.equal(recorded.quickPicks.length, 1);
  assert.deepEqual(recorded.shownDocuments, []);
});
