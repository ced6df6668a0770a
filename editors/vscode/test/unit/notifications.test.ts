import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import * as vscode from 'vscode';
import { Notifier } from '../../src/notifications';
import { recorded, resetMock } from '../support/vscodeMock';

beforeEach(resetMock);

function notifier() {
  const log = vscode.window.createOutputChannel('test', { log: true }) as vscode.LogOutputChannel & { lines: string[] };
  return { notifier: new Notifier(log), log };
}

test('the same message pops up once, however often it comes; every time it is logged', async () => {
  const { notifier: notify, log } = notifier();
  recorded.messageAnswer = 'Show Log';
  assert.equal(await notify.once('error', 'model failed to load', 'Show Log'), 'Show Log');
  assert.equal(await notify.once('error', 'model failed to load', 'Show Log'), undefined);
  await notify.once('warning', 'unknown setting ignored');
  assert.deepEqual(recorded.messages, [
    { severity: 'error', message: 'model failed to load', actions: ['Show Log'] },
    { severity: 'warning', message: 'unknown setting ignored', actions: [] },
  ]);
  assert.equal(log.lines.length, 3);
});

test('after a reset a message shows again', async () => {
  const { notifier: notify } = notifier();
  await notify.once('info', 'restarted');
  notify.reset();
  await notify.once('info', 'restarted');
  assert.equal(recorded.messages.length, 2);
});
