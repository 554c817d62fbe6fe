import { describe, expect, it } from 'vitest';
import { buildProgram } from './main';

describe('dwcp node start', () => {
  it('hands its flags to the node, whose config check names the bad key', async () => {
    const program = buildProgram().exitOverride();
    await expect(program.parseAsync(['node', 'dwcp', 'node', 'start', '--api-port', 'nope'])).rejects.toThrow(
      'config: api.port: Expected number, received string',
    );
  });
});
