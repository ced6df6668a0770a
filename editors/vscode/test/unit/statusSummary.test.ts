import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatMs, formatTokens } from '../../src/format';
import { DaemonStatus } from '../../src/protocol';
import { summarize } from '../../src/statusSummary';

const ready: DaemonStatus = {
  state: 'ready', model: '/models/q.gguf', error: null, tokensCached: 5178, nCtx: 8192, checkpoints: 0, checkpointBytes: 0,
  strategy: 'truncate', files: 4,
};
const lastRequest = {
  seq: 3, kind: 'completion' as const, tokensInContext: 5178, tokensReprocessed: 62, prefillMs: 400.1, timeToFirstTokenMs: 470.5,
  generationMs: 380.2, tokensGenerated: 7, stopReason: 'predicate',
};

test('figures are short', () => {
  assert.equal(formatTokens(950), '950');
  assert.equal(formatTokens(5178), '5.2k');
  assert.equal(formatTokens(8000), '8k');
  assert.equal(formatTokens(131072), '131k');
  assert.equal(formatMs(470.5), '471 ms');
  assert.equal(formatMs(10412.3), '10.4 s');
});

test('ready: tokens cached of n_ctx, and the last latency once there was a request', () => {
  assert.equal(summarize({ phase: 'running', status: ready, inlineEnabled: true }).text, '$(check) CodeRAG 5.2k/8.2k');
  const summary = summarize({ phase: 'running', status: { ...ready, lastRequest }, inlineEnabled: true });
  assert.equal(summary.text, '$(check) CodeRAG 5.2k/8.2k · 780 ms');
  assert.match(summary.tooltip, /Cached: 5178 of 8192 tokens, 4 files \(truncate\)/);
  assert.match(summary.tooltip, /Last completion: 780 ms, first token after 471 ms, 7 tokens generated, 62 reprocessed/);
  assert.match(summary.tooltip, /Inline completions: on/);
  assert.equal(summary.error, false);
});

test('each daemon state has its own look', () => {
  const text = (state: DaemonStatus['state']) => summarize({ phase: 'running', status: { ...ready, state }, inlineEnabled: true }).text;
  assert.equal(text('preloading'), '$(sync~spin) CodeRAG 5.2k/8.2k');
  assert.equal(text('busy'), '$(loading~spin) CodeRAG 5.2k/8.2k');
  assert.equal(text('loading'), '$(loading~spin) CodeRAG loading');
  const failed = summarize({ phase: 'running', status: { ...ready, state: 'error', error: 'no model: run coderag-daemon model install' }, inlineEnabled: false });
  assert.deepEqual(failed, { text: '$(error) CodeRAG', tooltip: 'no model: run coderag-daemon model install\nInline completions: off', error: true });
});

test('the client side: starting, stopped, and a problem that kept the daemon from running', () => {
  assert.equal(summarize({ phase: 'starting', inlineEnabled: true }).text, '$(loading~spin) CodeRAG');
  assert.equal(summarize({ phase: 'starting', status: ready, inlineEnabled: true }).text, '$(loading~spin) CodeRAG');
  assert.equal(summarize({ phase: 'stopped', status: ready, inlineEnabled: true }).text, '$(debug-disconnect) CodeRAG');
  const missing = summarize({ phase: 'stopped', problem: 'The CodeRAG daemon was not found.', inlineEnabled: true });
  assert.equal(missing.error, true);
  assert.match(missing.tooltip, /^The CodeRAG daemon was not found\./);
});
