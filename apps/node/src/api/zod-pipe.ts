/** A parameter pipe that validates one request part against a zod schema of the contract. */
import type { PipeTransform } from '@nestjs/common';
import type { ZodTypeAny, z } from 'zod';
import { validate } from './schemas';
import { UNSUPPORTED_BODY, UnparsableBody, UnsupportedMediaType } from './unsupported-body';

export class ZodPipe<S extends ZodTypeAny> implements PipeTransform<unknown, z.output<S>> {
  constructor(
    /** Public so the contract spec can check it is the very schema the document was generated from. */
    readonly schema: S,
    private readonly where: 'body' | 'query' | 'path',
  ) {}

  transform(value: unknown): z.output<S> {
    if (value === UNSUPPORTED_BODY) throw new UnsupportedMediaType();
    if (value instanceof UnparsableBody) throw value.error;
    return validate(this.schema, value, this.where);
  }
}
