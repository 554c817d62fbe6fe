// Writes random chunks into a store forever, printing each id once it is durable; the store
// test SIGKILLs this process mid-write. Plain CJS so it runs without a TS build step.
const { randomBytes } = require('node:crypto');
const { ChunkStore } = require('../../binding.js');

const store = ChunkStore.open(process.argv[2], 2 ** 40, { codec: 'zstd', level: 1 });
for (;;) {
  const id = store.put(randomBytes(64 * 1024 + Math.floor(Math.random() * 64 * 1024)));
  process.stdout.write(`${id}\n`);
}
