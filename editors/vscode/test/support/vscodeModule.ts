// Preloaded with `node --require`: makes `require('vscode')` return the mock. Names the mock lacks
// are empty classes, because vscode-languageclient subclasses several of vscode's classes (CodeLens,
// CompletionItem, …) as it loads, though these tests never reach them.
import Module from 'node:module';
import * as mock from './vscodeMock';

const placeholders = new Map<string | symbol, unknown>();
const vscode = new Proxy(mock, {
  get(target, name) {
    if (name in target) {
      return target[name as keyof typeof target];
    }
    if (!placeholders.has(name)) {
      placeholders.set(name, class {});
    }
    return placeholders.get(name);
  },
});

const internals = Module as unknown as { _load(request: string, ...rest: unknown[]): unknown };
const load = internals._load;
internals._load = function (request: string, ...rest: unknown[]) {
  return request === 'vscode' ? vscode : load.call(this, request, ...rest);
};
