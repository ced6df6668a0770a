// The extension's client layer against the real daemon on the tiny model: its settings as
// initializationOptions and as a configuration change, document sync, an inline completion, a
// streamed chat answer and a stopped one, the context, the cache and the status bar's figures.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { TextDocument } from 'vscode-languageserver-textdocument';
import {
  DidChangeConfigurationNotification,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  TextDocumentContentChangeEvent,
} from 'vscode-languageserver-protocol/node';
import { ChatSession } from '../../src/chatSession';
import { ChatDeltaNotification, ClearCacheRequest, ContextRequest, DocumentTextRequest } from '../../src/protocol';
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

test('a chat answer streams through the chat session and matches the final answer', async () => {
  const session = new ChatSession(() => daemon.connection);
  const auth = documents.get('tasktrack/auth.py')!;
  const pieces: string[] = [];
  const first = await session.ask('Where is a token checked?', { uri: auth.uri, position: { line: 9, character: 4 } }, (text) => pieces.push(text));
  assert.equal(first.outcome.kind, 'answered', JSON.stringify(first.outcome));
  assert.ok(pieces.length > 0, 'the answer streamed');
  assert.equal(pieces.join(''), first.answer);
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
