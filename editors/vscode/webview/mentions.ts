// Citations in a rendered answer ("tasktrack/auth.py:96-131", or a line within it) made into links to
// the source they name. Only text nodes are split and only nodes made here are inserted, so no model
// text is ever parsed as HTML; a mention of a file that is not a source stays text.
import type { ShownSource } from '../src/chatMessages';

/** The source `path:first-last` cites: the one with that label, else one whose lines hold them. */
export function citedSource(sources: readonly ShownSource[], path: string, first: number, last: number): ShownSource | undefined {
  const label = first === last ? `${path}:${first}` : `${path}:${first}-${last}`;
  return sources.find((source) => source.label === label) ??
    sources.find((source) => source.path === path && first <= last && source.first <= first && last <= source.last);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Replaces each mention of a source under `root` (outside code blocks and links) with `link(source, text)`. */
export function linkMentions(root: HTMLElement, sources: readonly ShownSource[],
  link: (source: ShownSource, text: string) => HTMLElement): void {
  if (sources.length === 0) {
    return;
  }
  // The sources' own paths, longest first, so that "a/b.py" is not cut short by "b.py".
  const paths = [...new Set(sources.map((source) => source.path))].sort((a, b) => b.length - a.length);
  const mention = new RegExp(`(?<![\\w./-])(${paths.map(escapeRegExp).join('|')}):(\\d+)(?:-(\\d+))?(?!\\d)`, 'g');
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => node.parentElement?.closest('pre, a, button') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const texts: Text[] = [];
  while (walker.nextNode()) {
    texts.push(walker.currentNode as Text);
  }
  for (const text of texts) {
    const value = text.data;
    const parts: (string | Node)[] = [];
    let done = 0;
    for (const match of value.matchAll(mention)) {
      const first = Number(match[2]);
      const source = citedSource(sources, match[1], first, match[3] === undefined ? first : Number(match[3]));
      if (source !== undefined) {
        parts.push(value.slice(done, match.index), link(source, match[0]));
        done = match.index + match[0].length;
      }
    }
    if (parts.length > 0) {
      text.replaceWith(...parts, value.slice(done));
    }
  }
}
