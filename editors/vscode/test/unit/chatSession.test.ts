import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResponseError } from 'vscode-languageserver-protocol/node';
import { ChatSession } from '../../src/chatSession';
import { citing, FakeDaemon, source, stats, streaming, untilCancelled } from './fakeDaemon';

test('an answer streams its pieces, and only those of its own token', async () => {
  const daemon = new FakeDaemon(async (params, _token, emit) => {
    emit({ token: 'someone-else', delta: 'noise' });
    emit({ token: params.token!, delta: 'The expiry ' });
    emit({ token: params.token!, delta: 'is checked in `verify`.' });
    return { answer: 'The expiry is checked in `verify`.', stats };
  });
  const session = new ChatSession(() => daemon);
  const pieces: string[] = [];
  const where = { uri: 'file:///p/auth.py', position: { line: 3, character: 0 } };
  const exchange = await session.ask('Where is expiry checked?', where, (text) => pieces.push(text));
  assert.deepEqual(pieces, ['The expiry ', 'is checked in `verify`.']);
  assert.deepEqual(exchange, { question: 'Where is expiry checked?', answer: 'The expiry is checked in `verify`.', outcome: { kind: 'answered', stats }, sources: [] });
  assert.deepEqual(daemon.asked[0], { question: 'Where is expiry checked?', history: [], ...where, token: daemon.asked[0].token });
  assert.equal(typeof daemon.asked[0].token, 'string');
  assert.equal(daemon.listening, false, 'the delta handler is gone once the answer is in');
  assert.equal(session.busy, false);
});

test('the conversation so far goes with each question, oldest first, without questions that got no answer', async () => {
  let fail = false;
  const daemon = new FakeDaemon(async (params, token, emit) => {
    if (fail) {
      throw new ResponseError(-32803, 'no model');
    }
    return streaming(`answer to ${params.question}`)(params, token, emit);
  });
  const session = new ChatSession(() => daemon);
  await session.ask('one', {}, () => undefined);
  fail = true;
  const failed = await session.ask('two', {}, () => undefined);
  assert.deepEqual(failed.outcome, { kind: 'failed', message: 'no model' });
  fail = false;
  await session.ask('three', {}, () => undefined);
  assert.deepEqual(daemon.asked[2].history, [
    { role: 'user', content: 'one' },
    { role: 'assistant', content: 'answer to one' },
  ]);
  assert.deepEqual(session.conversation.map((exchange) => exchange.question), ['one', 'two', 'three']);
  assert.notEqual(daemon.asked[0].token, daemon.asked[2].token, 'each answer streams under its own token');
});

test('stop cancels the request; the text streamed so far stays', async () => {
  const daemon = new FakeDaemon(untilCancelled('Partial'));
  const session = new ChatSession(() => daemon);
  const answer = session.ask('Explain everything', {}, () => session.stop());
  assert.equal(session.busy, true);
  const exchange = await answer;
  assert.deepEqual(exchange, { question: 'Explain everything', answer: 'Partial', outcome: { kind: 'stopped' }, sources: [] });
  assert.deepEqual(session.conversation, [exchange]);
});

test('a new conversation stops the running answer, which then stays out of it', async () => {
  const daemon = new FakeDaemon(untilCancelled());
  const session = new ChatSession(() => daemon);
  const answer = session.ask('old question', {}, () => undefined);
  session.clear();
  assert.equal((await answer).outcome.kind, 'stopped');
  assert.deepEqual(session.conversation, []);
});

test('one answer at a time', async () => {
  const daemon = new FakeDaemon(untilCancelled());
  const session = new ChatSession(() => daemon);
  const first = session.ask('first', {}, () => undefined);
  await assert.rejects(session.ask('second', {}, () => undefined), /still running/);
  session.stop();
  await first;
});

test('without a running daemon the question fails with a reason', async () => {
  const session = new ChatSession(() => undefined);
  const exchange = await session.ask('anyone?', {}, () => undefined);
  assert.deepEqual(exchange.outcome, { kind: 'failed', message: 'The CodeRAG daemon is not running.' });
});

test('a question waits while the daemon is started for it; a stop meanwhile sends nothing', async () => {
  const daemon = new FakeDaemon(streaming('Here.'));
  let started: (connection: FakeDaemon | undefined) => void = () => undefined;
  const session = new ChatSession(() => new Promise((resolve) => (started = resolve)));
  const asked = session.ask('Where?', {}, () => undefined);
  assert.equal(session.busy, true, 'busy while the daemon starts');
  await assert.rejects(session.ask('again', {}, () => undefined), /still running/);
  started(daemon);
  assert.equal((await asked).answer, 'Here.');

  const stopped = session.ask('Where else?', {}, () => undefined);
  session.stop();
  started(daemon);
  assert.deepEqual((await stopped).outcome, { kind: 'stopped' });
  assert.equal(daemon.asked.length, 1, 'the stopped question never reached the daemon');

  const failed = session.ask('Anyone?', {}, () => undefined);
  started(undefined);
  assert.deepEqual((await failed).outcome, { kind: 'failed', message: 'The CodeRAG daemon is not running.' });
  assert.equal(session.busy, false);
});

test('an answer keeps its sources; the closing delta adds no text', async () => {
  const sources = [source('tasktrack/auth.py', 96, 131, 'def verify_token'), source('tasktrack/config.py', 3, 3, 'SECRET')];
  const daemon = new FakeDaemon(citing(sources, 'See ', 'tasktrack/auth.py:96-131.'));
  const session = new ChatSession(() => daemon);
  const pieces: string[] = [];
  const exchange = await session.ask('Where?', {}, (text) => pieces.push(text));
  assert.deepEqual(pieces, ['See ', 'tasktrack/auth.py:96-131.']);
  assert.deepEqual(exchange.sources, sources);
  assert.equal(session.source('file:///project/tasktrack/config.py', 'tasktrack/config.py:3'), sources[1]);
  assert.equal(session.source('file:///project/tasktrack/config.py', 'tasktrack/auth.py:96-131'), undefined, 'uri and label must belong together');
  assert.equal(session.source('file:///etc/passwd', 'passwd:1'), undefined);
  session.clear();
  assert.equal(session.source(sources[0].uri, sources[0].label), undefined, 'a new conversation forgets the old sources');
});

test('a stop after the closing delta keeps the sources it brought', async () => {
  const sources = [source('tasktrack/auth.py', 1, 5, 'imports')];
  const daemon = new FakeDaemon((params, token, emit) => new Promise((_resolve, reject) => {
    emit({ token: params.token!, delta: 'All of it' });
    emit({ token: 'other', delta: '', done: true, sources: [source('elsewhere.py', 1, 2, 'not ours')] });
    emit({ token: params.token!, delta: '', done: true, sources });
    token.onCancellationRequested(() => reject(new ResponseError(-32800, 'cancelled')));
  }));
  const session = new ChatSession(() => daemon);
  const answer = session.ask('Explain', {}, () => undefined);
  session.stop();
  assert.deepEqual(await answer, { question: 'Explain', answer: 'All of it', outcome: { kind: 'stopped' }, sources });
});
