// Answers are Markdown written by a model: rendered with raw HTML disabled, so any tag in them
// shows as text, and with markdown-it's link check, which drops javascript: and similar URLs.
import MarkdownIt from 'markdown-it';

const markdown = new MarkdownIt({ html: false, linkify: true });

export function renderMarkdown(text: string): string {
  return markdown.render(text);
}
