import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CloseAction, ErrorAction } from 'vscode-languageclient/node';
import { CRASH_WINDOW_MS, MAX_CRASHES, RestartPolicy } from '../../src/restartPolicy';

function policy(clock: { now: number }) {
  const reports: { message: string; restarting: boolean }[] = [];
  const handler = new RestartPolicy((message, restarting) => reports.push({ message, restarting }), () => clock.now);
  return { handler, reports };
}

test('a crash restarts the daemon and says so', () => {
  const { handler, reports } = policy({ now: 0 });
  const result = handler.closed();
  assert.equal(result.action, CloseAction.Restart);
  assert.equal(result.handled, true, 'the policy shows its own message, the client shows none');
  assert.deepEqual(reports, [{ message: 'The CodeRAG daemon stopped unexpectedly and was restarted.', restarting: true }]);
});

test('a daemon that keeps crashing is left stopped', () => {
  const clock = { now: 0 };
  const { handler, reports } = policy(clock);
  for (let crash = 0; crash < MAX_CRASHES; crash++) {
    clock.now += 1000;
    assert.equal(handler.closed().action, CloseAction.Restart);
  }
  assert.equal(handler.closed().action, CloseAction.DoNotRestart);
  assert.equal(reports.at(-1)?.restarting, false);
  assert.match(reports.at(-1)?.message ?? '', /stopped 6 times in 3 minutes.*Restart Daemon/);
});

test('crashes far apart never stop the restarts', () => {
  const clock = { now: 0 };
  const { handler } = policy(clock);
  for (let crash = 0; crash < 3 * MAX_CRASHES; crash++) {
    clock.now += CRASH_WINDOW_MS / MAX_CRASHES + 1;
    assert.equal(handler.closed().action, CloseAction.Restart);
  }
});

test('connection errors: a few are tolerated, then the connection is shut down', () => {
  const { handler } = policy({ now: 0 });
  assert.equal(handler.error(new Error('bad'), undefined, 3).action, ErrorAction.Continue);
  assert.equal(handler.error(new Error('bad'), undefined, 4).action, ErrorAction.Shutdown);
});
