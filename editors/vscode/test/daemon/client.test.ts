// The extension's client layer against the real daemon on the tiny model: its settings as
// initializationOptions and as a configuration change, document sync, an inline completion, the
// workspace search, a streamed chat answer with its sources and a stopped one, the context, the cache
// and the status bar's figures.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TextDocument } from 'vscode-languageserver-textdocument';
import {
  DidChangeConfigurationNotification,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  ResponseError,
  TextDocumentContentChangeEvent,
} from 'vscode-languageserver-protocol/node';
import { ChatSession } from '../../src/chatSession';
import { shownSource } from '../../src/chatMessages';
import { isFileUri } from '../../src/openLocation';
import { searchItems } from '../../src/projectSearch';
import {
  ChatDelta, ChatDeltaNotification, ClearCacheRequest, DaemonConnection, ContextRequest, DocumentTextRequest, SearchRequest, SearchResult, Source,
} from '../../src/protocol';
import { daemonOptions, SECTION } from '../../src/settings';
import { summarize } from '../../src/statusSummary';
import { configuration } from '../support/packageSettings';
import { Daemon, sampleWorkspace, startDaemon, tinyModel, until } from './daemonProcess';

/** The user's settings for these tests: small and fast, on the tiny model. */
const userSettings = { modelPath: tinyModel(), threads: 1, nCtx: 4096, contextTokens: 2500, preloadDelayMs: 100 };

let daemon: Daemon;
let workspace: string;
const documents = new Map<string, TextDocument>();

before(async () => {
  workspace = sampleWorkspace();
  daemon = await startDaemon(workspace, daemonOptions(configuration(userSettings)));
  await until(() => daemon.statuses.find((status) => status.state !== 'loading'), 'the model to load');
});

after(async () => {
  await daemon?.stop();
});

/** Opens a file of the sample project as the language client would, keeping our copy to edit. */
async function open(relative: string): Promise<TextDocument> {
  const file = path.join(workspace, relative);
  const document = TextDocument.create(pathToFileURL(file).href, 'python', 1, readFileSync(file, 'utf8'));
  documents.set(relative, document);
  await daemon.connection.sendNotification(DidOpenTextDocumentNotification.type, {
    textDocument: { uri: document.uri, languageId: 'python', version: 1, text: document.getText() },
  });
  return document;
}

async function edit(relative: string, changes: TextDocumentContentChangeEvent[]): Promise<TextDocument> {
  const document = TextDocument.update(documents.get(relative)!, changes, documents.get(relative)!.version + 1);
  documents.set(relative, document);
  await daemon.connection.sendNotification(DidChangeTextDocumentNotification.type, {
    textDocument: { uri: document.uri, version: document.version }, contentChanges: changes,
  });
  return document;
}

const lastStatus = () => daemon.statuses.at(-1)!;

test('the daemon starts from the extension\'s settings and refuses none of them', () => {
  assert.deepEqual(daemon.shown, [], 'no setting was reported as unknown or invalid');
  const capabilities = daemon.initializeResult.capabilities;
  assert.ok(capabilities.inlineCompletionProvider);
  assert.equal((capabilities.textDocumentSync as { change: number }).change, 2, 'incremental sync');
  const status = lastStatus();
  assert.equal(status.state, 'ready', status.error ?? '');
  assert.equal(status.nCtx, 4096, 'nCtx came from the settings (no flag was given)');
  assert.equal(status.model, userSettings.modelPath);
});

