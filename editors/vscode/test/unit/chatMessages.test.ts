import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shownExchange, shownSource } from '../../src/chatMessages';
import { Source } from '../../src/protocol';

const stats = {
  tokensInContext: 900, tokensReprocessed: 40, prefillMs: 1200, timeToFirstTokenMs: 1350, generationMs: 4000, tokensGenerated: 52,
  stopReason: 'eog',
};

const source: Source = {
  uri: 'file:///p/tasktrack/auth.py', path: 'tasktrack/auth.py', label: 'tasktrack/auth.py:96-131', title: 'def verify_token',
  range: { start: { line: 95, character: 0 }, end: { line: 130, character: 22 } }, score: 7.41,
};

test('an answer is shown with its figures, and why it ended when it was cut', () => {
  const answered = shownExchange({ question: 'q', answer: 'a', outcome: { kind: 'answered', stats }, sources: [] });
  assert.deepEqual(answered, { question: 'q', answer: 'a', note: '52 tokens in 5.2 s, first after 1.4 s', failed: false, sources: [] });
  const cut = shownExchange({ question: 'q', answer: 'a', outcome: { kind: 'answered', stats: { ...stats, stopReason: 'max_tokens' } }, sources: [] });
  assert.match(cut.note, /cut at the answer length limit \(coderag\.maxChatTokens\)$/);
});

test('stopped and failed answers say so', () => {
  assert.deepEqual(shownExchange({ question: 'q', answer: 'Part', outcome: { kind: 'stopped' }, sources: [] }),
    { question: 'q', answer: 'Part', note: 'Stopped.', failed: false, sources: [] });
  assert.deepEqual(shownExchange({ question: 'q', answer: '', outcome: { kind: 'failed', message: 'no model' }, sources: [] }),
    { question: 'q', answer: '', note: 'no model', failed: true, sources: [] });
});

test('sources go to the page with one-based lines, as their labels count them', () => {
  const expected = { uri: source.uri, path: 'tasktrack/auth.py', label: 'tasktrack/auth.py:96-131', title: 'def verify_token', first: 96, last: 131 };
  assert.deepEqual(shownSource(source), expected);
  const single = { ...source, label: 'tasktrack/auth.py:7', range: { start: { line: 6, character: 0 }, end: { line: 6, character: 9 } } };
  assert.deepEqual([shownSource(single).first, shownSource(single).last], [7, 7]);
  assert.deepEqual(shownExchange({ question: 'q', answer: 'a', outcome: { kind: 'stopped' }, sources: [source] }).sources, [expected]);
});
