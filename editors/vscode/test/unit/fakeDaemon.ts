// A daemon that answers coderag/chat as a test says, streaming through the handler the session registered.
import { NotificationType, RequestType, ResponseError } from 'vscode-languageserver-protocol/node';
import { CancellationLike, ChatDelta, ChatParams, ChatResult, DaemonConnection, Source } from '../../src/protocol';

export const stats = {
  tokensInContext: 900, tokensReprocessed: 40, prefillMs: 100, timeToFirstTokenMs: 120, generationMs: 300, tokensGenerated: 9,
  stopReason: 'eog',
};

export type Answer = (params: ChatParams, token: CancellationLike, emit: (delta: ChatDelta) => void) => Promise<ChatResult>;

export class FakeDaemon implements DaemonConnection {
  readonly asked: ChatParams[] = [];
  private readonly handlers = new Map<string, (params: unknown) => void>();

  constructor(private readonly answer: Answer) {}

  get listening(): boolean {
    return this.handlers.size > 0;
  }

  sendRequest<P, R, E>(_type: RequestType<P, R, E>, params: P, token?: CancellationLike): Promise<R> {
    const chat = params as ChatParams;
    this.asked.push(structuredClone(chat));
    const emit = (delta: ChatDelta) => this.handlers.get('coderag/chatDelta')?.(delta);
    return this.answer(chat, token!, emit) as Promise<R>;
  }

  onNotification<P>(type: NotificationType<P>, handler: (params: P) => void) {
    this.handlers.set(type.method, handler as (params: unknown) => void);
    return { dispose: () => this.handlers.delete(type.method) };
  }
}

/** Streams `pieces`, then answers with all of them. */
export function streaming(...pieces: string[]): Answer {
  return async (params, _token, emit) => {
    pieces.forEach((delta) => emit({ token: params.token!, delta }));
    return { answer: pieces.join(''), stats };
  };
}

/** Sources as the daemon sends them, for a file under /project. */
export function source(path: string, first: number, last: number, title: string): Source {
  return {
    uri: `file:///project/${path}`, path, label: first === last ? `${path}:${first}` : `${path}:${first}-${last}`, title,
    range: { start: { line: first - 1, character: 0 }, end: { line: last - 1, character: 12 } }, score: 3.5,
  };
}

/** Streams `pieces`, then the closing delta with `sources`, then answers with both, as the daemon does. */
export function citing(sources: Source[], ...pieces: string[]): Answer {
  return async (params, _token, emit) => {
    pieces.forEach((delta) => emit({ token: params.token!, delta }));
    emit({ token: params.token!, delta: '', done: true, sources });
    return { answer: pieces.join(''), stats, sources };
  };
}

/** Streams `first`, then waits until the request is cancelled. */
export function untilCancelled(first?: string): Answer {
  return (params, token, emit) => new Promise((_resolve, reject) => {
    if (first !== undefined) {
      emit({ token: params.token!, delta: first });
    }
    token.onCancellationRequested(() => reject(new ResponseError(-32800, 'cancelled')));
  });
}
