import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorAction } from 'vscode-languageclient/node';
import { connectionErrorAction, CRASH_WINDOW_MS, MAX_CRASHES, RestartPolicy } from '../../src/restartPolicy';

test('a crash restarts the daemon and says so', () => {
  assert.deepEqual(new RestartPolicy(() => 0).crashed(),
    { restart: true, message: 'The CodeRAG daemon stopped unexpectedly and was restarted.' });
});

test('a daemon that keeps crashing is left stopped, until the user asks for it again', () => {
  const clock = { now: 0 };
  const policy = new RestartPolicy(() => clock.now);
  for (let crash = 0; crash < MAX_CRASHES; crash++) {
    clock.now += 1000;
    assert.equal(policy.crashed().restart, true);
  }
  const verdict = policy.crashed();
  assert.equal(verdict.restart, false);
  assert.match(verdict.message, /stopped 6 times in 3 minutes.*Restart Daemon/);
  policy.reset();
  assert.equal(policy.crashed().restart, true);
});

test('crashes far apart never stop the restarts', () => {
  const clock = { now: 0 };
  const policy = new RestartPolicy(() => clock.now);
  for (let crash = 0; crash < 3 * MAX_CRASHES; crash++) {
    clock.now += CRASH_WINDOW_MS / MAX_CRASHES + 1;
    assert.equal(policy.crashed().restart, true);
  }
});

test('connection errors: a few are tolerated, then the connection is shut down', () => {
  assert.equal(connectionErrorAction(3), ErrorAction.Continue);
  assert.equal(connectionErrorAction(4), ErrorAction.Shutdown);
});
