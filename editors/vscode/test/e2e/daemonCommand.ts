// The daemon command the end-to-end test puts in `coderag.daemon.command`: the real daemon on the tiny
// test model (or the default model), behind the LSP tap that lets the test see and ask it things.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { PYTHON, tinyModel } from '../daemon/daemonProcess';

const TAP = path.join(__dirname, 'lspTap.js');

/** The model flags: $CODERAG_E2E_MODEL is `default` (the daemon's default model) or a GGUF file;
 * unset, the tiny random-weight model, fast enough for CI (its suggestions are gibberish). */
export function modelArgs(): string[] {
  const model = process.env.CODERAG_E2E_MODEL;
  if (model === 'default') {
    return [];
  }
  return ['--model', model !== undefined && model !== '' ? model : tinyModel()];
}

/** One thread (the CPU is shared). Chat answers: the tiny model writes hundreds of tokens a second, so
 * it may write many (an answer must still run when Stop is clicked); a real one writes a few a second. */
export const DAEMON_ARGS = ['-m', 'coderag_daemon', ...modelArgs(), '--threads', '1',
  '--max-chat-tokens', process.env.CODERAG_E2E_MODEL ? '192' : '2048', '--log-level', 'INFO'];

/** `coderag.daemon.command`: the tap, keeping its files in `stateDir`, then the daemon. */
export function tappedDaemon(stateDir: string): string[] {
  return [process.execPath, TAP, stateDir, '--', PYTHON, ...DAEMON_ARGS];
}

/** The process ids of the daemons the tap started, in order. */
export function daemonPids(stateDir: string): number[] {
  try {
    const lines = readFileSync(path.join(stateDir, 'daemon.pids'), 'utf8').split('\n');
    return lines.filter((line) => line !== '').map(Number);
  } catch {
    return [];
  }
}
