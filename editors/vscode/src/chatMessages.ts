// The messages between the chat panel (extension side) and its page (webview side).
import { Exchange } from './chatSession';
import { formatMs, latencyMs } from './format';
import { Source } from './protocol';

/** A source as the page lists it and finds it cited in the answer (lines one-based, as in its label). */
export interface ShownSource {
  uri: string;
  path: string;
  label: string;
  title: string;
  first: number;
  last: number;
}

/** An exchange as the page shows it. */
export interface ShownExchange {
  question: string;
  answer: string;
  /** One line under the answer: its figures, "Stopped." or what went wrong. */
  note: string;
  failed: boolean;
  sources: ShownSource[];
}

export type ToPage =
  | { type: 'conversation'; exchanges: ShownExchange[] }
  | { type: 'attachment'; label: string | undefined }
  | { type: 'started'; question: string }
  | { type: 'delta'; text: string }
  | { type: 'finished'; exchange: ShownExchange };

export type FromPage =
  | { type: 'ready' }
  | { type: 'ask'; question: string }
  | { type: 'stop' }
  | { type: 'newConversation' }
  | { type: 'detach' }
  /** Open a source the extension sent (it checks that it did). */
  | { type: 'openSource'; uri: string; label: string };

const STOP_NOTES: Record<string, string> = {
  max_tokens: ' · cut at the answer length limit (coderag.maxChatTokens)',
  context_full: ' · the context window is full (coderag.nCtx)',
};

export function shownSource(source: Source): ShownSource {
  const { uri, path, label, title, range } = source;
  return { uri, path, label, title, first: range.start.line + 1, last: range.end.line + 1 };
}

export function shownExchange(exchange: Exchange): ShownExchange {
  const { question, answer, outcome } = exchange;
  const sources = exchange.sources.map(shownSource);
  switch (outcome.kind) {
    case 'answered': {
      const stats = outcome.stats;
      const note = `${stats.tokensGenerated} tokens in ${formatMs(latencyMs(stats))}, first after ` +
        `${formatMs(stats.timeToFirstTokenMs)}${STOP_NOTES[stats.stopReason] ?? ''}`;
      return { question, answer, note, failed: false, sources };
    }
    case 'stopped':
      return { question, answer, note: 'Stopped.', failed: false, sources };
    case 'failed':
      return { question, answer, note: outcome.message, failed: true, sources };
  }
}
