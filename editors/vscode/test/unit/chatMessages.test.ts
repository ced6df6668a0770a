import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shownExchange } from '../../src/chatMessages';

const stats = {
  tokensInContext: 900, tokensReprocessed: 40, prefillMs: 1200, timeToFirstTokenMs: 1350, generationMs: 4000, tokensGenerated: 52,
  stopReason: 'eog',
};

test('an answer is shown with its figures, and why it ended when it was cut', () => {
  const answered = shownExchange({ question: 'q', answer: 'a', outcome: { kind: 'answered', stats } });
  assert.deepEqual(answered, { question: 'q', answer: 'a', note: '52 tokens in 5.2 s, first after 1.4 s', failed: false });
  const cut = shownExchange({ question: 'q', answer: 'a', outcome: { kind: 'answered', stats: { ...stats, stopReason: 'max_tokens' } } });
  assert.match(cut.note, /cut at the answer length limit \(coderag\.maxChatTokens\)$/);
});

test('stopped and failed answers say so', () => {
  assert.deepEqual(shownExchange({ question: 'q', answer: 'Part', outcome: { kind: 'stopped' } }),
    { question: 'q', answer: 'Part', note: 'Stopped.', failed: false });
  assert.deepEqual(shownExchange({ question: 'q', answer: '', outcome: { kind: 'failed', message: 'no model' } }),
    { question: 'q', answer: '', note: 'no model', failed: true });
});
