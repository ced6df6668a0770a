// The daemon command of the end-to-end test: `node lspTap.js STATE_DIR -- DAEMON_COMMAND...`. It starts
// the real daemon and passes the editor's LSP messages through, both ways and unchanged, so the test can
// see what the daemon was asked and answered, and ask it things itself (coderag/documentText: the
// daemon's copy of a file, to compare with the editor's) without the extension having a command for it.
// In STATE_DIR: `daemon.pids` (one line per daemon started, to kill it from outside), `messages.jsonl`
// (every message, with its direction) and `tap.sock`, where a JSON request line gets its result line.
import { spawn } from 'node:child_process';
import { appendFileSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import * as path from 'node:path';

/** Splits an LSP byte stream into whole messages (header and body), whatever the chunking. */
export class Framer {
  private buffer = Buffer.alloc(0);

  constructor(private readonly onMessage: (raw: Buffer, body: unknown) => void) {}

  push(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) {
        return;
      }
      const length = Number(/Content-Length: *(\d+)/i.exec(this.buffer.subarray(0, end).toString('ascii'))?.[1]);
      if (!Number.isInteger(length) || this.buffer.length < end + 4 + length) {
        return;
      }
      const raw = this.buffer.subarray(0, end + 4 + length);
      this.buffer = this.buffer.subarray(end + 4 + length);
      this.onMessage(raw, JSON.parse(raw.subarray(end + 4).toString('utf8')));
    }
  }
}

export function frame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'ascii'), body]);
}

/** The id prefix of the tap's own requests, whose responses the editor never sees. */
const OWN = 'e2e-tap-';

function main(): void {
  const separator = process.argv.indexOf('--');
  const stateDir = process.argv[2];
  const [command, ...args] = process.argv.slice(separator + 1);
  if (separator !== 3 || command === undefined) {
    process.stderr.write('usage: lspTap STATE_DIR -- DAEMON_COMMAND...\n');
    process.exit(2);
  }
  const log = (direction: string, body: unknown) =>
    appendFileSync(path.join(stateDir, 'messages.jsonl'), JSON.stringify({ direction, time: Date.now(), body }) + '\n');
  const daemon = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  appendFileSync(path.join(stateDir, 'daemon.pids'), `${daemon.pid}\n`);

  const waiting = new Map<string, Socket>();
  let next = 0;
  const fromEditor = new Framer((raw, body) => {
    log('toDaemon', body);
    daemon.stdin.write(raw);
  });
  const fromDaemon = new Framer((raw, body) => {
    const id = (body as { id?: unknown }).id;
    if (typeof id === 'string' && waiting.has(id)) {
      waiting.get(id)!.end(JSON.stringify(body) + '\n');
      waiting.delete(id);
      return;
    }
    log('toEditor', body);
    process.stdout.write(raw);
  });
  process.stdin.on('data', (chunk: Buffer) => fromEditor.push(chunk));
  process.stdin.on('end', () => daemon.stdin.end());
  daemon.stdout.on('data', (chunk: Buffer) => fromDaemon.push(chunk));
  // Writes into a dead daemon's pipe fail; its exit, below, is what the editor must see.
  daemon.stdin.on('error', () => undefined);

  const socketPath = path.join(stateDir, 'tap.sock');
  rmSync(socketPath, { force: true });
  const server = createServer((socket) => {
    let line = '';
    socket.on('data', (chunk: Buffer) => {
      line += chunk.toString('utf8');
      if (line.includes('\n')) {
        const { method, params } = JSON.parse(line) as { method: string; params: unknown };
        const id = `${OWN}${next++}`;
        waiting.set(id, socket);
        daemon.stdin.write(frame({ jsonrpc: '2.0', id, method, params }));
      }
    });
  });
  server.listen(socketPath);

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => daemon.kill(signal));
  }
  // 'close', not 'exit': its last output has been passed on by then.
  daemon.on('close', (code, signal) => {
    server.close();
    process.exit(code ?? (signal === null ? 1 : 128));
  });
}

if (require.main === module) {
  main();
}
