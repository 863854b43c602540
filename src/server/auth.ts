/**
 * The optional API key: `Authorization: Bearer <key>`. Both sides are hashed before the
 * constant-time comparison, so neither the key's content nor its length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { InputError } from '../errors.ts';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/**
 * A key a client can send: visible ASCII, no spaces (a bearer token is one word of an HTTP
 * header). Anything else would start a server nobody can authenticate to, so it is refused.
 */
export function checkApiKey(key: string): void {
  if (!/^[\x21-\x7e]+$/.test(key)) {
    const why = key.length === 0 ? 'it is empty' : /\s/.test(key) ? 'it contains whitespace' : 'it contains characters other than visible ASCII';
    throw new InputError(`the API key (--api-key or PPD_API_KEY) cannot be used: ${why}; a client sends it as "Authorization: Bearer <key>"`);
  }
}

/** A check of an Authorization header against `key` (refused by checkApiKey unless usable). */
export function bearerCheck(key: string): (authorization: string | undefined) => boolean {
  checkApiKey(key);
  const expected = sha256(key);
  return (authorization) => {
    const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    // Hash and compare even when the header is malformed, so that case takes the same time.
    const same = timingSafeEqual(sha256(match?.[1] ?? ''), expected);
    return match !== null && same;
  };
}
