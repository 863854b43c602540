/**
 * Which `Host` headers the server answers: the defence against DNS rebinding. A web page on an
 * attacker's domain can have that domain resolve to 127.0.0.1 and then call a loopback server as
 * its own origin, with no API key needed on loopback; but its requests carry the attacker's
 * domain in `Host`. So a request is served only when `Host` names this server: an IP address (a
 * rebinding page cannot make a browser send one), `localhost` or a name under it, or a name the
 * operator lists (`--allowed-hosts`, which `ppd serve` fills with `--host` when that is a name).
 * `*` in the list turns the check off, e.g. behind a proxy that forwards any `Host`.
 */
import { isIP } from 'node:net';

/** A check of a request's Host header; a request without one (HTTP/1.0) passes. */
export function hostCheck(allowed: readonly string[] = []): (host: string | undefined) => boolean {
  const names = new Set(allowed.map(normalHostName));
  if (names.has('*')) return () => true;
  return (host) => {
    if (host === undefined) return true;
    const name = hostName(host);
    return name !== undefined && (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost') || names.has(name));
  };
}

/** The name in a Host header value ("name:port", "[v6]:port"), lower case, without a final dot. */
export function hostName(host: string): string | undefined {
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/i.exec(host.trim());
  if (!match) return undefined;
  return normalHostName(match[1] ?? match[2]!);
}

function normalHostName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}
