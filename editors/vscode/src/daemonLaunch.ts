// How the daemon is started: a configured command, a Python interpreter with coderag_daemon
// installed, or coderag-daemon on PATH; and whether that can work before anything is spawned, so a
// missing daemon is reported with what to do instead of a failed connection.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import * as path from 'node:path';
import { LaunchSettings } from './settings';

export interface DaemonCommand {
  command: string;
  args: string[];
}

export const INSTALL_HINT =
  'Install it with `make setup` in a coderag-daemon checkout, then put its `.venv/bin` on PATH ' +
  'or set "coderag.daemon.pythonPath" to its `.venv/bin/python`.';

export function daemonCommand(settings: LaunchSettings): DaemonCommand {
  if (settings.command.length > 0) {
    const [command, ...args] = settings.command;
    return { command, args };
  }
  if (settings.pythonPath !== '') {
    return { command: settings.pythonPath, args: ['-m', 'coderag_daemon'] };
  }
  return { command: 'coderag-daemon', args: [] };
}

/** The executable a command name resolves to, as spawn would find it, or undefined. */
export function findExecutable(command: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const extensions = process.platform === 'win32' ? (env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';') : [''];
  const candidates = command.includes('/') || command.includes(path.sep)
    ? [command]
    : (env.PATH ?? '').split(path.delimiter).filter((dir) => dir !== '').map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    for (const extension of extensions) {
      if (isExecutableFile(candidate + extension)) {
        return candidate + extension;
      }
    }
  }
  return undefined;
}

function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Why `daemon` cannot start, or undefined when it can. A Python interpreter is asked to import
 * the package, since `python -m` on an interpreter without it would only fail after spawning. */
export function launchProblem(daemon: DaemonCommand, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (findExecutable(daemon.command, env) === undefined) {
    return `The CodeRAG daemon was not found: \`${daemon.command}\` is not an executable file or a command on PATH.`;
  }
  if (daemon.args[0] === '-m' && daemon.args[1] === 'coderag_daemon') {
    const probe = spawnSync(daemon.command, ['-c', 'import coderag_daemon'], { env, encoding: 'utf8', timeout: 30_000 });
    if (probe.status !== 0) {
      return `The CodeRAG daemon was not found: \`${daemon.command}\` cannot import coderag_daemon.`;
    }
  }
  return undefined;
}
