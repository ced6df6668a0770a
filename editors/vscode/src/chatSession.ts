// A conversation about the project: the client keeps the turns (the daemon is stateless between
// questions), streams each answer from coderag/chatDelta and stops it with $/cancelRequest.
import { CancellationTokenSource, LSPErrorCodes, Position, Range } from 'vscode-languageserver-protocol/node';
import { ChatDeltaNotification, ChatRequest, ChatTurn, DaemonConnection, RequestFigures, Source } from './protocol';

/** Where the user is when asking: given to the daemon so the answer can refer to it. */
export interface AskContext {
  uri?: string;
  position?: Position;
  selection?: Range;
}

export type Outcome =
  | { kind: 'answered'; stats: RequestFigures }
  | { kind: 'stopped' }
  | { kind: 'failed'; message: string };

export interface Exchange {
  question: string;
  /** The answer as far as it came (all of it unless stopped or failed). */
  answer: string;
  outcome: Outcome;
  /** The chunks of files the daemon gave the model with the question. */
  sources: Source[];
}

export class ChatSession {
  private readonly exchanges: Exchange[] = [];
  private running: CancellationTokenSource | undefined;
  private nextToken = 1;
  /** Bumped by clear(), so an answer stopped by it does not land in the new conversation. */
  private epoch = 0;

  /** `connection` may start the daemon first (a question is a reason to try again after a failure). */
  constructor(
    private readonly connection: () => DaemonConnection | undefined | Promise<DaemonConnection | undefined>,
  ) {}

  get conversation(): readonly Exchange[] {
    return this.exchanges;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Ask `question` after the conversation so far; `onDelta` sees the answer as it streams. */
  async ask(question: string, where: AskContext, onDelta: (text: string) => void): Promise<Exchange> {
    if (this.running !== undefined) {
      throw new Error('An answer is still running.');
    }
    const epoch = this.epoch;
    const token = `chat-${this.nextToken++}`;
    const source = new CancellationTokenSource();
    // Busy from here: the daemon may have to be started first.
    this.running = source;
    const found = this.connection();
    const connection = found instanceof Promise ? await found.catch(() => undefined) : found;
    if (connection === undefined || source.token.isCancellationRequested) {
      this.running = undefined;
      source.dispose();
      const outcome: Outcome = connection === undefined
        ? { kind: 'failed', message: 'The CodeRAG daemon is not running.' }
        : { kind: 'stopped' };
      return this.record(question, '', outcome, [], epoch);
    }
    let streamed = '';
    // The last delta brings the sources: kept if a stop then cuts off the result that repeats them.
    let sources: Source[] = [];
    const deltas = connection.onNotification(ChatDeltaNotification, (params) => {
      if (params.token !== token) {
        return;
      }
      if (params.delta !== '') {
        streamed += params.delta;
        onDelta(params.delta);
      }
      if (params.done === true) {
        sources = params.sources ?? [];
      }
    });
    try {
      const history = this.history();
      const result = await connection.sendRequest(ChatRequest, { question, history, ...where, token }, source.token);
      return this.record(question, result.answer, { kind: 'answered', stats: result.stats }, result.sources ?? sources, epoch);
    } catch (error) {
      const outcome: Outcome = isCancellation(error) ? { kind: 'stopped' } : { kind: 'failed', message: errorMessage(error) };
      return this.record(question, streamed, outcome, sources, epoch);
    } finally {
      deltas.dispose();
      source.dispose();
      this.running = undefined;
    }
  }

  /** Stop the running answer; what was streamed so far stays in the conversation. */
  stop(): void {
    this.running?.cancel();
  }

  /** The source of this conversation with `uri` and `label`, if the daemon gave one: the page may
   * ask to open only these, whatever else it sends. */
  source(uri: string, label: string): Source | undefined {
    for (const exchange of this.exchanges) {
      const found = exchange.sources.find((source) => source.uri === uri && source.label === label);
      if (found !== undefined) {
        return found;
      }
    }
    return undefined;
  }

  clear(): void {
    this.stop();
    this.epoch++;
    this.exchanges.length = 0;
  }

  /** Earlier turns for the daemon, oldest first; a question that got no answer is left out. */
  private history(): ChatTurn[] {
    return this.exchanges
      .filter((exchange) => exchange.answer !== '')
      .flatMap((exchange): ChatTurn[] => [
        { role: 'user', content: exchange.question },
        { role: 'assistant', content: exchange.answer },
      ]);
  }

  private record(question: string, answer: string, outcome: Outcome, sources: Source[], epoch = this.epoch): Exchange {
    const exchange = { question, answer, outcome, sources };
    if (epoch === this.epoch) {
      this.exchanges.push(exchange);
    }
    return exchange;
  }
}

function isCancellation(error: unknown): boolean {
  return (error as { code?: unknown } | undefined)?.code === LSPErrorCodes.RequestCancelled;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
