// The extension's own client (DaemonClient: vscode-languageclient with the extension's options and
// middleware) against the real daemon on the tiny model, with VS Code's API mocked: document sync as
// the editor sends it, inline completions through the registered provider, the chat panel and its
// sources, the project search, the context list, and a crash that the client recovers from and reports.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type * as vscode from 'vscode';
import { CancellationTokenSource } from 'vscode-languageserver-protocol/node';
import { ChatPanel } from '../../src/chatPanel';
import { ChatSession } from '../../src/chatSession';
import { showContext } from '../../src/contextPick';
import { DaemonClient } from '../../src/daemonClient';
import { Notifier } from '../../src/notifications';
import { SearchItem, searchProject } from '../../src/projectSearch';
import { ContextRequest, DocumentTextRequest, SearchRequest } from '../../src/protocol';
import { StatusBar } from '../../src/statusBar';
import {
  changeSettings, editDocument, FakeTextDocument, InlineCompletionList, InlineCompletionTriggerKind, languages, openDocument,
  Position, Range, recorded, resetMock, Uri, window, workspace as fakeWorkspace,
} from '../support/vscodeMock';
import { PYTHON, sampleWorkspace, tinyModel, until } from './daemonProcess';

let client: DaemonClient;
let output: vscode.LogOutputChannel;
let workspace: string;
let pids: () => number[];
const statusText = () => recorded.statusBarItems[0].text;

before(async () => {
  resetMock();
  workspace = sampleWorkspace();
  // The daemon is started through a shell that notes its process id, so the test can kill it.
  const pidFile = path.join(workspace, '..', 'daemon.pids');
  pids = () => readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
  for (const [name, value] of Object.entries({
    'daemon.command': ['/bin/sh', '-c', 'echo $$ >> "$1"; exec "$0" -m coderag_daemon', PYTHON, pidFile],
    modelPath: tinyModel(), threads: 1, nCtx: 4096, contextTokens: 2500, preloadDelayMs: 100,
    'inlineCompletions.enable': true, 'inlineCompletions.trigger': 'automatic', 'inlineCompletions.languages': ['python'],
  })) {
    recorded.settings.set(`coderag.${name}`, value);
  }
  fakeWorkspace.workspaceFolders = [{ uri: Uri.file(workspace), name: 'tasktrack', index: 0 }];
  output = window.createOutputChannel('CodeRAG') as unknown as vscode.LogOutputChannel;
  client = new DaemonClient(output, new Notifier(output), new StatusBar(true));
  fakeWorkspace.onDidChangeConfiguration((event) => client.configurationChanged(event as vscode.ConfigurationChangeEvent));
  await client.start();
  await until(() => statusText().startsWith('$(check)'), 'the daemon to be ready');
});

after(async () => {
  await client?.stop();
});

function open(relative: string, languageId = 'python'): FakeTextDocument {
  const file = path.join(workspace, relative);
  const document = new FakeTextDocument(Uri.file(file), languageId, 1, readFileSync(file, 'utf8'));
  openDocument(document);
  return document;
}

const range = (line: number, character: number, endLine = line, endCharacter = character) =>
  new Range(new Position(line, character), new Position(endLine, endCharacter));

async function daemonCopy(document: FakeTextDocument) {
  return client.connection!.sendRequest(DocumentTextRequest, { uri: document.uri.toString() });
}

type Provider = { provideInlineCompletionItems(...args: unknown[]): Promise<InlineCompletionList | null | undefined> };

function complete(document: FakeTextDocument, position: Position, triggerKind: InlineCompletionTriggerKind) {
  const provider = languages.inlineCompletionProviders.at(-1)!.provider as Provider;
  return provider.provideInlineCompletionItems(document, position, { triggerKind, selectedCompletionInfo: undefined },
    new CancellationTokenSource().token);
}

test('the client starts the daemon with the settings and shows it ready in the status bar', () => {
  assert.equal(statusText(), '$(check) CodeRAG 0/4.1k', 'n_ctx 4096 came from the settings');
  assert.deepEqual(recorded.messages, []);
});

test('what the editor opens and types reaches the daemon exactly', async () => {
  const auth = open('tasktrack/auth.py');
  open('tasktrack/config.py');
  editDocument(auth, range(2, 0), '# the key 🔑 is checked here\n');
  editDocument(auth, range(3, 0, 4, 4), 'import json\n');
  editDocument(auth, range(2, 10, 2, 12), '');
  assert.deepEqual(await daemonCopy(auth), { text: auth.getText(), version: auth.version });
  recorded.quickPickAnswer = () => undefined;
  await showContext(await client.connection!.sendRequest(ContextRequest, {}));
  const [pick] = recorded.quickPicks;
  assert.deepEqual((pick.items as { label: string }[]).map((item) => item.label), ['tasktrack/config.py', 'tasktrack/auth.py']);
});

