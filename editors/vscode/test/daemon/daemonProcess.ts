// The real daemon for the tests: its interpreter, the tiny test model, a small sample workspace, and
// a daemon started the way the extension starts it (a Python interpreter from its settings) and
// spoken to with the protocol library the extension uses.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createProtocolConnection,
  ExitNotification,
  InitializeRequest,
  InitializeResult,
  LogMessageNotification,
  ProtocolConnection,
  ShowMessageNotification,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageserver-protocol/node';
import { daemonCommand, launchProblem } from '../../src/daemonLaunch';
import { DaemonStatus, StatusNotification } from '../../src/protocol';
import { DaemonOptions, launchSettings } from '../../src/settings';
import { configuration, EXTENSION_DIR } from '../support/packageSettings';

const REPO = path.resolve(EXTENSION_DIR, '..', '..');

/** The interpreter with coderag_daemon installed: $CODERAG_PYTHON, else the repository's .venv. */
export const PYTHON = process.env.CODERAG_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');

/** $CODERAG_TINY_MODEL, else the dense tiny model the daemon's own fixtures generate. */
export function tinyModel(): string {
  if (process.env.CODERAG_TINY_MODEL) {
    return process.env.CODERAG_TINY_MODEL;
  }
  const script = "from fixtures.tiny_models import tiny_model_path; print(tiny_model_path('dense'))";
  const made = spawnSync(PYTHON, ['-c', script], { cwd: REPO, encoding: 'utf8' });
  if (made.status !== 0) {
    throw new Error(`cannot make the tiny model with ${PYTHON}: ${made.stderr}`);
  }
  return made.stdout.trim();
}

/** The sample project with every Python file cut to 30 lines: the tiny model tokenizes bytes, and
 * whole files would make each prefill slower than a test wants. */
export function sampleWorkspace(): string {
  const root = path.join(mkdtempSync(path.join(tmpdir(), 'coderag-vscode-')), 'tasktrack');
  cpSync(path.join(REPO, 'fixtures', 'sample_project'), root, {
    recursive: true,
    filter: (source) => !['QUESTIONS.json', '__pycache__'].includes(path.basename(source)),
  });
  const cut = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      if (statSync(file).isDirectory()) {
        cut(file);
      } else if (name.endsWith('.py')) {
        writeFileSync(file, readFileSync(file, 'utf8').split(/(?<=\n)/).slice(0, 30).join(''));
      }
    }
  };
  cut(root);
  return root;
}

export interface Daemon {
  connection: ProtocolConnection;
  initializeResult: InitializeResult;
  statuses: DaemonStatus[];
  /** window/showMessage texts: a warning here means a setting was refused. */
  shown: string[];
  /** window/logMessage texts and the daemon's stderr. */
  log: string[];
  stop(): Promise<void>;
}

export async function startDaemon(workspace: string, initializationOptions: DaemonOptions): Promise<Daemon> {
  const command = daemonCommand(launchSettings(configuration({ 'daemon.pythonPath': PYTHON })));
  const problem = launchProblem(command);
  if (problem !== undefined) {
    throw new Error(problem);
  }
  const child: ChildProcess = spawn(command.command, command.args, { stdio: 'pipe' });
  const connection = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const daemon = { connection, statuses: [] as DaemonStatus[], shown: [] as string[], log: [] as string[] };
  child.stderr!.on('data', (data: Buffer) => void daemon.log.push(data.toString()));
  connection.onNotification(StatusNotification, (status) => void daemon.statuses.push(status));
  connection.onNotification(ShowMessageNotification.type, (message) => void daemon.shown.push(message.message));
  connection.onNotification(LogMessageNotification.type, (message) => void daemon.log.push(message.message));
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => undefined);
  connection.listen();
  const uri = pathToFileURL(workspace).href;
  const initializeResult = await connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: uri,
    workspaceFolders: [{ uri, name: path.basename(workspace) }],
    capabilities: { window: { workDoneProgress: true }, textDocument: { inlineCompletion: { dynamicRegistration: false } } },
    initializationOptions,
  });
  await connection.sendNotification('initialized', {});
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    await connection.sendRequest(ShutdownRequest.type);
    await connection.sendNotification(ExitNotification.type);
    const timer = setTimeout(() => child.kill(), 5000);
    await exited;
    clearTimeout(timer);
    connection.dispose();
  };
  return { ...daemon, initializeResult, stop };
}

/** Resolves when `predicate` holds, polling; fails after `timeoutMs`. */
export async function until<T>(predicate: () => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value !== undefined && value !== false) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
