// Figures as the status bar, the context list and the chat panel show them.
import { RequestFigures } from './protocol';

/** 950 → "950", 5193 → "5.2k", 131072 → "131k". */
export function formatTokens(tokens: number): string {
  if (tokens < 1000) {
    return String(tokens);
  }
  const thousands = tokens / 1000;
  return `${thousands < 100 ? thousands.toFixed(1).replace(/\.0$/, '') : Math.round(thousands)}k`;
}

/** 470.5 → "471 ms", 10412.3 → "10.4 s". */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** From the request reaching the model to its last token. */
export function latencyMs(figures: RequestFigures): number {
  return figures.prefillMs + figures.generationMs;
}
