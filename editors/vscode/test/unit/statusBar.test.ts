import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { StatusBar } from '../../src/statusBar';
import { recorded, resetMock, ThemeColor } from '../support/vscodeMock';

beforeEach(resetMock);

test('the item shows the state, opens the context on click, and turns red on errors', () => {
  const bar = new StatusBar(true);
  const [item] = recorded.statusBarItems;
  assert.equal(item.visible, true);
  assert.equal(item.command, 'coderag.showContext');
  assert.equal(item.text, '$(loading~spin) CodeRAG');
  bar.update({ phase: 'running', status: {
    state: 'ready', model: 'm', error: null, tokensCached: 1500, nCtx: 4096, checkpoints: 0, checkpointBytes: 0, strategy: 'truncate', files: 2,
  } });
  assert.equal(item.text, '$(check) CodeRAG 1.5k/4.1k');
  assert.equal(item.backgroundColor, undefined);
  bar.update({ phase: 'stopped', problem: 'The CodeRAG daemon was not found.' });
  assert.deepEqual(item.backgroundColor, new ThemeColor('statusBarItem.errorBackground'));
  bar.update({ phase: 'starting', problem: undefined });
  assert.equal(item.backgroundColor, undefined);
  bar.dispose();
  assert.equal(item.visible, false);
});