test('opened and edited files are the daemon\'s copies exactly, and the edited one moves to the end', async () => {
  await open('tasktrack/auth.py');
  await open('tasktrack/config.py');
  const edited = await edit('tasktrack/auth.py', [
    { range: { start: { line: 2, character: 0 }, end: { line: 2, character: 0 } }, text: '# cache 🔑 checked here\n' },
    { range: { start: { line: 3, character: 0 }, end: { line: 5, character: 4 } }, text: 'import json\n' },
    { range: { start: { line: 2, character: 10 }, end: { line: 2, character: 12 } }, text: '' },
  ]);
  const copy = await daemon.connection.sendRequest(DocumentTextRequest, { uri: edited.uri });
  assert.deepEqual(copy, { text: edited.getText(), version: edited.version });
  const context = await daemon.connection.sendRequest(ContextRequest, {});
  assert.deepEqual(context.files.map((file) => file.path), ['tasktrack/config.py', 'tasktrack/auth.py']);
  assert.ok(context.files.every((file) => file.tokens > 0));
});

test('an inline completion answers at the cursor, and the status bar shows its latency', async () => {
  const document = await edit('tasktrack/auth.py', [
    { range: { start: { line: 8, character: 0 }, end: { line: 8, character: 0 } }, text: 'def check(token):\n    ' },
  ]);
  const position = { line: 9, character: 4 };
  const seen = daemon.statuses.length;
  const result = await daemon.connection.sendRequest(InlineCompletionRequest.type, {
    textDocument: { uri: document.uri }, position, context: { triggerKind: InlineCompletionTriggerKind.Invoked },
  });
  const items = Array.isArray(result) ? result : result?.items ?? [];
  assert.ok(items.length <= 1);
  for (const item of items) {
    assert.equal(typeof item.insertText, 'string');
    assert.deepEqual(item.range, { start: position, end: position });
  }
  const status = await until(() => daemon.statuses.slice(seen).find((s) => s.lastRequest?.kind === 'completion'), 'completion figures');
  assert.ok(status.lastRequest!.tokensInContext > 0);
  assert.match(summarize({ phase: 'running', status, inlineEnabled: true }).text, /^\$\(\w+(~spin)?\) CodeRAG [\d.]+k?\/4\.1k · \d+(\.\d)? (ms|s)$/);
});

/** A source or search hit as the protocol describes it: a file of the workspace, its label naming its lines. */
function assertLocation(hit: Source): void {
  assert.ok(isFileUri(hit.uri), hit.uri);
  assert.equal(fileURLToPath(hit.uri), path.join(workspace, hit.path));
  const { first, last } = shownSource(hit);
  assert.equal(hit.label, first === last ? `${hit.path}:${first}` : `${hit.path}:${first}-${last}`);
  assert.ok(hit.range.start.line <= hit.range.end.line);
  assert.equal(typeof hit.title, 'string');
  assert.equal(typeof hit.score, 'number');
}

test('the workspace search finds the chunk of a file that holds a word, once the index is built', async () => {
  const search = () => daemon.connection.sendRequest(SearchRequest, { query: 'reminder recurrence', limit: 5 });
  let result: SearchResult = await search();
  for (const deadline = Date.now() + 60_000; result.indexing && Date.now() < deadline; result = await search()) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(result.indexing, false, 'the index was built');
  assert.ok(result.files >= 10, `${result.files} files indexed`);
  assert.ok(result.results.length > 0 && result.results.length <= 5, `${result.results.length} results`);
  const scheduler = result.results.find((hit) => hit.path === 'tasktrack/scheduler.py');
  assert.ok(scheduler, JSON.stringify(result.results.map((hit) => hit.label)));
  result.results.forEach(assertLocation);
  // The chunk's text is the file's, at its range.
  const lines = readFileSync(path.join(workspace, scheduler.path), 'utf8').split('\n');
  assert.equal(scheduler.text.split('\n')[0], lines[scheduler.range.start.line]);
  assert.match(scheduler.text, /[Rr]eminder|[Rr]ecurrence/);
  // As the quick pick lists it.
  const item = searchItems(result).find((candidate) => candidate.uri === scheduler.uri)!;
  assert.deepEqual([item.label, item.description], [scheduler.title, scheduler.label]);
  assert.ok(item.detail !== undefined && item.detail !== '');

  await assert.rejects(daemon.connection.sendRequest(SearchRequest, { query: '  ' }),
    (error: unknown) => error instanceof ResponseError && error.code === -32602);
});

