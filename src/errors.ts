/**
 * Stable string codes for every error autobuilder raises on purpose. Callers match on
 * `code`, never on the message.
 */
export type AppErrorCode =
  | 'CONFIG_INVALID'
  | 'DEFINITION_INVALID'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'CONFLICT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'BACKLOG_FULL'
  | 'STARTING'
  | 'HOST_NOT_ALLOWED'
  | 'PAYLOAD_TOO_LARGE'
  | 'SIGNATURE_MISSING'
  | 'SIGNATURE_INVALID'
  | 'UNSAFE_INPUT'
  | 'GIT_FAILED'
  | 'SNAPSHOT_FAILED'
  | 'CONTAINER_FAILED'
  | 'ILLEGAL_TRANSITION'
  | 'PARAMS_INVALID'
  | 'INTERNAL';

/**
 * The one error base of autobuilder: a string `code`, the HTTP `status` a route answers
 * with, and whether `message` may be shown to a client (`expose`). Anything that is not an
 * AppError reaches clients only as a generic 500 `INTERNAL`.
 */
export class AppError extends Error {
  readonly code: AppErrorCode;
  readonly status: number;
  readonly expose: boolean;
  /** response headers that go with the answer, e.g. `Retry-After` with a 503 */
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: AppErrorCode, message: string, options: { status?: number; expose?: boolean; cause?: unknown; headers?: Record<string, string> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = options.status ?? 500;
    this.expose = options.expose ?? this.status < 500;
    this.headers = Object.freeze({ ...options.headers });
  }
}

/** True when `err` is an {@link AppError}, optionally with the given code. */
export function isAppError(err: unknown, code?: AppErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for logs and build records (never for HTTP clients). */
export function toMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
