import { InvalidStateError, JobNotFoundError, StoreCapacityError, ValidationError, isDatabaseUnavailable } from '@backroom/queue-core'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ApiError } from '../api-error.ts'
import { errorBody } from '../schemas/error-body.ts'

/**
 * Retry-After (seconds) of a 503 while the database cannot be reached: long
 * enough for a connection reset or a short failover to pass, short enough
 * that clients come back soon after it does.
 */
export const DATABASE_RETRY_AFTER_S = 5

/** Codes for the 4xx errors Fastify raises itself (bad JSON, body too large…), by status. */
const CLIENT_ERROR_CODES: Readonly<Record<number, string>> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  414: 'uri_too_long',
  429: 'rate_limited',
}

/**
 * The app's one error handler: maps what a route throws to
 * `{ "error": { "code", "message", "details"? } }`. Schema validation and
 * queue-core's ValidationError are 400 `invalid_request`, JobNotFoundError is
 * 404, InvalidStateError is 409, StoreCapacityError is 429 with Retry-After,
 * an ApiError keeps its own status and code, Fastify's own client errors keep their
 * status. A database that cannot be reached or stopped answering (refused,
 * reset, connect or acquire timeout, a statement with no answer in time) is
 * 503 `database_unavailable` with Retry-After: the request may succeed
 * later, and a client must not mistake it for a bug. Anything else is 500
 * `internal_error` with no detail: the cause goes to the log only, since it
 * may name tables, hosts or values.
 */
export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error.validation) {
    const details = error.validation.map((v) => ({ in: error.validationContext, path: v.instancePath, message: v.message }))
    return reply.code(400).send(errorBody('invalid_request', error.message, details))
  }
  if (error instanceof ValidationError) {
    return reply.code(400).send(errorBody('invalid_request', error.message, error.details))
  }
  if (error instanceof ApiError) {
    if (error.retryAfterMs !== null) reply.header('retry-after', String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))))
    return reply.code(error.statusCode).send(errorBody(error.code, error.message, error.details))
  }
  if (error instanceof StoreCapacityError) {
    reply.header('retry-after', String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))))
    return reply.code(429).send(errorBody(error.code, error.message, { storeId: error.storeId, cap: error.cap, live: error.live }))
  }
  if (error instanceof JobNotFoundError) {
    return reply.code(404).send(errorBody(error.code, error.message, { jobId: error.jobId }))
  }
  if (error instanceof InvalidStateError) {
    return reply.code(409).send(errorBody(error.code, error.message, { jobId: error.jobId, state: error.state }))
  }
  if (isDatabaseUnavailable(error)) {
    request.log.warn({ err: error }, 'database unavailable')
    reply.header('retry-after', String(DATABASE_RETRY_AFTER_S))
    return reply.code(503).send(errorBody('database_unavailable', 'the database is not reachable; try again shortly'))
  }
  if (isDataException(error)) {
    // The value reached PostgreSQL and could not be stored or compared (e.g. a
    // number out of range): the caller's data, and the statement wrote nothing.
    request.log.debug({ err: error }, 'request rejected by the database')
    return reply.code(400).send(errorBody('invalid_request', 'a value in the request cannot be stored'))
  }
  const status = error.statusCode ?? 500
  if (status >= 400 && status < 500) {
    request.log.debug({ err: error }, 'request rejected')
    return reply.code(status).send(errorBody(CLIENT_ERROR_CODES[status] ?? 'invalid_request', error.message))
  }
  request.log.error({ err: error }, 'request failed')
  return reply.code(500).send(errorBody('internal_error', 'internal error'))
}

/** 404 for routes that do not exist, in the same shape as every other error. */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return reply.code(404).send(errorBody('not_found', `route ${request.method} ${request.url.split('?')[0]} not found`))
}

/**
 * PostgreSQL's SQLSTATE class 22, "data exception" (a value out of range,
 * text it cannot hold…): raised by a statement about the values it was
 * given, never by the server's state.
 */
function isDataException(error: unknown): boolean {
  const e = error as { code?: unknown; severity?: unknown }
  return typeof e.severity === 'string' && typeof e.code === 'string' && /^22[0-9A-Z]{3}$/.test(e.code)
}

/**
 * Errors Fastify raises before routing (a URL it cannot decode, a path
 * parameter over its length limit): the same error shape as everything else.
 */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400
  request.log.debug({ err: error }, 'request rejected before routing')
  void reply.code(status).send(errorBody(CLIENT_ERROR_CODES[status] ?? 'invalid_request', error.message))
}
