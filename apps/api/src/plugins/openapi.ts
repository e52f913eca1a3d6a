import swagger from '@fastify/swagger'
import fp from 'fastify-plugin'
import { Type } from 'typebox'

/** The page /docs serves: the spec's URL and a pointer to any OpenAPI viewer (no UI bundle shipped). */
const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Backroom API</title></head>
<body>
<h1>Backroom API</h1>
<p>The OpenAPI 3 description of every route is at <a href="/docs/json">/docs/json</a>.
Load it in any OpenAPI viewer or client generator.</p>
<p>Authenticate with <code>Authorization: Bearer &lt;API key&gt;</code> on <code>/v1</code> routes;
<code>/v1/internal/process-pending</code> takes <code>Bearer &lt;CRON_SECRET&gt;</code>.</p>
</body>
</html>
`

/**
 * OpenAPI 3 from the route schemas (@fastify/swagger, dynamic mode):
 * `GET /docs/json` serves the document, `GET /docs` a small page pointing at
 * it. Registered first among the plugins, wrapped by fastify-plugin, so its
 * onRoute hook sees every route registered after it. Bearer auth (API keys)
 * is the default security; public routes (health, metrics, docs) say
 * `security: []`, the drain endpoint names the cron secret scheme.
 */
export const openapiPlugin = fp(async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Backroom API',
        description: 'Multi-tenant background jobs: enqueue, inspect, cancel, retry, stats.',
        version: '0.1.0',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key: a store key or a platform key.' },
          cronSecret: { type: 'http', scheme: 'bearer', description: 'CRON_SECRET, for /v1/internal/process-pending only.' },
          metricsKey: { type: 'http', scheme: 'bearer', description: 'METRICS_KEY, for /metrics when it is set.' },
        },
      },
      security: [{ bearerAuth: [] }],
    },
  })

  app.get(
    '/docs/json',
    {
      logLevel: 'warn',
      schema: {
        summary: 'This API’s OpenAPI 3 document',
        tags: ['docs'],
        security: [],
        response: { 200: Type.Object({}, { additionalProperties: true }) },
      },
    },
    // The document as Fastify built it, sent as is (the response schema only documents it).
    async (_request, reply) => reply.type('application/json').send(JSON.stringify(app.swagger())),
  )

  app.get(
    '/docs',
    { logLevel: 'warn', schema: { summary: 'A page pointing at the OpenAPI document', tags: ['docs'], security: [], response: { 200: Type.String() } } },
    async (_request, reply) => reply.type('text/html; charset=utf-8').send(DOCS_PAGE),
  )
})
