import { createApiKey, DEFAULT_AUDIT_PAGE, listApiKeyEvents, MAX_AUDIT_PAGE, revokeApiKey, type ApiKeyEvent, type Db } from '@backroom/queue-core'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { ApiError } from '../../api-error.ts'
import { principalOf, requirePlatform } from '../../principal.ts'
import { ErrorBody } from '../../schemas/error-body.ts'
import { strictQueryIntegers } from '../../strict-query-integers.ts'

/** Options of {@link keysRoutes}. */
export interface KeysRoutesOptions {
  readonly db: Db
}

const CreateKeyBody = Type.Object(
  {
    storeId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'omit for a platform key' })),
    label: Type.Optional(Type.String({ maxLength: 200, description: 'what the key is for; shown to operators, never secret' })),
  },
  { additionalProperties: false },
)
const CreatedKey = Type.Object({
  id: Type.String(),
  key: Type.String({ description: 'the token, shown this once: only its HMAC is stored' }),
  storeId: Type.Union([Type.String(), Type.Null()]),
})
const KeyParams = Type.Object({ id: Type.String() })
const EventsParams = Type.Object({ id: Type.String({ description: 'a key id, or `admin` / `admin-previous` for the admin keys' }) })
const EventsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_AUDIT_PAGE, description: `default ${DEFAULT_AUDIT_PAGE}` })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "the previous page's nextCursor" })),
  },
  { additionalProperties: false },
)
const NullableTime = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
const KeyEventView = Type.Object({
  event: Type.Union([Type.Literal('created'), Type.Literal('revoked'), Type.Literal('used')]),
  keyId: Type.String(),
  storeId: Type.Union([Type.String(), Type.Null()], { description: "the key's store; null for a platform key" }),
  actor: Type.Union([Type.String(), Type.Null()], {
    description: 'who made the change: a key id, `admin`, `admin-previous`, `cli` or `unknown`; null on `used` rows',
  }),
  at: Type.String({ format: 'date-time', description: 'when the change happened; on `used` rows, the start of the hour' }),
  uses: Type.Union([Type.Integer(), Type.Null()], { description: 'authenticated requests in the hour (`used` rows)' }),
  firstUsedAt: NullableTime,
  lastUsedAt: NullableTime,
})
const KeyEventPage = Type.Object({
  events: Type.Array(KeyEventView),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'null on the last page' }),
})
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody }

/**
 * API key management, platform keys only (a store key gets 403): create a
 * store or platform key (the token is in this one response and nowhere
 * else, not even the logs), revoke one, and read a key's audit. Creation
 * and revocation are audited with the calling key as the actor.
 */
export const keysRoutes: FastifyPluginAsync<KeysRoutesOptions> = async (plain, options) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  // TypeBox's compiler refuses unknown fields; Fastify's Ajv would drop them silently.
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  const db = options.db.kysely

  app.post(
    '/v1/keys',
    { schema: { summary: 'Create an API key', body: CreateKeyBody, response: { 201: CreatedKey, ...errors } } },
    async (request, reply) => {
      requirePlatform(request)
      const created = await createApiKey(db, { storeId: request.body.storeId ?? null, label: request.body.label, actor: principalOf(request).keyId })
      request.log.info({ newKeyId: created.keyId, keyStoreId: created.storeId }, 'api key created')
      return reply.code(201).send({ id: created.keyId, key: created.key, storeId: created.storeId })
    },
  )

  app.delete(
    '/v1/keys/:id',
    { schema: { summary: 'Revoke an API key', params: KeyParams, response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      requirePlatform(request)
      const revoked = await revokeApiKey(db, request.params.id, { actor: principalOf(request).keyId })
      if (!revoked) throw new ApiError(404, 'key_not_found', 'no API key with this id')
      request.log.info({ revokedKeyId: request.params.id }, 'api key revoked')
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/v1/keys/:id/events',
    {
      preValidation: strictQueryIntegers(['limit']),
      schema: {
        summary: "Read an API key's audit",
        description:
          'Newest first, keyset pagination (pass nextCursor back as cursor): `created` and `revoked` with their actor, and one `used` row per hour ' +
          'with the number of authenticated requests (written by each API process every few seconds). Never the token or its hash.',
        params: EventsParams,
        querystring: EventsQuery,
        response: { 200: KeyEventPage, ...errors },
      },
    },
    async (request) => {
      requirePlatform(request)
      const page = await listApiKeyEvents(db, request.params.id, { limit: request.query.limit, cursor: request.query.cursor })
      if (!page) throw new ApiError(404, 'key_not_found', 'no API key with this id')
      return { events: page.events.map(toEventView), nextCursor: page.nextCursor }
    },
  )
}

function toEventView(event: ApiKeyEvent) {
  return {
    event: event.event,
    keyId: event.keyId,
    storeId: event.storeId,
    actor: event.actor,
    at: event.at.toISOString(),
    uses: event.uses,
    firstUsedAt: event.firstUsedAt?.toISOString() ?? null,
    lastUsedAt: event.lastUsedAt?.toISOString() ?? null,
  }
}
