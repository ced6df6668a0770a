import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { ChatPanel } from '../../src/chatPanel';
import { ChatSession } from '../../src/chatSession';
import { Attachment } from '../../src/editorContext';
import { FakeDaemon, streaming, untilCancelled } from './fakeDaemon';
import { recorded, resetMock, Uri } from '../support/vscodeMock';

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
    question: 'Where is auth?', answer: 'It is in `auth.py`.', note: '9 tokens in 400 ms, first after 120 ms', failed: false } });
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
  assert.deepEqual(panel.webview.posted.at(-1), { type: 'finished', exchange: { question: 'Explain', answer: 'Half', note: 'Stopped.', failed: false } });
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
    { question: 'first', answer: 'first answer', note: '9 tokens in 400 ms, first after 120 ms', failed: false }] });
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
