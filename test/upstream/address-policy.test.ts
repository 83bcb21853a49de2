/**
 * The IPv6 parsing behind the SSRF policy, checked against WHATWG URL's own IPv6 serializer on random
 * addresses, and the rule that an IPv6 form embedding an IPv4 address is as public as that address.
 */
import fc from 'fast-check';
import t from 'tap';
import { ipv6Bytes, isPublicAddress } from '../../src/upstream/address-policy.js';

const bytes16 = fc.uint8Array({ minLength: 16, maxLength: 16 });
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));

function fullForm(b: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((b[i] as number) << 8) | (b[i + 1] as number)).toString(16));
  return groups.join(':');
}

/** The compressed form URL gives (`::` for the longest zero run), as a client would spell it. */
const compressed = (b: Uint8Array): string => new URL(`http://[${fullForm(b)}]/`).hostname.slice(1, -1);

const hex = (a: number, b: number): string => ((a << 8) | b).toString(16);

t.test('ipv6Bytes reads the full and the compressed spelling of any address back to its bytes', async (t) => {
  fc.assert(
    fc.property(bytes16, (b) => {
      t.same(ipv6Bytes(fullForm(b)), b, fullForm(b));
      t.same(ipv6Bytes(compressed(b)), b, compressed(b));
    }),
    { numRuns: 300 },
  );
  t.same(ipv6Bytes('::ffff:1.2.3.4'), Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]), 'a trailing dotted quad');
  for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8::', '::1.2.3.256', '12345::'])
    t.equal(ipv6Bytes(bad), undefined, bad);
});

t.test('an IPv6 form that embeds an IPv4 address is exactly as public as that address', async (t) => {
  fc.assert(
    fc.property(ipv4, ([a, b, c, d]) => {
      const v4 = `${a}.${b}.${c}.${d}`;
      const expected = isPublicAddress(v4);
      for (const v6 of [
        `::ffff:${v4}`,
        `::ffff:${hex(a, b)}:${hex(c, d)}`,
        `64:ff9b::${v4}`,
        `64:ff9b::${hex(a, b)}:${hex(c, d)}`,
        `2002:${hex(a, b)}:${hex(c, d)}::1`,
        `2001:0:4136:e378:8000:63bf:${hex(a ^ 0xff, b ^ 0xff)}:${hex(c ^ 0xff, d ^ 0xff)}`, // Teredo, public server
      ]) {
        if (isPublicAddress(v6) !== expected) t.fail(`${v6} is ${expected ? '' : 'not '}public like ${v4}`);
      }
    }),
    { numRuns: 500 },
  );
  t.pass('checked');
});
