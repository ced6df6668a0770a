import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { daemonCommand, findExecutable, launchProblem } from '../../src/daemonLaunch';

function script(dir: string, name: string, body: string, mode = 0o755): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, mode);
  return file;
}

test('a configured command wins over the interpreter, which wins over PATH', () => {
  assert.deepEqual(daemonCommand({ command: ['/opt/d', '--log-level', 'DEBUG'], pythonPath: '/py' }),
    { command: '/opt/d', args: ['--log-level', 'DEBUG'] });
  assert.deepEqual(daemonCommand({ command: [], pythonPath: '/py' }), { command: '/py', args: ['-m', 'coderag_daemon'] });
  assert.deepEqual(daemonCommand({ command: [], pythonPath: '' }), { command: 'coderag-daemon', args: [] });
});

test('commands are looked up on PATH; files that are not executable do not count', () => {
  const first = mkdtempSync(path.join(tmpdir(), 'coderag-path-'));
  const second = mkdtempSync(path.join(tmpdir(), 'coderag-path-'));
  script(first, 'coderag-daemon', 'exit 0', 0o644);
  const runnable = script(second, 'coderag-daemon', 'exit 0');
  const env = { PATH: [first, second].join(path.delimiter) };
  assert.equal(findExecutable('coderag-daemon', env), runnable);
  assert.equal(findExecutable('coderag-daemon', { PATH: first }), undefined);
  assert.equal(findExecutable(runnable, { PATH: '' }), runnable);
  assert.equal(findExecutable(first, { PATH: '' }), undefined, 'a directory is no program');
});

test('a daemon missing from PATH is a problem that names the command', () => {
  const problem = launchProblem({ command: 'coderag-daemon', args: [] }, { PATH: mkdtempSync(path.join(tmpdir(), 'coderag-empty-')) });
  assert.match(problem ?? '', /not found: `coderag-daemon`/);
});

test('an interpreter is asked whether it can import the daemon', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'coderag-python-'));
  const without = script(dir, 'python-without', 'exit 1');
  const withIt = script(dir, 'python-with', '[ "$1" = "-c" ] && [ "$2" = "import coderag_daemon" ]');
  assert.match(launchProblem({ command: without, args: ['-m', 'coderag_daemon'] }) ?? '', /cannot import coderag_daemon/);
  assert.equal(launchProblem({ command: withIt, args: ['-m', 'coderag_daemon'] }), undefined);
  assert.equal(launchProblem({ command: without, args: [] }), undefined, 'a plain command is not probed');
});
