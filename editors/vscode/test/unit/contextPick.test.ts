import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { contextItems, contextTitle, showContext } from '../../src/contextPick';
import { ContextResult } from '../../src/protocol';
import { recorded, resetMock } from '../support/vscodeMock';

beforeEach(resetMock);

const context: ContextResult = { tokensCached: 2717, nCtx: 8192, files: [
  { path: 'tasktrack/config.py', uri: 'file:///p/tasktrack/config.py', tokens: 1023, start: 6, cached: true, truncated: false },
  { path: 'tasktrack/auth.py', uri: 'file:///p/tasktrack/auth.py', tokens: 1694, start: 1029, cached: false, truncated: true },
] };

test('the files are listed in context order with their token counts', () => {
  assert.deepEqual(contextItems(context).map(({ label, description, detail }) => ({ label, description, detail })), [
    { label: 'tasktrack/config.py', description: '1023 tokens · cached', detail: undefined },
    { label: 'tasktrack/auth.py', description: '1694 tokens · not cached · truncated to the budget', detail: 'most recently edited' },
  ]);
  assert.equal(contextTitle(context), 'CodeRAG context: 2.7k of 8.2k tokens cached, 2 files, least recently edited first');
});

test('picking a file opens it; dismissing the list opens nothing', async () => {
  recorded.quickPickAnswer = (items) => items[1];
  await showContext(context);
  assert.deepEqual(recorded.shownDocuments.map(String), ['file:///p/tasktrack/auth.py']);
  recorded.quickPickAnswer = () => undefined;
  await showContext(context);
  assert.equal(recorded.shownDocuments.length, 1);
});
