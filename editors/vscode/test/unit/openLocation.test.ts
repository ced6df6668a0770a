import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { isFileUri, openLocation } from '../../src/openLocation';
import { recorded, resetMock } from '../support/vscodeMock';

beforeEach(resetMock);

const range = { start: { line: 2, character: 0 }, end: { line: 4, character: 7 } };

test('only file: URIs are opened', async () => {
  assert.equal(isFileUri('file:///home/me/p/a.py'), true);
  for (const uri of ['/etc/passwd', 'command:workbench.action.terminal.new', 'https://example.com/a.py', 'untitled:Untitled-1',
    'javascript:alert(1)', 'vscode-userdata:/settings.json', '', 'file']) {
    assert.equal(isFileUri(uri), false, uri);
    assert.equal(await openLocation(uri, range), false, uri);
  }
  assert.deepEqual(recorded.shownDocuments, []);
  assert.equal(await openLocation('file:///home/me/p/a.py', range), true);
  assert.deepEqual(recorded.shownDocuments.map(String), ['file:///home/me/p/a.py']);
  const selection = recorded.shownOptions[0]!.selection!;
  assert.deepEqual({ start: { ...selection.start }, end: { ...selection.end } }, range);
});
