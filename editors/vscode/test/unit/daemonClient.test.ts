import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startFailure } from '../../src/daemonClient';

const launch = (lastStderr: string, exited: boolean) => ({ lastStderr, exited, stderrClosed: Promise.resolve() });

test('a daemon that exits as it starts is reported with its last words on stderr', () => {
  const error = new Error('Pending response rejected since connection got disposed');
  const said = 'coderag-daemon: error: argument --n-ctx: must be between 512 and 131072, got 5';
  assert.equal(startFailure(launch(said, true), error), `The CodeRAG daemon exited as it started: ${said}`);
  assert.equal(startFailure(launch('', true), error),
    'The CodeRAG daemon exited as it started, without a word; see the CodeRAG output.');
});

test('a daemon that refuses to start, still running, is reported with the reason', () => {
  assert.equal(startFailure(launch('INFO loading', false), new Error('unsupported client')),
    'The CodeRAG daemon did not start: unsupported client');
});
