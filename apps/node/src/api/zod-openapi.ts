/**
 * zod with `.openapi()` (component names, descriptions, keywords zod has no check for), for the API's
 * request and response schemas. Importing this first is what makes `.openapi()` exist at run time.
 */
import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);

export { z };
