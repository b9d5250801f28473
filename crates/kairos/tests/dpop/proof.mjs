// Makes DPoP keys and proofs with panva's `dpop` library, for crates/kairos/tests/dpop.rs.
//
//   node proof.mjs keygen ALG KEYFILE
//       a fresh key pair (ES256, EdDSA, RS256), written to KEYFILE as JWKs; prints its
//       public JWK
//   node proof.mjs proof KEYFILE METHOD URL [--nonce N] [--token T] [--skew SECONDS]
//       prints a proof; --skew moves the clock the library reads (Date.now) to make
//       a stale or future `iat`
import { readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPair, generateProof } from 'dpop';

const [command, ...args] = process.argv.slice(2);
const subtle = globalThis.crypto.subtle;

function importParams(alg) {
  switch (alg) {
    case 'ES256': return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'EdDSA': return { name: 'Ed25519' };
    case 'RS256': return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    default: throw new Error(`unknown alg ${alg}`);
  }
}

if (command === 'keygen') {
  const [alg, file] = args;
  const pair = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : alg, { extractable: true });
  const privateJwk = await subtle.exportKey('jwk', pair.privateKey);
  const publicJwk = await subtle.exportKey('jwk', pair.publicKey);
  writeFileSync(file, JSON.stringify({ alg, privateJwk, publicJwk }), { mode: 0o600 });
  process.stdout.write(JSON.stringify(publicJwk));
} else if (command === 'proof') {
  const [file, method, url, ...rest] = args;
  const options = {};
  for (let i = 0; i < rest.length; i += 2) options[rest[i].replace(/^--/, '')] = rest[i + 1];
  const { alg, privateJwk, publicJwk } = JSON.parse(readFileSync(file, 'utf8'));
  const params = importParams(alg);
  const pair = {
    privateKey: await subtle.importKey('jwk', privateJwk, params, false, ['sign']),
    publicKey: await subtle.importKey('jwk', publicJwk, params, true, ['verify']),
  };
  if (options.skew) {
    const realNow = Date.now;
    const skew = Number(options.skew) * 1000;
    Date.now = () => realNow() + skew;
  }
  process.stdout.write(await generateProof(pair, url, method, options.nonce, options.token));
} else {
  throw new Error(`unknown command ${command}`);
}
