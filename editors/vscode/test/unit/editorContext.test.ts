import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { EditorTracker, selectedQuery, selectionAttachment } from '../../src/editorContext';
import { FakeEditor, focusEditor, Position, recorded, resetMock, Selection, Uri } from '../support/vscodeMock';

beforeEach(resetMock);

function editor(uri: string, from: [number, number], to: [number, number]): FakeEditor {
  return { document: { uri: Uri.parse(uri), isClosed: false }, selection: new Selection(new Position(...from), new Position(...to)) };
}

test('a selection becomes an attachment with its range and a short label', () => {
  const attachment = selectionAttachment(editor('file:///project/tasktrack/auth.py', [12, 4], [9, 0]) as never);
  assert.deepEqual(attachment, {
    uri: 'file:///project/tasktrack/auth.py',
    selection: { start: { line: 9, character: 0 }, end: { line: 12, character: 4 } },
    label: 'tasktrack/auth.py:10-13',
  });
  assert.equal(selectionAttachment(editor('file:///project/a.py', [3, 1], [3, 1]) as never), undefined, 'nothing selected');
  assert.equal(selectionAttachment(editor('untitled:Untitled-1', [0, 0], [2, 0]) as never), undefined, 'not a file');
  assert.equal(selectionAttachment(undefined), undefined);
});

test('the tracker keeps the last file editor when the chat panel takes the focus', () => {
  recorded.activeTextEditor = editor('file:///project/a.py', [1, 2], [1, 2]);
  const tracker = new EditorTracker();
  assert.deepEqual(tracker.askContext(), { uri: 'file:///project/a.py', position: { line: 1, character: 2 } });
  const b = editor('file:///project/b.py', [0, 0], [5, 3]);
  focusEditor(b);
  focusEditor(undefined);
  focusEditor(editor('output:CodeRAG', [0, 0], [0, 0]));
  assert.deepEqual(tracker.askContext(), { uri: 'file:///project/b.py', position: { line: 5, character: 3 } });
  b.document.isClosed = true;
  assert.deepEqual(tracker.askContext(), {});
  tracker.dispose();
});

test('the selected text becomes a one-line search query', () => {
  const selected = (text: string, from: [number, number], to: [number, number]) => {
    const chosen = editor('file:///project/a.py', from, to);
    chosen.document.getText = () => text;
    return selectedQuery(chosen as never, 20);
  };
  assert.equal(selected('  verify_token(raw,\n     key)\n', [1, 0], [2, 9]), 'verify_token(raw, ke');
  assert.equal(selected('x', [1, 0], [1, 0]), undefined, 'nothing selected');
  assert.equal(selected(' \n\t', [1, 0], [2, 1]), undefined, 'only blanks');
  assert.equal(selectedQuery(undefined), undefined);
});
