/** How consensus fails a read or a write, in the words the contract tables give the document. */
export const READ_ERRORS = {
  503: 'No Raft leader is reachable, which a linearizable read needs.',
  504: 'The leader did not confirm the read index in time.',
} as const;

export const WRITE_ERRORS = {
  503: 'No Raft leader is reachable.',
  504: 'The commit was not seen in time: its outcome is unknown (never retried behind your back).',
} as const;
