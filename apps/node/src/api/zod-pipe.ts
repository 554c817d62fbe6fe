/** A parameter pipe that validates one request part against a zod schema. */
import type { PipeTransform } from '@nestjs/common';
import type { ZodTypeAny, z } from 'zod';
import { validate } from './schemas';

export class ZodPipe<S extends ZodTypeAny> implements PipeTransform<unknown, z.output<S>> {
  constructor(
    private readonly schema: S,
    private readonly where: string,
  ) {}

  transform(value: unknown): z.output<S> {
    return validate(this.schema, value, this.where);
  }
}
