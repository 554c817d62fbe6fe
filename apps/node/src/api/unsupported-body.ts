/**
 * Bodies the API cannot take: of a media type it does not parse, or JSON that does not parse.
 * Fastify refuses them (415, 400) before routing, so before authentication, and a viewer's write
 * got 415 or 400 instead of 403. The node's parsers mark them instead, and the body pipe refuses
 * them after the guards have run, with the same status and message.
 */
export const UNSUPPORTED_BODY = Symbol('unsupported media type');

export class UnsupportedMediaType extends Error {
  readonly statusCode = 415;
  constructor() {
    super('Unsupported Media Type: send the body as application/json');
  }
}

/** A JSON body that did not parse, with fastify's own error (status 400 and its message). */
export class UnparsableBody {
  constructor(readonly error: Error) {}
}
