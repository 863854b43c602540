/**
 * The optional API key: `Authorization: Bearer <key>`. Both sides are hashed before the
 * constant-time comparison, so neither the key's content nor its length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** A check of an Authorization header against `key`. */
export function bearerCheck(key: string): (authorization: string | undefined) => boolean {
  const expected = sha256(key);
  return (authorization) => {
    const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
    // Hash and compare even when the header is malformed, so that case takes the same time.
    const same = timingSafeEqual(sha256(match?.[1] ?? ''), expected);
    return match !== null && same;
  };
}
