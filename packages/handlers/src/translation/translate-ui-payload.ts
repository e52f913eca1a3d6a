import { Type } from 'typebox'

/**
 * A locale tag: a language (2-3 letters) and at most one subtag (region or
 * script): `de`, `pt-BR`, `zh-Hans`. Case is free; the handler normalises it.
 */
const Locale = Type.String({ minLength: 2, maxLength: 16, pattern: '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$' })

/** One UI string: its key in the store's UI and its text in the source locale. */
const UiString = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 200 }),
    text: Type.String({ minLength: 1, maxLength: 5_000 }),
  },
  { additionalProperties: false },
)

/**
 * Payload of `translation.ui`:
 * `{ sourceLocale, targetLocales: [1..30], strings: [{ key, text }] (1..5000) }`.
 * Keys must be unique within a job. The store is the job's, never the payload's.
 */
export const TranslateUiPayload = Type.Object(
  {
    sourceLocale: Locale,
    targetLocales: Type.Array(Locale, { minItems: 1, maxItems: 30, uniqueItems: true }),
    strings: Type.Array(UiString, { minItems: 1, maxItems: 5_000 }),
  },
  { additionalProperties: false },
)