test('a chat answer streams through the chat session and matches the final answer; the last delta brings the sources', async () => {
  // The session's connection, recording the deltas it gets (a connection has one handler per method).
  const deltas: ChatDelta[] = [];
  const connection: DaemonConnection = daemon.connection;
  const recording: DaemonConnection = {
    sendRequest: (type, params, token) => connection.sendRequest(type, params, token),
    onNotification: (type, handler) => connection.onNotification(type, (params) => {
      deltas.push(params as ChatDelta);
      handler(params);
    }),
  };
  const session = new ChatSession(() => recording);
  const auth = documents.get('tasktrack/auth.py')!;
  const pieces: string[] = [];
  const first = await session.ask('Where is a token checked?', { uri: auth.uri, position: { line: 9, character: 4 } }, (text) => pieces.push(text));
  assert.equal(first.outcome.kind, 'answered', JSON.stringify(first.outcome));
  assert.ok(pieces.length > 0, 'the answer streamed');
  assert.equal(pieces.join(''), first.answer);
  const closing = deltas.at(-1)!;
  assert.deepEqual([closing.done, closing.delta], [true, '']);
  assert.ok(Array.isArray(closing.sources));
  assert.equal(deltas.filter((delta) => delta.done === true).length, 1, 'one closing delta');
  assert.deepEqual(first.sources, closing.sources, 'the result lists the same sources');
  assert.ok(first.sources.length > 0, 'files outside the context mention tokens');
  first.sources.forEach(assertLocation);
  const inContext = ['tasktrack/auth.py', 'tasktrack/config.py'];
  assert.deepEqual(first.sources.filter((source) => inContext.includes(source.path)), [], 'only files not in the context already');
  assert.equal(session.source(first.sources[0].uri, first.sources[0].label), first.sources[0]);
  const selection = { start: { line: 0, character: 0 }, end: { line: 4, character: 0 } };
  const second = await session.ask('And this part?', { uri: auth.uri, position: selection.end, selection }, () => undefined);
  assert.equal(second.outcome.kind, 'answered', JSON.stringify(second.outcome));
  assert.equal(session.conversation.length, 2);
});

test('stop cancels a running answer and frees the model', async () => {
  const session = new ChatSession(() => daemon.connection);
  const exchange = await session.ask('Explain everything in detail.', {}, () => session.stop());
  assert.equal(exchange.outcome.kind, 'stopped', JSON.stringify(exchange.outcome));
  assert.ok(exchange.answer.length > 0, 'what streamed before the stop is kept');
  // The model is free again at once; the daemon stops within a token, so at most one late piece
  // may follow its answer, and the session no longer listens for it.
  let late = 0;
  const listening = daemon.connection.onNotification(ChatDeltaNotification, () => void late++);
  const context = await daemon.connection.sendRequest(ContextRequest, {});
  assert.equal(context.files.length, 2);
  listening.dispose();
  assert.ok(late <= 1, `${late} pieces after the stop`);
  assert.equal(session.conversation[0].answer, exchange.answer);
});

test('clearing the cache empties it; the context keeps its files', async () => {
  assert.deepEqual(await daemon.connection.sendRequest(ClearCacheRequest, {}), {});
  const context = await daemon.connection.sendRequest(ContextRequest, {});
  assert.equal(context.tokensCached, 0);
  assert.deepEqual(context.files.map((file) => file.cached), [false, false]);
});

test('a settings change is sent as the extension sends it, and the daemon applies it', async () => {
  const seen = daemon.statuses.length;
  const options = daemonOptions(configuration({ ...userSettings, nCtx: 3072 }));
  await daemon.connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: options } });
  const reloaded = await until(() => daemon.statuses.slice(seen).find((s) => s.state === 'ready' && s.nCtx === 3072), 'the model reloaded');
  assert.equal(reloaded.files, 2, 'the open files stay in the context');
  assert.deepEqual(daemon.shown, [], 'every setting was accepted');
});
