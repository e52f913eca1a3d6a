import { createApiKey, revokeApiKey, type Db } from '@backroom/queue-core'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { ApiError } from '../../api-error.ts'
import { requirePlatform } from '../../principal.ts'
import { ErrorBody } from '../../schemas/error-body.ts'

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
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody }

/**
 * API key management, platform keys only (a store key gets 403): create a
 * store or platform key (the token is in this one response and nowhere
 * else, not even the logs) and revoke one.
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
      const created = await createApiKey(db, { storeId: request.body.storeId ?? null, label: request.body.label })
      request.log.info({ newKeyId: created.keyId, keyStoreId: created.storeId }, 'api key created')
      return reply.code(201).send({ id: created.keyId, key: created.key, storeId: created.storeId })
    },
  )

  app.delete(
    '/v1/keys/:id',
    { schema: { summary: 'Revoke an API key', params: KeyParams, response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      requirePlatform(request)
      const revoked = await revokeApiKey(db, request.params.id)
      if (!revoked) throw new ApiError(404, 'key_not_found', 'no API key with this id')
      request.log.info({ revokedKeyId: request.params.id }, 'api key revoked')
      return reply.code(204).send(null)
    },
  )
}
