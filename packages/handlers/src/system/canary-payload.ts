import { Type } from 'typebox'

/** Payload of `system.canary`: `{ sleepMs?, fail?: "retryable" | "permanent" }`. */
export const CanaryPayload = Type.Object(
  {
    sleepMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
    fail: Type.Optional(Type.Union([Type.Literal('retryable'), Type.Literal('permanent')])),
  },
  { additionalProperties: false },
)
