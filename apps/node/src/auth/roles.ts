/** Per-endpoint access: each route names its minimum role, or is explicitly public. */
import { SetMetadata } from '@nestjs/common';
import type { Role } from '@novacron/cluster-state';

export const REQUIRED_ROLE = 'dwcp:required-role';
export const PUBLIC_ROUTE = 'dwcp:public-route';

/** The least role a caller's token must hold (viewer < operator < admin). */
export const RequireRole = (role: Role) => SetMetadata(REQUIRED_ROLE, role);

/** No token needed: health, metrics, the OpenAPI document, and join (which checks its own join token). */
export const Public = () => SetMetadata(PUBLIC_ROUTE, true);
