import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { ChatPanel } from '../../src/chatPanel';
import { ChatSession } from '../../src/chatSession';
import { Attachment } from '../../src/editorContext';
import { citing, FakeDaemon, source, streaming, untilCancelled } from './fakeDaemon';
import { recorded, resetMock, Uri, ViewColumn } from '../support/vscodeMock';

beforeEach(resetMock);

const here = { uri: 'file:///project/a.py', position: { line: 4, character: 2 } };
const selection: Attachment = {
  uri: 'file:///project/auth.py', selection: { start: { line: 9, character: 0 }, end: { line: 12, character: 4 } }, label: 'auth.py:10-13',
};

function open(daemon: FakeDaemon, attachment?: Attachment) {
  const session = new ChatSession(() => daemon);
  const chat = new ChatPanel(Uri.file('/ext') as never, session, () => here);
  chat.open(attachment);
  const panel = recorded.panels.at(-1)!;
  panel.webview.receive({ type: 'ready' });
  return { chat, session, panel };
}

/** Lets the session's promise chain run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test('the page loads only the bundled script and style, under a nonce', () => {
  const { panel } = open(new FakeDaemon(streaming('')));
  const html = panel.webview.html;
  assert.match(html, /script-src 'nonce-([A-Za-z0-9+/=]+)'/);
  const nonce = html.match(/'nonce-([^']+)'/)![1];
  assert.ok(html.includes(`<script nonce="${nonce}" src="https://webview.test//ext/dist/webview.js">`));
  assert.ok(html.includes('href="https://webview.test//ext/dist/webview.css"'));
  assert.match(html, /default-src 'none'/);
  assert.deepEqual((panel.webview.options as { localResourceRoots: Uri[] }).localResourceRoots.map(String), ['file:///ext/dist']);
});

test('a question streams its answer to the page, then its figures', async () => {
  const daemon = new FakeDaemon(streaming('It is ', 'in `auth.py`.'));
  const { panel } = open(daemon);
  panel.webview.posted.length = 0;
  panel.webview.receive({ type: 'ask', question: 'Where is auth?' });
  await settle();
  assert.deepEqual(panel.webview.posted.slice(0, 4), [
    { type: 'attachment', label: undefined },
    { type: 'started', question: 'Where is auth?' },
    { type: 'delta', text: 'It is ' },
    { type: 'delta', text: 'in `auth.py`.' },
  ]);
  assert.deepEqual(panel.webview.posted[4], { type: 'finished', exchange: {
    question: 'Where is auth?', answer: 'It is in `auth.py`.', note: '9 tokens in 400 ms, first after 120 ms', failed: false, sources: [] } });
  assert.deepEqual({ uri: daemon.asked[0].uri, position: daemon.asked[0].position }, here);
});

test('a selection goes with the next question only', async () => {
  const daemon = new FakeDaemon(streaming('ok'));
  const { panel } = open(daemon, selection);
  assert.deepEqual(panel.webview.posted, [
    { type: 'conversation', exchanges: [] },
    { type: 'attachment', label: 'auth.py:10-13' },
  ]);
  panel.webview.receive({ type: 'ask', question: 'What does this do?' });
  await settle();
  panel.webview.receive({ type: 'ask', question: 'And then?' });
  await settle();
  assert.deepEqual(daemon.asked[0].selection, selection.selection);
  assert.equal(daemon.asked[0].uri, selection.uri);
  assert.equal(daemon.asked[1].selection, undefined);
  assert.equal(daemon.asked[1].uri, here.uri);
});

test('the page can drop the selection', async () => {
  const daemon = new FakeDaemon(streaming('ok'));
  const { panel } = open(daemon, selection);
  panel.webview.receive({ type: 'detach' });
  assert.deepEqual(panel.webview.posted.at(-1), { type: 'attachment', label: undefined });
  panel.webview.receive({ type: 'ask', question: 'q' });
  await settle();
  assert.equal(daemon.asked[0].selection, undefined);
});

test('stop from the page cancels the answer', async () => {
  const { panel } = open(new FakeDaemon(untilCancelled('Half')));
  panel.webview.receive({ type: 'ask', question: 'Explain' });
  await settle();
  panel.webview.receive({ type: 'stop' });
  await settle();
  assert.deepEqual(panel.webview.posted.at(-1), { type: 'finished', exchange: { question: 'Explain', answer: 'Half', note: 'Stopped.', failed: false, sources: [] } });
});

test('the conversation outlives the panel; closing it stops a running answer', async () => {
  const daemon = new FakeDaemon(streaming('first answer'));
  const { chat, session, panel } = open(daemon);
  panel.webview.receive({ type: 'ask', question: 'first' });
  await settle();
  panel.dispose();
  chat.open();
  const reopened = recorded.panels[1];
  reopened.webview.receive({ type: 'ready' });
  assert.deepEqual(reopened.webview.posted[0], { type: 'conversation', exchanges: [
    { question: 'first', answer: 'first answer', note: '9 tokens in 400 ms, first after 120 ms', failed: false, sources: [] }] });
  reopened.webview.receive({ type: 'newConversation' });
  assert.deepEqual(reopened.webview.posted.at(-1), { type: 'conversation', exchanges: [] });
  assert.deepEqual(session.conversation, []);

  const running = open(new FakeDaemon(untilCancelled()));
  running.panel.webview.receive({ type: 'ask', question: 'long' });
  await settle();
  assert.equal(running.session.busy, true);
  running.panel.dispose();
  await settle();
  assert.equal(running.session.busy, false);
});

test('opening the panel again reveals it instead of making another', () => {
  const { chat, panel } = open(new FakeDaemon(streaming('')));
  chat.open(selection);
  assert.equal(recorded.panels.length, 1);
  assert.equal(panel.revealed, 1);
  assert.deepEqual(panel.webview.posted.at(-1), { type: 'attachment', label: 'auth.py:10-13' });
});

test('sources go to the page with the answer; a click opens one at its range, beside the panel', async () => {
  const sources = [source('tasktrack/auth.py', 96, 131, 'def verify_token'), source('tasktrack/config.py', 3, 3, 'SECRET')];
  const { panel } = open(new FakeDaemon(citing(sources, 'In tasktrack/auth.py:96-131.')));
  panel.webview.receive({ type: 'ask', question: 'Where?' });
  await settle();
  const finished = panel.webview.posted.at(-1) as { type: string; exchange: { sources: unknown[] } };
  assert.equal(finished.type, 'finished');
  assert.deepEqual(finished.exchange.sources, [
    { uri: 'file:///project/tasktrack/auth.py', path: 'tasktrack/auth.py', label: 'tasktrack/auth.py:96-131', title: 'def verify_token', first: 96, last: 131 },
    { uri: 'file:///project/tasktrack/config.py', path: 'tasktrack/config.py', label: 'tasktrack/config.py:3', title: 'SECRET', first: 3, last: 3 },
  ]);

  panel.webview.receive({ type: 'openSource', uri: 'file:///project/tasktrack/auth.py', label: 'tasktrack/auth.py:96-131' });
  await settle();
  assert.deepEqual(recorded.shownDocuments.map(String), ['file:///project/tasktrack/auth.py']);
  const { selection, viewColumn } = recorded.shownOptions[0]!;
  assert.deepEqual({ start: { ...selection!.start }, end: { ...selection!.end } }, sources[0].range);
  assert.equal(viewColumn, ViewColumn.One);

  // A panel the user moved to the first column: the file opens beside it instead.
  panel.viewColumn = ViewColumn.One;
  panel.webview.receive({ type: 'openSource', uri: sources[1].uri, label: sources[1].label });
  await settle();
  assert.equal(recorded.shownOptions[1]?.viewColumn, ViewColumn.Beside);
});

test('the page can open only sources the daemon gave: anything else it names is refused', async () => {
  const sources = [source('tasktrack/auth.py', 96, 131, 'def verify_token')];
  const { chat, panel } = open(new FakeDaemon(citing(sources, 'ok')));
  panel.webview.receive({ type: 'ask', question: 'Where?' });
  await settle();
  const refused = [
    { uri: 'file:///etc/passwd', label: 'tasktrack/auth.py:96-131' },
    { uri: 'file:///project/tasktrack/auth.py', label: 'tasktrack/auth.py:1-200' },
    { uri: 'command:workbench.action.terminal.new', label: 'tasktrack/auth.py:96-131' },
    { uri: 42, label: 'tasktrack/auth.py:96-131' },
    { uri: 'file:///project/tasktrack/auth.py' },
  ];
  for (const message of refused) {
    panel.webview.receive({ type: 'openSource', ...message });
    assert.equal(await chat.openSource(message.uri, message.label), false, JSON.stringify(message));
  }
  await settle();
  assert.deepEqual(recorded.shownDocuments, []);
  assert.equal(await chat.openSource(sources[0].uri, sources[0].label), true, 'the listed one opens');
});

test('a source the daemon gave with a URI that is not a file is not opened either', async () => {
  const odd = { ...source('x.py', 1, 2, 'x'), uri: 'command:workbench.action.terminal.new' };
  const { chat, panel } = open(new FakeDaemon(citing([odd], 'ok')));
  panel.webview.receive({ type: 'ask', question: 'Where?' });
  await settle();
  assert.equal(await chat.openSource(odd.uri, odd.label), false);
  assert.deepEqual(recorded.shownDocuments, []);
});