test('inline completions come through the registered provider, where and when the settings allow', async () => {
  const auth = fakeWorkspace.textDocuments[0];
  editDocument(auth, range(8, 0), 'def check(token):\n    ');
  const position = new Position(9, 4);
  const result = await complete(auth, position, InlineCompletionTriggerKind.Automatic);
  assert.ok(result instanceof InlineCompletionList);
  for (const item of result.items) {
    assert.equal(typeof item.insertText, 'string');
    assert.deepEqual(item.range, range(9, 4));
  }
  await until(() => / · \d+(\.\d)? m?s$/.test(statusText()), 'the latency in the status bar');

  changeSettings({ 'coderag.inlineCompletions.trigger': 'onDemand' });
  assert.equal(await complete(auth, position, InlineCompletionTriggerKind.Automatic), null);
  assert.ok(await complete(auth, position, InlineCompletionTriggerKind.Invoke) instanceof InlineCompletionList);
  const readme = open('README.md', 'markdown');
  assert.equal(await complete(readme, new Position(0, 0), InlineCompletionTriggerKind.Invoke), null, 'not an enabled language');
});

test('the chat panel streams an answer from the daemon and stops one', async () => {
  const session = new ChatSession(() => client.connection);
  const auth = fakeWorkspace.textDocuments[0];
  const chat = new ChatPanel(Uri.file('/ext') as never, session, () => ({ uri: auth.uri.toString(), position: { line: 9, character: 4 } }));
  chat.open();
  const page = recorded.panels.at(-1)!.webview;
  page.receive({ type: 'ready' });
  const posted = (type: string) => page.posted.filter((m) => (m as { type: string }).type === type);
  page.receive({ type: 'ask', question: 'Where is a token checked?' });
  await until(() => posted('finished').length === 1, 'the answer');
  const [answered] = posted('finished') as { exchange: { answer: string; note: string; sources: { uri: string; label: string }[] } }[];
  const streamed = (posted('delta') as { text: string }[]).map((m) => m.text).join('');
  assert.ok(streamed.length > 0);
  assert.equal(streamed, answered.exchange.answer);
  assert.match(answered.exchange.note, /^\d+ tokens in /);
  // A source link clicked on the page opens its file.
  assert.ok(answered.exchange.sources.length > 0, 'the answer lists sources');
  const [cited] = answered.exchange.sources;
  recorded.shownDocuments = [];
  page.receive({ type: 'openSource', uri: cited.uri, label: cited.label });
  await until(() => recorded.shownDocuments.length === 1, 'the source to open');
  assert.equal(recorded.shownDocuments[0].toString(), cited.uri);

  // The page sends stop as soon as the next answer starts to stream.
  const post = page.postMessage;
  page.postMessage = async (message) => {
    if ((message as { type: string }).type === 'delta') {
      page.receive({ type: 'stop' });
    }
    return post(message);
  };
  page.receive({ type: 'ask', question: 'Explain everything in detail.' });
  await until(() => posted('finished').length === 2, 'the stop');
  const stopped = posted('finished')[1] as { exchange: { answer: string; note: string } };
  assert.equal(stopped.exchange.note, 'Stopped.');
  assert.deepEqual(recorded.messages, [], 'a stopped answer is no error');
  chat.dispose();
});

test('Find in Project by Meaning lists the daemon\'s matches and opens the one picked', async () => {
  const connection = client.connection!;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (!(await connection.sendRequest(SearchRequest, { query: 'reminder', limit: 1 })).indexing) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  recorded.quickPicks = [];
  recorded.shownDocuments = [];
  recorded.shownOptions = [];
  recorded.inputBoxAnswer = () => 'reminder recurrence';
  recorded.quickPickAnswer = (items) => (items as SearchItem[]).find((item) => item.description?.startsWith('tasktrack/scheduler.py:'));
  await searchProject(connection, new Notifier(output), 'reminder');
  const items = recorded.quickPicks[0].items as SearchItem[];
  assert.ok(items.length > 0);
  assert.doesNotMatch((recorded.quickPicks[0].options as { placeHolder: string }).placeHolder, /Indexing/);
  const picked = items.find((item) => item.description?.startsWith('tasktrack/scheduler.py:'))!;
  assert.ok(picked, JSON.stringify(items.map((item) => item.description)));
  assert.deepEqual(recorded.shownDocuments.map(String), [Uri.file(path.join(workspace, 'tasktrack', 'scheduler.py')).toString()]);
  const selection = recorded.shownOptions[0]!.selection!;
  assert.deepEqual({ start: { ...selection.start }, end: { ...selection.end } }, picked.range);
  assert.deepEqual(recorded.messages, []);
});

test('a crashed daemon is restarted, and the user is told once', async () => {
  const [first] = pids();
  process.kill(first, 'SIGKILL');
  await until(() => pids().length === 2, 'a new daemon process');
  await until(() => statusText().startsWith('$(check)'), 'the new daemon to be ready');
  assert.deepEqual(recorded.messages, [
    { severity: 'warning', message: 'The CodeRAG daemon stopped unexpectedly and was restarted.', actions: ['Show Log'] },
  ]);
  // The restarted daemon has the open documents again.
  const auth = fakeWorkspace.textDocuments[0];
  assert.deepEqual(await daemonCopy(auth), { text: auth.getText(), version: auth.version });

  process.kill(pids()[1], 'SIGKILL');
  await until(() => pids().length === 3, 'another daemon process');
  await until(() => statusText().startsWith('$(check)'), 'the third daemon to be ready');
  assert.equal(recorded.messages.length, 1, 'the same message is not shown again');
});
