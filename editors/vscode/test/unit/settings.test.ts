import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { DAEMON_SETTINGS, daemonOptions, inlineSettings, launchSettings } from '../../src/settings';
import { EXTENSION_DIR, configuration, contributed } from '../support/packageSettings';

/** The daemon's settings table in its protocol document: name → default (parsed JSON) as written there. */
function documentedDefaults(): Map<string, unknown> {
  const protocol = readFileSync(path.join(EXTENSION_DIR, '..', '..', 'docs', 'PROTOCOL.md'), 'utf8');
  const table = protocol.slice(protocol.indexOf('| setting | flag | default | range | meaning |')).split('\n\n')[0];
  const rows = table.split('\n').filter((line) => /^\| `\w+`/.test(line));
  return new Map(rows.map((row) => {
    const [name, , value] = row.split('|').slice(1, 4).map((cell) => cell.trim());
    return [name.match(/`(\w+)`/)![1], JSON.parse(value.replace(/`/g, '')) as unknown];
  }));
}

test('package.json contributes every daemon setting of the protocol, with its documented default', () => {
  const documented = documentedDefaults();
  assert.deepEqual([...documented.keys()].sort(), [...DAEMON_SETTINGS].sort());
  for (const [name, value] of documented) {
    const contribution = contributed[`coderag.${name}`];
    assert.ok(contribution, `coderag.${name} is contributed`);
    if (value === null) {
      assert.equal(name, 'modelPath');
      assert.equal(contribution.default, '', 'an empty model path stands for the default model');
    } else {
      assert.deepEqual(contribution.default, value, name);
    }
  }
});

test('the daemon gets the daemon settings the user set, under their protocol names, nothing only the extension\'s', () => {
  const options = daemonOptions(configuration({ nCtx: 4096, threads: 0, 'inlineCompletions.enable': false }));
  assert.deepEqual(options, { nCtx: 4096, threads: 0 });
});

test('settings left at their default are not sent, so the flags of the daemon command apply', () => {
  assert.deepEqual(daemonOptions(configuration()), {});
  const command = ['coderag-daemon', '--model', '/m.gguf', '--threads', '2'];
  assert.deepEqual(daemonOptions(configuration({ 'daemon.command': command })), {});
});

test('a setting sent before and now removed is sent with its default, so the daemon drops the old value', () => {
  const sent = daemonOptions(configuration({ nCtx: 4096, modelPath: '/models/q.gguf' }));
  assert.deepEqual(daemonOptions(configuration({ maxChatTokens: 99 }), Object.keys(sent)),
    { modelPath: null, nCtx: 12288, maxChatTokens: 99 });
  assert.deepEqual(Object.keys(daemonOptions(configuration(), DAEMON_SETTINGS)).sort(), [...DAEMON_SETTINGS].sort());
});

test('an empty model path asks for the default model; a path is trimmed', () => {
  assert.equal(daemonOptions(configuration({ modelPath: '' })).modelPath, null);
  assert.equal(daemonOptions(configuration({ modelPath: '   ' })).modelPath, null);
  assert.equal(daemonOptions(configuration({ modelPath: ' /models/q.gguf ' })).modelPath, '/models/q.gguf');
});

test('inline completion settings: defaults, and an unknown trigger falls back to automatic', () => {
  assert.deepEqual(inlineSettings(configuration()), { enabled: true, trigger: 'automatic', languages: ['*'] });
  assert.equal(inlineSettings(configuration({ 'inlineCompletions.trigger': 'onDemand' })).trigger, 'onDemand');
  assert.equal(inlineSettings(configuration({ 'inlineCompletions.trigger': 'sometimes' })).trigger, 'automatic');
});

test('launch settings drop empty command parts and trim the interpreter path', () => {
  assert.deepEqual(launchSettings(configuration()), { command: [], pythonPath: '' });
  assert.deepEqual(launchSettings(configuration({ 'daemon.command': ['coderag-daemon', '', '--tcp'], 'daemon.pythonPath': ' /py ' })),
    { command: ['coderag-daemon', '--tcp'], pythonPath: '/py' });
});
