/** Errors of the JS reference path, with the same codes as the native path's. */
export class HdeFormatError extends Error {
  override readonly name = 'HdeFormatError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
